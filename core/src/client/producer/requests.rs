//! The producer's outgoing requests: InitProducerId while it has no id (the transactional
//! requests first, see `txn_requests`), else Produce requests carrying the next ready batch of
//! each partition of one leader, sequenced and encoded on their first send.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::hash::Hash;

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, InitProducerIdRequest, ProduceRequest, RequestKind, TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;

use super::accumulator::{BatchRecords, BatchState, PartitionQueue};
use super::batch::restamp;
use super::idempotence::increment_sequence;
use super::inflight::{SentBatch, SentRequest};
use super::{
    BATCH_HEADER_LEN, BatchIdentity, Compression, DeliveryError, EncodeError, MAX_PRODUCE_VERSION,
    MAX_TRANSACTIONAL_PRODUCE_VERSION, MIN_PRODUCE_VERSION, Producer, ProducerError, ProducerEvent,
    ProducerIdentity,
};
use crate::client::{ApiVersionLookup, BrokerId, Outbound, Target};
use crate::record::TopicPartition;
use crate::time::Instant;

impl<O: Clone + Eq + Hash + Debug> Producer<O> {
    /// The next request to send: InitProducerId while the producer has no id, else a Produce
    /// request to one leader carrying one ready batch per partition (up to
    /// `max_request_size`), leaders taken in turn. A transactional producer's own requests
    /// (FindCoordinator, InitProducerId, AddPartitionsToTxn, ...) come first.
    pub fn poll_request(
        &mut self,
        now: Instant,
        versions: &dyn ApiVersionLookup,
    ) -> Option<Outbound> {
        let now = self.observe(now);
        self.expire(now);
        if self.fatal.is_some() {
            return None;
        }
        if self.txn.is_some() {
            self.advance_transaction();
            if let Some(outbound) = self.poll_transaction_request(now, versions) {
                return Some(outbound);
            }
            if self.fatal.is_some() {
                return None;
            }
        } else if self.identity.is_none() && !self.init_in_flight && now >= self.init_retry_at {
            let Some(version) = versions.version(ApiKey::InitProducerId) else {
                self.fail_all(ProducerError::UnsupportedVersion {
                    api: ApiKey::InitProducerId,
                });
                return None;
            };
            self.init_in_flight = true;
            let request = InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(self.config.delivery_timeout.as_millis_i32());
            tracing::debug!(version, "requesting a producer id");
            return Some(Outbound {
                target: Target::AnyBroker,
                request: RequestKind::InitProducerId(request),
                version,
            });
        }
        // Each pass either returns a request or fails at least one batch (encoding).
        for _ in 0..=self.partitions.len() {
            let ready = self.ready_by_leader(now);
            let broker = ready
                .range(self.last_broker.map_or(i32::MIN, |b| b.saturating_add(1))..)
                .next()
                .or_else(|| ready.iter().next())
                .map(|(broker, _)| *broker)?;
            let max = if self.txn.is_some() {
                MAX_TRANSACTIONAL_PRODUCE_VERSION
            } else {
                MAX_PRODUCE_VERSION
            };
            let version = match versions.version(ApiKey::Produce) {
                Some(version) if version >= MIN_PRODUCE_VERSION => version.min(max),
                _ => {
                    self.fail_all(ProducerError::UnsupportedVersion {
                        api: ApiKey::Produce,
                    });
                    return None;
                }
            };
            self.last_broker = Some(broker);
            let partitions = ready.get(&broker).cloned().unwrap_or_default();
            if let Some(outbound) = self.build_produce(broker, partitions, version) {
                return Some(outbound);
            }
            // Every selected batch failed to encode (and is failed): look again.
        }
        None
    }

    /// Partitions whose next batch may be sent now, by leader.
    fn ready_by_leader(&mut self, now: Instant) -> BTreeMap<BrokerId, Vec<TopicPartition>> {
        let mut ready: BTreeMap<BrokerId, Vec<TopicPartition>> = BTreeMap::new();
        let identity = self.identity;
        let txn = self.txn.as_ref();
        for (tp, queue) in &mut self.partitions {
            if queue.in_flight() >= self.config.max_in_flight_per_partition || now < queue.retry_at
            {
                continue;
            }
            // Every batch is in flight, or the queue is empty: nothing to send there.
            let Some(batch) = queue.next_to_send().and_then(|i| queue.batches.get(i)) else {
                continue;
            };
            let sendable = match batch.state {
                BatchState::RetryPending => true,
                BatchState::Unsent => {
                    batch.is_ready(now, self.config.batch_size, self.config.linger)
                        && identity.is_some_and(|id| !queue.has_other_identity(id))
                }
                BatchState::InFlight => false,
            };
            // In a transaction, only once the partition is in it (AddPartitionsToTxn).
            let sendable = sendable
                && txn.is_none_or(|txn| txn.may_send(tp, batch.state == BatchState::RetryPending));
            if !sendable {
                continue;
            }
            match self.leaders.get(tp) {
                Some(leader) => ready.entry(*leader).or_default().push(tp.clone()),
                None if !queue.leader_requested => {
                    queue.leader_requested = true;
                    self.ledger.push_event(ProducerEvent::RefreshMetadata {
                        topic: tp.topic.clone(),
                    });
                }
                None => {}
            }
        }
        ready
    }

    /// Builds one Produce request for `broker` from the next batch of each of `partitions`,
    /// which [`ready_by_leader`](Self::ready_by_leader) has just chosen.
    fn build_produce(
        &mut self,
        broker: BrokerId,
        partitions: Vec<TopicPartition>,
        version: i16,
    ) -> Option<Outbound> {
        let mut topics: Vec<TopicProduceData> = Vec::new();
        let mut sent = Vec::new();
        let mut total = 0usize;
        for tp in partitions {
            let queue = self
                .partitions
                .get_mut(&tp)
                .expect("ready_by_leader chose a partition that has a queue");
            let index = queue
                .next_to_send()
                .expect("ready_by_leader chose a partition with a batch to send");
            let batch = &queue.batches[index];
            let estimate = batch
                .encoded
                .as_ref()
                .map_or(batch.size + BATCH_HEADER_LEN, |b| b.len());
            if !sent.is_empty() && total + estimate > self.config.max_request_size {
                break;
            }
            let records = match &batch.encoded {
                // Sent before (a retry): the same bytes, the same sequence.
                Some(encoded) => encoded.clone(),
                None => {
                    let identity = self
                        .identity
                        .expect("ready_by_leader chooses unsent batches only under a producer id");
                    let transactional = self.txn.is_some();
                    match Self::sequence_and_encode(
                        queue,
                        index,
                        identity,
                        self.config.compression,
                        transactional,
                    ) {
                        Ok(encoded) => encoded,
                        Err(error) => {
                            let batch = queue
                                .batches
                                .remove(index)
                                .expect("index from next_to_send is in the queue");
                            self.ledger.fail(&tp, batch, DeliveryError::Encode(error));
                            continue;
                        }
                    }
                }
            };
            let batch = &mut queue.batches[index];
            batch.state = BatchState::InFlight;
            batch.attempt += 1;
            total += records.len();
            tracing::trace!(partition = %tp, broker, sequence = ?batch.sequence, attempt = batch.attempt, "sending batch");
            sent.push(SentBatch {
                topic_partition: tp.clone(),
                batch_id: batch.id,
                attempt: batch.attempt,
            });
            let data = PartitionProduceData::default()
                .with_index(tp.partition)
                .with_records(Some(records));
            match topics.last_mut() {
                Some(topic) if topic.name.0.as_str() == &*tp.topic => {
                    topic.partition_data.push(data)
                }
                _ => topics.push(
                    TopicProduceData::default()
                        .with_name(TopicName(StrBytes::from_string(tp.topic.to_string())))
                        .with_partition_data(vec![data]),
                ),
            }
        }
        if sent.is_empty() {
            return None;
        }
        self.in_flight.push(broker, SentRequest { batches: sent });
        let transactional_id = self.txn.as_ref().map(|txn| TransactionalId(txn.id.clone()));
        let request = ProduceRequest::default()
            .with_transactional_id(transactional_id)
            .with_acks(-1)
            .with_timeout_ms(self.config.request_timeout.as_millis_i32())
            .with_topic_data(topics);
        Some(Outbound {
            target: Target::Broker(broker),
            request: RequestKind::Produce(request),
            version,
        })
    }

    /// Gives the unsent batch at `index` (which must exist) the partition's next sequence
    /// under `identity` and encodes it (with the transactional attribute when
    /// `transactional`); returns the encoded batch, also kept for resends.
    fn sequence_and_encode(
        queue: &mut PartitionQueue<O>,
        index: usize,
        identity: ProducerIdentity,
        compression: Compression,
        transactional: bool,
    ) -> Result<Bytes, EncodeError> {
        if queue.sequence_owner != Some(identity) {
            queue.sequence_owner = Some(identity);
            queue.next_sequence = 0;
        }
        let base_sequence = queue.next_sequence;
        let batch = &mut queue.batches[index];
        let batch_identity = BatchIdentity {
            producer_id: identity.producer_id,
            producer_epoch: identity.producer_epoch,
            base_sequence,
        };
        let count = batch.record_count();
        // Taken out for `finish`; an error fails (drops) the batch, so nothing is lost here.
        let records = std::mem::replace(
            &mut batch.records,
            BatchRecords::Encoded {
                bytes: Bytes::new(),
                count,
            },
        );
        let encoded = match records {
            BatchRecords::Open(builder) => {
                builder.finish(batch_identity, compression, transactional)?
            }
            BatchRecords::Encoded { bytes, .. } => restamp(&bytes, batch_identity, transactional),
        };
        batch.records = BatchRecords::Encoded {
            bytes: encoded.clone(),
            count,
        };
        let count = i32::try_from(count).unwrap_or(i32::MAX);
        batch.sequence = Some((identity, base_sequence));
        batch.encoded = Some(encoded.clone());
        batch.closed = true;
        queue.next_sequence = increment_sequence(base_sequence, count);
        Ok(encoded)
    }
}
