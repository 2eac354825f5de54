//! Exactly-once: a fenced producer as a task migration. The coordinator bumps the producer
//! epoch when it aborts a transaction left open past its timeout (e.g. while a broker was
//! down) and when another producer initialises the same transactional id; either way the
//! transaction is gone. As Kafka Streams does on a `TaskMigratedException`, the engine closes
//! its tasks dirty (their uncommitted store writes rolled back), gets a new epoch and
//! re-creates them from the committed offsets and checkpoints: nothing is lost, nothing of
//! the aborted transaction is visible to read_committed readers.
//!
//! A fencing that cannot be the coordinator's timeout is a twin's: the coordinator aborts a
//! transaction on its timeout only once it has been open for the whole timeout, so a fencing
//! of a producer whose transaction began less than the timeout before (or that had none open
//! at the coordinator) came from another producer initialising our transactional id — a twin
//! with the same id (e.g. a copied state directory), which would otherwise fence this engine
//! and be fenced by it in turn forever, however sparse the input that makes each learn of it.
//! The third twin fencing stops the engine with the typed error; fencings by the timeout
//! never do (each needs a transaction open for the whole timeout).

use super::commit::CommitPhase;
use super::transaction::AbortCause;
use super::{Engine, EngineError};
use crate::client::producer::{DeliveryError, ProducerError, TransactionError};
use crate::time::{Duration, Instant};

/// Twin fencings (see the module documentation) the engine still recovers from; the next
/// one stops it.
pub(super) const TWIN_FENCINGS_TOLERATED: usize = 2;

/// The twin fencings the engine recovered from.
#[derive(Debug, Default)]
pub(super) struct FencingHistory {
    twins: usize,
}

impl FencingHistory {
    /// A fencing at `now` of a producer whose transaction may have opened at the
    /// coordinator at `began` (`None`: it holds none of ours), with transaction timeout
    /// `timeout`: whether the engine recovers from it. A fencing that may be the timeout's
    /// (the transaction began `timeout` or more before) always is; one that cannot is a
    /// twin's, recovered from [`TWIN_FENCINGS_TOLERATED`] times, and counted.
    pub(super) fn admit(
        &mut self,
        now: Instant,
        began: Option<Instant>,
        timeout: Duration,
    ) -> bool {
        if began.is_some_and(|began| began.saturating_add(timeout) <= now) {
            return true;
        }
        if self.twins >= TWIN_FENCINGS_TOLERATED {
            return false;
        }
        self.twins += 1;
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
        let timeout = self.producer.config().transaction_timeout;
        let began = self.producer.transaction_began();
        if !self.fencings.admit(self.now, began, timeout) {
            tracing::error!(%error, tolerated = TWIN_FENCINGS_TOLERATED, ?began, %timeout, "fenced again before the transaction could time out: another producer uses this transactional id");
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

    const TIMEOUT: Duration = Duration::from_millis(10_000);

    fn at(ms: i64) -> Instant {
        Instant::from_millis(ms)
    }

    #[test]
    fn fencings_of_transactions_open_for_the_timeout_are_all_recovered() {
        let mut history = FencingHistory::default();
        for i in 0..10 {
            // Back to back: each transaction began as the previous fencing was recovered.
            let now = (i + 1) * 10_000;
            assert!(history.admit(at(now), Some(at(now - 10_000)), TIMEOUT));
        }
    }

    #[test]
    fn the_third_fencing_of_a_young_transaction_is_not_recovered_however_far_apart() {
        let mut history = FencingHistory::default();
        // Sparse input: a twin fences each transaction at its first request, minutes apart.
        assert!(history.admit(at(0), Some(at(0)), TIMEOUT));
        assert!(history.admit(at(120_000), Some(at(119_990)), TIMEOUT));
        assert!(!history.admit(at(240_000), Some(at(239_990)), TIMEOUT));
    }

    #[test]
    fn a_fencing_with_no_transaction_at_the_coordinator_is_a_twins() {
        let mut history = FencingHistory::default();
        assert!(history.admit(at(0), None, TIMEOUT));
        // A timeout between does not count, nor forgive.
        assert!(history.admit(at(50_000), Some(at(40_000)), TIMEOUT));
        assert!(history.admit(at(100_000), None, TIMEOUT));
        assert!(!history.admit(at(200_000), Some(at(199_999)), TIMEOUT));
    }
}
