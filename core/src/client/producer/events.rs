//! [`ProducerEvent`]: what the producer reports to the engine (acks, failures, metadata needs).

use std::sync::Arc;

use super::DeliveryError;
#[cfg(doc)]
use super::Producer;
use crate::record::TopicPartition;

/// What the producer reports.
#[derive(Debug, Clone, PartialEq)]
pub enum ProducerEvent<O> {
    /// `count` consecutive records of `owner` are written.
    Acked {
        /// Who appended them.
        owner: O,
        /// Where.
        topic_partition: TopicPartition,
        /// Offset of the first of them, when the broker said (not for
        /// DUPLICATE_SEQUENCE_NUMBER).
        base_offset: Option<i64>,
        /// How many.
        count: usize,
    },
    /// `count` records of `owner` will not be delivered.
    Failed {
        /// Who appended them.
        owner: O,
        /// Where they were going.
        topic_partition: TopicPartition,
        /// How many.
        count: usize,
        /// Why.
        error: DeliveryError,
    },
    /// Leadership of partitions of `topic` must be looked up again (then call
    /// [`Producer::update_leader`]).
    RefreshMetadata {
        /// The topic.
        topic: Arc<str>,
    },
}
