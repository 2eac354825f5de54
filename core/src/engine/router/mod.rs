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
//!
//! # Files
//! `mod.rs` (state, getters, polls), `sockets.rs` (connect, the adapter's reports, frames,
//! timeouts, drops), `requests.rs` (queueing, resolving and sending requests), `peer.rs` (one
//! endpoint and its socket), `reauth.rs` (SASL re-authentication), `codec.rs`, `jitter.rs`,
//! `fallback.rs`.
//!
//! # SASL
//! With SASL configured, a connection is not ready (takes no request) until its wire
//! [`Connection`](crate::wire::connection::Connection) authenticated; each SASL request gets
//! the request timeout. A failed authentication is [`Routed::Fatal`]. Re-authentication
//! (KIP-368) is in `reauth.rs`.

mod codec;
mod fallback;
mod jitter;
mod peer;
mod reauth;
mod requests;
mod sockets;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};

use kafka_protocol::messages::ApiKey;

use self::fallback::VersionFallback;
use self::jitter::Jitter;
use self::peer::{Peer, PeerKey};
use super::deadline::{Earliest, TimeoutReason};
use super::error::EngineError;
use super::metrics::ConnectionMetrics;
use super::output::Output;
use super::shared::{Component, ConnectionId, Routed};
use crate::client::{ApiVersionLookup, BrokerId, Outbound, Target};
use crate::time::{Duration, Instant};
use crate::wire::connection::ConnectionConfig;

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
    /// SCRAM nonce seeds and re-authentication jitter: a stream of its own, so that SASL
    /// draws never shift the reconnect jitter (seeded runs replay the same with and without
    /// SASL).
    sasl_random: Jitter,
    fallback: VersionFallback,
    /// Connect, Transmit and Close for the adapter, in order.
    transport: VecDeque<Output>,
    routed: VecDeque<Routed>,
    now: Instant,
    /// Sockets opened and closed, sessions re-authenticated.
    counters: ConnectionMetrics,
}

impl Router {
    /// A router that knows the bootstrap servers (and any brokers) in `addresses`.
    pub(crate) fn new(
        config: RouterConfig,
        addresses: impl IntoIterator<Item = (BrokerId, String, i32)>,
        now: Instant,
    ) -> Self {
        let jitter = Jitter::new(config.random_seed);
        // Any fixed odd constant gives an independent SplitMix64 stream from the same seed.
        let sasl_random = Jitter::new(config.random_seed ^ 0xA5A5_5A5A_C3C3_3C3D);
        let mut router = Self {
            config,
            peers: BTreeMap::new(),
            sockets: BTreeMap::new(),
            next_id: 0,
            pending: VecDeque::new(),
            jitter,
            sasl_random,
            fallback: VersionFallback::default(),
            transport: VecDeque::new(),
            routed: VecDeque::new(),
            now,
            counters: ConnectionMetrics::default(),
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
        earliest.offer(
            self.peers
                .values()
                .filter_map(|p| p.socket().and_then(|s| s.reauth_at))
                .min(),
            TimeoutReason::Reauthentication,
        );
    }

    /// The earliest time a general connection may be opened again (not before now).
    pub(crate) fn earliest_general_reconnect(&self) -> Option<Instant> {
        self.general_peers()
            .filter_map(|(_, p)| p.retry_at())
            .min()
            .map(|at| at.max(self.now))
    }

    /// The connection counters (they only grow).
    pub(crate) fn connection_metrics(&self) -> ConnectionMetrics {
        self.counters
    }

    /// How many transport outputs wait for the adapter.
    pub(crate) fn transport_len(&self) -> usize {
        self.transport.len()
    }

    // ---- mutators (the adapter's reports: `sockets.rs`; requests: `requests.rs`) ------------

    /// Records (or updates) the address of `broker`.
    pub(crate) fn set_address(&mut self, broker: BrokerId, host: String, port: i32) {
        for lane in [Lane::General, Lane::Fetch, Lane::Group] {
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

    /// The connection settings for `broker`: the engine's, with this broker's fallback caps
    /// and a fresh seed for its SCRAM nonces.
    fn connection_config(&mut self, broker: BrokerId) -> ConnectionConfig {
        let mut config = self.config.connection.clone();
        config.nonce_seed = self.sasl_random.next_u64();
        for (api, cap) in self.fallback.caps_of(broker) {
            config.policy = std::mem::take(&mut config.policy).cap(api, cap);
        }
        config
    }
}

/// The version table components build requests for: per API, the smallest of the versions
/// negotiated with the ready connections (brokers of one cluster normally agree), lowered by
/// the lowest fallback cap any broker has for it: a request may be built while its broker's
/// connection is down (so not among the ready ones) and sent on the next one, which
/// negotiates with that broker's caps.
pub(crate) struct ClusterVersions<'a> {
    router: &'a Router,
}

impl ApiVersionLookup for ClusterVersions<'_> {
    fn version(&self, api: ApiKey) -> Option<i16> {
        let cap = self.router.fallback.lowest_cap(api).unwrap_or(i16::MAX);
        let mut min: Option<i16> = None;
        for peer in self.router.peers.values() {
            // Ready connections, and those re-authenticating (their versions stay valid).
            let Some(versions) = peer.socket().and_then(|s| s.conn.versions()) else {
                continue;
            };
            let range = versions.get(api)?.usable;
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
