//! The idempotent producer that sinks feed: per-partition accumulators, record batch v2
//! encoding, one Produce request per leader, ordered retries with stable sequence numbers; with
//! a `transactional_id`, the transactional producer of exactly-once v2 (see "Transactions").
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
//!   [`Producer::handle_timeout`] expires batches past `delivery_timeout` (so does
//!   `poll_request`); batches whose linger passed are drained by `poll_request`.
//! - [`Producer::poll_event`] reports acks and failures per owner and metadata needs.
//! - The engine keeps [`Producer::set_partition_count`] and [`Producer::update_leader`]
//!   current from metadata; [`ProducerEvent::RefreshMetadata`] asks it to refresh.
//!
//! # Delivery
//! `acks = -1`. A batch gets its sequence number the first time it is sent; partition
//! sequences start at 0 under each producer id and grow by each batch's record count. At
//! most five batches per partition are in flight. On a retriable error the failed batch and
//! every later in-flight batch of its partition wait `retry_backoff` and are sent again in
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
//! # Transactions
//! With [`ProducerConfig::transactional_id`] the producer works as Java's transactional
//! producer does for exactly-once v2 (KIP-447), at transaction protocol v1:
//! - **Start.** FindCoordinator (key type 1, the transactional id) to any broker, then
//!   InitProducerId with the transactional id and `transaction_timeout` to that coordinator
//!   ([`Target::Broker`] of the node found, announced by
//!   [`ProducerEvent::TransactionCoordinatorFound`]). This fences every older producer with
//!   the same id and aborts what it left open. NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE and
//!   a request without answer look for the coordinator again after `retry_backoff`;
//!   COORDINATOR_LOAD_IN_PROGRESS and CONCURRENT_TRANSACTIONS retry after it. Brokers that
//!   lack FindCoordinator v1, InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn,
//!   TxnOffsetCommit v3 or EndTxn make the producer fail with
//!   [`ProducerEvent::TransactionsUnsupported`]: it never writes outside a transaction.
//! - **Open.** The first [`Producer::send_batch`] after the start or after the previous
//!   transaction ended opens one. Before the first batch of a partition is sent in a
//!   transaction, AddPartitionsToTxn (v3 at most) adds it; partitions that appear meanwhile
//!   are added together by the next one. Transactional requests go one at a time. Produce
//!   requests carry the transactional id (v11 at most) and batches the transactional bit.
//! - **Commit.** [`Producer::commit_transaction`] with the input offsets and the group's
//!   [`GroupMetadata`]: every batch is flushed and must be acknowledged, then AddOffsetsToTxn
//!   (transaction coordinator), TxnOffsetCommit (v3 or v4, to [`Target::Coordinator`]: the
//!   group coordinator the group member uses; it carries the generation and member id, so a
//!   zombie's offsets are refused), then EndTxn(commit), then
//!   [`ProducerEvent::TransactionCommitted`]. A transaction without records and offsets ends
//!   without a request.
//! - **Abort.** [`Producer::abort_transaction`]: batches not sent fail with
//!   [`DeliveryError::Aborted`], those in flight are answered first (not retried), an
//!   AddPartitionsToTxn that got no answer is sent again (the abort must know whether the
//!   coordinator holds a transaction), then EndTxn(abort) unless nothing reached the
//!   coordinator, then [`ProducerEvent::TransactionAborted`]. If a batch with sequence numbers
//!   was dropped unacknowledged, the producer asks for a new epoch (InitProducerId naming its
//!   id and epoch, KIP-360) before the next transaction.
//! - **Failures.** A batch that fails (rejected, delivery timeout, ...), an offset the group
//!   coordinator refuses (ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, ...) and other abortable
//!   errors give [`ProducerEvent::TransactionFailed`]: the producer then takes nothing but
//!   `abort_transaction`. PRODUCER_FENCED and INVALID_PRODUCER_EPOCH (a newer instance took
//!   over, or the coordinator aborted a transaction open past its timeout),
//!   TRANSACTIONAL_ID_AUTHORIZATION_FAILED, INVALID_TXN_STATE and unexpected errors give
//!   [`ProducerEvent::Fenced`]: everything unacknowledged fails and the producer is done,
//!   except that a fencing may start over under a new epoch
//!   ([`Producer::restart_after_fencing`]).
//!
//! # Headers
//! The wire gets every header of a [`ProducerRecord`] in order, duplicate keys included
//! (see `batch`).
//!
//! # Files
//! - `config`, `error`, `events`: the settings, the error types, what the producer reports;
//! - `append`: [`Producer::send_batch`], partition choice and appending to the queues;
//! - `accumulator`: the per-partition batch queues; `batch`: record batch encoding;
//! - `requests`: InitProducerId and Produce requests (sequencing and encoding on first send);
//! - `responses`: acks, ordered retries and rejections from the answers; `idempotence`
//!   classifies a partition's error; `inflight` pairs answers with requests;
//! - `failures`: delivery timeouts, producer id renewal, failing everything;
//! - `ledger`: per-owner unacked counts, buffered bytes and the events that settle them;
//! - `transaction`: the transaction API and the transitions that need no request;
//!   `txn_state`: its bookkeeping; `txn_requests` / `txn_responses`: the transactional
//!   requests and their answers; `txn_error`: [`TransactionError`] and how each broker error
//!   is handled.
//!
//! This file holds the [`Producer`] itself, its metadata inputs and its outputs.

mod accumulator;
mod append;
mod batch;
mod config;
mod error;
mod events;
mod failures;
mod idempotence;
mod inflight;
mod ledger;
mod requests;
mod responses;
#[cfg(test)]
mod tests;
mod transaction;
mod txn_error;
mod txn_requests;
mod txn_responses;
mod txn_state;
#[cfg(test)]
mod txn_tests;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

use super::BrokerId;
#[cfg(doc)]
use super::Target;
#[cfg(doc)]
use crate::record::ProducerRecord;
use crate::record::TopicPartition;
use crate::time::Instant;
use accumulator::{BatchState, PartitionQueue};
use inflight::InFlightRequests;
use kafka_protocol::protocol::StrBytes;
use ledger::Ledger;
use txn_state::Transactions;

pub use batch::{
    BATCH_HEADER_LEN, BatchIdentity, EncodeError, encode_batch, encode_transactional_batch,
    record_size_bound,
};
pub use config::ProducerConfig;
pub use error::{DeliveryError, ProducerError, SendError};
pub use events::{ProducerEvent, RetryCounts};
pub use idempotence::ProducerIdentity;
pub use kafka_protocol::records::Compression;
pub use txn_error::TransactionError;
pub use txn_requests::MAX_TRANSACTIONAL_PRODUCE_VERSION;
pub use txn_state::{GroupMetadata, TransactionState};

/// Lowest Produce version built (record batch v2).
pub const MIN_PRODUCE_VERSION: i16 = 3;
/// Highest Produce version built: v13 names topics by id.
pub const MAX_PRODUCE_VERSION: i16 = 12;
/// Most batches per partition in flight that the broker's duplicate detection covers.
pub const MAX_IN_FLIGHT_PER_PARTITION: usize = 5;

/// The idempotent (or, with a `transactional_id`, transactional) producer. `O` is the owner
/// tag of appended records (e.g. a task id).
#[derive(Debug)]
pub struct Producer<O> {
    config: ProducerConfig,
    now: Instant,
    partitions: BTreeMap<TopicPartition, PartitionQueue<O>>,
    partition_counts: HashMap<Arc<str>, i32>,
    leaders: HashMap<TopicPartition, BrokerId>,
    sticky: HashMap<Arc<str>, i32>,
    rng: u64,
    identity: Option<ProducerIdentity>,
    init_in_flight: bool,
    init_retry_at: Instant,
    fatal: Option<ProducerError>,
    in_flight: InFlightRequests,
    ledger: Ledger<O>,
    next_batch_id: u64,
    last_broker: Option<BrokerId>,
    /// The transactional part, with a `transactional_id`.
    txn: Option<Transactions>,
    /// Batches put back for a retry.
    retries: RetryCounts,
}

impl<O: Clone + Eq + Hash + Debug> Producer<O> {
    /// A producer that has no producer id yet (its first request is InitProducerId, or with a
    /// `transactional_id` FindCoordinator).
    pub fn new(mut config: ProducerConfig, now: Instant) -> Self {
        config.max_in_flight_per_partition = config
            .max_in_flight_per_partition
            .clamp(1, MAX_IN_FLIGHT_PER_PARTITION);
        let rng = config.seed;
        let txn = config
            .transactional_id
            .clone()
            .map(|id| Transactions::new(StrBytes::from_string(id)));
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
            init_retry_at: Instant::MIN,
            fatal: None,
            in_flight: InFlightRequests::default(),
            ledger: Ledger::new(),
            next_batch_id: 0,
            last_broker: None,
            txn,
            retries: RetryCounts::default(),
        }
    }

    /// The settings in use.
    pub fn config(&self) -> &ProducerConfig {
        &self.config
    }

    /// Batches (and their records) put back to be sent again after a retriable error.
    pub fn retries(&self) -> RetryCounts {
        self.retries
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
        self.ledger.unacked(owner)
    }

    /// Whether records of an owner matching `owner` are neither acknowledged nor failed yet
    /// (e.g. every owner tagged with a commit up to N: whether that commit's output is
    /// delivered; an owner's records are settled in any order across partitions).
    pub fn any_unacked(&self, owner: impl Fn(&O) -> bool) -> bool {
        self.ledger.any_unacked(owner)
    }

    /// Bytes (by [`record_size_bound`]) of unacknowledged records.
    pub fn buffered_bytes(&self) -> usize {
        self.ledger.buffered_bytes()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ProducerEvent<O>> {
        self.ledger.poll_event()
    }

    fn observe(&mut self, now: Instant) -> Instant {
        self.now = self.now.max(now);
        self.now
    }

    /// Fails batches past `delivery_timeout` that are not in flight.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.observe(now);
        self.expire(now);
        self.advance_transaction();
    }

    /// The next time something becomes due: a linger or retry backoff ending, a delivery
    /// timeout, an InitProducerId retry, or a transactional request's backoff. Call
    /// [`Producer::poll_request`] (or [`Producer::handle_timeout`]) then.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.fatal.is_some() {
            return None;
        }
        // A fold, no allocation: the engine asks after every poll. Deadlines already passed
        // are left out (their work waits for something else, e.g. a leader).
        let now = self.now;
        let mut earliest: Option<Instant> = None;
        let mut offer = |t: Instant| {
            if t > now {
                earliest = Some(earliest.map_or(t, |e| e.min(t)));
            }
        };
        if self.identity.is_none() && !self.init_in_flight {
            offer(self.init_retry_at);
        }
        if let Some(txn) = &self.txn {
            txn.deadlines().for_each(&mut offer);
        }
        for queue in self.partitions.values() {
            offer(queue.retry_at);
            for batch in &queue.batches {
                if batch.state != BatchState::InFlight {
                    offer(batch.created_at + self.config.delivery_timeout);
                }
                if batch.state == BatchState::Unsent && !batch.closed && !batch.flush {
                    offer(batch.created_at + self.config.linger);
                }
            }
        }
        earliest
    }
}
