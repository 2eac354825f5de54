//! Accepting records: [`Producer::send_batch`] validates a sink batch as a whole, picks each
//! record's partition (explicit, keyed or sticky) and appends it to its partition's queue.

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

use super::accumulator::BatchState;
use super::{BATCH_HEADER_LEN, Producer, ProducerError, SendError, record_size_bound};
use crate::partitioner::default_partition;
use crate::record::{ProducerRecord, TopicPartition};
use crate::time::Instant;

impl<O: Clone + Eq + Hash + Debug> Producer<O> {
    /// Appends a sink's whole batch for `owner`. Either every record is accepted or none is
    /// (they come back in the error). Returns the number of records accepted.
    pub fn send_batch(
        &mut self,
        owner: O,
        records: Vec<ProducerRecord>,
        now: Instant,
    ) -> Result<usize, SendError> {
        let now = self.observe(now);
        match self.check_batch(&records) {
            Ok((bytes, keyed)) => {
                let count = records.len();
                let single_topic = records.first().is_some_and(|first| {
                    records.iter().all(|r| Arc::ptr_eq(&r.topic, &first.topic))
                });
                if single_topic && keyed.iter().all(Option::is_some) {
                    self.append_by_partition(&owner, &records, &keyed, now);
                    self.ledger.accept(owner, count, bytes);
                    if count > 0 {
                        self.open_transaction();
                    }
                    return Ok(count);
                }
                for (record, partition) in records.into_iter().zip(keyed) {
                    let size = record_size_bound(&record);
                    let partition = match partition {
                        Some(partition) => partition,
                        None => self.sticky_partition(&record.topic, size),
                    };
                    let tp = TopicPartition::new(record.topic.clone(), partition);
                    self.partitions.entry(tp).or_default().append_sized(
                        &owner,
                        &record,
                        size,
                        self.config.batch_size,
                        &mut self.next_batch_id,
                        now,
                    );
                }
                self.ledger.accept(owner, count, bytes);
                if count > 0 {
                    self.open_transaction();
                }
                Ok(count)
            }
            Err(error) => Err(SendError { error, records }),
        }
    }

    /// Appends `records`, all of one topic (one `Arc`) and each with its partition in
    /// `partitions`, a partition at a time: one queue lookup per partition instead of one per
    /// record. Records of one partition keep their order.
    fn append_by_partition(
        &mut self,
        owner: &O,
        records: &[ProducerRecord],
        partitions: &[Option<i32>],
        now: Instant,
    ) {
        let Some(first) = records.first() else {
            return;
        };
        let order = by_partition(partitions);
        let mut rest = &order[..];
        while let Some(&(partition, _)) = rest.first() {
            let run = rest.partition_point(|&(p, _)| p == partition);
            let queue = self
                .partitions
                .entry(TopicPartition::new(first.topic.clone(), partition))
                .or_default();
            for &(_, index) in &rest[..run] {
                let record = &records[index];
                queue.append_sized(
                    owner,
                    record,
                    record_size_bound(record),
                    self.config.batch_size,
                    &mut self.next_batch_id,
                    now,
                );
            }
            rest = &rest[run..];
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
        self.check_transaction_accepts_records()?;
        let mut bytes = 0;
        let mut partitions = Vec::with_capacity(records.len());
        // A sink's records share its topic's `Arc`: look its partition count up once.
        let mut counted: Option<(&Arc<str>, Option<i32>)> = None;
        for record in records {
            let size = record_size_bound(record);
            if size + BATCH_HEADER_LEN > self.config.max_request_size {
                return Err(ProducerError::RecordTooLarge {
                    size,
                    max: self.config.max_request_size,
                });
            }
            bytes += size;
            let count = match counted {
                Some((topic, count)) if Arc::ptr_eq(topic, &record.topic) => count,
                _ => {
                    let count = self.partition_counts.get(&record.topic).copied();
                    counted = Some((&record.topic, count));
                    count
                }
            };
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
        let buffered = self.ledger.buffered_bytes();
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
}

/// Record indices grouped by partition, ascending, each group in record order: a counting
/// sort (partitions are small numbers), falling back to a comparison sort for partitions far
/// above the record count (an explicit partition of a topic whose count is unknown).
fn by_partition(partitions: &[Option<i32>]) -> Vec<(i32, usize)> {
    let partition_of = |p: &Option<i32>| -> i32 {
        p.expect("append_by_partition is called with every partition known")
    };
    let highest = partitions.iter().map(partition_of).max().unwrap_or(0);
    let slots = usize::try_from(highest).map_or(usize::MAX, |h| h + 1);
    if slots > partitions.len().saturating_mul(4).max(64) {
        let mut order: Vec<(i32, usize)> = partitions
            .iter()
            .enumerate()
            .map(|(index, p)| (partition_of(p), index))
            .collect();
        order.sort_unstable();
        return order;
    }
    // Where each partition's group starts.
    let mut starts = vec![0usize; slots + 1];
    for p in partitions {
        starts[partition_of(p) as usize + 1] += 1;
    }
    for slot in 1..starts.len() {
        starts[slot] += starts[slot - 1];
    }
    let mut order = vec![(0, 0); partitions.len()];
    for (index, p) in partitions.iter().enumerate() {
        let partition = partition_of(p);
        let at = &mut starts[partition as usize];
        order[*at] = (partition, index);
        *at += 1;
    }
    order
}

#[cfg(test)]
mod tests {
    use super::by_partition;

    #[test]
    fn records_are_grouped_by_partition_in_record_order() {
        let partitions = [Some(2), Some(0), Some(2), Some(1), Some(0)];
        let expected = vec![(0, 1), (0, 4), (1, 3), (2, 0), (2, 2)];
        assert_eq!(by_partition(&partitions), expected);
        // Partitions far above the record count take the comparison sort, same result.
        let sparse = [Some(1_000_000), Some(3), Some(1_000_000)];
        assert_eq!(
            by_partition(&sparse),
            vec![(3, 1), (1_000_000, 0), (1_000_000, 2)]
        );
    }
}
