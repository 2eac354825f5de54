//! Finding the group coordinator: FindCoordinator, and rediscovery with exponential backoff
//! when the coordinator moves or stops answering.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    ApiKey, FindCoordinatorRequest, FindCoordinatorResponse, RequestKind,
};
use kafka_protocol::protocol::StrBytes;

use super::{Coordinator, GroupMember, Phase};
use crate::client::group::{GroupError, GroupEvent};
use crate::client::{Outbound, Target};
use crate::time::{Duration, Instant};

impl GroupMember {
    /// FindCoordinator for our group, built for `version`.
    pub(super) fn find_coordinator_request(&self, version: i16) -> Outbound {
        let key = StrBytes::from_string(self.config.group_id.clone());
        let request = if version >= 4 {
            FindCoordinatorRequest::default().with_coordinator_keys(vec![key])
        } else {
            FindCoordinatorRequest::default().with_key(key)
        };
        // key_type 0 (group) is the default, and the only value v0 allows.
        Outbound {
            target: Target::AnyBroker,
            request: RequestKind::FindCoordinator(request),
            version,
        }
    }

    /// Takes the FindCoordinator answer: the coordinator is known, or looked for again after
    /// a backoff.
    pub(super) fn on_find_coordinator(
        &mut self,
        r: FindCoordinatorResponse,
        now: Instant,
    ) -> Result<(), GroupError> {
        if self.coordinator != Coordinator::Finding {
            return Err(GroupError::UnexpectedResponse {
                api: ApiKey::FindCoordinator,
            });
        }
        let found = r
            .coordinators
            .iter()
            .find(|c| c.key.as_str() == self.config.group_id)
            .or(r.coordinators.first())
            .map(|c| (c.error_code, *c.node_id, c.host.to_string(), c.port))
            .unwrap_or((r.error_code, *r.node_id, r.host.to_string(), r.port));
        let (code, id, host, port) = found;
        match ResponseError::try_from_code(code) {
            None if id >= 0 => {
                tracing::debug!(id, %host, port, "group coordinator found");
                self.coordinator = Coordinator::Known(id);
                self.failures = 0;
                self.events
                    .push_back(GroupEvent::CoordinatorFound { id, host, port });
                Ok(())
            }
            Some(error @ ResponseError::GroupAuthorizationFailed) => {
                Err(self.fatal(ApiKey::FindCoordinator, error))
            }
            other => {
                tracing::debug!(?other, "no group coordinator yet");
                self.coordinator = Coordinator::Unknown {
                    retry_at: now + self.next_backoff(),
                };
                Ok(())
            }
        }
    }

    /// The coordinator moved or stopped answering: look for it again after a backoff. A
    /// heartbeat due is sent as soon as it is found again; a member leaving has left.
    pub(super) fn coordinator_lost(&mut self, now: Instant) {
        if let Coordinator::Known(id) = self.coordinator {
            tracing::debug!(id, "group coordinator lost; rediscovering");
            self.coordinator = Coordinator::Unknown {
                retry_at: now + self.next_backoff(),
            };
            if self.phase == Phase::Stable {
                // The heartbeat in flight will not be answered by a coordinator we trust; the
                // next one goes out as soon as the coordinator is known again.
                self.in_flight = None;
                self.next_heartbeat_at = now;
            }
        }
        if self.phase == Phase::Leaving {
            self.finish_leaving();
        }
    }

    /// The next retry backoff: `retry_backoff` doubled per consecutive failure, capped.
    pub(super) fn next_backoff(&mut self) -> Duration {
        let shift = self.failures.min(20);
        self.failures = self.failures.saturating_add(1);
        self.config
            .retry_backoff
            .saturating_mul(1 << shift)
            .min(self.config.retry_backoff_max)
    }
}
