//! Fetcher settings: byte and wait limits, isolation, the offset reset policy and retry
//! backoff.

#[cfg(doc)]
use super::{FetchError, FetchEvent};
use crate::time::Duration;
use crate::wire::records::{DecodeLimits, IsolationLevel};

/// What to do when a partition has no valid position (Kafka's `auto.offset.reset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetResetPolicy {
    /// Start at the log start offset (the Kafka Streams default).
    #[default]
    Earliest,
    /// Start at the end of the log (the high watermark, or the last stable offset under
    /// read_committed).
    Latest,
    /// Report [`FetchError::OffsetOutOfRange`] / [`FetchError::NoOffset`] instead.
    None,
}

/// Where a ListOffsets reset goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ResetTarget {
    Earliest,
    Latest,
}

impl ResetTarget {
    pub(super) fn from_policy(policy: OffsetResetPolicy) -> Option<Self> {
        match policy {
            OffsetResetPolicy::Earliest => Some(Self::Earliest),
            OffsetResetPolicy::Latest => Some(Self::Latest),
            OffsetResetPolicy::None => None,
        }
    }

    /// ListOffsets' special timestamps: -2 earliest, -1 latest.
    pub(super) fn timestamp(self) -> i64 {
        match self {
            Self::Earliest => -2,
            Self::Latest => -1,
        }
    }
}

/// Fetch settings. Byte sizes in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetcherConfig {
    /// The broker answers once it has this many bytes (or after `max_wait`) (Kafka's
    /// `fetch.min.bytes`). Default 1.
    pub min_bytes: i32,
    /// Largest response the broker should build (it still sends at least one whole batch,
    /// KIP-74). Default 50 MiB.
    pub max_bytes: i32,
    /// Largest share of one partition in a response, at first (raised when one batch does not
    /// fit, see [`FetchEvent::PartitionMaxBytesRaised`]). Default 1 MiB.
    pub partition_max_bytes: i32,
    /// The most [`partition_max_bytes`](Self::partition_max_bytes) is ever raised to: a batch
    /// larger than this (by its length field) stops the partition with
    /// [`FetchError::BatchTooLarge`] instead of making the client ask for ever larger
    /// responses. Default 64 MiB (above Kafka's largest default `message.max.bytes`).
    pub partition_max_bytes_limit: i32,
    /// How long the broker may wait for `min_bytes` (Kafka's `fetch.max.wait.ms`; sent as the
    /// Fetch request's `max_wait_ms`, saturating at `i32::MAX` ms). Default 500 ms.
    pub max_wait: Duration,
    /// Which transactional records to read. Default read_uncommitted.
    pub isolation: IsolationLevel,
    /// What to do on `OFFSET_OUT_OF_RANGE`. Default earliest.
    pub offset_reset: OffsetResetPolicy,
    /// Wait before a partition or broker is tried again after an error (Kafka's
    /// `retry.backoff.ms`). Default 100 ms.
    pub retry_backoff: Duration,
    /// How long the broker may take over a ListOffsets (Kafka's `request.timeout.ms`, sent as
    /// ListOffsets v10's `timeout_ms`, saturating at `i32::MAX` ms). Default 30 s.
    pub request_timeout: Duration,
    /// Bounds for record decoding.
    pub decode_limits: DecodeLimits,
}

impl Default for FetcherConfig {
    fn default() -> Self {
        Self {
            min_bytes: 1,
            max_bytes: 52_428_800,
            partition_max_bytes: 1_048_576,
            partition_max_bytes_limit: 64 * 1_048_576,
            max_wait: Duration::from_millis(500),
            isolation: IsolationLevel::ReadUncommitted,
            offset_reset: OffsetResetPolicy::Earliest,
            retry_backoff: Duration::from_millis(100),
            request_timeout: Duration::from_secs(30),
            decode_limits: DecodeLimits::default(),
        }
    }
}
