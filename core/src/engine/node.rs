//! One broker as the engine sees it: its address, its connection state machine and framing.

use std::collections::VecDeque;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};

use super::Component;
use crate::client::{ApiVersionLookup, BrokerId, Target};
use crate::wire::connection::{Connection, ConnectionConfig, ConnectionError, Response};
use crate::wire::framing::{FrameDecoder, FrameError};
use crate::wire::versions::VersionPolicy;

/// What the engine remembers about a request it sent, to route the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token {
    pub(crate) component: Component,
    pub(crate) target: Target,
    pub(crate) api: ApiKey,
    pub(crate) sent_at: i64,
}

/// Where a broker connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Link {
    /// No socket; may connect at `retry_at`.
    Down { retry_at: i64 },
    /// `Output::Connect` was emitted; waiting for `handle_connected`.
    Connecting,
    /// Socket open; the connection negotiates or is ready.
    Up,
}

pub(crate) struct Node {
    /// The node id the adapter sees.
    pub(crate) id: BrokerId,
    /// The broker it connects to: `id` itself, except for a broker's separate fetch connection.
    pub(crate) broker: BrokerId,
    pub(crate) host: String,
    pub(crate) port: i32,
    pub(crate) link: Link,
    pub(crate) conn: Option<Connection<Token>>,
    pub(crate) frames: FrameDecoder,
    /// Consecutive failed connection attempts, for the backoff.
    pub(crate) failures: u32,
    /// Answer deadline and API of the requests in flight, oldest first (Kafka answers in
    /// order).
    pub(crate) sent: VecDeque<(i64, ApiKey)>,
}

impl Node {
    pub(crate) fn new(id: BrokerId, broker: BrokerId, host: String, port: i32) -> Self {
        Self {
            id,
            broker,
            host,
            port,
            link: Link::Down { retry_at: i64::MIN },
            conn: None,
            frames: FrameDecoder::default(),
            failures: 0,
            sent: VecDeque::new(),
        }
    }

    /// When a down node may be connected again (`i64::MIN` when it is not down).
    pub(crate) fn retry_at(&self) -> i64 {
        match self.link {
            Link::Down { retry_at } => retry_at,
            _ => i64::MIN,
        }
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.link == Link::Up && self.conn.as_ref().is_some_and(Connection::is_ready)
    }

    /// Opens the connection state machine once the socket is up.
    pub(crate) fn connected(&mut self, config: ConnectionConfig) {
        self.link = Link::Up;
        self.conn = Some(Connection::new(config));
        self.frames = FrameDecoder::default();
    }

    /// Drops the connection; returns the tokens of requests that will never be answered.
    pub(crate) fn disconnect(&mut self, retry_at: i64) -> Vec<Token> {
        self.link = Link::Down { retry_at };
        self.frames = FrameDecoder::default();
        self.sent.clear();
        self.conn.take().map(|mut c| c.close()).unwrap_or_default()
    }

    /// Feeds bytes read from the socket; returns complete frames.
    pub(crate) fn push_bytes(&mut self, bytes: &[u8]) -> Result<Vec<Bytes>, FrameError> {
        self.frames.push(bytes);
        let mut frames = Vec::new();
        while let Some(frame) = self.frames.next_frame()? {
            frames.push(frame);
        }
        Ok(frames)
    }
}

/// Sends a [`RequestKind`] through a connection at `version`.
pub(crate) fn send_request(
    conn: &mut Connection<Token>,
    request: &RequestKind,
    version: i16,
    token: Token,
) -> Result<i32, ConnectionError> {
    macro_rules! dispatch {
        ($($variant:ident),* $(,)?) => {
            match request {
                $(RequestKind::$variant(r) => conn.send_at_version(r, version, token),)*
                other => Err(ConnectionError::Encode {
                    api: token.api,
                    version,
                    detail: format!("the engine does not send {:?} requests", std::mem::discriminant(other)),
                }),
            }
        };
    }
    dispatch!(
        Metadata,
        FindCoordinator,
        JoinGroup,
        SyncGroup,
        Heartbeat,
        LeaveGroup,
        OffsetFetch,
        OffsetCommit,
        ListOffsets,
        Fetch,
        Produce,
        InitProducerId,
        CreateTopics,
    )
}

/// Decodes a response body into a [`ResponseKind`].
pub(crate) fn decode_response(response: &Response<Token>) -> Result<ResponseKind, ConnectionError> {
    let mut body = response.body.clone();
    ResponseKind::decode(response.api_key, &mut body, response.api_version).map_err(|e| {
        ConnectionError::MalformedBody {
            api: response.api_key,
            version: response.api_version,
            detail: format!("{e:#}"),
        }
    })
}

/// The version table of the cluster: for each API, the smallest of the versions negotiated
/// with the ready brokers (normally all equal), within the engine's current version policy
/// (which may have lowered a cap after those connections negotiated).
pub(crate) struct ClusterVersions<'a> {
    pub(crate) conns: &'a [&'a Connection<Token>],
    pub(crate) policy: &'a VersionPolicy,
}

impl ApiVersionLookup for ClusterVersions<'_> {
    fn version(&self, api: ApiKey) -> Option<i16> {
        let mut min: Option<i16> = None;
        for conn in self.conns {
            let v = conn.versions()?.version(api)?;
            min = Some(min.map_or(v, |m| m.min(v)));
        }
        min.map(|v| v.min(self.policy.our_range(api).max))
    }
}

/// Which API a request is.
pub(crate) fn api_of(request: &RequestKind) -> ApiKey {
    match request {
        RequestKind::Metadata(_) => ApiKey::Metadata,
        RequestKind::FindCoordinator(_) => ApiKey::FindCoordinator,
        RequestKind::JoinGroup(_) => ApiKey::JoinGroup,
        RequestKind::SyncGroup(_) => ApiKey::SyncGroup,
        RequestKind::Heartbeat(_) => ApiKey::Heartbeat,
        RequestKind::LeaveGroup(_) => ApiKey::LeaveGroup,
        RequestKind::OffsetFetch(_) => ApiKey::OffsetFetch,
        RequestKind::OffsetCommit(_) => ApiKey::OffsetCommit,
        RequestKind::ListOffsets(_) => ApiKey::ListOffsets,
        RequestKind::Fetch(_) => ApiKey::Fetch,
        RequestKind::Produce(_) => ApiKey::Produce,
        RequestKind::InitProducerId(_) => ApiKey::InitProducerId,
        RequestKind::CreateTopics(_) => ApiKey::CreateTopics,
        _ => ApiKey::ApiVersions,
    }
}
