//! One partition's log: stored batches with assigned offsets, their encoded bytes for Fetch,
//! the idempotent-producer sequence state, and the partition's side of transactions: open
//! transactions (which hold the last stable offset back), transaction markers (control
//! batches) and the aborted-transaction index that read_committed fetches get.

use std::collections::{BTreeMap, VecDeque};

use bytes::{Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// How many of a producer's most recent batches per partition the broker remembers for
/// duplicate detection (Kafka's `ProducerStateEntry.NUM_BATCHES_TO_RETAIN`).
pub const RETAINED_PRODUCER_BATCHES: usize = 5;

/// "No producer id": a batch written by a non-idempotent producer.
pub const NO_PRODUCER_ID: i64 = -1;

/// A record to append through [`SimCluster::produce_direct`](super::SimCluster::produce_direct).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SimRecord {
    /// The key; `None` for a null key.
    pub key: Option<Bytes>,
    /// The value; `None` for a tombstone.
    pub value: Option<Bytes>,
    /// Headers in order. Stored in an `IndexMap` by the encoder, so a repeated key collapses
    /// to its last value.
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Create time, milliseconds since the epoch.
    pub timestamp: i64,
}

impl SimRecord {
    /// A record with a key, a value, no headers and the given timestamp.
    pub fn new(key: impl Into<Bytes>, value: impl Into<Bytes>, timestamp: i64) -> Self {
        Self {
            key: Some(key.into()),
            value: Some(value.into()),
            headers: Vec::new(),
            timestamp,
        }
    }
}

/// A record as stored in a simulated partition log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// Offset in the partition.
    pub offset: i64,
    /// Create time from the producer, milliseconds since the epoch.
    pub timestamp: i64,
    /// The key.
    pub key: Option<Bytes>,
    /// The value.
    pub value: Option<Bytes>,
    /// Headers in wire order (duplicate keys already collapsed by `kafka-protocol`).
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Producer id, [`NO_PRODUCER_ID`] for a non-idempotent producer.
    pub producer_id: i64,
    /// Producer epoch, -1 for a non-idempotent producer.
    pub producer_epoch: i16,
    /// The record's sequence number (batch base sequence + position), -1 without idempotence.
    pub sequence: i32,
    /// Whether the record was written inside a transaction.
    pub transactional: bool,
}

/// A batch appended to the log, kept with its encoded v2 bytes (offsets assigned).
#[derive(Debug, Clone)]
struct StoredBatch {
    base_offset: i64,
    records: Vec<StoredRecord>,
    encoded: Bytes,
    /// A transaction marker (control batch): never shown as a record.
    control: bool,
}

impl StoredBatch {
    fn next_offset(&self) -> i64 {
        self.base_offset + self.records.len() as i64
    }
}

/// What a producer sent in one batch, already decoded.
#[derive(Debug, Clone)]
pub struct IncomingBatch {
    /// Producer id or [`NO_PRODUCER_ID`].
    pub producer_id: i64,
    /// Producer epoch.
    pub producer_epoch: i16,
    /// Base sequence of the batch.
    pub base_sequence: i32,
    /// Whether the batch belongs to a transaction (attribute bit 4).
    pub transactional: bool,
    /// Codec the batch is stored (and fetched) with.
    pub compression: Compression,
    /// The records, in order.
    pub records: Vec<SimRecord>,
}

/// The result of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Appended; the first record got this offset.
    Appended {
        /// Offset of the first record.
        base_offset: i64,
    },
    /// A retry of a batch still in the producer's recent-batch cache; nothing appended.
    Duplicate {
        /// Offset the batch got when it was first appended.
        base_offset: i64,
    },
    /// Rejected with this Kafka error.
    Rejected(ResponseError),
}

#[derive(Debug, Clone, Copy)]
struct RecentBatch {
    first_sequence: i32,
    last_sequence: i32,
    base_offset: i64,
}

#[derive(Debug, Clone)]
struct ProducerState {
    epoch: i16,
    last_sequence: i32,
    recent: VecDeque<RecentBatch>,
}

/// Kafka's sequence arithmetic: sequences wrap from `i32::MAX` to 0.
fn add_sequence(base: i32, increment: i32) -> i32 {
    if base > i32::MAX - increment {
        increment - (i32::MAX - base) - 1
    } else {
        base + increment
    }
}

/// A transaction that ended with an abort marker: its records are hidden from read_committed
/// consumers, which learn about it from the Fetch response's aborted-transaction list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    /// The producer that wrote it.
    pub producer_id: i64,
    /// Offset of its first record in this partition.
    pub first_offset: i64,
    /// Offset of its abort marker.
    pub marker_offset: i64,
}

/// The control record key type of a transaction marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// ABORT (control type 0).
    Abort,
    /// COMMIT (control type 1).
    Commit,
}

/// A partition of a simulated topic.
#[derive(Debug)]
pub struct PartitionLog {
    batches: Vec<StoredBatch>,
    producers: BTreeMap<i64, ProducerState>,
    /// First offset of each producer's open transaction in this partition.
    open_txns: BTreeMap<i64, i64>,
    /// Aborted transactions in offset order (of their markers).
    aborted: Vec<AbortedTxn>,
    /// Broker currently leading the partition.
    pub leader: i32,
    /// Leader epoch, bumped on every leader change.
    pub leader_epoch: i32,
}

impl PartitionLog {
    /// An empty partition led by `leader`.
    pub fn new(leader: i32) -> Self {
        Self {
            batches: Vec::new(),
            producers: BTreeMap::new(),
            open_txns: BTreeMap::new(),
            aborted: Vec::new(),
            leader,
            leader_epoch: 0,
        }
    }

    /// First offset of the log (always 0: the simulator never deletes records).
    pub fn log_start_offset(&self) -> i64 {
        0
    }

    /// The high watermark: one past the last record (replication is instantaneous).
    pub fn high_watermark(&self) -> i64 {
        self.batches.last().map_or(0, StoredBatch::next_offset)
    }

    /// The last stable offset: the first offset of the oldest open transaction, else the high
    /// watermark. read_committed consumers see nothing at or after it.
    pub fn last_stable_offset(&self) -> i64 {
        self.open_txns
            .values()
            .copied()
            .min()
            .unwrap_or_else(|| self.high_watermark())
    }

    /// All stored records in offset order (transaction markers left out, as consumers never
    /// see them; their offsets are gaps).
    pub fn records(&self) -> impl Iterator<Item = &StoredRecord> {
        self.batches
            .iter()
            .filter(|b| !b.control)
            .flat_map(|b| b.records.iter())
    }

    /// Stored records from `offset` on, in offset order (markers left out).
    pub fn records_from(&self, offset: i64) -> impl Iterator<Item = &StoredRecord> {
        let first = self.batches.partition_point(|b| b.next_offset() <= offset);
        self.batches[first..]
            .iter()
            .filter(|b| !b.control)
            .flat_map(|b| b.records.iter())
            .filter(move |r| r.offset >= offset)
    }

    /// The records a read_committed consumer sees: below the last stable offset, without
    /// markers and without the records of aborted transactions.
    pub fn committed_records(&self) -> impl Iterator<Item = &StoredRecord> {
        let lso = self.last_stable_offset();
        self.records()
            .take_while(move |r| r.offset < lso)
            .filter(|r| !r.transactional || !self.is_aborted(r.producer_id, r.offset))
    }

    /// [`committed_records`](Self::committed_records) from `offset` on.
    pub fn committed_records_from(&self, offset: i64) -> impl Iterator<Item = &StoredRecord> {
        let lso = self.last_stable_offset();
        self.records_from(offset)
            .take_while(move |r| r.offset < lso)
            .filter(|r| !r.transactional || !self.is_aborted(r.producer_id, r.offset))
    }

    fn is_aborted(&self, producer_id: i64, offset: i64) -> bool {
        self.aborted.iter().any(|a| {
            a.producer_id == producer_id && a.first_offset <= offset && offset < a.marker_offset
        })
    }

    /// The aborted transactions a read_committed Fetch from `fetch_offset` must know about:
    /// those not ended before `fetch_offset` that began before `upper` (the end of what the
    /// Fetch returns).
    pub fn aborted_between(&self, fetch_offset: i64, upper: i64) -> Vec<AbortedTxn> {
        self.aborted
            .iter()
            .filter(|a| a.marker_offset >= fetch_offset && a.first_offset < upper)
            .copied()
            .collect()
    }

    /// Ends `producer_id`'s transaction in this partition with a marker (a control batch of one
    /// control record: key version 0 + type, value version 0 + coordinator epoch 0), written
    /// at `producer_epoch` (an epoch above the producer's last one here fences its older
    /// epoch and restarts its sequence). Written even where the transaction wrote nothing, as
    /// Kafka writes markers to every partition added to the transaction. Returns the marker's
    /// offset.
    pub fn write_marker(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        marker: Marker,
        timestamp: i64,
    ) -> Result<i64, ResponseError> {
        let offset = self.high_watermark();
        let control_type: i16 = match marker {
            Marker::Abort => 0,
            Marker::Commit => 1,
        };
        let mut key = Vec::with_capacity(4);
        key.extend_from_slice(&0i16.to_be_bytes());
        key.extend_from_slice(&control_type.to_be_bytes());
        let mut value = Vec::with_capacity(6);
        value.extend_from_slice(&0i16.to_be_bytes());
        value.extend_from_slice(&0i32.to_be_bytes());
        let record = StoredRecord {
            offset,
            timestamp,
            key: Some(Bytes::from(key)),
            value: Some(Bytes::from(value)),
            headers: Vec::new(),
            producer_id,
            producer_epoch,
            sequence: -1,
            transactional: true,
        };
        let encoded = encode_batch(
            std::slice::from_ref(&record),
            self.leader_epoch,
            Compression::None,
            true,
        )
        .map_err(|error| {
            tracing::warn!(%error, "simulated broker cannot encode a transaction marker");
            ResponseError::CorruptMessage
        })?;
        if let Some(first_offset) = self.open_txns.remove(&producer_id)
            && marker == Marker::Abort
        {
            self.aborted.push(AbortedTxn {
                producer_id,
                first_offset,
                marker_offset: offset,
            });
        }
        if let Some(state) = self.producers.get_mut(&producer_id)
            && producer_epoch > state.epoch
        {
            state.epoch = producer_epoch;
            state.last_sequence = -1;
            state.recent.clear();
        }
        self.batches.push(StoredBatch {
            base_offset: offset,
            records: vec![record],
            encoded,
            control: true,
        });
        Ok(offset)
    }

    /// Appends a batch after the idempotence checks.
    pub fn append(&mut self, batch: IncomingBatch) -> AppendOutcome {
        let count = batch.records.len();
        if count == 0 {
            return AppendOutcome::Rejected(ResponseError::InvalidRecord);
        }
        let Ok(count_i32) = i32::try_from(count) else {
            return AppendOutcome::Rejected(ResponseError::InvalidRecord);
        };
        let idempotent = batch.producer_id >= 0;
        if batch.transactional && !idempotent {
            return AppendOutcome::Rejected(ResponseError::InvalidRecord);
        }
        if idempotent {
            if batch.base_sequence < 0 {
                return AppendOutcome::Rejected(ResponseError::InvalidRecord);
            }
            let last_sequence = add_sequence(batch.base_sequence, count_i32 - 1);
            if let Some(outcome) = self.check_sequence(&batch, last_sequence) {
                return outcome;
            }
        }
        let base_offset = self.high_watermark();
        let stored: Vec<StoredRecord> = batch
            .records
            .iter()
            .enumerate()
            .map(|(i, r)| StoredRecord {
                offset: base_offset + i as i64,
                timestamp: r.timestamp,
                key: r.key.clone(),
                value: r.value.clone(),
                headers: collapse_headers(&r.headers),
                producer_id: batch.producer_id,
                producer_epoch: if idempotent { batch.producer_epoch } else { -1 },
                sequence: if idempotent {
                    add_sequence(batch.base_sequence, i as i32)
                } else {
                    -1
                },
                transactional: batch.transactional,
            })
            .collect();
        let encoded = match encode_batch(&stored, self.leader_epoch, batch.compression, false) {
            Ok(encoded) => encoded,
            Err(error) => {
                tracing::warn!(%error, "simulated broker cannot encode a batch");
                return AppendOutcome::Rejected(ResponseError::CorruptMessage);
            }
        };
        if idempotent {
            let last_sequence = add_sequence(batch.base_sequence, count_i32 - 1);
            let state = self
                .producers
                .entry(batch.producer_id)
                .or_insert(ProducerState {
                    epoch: batch.producer_epoch,
                    last_sequence: -1,
                    recent: VecDeque::new(),
                });
            state.epoch = batch.producer_epoch;
            state.last_sequence = last_sequence;
            state.recent.push_back(RecentBatch {
                first_sequence: batch.base_sequence,
                last_sequence,
                base_offset,
            });
            while state.recent.len() > RETAINED_PRODUCER_BATCHES {
                state.recent.pop_front();
            }
        }
        if batch.transactional {
            self.open_txns
                .entry(batch.producer_id)
                .or_insert(base_offset);
        }
        self.batches.push(StoredBatch {
            base_offset,
            records: stored,
            encoded,
            control: false,
        });
        AppendOutcome::Appended { base_offset }
    }

    /// `Some(outcome)` when the batch must not be appended.
    fn check_sequence(
        &mut self,
        batch: &IncomingBatch,
        last_sequence: i32,
    ) -> Option<AppendOutcome> {
        let Some(state) = self.producers.get(&batch.producer_id) else {
            // No state for this producer on this partition: it must start at sequence 0.
            return (batch.base_sequence != 0).then_some(AppendOutcome::Rejected(
                ResponseError::OutOfOrderSequenceNumber,
            ));
        };
        if batch.producer_epoch < state.epoch {
            return Some(AppendOutcome::Rejected(ResponseError::InvalidProducerEpoch));
        }
        if batch.producer_epoch > state.epoch {
            // A bumped epoch restarts the sequence at 0.
            if batch.base_sequence != 0 {
                return Some(AppendOutcome::Rejected(
                    ResponseError::OutOfOrderSequenceNumber,
                ));
            }
            self.producers.remove(&batch.producer_id);
            return None;
        }
        if let Some(recent) = state
            .recent
            .iter()
            .find(|r| r.first_sequence == batch.base_sequence && r.last_sequence == last_sequence)
        {
            return Some(AppendOutcome::Duplicate {
                base_offset: recent.base_offset,
            });
        }
        if batch.base_sequence != add_sequence(state.last_sequence, 1) {
            return Some(AppendOutcome::Rejected(
                ResponseError::OutOfOrderSequenceNumber,
            ));
        }
        None
    }

    /// The bytes a Fetch at `offset` returns with at most `limit` bytes: whole batches from the
    /// one containing `offset`, then the first bytes of the next batch if it does not fit
    /// (a truncated trailing batch, as brokers send). If `whole_first_batch`, the first batch is
    /// returned whole even when larger than `limit` (KIP-74).
    ///
    /// The read stops before the first batch at or after `end` (the high watermark, or the
    /// last stable offset for read_committed: a transaction's batches start at or after its
    /// first offset, so no batch straddles it).
    pub fn read(&self, offset: i64, limit: usize, whole_first_batch: bool, end: i64) -> Bytes {
        let start = self.batches.partition_point(|b| b.next_offset() <= offset);
        let mut out = BytesMut::new();
        for (i, batch) in self.batches.iter().enumerate().skip(start) {
            if batch.base_offset >= end {
                break;
            }
            let remaining = limit.saturating_sub(out.len());
            if batch.encoded.len() <= remaining || (i == start && whole_first_batch) {
                out.extend_from_slice(&batch.encoded);
            } else {
                out.extend_from_slice(batch.encoded.get(..remaining).unwrap_or_default());
                break;
            }
        }
        out.freeze()
    }

    /// The offset of the first record with a timestamp at or after `timestamp`, with that
    /// record's timestamp; `None` if there is none.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Option<(i64, i64)> {
        self.records()
            .find(|r| r.timestamp >= timestamp)
            .map(|r| (r.offset, r.timestamp))
    }

    /// The offset and timestamp of the record with the largest timestamp (the first of equals).
    pub fn max_timestamp(&self) -> Option<(i64, i64)> {
        self.records().fold(None, |best, r| match best {
            Some((_, ts)) if ts >= r.timestamp => best,
            _ => Some((r.offset, r.timestamp)),
        })
    }
}

fn collapse_headers(headers: &[(String, Option<Bytes>)]) -> Vec<(String, Option<Bytes>)> {
    let mut map: IndexMap<String, Option<Bytes>> = IndexMap::new();
    for (k, v) in headers {
        map.insert(k.clone(), v.clone());
    }
    map.into_iter().collect()
}

/// Encodes stored records as one v2 record batch.
fn encode_batch(
    records: &[StoredRecord],
    leader_epoch: i32,
    compression: Compression,
    control: bool,
) -> Result<Bytes, String> {
    let Some(first) = records.first() else {
        return Ok(Bytes::new());
    };
    let wire: Vec<Record> = records
        .iter()
        .map(|r| Record {
            transactional: r.transactional,
            control,
            delete_horizon: false,
            partition_leader_epoch: leader_epoch,
            producer_id: r.producer_id,
            producer_epoch: r.producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: r.offset,
            // Non-idempotent batches: base sequence -1; the encoder derives the base from the
            // first record, and needs `offset - sequence` constant within the batch.
            sequence: if r.producer_id >= 0 && !control {
                r.sequence
            } else {
                (-1i32).wrapping_add((r.offset - first.offset) as i32)
            },
            timestamp: r.timestamp,
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| (StrBytes::from_string(k.clone()), v.clone()))
                .collect(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        wire.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .map_err(|e| format!("{e:#}"))?;
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(pid: i64, epoch: i16, seq: i32, n: usize) -> IncomingBatch {
        IncomingBatch {
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            transactional: false,
            compression: Compression::None,
            records: (0..n)
                .map(|i| SimRecord::new(format!("k{i}"), format!("v{i}"), 1000 + i as i64))
                .collect(),
        }
    }

    #[test]
    fn sequences_wrap_like_kafka() {
        assert_eq!(add_sequence(i32::MAX, 1), 0);
        assert_eq!(add_sequence(i32::MAX - 1, 3), 1);
        assert_eq!(add_sequence(5, 2), 7);
    }

    #[test]
    fn idempotent_appends_detect_duplicates_gaps_and_fencing() {
        let mut log = PartitionLog::new(0);
        assert_eq!(
            log.append(batch(7, 0, 1, 1)),
            AppendOutcome::Rejected(ResponseError::OutOfOrderSequenceNumber)
        );
        assert_eq!(
            log.append(batch(7, 0, 0, 2)),
            AppendOutcome::Appended { base_offset: 0 }
        );
        assert_eq!(
            log.append(batch(7, 0, 2, 3)),
            AppendOutcome::Appended { base_offset: 2 }
        );
        assert_eq!(
            log.append(batch(7, 0, 0, 2)),
            AppendOutcome::Duplicate { base_offset: 0 }
        );
        assert_eq!(
            log.append(batch(7, 0, 6, 1)),
            AppendOutcome::Rejected(ResponseError::OutOfOrderSequenceNumber)
        );
        assert_eq!(
            log.append(batch(7, 1, 0, 1)),
            AppendOutcome::Appended { base_offset: 5 }
        );
        assert_eq!(
            log.append(batch(7, 0, 5, 1)),
            AppendOutcome::Rejected(ResponseError::InvalidProducerEpoch)
        );
        assert_eq!(log.high_watermark(), 6);
    }

    #[test]
    fn read_truncates_the_trailing_batch_but_keeps_a_large_first_batch_whole() {
        let mut log = PartitionLog::new(0);
        for _ in 0..3 {
            log.append(batch(NO_PRODUCER_ID, -1, -1, 4));
        }
        let whole = log.read(0, usize::MAX, true, i64::MAX);
        let one = log.read(0, 1, true, i64::MAX);
        assert!(one.len() < whole.len() / 2);
        assert_eq!(&whole[..one.len()], &one[..]);
        let cut = log.read(0, one.len() + 10, true, i64::MAX);
        assert_eq!(cut.len(), one.len() + 10);
        assert_eq!(log.read(0, 1, false, i64::MAX).len(), 1);
        // A fetch in the middle of the second batch starts at that batch.
        assert_eq!(
            log.read(5, usize::MAX, true, i64::MAX),
            whole.slice(one.len()..)
        );
        assert!(log.read(12, usize::MAX, true, i64::MAX).is_empty());
    }
}
