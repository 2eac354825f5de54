//! The Kafka wire layer: framing, request/response correlation, API version negotiation and
//! record-batch decoding, on top of the `kafka-protocol` crate's message codecs.
//!
//! Everything here is pure: bytes and values in, bytes and values out. No sockets, no clock.
//!
//! - [`framing`]: length-prefixed frames out of an arbitrarily chunked byte stream.

pub mod framing;
