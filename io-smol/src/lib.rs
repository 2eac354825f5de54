//! smol / async-std adapter for kstreams.
//!
//! This crate will drive the sans-IO `kstreams_core` engine with async-io sockets and timers
//! (so it runs under smol and async-std alike). The engine itself is not built yet, so today
//! the crate only re-exports the core for users who depend on the adapter crate alone.

pub use kstreams_core as core;
