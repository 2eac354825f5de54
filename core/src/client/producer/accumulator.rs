//! Per-partition queues of batches: appending records, readiness (size, linger, flush), and
//! the order in which batches of one partition are sent and retried.
//!
//! A partition's queue holds, front to back: batches that already have sequence numbers
//! (in flight or waiting to be resent, in sequence order), then batches not yet sent, the last
//! of which is open for appends. Batches leave the queue only when acknowledged or failed, so
//! the front batch is always the oldest unacknowledged one.

use bytes::Bytes;

use super::BATCH_HEADER_LEN;
use super::batch::{BatchBuilder, record_size_bound};
use super::idempotence::ProducerIdentity;
use crate::record::ProducerRecord;

/// Most bytes a new batch's buffer reserves up front (it grows past them when needed).
const BATCH_CAPACITY: usize = 64 * 1024;
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

/// The records of a batch: encoded as they are appended, then the finished batch.
#[derive(Debug)]
pub enum BatchRecords {
    /// Not sent yet: records are appended to the batch being built.
    Open(BatchBuilder),
    /// Encoded (at its first send); a batch sent again under a new producer id is restamped
    /// from these bytes.
    Encoded {
        /// The batch as last encoded.
        bytes: Bytes,
        /// Its record count.
        count: usize,
    },
}

/// Records of one partition sent together.
#[derive(Debug)]
pub struct ProducerBatch<O> {
    /// Unique over the producer's life.
    pub id: u64,
    /// The records, encoded as they arrive.
    pub records: BatchRecords,
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
    fn new(id: u64, now: Instant, capacity: usize) -> Self {
        Self {
            id,
            records: BatchRecords::Open(BatchBuilder::with_capacity(capacity)),
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

    fn push(&mut self, owner: &O, record: &ProducerRecord, size: usize) {
        let BatchRecords::Open(builder) = &mut self.records else {
            panic!("records are appended to open batches only (append checks the state)");
        };
        builder.push(record);
        match self.owners.last_mut() {
            Some((last, count)) if last == owner => *count += 1,
            _ => self.owners.push((owner.clone(), 1)),
        }
        self.size += size;
    }

    /// Number of records.
    pub fn record_count(&self) -> usize {
        match &self.records {
            BatchRecords::Open(builder) => builder.record_count(),
            BatchRecords::Encoded { count, .. } => *count,
        }
    }

    /// Whether an unsent batch may be sent at `now`.
    pub fn is_ready(&self, now: Instant, batch_size: usize, linger: Duration) -> bool {
        self.closed || self.flush || self.size >= batch_size || now - self.created_at >= linger
    }

    /// Drops the sequence and encoding so the batch is sent again as new (under a new
    /// producer id: its bytes are restamped then, see [`BatchRecords::Encoded`]).
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
    /// Appends (encodes) a record to the open batch, or to a new batch when there is none or
    /// the record would overflow `batch_size` (a record larger than `batch_size` gets a batch
    /// of its own). Returns whether a new batch was started. (The producer appends with
    /// [`append_sized`](Self::append_sized); tests build queues with this.)
    #[cfg(test)]
    pub fn append(
        &mut self,
        owner: &O,
        record: ProducerRecord,
        batch_size: usize,
        next_id: &mut u64,
        now: Instant,
    ) -> bool {
        let size = record_size_bound(&record);
        self.append_sized(owner, &record, size, batch_size, next_id, now)
    }

    /// [`append`](Self::append) of a record whose [`record_size_bound`] is `size` (known by
    /// the caller already).
    pub fn append_sized(
        &mut self,
        owner: &O,
        record: &ProducerRecord,
        size: usize,
        batch_size: usize,
        next_id: &mut u64,
        now: Instant,
    ) -> bool {
        debug_assert_eq!(
            size,
            record_size_bound(record),
            "size is the record's bound"
        );
        let fits = self.batches.back().is_some_and(|open| {
            open.state == BatchState::Unsent
                && !open.closed
                && matches!(open.records, BatchRecords::Open(_))
                && (open.record_count() == 0 || open.size + size <= batch_size)
        });
        let mut started = false;
        if !fits {
            if let Some(open) = self.batches.back_mut() {
                open.closed = true;
            }
            *next_id += 1;
            // Room for the header and this record, up to 64 KiB ahead; the buffer doubles
            // beyond that.
            let capacity = BATCH_CAPACITY.min(batch_size).max(size) + BATCH_HEADER_LEN;
            self.batches
                .push_back(ProducerBatch::new(*next_id, now, capacity));
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
