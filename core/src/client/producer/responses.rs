//! Taking the answers: InitProducerId results, Produce results per partition (acked, retried
//! in order with their sequences, or failed), and requests that got no answer.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{ApiKey, InitProducerIdResponse, ProduceResponse, ResponseKind};

use super::accumulator::BatchState;
use super::idempotence::{PartitionOutcome, classify};
use super::inflight::SentBatch;
use super::{DeliveryError, Producer, ProducerError, ProducerEvent, ProducerIdentity};
use crate::client::{BrokerId, Target};
use crate::time::Instant;

impl<O: Clone + Eq + Hash + Debug> Producer<O> {
    /// Handles the answer to a request from [`Producer::poll_request`]: InitProducerId or
    /// Produce, or a transactional producer's FindCoordinator, AddPartitionsToTxn,
    /// AddOffsetsToTxn, TxnOffsetCommit or EndTxn. An error is also fatal for the producer
    /// when it is [`ProducerError::InitProducerId`] (a transactional producer reports what
    /// ends it as [`ProducerEvent::Fenced`]).
    pub fn handle_response(
        &mut self,
        from: BrokerId,
        response: ResponseKind,
        now: Instant,
    ) -> Result<(), ProducerError> {
        let now = self.observe(now);
        let result = match response {
            ResponseKind::Produce(response) => self.handle_produce(from, &response, now),
            ResponseKind::InitProducerId(response) if self.txn.is_none() => {
                self.handle_init_producer_id(from, &response, now)
            }
            other => self.handle_transaction_response(from, other, now),
        };
        self.advance_transaction();
        result
    }

    fn handle_init_producer_id(
        &mut self,
        from: BrokerId,
        response: &InitProducerIdResponse,
        now: Instant,
    ) -> Result<(), ProducerError> {
        if !self.init_in_flight {
            return Err(ProducerError::UnexpectedResponse { broker: from });
        }
        self.init_in_flight = false;
        match ResponseError::try_from_code(response.error_code) {
            None => {
                let identity = ProducerIdentity {
                    producer_id: response.producer_id.0,
                    producer_epoch: response.producer_epoch,
                };
                tracing::info!(?identity, "producer id assigned");
                self.identity = Some(identity);
                Ok(())
            }
            Some(error) if error.is_retriable() => {
                tracing::debug!(%error, "InitProducerId failed, retrying");
                self.init_retry_at = now + self.config.retry_backoff;
                Ok(())
            }
            Some(error) => {
                let error = ProducerError::InitProducerId(error);
                self.fail_all(error.clone());
                Err(error)
            }
        }
    }

    fn handle_produce(
        &mut self,
        from: BrokerId,
        response: &ProduceResponse,
        now: Instant,
    ) -> Result<(), ProducerError> {
        let request = self
            .in_flight
            .pop(from)
            .ok_or(ProducerError::UnexpectedResponse { broker: from })?;
        let mut refresh = BTreeSet::new();
        for sent in request.batches {
            let tp = &sent.topic_partition;
            let answer = response
                .responses
                .iter()
                .filter(|topic| topic.name.0.as_str() == &*tp.topic)
                .flat_map(|topic| topic.partition_responses.iter())
                .find(|partition| partition.index == tp.partition);
            let Some(answer) = answer else {
                // No answer for this partition: as if the request was lost.
                self.apply_outcome(&sent, retry_network(), None, now, &mut refresh);
                continue;
            };
            let first_unacked = self
                .partitions
                .get(tp)
                .and_then(|q| q.batches.front())
                .is_some_and(|front| front.id == sent.batch_id);
            let outcome = classify(answer.error_code, first_unacked);
            if let PartitionOutcome::Retry {
                refresh_metadata: true,
                ..
            } = outcome
                && answer.current_leader.leader_id.0 >= 0
            {
                // Produce v10+ names the new leader.
                self.leaders
                    .insert(tp.clone(), answer.current_leader.leader_id.0);
            }
            let base_offset = (answer.base_offset >= 0).then_some(answer.base_offset);
            self.apply_outcome(&sent, outcome, base_offset, now, &mut refresh);
        }
        self.request_refresh(refresh);
        self.expire(now);
        Ok(())
    }

    /// The request carrying Produce (or InitProducerId, or a transactional request) got no
    /// answer.
    pub fn handle_request_failed(&mut self, target: Target, api: ApiKey, now: Instant) {
        let now = self.observe(now);
        match (api, target) {
            (api, _) if self.txn.is_some() && api != ApiKey::Produce => {
                self.transaction_request_failed(api, now);
            }
            (ApiKey::InitProducerId, _) if self.init_in_flight => {
                self.init_in_flight = false;
                self.init_retry_at = now + self.config.retry_backoff;
            }
            (ApiKey::Produce, Target::Broker(broker)) => {
                let request = self.in_flight.pop(broker);
                debug_assert!(
                    request.is_some(),
                    "a Produce to broker {broker} failed with none in flight (reported twice?)"
                );
                let Some(request) = request else {
                    return;
                };
                let mut refresh = BTreeSet::new();
                for sent in &request.batches {
                    self.apply_outcome(sent, retry_network(), None, now, &mut refresh);
                }
                self.request_refresh(refresh);
                self.expire(now);
            }
            _ => {}
        }
        self.advance_transaction();
    }

    fn request_refresh(&mut self, topics: BTreeSet<Arc<str>>) {
        for topic in topics {
            self.ledger
                .push_event(ProducerEvent::RefreshMetadata { topic });
        }
    }

    /// Applies one partition's outcome to the batch it answers.
    fn apply_outcome(
        &mut self,
        sent: &SentBatch,
        outcome: PartitionOutcome,
        base_offset: Option<i64>,
        now: Instant,
        refresh: &mut BTreeSet<Arc<str>>,
    ) {
        let tp = &sent.topic_partition;
        let queue = self
            .partitions
            .get_mut(tp)
            .expect("a partition's queue is never removed once a batch was sent from it");
        let Some(index) = queue.position(sent.batch_id) else {
            return; // already acknowledged or failed
        };
        let current = queue
            .batches
            .get(index)
            .is_some_and(|b| b.state == BatchState::InFlight && b.attempt == sent.attempt);
        match outcome {
            PartitionOutcome::Written => {
                let batch = queue
                    .batches
                    .remove(index)
                    .expect("index from position is in the queue");
                // A broker appends a sequence only right after the one before it, so the
                // earlier batches sequenced under the same producer id are written too,
                // whatever their own answers say (an error such as REQUEST_TIMED_OUT, or none
                // yet). Sent again, one could fall out of the broker's window of recent
                // batches and be refused as OUT_OF_ORDER_SEQUENCE_NUMBER.
                if let Some((identity, _)) = batch.sequence {
                    let (mut i, mut end) = (0, index);
                    while i < end {
                        let same = queue.batches[i]
                            .sequence
                            .is_some_and(|(owner, _)| owner == identity);
                        if same {
                            let written = queue.batches.remove(i).expect("i < end <= len");
                            tracing::trace!(partition = %tp, "batch acknowledged by a later one");
                            self.ledger.ack(tp, written, None);
                            end -= 1;
                        } else {
                            i += 1;
                        }
                    }
                }
                tracing::trace!(partition = %tp, ?base_offset, "batch acknowledged");
                self.ledger.ack(tp, batch, base_offset);
            }
            _ if !current => {
                tracing::trace!(partition = %tp, "ignoring the answer to a superseded attempt");
            }
            PartitionOutcome::Retry {
                error,
                refresh_metadata,
            } => {
                tracing::debug!(partition = %tp, %error, "retrying batch and later in-flight batches");
                // This batch and every later one in flight go back, in order, sequences kept;
                // answers to their current attempts become stale.
                for batch in queue.batches.iter_mut().skip(index) {
                    if batch.state == BatchState::InFlight {
                        batch.state = BatchState::RetryPending;
                        self.retries.batches += 1;
                        self.retries.records += batch.record_count() as u64;
                    }
                }
                queue.retry_at = now + self.config.retry_backoff;
                if refresh_metadata {
                    refresh.insert(tp.topic.clone());
                }
                // Past its delivery timeout it is failed by `expire`.
            }
            PartitionOutcome::SequenceBroken(error) | PartitionOutcome::Rejected(error) => {
                let batch = queue
                    .batches
                    .remove(index)
                    .expect("index from position is in the queue");
                let sequence = batch.sequence;
                let later_sequenced = queue
                    .batches
                    .iter()
                    .skip(index)
                    .any(|b| b.sequence.is_some());
                let reuse = matches!(outcome, PartitionOutcome::Rejected(_))
                    && !later_sequenced
                    && sequence.is_some_and(|(id, _)| queue.sequence_owner == Some(id));
                if reuse {
                    // Nothing was sent after it: its sequence numbers are free again.
                    if let Some((_, base)) = sequence {
                        queue.next_sequence = base;
                    }
                } else {
                    for later in queue.batches.iter_mut().skip(index) {
                        if later.sequence.is_some() {
                            later.unsequence();
                        }
                    }
                    if let Some((id, _)) = sequence {
                        self.renew_identity(id);
                    }
                }
                self.ledger.fail(tp, batch, DeliveryError::Broker(error));
                self.note_produce_error(error);
            }
        }
    }
}

fn retry_network() -> PartitionOutcome {
    PartitionOutcome::Retry {
        error: ResponseError::NetworkException,
        refresh_metadata: true,
    }
}
