//! What the fetcher hands the engine: [`FetchEvent`]s to act on and [`FetchedBatch`]es of
//! decoded records.

use super::FetchError;
#[cfg(doc)]
use super::{Fetcher, FetcherConfig};
#[cfg(doc)]
use crate::client::metadata::Metadata;
use crate::record::{RawRecord, TopicPartition};

/// Something the engine should act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchEvent {
    /// Leadership may have moved: call [`Metadata::request_refresh`] with `reason`, then
    /// [`Fetcher::update_leaders`] when the metadata generation changes.
    MetadataRefreshNeeded {
        /// What happened (names the partition or broker and the error).
        reason: String,
    },
    /// A ListOffsets reset gave the partition a new position.
    PositionReset {
        /// The partition.
        partition: TopicPartition,
        /// The new position.
        offset: i64,
    },
    /// A response held only part of the partition's next batch: the per-partition limit is
    /// below one batch. It was raised to `partition_max_bytes` (brokers since KIP-74 send the
    /// first batch whole, so this is rare).
    PartitionMaxBytesRaised {
        /// The partition.
        partition: TopicPartition,
        /// The position at which the batch did not fit.
        offset: i64,
        /// The new limit.
        partition_max_bytes: i32,
    },
    /// A typed error.
    Error(FetchError),
}

/// Decoded records of one partition, ready for its task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedBatch {
    /// The partition.
    pub partition: TopicPartition,
    /// User records in offset order (control records and aborted transactions removed). Keys
    /// and values are slices of the fetched buffer (or of one decompressed batch). A record's
    /// headers are all there, in wire order, duplicate keys included.
    pub records: Vec<RawRecord>,
    /// The partition's high watermark in the response.
    pub high_watermark: i64,
}
