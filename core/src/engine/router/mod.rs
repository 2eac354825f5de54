//! The [`Router`]: the engine's connections to brokers, and nothing else.
//!
//! It keeps one [`Peer`] per endpoint (a bootstrap server, or a broker's general or fetch
//! [`Lane`]), opens sockets through the adapter ([`Output::Connect`]), frames and correlates
//! what comes back, queues requests until their peer is ready, times requests out, backs off
//! reconnects with jitter, and lowers an API's version for a broker that cannot speak a
//! flexible one ([`fallback`]). It never calls a client component: what it routed comes out
//! of [`Router::poll_routed`] as [`Routed`] values (a response for a component, a request
//! that failed, a warning), for the engine to hand on. So the routing rules are tested here
//! on their own, and the engine only glues components together.
//!
//! # Invariants
//! - A [`ConnectionId`] is issued for one `Connect` and never reused; `sockets` maps exactly
//!   the ids of peers that are connecting or up, so a late report about a closed socket finds
//!   nothing and is ignored.
//! - A request is either in `pending` (waiting for its peer), or in flight on exactly one
//!   socket (its token in the wire connection, its deadline in [`Socket::sent`]); when it
//!   leaves either place without an answer, exactly one [`Routed::Failed`] reports it.

mod codec;
mod fallback;
mod jitter;
mod peer;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;

use self::codec::{api_of, decode_response, send_request};
use self::fallback::{DROP_WINDOW, Verdict, VersionFailure, VersionFallback};
use self::jitter::Jitter;
use self::peer::{Peer, PeerKey, PeerState, Token};
use super::deadline::{Earliest, TimeoutReason};
use super::error::EngineError;
use super::output::Output;
use super::shared::{Component, ConnectionId, Routed};
use crate::client::{ApiVersionLookup, BrokerId, Outbound, Target};
use crate::time::{Duration, Instant};
use crate::wire::connection::{ConnectionConfig, ConnectionError, Received};

pub(crate) use self::peer::Lane;

/// The router's settings (from the engine's).
#[derive(Debug, Clone)]
pub(crate) struct RouterConfig {
    /// Client id and the version policy every connection negotiates with.
    pub(crate) connection: ConnectionConfig,
    /// A request unanswered (or unsent) this long fails and closes its connection.
    pub(crate) request_timeout: Duration,
    /// The same for JoinGroup, which the coordinator holds for up to the rebalance timeout.
    pub(crate) join_timeout: Duration,
    /// First reconnect delay; doubles per failure in a row.
    pub(crate) reconnect_backoff: Duration,
    /// Largest reconnect delay.
    pub(crate) reconnect_backoff_max: Duration,
    /// Seeds the reconnect jitter.
    pub(crate) random_seed: u64,
}

/// A request waiting for its peer to be ready.
struct Pending {
    component: Component,
    api: ApiKey,
    outbound: Outbound,
    queued: Instant,
}

/// See the [module docs](self).
pub(crate) struct Router {
    config: RouterConfig,
    peers: BTreeMap<PeerKey, Peer>,
    /// The peer of every socket being opened or open.
    sockets: BTreeMap<ConnectionId, PeerKey>,
    next_id: u64,
    pending: VecDeque<Pending>,
    jitter: Jitter,
    fallback: VersionFallback,
    /// Connect, Transmit and Close for the adapter, in order.
    transport: VecDeque<Output>,
    routed: VecDeque<Routed>,
    now: Instant,
}

impl Router {
    /// A router that knows the bootstrap servers (and any brokers) in `addresses`.
    pub(crate) fn new(
        config: RouterConfig,
        addresses: impl IntoIterator<Item = (BrokerId, String, i32)>,
        now: Instant,
    ) -> Self {
        let jitter = Jitter::new(config.random_seed);
        let mut router = Self {
            config,
            peers: BTreeMap::new(),
            sockets: BTreeMap::new(),
            next_id: 0,
            pending: VecDeque::new(),
            jitter,
            fallback: VersionFallback::default(),
            transport: VecDeque::new(),
            routed: VecDeque::new(),
            now,
        };
        for (broker, host, port) in addresses {
            router.set_address(broker, host, port);
        }
        router
    }

    // ---- getters ---------------------------------------------------------------------------

    /// Whether some connection finished its ApiVersions exchange (components can only build
    /// requests once one did).
    pub(crate) fn any_ready(&self) -> bool {
        self.peers.values().any(Peer::is_ready)
    }

    /// Whether no general connection is open or opening: nothing but Fetch can move.
    pub(crate) fn all_general_down(&self) -> bool {
        self.general_peers().all(|(_, p)| p.is_down())
    }

    /// The API versions components build requests for: see [`ClusterVersions`].
    pub(crate) fn versions(&self) -> ClusterVersions<'_> {
        ClusterVersions { router: self }
    }

    /// Offers the router's deadlines to `earliest`: request answer deadlines, queued request
    /// deadlines, and reconnects of peers that requests wait for.
    pub(crate) fn offer_deadlines(&self, earliest: &mut Earliest) {
        for peer in self.peers.values() {
            earliest.offer(
                peer.socket().and_then(|s| s.earliest_deadline()),
                TimeoutReason::RequestDeadline,
            );
            if !self.pending.is_empty() {
                earliest.offer(
                    peer.retry_at().filter(|&at| at > self.now),
                    TimeoutReason::Reconnect,
                );
            }
        }
        earliest.offer(
            self.pending
                .front()
                .map(|p| p.queued + self.config.request_timeout),
            TimeoutReason::QueuedRequestDeadline,
        );
    }

    /// The earliest time a general connection may be opened again (not before now).
    pub(crate) fn earliest_general_reconnect(&self) -> Option<Instant> {
        self.general_peers()
            .filter_map(|(_, p)| p.retry_at())
            .min()
            .map(|at| at.max(self.now))
    }

    /// How many transport outputs wait for the adapter.
    pub(crate) fn transport_len(&self) -> usize {
        self.transport.len()
    }

    // ---- handle_* (the adapter's reports) --------------------------------------------------

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
                break;
            }
        }
    }

    /// Time passed: fail requests that waited too long for a connection or an answer.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
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

    // ---- mutators --------------------------------------------------------------------------

    /// Records (or updates) the address of `broker`.
    pub(crate) fn set_address(&mut self, broker: BrokerId, host: String, port: i32) {
        for lane in [Lane::General, Lane::Fetch] {
            if let Some(peer) = self.peers.get_mut(&PeerKey { broker, lane })
                && (peer.host != host || peer.port != port)
            {
                peer.host.clone_from(&host);
                peer.port = port;
            }
        }
        self.peers
            .entry(PeerKey::general(broker))
            .or_insert_with(|| Peer::new(host, port));
    }

    /// Queues a component's request; [`Router::flush`] sends it once its peer is ready.
    pub(crate) fn send(&mut self, component: Component, outbound: Outbound, now: Instant) {
        self.advance(now);
        let api = api_of(&outbound.request)
            .expect("components build only requests the engine sends (see codec::engine_requests)");
        self.pending.push_back(Pending {
            component,
            api,
            outbound,
            queued: self.now,
        });
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

    /// Sends the queued requests whose peers are ready, and opens connections for the others.
    /// `coordinator` is the group coordinator, for [`Target::Coordinator`].
    pub(crate) fn flush(&mut self, coordinator: Option<BrokerId>) -> bool {
        let mut progress = false;
        let mut waiting = VecDeque::new();
        while let Some(pending) = self.pending.pop_front() {
            let Some(key) = self.resolve(&pending, coordinator) else {
                if matches!(pending.outbound.target, Target::Broker(_)) {
                    // No address for that broker: let the component plan again.
                    self.fail_request(pending.component, pending.outbound.target, pending.api);
                    progress = true;
                } else {
                    waiting.push_back(pending);
                }
                continue;
            };
            if !self.peer(key).is_ready() {
                if self.peer(key).is_down() {
                    progress |= self.connect(key);
                }
                waiting.push_back(pending);
                continue;
            }
            progress = true;
            self.transmit_request(key, pending);
        }
        self.pending = waiting;
        progress
    }

    /// Moves the frames the connections produced to the transport queue.
    pub(crate) fn transmit(&mut self) -> bool {
        let mut progress = false;
        for peer in self.peers.values_mut() {
            let Some(socket) = peer.socket_mut() else {
                continue;
            };
            while let Some(bytes) = socket.conn.poll_transmit() {
                self.transport.push_back(Output::Transmit {
                    connection: socket.id,
                    bytes,
                });
                progress = true;
            }
        }
        progress
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
            peer.close(now);
        }
        self.sockets.clear();
        self.pending.clear();
    }

    /// Drops the queued transport outputs of socket `id` (it is gone: its frames can never
    /// be written). Returns whether the adapter knows the socket, i.e. its `Connect` had left
    /// the queue already (then it must be told to close it).
    fn forget_transport(&mut self, id: ConnectionId) -> bool {
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

    // ---- poll_* ----------------------------------------------------------------------------

    /// The next Connect, Transmit or Close for the adapter.
    pub(crate) fn poll_transport(&mut self) -> Option<Output> {
        self.transport.pop_front()
    }

    /// The next thing routed, for the engine to hand to a component.
    pub(crate) fn poll_routed(&mut self) -> Option<Routed> {
        self.routed.pop_front()
    }

    // ---- internals -------------------------------------------------------------------------

    fn advance(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }

    fn general_peers(&self) -> impl Iterator<Item = (&PeerKey, &Peer)> {
        self.peers.iter().filter(|(k, _)| k.lane == Lane::General)
    }

    fn peer(&self, key: PeerKey) -> &Peer {
        self.peers
            .get(&key)
            .expect("peers are never removed, and keys come from the map")
    }

    fn peer_mut(&mut self, key: PeerKey) -> &mut Peer {
        self.peers
            .get_mut(&key)
            .expect("peers are never removed, and keys come from the map")
    }

    fn warn(&mut self, error: EngineError) {
        self.routed.push_back(Routed::Warning(error));
    }

    fn fail_request(&mut self, component: Component, target: Target, api: ApiKey) {
        self.routed.push_back(Routed::Failed {
            component,
            target,
            api,
        });
    }

    /// The connection settings for `broker`: the engine's, with this broker's fallback caps.
    fn connection_config(&self, broker: BrokerId) -> ConnectionConfig {
        let mut config = self.config.connection.clone();
        for (api, cap) in self.fallback.caps_of(broker) {
            config.policy = std::mem::take(&mut config.policy).cap(api, cap);
        }
        config
    }

    /// Emits `Connect` for a peer that may connect now.
    fn connect(&mut self, key: PeerKey) -> bool {
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

    /// The peer a request goes to, creating a broker's fetch lane on first use.
    fn resolve(&mut self, pending: &Pending, coordinator: Option<BrokerId>) -> Option<PeerKey> {
        let broker = match pending.outbound.target {
            Target::AnyBroker => {
                return self
                    .general_peers()
                    .filter(|(_, p)| p.is_ready())
                    // Real brokers before bootstrap servers, then the least busy.
                    .min_by_key(|(key, p)| (key.is_bootstrap(), p.in_flight(), key.broker))
                    .map(|(&key, _)| key);
            }
            Target::Broker(id) => id,
            Target::Coordinator => coordinator?,
        };
        let general = PeerKey::general(broker);
        let (host, port) = {
            let peer = self.peers.get(&general)?;
            (peer.host.clone(), peer.port)
        };
        if pending.component != Component::Fetcher || general.is_bootstrap() {
            return Some(general);
        }
        let lane = PeerKey {
            broker,
            lane: Lane::Fetch,
        };
        self.peers
            .entry(lane)
            .or_insert_with(|| Peer::new(host, port));
        Some(lane)
    }

    /// Encodes a request on the ready socket of `key`.
    fn transmit_request(&mut self, key: PeerKey, pending: Pending) {
        let now = self.now;
        let timeout = if pending.api == ApiKey::JoinGroup {
            self.config.join_timeout
        } else {
            self.config.request_timeout
        };
        let token = Token {
            component: pending.component,
            target: pending.outbound.target,
            api: pending.api,
            version: pending.outbound.version,
            sent_at: now,
        };
        let socket = self
            .peer_mut(key)
            .socket_mut()
            .expect("requests are sent only on ready sockets");
        match send_request(
            &mut socket.conn,
            &pending.outbound.request,
            pending.outbound.version,
            token,
        ) {
            Ok(_) => socket.sent.push_back((now + timeout, pending.api)),
            Err(ConnectionError::UnsupportedVersion { api, version, .. })
                if self
                    .fallback
                    .cap(key.broker, api)
                    .is_some_and(|cap| version > cap) =>
            {
                // Built before this broker's fallback lowered the API: the component builds it
                // again at the new version.
                tracing::debug!(
                    broker = key.broker,
                    ?api,
                    version,
                    "request above a fallback cap; rebuilt"
                );
                self.fail_request(pending.component, pending.outbound.target, pending.api);
            }
            Err(error) => {
                self.warn(EngineError::Connection {
                    broker: key.broker,
                    error,
                });
                self.fail_request(pending.component, pending.outbound.target, pending.api);
            }
        }
    }

    /// Handles one frame from the socket of `key`; `false` when the socket was dropped.
    fn handle_frame(&mut self, key: PeerKey, frame: Bytes) -> bool {
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
                self.fallback.succeeded(key.broker, token.api);
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
    fn version_failed(&mut self, broker: BrokerId, token: Token, failure: VersionFailure) {
        match self
            .fallback
            .failed(broker, token.api, token.version, failure)
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
    fn drop_peer(&mut self, key: PeerKey, we_close: bool) {
        let now = self.now;
        let (base, max) = (
            self.config.reconnect_backoff,
            self.config.reconnect_backoff_max,
        );
        let peer = self.peer_mut(key);
        let id = peer.connection_id();
        let connect_failed = matches!(peer.state, PeerState::Connecting { .. }) && !we_close;
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

/// The version table components build requests for: per API, the smallest of the versions
/// negotiated with the ready connections (brokers of one cluster normally agree), each
/// lowered by its broker's fallback cap.
pub(crate) struct ClusterVersions<'a> {
    router: &'a Router,
}

impl ApiVersionLookup for ClusterVersions<'_> {
    fn version(&self, api: ApiKey) -> Option<i16> {
        let mut min: Option<i16> = None;
        for (key, peer) in &self.router.peers {
            let Some(socket) = peer.ready() else {
                continue;
            };
            let range = socket.conn.versions()?.get(api)?.usable;
            let cap = self
                .router
                .fallback
                .cap(key.broker, api)
                .unwrap_or(i16::MAX);
            let v = range.max.min(cap);
            if v < range.min {
                // Capped below what this broker speaks: the reconnect's negotiation decides.
                return None;
            }
            min = Some(min.map_or(v, |m| m.min(v)));
        }
        min
    }
}
