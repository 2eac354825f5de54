//! The classic consumer-group coordinator: membership, generations, rebalances, session expiry.
//!
//! Modelled on Kafka's `GroupCoordinator` (pre-KIP-848): a group moves through `Empty →
//! PreparingRebalance → CompletingRebalance → Stable`. JoinGroup responses are delayed until
//! every known member has rejoined (or the rebalance timeout removes the laggards); SyncGroup
//! responses are delayed until the leader sends the assignment. Delayed responses are returned
//! as [`Delivery`] values for the cluster to put on the right connection.
//!
//! Static membership (`group.instance.id`, see `static_members`): a static member joins
//! without MEMBER_ID_REQUIRED, a restarted one takes over its old member's assignment with no
//! rebalance in a stable group, and requests of the replaced member are fenced.

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{
    JoinGroupRequest, JoinGroupResponse, ResponseKind, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::ConnId;

mod static_members;

/// Where a delayed response goes: the connection, the request's correlation id and version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingReply {
    /// The connection the request came on.
    pub conn: ConnId,
    /// The request's correlation id.
    pub correlation_id: i32,
    /// The request's API version.
    pub version: i16,
}

/// A delayed response ready to be sent.
pub type Delivery = (PendingReply, ResponseKind);

/// The state of a classic group, as in Kafka's `GroupState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members (offsets may still be stored).
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Joined; waiting for the leader's SyncGroup.
    CompletingRebalance,
    /// Assignment distributed.
    Stable,
}

/// A group member as the tests see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMemberInfo {
    /// Member id given by the coordinator.
    pub member_id: String,
    /// `group.instance.id`, if the member sent one.
    pub group_instance_id: Option<String>,
    /// The client id of the member's JoinGroup.
    pub client_id: String,
    /// The member's assignment from the last completed SyncGroup (empty before).
    pub assignment: Bytes,
    /// Whether the member is the group leader.
    pub is_leader: bool,
}

/// Coordinator-side limits (Kafka's `group.min/max.session.timeout.ms`,
/// `group.initial.rebalance.delay.ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupConfig {
    /// Smallest session timeout accepted.
    pub min_session_timeout_ms: i32,
    /// Largest session timeout accepted.
    pub max_session_timeout_ms: i32,
    /// How long the first rebalance of an empty group waits for more members.
    pub initial_rebalance_delay_ms: i64,
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 0,
        }
    }
}

#[derive(Debug, Clone)]
struct Member {
    member_id: String,
    group_instance_id: Option<StrBytes>,
    client_id: String,
    session_timeout_ms: i32,
    rebalance_timeout_ms: i32,
    protocols: Vec<(StrBytes, Bytes)>,
    assignment: Bytes,
    last_seen: i64,
    /// Joined order, for leader election.
    join_seq: u64,
    pending_join: Option<PendingReply>,
    pending_sync: Option<PendingReply>,
}

impl Member {
    fn session_deadline(&self) -> Option<i64> {
        // A member waiting for its JoinGroup response is governed by the rebalance timeout.
        self.pending_join
            .is_none()
            .then(|| self.last_seen + i64::from(self.session_timeout_ms))
    }
}

/// Why the coordinator removed a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemovalReason {
    /// Its session timed out.
    SessionExpired,
    /// It did not rejoin before the rebalance timeout.
    NotRejoined,
    /// It left (LeaveGroup).
    Left,
    /// A restarted static member under its `group.instance.id` took its place.
    Replaced,
}

/// A member the coordinator removed, as the tests see it (see [`Group::removals`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRemoval {
    /// Simulated time of the removal.
    pub at: i64,
    /// The member id removed.
    pub member_id: String,
    /// Why.
    pub reason: RemovalReason,
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// The offset.
    pub offset: i64,
    /// Leader epoch sent with the commit (-1 if none).
    pub leader_epoch: i32,
    /// Metadata string sent with the commit.
    pub metadata: Option<StrBytes>,
}

/// One group's membership and committed offsets.
#[derive(Debug, Clone)]
pub struct Group {
    state: GroupState,
    generation: i32,
    protocol_type: Option<StrBytes>,
    protocol_name: Option<StrBytes>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with their expiry.
    pending_members: BTreeMap<String, i64>,
    rebalance_deadline: Option<i64>,
    initial_delay_until: Option<i64>,
    next_join_seq: u64,
    /// Every member removed so far, in order.
    removals: Vec<MemberRemoval>,
    /// Committed offsets by (topic, partition).
    pub offsets: BTreeMap<(String, i32), CommittedOffset>,
}

impl Default for Group {
    fn default() -> Self {
        Self {
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            pending_members: BTreeMap::new(),
            rebalance_deadline: None,
            initial_delay_until: None,
            next_join_seq: 0,
            removals: Vec::new(),
            offsets: BTreeMap::new(),
        }
    }
}

fn join_error(version: i16, error: ResponseError, member_id: StrBytes) -> ResponseKind {
    let mut response = JoinGroupResponse::default()
        .with_error_code(error.code())
        .with_generation_id(-1)
        .with_member_id(member_id);
    response.protocol_name = if version >= 7 {
        None
    } else {
        Some(StrBytes::default())
    };
    ResponseKind::JoinGroup(response)
}

fn sync_response(version: i16, error: i16, group: &Group, assignment: Bytes) -> ResponseKind {
    let mut response = SyncGroupResponse::default()
        .with_error_code(error)
        .with_assignment(assignment);
    if version >= 5 && error == 0 {
        response.protocol_type = group.protocol_type.clone();
        response.protocol_name = group.protocol_name.clone();
    }
    ResponseKind::SyncGroup(response)
}

impl Group {
    /// The group's state.
    pub fn state(&self) -> GroupState {
        self.state
    }

    /// The current generation.
    pub fn generation(&self) -> i32 {
        self.generation
    }

    /// Every member removed so far (session expired, not rejoined in time, left, replaced by
    /// a restarted static member), in the order of removal.
    pub fn removals(&self) -> &[MemberRemoval] {
        &self.removals
    }

    /// Notes a removal (see [`removals`](Self::removals)).
    fn note_removal(&mut self, member_id: &str, reason: RemovalReason, now: i64) {
        self.removals.push(MemberRemoval {
            at: now,
            member_id: member_id.to_owned(),
            reason,
        });
    }

    /// Whether `member_id` is a current member.
    pub fn has_member(&self, member_id: &str) -> bool {
        self.members.contains_key(member_id)
    }

    /// Members in join order.
    pub fn members(&self) -> Vec<GroupMemberInfo> {
        let mut members: Vec<&Member> = self.members.values().collect();
        members.sort_by_key(|m| m.join_seq);
        members
            .into_iter()
            .map(|m| GroupMemberInfo {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.as_ref().map(|s| s.to_string()),
                client_id: m.client_id.clone(),
                assignment: m.assignment.clone(),
                is_leader: self.leader.as_deref() == Some(m.member_id.as_str()),
            })
            .collect()
    }

    /// Refreshes a member's session (any accepted group request from it does).
    pub fn touch(&mut self, member_id: &str, now: i64) {
        if let Some(member) = self.members.get_mut(member_id) {
            member.last_seen = member.last_seen.max(now);
        }
    }

    /// The next time [`expire`](Self::expire) has work.
    pub fn next_deadline(&self) -> Option<i64> {
        let sessions = self
            .members
            .values()
            .filter_map(|m| m.session_deadline().map(|d| d + 1));
        let pending = self.pending_members.values().map(|d| d + 1);
        sessions
            .chain(pending)
            .chain(self.rebalance_deadline)
            .chain(self.initial_delay_until)
            .min()
    }

    /// Handles a JoinGroup. `new_member_id` is the id to hand out if the request has none.
    /// Returns the immediate response, or `None` if the response is delayed (parked on the
    /// member and delivered later through `out`).
    #[allow(clippy::too_many_arguments)]
    pub fn join(
        &mut self,
        request: &JoinGroupRequest,
        origin: PendingReply,
        client_id: &str,
        new_member_id: impl FnOnce() -> String,
        config: &GroupConfig,
        now: i64,
        out: &mut Vec<Delivery>,
    ) -> Option<ResponseKind> {
        let version = origin.version;
        let member_id_in = request.member_id.to_string();
        if request.session_timeout_ms < config.min_session_timeout_ms
            || request.session_timeout_ms > config.max_session_timeout_ms
        {
            return Some(join_error(
                version,
                ResponseError::InvalidSessionTimeout,
                request.member_id.clone(),
            ));
        }
        if request.protocol_type.is_empty()
            || request.protocols.is_empty()
            || !self.protocols_compatible(request, &member_id_in)
        {
            return Some(join_error(
                version,
                ResponseError::InconsistentGroupProtocol,
                request.member_id.clone(),
            ));
        }
        let mut new_member_id = Some(new_member_id);
        let mut next_id = || new_member_id.take().map_or_else(String::new, |f| f());
        match self.static_join(request, origin, &mut next_id, config, now, out) {
            static_members::StaticJoin::Respond(response) => return Some(*response),
            static_members::StaticJoin::Parked => return None,
            static_members::StaticJoin::Ordinary => {}
        }
        let member_id = if member_id_in.is_empty() {
            let id = next_id();
            // Static members skip the member id round trip (KIP-394 needs it of dynamic ones).
            if version >= 4 && request.group_instance_id.is_none() {
                let expiry = now + i64::from(request.session_timeout_ms);
                self.pending_members.insert(id.clone(), expiry);
                return Some(join_error(
                    version,
                    ResponseError::MemberIdRequired,
                    StrBytes::from_string(id),
                ));
            }
            id
        } else if self.pending_members.remove(&member_id_in).is_some() {
            member_id_in
        } else if self.members.contains_key(&member_id_in) {
            return self.rejoin(request, origin, member_id_in, config, now, out);
        } else {
            return Some(join_error(
                version,
                ResponseError::UnknownMemberId,
                request.member_id.clone(),
            ));
        };
        // A new member.
        let rebalance_timeout_ms = if version >= 1 {
            request.rebalance_timeout_ms
        } else {
            request.session_timeout_ms
        };
        let join_seq = self.next_join_seq;
        self.next_join_seq += 1;
        let was_empty = self.members.is_empty();
        self.members.insert(
            member_id.clone(),
            Member {
                member_id,
                group_instance_id: request.group_instance_id.clone(),
                client_id: client_id.to_owned(),
                session_timeout_ms: request.session_timeout_ms,
                rebalance_timeout_ms,
                protocols: protocols_of(request),
                assignment: Bytes::new(),
                last_seen: now,
                join_seq,
                pending_join: Some(origin),
                pending_sync: None,
            },
        );
        if was_empty {
            self.protocol_type = Some(request.protocol_type.clone());
        }
        if self.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(was_empty, config, now, out);
        }
        self.try_complete_join(now, false, out);
        None
    }

    fn rejoin(
        &mut self,
        request: &JoinGroupRequest,
        origin: PendingReply,
        member_id: String,
        config: &GroupConfig,
        now: i64,
        out: &mut Vec<Delivery>,
    ) -> Option<ResponseKind> {
        let protocols = protocols_of(request);
        let is_leader = self.leader.as_deref() == Some(member_id.as_str());
        let state = self.state;
        let Some(member) = self.members.get_mut(&member_id) else {
            return Some(join_error(
                origin.version,
                ResponseError::UnknownMemberId,
                request.member_id.clone(),
            ));
        };
        member.last_seen = now;
        member.session_timeout_ms = request.session_timeout_ms;
        if origin.version >= 1 {
            member.rebalance_timeout_ms = request.rebalance_timeout_ms;
        }
        let unchanged = member.protocols == protocols;
        member.protocols = protocols;
        match state {
            GroupState::CompletingRebalance | GroupState::Stable
                if unchanged && (state == GroupState::CompletingRebalance || !is_leader) =>
            {
                // Kafka answers with the current generation without a new rebalance.
                Some(self.join_response(&member_id, origin.version))
            }
            GroupState::PreparingRebalance => {
                member.pending_join = Some(origin);
                self.try_complete_join(now, false, out);
                None
            }
            _ => {
                member.pending_join = Some(origin);
                self.prepare_rebalance(false, config, now, out);
                self.try_complete_join(now, false, out);
                None
            }
        }
    }

    fn protocols_compatible(&self, request: &JoinGroupRequest, member_id: &str) -> bool {
        let others: Vec<&Member> = self
            .members
            .values()
            .filter(|m| m.member_id != member_id)
            .collect();
        if others.is_empty() {
            return true;
        }
        if self.protocol_type.as_ref() != Some(&request.protocol_type) {
            return false;
        }
        request.protocols.iter().any(|p| {
            others
                .iter()
                .all(|m| m.protocols.iter().any(|(name, _)| *name == p.name))
        })
    }

    /// Enters PreparingRebalance (answering parked SyncGroups with REBALANCE_IN_PROGRESS).
    fn prepare_rebalance(
        &mut self,
        from_empty: bool,
        config: &GroupConfig,
        now: i64,
        out: &mut Vec<Delivery>,
    ) {
        if self.state == GroupState::CompletingRebalance {
            for member in self.members.values_mut() {
                if let Some(reply) = member.pending_sync.take() {
                    let response = ResponseKind::SyncGroup(
                        SyncGroupResponse::default()
                            .with_error_code(ResponseError::RebalanceInProgress.code()),
                    );
                    out.push((reply, response));
                }
            }
        }
        self.state = GroupState::PreparingRebalance;
        let timeout = self
            .members
            .values()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0);
        self.rebalance_deadline = Some(now + timeout);
        self.initial_delay_until = (from_empty && config.initial_rebalance_delay_ms > 0)
            .then(|| now + config.initial_rebalance_delay_ms.min(timeout));
    }

    /// Completes the join phase if every member has rejoined (or `force`: the rebalance
    /// timeout passed and the laggards are removed).
    fn try_complete_join(&mut self, now: i64, force: bool, out: &mut Vec<Delivery>) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        if !force {
            if self.initial_delay_until.is_some_and(|until| now < until) {
                return;
            }
            if self.members.values().any(|m| m.pending_join.is_none()) {
                return;
            }
        }
        let laggards: Vec<String> = self
            .members
            .values()
            .filter(|m| m.pending_join.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for id in laggards {
            self.members.remove(&id);
            self.note_removal(&id, RemovalReason::NotRejoined, now);
        }
        self.initial_delay_until = None;
        self.rebalance_deadline = None;
        self.generation += 1;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol_name = None;
            self.leader = None;
            return;
        }
        if !self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.contains_key(l))
        {
            self.leader = self
                .members
                .values()
                .min_by_key(|m| m.join_seq)
                .map(|m| m.member_id.clone());
        }
        self.protocol_name = self.select_protocol();
        self.state = GroupState::CompletingRebalance;
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let Some(reply) = self.members.get_mut(&id).and_then(|m| {
                m.last_seen = now;
                m.assignment = Bytes::new();
                m.pending_join.take()
            }) else {
                continue;
            };
            let response = self.join_response(&id, reply.version);
            out.push((reply, response));
        }
    }

    /// Kafka's protocol vote: among protocols every member supports, each member votes for
    /// its most preferred; the most votes wins (ties: the leader's preference order).
    fn select_protocol(&self) -> Option<StrBytes> {
        let leader = self.leader.as_ref().and_then(|l| self.members.get(l))?;
        let candidates: Vec<&StrBytes> = leader
            .protocols
            .iter()
            .map(|(name, _)| name)
            .filter(|name| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == *name))
            })
            .collect();
        let mut best: Option<(&StrBytes, usize)> = None;
        for candidate in &candidates {
            let votes = self
                .members
                .values()
                .filter(|m| {
                    m.protocols
                        .iter()
                        .map(|(n, _)| n)
                        .find(|n| candidates.contains(n))
                        == Some(*candidate)
                })
                .count();
            if best.is_none_or(|(_, v)| votes > v) {
                best = Some((candidate, votes));
            }
        }
        best.map(|(name, _)| name.clone())
    }

    fn join_response(&self, member_id: &str, version: i16) -> ResponseKind {
        let is_leader = self.leader.as_deref() == Some(member_id);
        let mut members = Vec::new();
        if is_leader {
            let mut sorted: Vec<&Member> = self.members.values().collect();
            sorted.sort_by_key(|m| m.join_seq);
            for m in sorted {
                let metadata = m
                    .protocols
                    .iter()
                    .find(|(name, _)| Some(name) == self.protocol_name.as_ref())
                    .map(|(_, metadata)| metadata.clone())
                    .unwrap_or_default();
                let mut entry = JoinGroupResponseMember::default()
                    .with_member_id(StrBytes::from_string(m.member_id.clone()))
                    .with_metadata(metadata);
                if version >= 5 {
                    entry.group_instance_id = m.group_instance_id.clone();
                }
                members.push(entry);
            }
        }
        let mut response = JoinGroupResponse::default()
            .with_generation_id(self.generation)
            .with_protocol_name(self.protocol_name.clone())
            .with_leader(StrBytes::from_string(
                self.leader.clone().unwrap_or_default(),
            ))
            .with_member_id(StrBytes::from_string(member_id.to_owned()))
            .with_members(members);
        if version >= 7 {
            response.protocol_type = self.protocol_type.clone();
        }
        ResponseKind::JoinGroup(response)
    }

    /// Handles a SyncGroup. `None`: parked until the leader's assignment arrives.
    pub fn sync(
        &mut self,
        request: &SyncGroupRequest,
        origin: PendingReply,
        now: i64,
        out: &mut Vec<Delivery>,
    ) -> Option<ResponseKind> {
        let version = origin.version;
        let member_id = request.member_id.to_string();
        let error = |e: ResponseError| {
            Some(ResponseKind::SyncGroup(
                SyncGroupResponse::default().with_error_code(e.code()),
            ))
        };
        if !self.members.contains_key(&member_id) {
            return error(ResponseError::UnknownMemberId);
        }
        if request.generation_id != self.generation {
            return error(ResponseError::IllegalGeneration);
        }
        if version >= 5
            && (request
                .protocol_type
                .as_ref()
                .is_some_and(|t| Some(t) != self.protocol_type.as_ref())
                || request
                    .protocol_name
                    .as_ref()
                    .is_some_and(|n| Some(n) != self.protocol_name.as_ref()))
        {
            return error(ResponseError::InconsistentGroupProtocol);
        }
        self.touch(&member_id, now);
        match self.state {
            GroupState::Empty => error(ResponseError::UnknownMemberId),
            GroupState::PreparingRebalance => error(ResponseError::RebalanceInProgress),
            GroupState::Stable => {
                let assignment = self
                    .members
                    .get(&member_id)
                    .map(|m| m.assignment.clone())
                    .unwrap_or_default();
                Some(sync_response(version, 0, self, assignment))
            }
            GroupState::CompletingRebalance => {
                if let Some(member) = self.members.get_mut(&member_id) {
                    member.pending_sync = Some(origin);
                }
                if self.leader.as_deref() == Some(member_id.as_str()) {
                    for assignment in &request.assignments {
                        if let Some(member) = self.members.get_mut(assignment.member_id.as_str()) {
                            member.assignment = assignment.assignment.clone();
                        }
                    }
                    self.state = GroupState::Stable;
                    let ids: Vec<String> = self.members.keys().cloned().collect();
                    for id in ids {
                        let Some((reply, assignment)) = self
                            .members
                            .get_mut(&id)
                            .and_then(|m| m.pending_sync.take().map(|r| (r, m.assignment.clone())))
                        else {
                            continue;
                        };
                        let response = sync_response(reply.version, 0, self, assignment);
                        out.push((reply, response));
                    }
                }
                None
            }
        }
    }

    /// Handles a Heartbeat; returns its error code (0 for none).
    pub fn heartbeat(&mut self, member_id: &str, generation: i32, now: i64) -> i16 {
        if self.state == GroupState::Empty || !self.members.contains_key(member_id) {
            return ResponseError::UnknownMemberId.code();
        }
        if generation != self.generation {
            return ResponseError::IllegalGeneration.code();
        }
        self.touch(member_id, now);
        match self.state {
            GroupState::PreparingRebalance => ResponseError::RebalanceInProgress.code(),
            _ => 0,
        }
    }

    /// Removes a member that leaves (LeaveGroup). Returns false if it is unknown.
    pub fn leave(
        &mut self,
        member_id: &str,
        config: &GroupConfig,
        now: i64,
        out: &mut Vec<Delivery>,
    ) -> bool {
        if self.members.remove(member_id).is_none() {
            return false;
        }
        self.note_removal(member_id, RemovalReason::Left, now);
        self.after_removal(config, now, out);
        true
    }

    fn after_removal(&mut self, config: &GroupConfig, now: i64, out: &mut Vec<Delivery>) {
        if self
            .leader
            .as_ref()
            .is_some_and(|l| !self.members.contains_key(l))
        {
            self.leader = None;
        }
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                if self.members.is_empty() {
                    self.state = GroupState::Empty;
                    self.generation += 1;
                    self.protocol_name = None;
                } else {
                    self.prepare_rebalance(false, config, now, out);
                }
            }
            GroupState::PreparingRebalance => self.try_complete_join(now, false, out),
            GroupState::Empty => {}
        }
    }

    /// Expires members whose session ran out and completes rebalances whose timeout passed.
    pub fn expire(&mut self, config: &GroupConfig, now: i64, out: &mut Vec<Delivery>) {
        self.pending_members.retain(|_, expiry| *expiry >= now);
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.session_deadline().is_some_and(|d| now > d))
            .map(|m| m.member_id.clone())
            .collect();
        for id in expired {
            tracing::debug!(member = %id, "simulated coordinator: session expired");
            self.members.remove(&id);
            self.note_removal(&id, RemovalReason::SessionExpired, now);
            self.after_removal(config, now, out);
        }
        if self.state == GroupState::PreparingRebalance {
            let force = self.rebalance_deadline.is_some_and(|d| now >= d);
            self.try_complete_join(now, force, out);
        }
    }

    /// Answers every parked JoinGroup/SyncGroup with `error` (the coordinator moved).
    pub fn fail_pending(&mut self, error: ResponseError, out: &mut Vec<Delivery>) {
        for member in self.members.values_mut() {
            if let Some(reply) = member.pending_join.take() {
                out.push((
                    reply,
                    join_error(
                        reply.version,
                        error,
                        StrBytes::from_string(member.member_id.clone()),
                    ),
                ));
            }
            if let Some(reply) = member.pending_sync.take() {
                out.push((
                    reply,
                    ResponseKind::SyncGroup(
                        SyncGroupResponse::default().with_error_code(error.code()),
                    ),
                ));
            }
        }
    }

    /// Forgets parked responses of a closed connection (the member stays until it expires).
    pub fn forget_connection(&mut self, conn: ConnId) {
        for member in self.members.values_mut() {
            if member.pending_join.is_some_and(|r| r.conn == conn) {
                member.pending_join = None;
            }
            if member.pending_sync.is_some_and(|r| r.conn == conn) {
                member.pending_sync = None;
            }
        }
    }

    /// Checks an OffsetCommit's generation and member, in the order of Kafka's classic
    /// `GroupCoordinator` (`validateOffsetCommit`, then the group state): a group with no
    /// members takes commits with a negative generation (offsets without group management);
    /// otherwise the member must be current (else `UNKNOWN_MEMBER_ID`) and of the current
    /// generation (else `ILLEGAL_GENERATION`), and only then does a group waiting for its
    /// leader's assignment answer `REBALANCE_IN_PROGRESS`. A group preparing a rebalance
    /// still takes commits of the current generation (the revoke commits of eager members).
    pub fn check_commit(&self, generation: i32, member_id: &str) -> Result<(), ResponseError> {
        if generation < 0 && self.state == GroupState::Empty {
            return Ok(());
        }
        if !self.members.contains_key(member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        if generation != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        if self.state == GroupState::CompletingRebalance {
            return Err(ResponseError::RebalanceInProgress);
        }
        Ok(())
    }
}

fn protocols_of(request: &JoinGroupRequest) -> Vec<(StrBytes, Bytes)> {
    request
        .protocols
        .iter()
        .map(|p| (p.name.clone(), p.metadata.clone()))
        .collect()
}
