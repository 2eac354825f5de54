//! [`ProducerEvent`]: what the producer reports to the engine (acks, failures, metadata needs,
//! transaction outcomes); [`RetryCounts`]: its retry counters.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::ApiKey;

#[cfg(doc)]
use super::Producer;
use super::{DeliveryError, TransactionError};
use crate::client::BrokerId;
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
    /// The transaction coordinator is broker `id` at `host:port`: requests to it go to
    /// [`Target::Broker`](crate::client::Target::Broker)`(id)`, so the engine must know that
    /// address.
    TransactionCoordinatorFound {
        /// Its node id.
        id: BrokerId,
        /// Its host.
        host: String,
        /// Its port.
        port: i32,
    },
    /// A TxnOffsetCommit was answered NOT_COORDINATOR or COORDINATOR_NOT_AVAILABLE: the group
    /// coordinator it went to (the group member's) moved, and the group member must look for
    /// it again, or the retries keep going to the old one (a group member waiting for the
    /// commit sends nothing else that would find out).
    GroupCoordinatorMoved,
    /// The transaction ended by [`Producer::commit_transaction`] is committed: its records
    /// are visible to read_committed consumers and `offsets` are the group's committed
    /// offsets.
    TransactionCommitted {
        /// The offsets committed with it.
        offsets: BTreeMap<TopicPartition, i64>,
    },
    /// The transaction ended by [`Producer::abort_transaction`] is aborted: none of its
    /// records or offsets will ever be visible to read_committed consumers.
    TransactionAborted,
    /// The open transaction failed (a record not delivered, an offset refused, ...): call
    /// [`Producer::abort_transaction`]; the producer takes nothing else until then.
    TransactionFailed {
        /// Why.
        error: TransactionError,
    },
    /// The transactional producer is unusable: its epoch was fenced (PRODUCER_FENCED,
    /// INVALID_PRODUCER_EPOCH: a newer instance with the same transactional id, or the
    /// coordinator aborted a transaction open past its timeout), or the brokers refused its
    /// transactional id (TRANSACTIONAL_ID_AUTHORIZATION_FAILED, INVALID_TXN_STATE, ...).
    /// Everything unacknowledged failed; a fencing may start over with
    /// [`Producer::restart_after_fencing`], anything else needs a new producer.
    Fenced {
        /// Why.
        error: TransactionError,
    },
    /// The brokers cannot run transactions: `missing_api` (or a version of it transactions
    /// need) is not offered. Fatal: the producer never falls back to non-transactional
    /// writes.
    TransactionsUnsupported {
        /// The API missing.
        missing_api: ApiKey,
    },
}

/// Produce batches the producer sent again after a retriable error (a network error, a
/// leader change, a timeout answer), and the records in them; see [`Producer::retries`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryCounts {
    /// Batches sent again (each later in-flight batch of the partition counts too).
    pub batches: u64,
    /// Records in them (Kafka's producer `record-retry-total`).
    pub records: u64,
}
