//! Leaving the group: [`GroupMember::leave`], LeaveGroup and [`GroupEvent::Left`].

use kafka_protocol::ResponseError;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::{ApiKey, LeaveGroupRequest, LeaveGroupResponse, RequestKind};
use kafka_protocol::protocol::StrBytes;

use super::{GroupMember, LEAVE_GROUP_VERSIONS, Phase};
use crate::client::group::{CommitError, GroupEvent};
use crate::client::{ApiVersionLookup, Outbound};
use crate::time::Instant;

impl GroupMember {
    /// Leaves the group: sends LeaveGroup (when a member of a known coordinator), then emits
    /// [`GroupEvent::Left`]. Commit first: commits not yet sent fail with [`CommitError::Left`].
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
        if self.member_id.is_empty() || self.coordinator().is_none() {
            self.finish_leaving();
        } else {
            // A response still outstanding for another request is ignored from now on.
            self.in_flight = None;
            self.phase = Phase::Leaving;
        }
    }

    /// LeaveGroup for this member (v0-2 by `member_id`, v3+ in `members`).
    pub(super) fn leave_request(&mut self, versions: &dyn ApiVersionLookup) -> Option<Outbound> {
        let version = self.version(versions, ApiKey::LeaveGroup, LEAVE_GROUP_VERSIONS)?;
        let member_id = StrBytes::from_string(self.member_id.clone());
        let request = LeaveGroupRequest::default().with_group_id(self.group_id().into());
        let request = if version >= 3 {
            request.with_members(vec![MemberIdentity::default().with_member_id(member_id)])
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
