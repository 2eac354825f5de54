//! The transactional producer's bookkeeping: its coordinator, the phase of the current
//! transaction, the partitions added to it and the one transactional request in flight.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::protocol::StrBytes;

#[cfg(doc)]
use super::Producer;
use super::{ProducerIdentity, TransactionError};
use crate::client::BrokerId;
use crate::record::TopicPartition;
use crate::time::Instant;

/// The consumer group whose offsets a transaction commits (Java's `ConsumerGroupMetadata`):
/// TxnOffsetCommit carries the generation and member id so that the group coordinator refuses
/// the offsets of a member that is no longer in the group (KIP-447).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMetadata {
    /// The group id.
    pub group_id: String,
    /// The generation the member joined.
    pub generation_id: i32,
    /// The member id the coordinator gave the member.
    pub member_id: String,
    /// The static member id (`group.instance.id`), if any.
    pub group_instance_id: Option<String>,
}

/// Where a transactional producer is, as [`Producer::transaction_state`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionState {
    /// Finding the transaction coordinator or waiting for InitProducerId (at the start, or
    /// after an abort that needed a new producer epoch). Records are taken meanwhile.
    Initializing,
    /// No transaction open: the next [`Producer::send_batch`] opens one.
    Ready,
    /// A transaction is open.
    InTransaction,
    /// [`Producer::commit_transaction`] was called; the commit is in progress.
    Committing,
    /// [`Producer::abort_transaction`] was called; the abort is in progress.
    Aborting,
    /// The transaction failed: only [`Producer::abort_transaction`] is accepted.
    AbortableError,
    /// The producer is unusable (fenced, not authorized, transactions unsupported).
    Fatal,
}

/// Where the transaction coordinator is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CoordinatorState {
    /// To be found (again) at `retry_at`.
    Unknown { retry_at: Instant },
    /// FindCoordinator in flight.
    Finding,
    /// This broker.
    Known(BrokerId),
}

/// The step a commit is at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CommitStep {
    /// Waiting until every record is acknowledged.
    Flush,
    /// AddOffsetsToTxn due.
    AddOffsets,
    /// TxnOffsetCommit due (for the offsets not committed yet).
    CommitOffsets,
    /// EndTxn(commit) due; once attempted, the transaction can no longer be aborted.
    EndTxn,
}

/// A commit in progress.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Commit {
    /// Every offset of the transaction, reported with the commit.
    pub offsets: BTreeMap<TopicPartition, i64>,
    /// Offsets TxnOffsetCommit has not stored yet.
    pub uncommitted: BTreeMap<TopicPartition, i64>,
    /// The group they belong to.
    pub group: GroupMetadata,
    /// Where the commit is.
    pub step: CommitStep,
}

/// The phase of the current transaction.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Phase {
    /// None open.
    Idle,
    /// Records were appended.
    Open,
    /// Being committed.
    Committing(Commit),
    /// Being aborted: unsent batches are failed, the ones in flight answered, then EndTxn.
    Aborting,
    /// Failed; waiting for `abort_transaction`.
    Failed(TransactionError),
}

/// The transactional request in flight (at most one at a time, as in Java).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum TxnRequest {
    /// InitProducerId with the transactional id.
    InitProducerId,
    /// AddPartitionsToTxn of these partitions.
    AddPartitions(Vec<TopicPartition>),
    /// AddOffsetsToTxn for this group.
    AddOffsets {
        /// The group id.
        group_id: String,
    },
    /// TxnOffsetCommit of these offsets.
    CommitOffsets(Vec<TopicPartition>),
    /// EndTxn.
    EndTxn {
        /// Commit (or abort).
        commit: bool,
    },
}

/// The transactional part of a producer.
#[derive(Debug)]
pub(super) struct Transactions {
    /// The transactional id.
    pub id: StrBytes,
    /// The transaction coordinator.
    pub coordinator: CoordinatorState,
    /// Phase of the current transaction.
    pub phase: Phase,
    /// The transactional request in flight.
    pub request: Option<TxnRequest>,
    /// The request in flight was sent by the producer's fenced incarnation (see
    /// [`Producer::restart_after_fencing`]): its answer is dropped, and nothing is sent
    /// before it came (or failed).
    pub stale_request: bool,
    /// No transactional request before this time (backoff after a retriable error).
    pub retry_at: Instant,
    /// Partitions the coordinator confirmed in the current transaction.
    pub added: BTreeSet<TopicPartition>,
    /// Partitions of an AddPartitionsToTxn that got no answer: maybe in the transaction.
    pub unconfirmed: BTreeSet<TopicPartition>,
    /// The group of an AddOffsetsToTxn that got no answer: maybe in the transaction.
    pub unconfirmed_offsets: Option<String>,
    /// The coordinator holds an open transaction of ours (a partition or the offsets were
    /// added): the transaction ends with EndTxn, not silently.
    pub started: bool,
    /// When the first request that may have opened the current transaction at the
    /// coordinator (AddPartitionsToTxn or AddOffsetsToTxn) was sent: the coordinator's own
    /// clock for the transaction timeout starts no earlier.
    pub began: Option<Instant>,
    /// A batch with sequence numbers was dropped unacknowledged: after the abort, the
    /// producer gets a new epoch (sequences restart).
    pub new_epoch_needed: bool,
    /// The identity a new epoch is asked for (InitProducerId v3+ names it, KIP-360).
    pub previous_identity: Option<ProducerIdentity>,
    /// The API versions were checked for transactions.
    pub versions_checked: bool,
    /// A fatal error seen while handling a Produce answer, applied after it.
    pub fatal: Option<TransactionError>,
}

impl Transactions {
    /// A transactional producer that has yet to find its coordinator.
    pub fn new(id: StrBytes) -> Self {
        Self {
            id,
            coordinator: CoordinatorState::Unknown {
                retry_at: Instant::MIN,
            },
            phase: Phase::Idle,
            request: None,
            stale_request: false,
            retry_at: Instant::MIN,
            added: BTreeSet::new(),
            unconfirmed: BTreeSet::new(),
            unconfirmed_offsets: None,
            started: false,
            began: None,
            new_epoch_needed: false,
            previous_identity: None,
            versions_checked: false,
            fatal: None,
        }
    }

    /// Whether a batch of `tp` may be sent now: only in an open or committing transaction,
    /// and a new batch only to a partition the coordinator confirmed.
    pub fn may_send(&self, tp: &TopicPartition, resend: bool) -> bool {
        match &self.phase {
            Phase::Open | Phase::Committing(_) => resend || self.added.contains(tp),
            Phase::Idle | Phase::Aborting | Phase::Failed(_) => false,
        }
    }

    /// The transaction ended (committed or aborted): nothing of it remains.
    pub fn end(&mut self) {
        self.phase = Phase::Idle;
        self.added.clear();
        self.unconfirmed.clear();
        self.unconfirmed_offsets = None;
        self.started = false;
        self.began = None;
    }

    /// The coordinator is to be found again at `retry_at`.
    pub fn lose_coordinator(&mut self, retry_at: Instant) {
        if self.coordinator != CoordinatorState::Finding {
            tracing::debug!(coordinator = ?self.coordinator, "transaction coordinator lost");
        }
        self.coordinator = CoordinatorState::Unknown { retry_at };
    }

    /// The coordinator's id, when known.
    pub fn coordinator(&self) -> Option<BrokerId> {
        match self.coordinator {
            CoordinatorState::Known(id) => Some(id),
            _ => None,
        }
    }

    /// The times at which something transactional may become due (some may have passed).
    pub fn deadlines(&self) -> impl Iterator<Item = Instant> {
        let coordinator = match self.coordinator {
            CoordinatorState::Unknown { retry_at } => Some(retry_at),
            _ => None,
        };
        let request = self.request.is_none().then_some(self.retry_at);
        coordinator.into_iter().chain(request)
    }
}
