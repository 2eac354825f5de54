//! The transactional producer's API ([`Producer::commit_transaction`],
//! [`Producer::abort_transaction`], [`Producer::transaction_state`]) and the transitions that
//! need no request: a commit whose records are all acknowledged moves on, an abort drops what
//! was not sent, a failed batch fails the transaction, a fatal error fences the producer.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::hash::Hash;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::ApiKey;

use super::accumulator::BatchState;
use super::txn_error::is_fatal_produce_error;
use super::txn_state::{Commit, CommitStep, Phase, Transactions};
use super::{
    DeliveryError, GroupMetadata, Producer, ProducerError, ProducerEvent, TransactionError,
    TransactionState,
};
use crate::client::BrokerId;
use crate::record::TopicPartition;
use crate::time::Instant;

impl<O: Clone + Eq + Hash + Debug> Producer<O> {
    /// Whether the producer has a `transactional_id`.
    pub fn is_transactional(&self) -> bool {
        self.txn.is_some()
    }

    /// The transaction coordinator's node id, once found.
    pub fn transaction_coordinator(&self) -> Option<BrokerId> {
        self.txn.as_ref().and_then(|txn| txn.coordinator())
    }

    /// Where the transactional producer is; `None` for a producer without
    /// `transactional_id`.
    pub fn transaction_state(&self) -> Option<TransactionState> {
        let txn = self.txn.as_ref()?;
        Some(if self.fatal.is_some() {
            TransactionState::Fatal
        } else {
            match &txn.phase {
                Phase::Idle if self.identity.is_none() => TransactionState::Initializing,
                Phase::Idle => TransactionState::Ready,
                Phase::Open => TransactionState::InTransaction,
                Phase::Committing(_) => TransactionState::Committing,
                Phase::Aborting => TransactionState::Aborting,
                Phase::Failed(_) => TransactionState::AbortableError,
            }
        })
    }

    /// When the current transaction may have opened at the coordinator: when its first
    /// AddPartitionsToTxn or AddOffsetsToTxn was sent (`None`: no transaction, or none sent
    /// yet, so the coordinator holds none of ours). The coordinator can abort a transaction
    /// on its timeout only once it was open that long: a fencing before could not come from
    /// the timeout. Kept while the producer is fenced, until
    /// [`restart_after_fencing`](Self::restart_after_fencing).
    pub fn transaction_began(&self) -> Option<Instant> {
        self.txn.as_ref().and_then(|txn| txn.began)
    }

    /// Commits the open transaction together with the group's input `offsets` (the next
    /// offset to read per partition): every record appended is flushed and must be
    /// acknowledged, then AddOffsetsToTxn, TxnOffsetCommit (to the group coordinator, with
    /// `group`'s generation and member id) and EndTxn(commit) follow.
    /// [`ProducerEvent::TransactionCommitted`] reports the end; a transaction with no record
    /// and no offset ends at once, without a request. With no transaction open this commits
    /// just the offsets. Records appended meanwhile are refused with
    /// [`ProducerError::TransactionEnding`].
    pub fn commit_transaction(
        &mut self,
        offsets: BTreeMap<TopicPartition, i64>,
        group: GroupMetadata,
    ) -> Result<(), ProducerError> {
        let txn = self.usable_transactions()?;
        match &txn.phase {
            Phase::Idle | Phase::Open => {}
            Phase::Failed(error) => return Err(ProducerError::TransactionAbortable(error.clone())),
            Phase::Committing(_) | Phase::Aborting => {
                return Err(self.invalid_state("commit_transaction"));
            }
        }
        tracing::debug!(offsets = offsets.len(), group = %group.group_id, "committing the transaction");
        txn.phase = Phase::Committing(Commit {
            uncommitted: offsets.clone(),
            offsets,
            group,
            step: CommitStep::Flush,
        });
        self.flush();
        self.advance_transaction();
        Ok(())
    }

    /// Aborts the open (or failed) transaction: batches not sent yet fail at once with
    /// [`DeliveryError::Aborted`], the ones in flight are answered first, then EndTxn(abort).
    /// [`ProducerEvent::TransactionAborted`] reports the end. A commit can be aborted until
    /// its EndTxn(commit) was sent.
    pub fn abort_transaction(&mut self) -> Result<(), ProducerError> {
        let txn = self.usable_transactions()?;
        let committed_ending = matches!(
            &txn.phase,
            Phase::Committing(Commit {
                step: CommitStep::EndTxn,
                ..
            })
        );
        if committed_ending || txn.phase == Phase::Aborting {
            return Err(self.invalid_state("abort_transaction"));
        }
        tracing::debug!("aborting the transaction");
        txn.phase = Phase::Aborting;
        self.advance_transaction();
        Ok(())
    }

    /// Starts a producer fenced by [`TransactionError::Fenced`] over as a new instance with
    /// the same transactional id would (Kafka Streams builds a new producer after a task
    /// migration): its transaction is gone (the coordinator aborted it when it bumped the
    /// epoch), so it asks for a new epoch with a plain InitProducerId (naming no identity:
    /// the current epoch is no longer ours to name), which fences whoever holds the id now.
    /// Every batch already failed with the fencing; answers to what the fenced producer had
    /// in flight are dropped. The coordinator stays as found. Refused (with the producer's
    /// error) when it is not fenced, or unusable for another reason (not authorized,
    /// transactions unsupported): those cannot heal.
    pub fn restart_after_fencing(&mut self) -> Result<(), ProducerError> {
        match &self.fatal {
            Some(ProducerError::TransactionFatal(error)) if error.is_fencing() => {}
            Some(other) => return Err(other.clone()),
            None => return Err(self.invalid_state("restart_after_fencing")),
        }
        let txn = self
            .txn
            .as_mut()
            .expect("only a transactional producer is fenced");
        tracing::info!(identity = ?self.identity, "fenced producer starting over for a new epoch");
        txn.end();
        txn.stale_request = txn.request.is_some();
        txn.fatal = None;
        txn.new_epoch_needed = false;
        txn.previous_identity = None;
        self.fatal = None;
        self.identity = None;
        debug_assert!(self.is_flushed(), "fencing failed every batch");
        // The fencing's own delivery failures must not fail the next transaction.
        let _ = self.ledger.take_failure();
        Ok(())
    }

    /// The transactions of a usable transactional producer.
    fn usable_transactions(&mut self) -> Result<&mut Transactions, ProducerError> {
        if let Some(fatal) = &self.fatal {
            return Err(fatal.clone());
        }
        self.txn.as_mut().ok_or(ProducerError::NotTransactional)
    }

    fn invalid_state(&self, operation: &'static str) -> ProducerError {
        ProducerError::InvalidTransactionState {
            operation,
            state: self
                .transaction_state()
                .expect("called only on a transactional producer"),
        }
    }

    /// Whether records may be appended now (always, without transactions).
    pub(super) fn check_transaction_accepts_records(&self) -> Result<(), ProducerError> {
        match self.txn.as_ref().map(|txn| &txn.phase) {
            None | Some(Phase::Idle | Phase::Open) => Ok(()),
            Some(Phase::Committing(_) | Phase::Aborting) => Err(ProducerError::TransactionEnding),
            Some(Phase::Failed(error)) => Err(ProducerError::TransactionAbortable(error.clone())),
        }
    }

    /// Records were appended: a transaction is open from now on.
    pub(super) fn open_transaction(&mut self) {
        if let Some(txn) = self.txn.as_mut()
            && txn.phase == Phase::Idle
        {
            tracing::trace!("transaction opened");
            txn.phase = Phase::Open;
        }
    }

    /// A Produce answer failed a batch with `error`: some errors end a transactional producer
    /// (applied by [`Producer::advance_transaction`] once the answer is handled).
    pub(super) fn note_produce_error(&mut self, error: ResponseError) {
        if let Some(txn) = self.txn.as_mut()
            && is_fatal_produce_error(error)
            && txn.fatal.is_none()
        {
            txn.fatal = Some(
                if error == ResponseError::ProducerFenced
                    || error == ResponseError::InvalidProducerEpoch
                {
                    TransactionError::Fenced {
                        api: ApiKey::Produce,
                        error,
                    }
                } else {
                    TransactionError::Broker {
                        api: ApiKey::Produce,
                        error,
                    }
                },
            );
        }
    }

    /// Moves the transaction on as far as it goes without a request. Called after every
    /// input; does nothing without transactions.
    pub(super) fn advance_transaction(&mut self) {
        let Some(txn) = self.txn.as_mut() else {
            return;
        };
        if self.fatal.is_some() {
            return;
        }
        if let Some(error) = txn.fatal.take() {
            self.fence(error);
            return;
        }
        let failure = self.ledger.take_failure();
        match &txn.phase {
            Phase::Open | Phase::Committing(_) => {
                if let Some(error) = failure {
                    self.fail_transaction(TransactionError::Delivery(error));
                    return;
                }
            }
            Phase::Idle | Phase::Aborting | Phase::Failed(_) => {}
        }
        if txn.phase == Phase::Aborting {
            self.drop_unsent_batches();
            let nothing_open = self
                .txn
                .as_ref()
                .is_some_and(|t| !t.started && t.unconfirmed_offsets.is_none());
            if nothing_open && self.abort_drained() {
                self.finish_abort();
            }
            return;
        }
        let flushed = self.is_flushed() && self.partitions_to_add().is_empty();
        let Some(txn) = self.txn.as_mut() else {
            return;
        };
        if let Phase::Committing(commit) = &mut txn.phase
            && commit.step == CommitStep::Flush
            && flushed
            && txn.request.is_none()
        {
            if !commit.offsets.is_empty() {
                commit.step = CommitStep::AddOffsets;
            } else if txn.started {
                commit.step = CommitStep::EndTxn;
            } else {
                tracing::debug!("empty transaction committed without a request");
                self.finish_commit();
            }
        }
    }

    /// Fails every batch not in flight with [`DeliveryError::Aborted`] (the transaction is
    /// being aborted); a batch that had sequence numbers makes a new epoch necessary.
    fn drop_unsent_batches(&mut self) {
        let mut sequenced = false;
        for (tp, queue) in &mut self.partitions {
            let mut index = 0;
            while let Some(batch) = queue.batches.get(index) {
                if batch.state == BatchState::InFlight {
                    index += 1;
                    continue;
                }
                let batch = queue
                    .batches
                    .remove(index)
                    .expect("index was just read from the queue");
                sequenced |= batch.sequence.is_some();
                self.ledger.fail(tp, batch, DeliveryError::Aborted);
            }
        }
        // The transaction is ending: failures now are the abort's own.
        let _ = self.ledger.take_failure();
        if sequenced && let Some(txn) = self.txn.as_mut() {
            txn.new_epoch_needed = true;
        }
    }

    /// Partitions that need AddPartitionsToTxn before their batches may be sent (and, while
    /// aborting, those whose earlier AddPartitionsToTxn got no answer: the abort must know
    /// whether the coordinator holds a transaction).
    pub(super) fn partitions_to_add(&self) -> Vec<TopicPartition> {
        let Some(txn) = self.txn.as_ref() else {
            return Vec::new();
        };
        let in_flight: &[TopicPartition] = match &txn.request {
            Some(super::txn_state::TxnRequest::AddPartitions(partitions)) => partitions,
            _ => &[],
        };
        let wanted = |tp: &TopicPartition| !txn.added.contains(tp) && !in_flight.contains(tp);
        let mut partitions: Vec<TopicPartition> = match &txn.phase {
            Phase::Open
            | Phase::Committing(Commit {
                step: CommitStep::Flush,
                ..
            }) => self
                .partitions
                .iter()
                .filter(|(_, queue)| !queue.batches.is_empty())
                .map(|(tp, _)| tp)
                .chain(txn.unconfirmed.iter())
                .filter(|tp| wanted(tp))
                .cloned()
                .collect(),
            Phase::Aborting => txn
                .unconfirmed
                .iter()
                .filter(|tp| wanted(tp))
                .cloned()
                .collect(),
            _ => Vec::new(),
        };
        partitions.sort();
        partitions.dedup();
        partitions
    }

    /// Whether an abort has nothing left to wait for but its EndTxn.
    pub(super) fn abort_drained(&self) -> bool {
        self.is_flushed()
            && self.txn.as_ref().is_some_and(|txn| txn.request.is_none())
            && self.partitions_to_add().is_empty()
    }

    /// The commit is done.
    pub(super) fn finish_commit(&mut self) {
        let Some(txn) = self.txn.as_mut() else {
            return;
        };
        let Phase::Committing(commit) = std::mem::replace(&mut txn.phase, Phase::Idle) else {
            debug_assert!(false, "finish_commit outside a commit: {:?}", txn.phase);
            return;
        };
        txn.end();
        tracing::info!(offsets = commit.offsets.len(), "transaction committed");
        self.ledger.push_event(ProducerEvent::TransactionCommitted {
            offsets: commit.offsets,
        });
    }

    /// The abort is done; the producer asks for a new epoch first if a batch with sequence
    /// numbers was dropped.
    pub(super) fn finish_abort(&mut self) {
        let Some(txn) = self.txn.as_mut() else {
            return;
        };
        debug_assert_eq!(txn.phase, Phase::Aborting, "finish_abort outside an abort");
        txn.end();
        if std::mem::take(&mut txn.new_epoch_needed) {
            tracing::info!(identity = ?self.identity, "requesting a new producer epoch after the abort");
            txn.previous_identity = self.identity.take();
        }
        let _ = self.ledger.take_failure();
        tracing::info!("transaction aborted");
        self.ledger.push_event(ProducerEvent::TransactionAborted);
    }

    /// The open transaction failed: it must be aborted. Ignored while it is being aborted or
    /// has failed already.
    pub(super) fn fail_transaction(&mut self, error: TransactionError) {
        let Some(txn) = self.txn.as_mut() else {
            return;
        };
        match txn.phase {
            Phase::Aborting | Phase::Failed(_) => {
                tracing::debug!(%error, "transaction error while it ends anyway");
            }
            Phase::Idle | Phase::Open | Phase::Committing(_) => {
                tracing::warn!(%error, "transaction failed; it must be aborted");
                txn.phase = Phase::Failed(error.clone());
                self.ledger
                    .push_event(ProducerEvent::TransactionFailed { error });
            }
        }
    }

    /// The producer is unusable: every batch fails, and the engine learns why.
    pub(super) fn fence(&mut self, error: TransactionError) {
        self.fail_all(ProducerError::TransactionFatal(error.clone()));
        let event = match error {
            TransactionError::Unsupported { missing_api } => {
                ProducerEvent::TransactionsUnsupported { missing_api }
            }
            error => ProducerEvent::Fenced { error },
        };
        self.ledger.push_event(event);
    }
}
