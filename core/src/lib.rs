//! kstreams core (being written).
