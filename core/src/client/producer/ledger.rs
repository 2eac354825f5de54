//! The [`Ledger`]: per-owner counts of unacknowledged records, the buffered byte total, and the
//! events that settle them.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

use super::accumulator::ProducerBatch;
use super::{DeliveryError, ProducerEvent};
use crate::record::TopicPartition;

/// Acks, failures and buffer accounting.
///
/// Invariants: `buffered_bytes` is the sum of the sizes of the records accepted and not yet
/// settled, and `unacked[owner]` the number of them that `owner` appended (owners with none
/// have no entry). Every settled record produces exactly one [`ProducerEvent::Acked`] or
/// [`ProducerEvent::Failed`] (per consecutive run of one owner in a batch).
#[derive(Debug)]
pub(super) struct Ledger<O> {
    events: VecDeque<ProducerEvent<O>>,
    unacked: HashMap<O, usize>,
    buffered_bytes: usize,
    /// The error of the first failure since [`Ledger::take_failure`] (a transactional producer
    /// fails its transaction on it).
    failure: Option<DeliveryError>,
}

impl<O: Clone + Eq + Hash> Ledger<O> {
    /// Nothing accepted, no event.
    pub(super) fn new() -> Self {
        Self {
            events: VecDeque::new(),
            unacked: HashMap::new(),
            buffered_bytes: 0,
            failure: None,
        }
    }

    /// Counts `count` records of `bytes` bytes (by their size bound) that `owner` appended.
    pub(super) fn accept(&mut self, owner: O, count: usize, bytes: usize) {
        self.buffered_bytes += bytes;
        if count > 0 {
            *self.unacked.entry(owner).or_insert(0) += count;
        }
    }

    /// Records of `owner` neither acknowledged nor failed yet.
    pub(super) fn unacked(&self, owner: &O) -> usize {
        self.unacked.get(owner).copied().unwrap_or(0)
    }

    /// Whether a record of an owner matching `owner` is neither acknowledged nor failed yet.
    pub(super) fn any_unacked(&self, owner: impl Fn(&O) -> bool) -> bool {
        self.unacked.keys().any(owner)
    }

    /// Bytes of records neither acknowledged nor failed yet.
    pub(super) fn buffered_bytes(&self) -> usize {
        self.buffered_bytes
    }

    /// Queues an event that settles nothing (a metadata need).
    pub(super) fn push_event(&mut self, event: ProducerEvent<O>) {
        self.events.push_back(event);
    }

    /// The oldest event not taken yet.
    pub(super) fn poll_event(&mut self) -> Option<ProducerEvent<O>> {
        self.events.pop_front()
    }

    fn settle(&mut self, batch: &ProducerBatch<O>) {
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

    /// `batch` was written at `base_offset` (when the broker said): one
    /// [`ProducerEvent::Acked`] per owner run, with offsets following on.
    pub(super) fn ack(
        &mut self,
        tp: &TopicPartition,
        batch: ProducerBatch<O>,
        base_offset: Option<i64>,
    ) {
        self.settle(&batch);
        let mut offset = base_offset;
        for (owner, count) in batch.owners {
            self.events.push_back(ProducerEvent::Acked {
                owner,
                topic_partition: tp.clone(),
                base_offset: offset,
                count,
            });
            // The base offset is the broker's: checked, an overflow leaves the rest unknown.
            offset = offset.and_then(|o| o.checked_add(i64::try_from(count).ok()?));
        }
    }

    /// The error of the first batch failed since the last call, if any.
    pub(super) fn take_failure(&mut self) -> Option<DeliveryError> {
        self.failure.take()
    }

    /// `batch` will not be delivered: one [`ProducerEvent::Failed`] per owner run.
    pub(super) fn fail(
        &mut self,
        tp: &TopicPartition,
        batch: ProducerBatch<O>,
        error: DeliveryError,
    ) {
        tracing::warn!(partition = %tp, records = batch.record_count(), %error, "produce failed");
        if self.failure.is_none() {
            self.failure = Some(error.clone());
        }
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

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::super::accumulator::PartitionQueue;
    use super::super::record_size_bound;
    use super::*;
    use crate::record::{Headers, ProducerRecord};
    use crate::time::{Duration, Instant};

    fn record(value: &str) -> ProducerRecord {
        ProducerRecord {
            topic: "out".into(),
            partition: Some(0),
            key: None,
            value: Some(Bytes::copy_from_slice(value.as_bytes())),
            timestamp: 0,
            headers: Headers::new(),
        }
    }

    /// One batch holding `owners`' records in that order, accepted into `ledger`.
    fn accepted_batch(ledger: &mut Ledger<u32>, owners: &[u32]) -> ProducerBatch<u32> {
        let mut queue = PartitionQueue::default();
        let mut next_id = 0;
        for (i, owner) in owners.iter().enumerate() {
            let record = record(&format!("v{i}"));
            ledger.accept(*owner, 1, record_size_bound(&record));
            queue.append(owner, record, usize::MAX, &mut next_id, Instant::EPOCH);
        }
        let batch = queue.batches.pop_front().expect("one batch");
        assert!(queue.batches.is_empty());
        batch
    }

    fn tp() -> TopicPartition {
        TopicPartition::new("out", 0)
    }

    #[test]
    fn an_ack_settles_every_owner_with_following_offsets() {
        let mut ledger = Ledger::new();
        let batch = accepted_batch(&mut ledger, &[1, 1, 2]);
        assert_eq!(ledger.unacked(&1), 2);
        assert_eq!(ledger.unacked(&2), 1);
        assert_eq!(ledger.buffered_bytes(), batch.size);
        ledger.ack(&tp(), batch, Some(40));
        assert_eq!((ledger.unacked(&1), ledger.unacked(&2)), (0, 0));
        assert_eq!(ledger.buffered_bytes(), 0);
        assert!(ledger.unacked.is_empty(), "settled owners leave no entry");
        assert_eq!(
            ledger.poll_event(),
            Some(ProducerEvent::Acked {
                owner: 1,
                topic_partition: tp(),
                base_offset: Some(40),
                count: 2,
            })
        );
        assert_eq!(
            ledger.poll_event(),
            Some(ProducerEvent::Acked {
                owner: 2,
                topic_partition: tp(),
                base_offset: Some(42),
                count: 1,
            })
        );
        assert_eq!(ledger.poll_event(), None);
    }

    #[test]
    fn a_failure_settles_only_its_batch() {
        let mut ledger = Ledger::new();
        let first = accepted_batch(&mut ledger, &[1]);
        let second = accepted_batch(&mut ledger, &[1, 2]);
        let error = DeliveryError::DeliveryTimeout {
            timeout: Duration::from_millis(5),
        };
        ledger.fail(&tp(), first, error.clone());
        assert_eq!((ledger.unacked(&1), ledger.unacked(&2)), (1, 1));
        assert_eq!(ledger.buffered_bytes(), second.size);
        assert_eq!(
            ledger.poll_event(),
            Some(ProducerEvent::Failed {
                owner: 1,
                topic_partition: tp(),
                count: 1,
                error,
            })
        );
        ledger.ack(&tp(), second, None);
        assert_eq!(ledger.buffered_bytes(), 0);
        assert!(matches!(
            ledger.poll_event(),
            Some(ProducerEvent::Acked {
                owner: 1,
                base_offset: None,
                ..
            })
        ));
    }

    #[test]
    fn any_unacked_asks_about_the_owners_with_records_left() {
        let mut ledger = Ledger::new();
        let first = accepted_batch(&mut ledger, &[1, 2]);
        let second = accepted_batch(&mut ledger, &[3]);
        assert!(ledger.any_unacked(|owner| *owner <= 2));
        ledger.ack(&tp(), first, Some(0));
        assert!(
            !ledger.any_unacked(|owner| *owner <= 2),
            "1 and 2 are acknowledged"
        );
        assert!(ledger.any_unacked(|owner| *owner <= 3));
        ledger.fail(
            &tp(),
            second,
            DeliveryError::DeliveryTimeout {
                timeout: Duration::from_millis(5),
            },
        );
        assert!(!ledger.any_unacked(|_| true), "a failure settles too");
    }

    #[test]
    fn accepting_no_records_adds_no_owner() {
        let mut ledger: Ledger<u32> = Ledger::new();
        ledger.accept(3, 0, 0);
        assert!(ledger.unacked.is_empty());
        ledger.push_event(ProducerEvent::RefreshMetadata { topic: "t".into() });
        assert_eq!(
            ledger.poll_event(),
            Some(ProducerEvent::RefreshMetadata { topic: "t".into() })
        );
    }
}
