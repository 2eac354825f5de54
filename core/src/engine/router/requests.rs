//! The router's requests: queued until their peer is ready, resolved to a peer (a broker's
//! fetch lane for Fetch, its group lane for JoinGroup and SyncGroup), encoded on its socket, and
//! moved to the transport queue.

use std::collections::VecDeque;

use kafka_protocol::messages::ApiKey;

use super::codec::{api_of, send_request};
use super::peer::{Peer, PeerKey, Token};
use super::{Lane, Pending, Router};
use crate::client::{BrokerId, Outbound, Target};
use crate::engine::error::EngineError;
use crate::engine::output::Output;
use crate::engine::shared::Component;
use crate::time::Instant;
use crate::wire::connection::ConnectionError;

impl Router {
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

    /// The peer a request goes to, creating a broker's fetch or group lane on first use.
    pub(super) fn resolve(
        &mut self,
        pending: &Pending,
        coordinator: Option<BrokerId>,
    ) -> Option<PeerKey> {
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
        let lane = match pending.api {
            _ if general.is_bootstrap() => return Some(general),
            _ if pending.component == Component::Fetcher => Lane::Fetch,
            ApiKey::JoinGroup | ApiKey::SyncGroup => Lane::Group,
            _ => return Some(general),
        };
        let lane = PeerKey { broker, lane };
        self.peers
            .entry(lane)
            .or_insert_with(|| Peer::new(host, port));
        Some(lane)
    }

    /// Encodes a request on the ready socket of `key`.
    pub(super) fn transmit_request(&mut self, key: PeerKey, pending: Pending) {
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
            Err(error) => {
                let above_cap = matches!(
                    error,
                    ConnectionError::UnsupportedVersion { api, version, .. }
                        if self.fallback.cap(key.broker, api).is_some_and(|cap| version > cap)
                );
                if above_cap {
                    // Built before this broker's fallback lowered the API: the component
                    // builds it again at the new version.
                    tracing::debug!(broker = key.broker, %error, "request above a fallback cap");
                } else {
                    self.warn(EngineError::Connection {
                        broker: key.broker,
                        error,
                    });
                }
                // Components match answers and failures to their requests in order, per
                // broker: this one must not fail ahead of older ones still on the wire. Drop
                // the socket first, failing those (oldest first), then this one.
                self.drop_peer(key, true);
                self.fail_request(pending.component, pending.outbound.target, pending.api);
            }
        }
    }
}
