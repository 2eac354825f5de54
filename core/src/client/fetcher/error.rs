//! [`FetchError`]: what can go wrong in the fetcher, for events and method results.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::ApiKey;

#[cfg(doc)]
use super::FetchEvent;
use crate::client::BrokerId;
use crate::record::TopicPartition;
use crate::wire::records::RecordsError;

/// A problem of the fetcher, in a [`FetchEvent::Error`] or as the error of a method.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The position is outside the partition's log and the reset policy is `None`.
    #[error("{partition}: offset {offset} is out of range and the reset policy is none")]
    OffsetOutOfRange {
        /// The partition.
        partition: TopicPartition,
        /// The position that was out of range.
        offset: i64,
    },
    /// A position reset was asked with policy `None` (no committed offset and no policy).
    #[error("{partition}: no position and the reset policy is none")]
    NoOffset {
        /// The partition.
        partition: TopicPartition,
    },
    /// A record batch could not be decoded; the partition was not advanced.
    #[error("{partition}: corrupt record data at offset {offset}: {source}")]
    CorruptRecords {
        /// The partition.
        partition: TopicPartition,
        /// The bad batch's base offset when readable, else the fetch position.
        offset: i64,
        /// What is wrong.
        #[source]
        source: RecordsError,
    },
    /// A record batch is larger than the fetcher will ever ask for
    /// ([`FetcherConfig::partition_max_bytes_limit`](super::FetcherConfig::partition_max_bytes_limit));
    /// the partition was not advanced.
    #[error(
        "{partition}: the batch at offset {offset} has {batch_len} bytes, above the limit of {limit}"
    )]
    BatchTooLarge {
        /// The partition.
        partition: TopicPartition,
        /// The fetch position (where the batch starts or lies).
        offset: i64,
        /// The batch's length.
        batch_len: usize,
        /// The limit.
        limit: i32,
    },
    /// The broker reported an error for a partition.
    #[error("{partition}: {api:?} failed: {error}")]
    Partition {
        /// The partition.
        partition: TopicPartition,
        /// Fetch or ListOffsets.
        api: ApiKey,
        /// The broker's error.
        error: ResponseError,
    },
    /// The broker rejected a whole Fetch (top-level error code, v7+).
    #[error("Fetch to broker {broker} failed: {error}")]
    Broker {
        /// The broker.
        broker: BrokerId,
        /// The broker's error.
        error: ResponseError,
    },
    /// The engine offers no version of `api` in the range this component builds.
    #[error(
        "no usable {api:?} version: the engine offers {version:?}, this client builds {min}..={max}"
    )]
    UnsupportedVersion {
        /// Fetch or ListOffsets.
        api: ApiKey,
        /// The version offered.
        version: Option<i16>,
        /// Lowest version built.
        min: i16,
        /// Highest version built.
        max: i16,
    },
    /// A response of an API this component does not send.
    #[error("unexpected response ({api:?}) from broker {from} for the fetcher")]
    UnexpectedResponse {
        /// The broker.
        from: BrokerId,
        /// The response's API, for the APIs the client uses.
        api: Option<ApiKey>,
    },
    /// A response from a broker that has no request of that API in flight.
    #[error("{api:?} response from broker {from} with no request in flight")]
    NotInFlight {
        /// The broker.
        from: BrokerId,
        /// Fetch or ListOffsets.
        api: ApiKey,
    },
}
