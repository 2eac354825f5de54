//! Why the producer refused records ([`ProducerError`], [`SendError`]) or could not deliver
//! them ([`DeliveryError`]).

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::ApiKey;

#[cfg(doc)]
use super::Producer;
use super::{EncodeError, TransactionError, TransactionState};
use crate::client::BrokerId;
use crate::record::ProducerRecord;
use crate::time::Duration;

/// Why records were not delivered.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DeliveryError {
    /// The broker rejected the batch for good.
    #[error("broker rejected the batch: {0}")]
    Broker(ResponseError),
    /// Not acknowledged within `delivery_timeout` of its first append.
    #[error("not acknowledged within the delivery timeout ({} ms)", .timeout.as_millis())]
    DeliveryTimeout {
        /// The configured timeout.
        timeout: Duration,
    },
    /// The batch could not be encoded.
    #[error("batch encoding failed: {0}")]
    Encode(#[from] EncodeError),
    /// The producer failed as a whole (see [`ProducerError`]).
    #[error("producer failed: {0}")]
    ProducerFailed(Box<ProducerError>),
    /// The transaction the records belonged to was aborted before they were sent
    /// ([`Producer::abort_transaction`]).
    #[error("the transaction was aborted before the batch was sent")]
    Aborted,
}

/// Errors of the producer's API.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProducerError {
    /// Accepting the records would exceed `buffer_memory`; retry after acks free space.
    #[error("producer buffer full: {buffered} + {requested} bytes exceed {limit}")]
    BufferFull {
        /// Bytes held now.
        buffered: usize,
        /// Bytes asked for.
        requested: usize,
        /// `buffer_memory`.
        limit: usize,
    },
    /// A record without partition names a topic whose partition count is unknown.
    #[error("partition count of topic {topic} is unknown")]
    UnknownPartitionCount {
        /// The topic.
        topic: Arc<str>,
    },
    /// An explicit partition does not exist.
    #[error("partition {partition} of topic {topic} does not exist")]
    PartitionOutOfRange {
        /// The topic.
        topic: Arc<str>,
        /// The partition asked for.
        partition: i32,
    },
    /// A record larger than `max_request_size`.
    #[error("record of {size} bytes exceeds max_request_size {max}")]
    RecordTooLarge {
        /// Its size bound.
        size: usize,
        /// `max_request_size`.
        max: usize,
    },
    /// No usable version of an API the producer needs.
    #[error("no usable version of {api:?}")]
    UnsupportedVersion {
        /// The API.
        api: ApiKey,
    },
    /// InitProducerId failed with a non-retriable error; the producer is unusable.
    #[error("InitProducerId failed: {0}")]
    InitProducerId(ResponseError),
    /// A response the producer has no request for.
    #[error("unexpected response from broker {broker}")]
    UnexpectedResponse {
        /// Who sent it.
        broker: BrokerId,
    },
    /// The transactional producer is unusable (fenced, not authorized, transactions
    /// unsupported, ...): build a new one, or after a fencing
    /// [`Producer::restart_after_fencing`].
    #[error("transactional producer failed: {0}")]
    TransactionFatal(TransactionError),
    /// The open transaction failed: [`Producer::abort_transaction`] before anything else.
    #[error("the transaction failed and must be aborted: {0}")]
    TransactionAbortable(TransactionError),
    /// A commit or abort is in progress: records are taken again once it ends.
    #[error("the transaction is ending (commit or abort in progress)")]
    TransactionEnding,
    /// A transaction method called on a producer without `transactional_id`.
    #[error("the producer is not transactional")]
    NotTransactional,
    /// A transaction method called in a state that does not allow it.
    #[error("{operation} is not allowed while the transaction is {state:?}")]
    InvalidTransactionState {
        /// The method.
        operation: &'static str,
        /// The state it found.
        state: TransactionState,
    },
}

/// Records refused by [`Producer::send_batch`], given back.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{error}")]
pub struct SendError {
    /// Why.
    pub error: ProducerError,
    /// The records, unchanged.
    pub records: Vec<ProducerRecord>,
}
