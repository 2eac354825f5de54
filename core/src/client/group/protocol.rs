//! The bytes the group exchanges through the coordinator: JoinGroup subscription metadata and
//! SyncGroup assignments.
//!
//! We register the standard protocol type [`PROTOCOL_TYPE`] (`"consumer"`) so that Kafka's own
//! tools (`kafka-consumer-groups --describe`) can read the group: the metadata is a
//! `ConsumerProtocolSubscription` and each assignment a `ConsumerProtocolAssignment`, both
//! prefixed with their `i16` version as Kafka's embedded consumer protocol requires. Our own
//! data (task ids) travels in their `user_data`:
//!
//! ```text
//! subscription user_data
//!   := version:u8 (= 1) tasks
//!    | version:u8 (= 2) tasks held:tasks
//!    | version:u8 (= 3) tasks held:tasks process:string offsets
//! assignment user_data
//!   := version:u8 (= 1) tasks
//!    | version:u8 (= 2) tasks standby:tasks followup_ms:i32   (-1: none; ≥ 0: rejoin after)
//! tasks   := count:i32 { subtopology:i32 partition:i32 }*count
//! string  := len:i16 utf8-bytes                                (len ≥ 0)
//! offsets := count:i32 { subtopology:i32 partition:i32 offset_sum:i64 }*count  (sum ≥ 0)
//! ```
//!
//! A subscription's `tasks` are the member's claims for stickiness (with the generation it
//! owned them in); `held` the tasks it still runs right now through a cooperative rebalance
//! (see [`super::assignor`]); `process` the id of its process (`""` when unknown) and
//! `offsets`, per task whose state it has locally, the sum of the changelog positions its
//! copies of the task's logged stores reached (the leader derives lags from them).
//!
//! Every member of this version writes version 3; it also announces that the member reads
//! assignment version 2, so a leader writes that version (standbys, follow-up) only to members
//! that sent version 3, and version 1 (which every kstreams reads) to the others. A kstreams
//! before standbys writes version 1 (nothing held) or 2; one reading a version it does not
//! know treats that member as owning (and holding) nothing.
//!
//! Every decoder here is total: garbage gives a [`ProtocolError`], never a panic or an
//! allocation sized by an untrusted length.

mod reader;
mod user_data;

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment as cpa;
use kafka_protocol::messages::consumer_protocol_subscription as cps;
use kafka_protocol::messages::{ConsumerProtocolAssignment, ConsumerProtocolSubscription};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::record::TopicPartition;
use crate::task::TaskId;
use crate::time::Duration;
use reader::Reader;

pub use user_data::{
    ASSIGNMENT_USER_DATA_VERSION_STANDBYS, AssignmentUserData, SubscriptionUserData,
    USER_DATA_VERSION, USER_DATA_VERSION_HELD, USER_DATA_VERSION_STATE,
    decode_assignment_user_data, decode_subscription_user_data, decode_task_user_data,
    encode_assignment_user_data, encode_subscription_user_data, encode_task_user_data,
};

/// The JoinGroup protocol type: the standard consumer embedded protocol.
pub const PROTOCOL_TYPE: &str = "consumer";
/// The eager JoinGroup protocol (assignor) name: every member revokes every task when a
/// rebalance starts.
pub const DEFAULT_PROTOCOL_NAME: &str = "kstreams";
/// The cooperative JoinGroup protocol name (KIP-429): members keep their tasks through a
/// rebalance; only the tasks that move are revoked, and given out in a follow-up rebalance.
pub const COOPERATIVE_PROTOCOL_NAME: &str = "kstreams-cooperative";
/// The `ConsumerProtocolSubscription` version we write (the crate's highest).
pub const SUBSCRIPTION_VERSION: i16 = 3;
/// The `ConsumerProtocolAssignment` version we write (the crate's highest).
pub const ASSIGNMENT_VERSION: i16 = 3;

/// Why subscription or assignment bytes could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// Fewer bytes than the layout needs.
    #[error("truncated: needed {needed} more bytes at offset {offset}")]
    Truncated {
        /// Where reading stopped.
        offset: usize,
        /// How many bytes were missing.
        needed: usize,
    },
    /// A negative embedded-protocol version.
    #[error("invalid embedded protocol version {0}")]
    InvalidVersion(i16),
    /// A length field that is negative or larger than the bytes that follow.
    #[error("invalid length {length} at offset {offset}")]
    InvalidLength {
        /// Where the length field starts.
        offset: usize,
        /// Its value.
        length: i32,
    },
    /// The `kafka-protocol` decoder or encoder rejected the message.
    #[error("consumer protocol message: {0}")]
    Message(String),
    /// The member sent no `user_data`: not one of ours.
    #[error("no user data (member does not speak the kstreams protocol)")]
    MissingUserData,
    /// The `user_data` has a version we do not know.
    #[error("unknown user data version {0}")]
    UnknownUserDataVersion(u8),
    /// A task id that cannot exist (negative sub-topology or partition).
    #[error("invalid task id {subtopology}_{partition}")]
    InvalidTaskId {
        /// Sub-topology as sent.
        subtopology: i64,
        /// Partition as sent.
        partition: i32,
    },
    /// Bytes left over after the `user_data`.
    #[error("{0} trailing bytes in user data")]
    TrailingBytes(usize),
    /// A string that is not UTF-8.
    #[error("invalid UTF-8 in the string at offset {offset}")]
    InvalidUtf8 {
        /// Where the string's length field starts.
        offset: usize,
    },
    /// A negative changelog offset sum.
    #[error("invalid offset sum {offset_sum} for task {task}")]
    InvalidOffsetSum {
        /// The task.
        task: TaskId,
        /// The sum as sent.
        offset_sum: i64,
    },
    /// A task listed twice in the task offsets.
    #[error("task {0} listed twice")]
    DuplicateTask(TaskId),
    /// A `followup_ms` below `-1`.
    #[error("invalid follow-up delay {0} ms")]
    InvalidFollowup(i32),
    /// A process id or task offsets in a subscription whose `user_data` version cannot carry
    /// them (encoding only).
    #[error("process id and task offsets do not fit user data version {0}")]
    NotInUserDataVersion(u8),
}

/// What a member tells the leader in JoinGroup.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subscription {
    /// Topics the member reads (every source topic of its topology).
    pub topics: Vec<String>,
    /// Tasks the member owned in the previous generation (for stickiness).
    pub owned_tasks: Vec<TaskId>,
    /// The partitions of those tasks (standard field, informational for tools).
    pub owned_partitions: Vec<TopicPartition>,
    /// The generation in which it owned them, `-1` if none.
    pub generation: i32,
    /// Tasks the member still runs while it rejoins (cooperative rebalancing): the leader
    /// must not give them to another member before this one revoked them.
    pub held_tasks: Vec<TaskId>,
    /// The id of the member's process (`""`: unknown); standbys go to other processes than
    /// their active.
    pub process_id: String,
    /// Per task whose state the member has locally (active or standby): the sum over the
    /// task's logged stores of the changelog position its copy reached.
    pub task_offsets: BTreeMap<TaskId, i64>,
    /// Whether the subscription is `user_data` version 3 (process id and offsets), which
    /// every member of this version writes: it then reads assignments with standbys and
    /// follow-ups. Decoding a version 1 or 2 (a kstreams before standbys) gives `false`;
    /// encoding with `false` writes those versions (no process id nor offsets allowed).
    pub state_aware: bool,
}

/// What the leader gives a member in SyncGroup.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Assignment {
    /// The member's tasks.
    pub tasks: Vec<TaskId>,
    /// Every partition of those tasks.
    pub partitions: Vec<TopicPartition>,
    /// The member's standby (and warm-up) tasks: it keeps their state warm, never runs them.
    pub standbys: Vec<TaskId>,
    /// Rejoin after this long (a probing rebalance, or the follow-up of a withheld task).
    pub followup: Option<Duration>,
}

/// Encodes a subscription as versioned `ConsumerProtocolSubscription` bytes.
pub fn encode_subscription(sub: &Subscription) -> Result<Bytes, ProtocolError> {
    let message = ConsumerProtocolSubscription::default()
        .with_topics(
            sub.topics
                .iter()
                .map(|t| StrBytes::from_string(t.clone()))
                .collect(),
        )
        .with_user_data(Some(encode_subscription_user_data(
            &SubscriptionUserData {
                tasks: sub.owned_tasks.clone(),
                held: sub.held_tasks.clone(),
                process_id: sub.process_id.clone(),
                offsets: sub.task_offsets.clone(),
                state_aware: sub.state_aware,
            },
        )?))
        .with_owned_partitions(
            group_by_topic(&sub.owned_partitions)
                .into_iter()
                .map(|(topic, partitions)| {
                    cps::TopicPartition::default()
                        .with_topic(StrBytes::from_string(topic).into())
                        .with_partitions(partitions)
                })
                .collect(),
        )
        .with_generation_id(sub.generation);
    encode_versioned(&message, SUBSCRIPTION_VERSION)
}

/// Decodes versioned `ConsumerProtocolSubscription` bytes, including our `user_data`.
///
/// Versions above the highest we know are read as that version (Kafka's forward-compatibility
/// rule: newer versions only append fields).
pub fn decode_subscription(data: &[u8]) -> Result<Subscription, ProtocolError> {
    let (version, body) = split_version(data, SUBSCRIPTION_VERSION)?;
    check_subscription_layout(body, version)?;
    let mut buf = Bytes::copy_from_slice(body);
    let message = ConsumerProtocolSubscription::decode(&mut buf, version)
        .map_err(|e| ProtocolError::Message(e.to_string()))?;
    let user_data = message.user_data.ok_or(ProtocolError::MissingUserData)?;
    let user_data = decode_subscription_user_data(&user_data)?;
    Ok(Subscription {
        topics: message.topics.iter().map(|t| t.to_string()).collect(),
        owned_tasks: user_data.tasks,
        held_tasks: user_data.held,
        process_id: user_data.process_id,
        task_offsets: user_data.offsets,
        state_aware: user_data.state_aware,
        owned_partitions: message
            .owned_partitions
            .iter()
            .flat_map(|tp| {
                tp.partitions
                    .iter()
                    .map(|&p| TopicPartition::new(tp.topic.to_string(), p))
            })
            .collect(),
        generation: message.generation_id,
    })
}

/// Encodes an assignment as versioned `ConsumerProtocolAssignment` bytes.
pub fn encode_assignment(assignment: &Assignment) -> Result<Bytes, ProtocolError> {
    let message = ConsumerProtocolAssignment::default()
        .with_assigned_partitions(
            group_by_topic(&assignment.partitions)
                .into_iter()
                .map(|(topic, partitions)| {
                    cpa::TopicPartition::default()
                        .with_topic(StrBytes::from_string(topic).into())
                        .with_partitions(partitions)
                })
                .collect(),
        )
        .with_user_data(Some(encode_assignment_user_data(&AssignmentUserData {
            tasks: assignment.tasks.clone(),
            standbys: assignment.standbys.clone(),
            followup: assignment.followup,
        })?));
    encode_versioned(&message, ASSIGNMENT_VERSION)
}

/// Decodes versioned `ConsumerProtocolAssignment` bytes. Empty bytes (what the coordinator
/// returns to a member the leader gave nothing) are an empty assignment.
pub fn decode_assignment(data: &[u8]) -> Result<Assignment, ProtocolError> {
    if data.is_empty() {
        return Ok(Assignment::default());
    }
    let (version, body) = split_version(data, ASSIGNMENT_VERSION)?;
    check_assignment_layout(body)?;
    let mut buf = Bytes::copy_from_slice(body);
    let message = ConsumerProtocolAssignment::decode(&mut buf, version)
        .map_err(|e| ProtocolError::Message(e.to_string()))?;
    let user_data = message.user_data.ok_or(ProtocolError::MissingUserData)?;
    let user_data = decode_assignment_user_data(&user_data)?;
    Ok(Assignment {
        tasks: user_data.tasks,
        standbys: user_data.standbys,
        followup: user_data.followup,
        partitions: message
            .assigned_partitions
            .iter()
            .flat_map(|tp| {
                tp.partitions
                    .iter()
                    .map(|&p| TopicPartition::new(tp.topic.to_string(), p))
            })
            .collect(),
    })
}

fn encode_versioned<M: Encodable>(message: &M, version: i16) -> Result<Bytes, ProtocolError> {
    let mut buf = BytesMut::new();
    buf.put_i16(version);
    message
        .encode(&mut buf, version)
        .map_err(|e| ProtocolError::Message(e.to_string()))?;
    Ok(buf.freeze())
}

/// Splits off the `i16` version, capping it at `max` as Kafka does.
fn split_version(data: &[u8], max: i16) -> Result<(i16, &[u8]), ProtocolError> {
    let mut reader = Reader::new(data);
    let version = reader.i16()?;
    if version < 0 {
        return Err(ProtocolError::InvalidVersion(version));
    }
    Ok((version.min(max), data.get(2..).unwrap_or_default()))
}

fn group_by_topic(partitions: &[TopicPartition]) -> Vec<(String, Vec<i32>)> {
    let mut by_topic: std::collections::BTreeMap<&str, Vec<i32>> = Default::default();
    for tp in partitions {
        by_topic.entry(&tp.topic).or_default().push(tp.partition);
    }
    by_topic
        .into_iter()
        .map(|(t, mut ps)| {
            ps.sort_unstable();
            ps.dedup();
            (t.to_owned(), ps)
        })
        .collect()
}

// `kafka-protocol` preallocates `Vec::with_capacity(n)` from an array's length field, so a
// garbled length could ask for gigabytes. These walks check every array length against the
// bytes that remain before the crate decodes anything.

fn check_subscription_layout(body: &[u8], version: i16) -> Result<(), ProtocolError> {
    let mut r = Reader::new(body);
    let topics = r.array_len(2)?;
    for _ in 0..topics {
        r.string()?;
    }
    r.bytes()?;
    if version >= 1 {
        r.topic_partitions()?;
    }
    Ok(())
}

fn check_assignment_layout(body: &[u8]) -> Result<(), ProtocolError> {
    let mut r = Reader::new(body);
    r.topic_partitions()?;
    Ok(())
}

#[cfg(test)]
#[path = "protocol_tests.rs"]
mod tests;
