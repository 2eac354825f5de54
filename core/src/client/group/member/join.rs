//! Joining and rebalancing: JoinGroup, the leader's assignment, SyncGroup, and the
//! transitions out of a generation (revoke on rebalance, membership lost).

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, JoinGroupRequest, JoinGroupResponse, RequestKind, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::{GroupMember, JOIN_GROUP_VERSIONS, Phase, Previous, SYNC_GROUP_VERSIONS};
use crate::client::group::assignor::{self, MemberAssignment, MemberSubscription};
use crate::client::group::protocol::{self, Assignment, Subscription};
use crate::client::group::{CommitError, GroupError, GroupEvent};
use crate::client::{ApiVersionLookup, Outbound};
use crate::time::Instant;

impl GroupMember {
    /// Records partition counts of source topics (from metadata), used when this member leads
    /// an assignment; resumes an assignment that waited for them.
    pub fn set_partition_counts(&mut self, counts: impl IntoIterator<Item = (String, i32)>) {
        self.partition_counts.extend(counts);
        if let Phase::AwaitingPartitionCounts { members } = &mut self.phase {
            let members = std::mem::take(members);
            self.lead_assignment(members);
        }
    }

    /// The engine committed and closed the tasks of the last [`GroupEvent::Revoke`]: the member
    /// may rejoin (once its queued commits are answered).
    pub fn revoke_done(&mut self, now: Instant) {
        self.observe(now);
        if let Phase::Revoking { done } = &mut self.phase {
            *done = true;
        }
    }

    /// JoinGroup with our subscription (and the tasks we owned, for stickiness). Commits of an
    /// ended generation still queued fail first.
    pub(super) fn join_request(&mut self, versions: &dyn ApiVersionLookup) -> Option<Outbound> {
        let version = self.version(versions, ApiKey::JoinGroup, JOIN_GROUP_VERSIONS)?;
        if !self.static_versions_usable(versions) {
            return None;
        }
        // Commits of an ended generation that were never sent cannot succeed any more.
        for c in self.offsets.take_unsent_commits() {
            self.events.push_back(GroupEvent::CommitFailed {
                id: c.id,
                offsets: c.offsets,
                error: CommitError::GenerationEnded(c.generation),
            });
        }
        let subscription = Subscription {
            topics: self.topics.clone(),
            owned_tasks: self.previous.tasks.clone(),
            owned_partitions: self.previous.partitions.clone(),
            generation: self.previous.generation,
        };
        let metadata = match protocol::encode_subscription(&subscription) {
            Ok(m) => m,
            Err(e) => {
                self.fail(GroupError::Encode(e));
                return None;
            }
        };
        let request = JoinGroupRequest::default()
            .with_group_id(self.group_id().into())
            .with_session_timeout_ms(self.config.session_timeout.as_millis_i32())
            .with_rebalance_timeout_ms(self.config.rebalance_timeout.as_millis_i32())
            .with_member_id(StrBytes::from_string(self.member_id.clone()))
            .with_group_instance_id(self.instance_id_at(version, 5))
            .with_protocol_type(StrBytes::from_static_str(protocol::PROTOCOL_TYPE))
            .with_protocols(vec![
                JoinGroupRequestProtocol::default()
                    .with_name(StrBytes::from_string(self.config.protocol_name.clone()))
                    .with_metadata(metadata),
            ]);
        Some(self.send(ApiKey::JoinGroup, RequestKind::JoinGroup(request), version))
    }

    /// SyncGroup carrying `assignments` (the leader's; empty for a follower).
    pub(super) fn sync_request(
        &mut self,
        assignments: Vec<(String, Bytes)>,
        versions: &dyn ApiVersionLookup,
    ) -> Option<Outbound> {
        let version = self.version(versions, ApiKey::SyncGroup, SYNC_GROUP_VERSIONS)?;
        let mut request = SyncGroupRequest::default()
            .with_group_id(self.group_id().into())
            .with_generation_id(self.generation)
            .with_member_id(StrBytes::from_string(self.member_id.clone()))
            .with_group_instance_id(self.instance_id_at(version, 3))
            .with_assignments(
                assignments
                    .into_iter()
                    .map(|(member_id, assignment)| {
                        SyncGroupRequestAssignment::default()
                            .with_member_id(StrBytes::from_string(member_id))
                            .with_assignment(assignment)
                    })
                    .collect(),
            );
        if version >= 5 {
            request = request
                .with_protocol_type(Some(StrBytes::from_static_str(protocol::PROTOCOL_TYPE)))
                .with_protocol_name(Some(StrBytes::from_string(
                    self.config.protocol_name.clone(),
                )));
        }
        Some(self.send(ApiKey::SyncGroup, RequestKind::SyncGroup(request), version))
    }

    /// Takes the JoinGroup answer: our member id and generation; as leader, the assignment.
    pub(super) fn on_join(&mut self, r: JoinGroupResponse, now: Instant) -> Result<(), GroupError> {
        self.in_flight = None;
        // While a JoinGroup is in flight the phase leaves Joining only where the request is
        // forgotten (leave, fail), so a late answer is refused before it gets here.
        debug_assert!(
            matches!(self.phase, Phase::Joining { .. }),
            "JoinGroup answered in {:?}",
            self.phase
        );
        if !matches!(self.phase, Phase::Joining { .. }) {
            return Ok(());
        }
        match ResponseError::try_from_code(r.error_code) {
            None => {
                self.member_id = r.member_id.to_string();
                self.generation = r.generation_id;
                for c in self.offsets.take_stale_commits(self.generation) {
                    self.events.push_back(GroupEvent::CommitFailed {
                        id: c.id,
                        offsets: c.offsets,
                        error: CommitError::GenerationEnded(c.generation),
                    });
                }
                // A static leader rejoining a stable group is told `skip_assignment` (v9+):
                // the coordinator keeps the assignment it has, so the member syncs with none,
                // as a follower does (see `instance`).
                if r.leader.as_str() == self.member_id && !r.skip_assignment {
                    let members = r
                        .members
                        .into_iter()
                        .map(|m| (m.member_id.to_string(), m.metadata))
                        .collect();
                    self.lead_assignment(members);
                } else {
                    self.phase = Phase::Syncing {
                        assignments: Vec::new(),
                    };
                }
                Ok(())
            }
            Some(ResponseError::MemberIdRequired) => {
                self.member_id = r.member_id.to_string();
                self.phase = Phase::Joining { at: now };
                Ok(())
            }
            Some(error) => self.rejoin_after(ApiKey::JoinGroup, error, now),
        }
    }

    /// Takes the SyncGroup answer: our assignment → [`GroupEvent::Assigned`], stable.
    pub(super) fn on_sync(&mut self, r: SyncGroupResponse, now: Instant) -> Result<(), GroupError> {
        self.in_flight = None;
        // While a SyncGroup is in flight the phase leaves Syncing only where the request is
        // forgotten (leave, fail, request failed), so a late answer is refused before it gets
        // here.
        debug_assert!(
            matches!(self.phase, Phase::Syncing { .. }),
            "SyncGroup answered in {:?}",
            self.phase
        );
        if !matches!(self.phase, Phase::Syncing { .. }) {
            return Ok(());
        }
        match ResponseError::try_from_code(r.error_code) {
            None => match protocol::decode_assignment(&r.assignment) {
                Ok(Assignment { tasks, partitions }) => {
                    self.tasks = tasks.clone();
                    self.partitions = partitions.clone();
                    self.phase = Phase::Stable;
                    self.failures = 0;
                    self.last_heartbeat_ok = now;
                    self.next_heartbeat_at = now + self.config.heartbeat_interval;
                    self.events.push_back(GroupEvent::Assigned {
                        tasks,
                        partitions,
                        generation: self.generation,
                    });
                    Ok(())
                }
                Err(e) => {
                    let error = GroupError::BadAssignment(e);
                    self.fail(error.clone());
                    Err(error)
                }
            },
            Some(error) => self.rejoin_after(ApiKey::SyncGroup, error, now),
        }
    }

    /// JoinGroup/SyncGroup errors: all but the fatal ones lead back to JoinGroup.
    fn rejoin_after(
        &mut self,
        api: ApiKey,
        error: ResponseError,
        now: Instant,
    ) -> Result<(), GroupError> {
        tracing::debug!(?api, %error, "rejoining");
        match error {
            ResponseError::UnknownMemberId => {
                self.member_id.clear();
                self.generation = -1;
            }
            ResponseError::IllegalGeneration => self.generation = -1,
            ResponseError::RebalanceInProgress => {}
            ResponseError::FencedInstanceId => return Err(self.fenced(api)),
            ResponseError::NotCoordinator
            | ResponseError::CoordinatorNotAvailable
            | ResponseError::CoordinatorLoadInProgress => self.coordinator_lost(now),
            _ => return Err(self.fatal(api, error)),
        }
        self.phase = Phase::Joining { at: now };
        Ok(())
    }

    /// As leader: decode every subscription, assign, queue SyncGroup.
    fn lead_assignment(&mut self, members: Vec<(String, Bytes)>) {
        let missing: Vec<String> = self
            .topics
            .iter()
            .filter(|t| !self.partition_counts.contains_key(*t))
            .cloned()
            .collect();
        if !missing.is_empty() {
            self.phase = Phase::AwaitingPartitionCounts { members };
            self.events
                .push_back(GroupEvent::PartitionCountsNeeded { topics: missing });
            return;
        }
        let subscriptions: Vec<MemberSubscription> = members
            .iter()
            .map(|(member_id, metadata)| match protocol::decode_subscription(metadata) {
                Ok(s) => MemberSubscription {
                    member_id: member_id.clone(),
                    topics: s.topics,
                    owned_tasks: s.owned_tasks,
                    generation: s.generation,
                },
                Err(error) => {
                    tracing::warn!(member_id, %error, "unreadable subscription; assuming it owned nothing");
                    MemberSubscription {
                        member_id: member_id.clone(),
                        topics: Vec::new(),
                        owned_tasks: Vec::new(),
                        generation: -1,
                    }
                }
            })
            .collect();
        let counts = &self.partition_counts;
        let per_member = match assignor::assign(&subscriptions, &self.subtopologies, |t| {
            counts.get(t).copied()
        }) {
            Ok(m) => m,
            Err(error) => {
                tracing::warn!(%error, "assignment failed; every member gets nothing");
                self.events
                    .push_back(GroupEvent::AssignmentFailed { error });
                subscriptions
                    .iter()
                    .map(|s| (s.member_id.clone(), MemberAssignment::default()))
                    .collect()
            }
        };
        let mut assignments = Vec::with_capacity(per_member.len());
        for (member_id, a) in per_member {
            let assignment = Assignment {
                tasks: a.tasks,
                partitions: a.partitions,
            };
            match protocol::encode_assignment(&assignment) {
                Ok(bytes) => assignments.push((member_id, bytes)),
                Err(e) => {
                    self.fail(GroupError::Encode(e));
                    return;
                }
            }
        }
        self.phase = Phase::Syncing { assignments };
    }

    /// A rebalance started: every task is revoked ([`GroupEvent::Revoke`]) and remembered for
    /// the next subscription.
    pub(super) fn start_revoke(&mut self) {
        let tasks = std::mem::take(&mut self.tasks);
        self.previous = Previous {
            tasks: tasks.clone(),
            partitions: std::mem::take(&mut self.partitions),
            generation: self.generation,
        };
        self.phase = Phase::Revoking { done: false };
        self.events.push_back(GroupEvent::Revoke { tasks });
    }

    /// Membership is lost ([`GroupEvent::Lost`]): the tasks may run elsewhere already; rejoin.
    pub(super) fn lose_membership(&mut self, error: ResponseError, now: Instant) {
        tracing::info!(%error, generation = self.generation, "group membership lost");
        let tasks = match &self.phase {
            Phase::Revoking { .. } => self.previous.tasks.clone(),
            _ => std::mem::take(&mut self.tasks),
        };
        // Keep the tasks as (weak) claims for stickiness: generation -1 loses every conflict.
        self.previous = Previous {
            tasks: tasks.clone(),
            partitions: std::mem::take(&mut self.partitions),
            generation: -1,
        };
        if error != ResponseError::IllegalGeneration {
            self.member_id.clear();
        }
        self.generation = -1;
        self.tasks.clear();
        self.phase = Phase::Joining { at: now };
        self.events.push_back(GroupEvent::Lost { tasks });
    }
}
