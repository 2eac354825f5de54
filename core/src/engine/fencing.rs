//! Exactly-once: a fenced producer as a task migration. The coordinator bumps the producer
//! epoch when it aborts a transaction left open past its timeout (e.g. while a broker was
//! down) and when another producer initialises the same transactional id; either way the
//! transaction is gone. As Kafka Streams does on a `TaskMigratedException`, the engine closes
//! its tasks dirty (their uncommitted store writes rolled back), gets a new epoch and
//! re-creates them from the committed offsets and checkpoints: nothing is lost, nothing of
//! the aborted transaction is visible to read_committed readers.
//!
//! Only a fencing within one transaction timeout of two earlier ones stops the engine (with
//! the typed error): after a new epoch, the coordinator can time a transaction out only once
//! it has been open for the whole timeout, so fencings that close together come from a twin
//! with the same transactional id (e.g. a copied state directory), which would otherwise
//! fence this engine and be fenced by it in turn forever.

use std::collections::VecDeque;

use super::commit::CommitPhase;
use super::transaction::AbortCause;
use super::{Engine, EngineError};
use crate::client::producer::{DeliveryError, ProducerError, TransactionError};
use crate::time::{Duration, Instant};

/// Earlier fencings within one transaction timeout that the engine still recovers from.
pub(super) const FENCINGS_TOLERATED_PER_TIMEOUT: usize = 2;

/// When the engine recovered from its recent fencings.
#[derive(Debug, Default)]
pub(super) struct FencingHistory {
    recoveries: VecDeque<Instant>,
}

impl FencingHistory {
    /// A fencing at `now`: whether the engine recovers from it (fewer than
    /// [`FENCINGS_TOLERATED_PER_TIMEOUT`] recoveries in the `window` before it). A recovery is
    /// remembered.
    pub(super) fn admit(&mut self, now: Instant, window: Duration) -> bool {
        while self
            .recoveries
            .front()
            .is_some_and(|&at| at.saturating_add(window) <= now)
        {
            self.recoveries.pop_front();
        }
        if self.recoveries.len() >= FENCINGS_TOLERATED_PER_TIMEOUT {
            return false;
        }
        self.recoveries.push_back(now);
        true
    }
}

/// Whether a failed delivery is the producer's fencing (the batch's own INVALID_PRODUCER_EPOCH
/// or PRODUCER_FENCED, or a batch failed with the producer) or another fatal error of the
/// transactional producer: its [`ProducerEvent::Fenced`] (or
/// [`ProducerEvent::TransactionsUnsupported`]) follows and decides.
///
/// [`ProducerEvent::Fenced`]: crate::client::producer::ProducerEvent::Fenced
/// [`ProducerEvent::TransactionsUnsupported`]: crate::client::producer::ProducerEvent::TransactionsUnsupported
pub(super) fn failed_with_the_producer(error: &DeliveryError) -> bool {
    use kafka_protocol::ResponseError as E;
    match error {
        DeliveryError::Broker(E::InvalidProducerEpoch | E::ProducerFenced) => true,
        DeliveryError::ProducerFailed(error) => {
            matches!(**error, ProducerError::TransactionFatal(_))
        }
        _ => false,
    }
}

impl Engine {
    /// The transactional producer was fenced (`error`): a task migration, unless it happened
    /// too often (see the module documentation).
    pub(super) fn recover_from_fencing(&mut self, error: TransactionError) {
        if let Some(failing) = self.failing.take() {
            // The engine was stopping and aborting its transaction: the fencing ended it.
            self.commit = CommitPhase::Idle;
            self.fail(failing);
            return;
        }
        let window = self.producer.config().transaction_timeout;
        if !self.fencings.admit(self.now, window) {
            tracing::error!(%error, tolerated = FENCINGS_TOLERATED_PER_TIMEOUT, %window, "fenced again within one transaction timeout: another producer uses this transactional id");
            self.fail(EngineError::Transaction(error));
            return;
        }
        if let Err(error) = self.producer.restart_after_fencing() {
            self.fail(EngineError::ProducerResponse(error));
            return;
        }
        self.warn(EngineError::Transaction(error));
        tracing::info!(
            "producer fenced: closing the tasks dirty, re-creating them from the committed offsets under a new epoch"
        );
        // The coordinator aborted the transaction: it ends as an abort would, restarting the
        // tasks unless an abort of lost tasks (or of a close) was under way.
        let cause = match self.commit {
            CommitPhase::Aborting { cause } => cause,
            _ => AbortCause::Retry,
        };
        self.commit = CommitPhase::Aborting { cause };
        self.transaction_aborted();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fencings_a_transaction_timeout_apart_are_all_recovered() {
        let mut history = FencingHistory::default();
        let window = Duration::from_millis(10_000);
        for i in 0..10 {
            assert!(history.admit(Instant::from_millis(i * 10_000), window));
        }
    }

    #[test]
    fn the_third_fencing_within_a_transaction_timeout_is_not() {
        let mut history = FencingHistory::default();
        let window = Duration::from_millis(10_000);
        assert!(history.admit(Instant::from_millis(0), window));
        assert!(history.admit(Instant::from_millis(4_000), window));
        assert!(!history.admit(Instant::from_millis(9_999), window));
        // A refused one is not remembered; the first left the window.
        assert!(history.admit(Instant::from_millis(10_000), window));
        assert!(!history.admit(Instant::from_millis(10_001), window));
    }
}
