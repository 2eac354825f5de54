//! Consumer-group membership with the classic group protocol, our task assignor, and the
//! group's committed offsets.
//!
//! - [`member`]: [`GroupMember`], the state machine for FindCoordinator, JoinGroup, SyncGroup,
//!   Heartbeat and LeaveGroup, which also owns the offset requests;
//! - [`assignor`]: the leader's balanced, sticky, state-aware task assignment with standbys
//!   and warm-ups (pure functions);
//! - [`protocol`]: subscription and assignment bytes (standard `"consumer"` embedded protocol
//!   with our task ids in `user_data`), and the two JoinGroup protocols: eager `"kstreams"`
//!   and cooperative `"kstreams-cooperative"` (see [`RebalanceProtocol`]);
//! - [`offsets`]: OffsetFetch and OffsetCommit requests and their outcomes.
//!
//! The engine drives one [`GroupMember`] like every client component (see
//! [`crate::client`]): `poll_request` → send → `handle_response` / `handle_request_failed`,
//! `poll_timeout` → `handle_timeout`, and `poll_event` for what happened.

pub mod assignor;
pub mod member;
pub mod offsets;
pub mod protocol;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::ApiKey;

pub use assignor::{
    AssignError, AssignmentPlan, AssignorConfig, MemberAssignment, MemberSubscription, Placement,
    assign, place_by_state, plan, withhold_held_elsewhere,
};
pub use member::GroupMember;
pub use offsets::{CommitError, CommitId, OffsetFetchError};
pub use protocol::ProtocolError;

use crate::client::BrokerId;
use crate::record::TopicPartition;
use crate::task::TaskId;
use crate::time::Duration;

/// Settings of a group member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// The group id (the application id in Kafka Streams).
    pub group_id: String,
    /// The rebalance protocols offered in JoinGroup (eager by default): cooperative offers
    /// [`protocol::COOPERATIVE_PROTOCOL_NAME`] first and [`protocol::DEFAULT_PROTOCOL_NAME`]
    /// second, so a group with a member offering only eager falls back to eager.
    pub rebalance_protocol: RebalanceProtocol,
    /// The coordinator evicts the member after this long without a heartbeat (Kafka's
    /// `session.timeout.ms`; sent in JoinGroup, saturating at `i32::MAX` ms).
    pub session_timeout: Duration,
    /// How long the coordinator waits for every member to rejoin during a rebalance (Kafka's
    /// `max.poll.interval.ms`; sent in JoinGroup, saturating at `i32::MAX` ms).
    pub rebalance_timeout: Duration,
    /// Time between heartbeats while stable (Kafka's `heartbeat.interval.ms`).
    pub heartbeat_interval: Duration,
    /// First backoff before retrying after an error; doubles on each consecutive failure
    /// (Kafka's `retry.backoff.ms`).
    pub retry_backoff: Duration,
    /// Largest backoff (Kafka's `retry.backoff.max.ms`).
    pub retry_backoff_max: Duration,
    /// Static membership (KIP-345, Kafka's `group.instance.id`): the coordinator knows the
    /// member by this id across restarts. A member rejoining under it within the session
    /// timeout gets its assignment back without a rebalance; another member joining under it
    /// fences this one ([`GroupError::FencedInstance`]). Needs JoinGroup v5+ (Kafka 2.3).
    /// `None` (default): a dynamic member.
    pub group_instance_id: Option<String>,
    /// Whether [`GroupMember::leave`] sends LeaveGroup. Always for a dynamic member; a static
    /// member sends it only when this is set: by default it closes silently and the group
    /// keeps its assignment until the session timeout, so a restart within it rebalances
    /// nothing (as Kafka Streams does).
    pub static_leave_on_close: bool,
    /// Standby replicas per stateful task (Kafka's `num.standby.replicas`), placed by the
    /// leader on members of other processes than the task's active. Default 0.
    pub num_standby_replicas: usize,
    /// A member whose copy of a task's state is at most this many changelog records behind the
    /// most advanced copy is caught up (Kafka's `acceptable.recovery.lag`): the leader moves a
    /// stateful task only to a caught-up member. Default 10,000.
    pub acceptable_recovery_lag: i64,
    /// At most this many warm-up replicas in the whole group at once (Kafka's
    /// `max.warmup.replicas`). Default 2.
    pub max_warmup_replicas: usize,
    /// After assigning warm-ups the leader rejoins after this long, to move the tasks whose
    /// warm-up caught up (the probing rebalance, Kafka's `probing.rebalance.interval.ms`).
    /// Default 10 minutes.
    pub probing_rebalance_interval: Duration,
    /// The id of this member's process, sent in the subscription: standbys go to other
    /// processes than their active. `""` (default): unknown, a process of its own.
    pub process_id: String,
    /// The sub-topologies with logged stores: only their tasks get standbys and have lags.
    pub stateful_subtopologies: Vec<usize>,
}

impl GroupConfig {
    /// Kafka's defaults for `group_id`: 45 s session, 5 min rebalance, 3 s heartbeat, backoff
    /// 100 ms doubling up to 1 s; Kafka Streams' for standbys and warm-ups (none, 10,000
    /// records, 2 warm-ups, 10 min probing).
    pub fn new(group_id: impl Into<String>) -> Self {
        Self {
            group_id: group_id.into(),
            rebalance_protocol: RebalanceProtocol::Eager,
            session_timeout: Duration::from_secs(45),
            rebalance_timeout: Duration::from_secs(300),
            heartbeat_interval: Duration::from_secs(3),
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(1),
            group_instance_id: None,
            static_leave_on_close: false,
            num_standby_replicas: 0,
            acceptable_recovery_lag: 10_000,
            max_warmup_replicas: 2,
            probing_rebalance_interval: Duration::from_secs(600),
            process_id: String::new(),
            stateful_subtopologies: Vec::new(),
        }
    }
}

/// How a member behaves when a rebalance starts (KIP-429). A member configured cooperative
/// offers both protocols; the coordinator selects the first one every member offers, and
/// that choice (per generation) decides what the member does at the next rebalance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RebalanceProtocol {
    /// Every member revokes (commits and closes) every task before it rejoins.
    #[default]
    Eager,
    /// Members keep running their tasks while they rejoin; only the tasks that move are
    /// revoked, after the assignment, and assigned in a follow-up rebalance.
    Cooperative,
}

impl RebalanceProtocol {
    /// The JoinGroup protocol name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Eager => protocol::DEFAULT_PROTOCOL_NAME,
            Self::Cooperative => protocol::COOPERATIVE_PROTOCOL_NAME,
        }
    }

    /// The protocol a coordinator selected, by name: anything but the cooperative name is
    /// treated as eager (the safe reading).
    pub fn from_selected(name: Option<&str>) -> Self {
        match name {
            Some(protocol::COOPERATIVE_PROTOCOL_NAME) => Self::Cooperative,
            _ => Self::Eager,
        }
    }

    /// The protocols a member configured with `self` offers, most preferred first.
    pub fn offered(self) -> &'static [RebalanceProtocol] {
        match self {
            Self::Eager => &[Self::Eager],
            Self::Cooperative => &[Self::Cooperative, Self::Eager],
        }
    }
}

/// Something the engine must know or act on.
#[derive(Debug, Clone, PartialEq)]
pub enum GroupEvent {
    /// The group coordinator is this broker: connect to it (requests to
    /// [`Target::Coordinator`](crate::client::Target::Coordinator) go there).
    CoordinatorFound {
        /// Its node id.
        id: BrokerId,
        /// Its host.
        host: String,
        /// Its port.
        port: i32,
    },
    /// The leader needs the partition counts of these source topics before it can assign:
    /// call [`GroupMember::set_partition_counts`].
    PartitionCountsNeeded {
        /// Topics without a known count.
        topics: Vec<String>,
    },
    /// The member joined generation `generation` and owns these tasks: fetch their committed
    /// offsets ([`GroupMember::fetch_committed`]) and start the ones not running yet. Tasks it
    /// kept running through a cooperative rebalance and still owns continue untouched.
    Assigned {
        /// Tasks assigned to this member.
        tasks: Vec<TaskId>,
        /// Every partition of those tasks.
        partitions: Vec<TopicPartition>,
        /// The generation.
        generation: i32,
        /// Tasks the member kept running through the rebalance (cooperative) that this
        /// assignment does not give it: commit them, close them, then call
        /// [`GroupMember::revoke_done`]; the member then rejoins at once (the follow-up
        /// rebalance that gives them to their new owner). Always empty after an eager
        /// rebalance.
        revoked: Vec<TaskId>,
        /// The protocol the coordinator selected for this generation.
        protocol: RebalanceProtocol,
        /// The member's standby and warm-up tasks, sorted (never one of `tasks`): keep their
        /// stores warm from their changelogs. A standby not listed any more is dropped.
        standbys: Vec<TaskId>,
    },
    /// A rebalance of an eager generation started: commit what these tasks processed
    /// (acknowledged output only), close them, then call [`GroupMember::revoke_done`]; the
    /// member rejoins only after that (the eager protocol revokes every task). Emitted at every
    /// eager rebalance of a joined member, even with no tasks. (Under the cooperative protocol
    /// the member rejoins keeping its tasks, and [`GroupEvent::Assigned`] says which to revoke.)
    Revoke {
        /// Every task the member owned.
        tasks: Vec<TaskId>,
    },
    /// Membership was lost (evicted, session expired, fenced): these tasks may already run
    /// elsewhere; close them without committing. The member rejoins by itself.
    Lost {
        /// Every task the member owned.
        tasks: Vec<TaskId>,
    },
    /// As leader, the assignor failed; every member got an empty assignment.
    AssignmentFailed {
        /// Why.
        error: AssignError,
    },
    /// Committed offsets, for the partitions asked with [`GroupMember::fetch_committed`]
    /// (`None`: nothing committed, the coordinator's `-1`).
    OffsetsFetched {
        /// Per partition.
        offsets: BTreeMap<TopicPartition, Option<i64>>,
    },
    /// Committed offsets could not be fetched.
    OffsetFetchFailed {
        /// The partitions asked.
        partitions: Vec<TopicPartition>,
        /// Why.
        error: OffsetFetchError,
    },
    /// A commit succeeded: every offset in it is durably committed.
    CommitSucceeded {
        /// The id [`GroupMember::commit`] returned.
        id: CommitId,
        /// The offsets.
        offsets: BTreeMap<TopicPartition, i64>,
    },
    /// A commit failed: treat none of its offsets as committed.
    CommitFailed {
        /// The id [`GroupMember::commit`] returned.
        id: CommitId,
        /// The offsets.
        offsets: BTreeMap<TopicPartition, i64>,
        /// Why.
        error: CommitError,
    },
    /// The member left the group ([`GroupMember::leave`]); it sends nothing more.
    Left,
    /// The member stopped for good; it sends nothing more.
    Failed(GroupError),
}

/// Errors of the group member.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// The engine's version table gives no version of `api` that we can build.
    #[error("no usable version of {api:?} (got {version:?})")]
    UnsupportedVersion {
        /// The API.
        api: ApiKey,
        /// The version offered, if any.
        version: Option<i16>,
    },
    /// The coordinator answered `api` with an error that ends membership for good
    /// (authorization, inconsistent protocol, invalid session timeout, group full, …).
    #[error("{api:?} failed: {error}")]
    Fatal {
        /// The API.
        api: ApiKey,
        /// The Kafka error.
        error: ResponseError,
    },
    /// Our own assignment could not be decoded.
    #[error("own assignment is unreadable: {0}")]
    BadAssignment(ProtocolError),
    /// Our subscription or an assignment could not be encoded.
    #[error("encoding failed: {0}")]
    Encode(ProtocolError),
    /// A response to a request we have not sent (or a response type we never ask for).
    #[error("unexpected {api:?} response")]
    UnexpectedResponse {
        /// Its API.
        api: ApiKey,
    },
    /// A response type the group member never requests.
    #[error("response of an API the group member does not use")]
    ForeignResponse,
    /// Static membership needs `api` at `needed` or later (JoinGroup v5, SyncGroup v3,
    /// Heartbeat v3, OffsetCommit v7: Kafka 2.3); the broker (or a version cap) offers less.
    /// Refused before the first JoinGroup: the member never joins as a dynamic one instead.
    #[error(
        "static membership (group.instance.id `{instance_id}`) needs {api:?} v{needed}+, \
         the broker offers {version:?}"
    )]
    StaticMembershipUnsupported {
        /// The configured instance id.
        instance_id: String,
        /// The API.
        api: ApiKey,
        /// The version offered, if any.
        version: Option<i16>,
        /// The first version that carries the instance id.
        needed: i16,
    },
    /// The coordinator answered `api` with FENCED_INSTANCE_ID: another member joined with our
    /// `group.instance.id` and took over its assignment. Fatal: this instance must stop (two
    /// running instances share an id, a configuration error).
    #[error(
        "group.instance.id `{instance_id}` was fenced ({api:?}): another instance joined the \
         group with the same id"
    )]
    FencedInstance {
        /// The instance id.
        instance_id: String,
        /// The API whose answer fenced us.
        api: ApiKey,
    },
}
