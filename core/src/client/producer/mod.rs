//! The idempotent producer that sinks feed: per-partition accumulators, record batch v2
//! encoding, one Produce request per leader, ordered retries with stable sequence numbers.
//!
//! # Driving it
//! - [`Producer::send_batch`] appends a whole sink batch, tagged with an opaque owner (the
//!   task that produced it), or gives the records back in a [`SendError`].
//! - [`Producer::poll_request`] returns the next request: InitProducerId first (to
//!   [`Target::AnyBroker`]), then Produce requests to partition leaders, built for
//!   `min(versions.version(Produce), 12)` (v3..=12 name topics; v13 would need topic ids).
//! - [`Producer::handle_response`] / [`Producer::handle_request_failed`] take the answers. A
//!   broker answers Produce requests in send order; the engine must report every Produce
//!   request exactly once (see `inflight`).
//! - [`Producer::poll_timeout`] is the next linger, retry-backoff or delivery deadline;
//!   [`Producer::handle_timeout`] expires batches past `delivery_timeout_ms` (so does
//!   `poll_request`); batches whose linger passed are drained by `poll_request`.
//! - [`Producer::poll_event`] reports acks and failures per owner and metadata needs.
//! - The engine keeps [`Producer::set_partition_count`] and [`Producer::update_leader`]
//!   current from metadata; [`ProducerEvent::RefreshMetadata`] asks it to refresh.
//!
//! # Delivery
//! `acks = -1`. A batch gets its sequence number the first time it is sent; partition
//! sequences start at 0 under each producer id and grow by each batch's record count. At
//! most five batches per partition are in flight. On a retriable error the failed batch and
//! every later in-flight batch of its partition wait `retry_backoff_ms` and are sent again in
//! their original order with their original sequences; an answer to an attempt already
//! superseded is ignored unless it reports the batch written.
//! DUPLICATE_SEQUENCE_NUMBER counts as written. A batch written means every earlier batch of
//! its partition under the same producer id was written too (a broker appends sequences only
//! in order): those are acknowledged then, whatever their own answers said.
//!
//! A batch that fails for good fails exactly its owners ([`ProducerEvent::Failed`]). When that
//! leaves a hole in a partition's sequence the producer asks for a new producer id (the
//! idempotent producer's epoch bump, as in Java since KIP-360):
//! - broker rejection (RECORD_TOO_LARGE, INVALID_RECORD, TOPIC_AUTHORIZATION_FAILED, …): the
//!   batch was not written, and neither were the later batches of its partition (a broker
//!   appends only in sequence), so those are sent again as new batches under the new id; if
//!   the failed batch was the partition's last sequenced one, its sequences are simply reused;
//! - OUT_OF_ORDER_SEQUENCE_NUMBER (for the oldest unacked batch), UNKNOWN_PRODUCER_ID,
//!   INVALID_PRODUCER_EPOCH: the batch fails; later batches as above;
//! - delivery timeout of a batch that was already sent: it may have been written, so it and
//!   every later sent batch of its partition fail (their owners must reprocess).
//!
//! Batches under a new id are not sent to a partition while batches of the old id are still
//! unresolved there, so a retry under the old id never lands after newer data.
//!
//! # Partitioning
//! A record's explicit partition is used as is; a keyed record goes to
//! [`crate::partitioner::default_partition`]; records with a null key stick to one partition
//! per topic until that partition's open batch is full or sent, then a new one is drawn from
//! the seeded generator (KIP-480's sticky partitioner).
//!
//! # Memory
//! At most `buffer_memory` bytes (by [`record_size_bound`]) of unacknowledged records are
//! held; `send_batch` beyond that fails with [`ProducerError::BufferFull`] and gives the
//! records back. A call into an empty buffer is always accepted, so one oversized sink batch
//! cannot stall forever.
//!
//! # Headers
//! The wire gets every header of a [`ProducerRecord`] in order, duplicate keys included
//! (see `batch`).

mod accumulator;
mod batch;
mod idempotence;
mod inflight;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse,
    RequestKind, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::{ApiVersionLookup, BrokerId, Outbound, Target};
use crate::partitioner::default_partition;
use crate::record::{ProducerRecord, TopicPartition};
use accumulator::{Batch, BatchState, PartitionQueue};
use idempotence::{PartitionOutcome, classify, increment_sequence};
use inflight::{InFlightRequests, SentBatch, SentRequest};

pub use batch::{BATCH_HEADER_LEN, BatchIdentity, EncodeError, encode_batch, record_size_bound};
pub use idempotence::ProducerIdentity;
pub use kafka_protocol::records::Compression;

/// Lowest Produce version built (record batch v2).
pub const MIN_PRODUCE_VERSION: i16 = 3;
/// Highest Produce version built: v13 names topics by id.
pub const MAX_PRODUCE_VERSION: i16 = 12;
/// Most batches per partition in flight that the broker's duplicate detection covers.
pub const MAX_IN_FLIGHT_PER_PARTITION: usize = 5;

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

/// Why records were not delivered.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DeliveryError {
    /// The broker rejected the batch for good.
    #[error("broker rejected the batch: {0}")]
    Broker(ResponseError),
    /// Not acknowledged within `delivery_timeout_ms` of its first append.
    #[error("not acknowledged within the delivery timeout ({timeout_ms} ms)")]
    DeliveryTimeout {
        /// The configured timeout.
        timeout_ms: i64,
    },
    /// The batch could not be encoded.
    #[error("batch encoding failed: {0}")]
    Encode(#[from] EncodeError),
    /// The producer failed as a whole (see [`ProducerError`]).
    #[error("producer failed: {0}")]
    ProducerFailed(Box<ProducerError>),
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

/// Acks, failures and buffer accounting.
#[derive(Debug)]
struct Ledger<O> {
    events: VecDeque<ProducerEvent<O>>,
    unacked: HashMap<O, usize>,
    buffered_bytes: usize,
}

impl<O: Clone + Eq + Hash> Ledger<O> {
    fn settle(&mut self, batch: &Batch<O>) {
        self.buffered_bytes = self.buffered_bytes.saturating_sub(batch.size);
        for (owner, count) in &batch.owners {
            if let Some(left) = self.unacked.get_mut(owner) {
                *left = left.saturating_sub(*count);
                if *left == 0 {
                    self.unacked.remove(owner);
                }
            }
        }
    }

    fn ack(&mut self, tp: &TopicPartition, batch: Batch<O>, base_offset: Option<i64>) {
        self.settle(&batch);
        let mut offset = base_offset;
        for (owner, count) in batch.owners {
            self.events.push_back(ProducerEvent::Acked {
                owner,
                topic_partition: tp.clone(),
                base_offset: offset,
                count,
            });
            offset = offset.map(|o| o + count as i64);
        }
    }

    fn fail(&mut self, tp: &TopicPartition, batch: Batch<O>, error: DeliveryError) {
        tracing::warn!(partition = %tp, records = batch.record_count(), %error, "produce failed");
        self.settle(&batch);
        for (owner, count) in batch.owners {
            self.events.push_back(ProducerEvent::Failed {
                owner,
                topic_partition: tp.clone(),
                count,
                error: error.clone(),
            });
        }
    }
}

/// The idempotent producer. `O` is the owner tag of appended records (e.g. a task id).
#[derive(Debug)]
pub struct Producer<O> {
    config: ProducerConfig,
    now: i64,
    partitions: BTreeMap<TopicPartition, PartitionQueue<O>>,
    partition_counts: HashMap<Arc<str>, i32>,
    leaders: HashMap<TopicPartition, BrokerId>,
    sticky: HashMap<Arc<str>, i32>,
    rng: u64,
    identity: Option<ProducerIdentity>,
    init_in_flight: bool,
    init_retry_at: i64,
    fatal: Option<ProducerError>,
    in_flight: InFlightRequests,
    ledger: Ledger<O>,
    next_batch_id: u64,
    last_broker: Option<BrokerId>,
}

impl<O: Clone + Eq + Hash + Debug> Producer<O> {
    /// A producer that has no producer id yet (its first request is InitProducerId).
    pub fn new(mut config: ProducerConfig, now: i64) -> Self {
        config.max_in_flight_per_partition = config
            .max_in_flight_per_partition
            .clamp(1, MAX_IN_FLIGHT_PER_PARTITION);
        let rng = config.seed;
        Self {
            config,
            now,
            partitions: BTreeMap::new(),
            partition_counts: HashMap::new(),
            leaders: HashMap::new(),
            sticky: HashMap::new(),
            rng,
            identity: None,
            init_in_flight: false,
            init_retry_at: i64::MIN,
            fatal: None,
            in_flight: InFlightRequests::default(),
            ledger: Ledger {
                events: VecDeque::new(),
                unacked: HashMap::new(),
                buffered_bytes: 0,
            },
            next_batch_id: 0,
            last_broker: None,
        }
    }

    /// The settings in use.
    pub fn config(&self) -> &ProducerConfig {
        &self.config
    }

    /// The producer id and epoch, once InitProducerId answered.
    pub fn identity(&self) -> Option<ProducerIdentity> {
        self.identity
    }

    /// Sets the partition count of `topic` (from metadata), used to partition records that
    /// name no partition.
    pub fn set_partition_count(&mut self, topic: impl Into<Arc<str>>, count: i32) {
        let topic = topic.into();
        if self.sticky.get(&topic).is_some_and(|p| *p >= count) {
            self.sticky.remove(&topic);
        }
        self.partition_counts.insert(topic, count);
    }

    /// Sets (or, with `None`, forgets) the leader of a partition (from metadata).
    pub fn update_leader(&mut self, topic_partition: TopicPartition, leader: Option<BrokerId>) {
        match leader {
            Some(broker) => {
                if let Some(queue) = self.partitions.get_mut(&topic_partition) {
                    queue.leader_requested = false;
                }
                self.leaders.insert(topic_partition, broker);
            }
            None => {
                self.leaders.remove(&topic_partition);
            }
        }
    }

    /// [`Producer::update_leader`] for many partitions.
    pub fn update_leaders(
        &mut self,
        leaders: impl IntoIterator<Item = (TopicPartition, Option<BrokerId>)>,
    ) {
        for (topic_partition, leader) in leaders {
            self.update_leader(topic_partition, leader);
        }
    }

    /// Appends a sink's whole batch for `owner`. Either every record is accepted or none is
    /// (they come back in the error). Returns the number of records accepted.
    pub fn send_batch(
        &mut self,
        owner: O,
        records: Vec<ProducerRecord>,
        now: i64,
    ) -> Result<usize, SendError> {
        let now = self.observe(now);
        match self.check_batch(&records) {
            Ok((bytes, keyed)) => {
                let count = records.len();
                for (record, partition) in records.into_iter().zip(keyed) {
                    let size = record_size_bound(&record);
                    let partition = match partition {
                        Some(partition) => partition,
                        None => self.sticky_partition(&record.topic, size),
                    };
                    let tp = TopicPartition::new(record.topic.clone(), partition);
                    self.partitions.entry(tp).or_default().append(
                        &owner,
                        record,
                        self.config.batch_size,
                        &mut self.next_batch_id,
                        now,
                    );
                }
                self.ledger.buffered_bytes += bytes;
                if count > 0 {
                    *self.ledger.unacked.entry(owner).or_insert(0) += count;
                }
                Ok(count)
            }
            Err(error) => Err(SendError { error, records }),
        }
    }

    /// Validates a batch: returns its size bound and each record's partition (`None`: sticky).
    fn check_batch(
        &self,
        records: &[ProducerRecord],
    ) -> Result<(usize, Vec<Option<i32>>), ProducerError> {
        if let Some(fatal) = &self.fatal {
            return Err(fatal.clone());
        }
        let mut bytes = 0;
        let mut partitions = Vec::with_capacity(records.len());
        for record in records {
            let size = record_size_bound(record);
            if size + BATCH_HEADER_LEN > self.config.max_request_size {
                return Err(ProducerError::RecordTooLarge {
                    size,
                    max: self.config.max_request_size,
                });
            }
            bytes += size;
            let count = self.partition_counts.get(&record.topic).copied();
            let partition = match (record.partition, count, &record.key) {
                (Some(partition), count, _) => {
                    if partition < 0 || count.is_some_and(|count| partition >= count) {
                        return Err(ProducerError::PartitionOutOfRange {
                            topic: record.topic.clone(),
                            partition,
                        });
                    }
                    Some(partition)
                }
                (None, None, _) | (None, Some(..=0), _) => {
                    return Err(ProducerError::UnknownPartitionCount {
                        topic: record.topic.clone(),
                    });
                }
                (None, Some(count), Some(key)) => Some(default_partition(key, count)),
                (None, Some(_), None) => None,
            };
            partitions.push(partition);
        }
        let buffered = self.ledger.buffered_bytes;
        if buffered > 0 && buffered + bytes > self.config.buffer_memory {
            return Err(ProducerError::BufferFull {
                buffered,
                requested: bytes,
                limit: self.config.buffer_memory,
            });
        }
        Ok((bytes, partitions))
    }

    /// The sticky partition of `topic` for a null-key record of `size` bytes: the current
    /// one while its open batch takes the record, else a newly drawn one.
    fn sticky_partition(&mut self, topic: &Arc<str>, size: usize) -> i32 {
        let count = self
            .partition_counts
            .get(topic)
            .copied()
            .unwrap_or(1)
            .max(1);
        let current = self.sticky.get(topic).copied();
        if let Some(partition) = current {
            let open = self
                .partitions
                .get(&TopicPartition::new(topic.clone(), partition))
                .and_then(|queue| queue.batches.back())
                .is_some_and(|open| {
                    open.state == BatchState::Unsent
                        && !open.closed
                        && open.size + size <= self.config.batch_size
                });
            if open {
                return partition;
            }
        }
        let partition = if count == 1 {
            0
        } else {
            let drawn = (self.next_random() % count as u64) as i32;
            match current {
                // Never the partition just left: draw among the other count - 1.
                Some(previous) if drawn == previous => (drawn + 1) % count,
                _ => drawn,
            }
        };
        self.sticky.insert(topic.clone(), partition);
        partition
    }

    /// splitmix64.
    fn next_random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Makes every batch appended so far ready to send (the engine flushes before committing
    /// offsets); later appends start new batches.
    pub fn flush(&mut self) {
        for queue in self.partitions.values_mut() {
            for batch in &mut queue.batches {
                if batch.state == BatchState::Unsent {
                    batch.flush = true;
                    batch.closed = true;
                }
            }
        }
    }

    /// Whether every appended record is acknowledged or failed.
    pub fn is_flushed(&self) -> bool {
        self.partitions
            .values()
            .all(|queue| queue.batches.is_empty())
    }

    /// Records of `owner` neither acknowledged nor failed yet.
    pub fn unacked(&self, owner: &O) -> usize {
        self.ledger.unacked.get(owner).copied().unwrap_or(0)
    }

    /// Bytes (by [`record_size_bound`]) of unacknowledged records.
    pub fn buffered_bytes(&self) -> usize {
        self.ledger.buffered_bytes
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ProducerEvent<O>> {
        self.ledger.events.pop_front()
    }

    fn observe(&mut self, now: i64) -> i64 {
        self.now = self.now.max(now);
        self.now
    }

    /// Fails batches past `delivery_timeout_ms` that are not in flight.
    pub fn handle_timeout(&mut self, now: i64) {
        let now = self.observe(now);
        self.expire(now);
    }

    /// The next time something becomes due: a linger or retry backoff ending, a delivery
    /// timeout, or an InitProducerId retry. Call [`Producer::poll_request`] (or
    /// [`Producer::handle_timeout`]) then.
    pub fn poll_timeout(&self) -> Option<i64> {
        if self.fatal.is_some() {
            return None;
        }
        let mut deadlines = Vec::new();
        if self.identity.is_none() && !self.init_in_flight {
            deadlines.push(self.init_retry_at);
        }
        for queue in self.partitions.values() {
            deadlines.push(queue.retry_at);
            for batch in &queue.batches {
                if batch.state != BatchState::InFlight {
                    deadlines.push(
                        batch
                            .created_at
                            .saturating_add(self.config.delivery_timeout_ms),
                    );
                }
                if batch.state == BatchState::Unsent && !batch.closed && !batch.flush {
                    deadlines.push(batch.created_at.saturating_add(self.config.linger_ms));
                }
            }
        }
        deadlines.into_iter().filter(|d| *d > self.now).min()
    }

    /// The next request to send: InitProducerId while the producer has no id, else a Produce
    /// request to one leader carrying one ready batch per partition (up to
    /// `max_request_size`), leaders taken in turn.
    pub fn poll_request(&mut self, now: i64, versions: &dyn ApiVersionLookup) -> Option<Outbound> {
        let now = self.observe(now);
        self.expire(now);
        if self.fatal.is_some() {
            return None;
        }
        if self.identity.is_none() && !self.init_in_flight && now >= self.init_retry_at {
            let Some(version) = versions.version(ApiKey::InitProducerId) else {
                self.fail_all(ProducerError::UnsupportedVersion {
                    api: ApiKey::InitProducerId,
                });
                return None;
            };
            self.init_in_flight = true;
            let request = InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(
                    self.config.delivery_timeout_ms.min(i32::MAX as i64) as i32
                );
            tracing::debug!(version, "requesting a producer id");
            return Some(Outbound {
                target: Target::AnyBroker,
                request: RequestKind::InitProducerId(request),
                version,
            });
        }
        // Each pass either returns a request or fails at least one batch (encoding).
        for _ in 0..=self.partitions.len() {
            let ready = self.ready_by_leader(now);
            let broker = ready
                .range(self.last_broker.map_or(i32::MIN, |b| b.saturating_add(1))..)
                .next()
                .or_else(|| ready.iter().next())
                .map(|(broker, _)| *broker)?;
            let version = match versions.version(ApiKey::Produce) {
                Some(version) if version >= MIN_PRODUCE_VERSION => version.min(MAX_PRODUCE_VERSION),
                _ => {
                    self.fail_all(ProducerError::UnsupportedVersion {
                        api: ApiKey::Produce,
                    });
                    return None;
                }
            };
            self.last_broker = Some(broker);
            let partitions = ready.get(&broker).cloned().unwrap_or_default();
            if let Some(outbound) = self.build_produce(broker, partitions, version) {
                return Some(outbound);
            }
            // Every selected batch failed to encode (and is failed): look again.
        }
        None
    }

    /// Partitions whose next batch may be sent now, by leader.
    fn ready_by_leader(&mut self, now: i64) -> BTreeMap<BrokerId, Vec<TopicPartition>> {
        let mut ready: BTreeMap<BrokerId, Vec<TopicPartition>> = BTreeMap::new();
        let identity = self.identity;
        for (tp, queue) in &mut self.partitions {
            if queue.in_flight() >= self.config.max_in_flight_per_partition || now < queue.retry_at
            {
                continue;
            }
            let Some(batch) = queue.next_to_send().and_then(|i| queue.batches.get(i)) else {
                continue;
            };
            let sendable = match batch.state {
                BatchState::RetryPending => true,
                BatchState::Unsent => {
                    batch.is_ready(now, self.config.batch_size, self.config.linger_ms)
                        && identity.is_some_and(|id| !queue.has_other_identity(id))
                }
                BatchState::InFlight => false,
            };
            if !sendable {
                continue;
            }
            match self.leaders.get(tp) {
                Some(leader) => ready.entry(*leader).or_default().push(tp.clone()),
                None if !queue.leader_requested => {
                    queue.leader_requested = true;
                    self.ledger
                        .events
                        .push_back(ProducerEvent::RefreshMetadata {
                            topic: tp.topic.clone(),
                        });
                }
                None => {}
            }
        }
        ready
    }

    /// Builds one Produce request for `broker` from the next batch of each of `partitions`.
    fn build_produce(
        &mut self,
        broker: BrokerId,
        partitions: Vec<TopicPartition>,
        version: i16,
    ) -> Option<Outbound> {
        let mut topics: Vec<TopicProduceData> = Vec::new();
        let mut sent = Vec::new();
        let mut total = 0usize;
        for tp in partitions {
            let Some(queue) = self.partitions.get_mut(&tp) else {
                continue;
            };
            let Some(index) = queue.next_to_send() else {
                continue;
            };
            let Some(batch) = queue.batches.get(index) else {
                continue;
            };
            let estimate = batch
                .encoded
                .as_ref()
                .map_or(batch.size + BATCH_HEADER_LEN, |b| b.len());
            if !sent.is_empty() && total + estimate > self.config.max_request_size {
                break;
            }
            if batch.encoded.is_none()
                && let Err(error) =
                    Self::sequence_and_encode(queue, index, self.identity, self.config.compression)
            {
                if let Some(batch) = queue.batches.remove(index) {
                    self.ledger.fail(&tp, batch, DeliveryError::Encode(error));
                }
                continue;
            }
            let Some(batch) = queue.batches.get_mut(index) else {
                continue;
            };
            let Some(records) = batch.encoded.clone() else {
                continue;
            };
            batch.state = BatchState::InFlight;
            batch.attempt += 1;
            total += records.len();
            tracing::trace!(partition = %tp, broker, sequence = ?batch.sequence, attempt = batch.attempt, "sending batch");
            sent.push(SentBatch {
                topic_partition: tp.clone(),
                batch_id: batch.id,
                attempt: batch.attempt,
            });
            let data = PartitionProduceData::default()
                .with_index(tp.partition)
                .with_records(Some(records));
            match topics.last_mut() {
                Some(topic) if topic.name.0.as_str() == &*tp.topic => {
                    topic.partition_data.push(data)
                }
                _ => topics.push(
                    TopicProduceData::default()
                        .with_name(TopicName(StrBytes::from_string(tp.topic.to_string())))
                        .with_partition_data(vec![data]),
                ),
            }
        }
        if sent.is_empty() {
            return None;
        }
        self.in_flight.push(broker, SentRequest { batches: sent });
        let request = ProduceRequest::default()
            .with_transactional_id(None)
            .with_acks(-1)
            .with_timeout_ms(self.config.request_timeout_ms)
            .with_topic_data(topics);
        Some(Outbound {
            target: Target::Broker(broker),
            request: RequestKind::Produce(request),
            version,
        })
    }

    /// Gives an unsent batch the partition's next sequence and encodes it.
    fn sequence_and_encode(
        queue: &mut PartitionQueue<O>,
        index: usize,
        identity: Option<ProducerIdentity>,
        compression: Compression,
    ) -> Result<(), EncodeError> {
        let Some(identity) = identity else {
            return Err(EncodeError::Empty);
        };
        if queue.sequence_owner != Some(identity) {
            queue.sequence_owner = Some(identity);
            queue.next_sequence = 0;
        }
        let base_sequence = queue.next_sequence;
        let Some(batch) = queue.batches.get_mut(index) else {
            return Err(EncodeError::Empty);
        };
        let encoded = encode_batch(
            &batch.records,
            BatchIdentity {
                producer_id: identity.producer_id,
                producer_epoch: identity.producer_epoch,
                base_sequence,
            },
            compression,
        )?;
        let count = i32::try_from(batch.record_count()).unwrap_or(i32::MAX);
        batch.sequence = Some((identity, base_sequence));
        batch.encoded = Some(encoded);
        batch.closed = true;
        queue.next_sequence = increment_sequence(base_sequence, count);
        Ok(())
    }

    /// Handles the answer to a request from [`Producer::poll_request`]: InitProducerId or
    /// Produce. An error is also fatal for the producer when it is
    /// [`ProducerError::InitProducerId`].
    pub fn handle_response(
        &mut self,
        from: BrokerId,
        response: ResponseKind,
        now: i64,
    ) -> Result<(), ProducerError> {
        let now = self.observe(now);
        match response {
            ResponseKind::InitProducerId(response) => {
                self.handle_init_producer_id(from, &response, now)
            }
            ResponseKind::Produce(response) => self.handle_produce(from, &response, now),
            _ => Err(ProducerError::UnexpectedResponse { broker: from }),
        }
    }

    fn handle_init_producer_id(
        &mut self,
        from: BrokerId,
        response: &InitProducerIdResponse,
        now: i64,
    ) -> Result<(), ProducerError> {
        if !self.init_in_flight {
            return Err(ProducerError::UnexpectedResponse { broker: from });
        }
        self.init_in_flight = false;
        match ResponseError::try_from_code(response.error_code) {
            None => {
                let identity = ProducerIdentity {
                    producer_id: response.producer_id.0,
                    producer_epoch: response.producer_epoch,
                };
                tracing::info!(?identity, "producer id assigned");
                self.identity = Some(identity);
                Ok(())
            }
            Some(error) if error.is_retriable() => {
                tracing::debug!(%error, "InitProducerId failed, retrying");
                self.init_retry_at = now.saturating_add(self.config.retry_backoff_ms);
                Ok(())
            }
            Some(error) => {
                let error = ProducerError::InitProducerId(error);
                self.fail_all(error.clone());
                Err(error)
            }
        }
    }

    fn handle_produce(
        &mut self,
        from: BrokerId,
        response: &ProduceResponse,
        now: i64,
    ) -> Result<(), ProducerError> {
        let request = self
            .in_flight
            .pop(from)
            .ok_or(ProducerError::UnexpectedResponse { broker: from })?;
        let mut refresh = BTreeSet::new();
        for sent in request.batches {
            let tp = &sent.topic_partition;
            let answer = response
                .responses
                .iter()
                .filter(|topic| topic.name.0.as_str() == &*tp.topic)
                .flat_map(|topic| topic.partition_responses.iter())
                .find(|partition| partition.index == tp.partition);
            let Some(answer) = answer else {
                // No answer for this partition: as if the request was lost.
                self.apply_outcome(&sent, retry_network(), None, now, &mut refresh);
                continue;
            };
            let first_unacked = self
                .partitions
                .get(tp)
                .and_then(|q| q.batches.front())
                .is_some_and(|front| front.id == sent.batch_id);
            let outcome = classify(answer.error_code, first_unacked);
            if let PartitionOutcome::Retry {
                refresh_metadata: true,
                ..
            } = outcome
                && answer.current_leader.leader_id.0 >= 0
            {
                // Produce v10+ names the new leader.
                self.leaders
                    .insert(tp.clone(), answer.current_leader.leader_id.0);
            }
            let base_offset = (answer.base_offset >= 0).then_some(answer.base_offset);
            self.apply_outcome(&sent, outcome, base_offset, now, &mut refresh);
        }
        self.request_refresh(refresh);
        self.expire(now);
        Ok(())
    }

    /// The request carrying Produce (or InitProducerId) got no answer.
    pub fn handle_request_failed(&mut self, target: Target, api: ApiKey, now: i64) {
        let now = self.observe(now);
        match (api, target) {
            (ApiKey::InitProducerId, _) if self.init_in_flight => {
                self.init_in_flight = false;
                self.init_retry_at = now.saturating_add(self.config.retry_backoff_ms);
            }
            (ApiKey::Produce, Target::Broker(broker)) => {
                let Some(request) = self.in_flight.pop(broker) else {
                    return;
                };
                let mut refresh = BTreeSet::new();
                for sent in &request.batches {
                    self.apply_outcome(sent, retry_network(), None, now, &mut refresh);
                }
                self.request_refresh(refresh);
                self.expire(now);
            }
            _ => {}
        }
    }

    fn request_refresh(&mut self, topics: BTreeSet<Arc<str>>) {
        for topic in topics {
            self.ledger
                .events
                .push_back(ProducerEvent::RefreshMetadata { topic });
        }
    }

    /// Applies one partition's outcome to the batch it answers.
    fn apply_outcome(
        &mut self,
        sent: &SentBatch,
        outcome: PartitionOutcome,
        base_offset: Option<i64>,
        now: i64,
        refresh: &mut BTreeSet<Arc<str>>,
    ) {
        let tp = &sent.topic_partition;
        let Some(queue) = self.partitions.get_mut(tp) else {
            return;
        };
        let Some(mut index) = queue.position(sent.batch_id) else {
            return; // already acknowledged or failed
        };
        let current = queue
            .batches
            .get(index)
            .is_some_and(|b| b.state == BatchState::InFlight && b.attempt == sent.attempt);
        match outcome {
            PartitionOutcome::Written => {
                let Some(batch) = queue.batches.remove(index) else {
                    return;
                };
                // A broker appends a sequence only right after the one before it, so the
                // earlier batches sequenced under the same producer id are written too,
                // whatever their own answers say (an error such as REQUEST_TIMED_OUT, or none
                // yet). Sent again, one could fall out of the broker's window of recent
                // batches and be refused as OUT_OF_ORDER_SEQUENCE_NUMBER.
                if let Some((identity, _)) = batch.sequence {
                    let mut earlier = 0;
                    while earlier < index {
                        let same = queue.batches.get(earlier).is_some_and(|b| {
                            b.sequence.is_some_and(|(owner, _)| owner == identity)
                        });
                        if !same {
                            earlier += 1;
                            continue;
                        }
                        if let Some(written) = queue.batches.remove(earlier) {
                            tracing::trace!(partition = %tp, "batch acknowledged by a later one");
                            self.ledger.ack(tp, written, None);
                        }
                        // `index` counted the removed batch.
                        index -= 1;
                    }
                }
                tracing::trace!(partition = %tp, ?base_offset, "batch acknowledged");
                self.ledger.ack(tp, batch, base_offset);
            }
            _ if !current => {
                tracing::trace!(partition = %tp, "ignoring the answer to a superseded attempt");
            }
            PartitionOutcome::Retry {
                error,
                refresh_metadata,
            } => {
                tracing::debug!(partition = %tp, %error, "retrying batch and later in-flight batches");
                // This batch and every later one in flight go back, in order, sequences kept;
                // answers to their current attempts become stale.
                for batch in queue.batches.iter_mut().skip(index) {
                    if batch.state == BatchState::InFlight {
                        batch.state = BatchState::RetryPending;
                    }
                }
                queue.retry_at = now.saturating_add(self.config.retry_backoff_ms);
                if refresh_metadata {
                    refresh.insert(tp.topic.clone());
                }
                // Past its delivery timeout it is failed by `expire`.
            }
            PartitionOutcome::SequenceBroken(error) | PartitionOutcome::Rejected(error) => {
                let Some(batch) = queue.batches.remove(index) else {
                    return;
                };
                let sequence = batch.sequence;
                let later_sequenced = queue
                    .batches
                    .iter()
                    .skip(index)
                    .any(|b| b.sequence.is_some());
                let reuse = matches!(outcome, PartitionOutcome::Rejected(_))
                    && !later_sequenced
                    && sequence.is_some_and(|(id, _)| queue.sequence_owner == Some(id));
                if reuse {
                    // Nothing was sent after it: its sequence numbers are free again.
                    if let Some((_, base)) = sequence {
                        queue.next_sequence = base;
                    }
                } else {
                    for later in queue.batches.iter_mut().skip(index) {
                        if later.sequence.is_some() {
                            later.unsequence();
                        }
                    }
                    if let Some((id, _)) = sequence {
                        self.renew_identity(id);
                    }
                }
                self.ledger.fail(tp, batch, DeliveryError::Broker(error));
            }
        }
    }

    /// Asks for a new producer id if `stale` is still the current one.
    fn renew_identity(&mut self, stale: ProducerIdentity) {
        if self.identity == Some(stale) {
            tracing::info!(?stale, "requesting a new producer id");
            self.identity = None;
            self.init_retry_at = i64::MIN;
        }
    }

    /// Fails batches past their delivery timeout that are not in flight. A sent batch may
    /// have been written, so it fails together with every later sent batch of its partition.
    fn expire(&mut self, now: i64) {
        let timeout = self.config.delivery_timeout_ms;
        let mut renew = Vec::new();
        for (tp, queue) in &mut self.partitions {
            let mut index = 0;
            while let Some(batch) = queue.batches.get(index) {
                let expired = batch.state != BatchState::InFlight
                    && now >= batch.created_at.saturating_add(timeout);
                if !expired {
                    index += 1;
                    continue;
                }
                let error = DeliveryError::DeliveryTimeout {
                    timeout_ms: timeout,
                };
                if let Some((identity, _)) = batch.sequence {
                    renew.push(identity);
                    let mut later = index;
                    while let Some(batch) = queue.batches.get(later) {
                        if batch.sequence.is_some() {
                            if let Some(batch) = queue.batches.remove(later) {
                                self.ledger.fail(tp, batch, error.clone());
                            }
                        } else {
                            later += 1;
                        }
                    }
                } else if let Some(batch) = queue.batches.remove(index) {
                    self.ledger.fail(tp, batch, error);
                }
            }
        }
        for identity in renew {
            self.renew_identity(identity);
        }
    }

    /// Makes the producer unusable: every batch fails with `error`.
    fn fail_all(&mut self, error: ProducerError) {
        tracing::error!(%error, "producer failed");
        let delivery = DeliveryError::ProducerFailed(Box::new(error.clone()));
        for (tp, queue) in &mut self.partitions {
            while let Some(batch) = queue.batches.pop_front() {
                self.ledger.fail(tp, batch, delivery.clone());
            }
        }
        self.fatal = Some(error);
    }
}

fn retry_network() -> PartitionOutcome {
    PartitionOutcome::Retry {
        error: ResponseError::NetworkException,
        refresh_metadata: true,
    }
}
