//! The messages a stream thread's loop receives: the reports of its connection tasks and the
//! commands of the instance's handles, both as the engine's own [`Input`] (a connection task
//! reports `Connected`, `Received` and `Disconnected` for its socket's `ConnectionId`; a handle
//! sends `Close`), so the loop hands them on unchanged.
//!
//! A leaf module (it imports nothing else of this crate), like quinn-proto's `shared.rs`: the
//! connection task, the loop and the instance status all speak these types without depending
//! on each other.

pub(crate) use kstreams_core::engine::Input;

/// Capacity of a stream thread's channel of connection reports. Bounded, so a slow engine
/// slows its socket readers down (TCP back-pressure) instead of buffering without limit.
pub(crate) const CONNECTION_REPORT_CAPACITY: usize = 256;
