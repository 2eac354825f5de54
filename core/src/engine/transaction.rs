//! Exactly-once (Kafka's exactly-once v2): a commit interval's output, changelog writes and
//! input offsets are one transaction of the engine's transactional producer, committed with
//! the group's generation and member id (TxnOffsetCommit), so a member that lost its tasks
//! cannot commit; the stores commit (with their changelog checkpoints) only once the
//! transaction did. On an abort the tasks' uncommitted store writes are discarded and the
//! tasks start again from the committed offsets and checkpoints.

use std::collections::BTreeMap;

use super::commit::{CommitPhase, CommitReason, Pipelined};
use super::{Engine, EngineError, Event, Output, ProcessingGuarantee};
use crate::client::producer::{ProducerError, TransactionError, TransactionState};
use crate::record::TopicPartition;

/// What an abort is for, which decides what happens once it is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AbortCause {
    /// The transaction failed (e.g. TxnOffsetCommit refused): the tasks start again from the
    /// committed offsets.
    Retry,
    /// The tasks are gone (lost membership) or the engine is stopping: nothing restarts.
    Discard,
}

impl Engine {
    /// Whether the engine runs exactly-once.
    pub(super) fn exactly_once(&self) -> bool {
        self.config.processing_guarantee == ProcessingGuarantee::ExactlyOnce
    }

    /// Whether the producer holds a transaction that can still be aborted.
    pub(super) fn transaction_open(&self) -> bool {
        matches!(
            self.producer.transaction_state(),
            Some(TransactionState::InTransaction | TransactionState::AbortableError)
        )
    }

    /// Whether an EndTxn is under way (exactly-once): typically the commit of tasks lost while
    /// it was in flight, which the coordinator may still apply. Tasks assigned meanwhile wait
    /// for its outcome: restored before it, their stores would miss its changelog records
    /// (held back by the last stable offset) while their committed offsets, fetched after it,
    /// include its input.
    pub(super) fn transaction_ending(&self) -> bool {
        self.exactly_once()
            && matches!(
                self.producer.transaction_state(),
                Some(TransactionState::Committing | TransactionState::Aborting)
            )
    }

    /// Flushing is over under exactly-once (every record of the commit handed to the
    /// producer): commits the transaction with `offsets`.
    pub(super) fn commit_transaction(
        &mut self,
        offsets: BTreeMap<TopicPartition, i64>,
        pipelined: Option<Pipelined>,
    ) {
        let group = self.group.group_metadata();
        match self.producer.commit_transaction(offsets, group) {
            Ok(()) => self.commit = CommitPhase::Transaction { pipelined },
            Err(ProducerError::TransactionAbortable(error)) => {
                self.warn(EngineError::Transaction(error));
                self.abort_transaction(AbortCause::Retry);
            }
            Err(error) => self.fail(EngineError::ProducerResponse(error)),
        }
    }

    /// The transaction of the commit under way committed: the stores commit with their
    /// checkpoints (a pipelined commit: their frozen writes), then the commit is done as an
    /// accepted offset commit.
    pub(super) fn transaction_committed(&mut self, offsets: BTreeMap<TopicPartition, i64>) {
        if !matches!(self.commit, CommitPhase::Transaction { .. }) {
            // Its tasks were lost while it committed (its offsets went with the generation
            // they were processed in): the stores restore the committed tail when the tasks
            // come back.
            tracing::debug!("a transaction of lost tasks committed");
            return;
        }
        let CommitPhase::Transaction { pipelined } =
            std::mem::replace(&mut self.commit, CommitPhase::Idle)
        else {
            unreachable!("checked above");
        };
        let stored = match &pipelined {
            Some(p) => self.commit_frozen_stores(&p.tasks),
            None => self.commit_stores(),
        };
        if !stored {
            return;
        }
        self.last_commit = self.now;
        self.committed
            .extend(offsets.iter().map(|(tp, o)| (tp.clone(), *o)));
        self.outputs
            .push_back(Output::Event(Event::Committed(offsets)));
        self.count_commit(true);
        self.commit_done(pipelined.is_some());
    }

    /// Starts aborting the open transaction; `cause` says what follows.
    pub(super) fn abort_transaction(&mut self, cause: AbortCause) {
        if matches!(self.commit, CommitPhase::Aborting { .. }) {
            return;
        }
        match self.producer.abort_transaction() {
            Ok(()) => {
                tracing::info!(?cause, "aborting the transaction");
                self.commit = CommitPhase::Aborting { cause };
            }
            Err(error) => self.fail(EngineError::ProducerResponse(error)),
        }
    }

    /// The abort ended: uncommitted store writes are discarded; after a failed transaction
    /// the tasks start again from their committed offsets (re-created, so they restore their
    /// stores' committed state); a revocation or close under way goes on without them.
    pub(super) fn transaction_aborted(&mut self) {
        if let Some(error) = self.failing.take() {
            self.commit = CommitPhase::Idle;
            self.fail(error);
            return;
        }
        let CommitPhase::Aborting { cause } = self.commit else {
            // A commit of tasks lost meanwhile failed and was aborted by the producer.
            tracing::debug!("a transaction of lost tasks aborted");
            return;
        };
        self.commit = CommitPhase::Idle;
        self.last_commit = self.now;
        if self.commit_started.is_some() {
            // The transaction of a commit under way: that commit failed.
            self.count_commit(false);
        }
        let assignment = self.assignment.clone();
        self.close_tasks(false);
        match self.commit_reason.take() {
            Some(CommitReason::Revoke) => {
                let revoked = self
                    .revoking
                    .take()
                    .expect("a revoke commit is started only with tasks to revoke");
                self.outputs
                    .push_back(Output::Event(Event::TasksRevoked(revoked)));
                self.group.revoke_done(self.now);
            }
            Some(CommitReason::CooperativeRevoke) => {
                // The moved tasks are revoked (uncommitted); the kept ones start again from
                // their committed offsets, as after any failed transaction.
                let revoked = self
                    .revoking
                    .take()
                    .expect("a revoke commit is started only with tasks to revoke");
                self.outputs
                    .push_back(Output::Event(Event::TasksRevoked(revoked)));
                self.group.revoke_done(self.now);
                if let Some((tasks, partitions)) = assignment {
                    self.assign(tasks, partitions);
                }
            }
            Some(CommitReason::Close) => self.group.leave(self.now),
            Some(CommitReason::Interval) | None => {
                if cause == AbortCause::Retry
                    && let Some((tasks, partitions)) = assignment
                {
                    self.assign(tasks, partitions);
                }
            }
        }
    }

    /// Under exactly-once, a failure with a transaction open aborts it first (so nothing of
    /// it becomes visible, and readers are not held up until the transaction timeout) and
    /// stops the engine after. `Ok` when the abort was started (the failure waits for it);
    /// the error back when the engine must stop now.
    pub(super) fn abort_before_failing(&mut self, error: EngineError) -> Result<(), EngineError> {
        if !self.exactly_once()
            || self.failing.is_some()
            || !self.transaction_open()
            || matches!(self.commit, CommitPhase::Aborting { .. })
        {
            return Err(error);
        }
        tracing::error!(%error, "kstreams engine stopping; aborting its open transaction first");
        for task in self.tasks.values_mut() {
            task.rollback_stores();
        }
        match self.producer.abort_transaction() {
            Ok(()) => {
                self.failing = Some(error);
                self.commit = CommitPhase::Aborting {
                    cause: AbortCause::Discard,
                };
                Ok(())
            }
            Err(_) => Err(error),
        }
    }

    /// A producer event of the transaction's life: a failed transaction is aborted and
    /// retried, a fenced producer gets a new epoch (see `fencing`), anything else fatal
    /// stops the engine.
    pub(super) fn handle_transaction_failure(&mut self, error: TransactionError, fatal: bool) {
        if fatal && error.is_fencing() && self.exactly_once() {
            self.recover_from_fencing(error);
        } else if fatal {
            self.fail(EngineError::Transaction(error));
        } else {
            self.warn(EngineError::Transaction(error));
            self.abort_transaction(AbortCause::Retry);
        }
    }
}
