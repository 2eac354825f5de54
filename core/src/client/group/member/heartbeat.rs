//! Staying in the group while stable: a Heartbeat every `heartbeat_interval`, its answers
//! (a rebalance starting, membership lost), and the session timeout.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{ApiKey, HeartbeatRequest, HeartbeatResponse, RequestKind};
use kafka_protocol::protocol::StrBytes;

use super::{GroupMember, HEARTBEAT_VERSIONS, Phase};
use crate::client::group::GroupError;
use crate::client::{ApiVersionLookup, Outbound};
use crate::time::Instant;

impl GroupMember {
    /// The Heartbeat due at `now`; the next one is due an interval later.
    pub(super) fn heartbeat_request(
        &mut self,
        now: Instant,
        versions: &dyn ApiVersionLookup,
    ) -> Option<Outbound> {
        let version = self.version(versions, ApiKey::Heartbeat, HEARTBEAT_VERSIONS)?;
        self.next_heartbeat_at = now + self.config.heartbeat_interval;
        let request = HeartbeatRequest::default()
            .with_group_id(self.group_id().into())
            .with_generation_id(self.generation)
            .with_member_id(StrBytes::from_string(self.member_id.clone()))
            .with_group_instance_id(self.instance_id_at(version, 3));
        Some(self.send(ApiKey::Heartbeat, RequestKind::Heartbeat(request), version))
    }

    /// Takes a Heartbeat answer. A stale one (the member is no longer stable) changes nothing.
    pub(super) fn on_heartbeat(
        &mut self,
        r: HeartbeatResponse,
        now: Instant,
    ) -> Result<(), GroupError> {
        self.in_flight = None;
        if self.phase != Phase::Stable {
            return Ok(());
        }
        match ResponseError::try_from_code(r.error_code) {
            None => self.last_heartbeat_ok = now,
            Some(ResponseError::RebalanceInProgress) => self.start_rebalance(now),
            Some(error @ (ResponseError::UnknownMemberId | ResponseError::IllegalGeneration)) => {
                self.lose_membership(error, now)
            }
            Some(ResponseError::FencedInstanceId) => return Err(self.fenced(ApiKey::Heartbeat)),
            Some(
                ResponseError::NotCoordinator
                | ResponseError::CoordinatorNotAvailable
                | ResponseError::CoordinatorLoadInProgress,
            ) => self.coordinator_lost(now),
            Some(error) if error.is_retriable() => {
                tracing::debug!(%error, "heartbeat failed, will retry");
            }
            Some(error) => return Err(self.fatal(ApiKey::Heartbeat, error)),
        }
        Ok(())
    }

    /// Membership is lost when no heartbeat succeeded within the session timeout.
    pub(super) fn check_session(&mut self, now: Instant) {
        if self.phase == Phase::Stable && now >= self.session_deadline() {
            tracing::info!("no successful heartbeat within the session timeout");
            self.lose_membership(ResponseError::UnknownMemberId, now);
            self.coordinator_lost(now);
        }
    }

    /// When the session ends without a successful heartbeat.
    pub(super) fn session_deadline(&self) -> Instant {
        self.last_heartbeat_ok + self.config.session_timeout
    }
}
