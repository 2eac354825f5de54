//! Taking the answers to transactional requests (FindCoordinator, InitProducerId,
//! AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit, EndTxn) and their failures: each
//! broker error is retried, sent to a coordinator found again, fails the transaction or fences
//! the producer, as [`classify`] says.

use std::fmt::Debug;
use std::hash::Hash;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    AddPartitionsToTxnResponse, ApiKey, FindCoordinatorResponse, InitProducerIdResponse,
    ResponseKind, TxnOffsetCommitResponse,
};

use super::txn_error::{TxnErrorAction, classify};
use super::txn_requests::api_of;
use super::txn_state::{CommitStep, CoordinatorState, Phase, TxnRequest};
use super::{Producer, ProducerError, ProducerEvent, ProducerIdentity, TransactionError};
use crate::client::BrokerId;
use crate::record::TopicPartition;
use crate::time::{Duration, Instant};

/// Backoff after CONCURRENT_TRANSACTIONS for the first partitions of a transaction (the
/// previous one is completing), when `retry_backoff` is longer (Java's
/// `ADD_PARTITIONS_RETRY_BACKOFF_MS`).
const FIRST_ADD_RETRY_BACKOFF: Duration = Duration::from_millis(20);

impl<O: Clone + Eq + Hash + Debug> Producer<O> {
    /// Handles the answer to a transactional request.
    pub(super) fn handle_transaction_response(
        &mut self,
        from: BrokerId,
        response: ResponseKind,
        now: Instant,
    ) -> Result<(), ProducerError> {
        if self.txn.is_none() {
            return Err(ProducerError::UnexpectedResponse { broker: from });
        }
        if self.fatal.is_some() || self.txn.as_ref().is_some_and(|txn| txn.stale_request) {
            // Answers to what was in flight when the producer became unusable (or to its
            // fenced incarnation): dropped, but nothing is in flight any more.
            self.drop_answer(&response);
            return Ok(());
        }
        match response {
            ResponseKind::FindCoordinator(response) => {
                self.on_find_coordinator(from, &response, now)
            }
            ResponseKind::InitProducerId(response) => {
                self.take_request(from, ApiKey::InitProducerId)?;
                self.on_init_producer_id(&response, now);
                Ok(())
            }
            ResponseKind::AddPartitionsToTxn(response) => {
                let TxnRequest::AddPartitions(partitions) =
                    self.take_request(from, ApiKey::AddPartitionsToTxn)?
                else {
                    unreachable!("take_request checked the API");
                };
                self.on_add_partitions(&partitions, &response, now);
                Ok(())
            }
            ResponseKind::AddOffsetsToTxn(response) => {
                self.take_request(from, ApiKey::AddOffsetsToTxn)?;
                self.on_add_offsets(response.error_code, now);
                Ok(())
            }
            ResponseKind::TxnOffsetCommit(response) => {
                let TxnRequest::CommitOffsets(partitions) =
                    self.take_request(from, ApiKey::TxnOffsetCommit)?
                else {
                    unreachable!("take_request checked the API");
                };
                self.on_txn_offset_commit(&partitions, &response, now);
                Ok(())
            }
            ResponseKind::EndTxn(response) => {
                let TxnRequest::EndTxn { commit } = self.take_request(from, ApiKey::EndTxn)? else {
                    unreachable!("take_request checked the API");
                };
                self.on_end_txn(commit, response.error_code, now);
                Ok(())
            }
            _ => Err(ProducerError::UnexpectedResponse { broker: from }),
        }
    }

    /// A transactional request got no answer.
    pub(super) fn transaction_request_failed(&mut self, api: ApiKey, now: Instant) {
        let backoff = self.config.retry_backoff;
        let Some(txn) = self.txn.as_mut() else {
            return;
        };
        if api == ApiKey::FindCoordinator {
            if txn.coordinator == CoordinatorState::Finding {
                txn.coordinator = CoordinatorState::Unknown {
                    retry_at: now + backoff,
                };
            }
            return;
        }
        let matches = txn.request.as_ref().is_some_and(|r| api_of(r) == api);
        debug_assert!(
            matches,
            "a {api:?} failed with {:?} in flight (reported twice?)",
            txn.request
        );
        if !matches {
            return;
        }
        let request = txn.request.take();
        if std::mem::take(&mut txn.stale_request) {
            tracing::debug!(?request, "a fenced producer's request got no answer");
            return;
        }
        tracing::debug!(?request, "transactional request got no answer; retrying");
        match request {
            Some(TxnRequest::CommitOffsets(_)) => txn.retry_at = now + backoff,
            Some(other) => {
                match other {
                    TxnRequest::AddPartitions(partitions) => txn.unconfirmed.extend(partitions),
                    TxnRequest::AddOffsets { group_id } => txn.unconfirmed_offsets = Some(group_id),
                    _ => {}
                }
                txn.lose_coordinator(now + backoff);
            }
            None => {}
        }
    }

    /// Forgets the request an answer dropped unread was for: a FindCoordinator is sent again
    /// (after a restart, the coordinator may have moved), any other request is no longer in
    /// flight.
    fn drop_answer(&mut self, response: &ResponseKind) {
        let Some(txn) = self.txn.as_mut() else {
            return;
        };
        if let ResponseKind::FindCoordinator(_) = response {
            if txn.coordinator == CoordinatorState::Finding {
                txn.coordinator = CoordinatorState::Unknown {
                    retry_at: Instant::MIN,
                };
            }
            return;
        }
        let api = match response {
            ResponseKind::InitProducerId(_) => ApiKey::InitProducerId,
            ResponseKind::AddPartitionsToTxn(_) => ApiKey::AddPartitionsToTxn,
            ResponseKind::AddOffsetsToTxn(_) => ApiKey::AddOffsetsToTxn,
            ResponseKind::TxnOffsetCommit(_) => ApiKey::TxnOffsetCommit,
            ResponseKind::EndTxn(_) => ApiKey::EndTxn,
            _ => return,
        };
        if txn.request.as_ref().is_some_and(|r| api_of(r) == api) {
            tracing::debug!(?api, "answer to a fenced producer's request dropped");
            txn.request = None;
            txn.stale_request = false;
        }
    }

    /// Takes the request in flight, which must be of `api`.
    fn take_request(&mut self, from: BrokerId, api: ApiKey) -> Result<TxnRequest, ProducerError> {
        let txn = self
            .txn
            .as_mut()
            .ok_or(ProducerError::UnexpectedResponse { broker: from })?;
        if txn.request.as_ref().is_some_and(|r| api_of(r) == api) {
            txn.request
                .take()
                .ok_or(ProducerError::UnexpectedResponse { broker: from })
        } else {
            Err(ProducerError::UnexpectedResponse { broker: from })
        }
    }

    fn on_find_coordinator(
        &mut self,
        from: BrokerId,
        response: &FindCoordinatorResponse,
        now: Instant,
    ) -> Result<(), ProducerError> {
        let backoff = self.config.retry_backoff;
        let Some(txn) = self.txn.as_mut() else {
            return Err(ProducerError::UnexpectedResponse { broker: from });
        };
        if txn.coordinator != CoordinatorState::Finding {
            return Err(ProducerError::UnexpectedResponse { broker: from });
        }
        let (code, id, host, port) = response
            .coordinators
            .iter()
            .find(|c| c.key == txn.id)
            .or(response.coordinators.first())
            .map(|c| (c.error_code, c.node_id.0, c.host.to_string(), c.port))
            .unwrap_or_else(|| {
                let r = response;
                (r.error_code, r.node_id.0, r.host.to_string(), r.port)
            });
        match ResponseError::try_from_code(code) {
            None if id >= 0 => {
                tracing::debug!(id, %host, port, "transaction coordinator found");
                txn.coordinator = CoordinatorState::Known(id);
                self.ledger
                    .push_event(ProducerEvent::TransactionCoordinatorFound { id, host, port });
            }
            None => txn.lose_coordinator(now + backoff),
            Some(error) => match classify(ApiKey::FindCoordinator, error) {
                TxnErrorAction::Retry | TxnErrorAction::FindCoordinator => {
                    tracing::debug!(%error, "no transaction coordinator yet");
                    txn.lose_coordinator(now + backoff);
                }
                _ => self.fence(TransactionError::Broker {
                    api: ApiKey::FindCoordinator,
                    error,
                }),
            },
        }
        Ok(())
    }

    fn on_init_producer_id(&mut self, response: &InitProducerIdResponse, now: Instant) {
        let Some(txn) = self.txn.as_mut() else {
            return;
        };
        match ResponseError::try_from_code(response.error_code) {
            None => {
                let identity = ProducerIdentity {
                    producer_id: response.producer_id.0,
                    producer_epoch: response.producer_epoch,
                };
                tracing::info!(?identity, "transactional producer id assigned");
                txn.previous_identity = None;
                self.identity = Some(identity);
            }
            Some(error) => match classify(ApiKey::InitProducerId, error) {
                TxnErrorAction::Fenced => self.fence(TransactionError::Fenced {
                    api: ApiKey::InitProducerId,
                    error,
                }),
                TxnErrorAction::Retry | TxnErrorAction::FindCoordinator => {
                    self.on_txn_error(ApiKey::InitProducerId, error, now)
                }
                // Nothing to abort yet: fatal, as in Java.
                _ => self.fence(TransactionError::Broker {
                    api: ApiKey::InitProducerId,
                    error,
                }),
            },
        }
    }

    fn on_add_partitions(
        &mut self,
        partitions: &[TopicPartition],
        response: &AddPartitionsToTxnResponse,
        now: Instant,
    ) {
        let mut added = Vec::new();
        let mut worst: Option<(TxnErrorAction, ResponseError)> = None;
        for tp in partitions {
            let code = response
                .results_by_topic_v3_and_below
                .iter()
                .filter(|topic| topic.name.0.as_str() == &*tp.topic)
                .flat_map(|topic| topic.results_by_partition.iter())
                .find(|p| p.partition_index == tp.partition)
                .map(|p| p.partition_error_code);
            match code.map(ResponseError::try_from_code) {
                Some(None) => added.push(tp.clone()),
                // Not tried because another partition failed: that one's error decides.
                Some(Some(ResponseError::OperationNotAttempted)) | None => {}
                Some(Some(error)) => {
                    let action = classify(ApiKey::AddPartitionsToTxn, error);
                    if worst.is_none_or(|(w, _)| severity(action) > severity(w)) {
                        worst = Some((action, error));
                    }
                }
            }
        }
        let backoff = self.config.retry_backoff;
        let Some(txn) = self.txn.as_mut() else {
            return;
        };
        if !added.is_empty() {
            tracing::debug!(partitions = ?added, "partitions added to the transaction");
            txn.started = true;
            for tp in &added {
                txn.unconfirmed.remove(tp);
            }
            txn.added.extend(added.iter().cloned());
        }
        match worst {
            // The previous transaction's markers are still being written: the first partitions
            // of a transaction are retried sooner, as in Java.
            Some((TxnErrorAction::Retry, ResponseError::ConcurrentTransactions))
                if txn.added.is_empty() =>
            {
                txn.retry_at = now + backoff.min(FIRST_ADD_RETRY_BACKOFF);
            }
            Some((action, error)) => {
                if matches!(
                    action,
                    TxnErrorAction::Abortable | TxnErrorAction::AbortableWithNewEpoch
                ) {
                    // Refused for good: not in the transaction.
                    txn.unconfirmed.retain(|tp| !partitions.contains(tp));
                }
                self.on_txn_error(ApiKey::AddPartitionsToTxn, error, now);
            }
            // Partitions left out of the answer (or not attempted): sent again.
            None if added.len() < partitions.len() => txn.retry_at = now + backoff,
            None => {}
        }
    }

    fn on_add_offsets(&mut self, error_code: i16, now: Instant) {
        let Some(txn) = self.txn.as_mut() else {
            return;
        };
        match ResponseError::try_from_code(error_code) {
            None => {
                tracing::debug!("offsets partition added to the transaction");
                txn.started = true;
                txn.unconfirmed_offsets = None;
                if let Phase::Committing(commit) = &mut txn.phase
                    && commit.step == CommitStep::AddOffsets
                {
                    commit.step = CommitStep::CommitOffsets;
                }
            }
            Some(error) => {
                let action = classify(ApiKey::AddOffsetsToTxn, error);
                if matches!(
                    action,
                    TxnErrorAction::Abortable | TxnErrorAction::AbortableWithNewEpoch
                ) {
                    txn.unconfirmed_offsets = None;
                }
                self.on_txn_error(ApiKey::AddOffsetsToTxn, error, now);
            }
        }
    }

    fn on_txn_offset_commit(
        &mut self,
        partitions: &[TopicPartition],
        response: &TxnOffsetCommitResponse,
        now: Instant,
    ) {
        let backoff = self.config.retry_backoff;
        let Some(txn) = self.txn.as_mut() else {
            return;
        };
        let mut worst: Option<(TxnErrorAction, ResponseError, &TopicPartition)> = None;
        let mut left = false;
        for tp in partitions {
            let code = response
                .topics
                .iter()
                .filter(|topic| topic.name.0.as_str() == &*tp.topic)
                .flat_map(|topic| topic.partitions.iter())
                .find(|p| p.partition_index == tp.partition)
                .map(|p| p.error_code);
            match code.map(ResponseError::try_from_code) {
                Some(None) => {
                    if let Phase::Committing(commit) = &mut txn.phase {
                        commit.uncommitted.remove(tp);
                    }
                }
                None => left = true,
                Some(Some(error)) => {
                    let action = classify(ApiKey::TxnOffsetCommit, error);
                    if worst.is_none_or(|(w, _, _)| severity(action) > severity(w)) {
                        worst = Some((action, error, tp));
                    }
                }
            }
        }
        let api = ApiKey::TxnOffsetCommit;
        match worst {
            Some((
                TxnErrorAction::Abortable | TxnErrorAction::AbortableWithNewEpoch,
                error,
                tp,
            )) => self.fail_transaction(TransactionError::OffsetCommit {
                topic_partition: tp.clone(),
                error,
            }),
            Some((_, error, _)) => {
                if matches!(
                    error,
                    ResponseError::NotCoordinator | ResponseError::CoordinatorNotAvailable
                ) {
                    self.ledger.push_event(ProducerEvent::GroupCoordinatorMoved);
                }
                self.on_txn_error(api, error, now);
            }
            None if left => txn.retry_at = now + backoff,
            None => {
                if let Phase::Committing(commit) = &mut txn.phase
                    && commit.uncommitted.is_empty()
                {
                    tracing::debug!("transaction offsets committed");
                    commit.step = CommitStep::EndTxn;
                }
            }
        }
    }

    fn on_end_txn(&mut self, commit: bool, error_code: i16, now: Instant) {
        let Some(txn) = self.txn.as_mut() else {
            return;
        };
        let error = ResponseError::try_from_code(error_code);
        match error {
            None if commit => self.finish_commit(),
            None => self.finish_abort(),
            // The coordinator no longer knows our producer id: nothing of ours is open there.
            // The abort is done; a new epoch restarts the sequences.
            Some(ResponseError::UnknownProducerId | ResponseError::InvalidProducerIdMapping)
                if !commit =>
            {
                txn.new_epoch_needed = true;
                self.finish_abort();
            }
            Some(error) => match classify(ApiKey::EndTxn, error) {
                TxnErrorAction::Abortable | TxnErrorAction::AbortableWithNewEpoch if !commit => {
                    // An abort that cannot end.
                    self.fence(TransactionError::Broker {
                        api: ApiKey::EndTxn,
                        error,
                    })
                }
                _ => self.on_txn_error(ApiKey::EndTxn, error, now),
            },
        }
    }

    /// Handles a broker error in the answer to `api`.
    fn on_txn_error(&mut self, api: ApiKey, error: ResponseError, now: Instant) {
        let backoff = self.config.retry_backoff;
        let Some(txn) = self.txn.as_mut() else {
            return;
        };
        let action = classify(api, error);
        tracing::debug!(?api, %error, ?action, "transactional request failed");
        match action {
            TxnErrorAction::Retry => txn.retry_at = now + backoff,
            TxnErrorAction::FindCoordinator => txn.lose_coordinator(now + backoff),
            TxnErrorAction::Abortable => {
                self.fail_transaction(TransactionError::Broker { api, error })
            }
            TxnErrorAction::AbortableWithNewEpoch => {
                txn.new_epoch_needed = true;
                self.fail_transaction(TransactionError::Broker { api, error });
            }
            TxnErrorAction::Fenced => self.fence(TransactionError::Fenced { api, error }),
            TxnErrorAction::Fatal => self.fence(TransactionError::Broker { api, error }),
        }
    }
}

/// How bad an outcome is, to pick one from several partitions' errors.
fn severity(action: TxnErrorAction) -> u8 {
    match action {
        TxnErrorAction::Retry => 0,
        TxnErrorAction::FindCoordinator => 1,
        TxnErrorAction::Abortable => 2,
        TxnErrorAction::AbortableWithNewEpoch => 3,
        TxnErrorAction::Fatal => 4,
        TxnErrorAction::Fenced => 5,
    }
}
