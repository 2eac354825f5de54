//! [`GroupMember`]: one member of a consumer group under the classic protocol, as a sans-IO
//! state machine.
//!
//! # Life cycle
//! 1. FindCoordinator (to any broker, key = group id) → [`GroupEvent::CoordinatorFound`].
//! 2. JoinGroup (member id `""` first; `MEMBER_ID_REQUIRED` → again at once with the id the
//!    coordinator returned). The leader decodes every member's subscription, runs the
//!    [`assignor`] and sends the assignments in SyncGroup; followers send an
//!    empty SyncGroup. Our assignment (active and standby tasks) → [`GroupEvent::Assigned`].
//! 3. Stable: a Heartbeat every [`GroupConfig::heartbeat_interval`]. An assignment may ask
//!    for a follow-up rejoin after a delay (the leader's probing rebalance, or the target
//!    owner of a withheld task): the member rejoins by itself then, as at a rebalance,
//!    unless a new generation came first (see `standbys`).
//! 4. Rebalance (`REBALANCE_IN_PROGRESS` on heartbeat or commit). What the member does depends
//!    on the protocol the coordinator selected for the current generation
//!    ([`RebalanceProtocol`]; JoinGroup offers the cooperative one first when configured):
//!    - eager: the member emits [`GroupEvent::Revoke`] with every task and waits for
//!      [`GroupMember::revoke_done`] and for its queued commits to finish before it sends
//!      JoinGroup: revoked tasks commit first, under the old generation (which the coordinator
//!      accepts while the group prepares the rebalance);
//!    - cooperative (KIP-429): the member rejoins at once, keeps its tasks (they go on
//!      processing and committing under the old generation until the JoinGroup answer) and
//!      lists them as held in its subscription. [`GroupEvent::Assigned`] then names the held
//!      tasks the new assignment lacks (`revoked`): once the engine committed and closed them
//!      ([`GroupMember::revoke_done`]) the member, stable and heartbeating meanwhile, rejoins
//!      for the follow-up rebalance that gives them to their new owner.
//! 5. `UNKNOWN_MEMBER_ID` / `ILLEGAL_GENERATION`, or no successful heartbeat for
//!    [`GroupConfig::session_timeout`]: membership is lost → [`GroupEvent::Lost`] (no commit
//!    possible), member id (for unknown member and session expiry) and generation reset, rejoin.
//!    `FENCED_INSTANCE_ID` (a static member replaced by another instance with its id) is
//!    fatal: [`GroupError::FencedInstance`].
//! 6. `NOT_COORDINATOR` / `COORDINATOR_NOT_AVAILABLE` / `COORDINATOR_LOAD_IN_PROGRESS`, or a
//!    request to the coordinator that got no answer: the coordinator is rediscovered after an
//!    exponential backoff (no jitter) and the interrupted work resumes.
//! 7. [`GroupMember::leave`] → LeaveGroup → [`GroupEvent::Left`]. A static member
//!    ([`GroupConfig::group_instance_id`]) leaves without LeaveGroup unless
//!    [`GroupConfig::static_leave_on_close`]: see `instance` for static membership.
//!
//! # Files
//! - `coordinator`: FindCoordinator and rediscovery;
//! - `join`: JoinGroup, the leader's assignment, SyncGroup, revoke and lost membership;
//! - `heartbeat`: heartbeats and the session timeout;
//! - `leave`: LeaveGroup;
//! - `instance`: static membership (versions, the instance id in requests, fencing);
//! - `committed`: offset fetches and commits through the [`OffsetClient`], and what their
//!   outcomes mean for membership;
//! - `standbys`: the task offsets reported in subscriptions, the standbys of an assignment,
//!   and the follow-up rejoin an assignment asks for.
//!
//! This file holds the member's state and dispatches inputs to them.
//!
//! # Driving it
//! Call [`GroupMember::poll_request`] until it returns `None` after every input; it also does
//! the timed work (heartbeats, backoff, session expiry), as does
//! [`GroupMember::handle_timeout`] at [`GroupMember::poll_timeout`].

mod committed;
mod coordinator;
mod heartbeat;
mod instance;
mod join;
mod leave;
mod standbys;

use std::collections::{BTreeMap, VecDeque};
use std::ops::RangeInclusive;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use kafka_protocol::protocol::StrBytes;

#[cfg(doc)]
use super::assignor;
use super::offsets::OffsetClient;
use super::{GroupConfig, GroupError, GroupEvent, RebalanceProtocol};
use crate::client::producer::GroupMetadata;
use crate::client::{ApiVersionLookup, BrokerId, Outbound, Target};
use crate::record::TopicPartition;
use crate::task::TaskId;
use crate::time::Instant;
use crate::topology::Subtopology;

pub use instance::STATIC_MEMBERSHIP_VERSIONS;

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

/// Where the search for the group coordinator stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coordinator {
    Unknown { retry_at: Instant },
    Finding,
    Known(BrokerId),
}

/// Where membership stands.
#[derive(Debug, Clone, PartialEq)]
enum Phase {
    /// JoinGroup due at `at` (or in flight).
    Joining {
        at: Instant,
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
    /// The tasks it keeps running through this rebalance (cooperative; empty after an eager
    /// revoke or a lost membership).
    held: Vec<TaskId>,
}

/// One member of the consumer group (classic protocol, eager or cooperative rebalancing).
#[derive(Debug)]
pub struct GroupMember {
    config: GroupConfig,
    subtopologies: Vec<Subtopology>,
    topics: Vec<String>,
    partition_counts: BTreeMap<String, i32>,
    now: Instant,
    coordinator: Coordinator,
    failures: u32,
    member_id: String,
    generation: i32,
    phase: Phase,
    in_flight: Option<ApiKey>,
    tasks: Vec<TaskId>,
    partitions: Vec<TopicPartition>,
    previous: Previous,
    /// The protocol the coordinator selected for the current generation.
    protocol: RebalanceProtocol,
    /// The protocol name the coordinator selected for the current generation, as it said it
    /// (JoinGroup v7+; `None` before): echoed in SyncGroup v5+, which the coordinator checks.
    selected_protocol_name: Option<String>,
    /// After a cooperative assignment that revoked tasks: `Some(false)` until the engine
    /// closed them ([`GroupMember::revoke_done`]), then `Some(true)` until the follow-up
    /// JoinGroup is sent.
    revoke_pending: Option<bool>,
    last_heartbeat_ok: Instant,
    next_heartbeat_at: Instant,
    /// The engine's latest task offsets ([`GroupMember::set_task_offsets`]), sent in every
    /// subscription.
    task_offsets: BTreeMap<TaskId, i64>,
    /// The standbys of the current assignment.
    standbys: Vec<TaskId>,
    /// When to rejoin for the follow-up the current assignment asked for.
    followup_at: Option<Instant>,
    /// The generation whose follow-up last fired: an assignment of that same generation again
    /// (the coordinator answered the rejoin without a rebalance) does not schedule it again.
    followup_fired_in: Option<i32>,
    offsets: OffsetClient,
    events: VecDeque<GroupEvent>,
}

impl GroupMember {
    /// A member that will look for its coordinator and join at once. `subtopologies` is the
    /// topology's ([`Topology::subtopologies`](crate::topology::Topology::subtopologies)).
    pub fn new(config: GroupConfig, subtopologies: Vec<Subtopology>, now: Instant) -> Self {
        let mut topics: Vec<String> = subtopologies
            .iter()
            .flat_map(|s| s.source_topics.iter().cloned())
            .collect();
        topics.sort();
        topics.dedup();
        Self {
            offsets: OffsetClient::new(config.group_id.clone(), config.group_instance_id.clone()),
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
            protocol: RebalanceProtocol::Eager,
            selected_protocol_name: None,
            revoke_pending: None,
            last_heartbeat_ok: now,
            next_heartbeat_at: now,
            task_offsets: BTreeMap::new(),
            standbys: Vec::new(),
            followup_at: None,
            followup_fired_in: None,
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

    /// What a transactional producer commits this member's offsets with
    /// ([`Producer::commit_transaction`](crate::client::producer::Producer::commit_transaction)):
    /// the group id, the current generation and member id, and the instance id of a static
    /// member.
    pub fn group_metadata(&self) -> GroupMetadata {
        GroupMetadata {
            group_id: self.config.group_id.clone(),
            generation_id: self.generation,
            member_id: self.member_id.clone(),
            group_instance_id: self.config.group_instance_id.clone(),
        }
    }

    /// The coordinator's node id, when known.
    pub fn coordinator(&self) -> Option<BrokerId> {
        match self.coordinator {
            Coordinator::Known(id) => Some(id),
            _ => None,
        }
    }

    /// The tasks currently assigned (empty during an eager rebalance; kept through a
    /// cooperative one).
    pub fn tasks(&self) -> &[TaskId] {
        &self.tasks
    }

    /// The protocol the coordinator selected for the current (or last) generation.
    pub fn rebalance_protocol(&self) -> RebalanceProtocol {
        self.protocol
    }

    /// Whether the member rejoins while keeping its tasks running (a cooperative rebalance
    /// between the rebalance's start and the new assignment).
    pub fn is_rebalancing_cooperatively(&self) -> bool {
        !self.previous.held.is_empty()
            && matches!(
                self.phase,
                Phase::Joining { .. }
                    | Phase::AwaitingPartitionCounts { .. }
                    | Phase::Syncing { .. }
            )
    }

    /// Whether a [`commit`](Self::commit) now can be accepted: stable, revoking, or rejoining
    /// cooperatively before the JoinGroup answer (the coordinator takes commits of the current
    /// generation while it prepares the rebalance). Between the JoinGroup and the SyncGroup
    /// answers it cannot (the coordinator answers `REBALANCE_IN_PROGRESS`): a commit waits.
    pub fn may_commit(&self) -> bool {
        self.generation >= 0
            && !self.member_id.is_empty()
            && match self.phase {
                Phase::Stable | Phase::Revoking { .. } => true,
                // Still in the generation the held tasks belong to: once a JoinGroup answer
                // moved it on, the coordinator refuses commits until the assignment.
                Phase::Joining { .. } => {
                    !self.previous.held.is_empty() && self.generation == self.previous.generation
                }
                _ => false,
            }
    }

    /// Whether the member holds an assignment and heartbeats.
    pub fn is_stable(&self) -> bool {
        self.phase == Phase::Stable
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<GroupEvent> {
        self.events.pop_front()
    }

    /// The next time [`handle_timeout`](Self::handle_timeout) (or `poll_request`) has timed
    /// work: a retry after backoff, a heartbeat, the session deadline, a follow-up rejoin.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if matches!(self.phase, Phase::Left | Phase::Failed) {
            return None;
        }
        // A fold, no allocation: the engine asks after every poll.
        let mut earliest: Option<Instant> = None;
        let mut offer = |t: Instant| earliest = Some(earliest.map_or(t, |e| e.min(t)));
        match self.coordinator {
            Coordinator::Unknown { retry_at } => offer(retry_at),
            Coordinator::Finding => {}
            Coordinator::Known(_) => {
                if let Some(t) = self.offsets.next_retry_at() {
                    offer(t);
                }
                match self.phase {
                    Phase::Joining { at } if self.in_flight.is_none() => offer(at),
                    Phase::Stable if self.in_flight.is_none() => {
                        offer(self.next_heartbeat_at);
                        if let Some(t) = self.followup_deadline() {
                            offer(t);
                        }
                    }
                    _ => {}
                }
            }
        }
        if self.phase == Phase::Stable {
            offer(self.session_deadline());
        }
        earliest
    }

    /// Does the timed work due at `now` (session expiry); requests due are returned by
    /// [`poll_request`](Self::poll_request).
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.observe(now);
        self.check_session(now);
    }

    /// The next request to send, built for the engine's versions.
    pub fn poll_request(
        &mut self,
        now: Instant,
        versions: &dyn ApiVersionLookup,
    ) -> Option<Outbound> {
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
        now: Instant,
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
            ResponseKind::OffsetFetch(r) => self.on_offset_fetch(r, now),
            ResponseKind::OffsetCommit(r) => self.on_offset_commit(r, now),
            _ => Err(GroupError::ForeignResponse),
        }
    }

    /// A request another component sent to the group coordinator (the transactional
    /// producer's TxnOffsetCommit) was answered NOT_COORDINATOR or COORDINATOR_NOT_AVAILABLE:
    /// find the coordinator again.
    pub fn coordinator_moved(&mut self, now: Instant) {
        let now = self.observe(now);
        self.coordinator_lost(now);
    }

    /// A request this member emitted got no answer (disconnect, timeout): re-plan.
    pub fn handle_request_failed(&mut self, target: Target, api: ApiKey, now: Instant) {
        let now = self.observe(now);
        tracing::debug!(?target, ?api, "group request failed");
        match api {
            ApiKey::FindCoordinator if self.coordinator == Coordinator::Finding => {
                self.coordinator = Coordinator::Unknown {
                    retry_at: now + self.next_backoff(),
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

    /// The JoinGroup, SyncGroup, Heartbeat or LeaveGroup the phase calls for, when none is in
    /// flight.
    fn poll_membership(
        &mut self,
        now: Instant,
        versions: &dyn ApiVersionLookup,
    ) -> Option<Outbound> {
        if self.in_flight.is_some() {
            return None;
        }
        if self.followup_due(now) {
            self.start_followup(now);
        }
        match &mut self.phase {
            Phase::Joining { at } if now >= *at => self.join_request(versions),
            Phase::Revoking { done: true } if self.offsets.commits_idle() => {
                self.phase = Phase::Joining { at: now };
                self.join_request(versions)
            }
            Phase::Stable if self.revoke_pending == Some(true) && self.offsets.commits_idle() => {
                self.revoke_pending = None;
                self.follow_up_rebalance(now);
                self.poll_membership(now, versions)
            }
            Phase::Syncing { assignments } => {
                let assignments = std::mem::take(assignments);
                self.sync_request(assignments, versions)
            }
            Phase::Stable if now >= self.next_heartbeat_at => self.heartbeat_request(now, versions),
            Phase::Leaving => self.leave_request(versions),
            _ => None,
        }
    }

    /// Marks `api` in flight and addresses `request` to the coordinator.
    fn send(&mut self, api: ApiKey, request: RequestKind, version: i16) -> Outbound {
        self.in_flight = Some(api);
        Outbound {
            target: Target::Coordinator,
            request,
            version,
        }
    }

    /// Stops the member for good on `error` from `api`; returns the error.
    fn fatal(&mut self, api: ApiKey, error: ResponseError) -> GroupError {
        let e = GroupError::Fatal { api, error };
        self.fail(e.clone());
        e
    }

    /// Stops the member for good ([`GroupEvent::Failed`]).
    fn fail(&mut self, error: GroupError) {
        tracing::error!(%error, "group member failed");
        self.phase = Phase::Failed;
        self.in_flight = None;
        self.events.push_back(GroupEvent::Failed(error));
    }

    /// The version to build `api` at, within `ours`; without one the member fails.
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

    /// `Ok` when the answer is to the request in flight.
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

    fn observe(&mut self, now: Instant) -> Instant {
        self.now = self.now.max(now);
        self.now
    }
}
