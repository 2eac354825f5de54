//! read_committed filtering: which batches belong to aborted transactions.
//!
//! The standard algorithm (the one the Java consumer uses): a Fetch response lists, per
//! partition, the aborted transactions overlapping the returned range as (producer id, first
//! offset). Walking the batches in offset order, every aborted transaction whose first offset is
//! at or before the current batch's last offset becomes *active* for its producer. A
//! transactional data batch of a producer with an active aborted transaction is dropped. The
//! producer's ABORT control marker ends that transaction (the producer is no longer active);
//! COMMIT markers change nothing. Control batches themselves are never returned.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};

use super::AbortedTransaction;

/// Tracks the aborted transactions of one partition's fetched range.
#[derive(Debug)]
pub(super) struct AbortedTransactionFilter {
    /// Not yet reached, smallest first offset first.
    pending: BinaryHeap<Reverse<(i64, i64)>>,
    /// Producers whose aborted transaction has started and not yet seen its ABORT marker.
    active: HashSet<i64>,
}

impl AbortedTransactionFilter {
    pub fn new(aborted: &[AbortedTransaction]) -> Self {
        Self {
            pending: aborted
                .iter()
                .map(|txn| Reverse((txn.first_offset, txn.producer_id)))
                .collect(),
            active: HashSet::new(),
        }
    }

    /// Activates the aborted transactions that start at or before `last_offset`.
    pub fn advance_to(&mut self, last_offset: i64) {
        while let Some(&Reverse((first_offset, producer_id))) = self.pending.peek() {
            if first_offset > last_offset {
                break;
            }
            self.pending.pop();
            self.active.insert(producer_id);
        }
    }

    /// Whether a transactional data batch of `producer_id` belongs to an aborted transaction.
    pub fn is_aborted(&self, producer_id: i64) -> bool {
        self.active.contains(&producer_id)
    }

    /// An ABORT marker of `producer_id` closes its aborted transaction.
    pub fn end_transaction(&mut self, producer_id: i64) {
        self.active.remove(&producer_id);
    }
}
