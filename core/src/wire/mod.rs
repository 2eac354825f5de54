//! The Kafka wire layer: framing, request/response correlation, API version negotiation and
//! record-batch decoding, on top of the `kafka-protocol` crate's message codecs.
//!
//! Everything here is pure: bytes and values in, bytes and values out. No sockets, no clock.
//!
//! - [`framing`]: length-prefixed frames out of an arbitrarily chunked byte stream.
//! - [`connection`]: one broker connection — request headers, correlation ids, ApiVersions.
//! - [`versions`]: the per-API version table negotiated with a broker.
//! - [`sasl`]: SASL authentication (PLAIN, SCRAM, OAUTHBEARER) of a connection.
//! - [`records`]: a fetched partition's record batches into records, with read_committed.

pub mod connection;
pub mod framing;
pub mod records;
pub mod sasl;
pub mod versions;
