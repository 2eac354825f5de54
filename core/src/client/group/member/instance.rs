//! Static membership (KIP-345, `group.instance.id`): the versions it needs, the instance id
//! each request carries, and fencing.
//!
//! A static member sends its instance id in JoinGroup (v5+), SyncGroup (v3+), Heartbeat
//! (v3+), OffsetCommit (v7+) and, when it leaves at all, in LeaveGroup's `members` (v3+); the
//! transactional producer sends it in TxnOffsetCommit through
//! [`GroupMember::group_metadata`]. A broker (or a version cap) below those versions is
//! refused before the first JoinGroup ([`GroupError::StaticMembershipUnsupported`]): the
//! member never falls back to dynamic membership without saying so.
//!
//! What the coordinator does with a static member (Kafka's `GroupCoordinator`):
//! - it joins without the `MEMBER_ID_REQUIRED` round trip;
//! - rejoining with an empty member id under a known instance id while the group is stable
//!   (a restart within the session timeout), it gets a new member id, the current generation
//!   and, at SyncGroup, its previous assignment: no rebalance. If it was the leader, JoinGroup
//!   v9+ says so with `skip_assignment` (the member must not assign: it syncs with no
//!   assignments, and the coordinator keeps the stored ones); before v9 the answer names the
//!   old leader id, so the member syncs as a follower. Either way the member syncs with an
//!   empty list, which [`on_join`](GroupMember::on_join) does for both;
//! - the instance it replaced gets FENCED_INSTANCE_ID on its next request: fatal
//!   ([`GroupError::FencedInstance`]);
//! - UNKNOWN_MEMBER_ID (the session expired and the member was removed): the member rejoins
//!   with an empty member id and the same instance id, as a dynamic member would.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::StrBytes;

use super::{GroupMember, Phase};
use crate::client::ApiVersionLookup;
use crate::client::group::GroupError;
use crate::client::group::offsets::OFFSET_COMMIT_VERSIONS;

/// The first version of each API a static member uses that carries `group_instance_id`.
pub const STATIC_MEMBERSHIP_VERSIONS: [(ApiKey, i16); 4] = [
    (ApiKey::JoinGroup, 5),
    (ApiKey::SyncGroup, 3),
    (ApiKey::Heartbeat, 3),
    (ApiKey::OffsetCommit, 7),
];

/// LeaveGroup carries instance ids from v3 (its `members` list).
pub(super) const LEAVE_GROUP_STATIC_VERSION: i16 = 3;

impl GroupMember {
    /// The configured `group.instance.id`, if this is a static member.
    pub fn group_instance_id(&self) -> Option<&str> {
        self.config.group_instance_id.as_deref()
    }

    /// The instance id for a request of `version` where the field exists from `since`
    /// (`None` for a dynamic member, and below `since`).
    pub(super) fn instance_id_at(&self, version: i16, since: i16) -> Option<StrBytes> {
        let id = self.config.group_instance_id.as_ref()?;
        (version >= since).then(|| StrBytes::from_string(id.clone()))
    }

    /// For a static member: `true` when every API it uses carries the instance id at the
    /// versions offered; otherwise the member fails with
    /// [`GroupError::StaticMembershipUnsupported`] and `false`. Always `true` for a dynamic
    /// member.
    pub(super) fn static_versions_usable(&mut self, versions: &dyn ApiVersionLookup) -> bool {
        let Some(instance_id) = self.config.group_instance_id.clone() else {
            return true;
        };
        for (api, needed) in STATIC_MEMBERSHIP_VERSIONS {
            let offered = versions.version(api);
            let usable = match api {
                ApiKey::OffsetCommit => offered.filter(|v| OFFSET_COMMIT_VERSIONS.contains(v)),
                _ => offered,
            };
            if usable.is_none_or(|v| v < needed) {
                self.fail(GroupError::StaticMembershipUnsupported {
                    instance_id,
                    api,
                    version: offered,
                    needed,
                });
                return false;
            }
        }
        true
    }

    /// FENCED_INSTANCE_ID in the answer to `api`: another instance joined under our instance
    /// id. The member stops for good; returns the error.
    pub(super) fn fenced(&mut self, api: ApiKey) -> GroupError {
        let already_failed = self.phase == Phase::Failed;
        let error = match &self.config.group_instance_id {
            Some(instance_id) => GroupError::FencedInstance {
                instance_id: instance_id.clone(),
                api,
            },
            // Only static members can be fenced; a coordinator saying so to a dynamic one is
            // answering nonsense, still fatal.
            None => GroupError::Fatal {
                api,
                error: ResponseError::FencedInstanceId,
            },
        };
        if !already_failed {
            self.fail(error.clone());
        }
        error
    }
}
