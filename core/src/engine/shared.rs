//! The messages between the engine and its [`Router`](super::router::Router): which component a
//! request belongs to, and what the router hands back after routing bytes. Nearly a leaf: of
//! the engine it imports only the error type.

use std::fmt;

use kafka_protocol::messages::{ApiKey, ResponseKind};

use super::error::EngineError;
use crate::client::{BrokerId, Target};

/// One socket, from [`Output::Connect`](super::Output::Connect) until it closes. Opaque to the
/// adapter; never reused, so a report about a socket that is gone (a late read, a close the
/// engine asked for) can never be mistaken for one about its successor.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnectionId(pub(crate) u64);

impl ConnectionId {
    /// The id as a number, for recording an input sequence (the engine issues ids 0, 1, 2, …
    /// in the order of its `Connect`s, so a replay meets the same ids).
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// The id recorded as [`raw`](Self::raw), for replaying an input sequence (or a test's
    /// scripted connection). An id the engine did not issue is ignored by it.
    pub const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }
}

impl fmt::Debug for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

/// The client component a request belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Component {
    Metadata,
    Fetcher,
    Group,
    Producer,
    InternalTopics,
}

/// What the router found while moving bytes, for the engine to hand to components.
#[derive(Debug)]
pub(crate) enum Routed {
    /// The answer to a request of `component`, from `broker`.
    Response {
        component: Component,
        broker: BrokerId,
        response: ResponseKind,
    },
    /// A request of `component` will not be answered (no address, timed out, connection lost,
    /// could not be encoded): the component plans again.
    Failed {
        component: Component,
        target: Target,
        api: ApiKey,
    },
    /// A connection to `broker` ended (a bootstrap server when negative).
    Lost { broker: BrokerId },
    /// Something the engine recovers from, worth a warning.
    Warning(EngineError),
    /// The engine cannot go on.
    Fatal(EngineError),
}
