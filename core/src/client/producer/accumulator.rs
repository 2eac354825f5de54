//! Per-partition queues of batches: appending records, readiness (size, linger, flush), and
//! the order in which batches of one partition are sent and retried.
//!
//! A partition's queue holds, front to back: batches that already have sequence numbers
//! (in flight or waiting to be resent, in sequence order), then batches not yet sent, the last
//! of which is open for appends. Batches leave the queue only when acknowledged or failed, so
//! the front batch is always the oldest unacknowledged one.

use bytes::Bytes;

use super::batch::record_size_bound;
use super::idempotence::ProducerIdentity;
use crate::record::ProducerRecord;
use crate::time::{Duration, Instant};

/// Where a batch is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchState {
    /// Not sent yet, no sequence number.
    Unsent,
    /// In a request whose answer is pending; `attempt` identifies that request.
    InFlight,
    /// Sent before, failed retriably, waiting to be sent again with the same sequence.
    RetryPending,
}

/// Records of one partition sent together.
#[derive(Debug)]
pub struct ProducerBatch<O> {
    /// Unique over the producer's life.
    pub id: u64,
    /// Records in order.
    pub records: Vec<ProducerRecord>,
    /// Consecutive runs of records per owner: `(owner, count)`, in record order.
    pub owners: Vec<(O, usize)>,
    /// Sum of [`record_size_bound`] of the records.
    pub size: usize,
    /// `now` when the first record was appended.
    pub created_at: Instant,
    /// No more appends (a later batch exists, or a flush covered it).
    pub closed: bool,
    /// A flush asked for it to be sent without waiting for linger.
    pub flush: bool,
    /// Life-cycle state.
    pub state: BatchState,
    /// Number of times sent; a response for an older attempt is stale.
    pub attempt: u32,
    /// Identity and base sequence, once assigned (at first send).
    pub sequence: Option<(ProducerIdentity, i32)>,
    /// The encoded record batch, kept for resends.
    pub encoded: Option<Bytes>,
}

impl<O: Clone + PartialEq> ProducerBatch<O> {
    fn new(id: u64, now: Instant) -> Self {
        Self {
            id,
            records: Vec::new(),
            owners: Vec::new(),
            size: 0,
            created_at: now,
            closed: false,
            flush: false,
            state: BatchState::Unsent,
            attempt: 0,
            sequence: None,
            encoded: None,
        }
    }

    fn push(&mut self, owner: &O, record: ProducerRecord, size: usize) {
        match self.owners.last_mut() {
            Some((last, count)) if last == owner => *count += 1,
            _ => self.owners.push((owner.clone(), 1)),
        }
        self.records.push(record);
        self.size += size;
    }

    /// Number of records.
    pub fn record_count(&self) -> usize {
        self.records.len()
    }

    /// Whether an unsent batch may be sent at `now`.
    pub fn is_ready(&self, now: Instant, batch_size: usize, linger: Duration) -> bool {
        self.closed || self.flush || self.size >= batch_size || now - self.created_at >= linger
    }

    /// Drops the sequence and encoding so the batch is sent again as new (under a new
    /// producer id).
    pub fn unsequence(&mut self) {
        self.state = BatchState::Unsent;
        self.sequence = None;
        self.encoded = None;
        self.closed = true;
    }
}

/// The batches of one partition. See the module documentation for the order.
#[derive(Debug)]
pub struct PartitionQueue<O> {
    /// Front = oldest unacknowledged.
    pub batches: std::collections::VecDeque<ProducerBatch<O>>,
    /// No send before this time (retry backoff).
    pub retry_at: Instant,
    /// Identity the next sequence belongs to; sequences restart at 0 under a new identity.
    pub sequence_owner: Option<ProducerIdentity>,
    /// Next base sequence to assign under `sequence_owner`.
    pub next_sequence: i32,
    /// A metadata refresh was requested for this partition's missing leader.
    pub leader_requested: bool,
}

impl<O> Default for PartitionQueue<O> {
    fn default() -> Self {
        Self {
            batches: Default::default(),
            retry_at: Instant::MIN,
            sequence_owner: None,
            next_sequence: 0,
            leader_requested: false,
        }
    }
}

impl<O: Clone + PartialEq> PartitionQueue<O> {
    /// Appends a record to the open batch, or to a new batch when there is none or the
    /// record would overflow `batch_size` (a record larger than `batch_size` gets a batch of
    /// its own). Returns whether a new batch was started.
    pub fn append(
        &mut self,
        owner: &O,
        record: ProducerRecord,
        batch_size: usize,
        next_id: &mut u64,
        now: Instant,
    ) -> bool {
        let size = record_size_bound(&record);
        let fits = self.batches.back().is_some_and(|open| {
            open.state == BatchState::Unsent
                && !open.closed
                && (open.records.is_empty() || open.size + size <= batch_size)
        });
        let mut started = false;
        if !fits {
            if let Some(open) = self.batches.back_mut() {
                open.closed = true;
            }
            *next_id += 1;
            self.batches.push_back(ProducerBatch::new(*next_id, now));
            started = true;
        }
        if let Some(open) = self.batches.back_mut() {
            open.push(owner, record, size);
        }
        started
    }

    /// Number of batches in flight (current attempts).
    pub fn in_flight(&self) -> usize {
        self.batches
            .iter()
            .filter(|b| b.state == BatchState::InFlight)
            .count()
    }

    /// Index of the batch a request would carry next: the first one not in flight.
    pub fn next_to_send(&self) -> Option<usize> {
        self.batches
            .iter()
            .position(|b| b.state != BatchState::InFlight)
    }

    /// Whether a batch sequenced under another identity than `identity` is unresolved: new
    /// batches must wait for it, or a retry under the old id could land after them.
    pub fn has_other_identity(&self, identity: ProducerIdentity) -> bool {
        self.batches
            .iter()
            .any(|b| b.sequence.is_some_and(|(owner, _)| owner != identity))
    }

    /// Index of the batch with `id`.
    pub fn position(&self, id: u64) -> Option<usize> {
        self.batches.iter().position(|b| b.id == id)
    }
}
