//! The queue of consumed, not yet processed records of one input partition.

use std::collections::VecDeque;

use crate::record::{RawRecord, TopicPartition};

/// What a task holds of one input partition: its queued records and its progress.
pub(crate) struct InputQueue {
    pub(crate) tp: TopicPartition,
    /// Local index of the source node reading this partition's topic.
    pub(crate) source: usize,
    /// Records stay queued until the batch holding them has succeeded.
    pub(crate) records: VecDeque<RawRecord>,
    /// [`RawRecord::payload_len`] of the queued records, summed.
    pub(crate) bytes: usize,
    /// Offset of the last record enqueued; new records must come after it.
    pub(crate) last_enqueued: Option<i64>,
    /// Last fully processed offset + 1.
    pub(crate) committable: Option<i64>,
}

impl InputQueue {
    pub(crate) fn new(tp: TopicPartition, source: usize) -> Self {
        Self {
            tp,
            source,
            records: VecDeque::new(),
            bytes: 0,
            last_enqueued: None,
            committable: None,
        }
    }

    /// The last offset queued or processed: new records must come after it.
    pub(crate) fn last_offset(&self) -> Option<i64> {
        self.last_enqueued.or(self.committable.map(|c| c - 1))
    }

    pub(crate) fn head_timestamp(&self) -> Option<i64> {
        self.records.front().map(|r| r.timestamp)
    }

    /// Queues `records`, checked by the caller to come after [`InputQueue::last_offset`] and
    /// below `i64::MAX`.
    pub(crate) fn push(&mut self, records: impl IntoIterator<Item = RawRecord>) {
        for record in records {
            self.bytes = self.bytes.saturating_add(record.payload_len());
            self.last_enqueued = Some(record.offset);
            self.records.push_back(record);
        }
    }

    /// Drops the first `n` records, which have been processed (or skipped), and moves the
    /// committable offset past them.
    pub(crate) fn consume(&mut self, n: usize) {
        let bytes = self
            .records
            .iter()
            .take(n)
            .map(RawRecord::payload_len)
            .fold(0, usize::saturating_add);
        self.consume_taken(n, bytes);
    }

    /// [`consume`](Self::consume) of records whose keys and values may have been moved out:
    /// `bytes` is what they counted when queued.
    pub(crate) fn consume_taken(&mut self, n: usize, bytes: usize) {
        self.bytes = self.bytes.saturating_sub(bytes);
        let last = self.records.drain(..n).last().map(|record| record.offset);
        if let Some(last) = last {
            let next = last
                .checked_add(1)
                .expect("queued offsets are below i64::MAX (checked when queued)");
            self.committable = Some(next);
        }
    }
}
