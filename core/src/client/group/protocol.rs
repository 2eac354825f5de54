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
//! user_data := version:u8 (= 1) tasks
//!            | version:u8 (= 2) tasks held:tasks      (subscriptions of members holding tasks)
//! tasks     := count:i32 { subtopology:i32 partition:i32 }*count
//! ```
//!
//! A subscription's `tasks` are the member's claims for stickiness (with the generation it
//! owned them in); version 2 adds the tasks it still *holds*, i.e. runs right now through a
//! cooperative rebalance (see [`super::assignor`]). A member holding nothing writes
//! version 1, so an older kstreams leader reads it as before; one that reads a version 2 it
//! does not know treats the member as owning nothing (a valid, less sticky assignment).
//!
//! Every decoder here is total: garbage gives a [`ProtocolError`], never a panic or an
//! allocation sized by an untrusted length.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment as cpa;
use kafka_protocol::messages::consumer_protocol_subscription as cps;
use kafka_protocol::messages::{ConsumerProtocolAssignment, ConsumerProtocolSubscription};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::record::TopicPartition;
use crate::task::TaskId;

/// The JoinGroup protocol type: the standard consumer embedded protocol.
pub const PROTOCOL_TYPE: &str = "consumer";
/// The eager JoinGroup protocol (assignor) name: every member revokes every task when a
/// rebalance starts.
pub const DEFAULT_PROTOCOL_NAME: &str = "kstreams";
/// The cooperative JoinGroup protocol name (KIP-429): members keep their tasks through a
/// rebalance; only the tasks that move are revoked, and given out in a follow-up rebalance.
pub const COOPERATIVE_PROTOCOL_NAME: &str = "kstreams-cooperative";
/// The version of our `user_data` layout without held tasks.
pub const USER_DATA_VERSION: u8 = 1;
/// The version of our `user_data` layout with held tasks.
pub const USER_DATA_VERSION_HELD: u8 = 2;
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
}

/// What the leader gives a member in SyncGroup.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Assignment {
    /// The member's tasks.
    pub tasks: Vec<TaskId>,
    /// Every partition of those tasks.
    pub partitions: Vec<TopicPartition>,
}

/// Encodes task ids as our `user_data` (version 1).
pub fn encode_task_user_data(tasks: &[TaskId]) -> Result<Bytes, ProtocolError> {
    let mut buf = BytesMut::with_capacity(5 + tasks.len() * 8);
    buf.put_u8(USER_DATA_VERSION);
    put_tasks(&mut buf, tasks, 1)?;
    Ok(buf.freeze())
}

/// Encodes claimed and held task ids as our `user_data`: version 1 when nothing is held,
/// else version 2.
pub fn encode_subscription_user_data(
    tasks: &[TaskId],
    held: &[TaskId],
) -> Result<Bytes, ProtocolError> {
    if held.is_empty() {
        return encode_task_user_data(tasks);
    }
    let mut buf = BytesMut::with_capacity(9 + (tasks.len() + held.len()) * 8);
    buf.put_u8(USER_DATA_VERSION_HELD);
    put_tasks(&mut buf, tasks, 1)?;
    let at = buf.len();
    put_tasks(&mut buf, held, at)?;
    Ok(buf.freeze())
}

fn put_tasks(buf: &mut BytesMut, tasks: &[TaskId], offset: usize) -> Result<(), ProtocolError> {
    let count = i32::try_from(tasks.len()).map_err(|_| ProtocolError::InvalidLength {
        offset,
        length: i32::MAX,
    })?;
    buf.put_i32(count);
    for task in tasks {
        let sub = i32::try_from(task.subtopology).map_err(|_| ProtocolError::InvalidTaskId {
            subtopology: i64::try_from(task.subtopology).unwrap_or(i64::MAX),
            partition: task.partition,
        })?;
        buf.put_i32(sub);
        buf.put_i32(task.partition);
    }
    Ok(())
}

/// Decodes our `user_data` (version 1) into task ids.
pub fn decode_task_user_data(data: &[u8]) -> Result<Vec<TaskId>, ProtocolError> {
    let (tasks, held) = decode_subscription_user_data(data)?;
    if !held.is_empty() {
        return Err(ProtocolError::UnknownUserDataVersion(
            USER_DATA_VERSION_HELD,
        ));
    }
    Ok(tasks)
}

/// Decodes our `user_data`, version 1 or 2, into claimed and held task ids.
pub fn decode_subscription_user_data(
    data: &[u8],
) -> Result<(Vec<TaskId>, Vec<TaskId>), ProtocolError> {
    let mut reader = Reader { data, pos: 0 };
    let version = reader.u8()?;
    if version != USER_DATA_VERSION && version != USER_DATA_VERSION_HELD {
        return Err(ProtocolError::UnknownUserDataVersion(version));
    }
    let tasks = reader.tasks()?;
    let held = if version == USER_DATA_VERSION_HELD {
        reader.tasks()?
    } else {
        Vec::new()
    };
    if reader.remaining() > 0 {
        return Err(ProtocolError::TrailingBytes(reader.remaining()));
    }
    Ok((tasks, held))
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
            &sub.owned_tasks,
            &sub.held_tasks,
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
    let (owned_tasks, held_tasks) = decode_subscription_user_data(&user_data)?;
    Ok(Subscription {
        topics: message.topics.iter().map(|t| t.to_string()).collect(),
        owned_tasks,
        held_tasks,
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
        .with_user_data(Some(encode_task_user_data(&assignment.tasks)?));
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
    Ok(Assignment {
        tasks: decode_task_user_data(&user_data)?,
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
    let mut reader = Reader { data, pos: 0 };
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
    let mut r = Reader { data: body, pos: 0 };
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
    let mut r = Reader { data: body, pos: 0 };
    r.topic_partitions()?;
    Ok(())
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], ProtocolError> {
        let bytes = self
            .data
            .get(self.pos..self.pos + N)
            .and_then(|s| <[u8; N]>::try_from(s).ok())
            .ok_or(ProtocolError::Truncated {
                offset: self.pos,
                needed: N.saturating_sub(self.remaining()),
            })?;
        self.pos += N;
        Ok(bytes)
    }

    fn u8(&mut self) -> Result<u8, ProtocolError> {
        Ok(u8::from_be_bytes(self.take::<1>()?))
    }

    fn i16(&mut self) -> Result<i16, ProtocolError> {
        Ok(i16::from_be_bytes(self.take::<2>()?))
    }

    fn i32(&mut self) -> Result<i32, ProtocolError> {
        Ok(i32::from_be_bytes(self.take::<4>()?))
    }

    /// `count:i32 { subtopology:i32 partition:i32 }*count`, the count checked against the
    /// bytes that remain.
    fn tasks(&mut self) -> Result<Vec<TaskId>, ProtocolError> {
        let count_at = self.pos;
        let count = self.i32()?;
        let fits = usize::try_from(count)
            .ok()
            .filter(|&n| n.checked_mul(8).is_some_and(|b| b <= self.remaining()));
        let Some(count) = fits else {
            return Err(ProtocolError::InvalidLength {
                offset: count_at,
                length: count,
            });
        };
        let mut tasks = Vec::with_capacity(count);
        for _ in 0..count {
            let sub = self.i32()?;
            let partition = self.i32()?;
            let subtopology = usize::try_from(sub).ok().filter(|_| partition >= 0).ok_or(
                ProtocolError::InvalidTaskId {
                    subtopology: i64::from(sub),
                    partition,
                },
            )?;
            tasks.push(TaskId {
                subtopology,
                partition,
            });
        }
        Ok(tasks)
    }

    fn skip(&mut self, n: usize, offset: usize, length: i32) -> Result<(), ProtocolError> {
        if n > self.remaining() {
            return Err(ProtocolError::InvalidLength { offset, length });
        }
        self.pos += n;
        Ok(())
    }

    /// An array length (`-1` = null = 0 elements) whose elements take at least `min_size` bytes.
    fn array_len(&mut self, min_size: usize) -> Result<usize, ProtocolError> {
        let offset = self.pos;
        let length = self.i32()?;
        if length == -1 {
            return Ok(0);
        }
        usize::try_from(length)
            .ok()
            .filter(|&n| n.saturating_mul(min_size) <= self.remaining())
            .ok_or(ProtocolError::InvalidLength { offset, length })
    }

    fn string(&mut self) -> Result<(), ProtocolError> {
        let offset = self.pos;
        let length = self.i16()?;
        if length == -1 {
            return Ok(());
        }
        let n = usize::try_from(length).map_err(|_| ProtocolError::InvalidLength {
            offset,
            length: i32::from(length),
        })?;
        self.skip(n, offset, i32::from(length))
    }

    fn bytes(&mut self) -> Result<(), ProtocolError> {
        let offset = self.pos;
        let length = self.i32()?;
        if length == -1 {
            return Ok(());
        }
        let n =
            usize::try_from(length).map_err(|_| ProtocolError::InvalidLength { offset, length })?;
        self.skip(n, offset, length)
    }

    fn topic_partitions(&mut self) -> Result<(), ProtocolError> {
        let topics = self.array_len(6)?;
        for _ in 0..topics {
            self.string()?;
            let partitions = self.array_len(4)?;
            self.skip(partitions * 4, self.pos, 0)?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "protocol_tests.rs"]
mod tests;
