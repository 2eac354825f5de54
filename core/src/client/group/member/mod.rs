//! [`GroupMember`]: one member of a consumer group under the classic protocol, as a sans-IO
//! state machine.
//!
//! # Life cycle
//! 1. FindCoordinator (to any broker, key = group id) → [`GroupEvent::CoordinatorFound`].
//! 2. JoinGroup (member id `""` first; `MEMBER_ID_REQUIRED` → again at once with the id the
//!    coordinator returned). The leader decodes every member's subscription, runs the
//!    [`assignor`] and sends the assignments in SyncGroup; followers send an
//!    empty SyncGroup. Our assignment → [`GroupEvent::Assigned`].
//! 3. Stable: a Heartbeat every `heartbeat_interval_ms`.
//! 4. Rebalance (`REBALANCE_IN_PROGRESS` on heartbeat or commit): eager protocol, so the member
//!    emits [`GroupEvent::Revoke`] with every task and waits for
//!    [`GroupMember::revoke_done`] and for its queued commits to finish before it sends
//!    JoinGroup: revoked tasks commit first, under the old generation (which the coordinator
//!    accepts while the group prepares the rebalance).
//! 5. `UNKNOWN_MEMBER_ID` / `ILLEGAL_GENERATION` / `FENCED_INSTANCE_ID`, or no successful
//!    heartbeat for `session_timeout_ms`: membership is lost → [`GroupEvent::Lost`] (no commit
//!    possible), member id (for unknown member and session expiry) and generation reset, rejoin.
//! 6. `NOT_COORDINATOR` / `COORDINATOR_NOT_AVAILABLE` / `COORDINATOR_LOAD_IN_PROGRESS`, or a
//!    request to the coordinator that got no answer: the coordinator is rediscovered after an
//!    exponential backoff (no jitter) and the interrupted work resumes.
//! 7. [`GroupMember::leave`] → LeaveGroup → [`GroupEvent::Left`].
//!
//! # Driving it
//! Call [`GroupMember::poll_request`] until it returns `None` after every input; it also does
//! the timed work (heartbeats, backoff, session expiry), as does
//! [`GroupMember::handle_timeout`] at [`GroupMember::poll_timeout`].

use std::collections::{BTreeMap, VecDeque};
use std::ops::RangeInclusive;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, FindCoordinatorRequest, FindCoordinatorResponse, HeartbeatRequest, HeartbeatResponse,
    JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, RequestKind,
    ResponseKind, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::assignor::{self, MemberAssignment, MemberSubscription};
use super::offsets::{CommitError, CommitId, CommitOutcome, FetchOutcome, OffsetClient};
use super::protocol::{self, Assignment, Subscription};
use super::{GroupConfig, GroupError, GroupEvent};
use crate::client::{ApiVersionLookup, BrokerId, Outbound, Target};
use crate::record::TopicPartition;
use crate::task::TaskId;
use crate::topology::Subtopology;

/// FindCoordinator versions we build.
pub const FIND_COORDINATOR_VERSIONS: RangeInclusive<i16> = 0..=6;
/// JoinGroup versions we build (v4+: `MEMBER_ID_REQUIRED`).
pub const JOIN_GROUP_VERSIONS: RangeInclusive<i16> = 4..=9;
/// SyncGroup versions we build.
pub const SYNC_GROUP_VERSIONS: RangeInclusive<i16> = 0..=5;
/// Heartbeat versions we build.
pub const HEARTBEAT_VERSIONS: RangeInclusive<i16> = 0..=4;
/// LeaveGroup versions we build (v0-2 `member_id`, v3+ `members`).
pub const LEAVE_GROUP_VERSIONS: RangeInclusive<i16> = 0..=5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coordinator {
    Unknown { retry_at: i64 },
    Finding,
    Known(BrokerId),
}

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    /// JoinGroup due at `at` (or in flight).
    Joining {
        at: i64,
    },
    /// Leader waiting for [`GroupMember::set_partition_counts`].
    AwaitingPartitionCounts {
        members: Vec<(String, Bytes)>,
    },
    /// SyncGroup due (or in flight).
    Syncing {
        assignments: Vec<(String, Bytes)>,
    },
    /// Assigned; heartbeating.
    Stable,
    /// Waiting for the engine to commit and close the revoked tasks.
    Revoking {
        done: bool,
    },
    /// LeaveGroup due (or in flight).
    Leaving,
    Left,
    Failed,
}

/// The tasks a member owned before a rebalance, sent in its next subscription.
#[derive(Debug, Clone, Default)]
struct Previous {
    tasks: Vec<TaskId>,
    partitions: Vec<TopicPartition>,
    generation: i32,
}

/// One member of the consumer group (classic protocol, eager rebalancing).
#[derive(Debug)]
pub struct GroupMember {
    config: GroupConfig,
    subtopologies: Vec<Subtopology>,
    topics: Vec<String>,
    partition_counts: BTreeMap<String, i32>,
    now: i64,
    coordinator: Coordinator,
    failures: u32,
    member_id: String,
    generation: i32,
    phase: Phase,
    in_flight: Option<ApiKey>,
    tasks: Vec<TaskId>,
    partitions: Vec<TopicPartition>,
    previous: Previous,
    last_heartbeat_ok: i64,
    next_heartbeat_at: i64,
    offsets: OffsetClient,
    events: VecDeque<GroupEvent>,
}

impl GroupMember {
    /// A member that will look for its coordinator and join at once. `subtopologies` is the
    /// topology's ([`Topology::subtopologies`](crate::topology::Topology::subtopologies)).
    pub fn new(config: GroupConfig, subtopologies: Vec<Subtopology>, now: i64) -> Self {
        let mut topics: Vec<String> = subtopologies
            .iter()
            .flat_map(|s| s.source_topics.iter().cloned())
            .collect();
        topics.sort();
        topics.dedup();
        Self {
            offsets: OffsetClient::new(config.group_id.clone()),
            config,
            subtopologies,
            topics,
            partition_counts: BTreeMap::new(),
            now,
            coordinator: Coordinator::Unknown { retry_at: now },
            failures: 0,
            member_id: String::new(),
            generation: -1,
            phase: Phase::Joining { at: now },
            in_flight: None,
            tasks: Vec::new(),
            partitions: Vec::new(),
            previous: Previous {
                generation: -1,
                ..Previous::default()
            },
            last_heartbeat_ok: now,
            next_heartbeat_at: now,
            events: VecDeque::new(),
        }
    }

    /// The member id the coordinator gave us (`""` before the first JoinGroup answer).
    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    /// The current generation, `-1` when none.
    pub fn generation(&self) -> i32 {
        self.generation
    }

    /// The coordinator's node id, when known.
    pub fn coordinator(&self) -> Option<BrokerId> {
        match self.coordinator {
            Coordinator::Known(id) => Some(id),
            _ => None,
        }
    }

    /// The tasks currently assigned (empty while rebalancing).
    pub fn tasks(&self) -> &[TaskId] {
        &self.tasks
    }

    /// Whether the member holds an assignment and heartbeats.
    pub fn is_stable(&self) -> bool {
        self.phase == Phase::Stable
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<GroupEvent> {
        self.events.pop_front()
    }

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
    pub fn revoke_done(&mut self, now: i64) {
        self.observe(now);
        if let Phase::Revoking { done } = &mut self.phase {
            *done = true;
        }
    }

    /// Leaves the group: sends LeaveGroup (when a member of a known coordinator), then emits
    /// [`GroupEvent::Left`]. Commit first: commits not yet sent fail with [`CommitError::Left`].
    pub fn leave(&mut self, now: i64) {
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

    /// Asks for the committed offsets of `partitions` → [`GroupEvent::OffsetsFetched`].
    pub fn fetch_committed(&mut self, partitions: impl IntoIterator<Item = TopicPartition>) {
        self.offsets.fetch(partitions);
    }

    /// Commits `offsets` (the next offset to read, per partition) under the current generation
    /// → [`GroupEvent::CommitSucceeded`] or [`GroupEvent::CommitFailed`] with the returned id.
    /// Outside a generation (not joined, rebalancing after revoke, lost) it fails at once.
    pub fn commit(&mut self, offsets: BTreeMap<TopicPartition, i64>, now: i64) -> CommitId {
        self.observe(now);
        let member = self.generation >= 0
            && !self.member_id.is_empty()
            && matches!(self.phase, Phase::Stable | Phase::Revoking { .. });
        if member {
            return self
                .offsets
                .commit(offsets, self.generation, self.member_id.clone());
        }
        let id = self.offsets.next_id();
        self.events.push_back(GroupEvent::CommitFailed {
            id,
            offsets,
            error: CommitError::NotMember,
        });
        id
    }

    /// The next time [`handle_timeout`](Self::handle_timeout) (or `poll_request`) has timed
    /// work: a retry after backoff, a heartbeat, the session deadline.
    pub fn poll_timeout(&self) -> Option<i64> {
        if matches!(self.phase, Phase::Left | Phase::Failed) {
            return None;
        }
        let mut times = Vec::new();
        match self.coordinator {
            Coordinator::Unknown { retry_at } => times.push(retry_at),
            Coordinator::Finding => {}
            Coordinator::Known(_) => {
                if let Some(t) = self.offsets.next_retry_at() {
                    times.push(t);
                }
                match self.phase {
                    Phase::Joining { at } if self.in_flight.is_none() => times.push(at),
                    Phase::Stable if self.in_flight.is_none() => times.push(self.next_heartbeat_at),
                    _ => {}
                }
            }
        }
        if self.phase == Phase::Stable {
            times.push(self.session_deadline());
        }
        times.into_iter().min()
    }

    /// Does the timed work due at `now` (session expiry); requests due are returned by
    /// [`poll_request`](Self::poll_request).
    pub fn handle_timeout(&mut self, now: i64) {
        let now = self.observe(now);
        self.check_session(now);
    }

    /// The next request to send, built for the engine's versions.
    pub fn poll_request(&mut self, now: i64, versions: &dyn ApiVersionLookup) -> Option<Outbound> {
        let now = self.observe(now);
        self.check_session(now);
        if matches!(self.phase, Phase::Left | Phase::Failed) {
            return None;
        }
        match self.coordinator {
            Coordinator::Unknown { retry_at } if now >= retry_at => {
                let version =
                    self.version(versions, ApiKey::FindCoordinator, FIND_COORDINATOR_VERSIONS)?;
                self.coordinator = Coordinator::Finding;
                return Some(self.find_coordinator_request(version));
            }
            Coordinator::Unknown { .. } | Coordinator::Finding => return None,
            Coordinator::Known(_) => {}
        }
        if let Some(out) = self.poll_membership(now, versions) {
            return Some(out);
        }
        if matches!(self.phase, Phase::Left | Phase::Failed | Phase::Leaving) {
            return None;
        }
        let fetch = versions.version(ApiKey::OffsetFetch);
        let commit = versions.version(ApiKey::OffsetCommit);
        match self.offsets.poll_request(now, fetch, commit) {
            Ok(out) => out,
            Err(api) => {
                let version = versions.version(api);
                self.fail(GroupError::UnsupportedVersion { api, version });
                None
            }
        }
    }

    /// Handles the answer (from broker `from`) to a request this member emitted.
    ///
    /// `Err` for a fatal error (the member has stopped and emitted [`GroupEvent::Failed`]) and
    /// for a response to nothing we asked (ignored).
    pub fn handle_response(
        &mut self,
        from: BrokerId,
        response: ResponseKind,
        now: i64,
    ) -> Result<(), GroupError> {
        let now = self.observe(now);
        tracing::trace!(from, "group response");
        match response {
            ResponseKind::FindCoordinator(r) => self.on_find_coordinator(r, now),
            ResponseKind::JoinGroup(r) => {
                self.expect_in_flight(ApiKey::JoinGroup)?;
                self.on_join(r, now)
            }
            ResponseKind::SyncGroup(r) => {
                self.expect_in_flight(ApiKey::SyncGroup)?;
                self.on_sync(r, now)
            }
            ResponseKind::Heartbeat(r) => {
                self.expect_in_flight(ApiKey::Heartbeat)?;
                self.on_heartbeat(r, now)
            }
            ResponseKind::LeaveGroup(r) => {
                self.expect_in_flight(ApiKey::LeaveGroup)?;
                self.on_leave(r);
                Ok(())
            }
            ResponseKind::OffsetFetch(r) => {
                if !self.offsets.fetch_in_flight() {
                    return Err(GroupError::UnexpectedResponse {
                        api: ApiKey::OffsetFetch,
                    });
                }
                let backoff = self.config.retry_backoff_ms;
                match self.offsets.handle_fetch_response(&r, now, backoff) {
                    FetchOutcome::Fetched(offsets) => self
                        .events
                        .push_back(GroupEvent::OffsetsFetched { offsets }),
                    FetchOutcome::Retry => {}
                    FetchOutcome::CoordinatorMoved => self.coordinator_lost(now),
                    FetchOutcome::Failed(partitions, error) => self
                        .events
                        .push_back(GroupEvent::OffsetFetchFailed { partitions, error }),
                }
                Ok(())
            }
            ResponseKind::OffsetCommit(r) => {
                if !self.offsets.commit_in_flight() {
                    return Err(GroupError::UnexpectedResponse {
                        api: ApiKey::OffsetCommit,
                    });
                }
                let backoff = self.config.retry_backoff_ms;
                let outcome = self.offsets.handle_commit_response(&r, now, backoff);
                self.on_commit_outcome(outcome, now);
                Ok(())
            }
            _ => Err(GroupError::ForeignResponse),
        }
    }

    /// A request this member emitted got no answer (disconnect, timeout): re-plan.
    pub fn handle_request_failed(&mut self, target: Target, api: ApiKey, now: i64) {
        let now = self.observe(now);
        tracing::debug!(?target, ?api, "group request failed");
        match api {
            ApiKey::FindCoordinator if self.coordinator == Coordinator::Finding => {
                self.coordinator = Coordinator::Unknown {
                    retry_at: now.saturating_add(self.next_backoff()),
                };
            }
            ApiKey::OffsetFetch | ApiKey::OffsetCommit => {
                self.offsets.request_failed(api);
                self.coordinator_lost(now);
            }
            _ if self.in_flight == Some(api) => {
                self.in_flight = None;
                match api {
                    ApiKey::LeaveGroup => self.finish_leaving(),
                    ApiKey::SyncGroup => {
                        self.phase = Phase::Joining { at: now };
                        self.coordinator_lost(now);
                    }
                    _ => self.coordinator_lost(now),
                }
            }
            _ => {}
        }
    }

    // ---- requests ----

    fn poll_membership(&mut self, now: i64, versions: &dyn ApiVersionLookup) -> Option<Outbound> {
        if self.in_flight.is_some() {
            return None;
        }
        match &self.phase {
            Phase::Joining { at } if now >= *at => self.join_request(versions),
            Phase::Revoking { done: true } if self.offsets.commits_idle() => {
                self.phase = Phase::Joining { at: now };
                self.join_request(versions)
            }
            Phase::Syncing { .. } => self.sync_request(versions),
            Phase::Stable if now >= self.next_heartbeat_at => {
                let version = self.version(versions, ApiKey::Heartbeat, HEARTBEAT_VERSIONS)?;
                self.next_heartbeat_at = now.saturating_add(self.config.heartbeat_interval_ms);
                let request = HeartbeatRequest::default()
                    .with_group_id(self.group_id().into())
                    .with_generation_id(self.generation)
                    .with_member_id(StrBytes::from_string(self.member_id.clone()));
                Some(self.send(ApiKey::Heartbeat, RequestKind::Heartbeat(request), version))
            }
            Phase::Leaving => {
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
            _ => None,
        }
    }

    fn find_coordinator_request(&self, version: i16) -> Outbound {
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

    fn join_request(&mut self, versions: &dyn ApiVersionLookup) -> Option<Outbound> {
        let version = self.version(versions, ApiKey::JoinGroup, JOIN_GROUP_VERSIONS)?;
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
            .with_session_timeout_ms(self.config.session_timeout_ms)
            .with_rebalance_timeout_ms(self.config.rebalance_timeout_ms)
            .with_member_id(StrBytes::from_string(self.member_id.clone()))
            .with_protocol_type(StrBytes::from_static_str(protocol::PROTOCOL_TYPE))
            .with_protocols(vec![
                JoinGroupRequestProtocol::default()
                    .with_name(StrBytes::from_string(self.config.protocol_name.clone()))
                    .with_metadata(metadata),
            ]);
        Some(self.send(ApiKey::JoinGroup, RequestKind::JoinGroup(request), version))
    }

    fn sync_request(&mut self, versions: &dyn ApiVersionLookup) -> Option<Outbound> {
        let version = self.version(versions, ApiKey::SyncGroup, SYNC_GROUP_VERSIONS)?;
        let assignments = match &mut self.phase {
            Phase::Syncing { assignments } => std::mem::take(assignments),
            _ => Vec::new(),
        };
        let mut request = SyncGroupRequest::default()
            .with_group_id(self.group_id().into())
            .with_generation_id(self.generation)
            .with_member_id(StrBytes::from_string(self.member_id.clone()))
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

    fn send(&mut self, api: ApiKey, request: RequestKind, version: i16) -> Outbound {
        self.in_flight = Some(api);
        Outbound {
            target: Target::Coordinator,
            request,
            version,
        }
    }

    // ---- responses ----

    fn on_find_coordinator(
        &mut self,
        r: FindCoordinatorResponse,
        now: i64,
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
                    retry_at: now.saturating_add(self.next_backoff()),
                };
                Ok(())
            }
        }
    }

    fn on_join(&mut self, r: JoinGroupResponse, now: i64) -> Result<(), GroupError> {
        self.in_flight = None;
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

    fn on_sync(&mut self, r: SyncGroupResponse, now: i64) -> Result<(), GroupError> {
        self.in_flight = None;
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
                    self.next_heartbeat_at = now.saturating_add(self.config.heartbeat_interval_ms);
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
        now: i64,
    ) -> Result<(), GroupError> {
        tracing::debug!(?api, %error, "rejoining");
        match error {
            ResponseError::UnknownMemberId => {
                self.member_id.clear();
                self.generation = -1;
            }
            ResponseError::IllegalGeneration => self.generation = -1,
            ResponseError::RebalanceInProgress => {}
            ResponseError::NotCoordinator
            | ResponseError::CoordinatorNotAvailable
            | ResponseError::CoordinatorLoadInProgress => self.coordinator_lost(now),
            _ => return Err(self.fatal(api, error)),
        }
        self.phase = Phase::Joining { at: now };
        Ok(())
    }

    fn on_heartbeat(&mut self, r: HeartbeatResponse, now: i64) -> Result<(), GroupError> {
        self.in_flight = None;
        if self.phase != Phase::Stable {
            return Ok(());
        }
        match ResponseError::try_from_code(r.error_code) {
            None => self.last_heartbeat_ok = now,
            Some(ResponseError::RebalanceInProgress) => self.start_revoke(),
            Some(
                error @ (ResponseError::UnknownMemberId
                | ResponseError::IllegalGeneration
                | ResponseError::FencedInstanceId),
            ) => self.lose_membership(error, now),
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

    fn on_leave(&mut self, r: LeaveGroupResponse) {
        self.in_flight = None;
        if let Some(error) = ResponseError::try_from_code(r.error_code) {
            tracing::debug!(%error, "LeaveGroup failed; leaving anyway");
        }
        if self.phase == Phase::Leaving {
            self.finish_leaving();
        }
    }

    fn on_commit_outcome(&mut self, outcome: CommitOutcome, now: i64) {
        match outcome {
            CommitOutcome::Committed(c) => self.events.push_back(GroupEvent::CommitSucceeded {
                id: c.id,
                offsets: c.offsets,
            }),
            CommitOutcome::Failed(c, error) => {
                let current = c.generation == self.generation;
                self.events.push_back(GroupEvent::CommitFailed {
                    id: c.id,
                    offsets: c.offsets,
                    error: error.clone(),
                });
                match error {
                    CommitError::Rejected(ResponseError::RebalanceInProgress)
                        if current && self.phase == Phase::Stable =>
                    {
                        self.start_revoke()
                    }
                    CommitError::Rejected(
                        e @ (ResponseError::IllegalGeneration
                        | ResponseError::UnknownMemberId
                        | ResponseError::FencedInstanceId),
                    ) if current
                        && matches!(self.phase, Phase::Stable | Phase::Revoking { .. }) =>
                    {
                        self.lose_membership(e, now)
                    }
                    _ => {}
                }
            }
            CommitOutcome::Retry => {}
            CommitOutcome::CoordinatorMoved => self.coordinator_lost(now),
        }
    }

    // ---- transitions ----

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

    fn start_revoke(&mut self) {
        let tasks = std::mem::take(&mut self.tasks);
        self.previous = Previous {
            tasks: tasks.clone(),
            partitions: std::mem::take(&mut self.partitions),
            generation: self.generation,
        };
        self.phase = Phase::Revoking { done: false };
        self.events.push_back(GroupEvent::Revoke { tasks });
    }

    fn lose_membership(&mut self, error: ResponseError, now: i64) {
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

    fn check_session(&mut self, now: i64) {
        if self.phase == Phase::Stable && now >= self.session_deadline() {
            tracing::info!("no successful heartbeat within the session timeout");
            self.lose_membership(ResponseError::UnknownMemberId, now);
            self.coordinator_lost(now);
        }
    }

    fn session_deadline(&self) -> i64 {
        self.last_heartbeat_ok
            .saturating_add(i64::from(self.config.session_timeout_ms))
    }

    fn coordinator_lost(&mut self, now: i64) {
        if let Coordinator::Known(id) = self.coordinator {
            tracing::debug!(id, "group coordinator lost; rediscovering");
            self.coordinator = Coordinator::Unknown {
                retry_at: now.saturating_add(self.next_backoff()),
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

    fn finish_leaving(&mut self) {
        self.phase = Phase::Left;
        self.in_flight = None;
        self.member_id.clear();
        self.generation = -1;
        self.tasks.clear();
        self.events.push_back(GroupEvent::Left);
    }

    fn next_backoff(&mut self) -> i64 {
        let shift = self.failures.min(20);
        self.failures = self.failures.saturating_add(1);
        self.config
            .retry_backoff_ms
            .saturating_mul(1 << shift)
            .min(self.config.max_retry_backoff_ms)
    }

    fn fatal(&mut self, api: ApiKey, error: ResponseError) -> GroupError {
        let e = GroupError::Fatal { api, error };
        self.fail(e.clone());
        e
    }

    fn fail(&mut self, error: GroupError) {
        tracing::error!(%error, "group member failed");
        self.phase = Phase::Failed;
        self.in_flight = None;
        self.events.push_back(GroupEvent::Failed(error));
    }

    fn version(
        &mut self,
        versions: &dyn ApiVersionLookup,
        api: ApiKey,
        ours: RangeInclusive<i16>,
    ) -> Option<i16> {
        let offered = versions.version(api);
        let usable = offered.filter(|v| ours.contains(v));
        if usable.is_none() {
            self.fail(GroupError::UnsupportedVersion {
                api,
                version: offered,
            });
        }
        usable
    }

    fn expect_in_flight(&self, api: ApiKey) -> Result<(), GroupError> {
        if self.in_flight == Some(api) {
            Ok(())
        } else {
            Err(GroupError::UnexpectedResponse { api })
        }
    }

    fn group_id(&self) -> StrBytes {
        StrBytes::from_string(self.config.group_id.clone())
    }

    fn observe(&mut self, now: i64) -> i64 {
        self.now = self.now.max(now);
        self.now
    }
}
