//! The router's sockets: opening them, what the adapter reports about them, framing and
//! correlating what they carry, timing requests out, and dropping them (backoff, failing
//! their requests, the version fallback).

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;

use super::Router;
use super::codec::decode_response;
use super::fallback::{DROP_WINDOW, Verdict, VersionFailure};
use super::peer::{PeerKey, PeerState, Received as ReceivedBytes, Token};
use crate::client::BrokerId;
use crate::engine::error::EngineError;
use crate::engine::output::Output;
use crate::engine::shared::{ConnectionId, Routed};
use crate::time::Instant;
use crate::wire::connection::{ConnectionError, Received};

impl Router {
    /// The socket `id` opened.
    pub(crate) fn handle_connected(&mut self, id: ConnectionId, now: Instant) {
        self.advance(now);
        // Unknown: the engine closed it while the adapter was connecting.
        let Some(&key) = self.sockets.get(&id) else {
            return;
        };
        let config = self.connection_config(key.broker);
        let deadline = self.now + self.config.request_timeout;
        let peer = self.peer_mut(key);
        match peer.state {
            PeerState::Connecting { id: connecting } if connecting == id => {
                // The ApiVersions exchange that opens the connection is timed like any
                // request: a broker that accepts the socket but never answers must not hang it.
                peer.open(id, config, deadline);
                self.counters.created += 1;
            }
            _ => {
                debug_assert!(false, "{id} reported connected twice");
                tracing::error!(%id, "adapter reported a connection open twice; ignored");
            }
        }
    }

    /// The socket `id` closed, or could not be opened.
    pub(crate) fn handle_disconnected(&mut self, id: ConnectionId, now: Instant) {
        self.advance(now);
        // Unknown: the engine closed it already.
        if let Some(&key) = self.sockets.get(&id) {
            self.drop_peer(key, false);
        }
    }

    /// Bytes read from the socket `id`, in any chunking.
    pub(crate) fn handle_received(&mut self, id: ConnectionId, bytes: &[u8], now: Instant) {
        self.receive(id, ReceivedBytes::Borrowed(bytes), now);
    }

    /// An owned chunk read from the socket `id`: whole frames in it are not copied.
    pub(crate) fn handle_received_chunk(&mut self, id: ConnectionId, chunk: Bytes, now: Instant) {
        self.receive(id, ReceivedBytes::Owned(chunk), now);
    }

    fn receive(&mut self, id: ConnectionId, bytes: ReceivedBytes<'_>, now: Instant) {
        self.advance(now);
        // Unknown: late bytes of a socket the engine closed.
        let Some(&key) = self.sockets.get(&id) else {
            return;
        };
        let Some(socket) = self.peer_mut(key).socket_mut() else {
            debug_assert!(
                false,
                "{id} received bytes before it was reported connected"
            );
            tracing::error!(%id, "adapter reported bytes before the connection opened; ignored");
            return;
        };
        let frames = match socket.push_bytes(bytes) {
            Ok(frames) => frames,
            Err(error) => {
                self.warn(EngineError::Frame {
                    broker: key.broker,
                    error,
                });
                self.drop_peer(key, true);
                return;
            }
        };
        for frame in frames {
            if !self.handle_frame(key, frame) {
                return;
            }
        }
        // Answers may have emptied a connection that waits to re-authenticate.
        self.start_reauthentication(key);
    }

    /// Time passed: fail requests that waited too long for a connection or an answer, and
    /// re-authenticate sessions that are due.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        self.reauthentications_due();
        let now = self.now;
        let late: Vec<(PeerKey, ApiKey)> = self
            .peers
            .iter()
            .filter_map(|(&key, peer)| {
                let socket = peer.socket()?;
                socket
                    .sent
                    .iter()
                    .find(|&&(deadline, _)| deadline <= now)
                    .map(|&(_, api)| (key, api))
            })
            .collect();
        for (key, api) in late {
            self.warn(EngineError::RequestTimeout {
                broker: key.broker,
                api,
            });
            self.drop_peer(key, true);
        }
        let limit = self.config.request_timeout;
        // Queued in time order: the expired ones are at the front.
        while self
            .pending
            .front()
            .is_some_and(|p| p.queued + limit <= now)
        {
            let expired = self.pending.pop_front().expect("the front was just seen");
            self.fail_request(expired.component, expired.outbound.target, expired.api);
        }
    }

    /// Opens a general connection when none is open or opening (components need one to learn
    /// versions and metadata). Returns whether it emitted a `Connect`.
    pub(crate) fn ensure_general_connection(&mut self) -> bool {
        if !self.all_general_down() {
            return false;
        }
        let now = self.now;
        let candidate = self
            .general_peers()
            .filter(|(_, p)| p.may_connect(now))
            // Known brokers and bootstrap servers (-1, -2, … in the order listed) by failures.
            .min_by_key(|(key, p)| (p.failures, key.broker.unsigned_abs()))
            .map(|(&key, _)| key);
        candidate.is_some_and(|key| self.connect(key))
    }

    /// Closes idle bootstrap connections once a broker known by id has a ready general
    /// connection: they duplicate it. They stay known, to fall back on if every broker becomes
    /// unreachable.
    pub(crate) fn release_bootstrap_connections(&mut self) -> bool {
        let replaced = self
            .general_peers()
            .any(|(key, p)| !key.is_bootstrap() && p.is_ready());
        if !replaced {
            return false;
        }
        let idle: Vec<PeerKey> = self
            .general_peers()
            .filter(|(key, p)| {
                key.is_bootstrap()
                    && p.ready()
                        .is_some_and(|s| s.sent.is_empty() && s.conn.in_flight_len() == 0)
            })
            .map(|(&key, _)| key)
            .collect();
        let now = self.now;
        self.counters.closed += idle.len() as u64;
        for &key in &idle {
            let peer = self.peer_mut(key);
            let id = peer.connection_id();
            let unanswered = peer.close(now);
            debug_assert!(unanswered.is_empty(), "only idle connections are released");
            if let Some(id) = id {
                self.sockets.remove(&id);
                if self.forget_transport(id) {
                    self.transport.push_back(Output::Close { connection: id });
                }
            }
        }
        !idle.is_empty()
    }

    /// Closes every connection (the engine stopped); their requests are dropped unanswered.
    pub(crate) fn close_all(&mut self) {
        let now = self.now;
        let ids: Vec<ConnectionId> = self.sockets.keys().copied().collect();
        for id in ids {
            if self.forget_transport(id) {
                self.transport.push_back(Output::Close { connection: id });
            }
        }
        for peer in self.peers.values_mut() {
            if peer.is_up() {
                self.counters.closed += 1;
            }
            peer.close(now);
        }
        self.sockets.clear();
        self.pending.clear();
    }

    /// Drops the queued transport outputs of socket `id` (it is gone: its frames can never
    /// be written). Returns whether the adapter knows the socket, i.e. its `Connect` had left
    /// the queue already (then it must be told to close it).
    pub(super) fn forget_transport(&mut self, id: ConnectionId) -> bool {
        let mut connect_queued = false;
        self.transport.retain(|o| match o {
            Output::Connect { connection, .. } if *connection == id => {
                connect_queued = true;
                false
            }
            Output::Transmit { connection, .. } => *connection != id,
            _ => true,
        });
        !connect_queued
    }

    /// Emits `Connect` for a peer that may connect now.
    pub(super) fn connect(&mut self, key: PeerKey) -> bool {
        let now = self.now;
        let id = ConnectionId(self.next_id);
        let peer = self.peer_mut(key);
        if !peer.may_connect(now) {
            return false;
        }
        peer.state = PeerState::Connecting { id };
        let (host, port) = (peer.host.clone(), peer.port);
        self.next_id += 1;
        self.sockets.insert(id, key);
        self.transport.push_back(Output::Connect {
            connection: id,
            host,
            port,
        });
        true
    }

    /// Handles one frame from the socket of `key`; `false` when the socket was dropped.
    pub(super) fn handle_frame(&mut self, key: PeerKey, frame: Bytes) -> bool {
        let now = self.now;
        let request_timeout = self.config.request_timeout;
        let socket = self
            .peer_mut(key)
            .socket_mut()
            .expect("frames come only from open sockets");
        let response = match socket.conn.handle_frame(frame) {
            Ok(Received::Response(response)) => {
                socket.sent.pop_front();
                response
            }
            Ok(Received::Negotiated) => {
                socket.sent.clear();
                return true;
            }
            Ok(Received::Authenticating { api }) => {
                // The next SASL request, timed like any request.
                socket.sent.clear();
                socket.sent.push_back((now + request_timeout, api));
                return true;
            }
            Ok(Received::Authenticated {
                session_lifetime_ms,
            }) => {
                socket.sent.clear();
                self.authenticated(key, session_lifetime_ms);
                return true;
            }
            Err(ConnectionError::Authentication { mechanism, error }) => {
                // Wrong credentials stay wrong: stop, never retry them in a reconnect loop.
                let peer = self.peer(key);
                let broker = format!("{}:{}", peer.host, peer.port);
                self.routed
                    .push_back(Routed::Fatal(EngineError::Authentication {
                        broker,
                        mechanism,
                        reason: error,
                    }));
                self.drop_peer(key, true);
                return false;
            }
            Ok(Received::NegotiationRetry { .. }) => {
                // The retried ApiVersions request gets a fresh deadline.
                socket.sent.clear();
                socket
                    .sent
                    .push_back((now + request_timeout, ApiKey::ApiVersions));
                return true;
            }
            Err(ConnectionError::Negotiation(error)) => {
                // A broker lacking a required API cannot serve this application.
                self.routed
                    .push_back(Routed::Fatal(EngineError::UnsupportedBroker {
                        broker: key.broker,
                        error,
                    }));
                self.drop_peer(key, true);
                return false;
            }
            Err(error) => {
                let fatal = error.is_fatal();
                self.warn(EngineError::Connection {
                    broker: key.broker,
                    error,
                });
                if fatal {
                    self.drop_peer(key, true);
                }
                return !fatal;
            }
        };
        let token = response.token;
        match decode_response(&response) {
            Ok(response) => {
                self.fallback
                    .succeeded(key.broker, token.api, token.version);
                self.routed.push_back(Routed::Response {
                    component: token.component,
                    broker: key.broker,
                    response,
                });
                true
            }
            Err(error) => {
                self.warn(EngineError::Connection {
                    broker: key.broker,
                    error,
                });
                self.version_failed(key.broker, token, VersionFailure::Undecodable);
                self.fail_request(token.component, token.target, token.api);
                self.drop_peer(key, true);
                false
            }
        }
    }

    /// A request may have failed for its version: fall back, or give up (see [`fallback`]).
    pub(super) fn version_failed(
        &mut self,
        broker: BrokerId,
        token: Token,
        failure: VersionFailure,
    ) {
        match self
            .fallback
            .failed(broker, token.api, token.version, failure, self.now)
        {
            Verdict::Retry => {}
            Verdict::FellBack { caps } => self.warn(EngineError::VersionFallback {
                broker,
                api: token.api,
                version: token.version,
                caps,
            }),
            Verdict::GiveUp { failures } => {
                self.routed
                    .push_back(Routed::Fatal(EngineError::BrokerApiUnusable {
                        broker,
                        api: token.api,
                        version: token.version,
                        failures,
                    }))
            }
        }
    }

    /// Drops the socket of `key` (emitting `Close` when we close it), schedules the reconnect
    /// and fails the requests that were in flight on it.
    pub(super) fn drop_peer(&mut self, key: PeerKey, we_close: bool) {
        let now = self.now;
        let (base, max) = (
            self.config.reconnect_backoff,
            self.config.reconnect_backoff_max,
        );
        let peer = self.peer_mut(key);
        let id = peer.connection_id();
        let connect_failed = matches!(peer.state, PeerState::Connecting { .. }) && !we_close;
        let was_up = peer.is_up();
        peer.failures = peer.failures.saturating_add(1);
        let failures = peer.failures;
        let address = (peer.host.clone(), peer.port);
        let backoff = base
            .saturating_mul(1_u64 << failures.clamp(1, 21).saturating_sub(1))
            .min(max);
        // 80–100 % of the backoff, so clients that lost a broker together do not come back
        // together (see `jitter`).
        let delay = self.jitter.scale(backoff);
        tracing::debug!(broker = key.broker, lane = ?key.lane, failures, %delay, "reconnect scheduled");
        let unanswered = self.peer_mut(key).close(now + delay);
        if was_up {
            self.counters.closed += 1;
            self.counters.lost += u64::from(!we_close);
        }
        if let Some(id) = id {
            self.sockets.remove(&id);
            if self.forget_transport(id) && we_close {
                self.transport.push_back(Output::Close { connection: id });
            }
        }
        if connect_failed && failures.is_power_of_two() {
            // Visible without debug logs (a wrong bootstrap address would otherwise look like
            // an instance stuck in rebalancing), but exponentially rarer while it lasts.
            self.warn(EngineError::ConnectFailed {
                broker: key.broker,
                host: address.0,
                port: address.1,
                attempts: failures,
            });
        }
        if !we_close && let Some(&oldest) = unanswered.first() {
            // The broker (or the network) dropped requests we were waiting for: worth seeing,
            // e.g. a broker that closes the connection in reply to a request it cannot parse.
            self.warn(EngineError::Disconnected {
                broker: key.broker,
                unanswered: unanswered.iter().map(|t| t.api).collect(),
            });
            // Brokers answer in order: the oldest is the one it was working on.
            if now.saturating_duration_since(oldest.sent_at) <= DROP_WINDOW {
                self.version_failed(key.broker, oldest, VersionFailure::Dropped);
            }
        }
        for token in unanswered {
            self.fail_request(token.component, token.target, token.api);
        }
        self.routed.push_back(Routed::Lost { broker: key.broker });
    }
}
