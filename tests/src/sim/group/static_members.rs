//! Static membership (KIP-345) as Kafka's classic `GroupCoordinator` handles it: a member is
//! also known by its `group.instance.id`; a JoinGroup with an empty member id under a known
//! instance id replaces the old member (new member id, same assignment) and, in a stable
//! group whose protocol does not change, answers at once with the current generation: no
//! rebalance. A request naming the instance with another member id is fenced.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{JoinGroupRequest, ResponseKind, SyncGroupResponse};
use kafka_protocol::protocol::StrBytes;

use super::{Delivery, Group, GroupConfig, GroupState, PendingReply, join_error, protocols_of};

/// What a static member's JoinGroup led to.
pub(super) enum StaticJoin {
    /// Answered now.
    Respond(Box<ResponseKind>),
    /// Parked until the rebalance completes.
    Parked,
    /// Not a case of its own: the ordinary join handles it.
    Ordinary,
}

impl Group {
    /// The member id currently registered under `instance_id`.
    fn member_of_instance(&self, instance_id: &StrBytes) -> Option<String> {
        self.members
            .values()
            .find(|m| m.group_instance_id.as_ref() == Some(instance_id))
            .map(|m| m.member_id.clone())
    }

    /// FENCED_INSTANCE_ID when `instance_id` belongs to a member other than `member_id`
    /// (Kafka's `validateCurrentMember`), for SyncGroup, Heartbeat and OffsetCommit.
    pub fn check_instance(
        &self,
        instance_id: Option<&StrBytes>,
        member_id: &str,
    ) -> Result<(), ResponseError> {
        match instance_id.and_then(|id| self.member_of_instance(id)) {
            Some(current) if current != member_id => Err(ResponseError::FencedInstanceId),
            _ => Ok(()),
        }
    }

    /// A JoinGroup carrying a `group.instance.id` (`next_member_id` gives the id to hand
    /// out).
    pub(super) fn static_join(
        &mut self,
        request: &JoinGroupRequest,
        origin: PendingReply,
        next_member_id: &mut dyn FnMut() -> String,
        config: &GroupConfig,
        now: i64,
        out: &mut Vec<Delivery>,
    ) -> StaticJoin {
        let Some(instance_id) = request.group_instance_id.as_ref() else {
            return StaticJoin::Ordinary;
        };
        let Some(old_id) = self.member_of_instance(instance_id) else {
            return StaticJoin::Ordinary;
        };
        if !request.member_id.is_empty() {
            return if request.member_id.as_str() == old_id {
                StaticJoin::Ordinary
            } else {
                StaticJoin::Respond(Box::new(join_error(
                    origin.version,
                    ResponseError::FencedInstanceId,
                    request.member_id.clone(),
                )))
            };
        }
        // A restarted instance: it replaces the old member, keeping its assignment.
        let new_id = next_member_id();
        let old_leader = self.leader.clone();
        let Some(mut member) = self.members.remove(&old_id) else {
            unreachable!("member_of_instance found it");
        };
        self.note_removal(&old_id, super::RemovalReason::Replaced, now);
        // The old instance's parked requests: it was fenced.
        let fenced = ResponseError::FencedInstanceId;
        if let Some(reply) = member.pending_join.take() {
            let id = StrBytes::from_string(old_id.clone());
            out.push((reply, join_error(reply.version, fenced, id)));
        }
        if let Some(reply) = member.pending_sync.take() {
            let response = SyncGroupResponse::default().with_error_code(fenced.code());
            out.push((reply, ResponseKind::SyncGroup(response)));
        }
        let protocols = protocols_of(request);
        let same_protocols = member
            .protocols
            .iter()
            .map(|(n, _)| n)
            .eq(protocols.iter().map(|(n, _)| n));
        member.member_id = new_id.clone();
        member.protocols = protocols;
        member.last_seen = now;
        member.session_timeout_ms = request.session_timeout_ms;
        member.rebalance_timeout_ms = request.rebalance_timeout_ms;
        self.members.insert(new_id.clone(), member);
        let was_leader = old_leader.as_deref() == Some(old_id.as_str());
        if was_leader {
            self.leader = Some(new_id.clone());
        }
        tracing::debug!(%old_id, %new_id, instance = %instance_id, "simulated coordinator: static member replaced");
        match self.state {
            GroupState::Stable if same_protocols => {
                let ResponseKind::JoinGroup(mut response) =
                    self.join_response(&new_id, origin.version)
                else {
                    unreachable!("join_response builds a JoinGroup response");
                };
                if was_leader && origin.version >= 9 {
                    // The leader learns it leads, and must not assign.
                    response.skip_assignment = true;
                } else if was_leader {
                    // Before v9 the answer names the old leader id: the member syncs as a
                    // follower and the stored assignment stands.
                    response.leader = StrBytes::from_string(old_id);
                    response.members.clear();
                }
                StaticJoin::Respond(Box::new(ResponseKind::JoinGroup(response)))
            }
            GroupState::PreparingRebalance => {
                if let Some(member) = self.members.get_mut(&new_id) {
                    member.pending_join = Some(origin);
                }
                self.try_complete_join(now, false, out);
                StaticJoin::Parked
            }
            _ => {
                if let Some(member) = self.members.get_mut(&new_id) {
                    member.pending_join = Some(origin);
                }
                self.prepare_rebalance(false, config, now, out);
                self.try_complete_join(now, false, out);
                StaticJoin::Parked
            }
        }
    }
}
