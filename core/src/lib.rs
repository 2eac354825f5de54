//! kstreams core (being written).

pub mod wire;
