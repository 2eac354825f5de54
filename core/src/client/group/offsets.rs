//! Committed offsets of the group: OffsetFetch and OffsetCommit to the coordinator.
//!
//! [`OffsetClient`] queues fetches and commits, builds their requests and classifies their
//! responses; the [`GroupMember`](super::GroupMember) owns it, sends its requests only while a
//! coordinator is known and turns its outcomes into events (and into membership changes when a
//! commit reveals a rebalance or a lost membership).
//!
//! Commits go out one at a time, in the order they were asked for, and a retried commit is
//! retried before any later one: a late retry can never overwrite a newer offset.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::{
    ApiKey, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse,
    RequestKind,
};
use kafka_protocol::protocol::StrBytes;

use crate::client::{Outbound, Target};
use crate::record::TopicPartition;
use crate::time::{Duration, Instant};

/// OffsetFetch versions we build (v1: per-topic; v8+: per-group).
pub const OFFSET_FETCH_VERSIONS: std::ops::RangeInclusive<i16> = 1..=9;
/// OffsetCommit versions we build.
pub const OFFSET_COMMIT_VERSIONS: std::ops::RangeInclusive<i16> = 2..=9;

/// Identifies one call to [`GroupMember::commit`](super::GroupMember::commit).
pub type CommitId = u64;

/// Why a commit did not happen (the offsets must not be considered committed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    /// The member has no generation (not joined, or membership lost) when asked to commit.
    #[error("not a member of a generation")]
    NotMember,
    /// The generation the commit belonged to ended before the commit could be sent.
    #[error("generation {0} ended before the commit was sent")]
    GenerationEnded(i32),
    /// The coordinator rejected it (REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION,
    /// UNKNOWN_MEMBER_ID, authorization, offset metadata too large, …).
    #[error("coordinator rejected the commit: {0}")]
    Rejected(ResponseError),
    /// The response did not mention every partition we committed.
    #[error("commit response misses {0} partitions")]
    IncompleteResponse(usize),
    /// The member left the group first.
    #[error("member left the group")]
    Left,
}

/// Why committed offsets could not be fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OffsetFetchError {
    /// A non-retriable error from the coordinator.
    #[error("coordinator rejected the offset fetch: {0}")]
    Rejected(ResponseError),
}

/// A commit waiting to be sent or answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingCommit {
    /// Its id.
    pub id: CommitId,
    /// The offsets (next offset to consume) per partition.
    pub offsets: BTreeMap<TopicPartition, i64>,
    /// The generation it belongs to.
    pub generation: i32,
    /// The member id it is sent with.
    pub member_id: String,
}

/// What an OffsetFetch response means.
#[derive(Debug, Clone, PartialEq)]
pub enum FetchOutcome {
    /// Committed offsets (`None` where nothing is committed).
    Fetched(BTreeMap<TopicPartition, Option<i64>>),
    /// Retry after backoff (loading, unstable offsets).
    Retry,
    /// The coordinator moved or is unavailable: rediscover, then retry.
    CoordinatorMoved,
    /// Failed for these partitions.
    Failed(Vec<TopicPartition>, OffsetFetchError),
}

/// What an OffsetCommit response means.
#[derive(Debug, Clone, PartialEq)]
pub enum CommitOutcome {
    /// Every offset was committed.
    Committed(PendingCommit),
    /// The commit failed; `error` is the first error found.
    Failed(PendingCommit, CommitError),
    /// Retry the same commit after backoff.
    Retry,
    /// The coordinator moved or is unavailable: rediscover, then retry the same commit.
    CoordinatorMoved,
}

/// Queues and request building for OffsetFetch and OffsetCommit.
#[derive(Debug)]
pub struct OffsetClient {
    group_id: String,
    group_instance_id: Option<String>,
    fetch_queue: BTreeSet<TopicPartition>,
    fetch_in_flight: Option<BTreeSet<TopicPartition>>,
    fetch_retry_at: Instant,
    commits: VecDeque<PendingCommit>,
    commit_in_flight: bool,
    commit_retry_at: Instant,
    next_commit_id: CommitId,
}

impl OffsetClient {
    /// A client for `group_id` with nothing queued; its commits carry `group_instance_id`
    /// (a static member's, OffsetCommit v7+).
    pub fn new(group_id: impl Into<String>, group_instance_id: Option<String>) -> Self {
        Self {
            group_id: group_id.into(),
            group_instance_id,
            fetch_queue: BTreeSet::new(),
            fetch_in_flight: None,
            fetch_retry_at: Instant::MIN,
            commits: VecDeque::new(),
            commit_in_flight: false,
            commit_retry_at: Instant::MIN,
            next_commit_id: 1,
        }
    }

    /// Queues an offset fetch for `partitions` (merged with other queued fetches).
    pub fn fetch(&mut self, partitions: impl IntoIterator<Item = TopicPartition>) {
        self.fetch_queue.extend(partitions);
    }

    /// A fresh commit id (for commits refused before queueing).
    pub fn next_id(&mut self) -> CommitId {
        let id = self.next_commit_id;
        self.next_commit_id += 1;
        id
    }

    /// Queues a commit of `offsets` for `generation`/`member_id`; returns its id.
    pub fn commit(
        &mut self,
        offsets: BTreeMap<TopicPartition, i64>,
        generation: i32,
        member_id: String,
    ) -> CommitId {
        let id = self.next_id();
        self.commits.push_back(PendingCommit {
            id,
            offsets,
            generation,
            member_id,
        });
        id
    }

    /// Whether an OffsetFetch is awaiting its answer.
    pub fn fetch_in_flight(&self) -> bool {
        self.fetch_in_flight.is_some()
    }

    /// Whether an OffsetCommit is awaiting its answer.
    pub fn commit_in_flight(&self) -> bool {
        self.commit_in_flight
    }

    /// Whether no commit is queued or in flight.
    pub fn commits_idle(&self) -> bool {
        self.commits.is_empty()
    }

    /// Removes every commit not yet sent whose generation is not `generation`.
    pub fn take_stale_commits(&mut self, generation: i32) -> Vec<PendingCommit> {
        let in_flight = usize::from(self.commit_in_flight);
        let keep_head: Vec<PendingCommit> = self.commits.drain(..in_flight).collect();
        let (stale, fresh): (Vec<_>, Vec<_>) = self
            .commits
            .drain(..)
            .partition(|c| c.generation != generation);
        self.commits = keep_head.into_iter().chain(fresh).collect();
        stale
    }

    /// Removes every commit not yet sent.
    pub fn take_unsent_commits(&mut self) -> Vec<PendingCommit> {
        let in_flight = usize::from(self.commit_in_flight);
        self.commits.drain(in_flight..).collect()
    }

    /// The earliest time a queued request waits for (backoff), if any.
    pub fn next_retry_at(&self) -> Option<Instant> {
        let fetch = (!self.fetch_queue.is_empty() && self.fetch_in_flight.is_none())
            .then_some(self.fetch_retry_at);
        let commit =
            (!self.commits.is_empty() && !self.commit_in_flight).then_some(self.commit_retry_at);
        fetch.into_iter().chain(commit).min()
    }

    /// Which request is due; `Err(api)` when the version table gives no usable version.
    pub fn poll_request(
        &mut self,
        now: Instant,
        fetch_version: Option<i16>,
        commit_version: Option<i16>,
    ) -> Result<Option<Outbound>, ApiKey> {
        if self.fetch_in_flight.is_none()
            && !self.fetch_queue.is_empty()
            && now >= self.fetch_retry_at
        {
            let version = fetch_version
                .filter(|v| OFFSET_FETCH_VERSIONS.contains(v))
                .ok_or(ApiKey::OffsetFetch)?;
            let partitions = std::mem::take(&mut self.fetch_queue);
            let request = self.fetch_request(&partitions, version);
            self.fetch_in_flight = Some(partitions);
            return Ok(Some(Outbound {
                target: Target::Coordinator,
                request: RequestKind::OffsetFetch(request),
                version,
            }));
        }
        if !self.commit_in_flight
            && now >= self.commit_retry_at
            && let Some(commit) = self.commits.front()
        {
            let version = commit_version
                .filter(|v| OFFSET_COMMIT_VERSIONS.contains(v))
                .ok_or(ApiKey::OffsetCommit)?;
            let instance_id = self.group_instance_id.as_deref().filter(|_| version >= 7);
            let request = commit_request(&self.group_id, instance_id, commit);
            self.commit_in_flight = true;
            return Ok(Some(Outbound {
                target: Target::Coordinator,
                request: RequestKind::OffsetCommit(request),
                version,
            }));
        }
        Ok(None)
    }

    fn fetch_request(
        &self,
        partitions: &BTreeSet<TopicPartition>,
        version: i16,
    ) -> OffsetFetchRequest {
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for tp in partitions {
            by_topic.entry(&tp.topic).or_default().push(tp.partition);
        }
        let group_id = StrBytes::from_string(self.group_id.clone());
        let request = OffsetFetchRequest::default().with_require_stable(version >= 7);
        if version >= 8 {
            let topics = by_topic
                .into_iter()
                .map(|(t, ps)| {
                    OffsetFetchRequestTopics::default()
                        .with_name(StrBytes::from_string(t.to_owned()).into())
                        .with_partition_indexes(ps)
                })
                .collect();
            request.with_groups(vec![
                OffsetFetchRequestGroup::default()
                    .with_group_id(group_id.into())
                    .with_topics(Some(topics)),
            ])
        } else {
            let topics = by_topic
                .into_iter()
                .map(|(t, ps)| {
                    OffsetFetchRequestTopic::default()
                        .with_name(StrBytes::from_string(t.to_owned()).into())
                        .with_partition_indexes(ps)
                })
                .collect();
            request
                .with_group_id(group_id.into())
                .with_topics(Some(topics))
        }
    }

    /// Classifies an OffsetFetch response to the fetch in flight.
    pub fn handle_fetch_response(
        &mut self,
        response: &OffsetFetchResponse,
        now: Instant,
        backoff: Duration,
    ) -> FetchOutcome {
        let Some(asked) = self.fetch_in_flight.take() else {
            return FetchOutcome::Retry;
        };
        // Group-level error (v2-7 top level, v8+ per group).
        let group_error = response
            .groups
            .first()
            .map_or(response.error_code, |g| g.error_code);
        let mut partitions: Vec<(TopicPartition, i64, i16)> = Vec::new();
        for t in &response.topics {
            for p in &t.partitions {
                partitions.push((
                    TopicPartition::new(t.name.to_string(), p.partition_index),
                    p.committed_offset,
                    p.error_code,
                ));
            }
        }
        for g in &response.groups {
            for t in &g.topics {
                for p in &t.partitions {
                    partitions.push((
                        TopicPartition::new(t.name.to_string(), p.partition_index),
                        p.committed_offset,
                        p.error_code,
                    ));
                }
            }
        }
        let first_error = ResponseError::try_from_code(group_error).or_else(|| {
            partitions
                .iter()
                .find_map(|&(_, _, code)| ResponseError::try_from_code(code))
        });
        match first_error {
            None => {
                let mut offsets: BTreeMap<TopicPartition, Option<i64>> = partitions
                    .into_iter()
                    .filter(|(tp, _, _)| asked.contains(tp))
                    .map(|(tp, offset, _)| (tp, (offset >= 0).then_some(offset)))
                    .collect();
                // A partition the coordinator did not mention has nothing committed.
                for tp in asked {
                    offsets.entry(tp).or_insert(None);
                }
                FetchOutcome::Fetched(offsets)
            }
            Some(error) => {
                if is_coordinator_error(error) {
                    self.fetch_queue.extend(asked);
                    FetchOutcome::CoordinatorMoved
                } else if error.is_retriable() {
                    self.fetch_queue.extend(asked);
                    self.fetch_retry_at = now + backoff;
                    FetchOutcome::Retry
                } else {
                    FetchOutcome::Failed(
                        asked.into_iter().collect(),
                        OffsetFetchError::Rejected(error),
                    )
                }
            }
        }
    }

    /// Classifies an OffsetCommit response to the commit in flight.
    pub fn handle_commit_response(
        &mut self,
        response: &OffsetCommitResponse,
        now: Instant,
        backoff: Duration,
    ) -> CommitOutcome {
        if !self.commit_in_flight {
            return CommitOutcome::Retry;
        }
        self.commit_in_flight = false;
        let Some(commit) = self.commits.front() else {
            return CommitOutcome::Retry;
        };
        let mut answered: BTreeSet<TopicPartition> = BTreeSet::new();
        let mut first_error = None;
        for t in &response.topics {
            for p in &t.partitions {
                answered.insert(TopicPartition::new(t.name.to_string(), p.partition_index));
                if first_error.is_none() {
                    first_error = ResponseError::try_from_code(p.error_code);
                }
            }
        }
        let outcome = match first_error {
            Some(error) if is_coordinator_error(error) => return CommitOutcome::CoordinatorMoved,
            Some(
                error @ (ResponseError::CoordinatorLoadInProgress
                | ResponseError::UnknownTopicOrPartition
                | ResponseError::RequestTimedOut),
            ) => {
                tracing::debug!(%error, "offset commit will be retried");
                self.commit_retry_at = now + backoff;
                return CommitOutcome::Retry;
            }
            Some(error) => Err(CommitError::Rejected(error)),
            None => {
                let missing = commit
                    .offsets
                    .keys()
                    .filter(|tp| !answered.contains(*tp))
                    .count();
                if missing > 0 {
                    Err(CommitError::IncompleteResponse(missing))
                } else {
                    Ok(())
                }
            }
        };
        let Some(commit) = self.commits.pop_front() else {
            return CommitOutcome::Retry;
        };
        match outcome {
            Ok(()) => CommitOutcome::Committed(commit),
            Err(e) => CommitOutcome::Failed(commit, e),
        }
    }

    /// The request `api` got no answer: put its work back so it is sent again (the member
    /// rediscovers the coordinator first).
    pub fn request_failed(&mut self, api: ApiKey) {
        match api {
            ApiKey::OffsetFetch => {
                if let Some(asked) = self.fetch_in_flight.take() {
                    self.fetch_queue.extend(asked);
                }
            }
            ApiKey::OffsetCommit => self.commit_in_flight = false,
            _ => {}
        }
    }
}

/// Errors meaning "ask FindCoordinator again".
pub(crate) fn is_coordinator_error(error: ResponseError) -> bool {
    matches!(
        error,
        ResponseError::NotCoordinator | ResponseError::CoordinatorNotAvailable
    )
}

fn commit_request(
    group_id: &str,
    group_instance_id: Option<&str>,
    commit: &PendingCommit,
) -> OffsetCommitRequest {
    let mut by_topic: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
    for (tp, &offset) in &commit.offsets {
        by_topic.entry(&tp.topic).or_default().push(
            OffsetCommitRequestPartition::default()
                .with_partition_index(tp.partition)
                .with_committed_offset(offset),
        );
    }
    OffsetCommitRequest::default()
        .with_group_id(StrBytes::from_string(group_id.to_owned()).into())
        .with_generation_id_or_member_epoch(commit.generation)
        .with_member_id(StrBytes::from_string(commit.member_id.clone()))
        .with_group_instance_id(group_instance_id.map(|id| StrBytes::from_string(id.to_owned())))
        .with_topics(
            by_topic
                .into_iter()
                .map(|(t, partitions)| {
                    OffsetCommitRequestTopic::default()
                        .with_name(StrBytes::from_string(t.to_owned()).into())
                        .with_partitions(partitions)
                })
                .collect(),
        )
}
