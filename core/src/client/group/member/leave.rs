//! Leaving the group: [`GroupMember::leave`], LeaveGroup and [`GroupEvent::Left`].

use kafka_protocol::ResponseError;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::{ApiKey, LeaveGroupRequest, LeaveGroupResponse, RequestKind};
use kafka_protocol::protocol::StrBytes;

use super::instance::LEAVE_GROUP_STATIC_VERSION;
use super::{GroupMember, LEAVE_GROUP_VERSIONS, Phase};
use crate::client::group::{CommitError, GroupEvent};
use crate::client::{ApiVersionLookup, Outbound};
use crate::time::Instant;

impl GroupMember {
    /// Leaves the group: sends LeaveGroup (when a member of a known coordinator), then emits
    /// [`GroupEvent::Left`]. Commit first: commits not yet sent fail with [`CommitError::Left`].
    ///
    /// A static member sends no LeaveGroup unless
    /// [`GroupConfig::static_leave_on_close`](crate::client::group::GroupConfig::static_leave_on_close):
    /// the coordinator keeps its membership and assignment until the session timeout, so an
    /// instance restarted within it takes them back without a rebalance (Kafka Streams closes
    /// the same way). Until then, its tasks do not run anywhere.
    pub fn leave(&mut self, now: Instant) {
        self.observe(now);
        if matches!(self.phase, Phase::Left | Phase::Failed | Phase::Leaving) {
            return;
        }
        for c in self.offsets.take_unsent_commits() {
            self.events.push_back(GroupEvent::CommitFailed {
                id: c.id,
                offsets: c.offsets,
                error: CommitError::Left,
            });
        }
        // Not while it owes the group the follow-up rebalance of a cooperative revoke: restarted
        // within the session, it would take the stored assignment back without one, and the
        // tasks withheld for others would run nowhere (`seed_7564…`).
        let silent = self.config.group_instance_id.is_some()
            && !self.config.static_leave_on_close
            && self.revoke_pending.is_none();
        if silent {
            tracing::info!(
                group_instance_id = self.config.group_instance_id.as_deref(),
                "static member closing without LeaveGroup; the group keeps its assignment until \
                 the session timeout"
            );
        }
        if silent || self.member_id.is_empty() || self.coordinator().is_none() {
            self.finish_leaving();
        } else {
            // A response still outstanding for another request is ignored from now on.
            self.in_flight = None;
            self.phase = Phase::Leaving;
        }
    }

    /// LeaveGroup for this member (v0-2 by `member_id`, v3+ in `members`, with a static
    /// member's instance id).
    pub(super) fn leave_request(&mut self, versions: &dyn ApiVersionLookup) -> Option<Outbound> {
        let version = self.version(versions, ApiKey::LeaveGroup, LEAVE_GROUP_VERSIONS)?;
        let member_id = StrBytes::from_string(self.member_id.clone());
        let request = LeaveGroupRequest::default().with_group_id(self.group_id().into());
        let request = if version >= LEAVE_GROUP_STATIC_VERSION {
            request.with_members(vec![
                MemberIdentity::default()
                    .with_member_id(member_id)
                    .with_group_instance_id(
                        self.instance_id_at(version, LEAVE_GROUP_STATIC_VERSION),
                    ),
            ])
        } else if self.config.group_instance_id.is_some() {
            // LeaveGroup v0-2 cannot name the instance: leaving by member id alone would
            // remove the member but leave the coordinator's static mapping behind.
            tracing::warn!(
                version,
                "LeaveGroup below v3 for a static member; leaving silently"
            );
            self.finish_leaving();
            return None;
        } else {
            request.with_member_id(member_id)
        };
        Some(self.send(
            ApiKey::LeaveGroup,
            RequestKind::LeaveGroup(request),
            version,
        ))
    }

    /// Takes the LeaveGroup answer: the member has left whatever it says.
    pub(super) fn on_leave(&mut self, r: LeaveGroupResponse) {
        self.in_flight = None;
        if let Some(error) = ResponseError::try_from_code(r.error_code) {
            tracing::debug!(%error, "LeaveGroup failed; leaving anyway");
        }
        if self.phase == Phase::Leaving {
            self.finish_leaving();
        }
    }

    /// The member is out of the group for good: [`GroupEvent::Left`].
    pub(super) fn finish_leaving(&mut self) {
        self.phase = Phase::Left;
        self.in_flight = None;
        self.member_id.clear();
        self.generation = -1;
        self.tasks.clear();
        self.events.push_back(GroupEvent::Left);
    }
}
