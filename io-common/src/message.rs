//! The messages a stream thread's loop receives: the commands of the instance's handles, as
//! the engine's own [`Input`] (a handle sends `Close`), and the [`Report`]s of its connection
//! tasks, mostly the engine's `Input` as well (`Connected`, `Received` and `Disconnected` for
//! the socket's `ConnectionId`), so the loop hands them on unchanged.
//!
//! A leaf module but for `tls` (it imports only [`TlsFailure`]), like quinn-proto's
//! `shared.rs`: the connection task, the loop and the instance status all speak these types
//! without depending on each other.

use kstreams_core::engine::ConnectionId;
pub(crate) use kstreams_core::engine::Input;

use crate::tls::TlsFailure;

/// Capacity of a stream thread's channel of connection reports. Bounded, so a slow engine
/// slows its socket readers down (TCP back-pressure) instead of buffering without limit.
pub(crate) const CONNECTION_REPORT_CAPACITY: usize = 256;

/// What a connection task reports to its stream thread's loop.
#[derive(Debug)]
pub(crate) enum Report {
    /// For the engine: `Connected`, `Received` or `Disconnected`.
    Engine(Input),
    /// TLS with the broker failed (the handshake, or the broker's first answer after it).
    /// With a kind, a configuration problem that reconnecting does not heal; without, a
    /// disconnect. The socket is closed.
    TlsFailed {
        /// The socket.
        connection: ConnectionId,
        /// Why.
        failure: TlsFailure,
    },
}

impl Report {
    /// The socket this report is about.
    pub(crate) fn connection(&self) -> Option<ConnectionId> {
        match self {
            Self::Engine(
                Input::Connected { connection }
                | Input::Received { connection, .. }
                | Input::Disconnected { connection },
            )
            | Self::TlsFailed { connection, .. } => Some(*connection),
            Self::Engine(Input::Timeout | Input::Close) => None,
        }
    }
}
