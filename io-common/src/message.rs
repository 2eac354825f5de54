//! The messages a stream thread's loop receives: the reports of its connection tasks and the
//! commands of the instance's handles.
//!
//! A leaf module (it imports nothing else of this crate), like quinn-proto's `shared.rs`: the
//! connection task, the loop and the instance status all speak these types without depending
//! on each other.

use bytes::Bytes;
use kstreams_core::client::BrokerId;

/// Capacity of a stream thread's channel of connection reports. Bounded, so a slow engine
/// slows its socket readers down (TCP back-pressure) instead of buffering without limit.
pub(crate) const CONNECTION_REPORT_CAPACITY: usize = 256;

/// What a stream thread's loop is woken by, besides its engine's timer.
#[derive(Debug)]
pub(crate) enum LoopMessage {
    /// A connection task's report. `generation` tells reports of an old socket of the same
    /// node (closed by the engine, or replaced) from the current one.
    Connection {
        /// The broker connection the engine asked for.
        node: BrokerId,
        /// Which socket of that node (a new one per `Connect`).
        generation: u64,
        /// What happened.
        event: ConnectionEvent,
    },
    /// Close the engine cleanly (commit, leave the group).
    Close,
}

/// What a connection task reports.
#[derive(Debug)]
pub(crate) enum ConnectionEvent {
    /// The socket is open.
    Connected,
    /// Bytes were read (any chunking).
    Received(Bytes),
    /// The connection failed or closed.
    Closed,
}
