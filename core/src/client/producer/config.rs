//! [`ProducerConfig`]: batching, memory, compression, timeouts and retry settings.

#[cfg(doc)]
use super::record_size_bound;
use super::{Compression, MAX_IN_FLIGHT_PER_PARTITION};

/// Producer settings (Kafka's names in parentheses).
#[derive(Debug, Clone, PartialEq)]
pub struct ProducerConfig {
    /// Bytes (by [`record_size_bound`]) at which a batch is sent without waiting (`batch.size`).
    pub batch_size: usize,
    /// How long a batch waits for more records (`linger.ms`; Kafka Streams uses 100).
    pub linger_ms: i64,
    /// Bound of unacknowledged record bytes (`buffer.memory`).
    pub buffer_memory: usize,
    /// Bound of one Produce request's record bytes; also the largest record accepted
    /// (`max.request.size`).
    pub max_request_size: usize,
    /// Codec of every batch (`compression.type`).
    pub compression: Compression,
    /// The broker's wait for the in-sync replicas, sent as the request's `timeout_ms`
    /// (`request.timeout.ms`).
    pub request_timeout_ms: i32,
    /// Bound on the time from append to ack, retries included (`delivery.timeout.ms`).
    pub delivery_timeout_ms: i64,
    /// Wait before a retry (`retry.backoff.ms`).
    pub retry_backoff_ms: i64,
    /// Batches per partition in flight, capped at [`MAX_IN_FLIGHT_PER_PARTITION`]
    /// (`max.in.flight.requests.per.connection`).
    pub max_in_flight_per_partition: usize,
    /// Seed of the sticky partition choice for null keys.
    pub seed: u64,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            batch_size: 16 * 1024,
            linger_ms: 100,
            buffer_memory: 32 * 1024 * 1024,
            max_request_size: 1024 * 1024,
            compression: Compression::None,
            request_timeout_ms: 30_000,
            delivery_timeout_ms: 120_000,
            retry_backoff_ms: 100,
            max_in_flight_per_partition: MAX_IN_FLIGHT_PER_PARTITION,
            seed: 0x5eed,
        }
    }
}
