//! tokio adapter for kstreams.
//!
//! This crate will drive the sans-IO `kstreams_core` engine with tokio sockets and timers. The
//! engine itself (the Kafka client state machine) is not built yet, so today the crate only
//! re-exports the core for users who depend on the adapter crate alone.

pub use kstreams_core as core;
