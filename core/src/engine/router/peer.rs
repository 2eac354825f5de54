//! One endpoint the router keeps a connection to (a broker's general, fetch or group lane, or a
//! bootstrap server): its address, its reconnect state and, while a socket is open, the
//! protocol state machine and framing of that socket.

use std::collections::VecDeque;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;

use crate::client::{BrokerId, Target};
use crate::engine::shared::{Component, ConnectionId};
use crate::time::Instant;
use crate::wire::connection::{Connection, ConnectionConfig};
use crate::wire::framing::{FrameDecoder, FrameError};

/// Which of a broker's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Lane {
    /// Everything but Fetch (metadata, group, produce, admin).
    General,
    /// Fetch only: a long-polling Fetch holds a connection's later requests back (brokers
    /// answer a connection's requests in order), so it gets a connection of its own.
    Fetch,
    /// JoinGroup and SyncGroup only: the coordinator holds them until every member rejoined
    /// (up to the rebalance timeout) or the leader assigned, and a cooperative member keeps
    /// producing and committing meanwhile, so they get a connection of their own (as Kafka's
    /// consumer keeps a separate connection to its coordinator).
    Group,
}

/// A peer's identity: the broker (negative: a bootstrap server) and the lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct PeerKey {
    pub(crate) broker: BrokerId,
    pub(crate) lane: Lane,
}

impl PeerKey {
    pub(crate) fn general(broker: BrokerId) -> Self {
        Self {
            broker,
            lane: Lane::General,
        }
    }

    /// Bootstrap servers have negative ids; they are used only until a real broker is known.
    pub(crate) fn is_bootstrap(self) -> bool {
        self.broker < 0
    }
}

/// What the router remembers about a request it sent, to route the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token {
    pub(crate) component: Component,
    pub(crate) target: Target,
    pub(crate) api: ApiKey,
    pub(crate) version: i16,
    pub(crate) sent_at: Instant,
}

/// An open socket: negotiating or ready.
pub(crate) struct Socket {
    pub(crate) id: ConnectionId,
    pub(crate) conn: Connection<Token>,
    pub(crate) frames: FrameDecoder,
    /// Answer deadline and API of each request in flight (ApiVersions and SASL included),
    /// oldest first: brokers answer a connection's requests in order.
    pub(crate) sent: VecDeque<(Instant, ApiKey)>,
    /// When to re-authenticate the SASL session (KIP-368), once authenticated with a lifetime.
    pub(crate) reauth_at: Option<Instant>,
    /// Re-authentication is due: no new request goes out until the ones in flight are
    /// answered and the exchange is over (Kafka needs the connection idle for it).
    pub(crate) reauth_due: bool,
    /// A re-authentication exchange is under way (its end is counted).
    pub(crate) reauthenticating: bool,
}

/// Bytes read from a socket, as the adapter handed them over.
pub(crate) enum Received<'a> {
    /// Copied into the frame decoder.
    Borrowed(&'a [u8]),
    /// Whole frames in it become frames without a copy.
    Owned(Bytes),
}

impl Socket {
    /// Feeds bytes read from the socket; returns the complete frames.
    pub(crate) fn push_bytes(&mut self, bytes: Received<'_>) -> Result<Vec<Bytes>, FrameError> {
        match bytes {
            Received::Borrowed(bytes) => self.frames.push(bytes),
            Received::Owned(chunk) => self.frames.push_chunk(chunk),
        }
        let mut frames = Vec::new();
        while let Some(frame) = self.frames.next_frame()? {
            frames.push(frame);
        }
        Ok(frames)
    }

    /// The earliest answer deadline of the requests in flight (not only the oldest request's:
    /// a Heartbeat queued behind a JoinGroup has the shorter one).
    pub(crate) fn earliest_deadline(&self) -> Option<Instant> {
        self.sent.iter().map(|&(deadline, _)| deadline).min()
    }
}

/// Where a peer's connection is.
pub(crate) enum PeerState {
    /// No socket; may connect from `retry_at` on.
    Down { retry_at: Instant },
    /// `Output::Connect` was emitted; waiting for the adapter's answer.
    Connecting { id: ConnectionId },
    /// The socket is open.
    Up(Box<Socket>),
}

/// One endpoint: see the [module docs](self).
pub(crate) struct Peer {
    pub(crate) host: String,
    pub(crate) port: i32,
    /// Consecutive failed connection attempts, for the backoff.
    pub(crate) failures: u32,
    pub(crate) state: PeerState,
}

impl Peer {
    pub(crate) fn new(host: String, port: i32) -> Self {
        Self {
            host,
            port,
            failures: 0,
            state: PeerState::Down {
                retry_at: Instant::MIN,
            },
        }
    }

    /// The id of the socket being opened or open.
    pub(crate) fn connection_id(&self) -> Option<ConnectionId> {
        match &self.state {
            PeerState::Down { .. } => None,
            PeerState::Connecting { id } => Some(*id),
            PeerState::Up(socket) => Some(socket.id),
        }
    }

    pub(crate) fn is_down(&self) -> bool {
        matches!(self.state, PeerState::Down { .. })
    }

    /// When a down peer may connect again (`None` when it is not down).
    pub(crate) fn retry_at(&self) -> Option<Instant> {
        match self.state {
            PeerState::Down { retry_at } => Some(retry_at),
            _ => None,
        }
    }

    /// Down and allowed to connect at `now`.
    pub(crate) fn may_connect(&self, now: Instant) -> bool {
        self.retry_at().is_some_and(|at| at <= now)
    }

    pub(crate) fn socket(&self) -> Option<&Socket> {
        match &self.state {
            PeerState::Up(socket) => Some(socket),
            _ => None,
        }
    }

    pub(crate) fn socket_mut(&mut self) -> Option<&mut Socket> {
        match &mut self.state {
            PeerState::Up(socket) => Some(socket),
            _ => None,
        }
    }

    /// A socket that finished its ApiVersions (and SASL) exchange and takes requests: not
    /// re-authenticating, nor waiting to.
    pub(crate) fn ready(&self) -> Option<&Socket> {
        self.socket().filter(|s| s.conn.is_ready() && !s.reauth_due)
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.ready().is_some()
    }

    /// Requests in flight on the socket (0 when there is none).
    pub(crate) fn in_flight(&self) -> usize {
        self.socket().map_or(0, |s| s.sent.len())
    }

    /// The socket `id` opened: start its ApiVersions exchange (answer due by `deadline`).
    pub(crate) fn open(&mut self, id: ConnectionId, config: ConnectionConfig, deadline: Instant) {
        self.failures = 0;
        self.state = PeerState::Up(Box::new(Socket {
            id,
            conn: Connection::new(config),
            frames: FrameDecoder::default(),
            sent: VecDeque::from([(deadline, ApiKey::ApiVersions)]),
            reauth_at: None,
            reauth_due: false,
            reauthenticating: false,
        }));
    }

    /// Whether the socket is open (not down, not being opened).
    pub(crate) fn is_up(&self) -> bool {
        matches!(self.state, PeerState::Up(_))
    }

    /// Drops the socket; returns the tokens of requests that will never be answered, oldest
    /// first.
    pub(crate) fn close(&mut self, retry_at: Instant) -> Vec<Token> {
        let previous = std::mem::replace(&mut self.state, PeerState::Down { retry_at });
        match previous {
            PeerState::Up(mut socket) => socket.conn.close(),
            PeerState::Down { .. } | PeerState::Connecting { .. } => Vec::new(),
        }
    }
}
