//! SASL re-authentication (KIP-368): a broker that returns a session lifetime closes the
//! connection when the session ends, so each connection re-authenticates after 85–95 % of
//! it (jittered, see [`Jitter::reauth_delay`](super::jitter::Jitter::reauth_delay)).
//!
//! Kafka needs the connection idle for the exchange: once due, the connection takes no new
//! request (they wait in `pending`, as for a connection not ready yet), and the exchange
//! starts when the requests in flight are answered. Then it takes requests again.

use kafka_protocol::messages::ApiKey;

use super::Router;
use super::peer::PeerKey;
use crate::engine::error::EngineError;
use crate::time::Duration;

impl Router {
    /// The connection of `key` authenticated, with the broker's session lifetime (0: none):
    /// count it if it re-authenticated, and schedule its (next) re-authentication.
    pub(super) fn authenticated(&mut self, key: PeerKey, session_lifetime_ms: i64) {
        let reauth_at = u64::try_from(session_lifetime_ms)
            .ok()
            .filter(|&ms| ms > 0)
            .map(|ms| self.now + self.sasl_random.reauth_delay(Duration::from_millis(ms)));
        tracing::debug!(broker = key.broker, lane = ?key.lane, session_lifetime_ms, "SASL authenticated");
        if let Some(socket) = self.peer_mut(key).socket_mut() {
            socket.reauth_at = reauth_at;
            socket.reauth_due = false;
            if std::mem::take(&mut socket.reauthenticating) {
                self.counters.reauthentications += 1;
            }
        }
    }

    /// Marks the connections whose re-authentication time came, and starts the exchange on
    /// those that are idle.
    pub(super) fn reauthentications_due(&mut self) {
        let now = self.now;
        let due: Vec<PeerKey> = self
            .peers
            .iter_mut()
            .filter_map(|(&key, peer)| {
                let socket = peer.socket_mut()?;
                let at = socket.reauth_at?;
                (at <= now).then(|| {
                    socket.reauth_at = None;
                    socket.reauth_due = true;
                    key
                })
            })
            .collect();
        for key in due {
            self.start_reauthentication(key);
        }
    }

    /// Starts the re-authentication of `key`'s connection if it is due and idle.
    pub(super) fn start_reauthentication(&mut self, key: PeerKey) {
        let deadline = self.now + self.config.request_timeout;
        let Some(socket) = self.peer_mut(key).socket_mut() else {
            return;
        };
        if !socket.reauth_due || !socket.sent.is_empty() || socket.conn.in_flight_len() > 0 {
            return;
        }
        match socket.conn.start_reauthentication() {
            Ok(()) => {
                socket.reauth_due = false;
                socket.reauthenticating = true;
                socket.sent.push_back((deadline, ApiKey::SaslHandshake));
                tracing::debug!(broker = key.broker, lane = ?key.lane, "SASL re-authentication");
            }
            Err(error) => {
                debug_assert!(false, "an idle, ready connection re-authenticates: {error}");
                self.warn(EngineError::Connection {
                    broker: key.broker,
                    error,
                });
                self.drop_peer(key, true);
            }
        }
    }
}
