//! [`ProducerConfig`]: batching, memory, compression, timeouts and retry settings.

#[cfg(doc)]
use super::record_size_bound;
use super::{Compression, MAX_IN_FLIGHT_PER_PARTITION};
use crate::time::Duration;

/// Producer settings (Kafka's names in parentheses).
#[derive(Debug, Clone, PartialEq)]
pub struct ProducerConfig {
    /// Bytes (by [`record_size_bound`]) at which a batch is sent without waiting (`batch.size`).
    /// Default 64 KiB (Java's is 16 KiB, librdkafka's 1 MB): a stream thread produces faster
    /// than 16 KiB batches drain, and the records waiting in the buffer cost memory and CPU
    /// per batch (docs/decisions.md §20).
    pub batch_size: usize,
    /// How long a batch waits for more records (Kafka's `linger.ms`; Kafka Streams uses
    /// 100 ms).
    pub linger: Duration,
    /// Bound of unacknowledged record bytes (`buffer.memory`).
    pub buffer_memory: usize,
    /// Bound of one Produce request's record bytes; also the largest record accepted
    /// (`max.request.size`).
    pub max_request_size: usize,
    /// Codec of every batch (`compression.type`).
    pub compression: Compression,
    /// The broker's wait for the in-sync replicas, sent as the Produce request's
    /// `timeout_ms`, saturating at `i32::MAX` ms (Kafka's `request.timeout.ms`).
    pub request_timeout: Duration,
    /// Bound on the time from append to ack, retries included (Kafka's
    /// `delivery.timeout.ms`).
    pub delivery_timeout: Duration,
    /// Wait before a retry (Kafka's `retry.backoff.ms`).
    pub retry_backoff: Duration,
    /// Batches per partition in flight, capped at [`MAX_IN_FLIGHT_PER_PARTITION`]
    /// (`max.in.flight.requests.per.connection`).
    pub max_in_flight_per_partition: usize,
    /// Seed of the sticky partition choice for null keys.
    pub seed: u64,
    /// With an id, the producer is transactional (Kafka's `transactional.id`): it fences older
    /// producers with the same id and writes only inside transactions (see the module's
    /// "Transactions"). `None`: the idempotent producer.
    pub transactional_id: Option<String>,
    /// How long the transaction coordinator lets a transaction stay open before aborting it
    /// (Kafka's `transaction.timeout.ms`; sent in InitProducerId, saturating at `i32::MAX`
    /// ms). Used only with a `transactional_id`.
    pub transaction_timeout: Duration,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            batch_size: 64 * 1024,
            linger: Duration::from_millis(100),
            buffer_memory: 32 * 1024 * 1024,
            max_request_size: 1024 * 1024,
            compression: Compression::None,
            request_timeout: Duration::from_secs(30),
            delivery_timeout: Duration::from_secs(120),
            retry_backoff: Duration::from_millis(100),
            max_in_flight_per_partition: MAX_IN_FLIGHT_PER_PARTITION,
            seed: 0x5eed,
            transactional_id: None,
            transaction_timeout: Duration::from_secs(60),
        }
    }
}
