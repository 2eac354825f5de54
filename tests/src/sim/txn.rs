//! The transaction coordinator's state: one [`Transaction`] per transactional id, as Kafka's
//! `TransactionCoordinator` keeps it in `__transaction_state`, for transaction version 0
//! (KIP-98 with KIP-447's group metadata in TxnOffsetCommit; no KIP-890 epoch bump per
//! transaction).
//!
//! A transaction moves `Empty → Ongoing` on its first AddPartitionsToTxn/AddOffsetsToTxn and
//! ends `CompleteCommit`/`CompleteAbort` at once on EndTxn (markers are written in the same
//! step, so the simulator never answers `CONCURRENT_TRANSACTIONS`). InitProducerId on an open
//! transaction, and the transaction timeout, abort it with the epoch bumped: the producer that
//! owned it is fenced. This module only decides; [`super::txn_handlers`] writes the markers
//! and moves the offsets.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::ResponseError;

use super::group::CommittedOffset;
use super::log::Marker;

/// Kafka's default `transaction.max.timeout.ms`: InitProducerId with a longer transaction
/// timeout gets `INVALID_TRANSACTION_TIMEOUT`.
pub const DEFAULT_MAX_TRANSACTION_TIMEOUT_MS: i32 = 900_000;

/// Where a transactional id's current transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnState {
    /// No transaction since InitProducerId.
    Empty,
    /// Partitions or a group were added; not ended yet.
    Ongoing,
    /// The last transaction committed.
    CompleteCommit,
    /// The last transaction aborted (by EndTxn, fencing or timeout).
    CompleteAbort,
}

/// A (group, topic, partition) whose offset a transaction commits.
pub type GroupPartition = (String, String, i32);

/// One transactional id's producer and transaction.
#[derive(Debug, Clone)]
pub struct Transaction {
    /// The producer id InitProducerId handed out.
    pub producer_id: i64,
    /// Its current epoch; requests with another epoch are fenced.
    pub producer_epoch: i16,
    /// The producer's `transaction.timeout.ms`.
    pub timeout_ms: i32,
    /// Where the current transaction is.
    pub state: TxnState,
    /// When the current transaction began (its first add), in simulated milliseconds.
    pub started: i64,
    /// Partitions added with AddPartitionsToTxn.
    pub partitions: BTreeSet<(String, i32)>,
    /// Groups added with AddOffsetsToTxn.
    pub groups: BTreeSet<String>,
    /// Offsets from TxnOffsetCommit: visible to OffsetFetch only once the transaction commits.
    pub pending_offsets: BTreeMap<GroupPartition, CommittedOffset>,
}

/// What ending a transaction leaves for the cluster to do.
#[derive(Debug, Clone)]
pub struct Ending {
    /// The producer whose markers these are.
    pub producer_id: i64,
    /// The epoch the markers carry (bumped when the coordinator aborts on its own).
    pub producer_epoch: i16,
    /// Commit or abort.
    pub marker: Marker,
    /// Every partition added to the transaction: each gets a marker.
    pub partitions: Vec<(String, i32)>,
    /// Offsets to make visible (empty for an abort).
    pub offsets: Vec<(GroupPartition, CommittedOffset)>,
}

impl Transaction {
    /// A producer fresh from InitProducerId.
    pub fn new(producer_id: i64, timeout_ms: i32) -> Self {
        Self {
            producer_id,
            producer_epoch: 0,
            timeout_ms,
            state: TxnState::Empty,
            started: 0,
            partitions: BTreeSet::new(),
            groups: BTreeSet::new(),
            pending_offsets: BTreeMap::new(),
        }
    }

    /// The coordinator's check of a request's producer id and epoch: another id is
    /// `INVALID_PRODUCER_ID_MAPPING`, another epoch `PRODUCER_FENCED` (Kafka 2.7+, KIP-588).
    pub fn check_producer(&self, producer_id: i64, epoch: i16) -> Result<(), ResponseError> {
        if producer_id != self.producer_id {
            Err(ResponseError::InvalidProducerIdMapping)
        } else if epoch != self.producer_epoch {
            Err(ResponseError::ProducerFenced)
        } else {
            Ok(())
        }
    }

    /// The partition leader's check of a transactional Produce: another id is
    /// `INVALID_PRODUCER_ID_MAPPING`, another epoch `INVALID_PRODUCER_EPOCH` (what a Kafka
    /// partition answers), a partition not added to an ongoing transaction
    /// `INVALID_TXN_STATE` (Kafka's partition verification).
    pub fn check_produce(
        &self,
        producer_id: i64,
        epoch: i16,
        topic: &str,
        partition: i32,
    ) -> Result<(), ResponseError> {
        if producer_id != self.producer_id {
            return Err(ResponseError::InvalidProducerIdMapping);
        }
        if epoch != self.producer_epoch {
            return Err(ResponseError::InvalidProducerEpoch);
        }
        let added = self.partitions.contains(&(topic.to_owned(), partition));
        if self.state != TxnState::Ongoing || !added {
            return Err(ResponseError::InvalidTxnState);
        }
        Ok(())
    }

    /// Starts a transaction if none is ongoing (the first add of a transaction).
    pub fn begin(&mut self, now: i64) {
        if self.state != TxnState::Ongoing {
            self.state = TxnState::Ongoing;
            self.started = now;
            self.partitions.clear();
            self.groups.clear();
            self.pending_offsets.clear();
        }
    }

    /// When the coordinator aborts the ongoing transaction (`None` when none is ongoing).
    pub fn deadline(&self) -> Option<i64> {
        (self.state == TxnState::Ongoing)
            .then(|| self.started.saturating_add(i64::from(self.timeout_ms)))
    }

    /// The answer to an EndTxn of the right producer and epoch: `Ok(Some(ending))` ends the
    /// ongoing transaction; `Ok(None)` is a retry of the one that just ended the same way;
    /// anything else is `INVALID_TXN_STATE`.
    pub fn end_by_client(&mut self, commit: bool) -> Result<Option<Ending>, ResponseError> {
        match (self.state, commit) {
            (TxnState::Ongoing, true) => Ok(Some(self.end(Marker::Commit))),
            (TxnState::Ongoing, false) => Ok(Some(self.end(Marker::Abort))),
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => Ok(None),
            _ => Err(ResponseError::InvalidTxnState),
        }
    }

    /// The coordinator aborts the ongoing transaction by itself (a new InitProducerId or the
    /// timeout): the epoch goes up first, fencing the producer that owned it, and the abort
    /// markers carry the new epoch. `None` when no transaction is ongoing.
    pub fn fence_and_abort(&mut self) -> Option<Ending> {
        if self.state != TxnState::Ongoing {
            return None;
        }
        self.producer_epoch = self.producer_epoch.saturating_add(1);
        Some(self.end(Marker::Abort))
    }

    fn end(&mut self, marker: Marker) -> Ending {
        self.state = match marker {
            Marker::Commit => TxnState::CompleteCommit,
            Marker::Abort => TxnState::CompleteAbort,
        };
        let offsets = std::mem::take(&mut self.pending_offsets);
        self.groups.clear();
        Ending {
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            marker,
            partitions: std::mem::take(&mut self.partitions).into_iter().collect(),
            offsets: match marker {
                Marker::Commit => offsets.into_iter().collect(),
                Marker::Abort => Vec::new(),
            },
        }
    }

    /// Whether the ongoing transaction holds an offset for this group partition.
    pub fn holds_offset(&self, group: &str, topic: &str, partition: i32) -> bool {
        self.state == TxnState::Ongoing
            && self
                .pending_offsets
                .contains_key(&(group.to_owned(), topic.to_owned(), partition))
    }
}

/// A transactional id's producer and transaction as the tests see them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionInfo {
    /// The producer id.
    pub producer_id: i64,
    /// The current epoch.
    pub producer_epoch: i16,
    /// Where its transaction is.
    pub state: TxnState,
    /// Partitions of the ongoing transaction.
    pub partitions: Vec<(String, i32)>,
}

impl From<&Transaction> for TransactionInfo {
    fn from(t: &Transaction) -> Self {
        Self {
            producer_id: t.producer_id,
            producer_epoch: t.producer_epoch,
            state: t.state,
            partitions: t.partitions.iter().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_commits_offsets_only_on_commit_and_retries_are_answered() {
        let mut t = Transaction::new(7, 60_000);
        assert_eq!(
            t.end_by_client(true).err(),
            Some(ResponseError::InvalidTxnState)
        );
        t.begin(100);
        t.partitions.insert(("out".into(), 0));
        t.pending_offsets.insert(
            ("g".into(), "in".into(), 0),
            CommittedOffset {
                offset: 5,
                leader_epoch: -1,
                metadata: None,
            },
        );
        assert_eq!(t.deadline(), Some(60_100));
        let ending = t.end_by_client(true).unwrap().expect("ends");
        assert_eq!(ending.partitions, vec![("out".to_owned(), 0)]);
        assert_eq!(ending.offsets.len(), 1);
        assert_eq!(t.deadline(), None);
        assert!(t.end_by_client(true).unwrap().is_none(), "a retry");
        assert_eq!(
            t.end_by_client(false).err(),
            Some(ResponseError::InvalidTxnState)
        );
    }

    #[test]
    fn fencing_bumps_the_epoch_and_drops_the_offsets() {
        let mut t = Transaction::new(7, 60_000);
        assert!(t.fence_and_abort().is_none());
        t.begin(0);
        t.pending_offsets.insert(
            ("g".into(), "in".into(), 0),
            CommittedOffset {
                offset: 5,
                leader_epoch: -1,
                metadata: None,
            },
        );
        let ending = t.fence_and_abort().expect("aborted");
        assert_eq!((ending.producer_epoch, ending.marker), (1, Marker::Abort));
        assert!(ending.offsets.is_empty());
        assert_eq!(t.check_producer(7, 0), Err(ResponseError::ProducerFenced));
        assert_eq!(
            t.check_producer(8, 1),
            Err(ResponseError::InvalidProducerIdMapping)
        );
        assert_eq!(t.check_producer(7, 1), Ok(()));
    }
}
