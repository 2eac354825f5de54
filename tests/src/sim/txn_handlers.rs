//! The transaction APIs: InitProducerId, AddPartitionsToTxn (v0–v3, the client versions),
//! AddOffsetsToTxn, EndTxn and TxnOffsetCommit, and what ending a transaction does to the
//! partitions (markers, last stable offset) and groups (offsets made visible). The
//! coordinator's decisions are in [`super::txn`].
//!
//! Transactional ids and groups are coordinated by the broker [`SimCluster::coordinator_of`]
//! names; a request to another broker gets `NOT_COORDINATOR`. Every response sets only the
//! fields its version carries.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, EndTxnRequest, EndTxnResponse, InitProducerIdRequest,
    InitProducerIdResponse, ProducerId, RequestKind, ResponseKind, TxnOffsetCommitRequest,
    TxnOffsetCommitResponse,
};
use kafka_protocol::records::Compression;

use super::group::CommittedOffset;
use super::log::{AppendOutcome, IncomingBatch};
use super::txn::{Ending, Transaction, TransactionInfo};
use super::{Reply, RequestCtx, SimCluster, SimError, SimRecord, StoredRecord};

/// The response to a transaction API request when all of it fails with `code` (fault
/// injection and coordinator errors). `None` for other APIs.
pub(super) fn error_response(
    request: &RequestKind,
    version: i16,
    code: i16,
) -> Option<ResponseKind> {
    let _ = version;
    Some(match request {
        RequestKind::AddPartitionsToTxn(r) => {
            ResponseKind::AddPartitionsToTxn(add_partitions_response(r, |_, _| code))
        }
        RequestKind::AddOffsetsToTxn(_) => {
            ResponseKind::AddOffsetsToTxn(AddOffsetsToTxnResponse::default().with_error_code(code))
        }
        RequestKind::EndTxn(_) => {
            ResponseKind::EndTxn(EndTxnResponse::default().with_error_code(code))
        }
        RequestKind::TxnOffsetCommit(r) => {
            ResponseKind::TxnOffsetCommit(txn_offset_commit_response(r, |_, _| code))
        }
        _ => return None,
    })
}

fn add_partitions_response(
    r: &AddPartitionsToTxnRequest,
    mut code: impl FnMut(&str, i32) -> i16,
) -> AddPartitionsToTxnResponse {
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(
        r.v3_and_below_topics
            .iter()
            .map(|t| {
                AddPartitionsToTxnTopicResult::default()
                    .with_name(t.name.clone())
                    .with_results_by_partition(
                        t.partitions
                            .iter()
                            .map(|&p| {
                                AddPartitionsToTxnPartitionResult::default()
                                    .with_partition_index(p)
                                    .with_partition_error_code(code(t.name.0.as_str(), p))
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

fn txn_offset_commit_response(
    r: &TxnOffsetCommitRequest,
    mut code: impl FnMut(&str, i32) -> i16,
) -> TxnOffsetCommitResponse {
    TxnOffsetCommitResponse::default().with_topics(
        r.topics
            .iter()
            .map(|t| {
                TxnOffsetCommitResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                TxnOffsetCommitResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(code(t.name.0.as_str(), p.partition_index))
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

impl SimCluster {
    // ----- what the tests see ------------------------------------------------------------

    /// The producer and transaction of `transactional_id`, `None` before its InitProducerId.
    pub fn transaction(&self, transactional_id: &str) -> Option<TransactionInfo> {
        self.transactions
            .get(transactional_id)
            .map(TransactionInfo::from)
    }

    /// The partition's last stable offset: where read_committed consumers stop.
    pub fn last_stable_offset(&self, topic: &str, partition: i32) -> Result<i64, SimError> {
        Ok(self.partition(topic, partition)?.last_stable_offset())
    }

    /// Appends `records` as the first batch of a transaction of `producer_id` (a producer no
    /// coordinator knows) that is never ended: the partition's last stable offset stays at its
    /// first offset, as behind a transactional producer that hangs. Returns that offset.
    pub fn produce_open_transaction(
        &mut self,
        topic: &str,
        partition: i32,
        producer_id: i64,
        records: Vec<SimRecord>,
    ) -> Result<i64, SimError> {
        let outcome = self.partition_mut(topic, partition)?.append(IncomingBatch {
            producer_id,
            producer_epoch: 0,
            base_sequence: 0,
            transactional: true,
            compression: Compression::None,
            records,
        });
        let result = match outcome {
            AppendOutcome::Appended { base_offset } => Ok(base_offset),
            AppendOutcome::Duplicate { base_offset } => Ok(base_offset),
            AppendOutcome::Rejected(error) => Err(SimError::Append(error)),
        };
        self.wake_fetches();
        self.pump();
        result
    }

    /// The records a read_committed consumer of the partition sees, in offset order: below the
    /// last stable offset, without aborted transactions and markers.
    pub fn read_committed(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Vec<StoredRecord>, SimError> {
        Ok(self
            .partition(topic, partition)?
            .committed_records()
            .cloned()
            .collect())
    }

    /// [`read_committed`](Self::read_committed) from `offset` on (for readers that keep up
    /// with the log: the records below `offset` are not copied again).
    pub fn read_committed_from(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<Vec<StoredRecord>, SimError> {
        Ok(self
            .partition(topic, partition)?
            .committed_records_from(offset)
            .cloned()
            .collect())
    }

    // ----- the coordinator's timer and the partitions' side ------------------------------

    /// The earliest transaction timeout of an ongoing transaction.
    pub(super) fn next_transaction_deadline(&self) -> Option<i64> {
        self.transactions
            .values()
            .filter_map(Transaction::deadline)
            .min()
    }

    /// Aborts (with an epoch bump that fences their producers) the ongoing transactions whose
    /// timeout passed, as Kafka's coordinator does for a producer that went silent.
    pub(super) fn expire_transactions(&mut self) {
        let now = self.now;
        let expired: Vec<String> = self
            .transactions
            .iter()
            .filter(|(_, t)| t.deadline().is_some_and(|d| d <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            tracing::debug!(transactional_id = %id, "simulated coordinator: transaction timed out");
            if let Some(ending) = self
                .transactions
                .get_mut(&id)
                .and_then(Transaction::fence_and_abort)
            {
                self.apply_ending(ending);
            }
        }
    }

    /// Writes the markers of an ended transaction and, for a commit, makes its offsets
    /// visible; parked fetches see the new last stable offsets.
    fn apply_ending(&mut self, ending: Ending) {
        let timestamp = self.now.max(0);
        for (topic, partition) in &ending.partitions {
            let written = self.partition_mut(topic, *partition).map(|log| {
                log.write_marker(
                    ending.producer_id,
                    ending.producer_epoch,
                    ending.marker,
                    timestamp,
                )
            });
            // Partitions are only added when they exist, and topics are never deleted.
            debug_assert!(
                matches!(written, Ok(Ok(_))),
                "marker for {topic}-{partition}: {written:?}"
            );
            if !matches!(written, Ok(Ok(_))) {
                tracing::error!(%topic, partition, ?written, "simulated broker lost a transaction marker");
            }
        }
        for ((group, topic, partition), offset) in ending.offsets {
            self.groups
                .entry(group)
                .or_default()
                .offsets
                .insert((topic, partition), offset);
        }
        self.wake_fetches();
    }

    /// The transaction checks of a produced batch: a transactional batch needs the request's
    /// transactional id, that id's producer and epoch, and its partition added to an ongoing
    /// transaction; a non-transactional batch must come without a transactional id.
    pub(super) fn check_transactional_batch(
        &self,
        transactional_id: Option<&str>,
        batch: &IncomingBatch,
        topic: &str,
        partition: i32,
    ) -> Result<(), ResponseError> {
        match (transactional_id, batch.transactional) {
            (None, false) => Ok(()),
            (None, true) | (Some(_), false) => Err(ResponseError::InvalidTxnState),
            (Some(id), true) => self
                .transactions
                .get(id)
                .ok_or(ResponseError::InvalidProducerIdMapping)?
                .check_produce(batch.producer_id, batch.producer_epoch, topic, partition),
        }
    }

    /// Whether an ongoing transaction holds an offset for this group partition (OffsetFetch
    /// with `require_stable` then answers `UNSTABLE_OFFSET_COMMIT`).
    pub(super) fn has_pending_txn_offset(&self, group: &str, topic: &str, partition: i32) -> bool {
        self.transactions
            .values()
            .any(|t| t.holds_offset(group, topic, partition))
    }

    fn coordinates(&self, ctx: &RequestCtx, key: &str) -> bool {
        self.coordinator_of(key) == Some(ctx.broker)
    }

    /// The coordinator checks shared by the transaction APIs: this broker coordinates the id,
    /// the id has a producer, and the request's producer id and epoch are its current ones.
    fn checked_transaction(
        &mut self,
        ctx: &RequestCtx,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
    ) -> Result<&mut Transaction, ResponseError> {
        if !self.coordinates(ctx, transactional_id) {
            return Err(ResponseError::NotCoordinator);
        }
        let transaction = self
            .transactions
            .get_mut(transactional_id)
            .ok_or(ResponseError::InvalidProducerIdMapping)?;
        transaction.check_producer(producer_id, epoch)?;
        Ok(transaction)
    }

    // ----- handlers ----------------------------------------------------------------------

    pub(super) fn handle_init_producer_id(
        &mut self,
        ctx: &RequestCtx,
        r: &InitProducerIdRequest,
    ) -> Reply {
        let mut response = InitProducerIdResponse::default();
        let Some(txn) = r.transactional_id.as_ref().filter(|t| !t.0.is_empty()) else {
            let id = self.next_producer_id;
            self.next_producer_id += 1;
            response.producer_id = ProducerId(id);
            response.producer_epoch = 0;
            return Reply::respond(ResponseKind::InitProducerId(response));
        };
        match self.init_transactional_producer(ctx, txn.0.as_str(), r) {
            Ok((id, epoch)) => {
                response.producer_id = ProducerId(id);
                response.producer_epoch = epoch;
            }
            Err(error) => {
                response.error_code = error.code();
                response.producer_id = ProducerId(-1);
                response.producer_epoch = -1;
            }
        }
        Reply::respond(ResponseKind::InitProducerId(response))
    }

    /// InitProducerId with a transactional id: a new producer id the first time, else the
    /// epoch bumped (a new producer id once the epoch is exhausted), which fences the previous
    /// producer; its ongoing transaction is aborted first.
    fn init_transactional_producer(
        &mut self,
        ctx: &RequestCtx,
        txn: &str,
        r: &InitProducerIdRequest,
    ) -> Result<(i64, i16), ResponseError> {
        if !self.coordinates(ctx, txn) {
            return Err(ResponseError::NotCoordinator);
        }
        let max = self.config.transaction_max_timeout_ms;
        if r.transaction_timeout_ms <= 0 || r.transaction_timeout_ms > max {
            return Err(ResponseError::InvalidTransactionTimeout);
        }
        // KIP-360: a producer that names its id and epoch may only bump its own current one.
        if let Some(current) = self.transactions.get(txn)
            && ctx.version >= 3
            && r.producer_id.0 >= 0
            && (r.producer_id.0, r.producer_epoch) != (current.producer_id, current.producer_epoch)
        {
            return Err(ResponseError::ProducerFenced);
        }
        let Some(current) = self.transactions.get_mut(txn) else {
            let id = self.next_producer_id;
            self.next_producer_id += 1;
            self.transactions.insert(
                txn.to_owned(),
                Transaction::new(id, r.transaction_timeout_ms),
            );
            return Ok((id, 0));
        };
        let aborted = current.fence_and_abort();
        current.timeout_ms = r.transaction_timeout_ms;
        if aborted.is_none() {
            current.producer_epoch = current.producer_epoch.saturating_add(1);
        }
        if current.producer_epoch >= i16::MAX - 1 {
            let id = self.next_producer_id;
            self.next_producer_id += 1;
            current.producer_id = id;
            current.producer_epoch = 0;
        }
        let answer = (current.producer_id, current.producer_epoch);
        if let Some(ending) = aborted {
            self.apply_ending(ending);
        }
        Ok(answer)
    }

    pub(super) fn handle_add_partitions_to_txn(
        &mut self,
        ctx: &RequestCtx,
        r: &AddPartitionsToTxnRequest,
    ) -> Reply {
        let now = self.now;
        let unknown: Vec<(String, i32)> = r
            .v3_and_below_topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |&p| (t.name.0.to_string(), p)))
            .filter(|(topic, p)| self.partition(topic, *p).is_err())
            .collect();
        let checked = self
            .checked_transaction(
                ctx,
                r.v3_and_below_transactional_id.0.as_str(),
                r.v3_and_below_producer_id.0,
                r.v3_and_below_producer_epoch,
            )
            .map(|transaction| {
                if unknown.is_empty() {
                    transaction.begin(now);
                    for t in &r.v3_and_below_topics {
                        for &p in &t.partitions {
                            transaction.partitions.insert((t.name.0.to_string(), p));
                        }
                    }
                }
            });
        let response = match checked {
            Err(error) => add_partitions_response(r, |_, _| error.code()),
            Ok(()) if unknown.is_empty() => add_partitions_response(r, |_, _| 0),
            // Kafka adds none of them when one is unknown.
            Ok(()) => add_partitions_response(r, |topic, p| {
                if unknown.iter().any(|(t, q)| t == topic && *q == p) {
                    ResponseError::UnknownTopicOrPartition.code()
                } else {
                    ResponseError::OperationNotAttempted.code()
                }
            }),
        };
        Reply::respond(ResponseKind::AddPartitionsToTxn(response))
    }

    pub(super) fn handle_add_offsets_to_txn(
        &mut self,
        ctx: &RequestCtx,
        r: &AddOffsetsToTxnRequest,
    ) -> Reply {
        let now = self.now;
        let code = match self.checked_transaction(
            ctx,
            r.transactional_id.0.as_str(),
            r.producer_id.0,
            r.producer_epoch,
        ) {
            Ok(transaction) => {
                transaction.begin(now);
                transaction.groups.insert(r.group_id.0.to_string());
                0
            }
            Err(error) => error.code(),
        };
        Reply::respond(ResponseKind::AddOffsetsToTxn(
            AddOffsetsToTxnResponse::default().with_error_code(code),
        ))
    }

    pub(super) fn handle_end_txn(&mut self, ctx: &RequestCtx, r: &EndTxnRequest) -> Reply {
        let ended = self
            .checked_transaction(
                ctx,
                r.transactional_id.0.as_str(),
                r.producer_id.0,
                r.producer_epoch,
            )
            .and_then(|transaction| transaction.end_by_client(r.committed));
        let code = match ended {
            Ok(Some(ending)) => {
                self.apply_ending(ending);
                0
            }
            Ok(None) => 0,
            Err(error) => error.code(),
        };
        Reply::respond(ResponseKind::EndTxn(
            EndTxnResponse::default().with_error_code(code),
        ))
    }

    /// TxnOffsetCommit, served by the group's coordinator: the producer must be current and
    /// have added the group with AddOffsetsToTxn; from v3 on, a request that names a member
    /// or generation is checked against the group like an OffsetCommit (Kafka's
    /// `validateOffsetCommit` for transactional commits). The offsets stay pending until the
    /// transaction commits.
    pub(super) fn handle_txn_offset_commit(
        &mut self,
        ctx: &RequestCtx,
        r: &TxnOffsetCommitRequest,
    ) -> Reply {
        let group_id = r.group_id.0.to_string();
        let txn = r.transactional_id.0.to_string();
        let request_error = if !self.coordinates(ctx, &group_id) {
            Some(ResponseError::NotCoordinator)
        } else if let Err(error) = self.check_txn_commit_member(&group_id, r) {
            Some(error)
        } else {
            match self.transactions.get(&txn) {
                None => Some(ResponseError::InvalidProducerIdMapping),
                Some(t) => match t.check_producer(r.producer_id.0, r.producer_epoch) {
                    Err(error) => Some(error),
                    Ok(()) if !t.groups.contains(&group_id) => Some(ResponseError::InvalidTxnState),
                    Ok(()) => None,
                },
            }
        };
        if let Some(error) = request_error {
            return Reply::respond(ResponseKind::TxnOffsetCommit(txn_offset_commit_response(
                r,
                |_, _| error.code(),
            )));
        }
        let known: Vec<bool> = r
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| self.partition(t.name.0.as_str(), p.partition_index).is_ok())
            })
            .collect();
        if let Some(transaction) = self.transactions.get_mut(&txn) {
            let mut known = known.iter();
            for t in &r.topics {
                for p in &t.partitions {
                    if known.next() == Some(&true) {
                        transaction.pending_offsets.insert(
                            (group_id.clone(), t.name.0.to_string(), p.partition_index),
                            CommittedOffset {
                                offset: p.committed_offset,
                                leader_epoch: if ctx.version >= 2 {
                                    p.committed_leader_epoch
                                } else {
                                    -1
                                },
                                metadata: p.committed_metadata.clone(),
                            },
                        );
                    }
                }
            }
        }
        let now = self.now;
        if let Some(group) = self.groups.get_mut(&group_id) {
            group.touch(r.member_id.as_str(), now);
        }
        let mut known = known.into_iter();
        Reply::respond(ResponseKind::TxnOffsetCommit(txn_offset_commit_response(
            r,
            |_, _| {
                if known.next() == Some(true) {
                    0
                } else {
                    ResponseError::UnknownTopicOrPartition.code()
                }
            },
        )))
    }

    /// A transactional commit with no member and no generation (v0–v2, or a producer outside
    /// group management) is not checked against the group; otherwise as OffsetCommit.
    fn check_txn_commit_member(
        &self,
        group_id: &str,
        r: &TxnOffsetCommitRequest,
    ) -> Result<(), ResponseError> {
        if r.generation_id < 0 && r.member_id.is_empty() {
            return Ok(());
        }
        match self.groups.get(group_id) {
            Some(group) => group.check_commit(r.generation_id, r.member_id.as_str()),
            None => Err(ResponseError::IllegalGeneration),
        }
    }
}
