//! Joining and rebalancing: JoinGroup, the leader's assignment, SyncGroup, and the
//! transitions out of a generation (eager revoke or cooperative rejoin on rebalance, the
//! cooperative follow-up rebalance, membership lost).

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, JoinGroupRequest, JoinGroupResponse, RequestKind, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::{GroupMember, JOIN_GROUP_VERSIONS, Phase, Previous, SYNC_GROUP_VERSIONS};
use crate::client::group::assignor::{self, AssignorConfig, MemberAssignment, MemberSubscription};
use crate::client::group::protocol::{self, Assignment, Subscription};
use crate::client::group::{CommitError, GroupError, GroupEvent, RebalanceProtocol};
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

    /// The engine committed and closed the tasks of the last [`GroupEvent::Revoke`] (or the
    /// `revoked` tasks of a cooperative [`GroupEvent::Assigned`]): the member may rejoin (once
    /// its queued commits are answered).
    pub fn revoke_done(&mut self, now: Instant) {
        self.observe(now);
        if let Phase::Revoking { done } = &mut self.phase {
            *done = true;
        }
        if self.revoke_pending == Some(false) {
            self.revoke_pending = Some(true);
        }
    }

    /// JoinGroup with our subscription (and the tasks we owned, for stickiness). Commits of an
    /// ended generation still queued fail first.
    pub(super) fn join_request(&mut self, versions: &dyn ApiVersionLookup) -> Option<Outbound> {
        let version = self.version(versions, ApiKey::JoinGroup, JOIN_GROUP_VERSIONS)?;
        if !self.static_versions_usable(versions) {
            return None;
        }
        // Commits of an ended generation that were never sent cannot succeed any more. (A
        // member rejoining cooperatively is still in its generation: the coordinator takes
        // its commits until the JoinGroup completes.)
        if self.previous.held.is_empty() {
            for c in self.offsets.take_unsent_commits() {
                self.events.push_back(GroupEvent::CommitFailed {
                    id: c.id,
                    offsets: c.offsets,
                    error: CommitError::GenerationEnded(c.generation),
                });
            }
        }
        let subscription = Subscription {
            topics: self.topics.clone(),
            owned_tasks: self.previous.tasks.clone(),
            owned_partitions: self.previous.partitions.clone(),
            generation: self.previous.generation,
            held_tasks: self.previous.held.clone(),
            process_id: self.config.process_id.clone(),
            task_offsets: self.task_offsets.clone(),
            state_aware: true,
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
            .with_protocols(
                self.config
                    .rebalance_protocol
                    .offered()
                    .iter()
                    .map(|p| {
                        JoinGroupRequestProtocol::default()
                            .with_name(StrBytes::from_static_str(p.name()))
                            .with_metadata(metadata.clone())
                    })
                    .collect(),
            );
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
                // Exactly what the coordinator selected (nothing when its JoinGroup answer was
                // below v7 and named none): a guessed name could be refused as inconsistent.
                .with_protocol_name(
                    self.selected_protocol_name
                        .clone()
                        .map(StrBytes::from_string),
                );
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
                // A new generation: a follow-up asked for by the last one is moot.
                self.followup_at = None;
                self.protocol =
                    RebalanceProtocol::from_selected(r.protocol_name.as_ref().map(|n| n.as_str()));
                self.selected_protocol_name = r.protocol_name.as_ref().map(|n| n.to_string());
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
                Ok(Assignment {
                    tasks,
                    partitions,
                    standbys,
                    followup,
                }) => {
                    let standbys = self.take_standbys(&tasks, standbys);
                    let held = std::mem::take(&mut self.previous.held);
                    let revoked: Vec<_> = held
                        .iter()
                        .filter(|t| !tasks.contains(t))
                        .copied()
                        .collect();
                    if !held.is_empty() {
                        tracing::info!(
                            generation = self.generation,
                            protocol = self.protocol.name(),
                            kept = held.len() - revoked.len(),
                            added = tasks.iter().filter(|t| !held.contains(t)).count(),
                            revoked = revoked.len(),
                            "cooperative rebalance: tasks kept running through it"
                        );
                    }
                    if !revoked.is_empty() {
                        self.revoke_pending = Some(false);
                    }
                    self.tasks = tasks.clone();
                    self.partitions = partitions.clone();
                    self.phase = Phase::Stable;
                    self.schedule_followup(followup, now);
                    self.failures = 0;
                    self.last_heartbeat_ok = now;
                    self.next_heartbeat_at = now + self.config.heartbeat_interval;
                    self.events.push_back(GroupEvent::Assigned {
                        tasks,
                        partitions,
                        generation: self.generation,
                        revoked,
                        protocol: self.protocol,
                        standbys,
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
        if !self.previous.held.is_empty()
            && matches!(
                error,
                ResponseError::UnknownMemberId | ResponseError::IllegalGeneration
            )
        {
            // Rejoining cooperatively: the tasks kept running may run elsewhere already.
            self.lose_membership(error, now);
            return Ok(());
        }
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
                    held_tasks: s.held_tasks,
                    process_id: s.process_id,
                    task_offsets: s.task_offsets,
                    state_aware: s.state_aware,
                },
                Err(error) => {
                    tracing::warn!(member_id, %error, "unreadable subscription; assuming it owned nothing");
                    MemberSubscription {
                        member_id: member_id.clone(),
                        topics: Vec::new(),
                        owned_tasks: Vec::new(),
                        generation: -1,
                        held_tasks: Vec::new(),
                        process_id: String::new(),
                        task_offsets: BTreeMap::new(),
                        state_aware: false,
                    }
                }
            })
            .collect();
        let counts = &self.partition_counts;
        let config = AssignorConfig::from(&self.config);
        let per_member = match assignor::plan(
            &subscriptions,
            &self.subtopologies,
            |t| counts.get(t).copied(),
            &config,
            &self.member_id,
        ) {
            Ok(plan) => {
                // Whatever the protocol: members that were cooperative in the last generation
                // still run their held tasks (see the assignor's module docs).
                if !plan.withheld.is_empty() {
                    tracing::info!(
                        generation = self.generation,
                        withheld = ?plan.withheld,
                        "tasks still held by another member withheld until the follow-up rebalance"
                    );
                }
                let placement = &plan.placement;
                if !placement.kept_caught_up.is_empty() {
                    tracing::info!(
                        generation = self.generation,
                        kept = ?placement.kept_caught_up,
                        warmups = ?placement.warmups,
                        probing_in_ms = config.probing_rebalance_interval.as_millis(),
                        "stateful tasks kept where their state is caught up; their target owners warm up"
                    );
                }
                plan.members
            }
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
                standbys: a.standbys,
                followup: a.followup,
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

    /// A rebalance started (`REBALANCE_IN_PROGRESS`): eager or cooperative by the current
    /// generation's protocol. After a cooperative assignment that revoked tasks the member
    /// rejoins anyway once they are closed ([`Self::revoke_done`]).
    pub(super) fn start_rebalance(&mut self, now: Instant) {
        if self.revoke_pending.is_some() {
            return;
        }
        match self.protocol {
            RebalanceProtocol::Cooperative => self.start_cooperative_rejoin(now),
            RebalanceProtocol::Eager => self.start_revoke(),
        }
    }

    /// The rebalance after a cooperative assignment revoked tasks, which gives them to their
    /// new owner. In a generation that fell back to eager it revokes the rest too (eager).
    pub(super) fn follow_up_rebalance(&mut self, now: Instant) {
        tracing::info!(
            generation = self.generation,
            "rejoining for the follow-up rebalance of revoked tasks"
        );
        match self.protocol {
            RebalanceProtocol::Cooperative => self.start_cooperative_rejoin(now),
            RebalanceProtocol::Eager => self.start_revoke(),
        }
    }

    /// Cooperative: rejoin at once, keeping every task running; they are held (listed in the
    /// subscription) until the new assignment says which to revoke.
    fn start_cooperative_rejoin(&mut self, now: Instant) {
        tracing::info!(
            generation = self.generation,
            tasks = self.tasks.len(),
            "cooperative rebalance: rejoining without revoking"
        );
        self.previous = Previous {
            tasks: self.tasks.clone(),
            partitions: self.partitions.clone(),
            generation: self.generation,
            held: self.tasks.clone(),
        };
        self.phase = Phase::Joining { at: now };
    }

    /// Eager: every task is revoked ([`GroupEvent::Revoke`]) and remembered for the next
    /// subscription.
    fn start_revoke(&mut self) {
        let tasks = std::mem::take(&mut self.tasks);
        self.previous = Previous {
            tasks: tasks.clone(),
            partitions: std::mem::take(&mut self.partitions),
            generation: self.generation,
            held: Vec::new(),
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
            held: Vec::new(),
        };
        self.revoke_pending = None;
        if error != ResponseError::IllegalGeneration {
            self.member_id.clear();
        }
        self.generation = -1;
        self.tasks.clear();
        self.standbys.clear();
        self.followup_at = None;
        self.phase = Phase::Joining { at: now };
        self.events.push_back(GroupEvent::Lost { tasks });
    }
}
