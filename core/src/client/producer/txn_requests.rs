//! The transactional producer's requests, one at a time: FindCoordinator (key type 1, the
//! transactional id) to any broker; InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn and
//! EndTxn to the transaction coordinator; TxnOffsetCommit to the group coordinator.
//!
//! Versions stay at transaction protocol v1 (KIP-890's v2 makes the coordinator bump the epoch
//! at every EndTxn and the brokers add partitions implicitly): AddPartitionsToTxn at most v3
//! (the client shape), EndTxn and TxnOffsetCommit at most v4, and the transactional Produce at
//! most v11, as Java's producer does on a cluster without `transaction.version` 2.
//! TxnOffsetCommit needs v3 (generation and member id, KIP-447).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::hash::Hash;

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, ApiKey, EndTxnRequest,
    FindCoordinatorRequest, GroupId, InitProducerIdRequest, ProducerId, RequestKind, TopicName,
    TransactionalId, TxnOffsetCommitRequest,
};
use kafka_protocol::protocol::StrBytes;

use super::txn_state::{Commit, CommitStep, CoordinatorState, Phase, TxnRequest};
use super::{Producer, ProducerIdentity, TransactionError};
use crate::client::{ApiVersionLookup, Outbound, Target};
use crate::record::TopicPartition;
use crate::time::Instant;

/// Highest Produce version a transactional producer builds (v12 means transaction v2).
pub const MAX_TRANSACTIONAL_PRODUCE_VERSION: i16 = 11;
/// Highest AddPartitionsToTxn version built (v4+ is the brokers' batched shape).
const MAX_ADD_PARTITIONS_VERSION: i16 = 3;
/// Highest EndTxn version built (v5 is transaction v2).
const MAX_END_TXN_VERSION: i16 = 4;
/// Highest TxnOffsetCommit version built (v5 is transaction v2).
const MAX_TXN_OFFSET_COMMIT_VERSION: i16 = 4;
/// FindCoordinator's key type of a transactional id.
const TRANSACTION_KEY_TYPE: i8 = 1;

/// The APIs transactions need, each with the lowest version that will do.
const REQUIRED_APIS: [(ApiKey, i16); 6] = [
    // v0 has no key type.
    (ApiKey::FindCoordinator, 1),
    (ApiKey::InitProducerId, 0),
    (ApiKey::AddPartitionsToTxn, 0),
    (ApiKey::AddOffsetsToTxn, 0),
    // v3 carries the generation and member id (KIP-447).
    (ApiKey::TxnOffsetCommit, 3),
    (ApiKey::EndTxn, 0),
];

impl<O: Clone + Eq + Hash + Debug> Producer<O> {
    /// The next transactional request, if one is due (see the module documentation).
    pub(super) fn poll_transaction_request(
        &mut self,
        now: Instant,
        versions: &dyn ApiVersionLookup,
    ) -> Option<Outbound> {
        let txn = self.txn.as_mut()?;
        if !txn.versions_checked {
            let missing = REQUIRED_APIS
                .iter()
                .find(|(api, _)| usable_version(versions, *api).is_none());
            if let Some(&(missing_api, _)) = missing {
                tracing::error!(?missing_api, "the brokers do not support transactions");
                self.fence(TransactionError::Unsupported { missing_api });
                return None;
            }
            txn.versions_checked = true;
        }
        if txn.request.is_some() {
            return None;
        }
        let next = self.next_transaction_request()?;
        let txn = self.txn.as_mut()?;
        let find =
            matches!(txn.coordinator, CoordinatorState::Unknown { retry_at } if now >= retry_at);
        let api = match next {
            TxnRequest::CommitOffsets(_) => ApiKey::TxnOffsetCommit,
            _ if find => ApiKey::FindCoordinator,
            _ => api_of(&next),
        };
        let Some(version) = usable_version(versions, api) else {
            self.fence(TransactionError::Unsupported { missing_api: api });
            return None;
        };
        let target = if api == ApiKey::TxnOffsetCommit {
            Target::Coordinator
        } else {
            match txn.coordinator {
                CoordinatorState::Known(id) => Target::Broker(id),
                CoordinatorState::Unknown { .. } if find => {
                    txn.coordinator = CoordinatorState::Finding;
                    tracing::debug!(version, "looking for the transaction coordinator");
                    return Some(find_coordinator(&txn.id, version));
                }
                CoordinatorState::Unknown { .. } | CoordinatorState::Finding => return None,
            }
        };
        if now < txn.retry_at {
            return None;
        }
        let request = self.build_transaction_request(&next, version);
        debug_assert!(
            request.is_some(),
            "{next:?} is chosen only with a producer id (and a commit for its offsets)"
        );
        let request = request?;
        let txn = self.txn.as_mut()?;
        tracing::debug!(request = ?next, ?target, "sending transactional request");
        if matches!(
            next,
            TxnRequest::AddPartitions(_) | TxnRequest::AddOffsets { .. }
        ) {
            txn.began.get_or_insert(now);
        }
        txn.request = Some(next);
        Some(Outbound {
            target,
            request,
            version,
        })
    }

    /// What the transaction needs next, whatever the coordinator and backoff.
    fn next_transaction_request(&self) -> Option<TxnRequest> {
        if self.identity.is_none() {
            return Some(TxnRequest::InitProducerId);
        }
        let txn = self.txn.as_ref()?;
        let to_add = self.partitions_to_add();
        if !to_add.is_empty() {
            return Some(TxnRequest::AddPartitions(to_add));
        }
        match &txn.phase {
            Phase::Committing(commit) => match commit.step {
                CommitStep::Flush => None,
                CommitStep::AddOffsets => Some(TxnRequest::AddOffsets {
                    group_id: commit.group.group_id.clone(),
                }),
                CommitStep::CommitOffsets => Some(TxnRequest::CommitOffsets(
                    commit.uncommitted.keys().cloned().collect(),
                )),
                CommitStep::EndTxn => Some(TxnRequest::EndTxn { commit: true }),
            },
            // An AddOffsetsToTxn that got no answer is sent again first: the abort must know
            // whether the coordinator holds a transaction.
            Phase::Aborting if self.abort_drained() => match &txn.unconfirmed_offsets {
                Some(group_id) => Some(TxnRequest::AddOffsets {
                    group_id: group_id.clone(),
                }),
                None if txn.started => Some(TxnRequest::EndTxn { commit: false }),
                None => None,
            },
            Phase::Idle | Phase::Open | Phase::Aborting | Phase::Failed(_) => None,
        }
    }

    /// Builds `next` for `version` (already capped).
    fn build_transaction_request(&self, next: &TxnRequest, version: i16) -> Option<RequestKind> {
        let txn = self.txn.as_ref()?;
        let id = TransactionalId(txn.id.clone());
        let commit = match &txn.phase {
            Phase::Committing(commit) => Some(commit),
            _ => None,
        };
        Some(match next {
            TxnRequest::InitProducerId => {
                let mut request = InitProducerIdRequest::default()
                    .with_transactional_id(Some(id))
                    .with_transaction_timeout_ms(self.config.transaction_timeout.as_millis_i32());
                // KIP-360: naming the current identity bumps its epoch, unless a newer
                // producer took over (then PRODUCER_FENCED).
                if let Some(previous) = txn.previous_identity
                    && version >= 3
                {
                    request = request
                        .with_producer_id(ProducerId(previous.producer_id))
                        .with_producer_epoch(previous.producer_epoch);
                }
                RequestKind::InitProducerId(request)
            }
            TxnRequest::AddPartitions(partitions) => add_partitions(id, self.identity?, partitions),
            TxnRequest::AddOffsets { group_id } => {
                let identity = self.identity?;
                RequestKind::AddOffsetsToTxn(
                    AddOffsetsToTxnRequest::default()
                        .with_transactional_id(id)
                        .with_producer_id(ProducerId(identity.producer_id))
                        .with_producer_epoch(identity.producer_epoch)
                        .with_group_id(GroupId(StrBytes::from_string(group_id.clone()))),
                )
            }
            TxnRequest::CommitOffsets(_) => txn_offset_commit(id, self.identity?, commit?),
            TxnRequest::EndTxn { commit } => {
                let identity = self.identity?;
                RequestKind::EndTxn(
                    EndTxnRequest::default()
                        .with_transactional_id(id)
                        .with_producer_id(ProducerId(identity.producer_id))
                        .with_producer_epoch(identity.producer_epoch)
                        .with_committed(*commit),
                )
            }
        })
    }
}

/// The API of a transactional request.
pub(super) fn api_of(request: &TxnRequest) -> ApiKey {
    match request {
        TxnRequest::InitProducerId => ApiKey::InitProducerId,
        TxnRequest::AddPartitions(_) => ApiKey::AddPartitionsToTxn,
        TxnRequest::AddOffsets { .. } => ApiKey::AddOffsetsToTxn,
        TxnRequest::CommitOffsets(_) => ApiKey::TxnOffsetCommit,
        TxnRequest::EndTxn { .. } => ApiKey::EndTxn,
    }
}

/// The version a transactional request of `api` is built for: the negotiated one, capped as
/// the module documentation says; `None` below the lowest version transactions can use.
fn usable_version(versions: &dyn ApiVersionLookup, api: ApiKey) -> Option<i16> {
    let negotiated = versions.version(api)?;
    let min = REQUIRED_APIS
        .iter()
        .find(|(required, _)| *required == api)
        .map_or(0, |(_, min)| *min);
    let max = match api {
        ApiKey::AddPartitionsToTxn => MAX_ADD_PARTITIONS_VERSION,
        ApiKey::EndTxn => MAX_END_TXN_VERSION,
        ApiKey::TxnOffsetCommit => MAX_TXN_OFFSET_COMMIT_VERSION,
        _ => i16::MAX,
    };
    (negotiated >= min).then_some(negotiated.min(max))
}

fn find_coordinator(id: &StrBytes, version: i16) -> Outbound {
    let request = FindCoordinatorRequest::default().with_key_type(TRANSACTION_KEY_TYPE);
    let request = if version >= 4 {
        request.with_coordinator_keys(vec![id.clone()])
    } else {
        request.with_key(id.clone())
    };
    Outbound {
        target: Target::AnyBroker,
        request: RequestKind::FindCoordinator(request),
        version,
    }
}

fn topic_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_owned()))
}

/// AddPartitionsToTxn in its client shape (v0-3), topics in partition order.
fn add_partitions(
    id: TransactionalId,
    identity: ProducerIdentity,
    partitions: &[TopicPartition],
) -> RequestKind {
    let mut topics: Vec<AddPartitionsToTxnTopic> = Vec::new();
    for tp in partitions {
        match topics.last_mut() {
            Some(topic) if topic.name.0.as_str() == &*tp.topic => {
                topic.partitions.push(tp.partition)
            }
            _ => topics.push(
                AddPartitionsToTxnTopic::default()
                    .with_name(topic_name(&tp.topic))
                    .with_partitions(vec![tp.partition]),
            ),
        }
    }
    RequestKind::AddPartitionsToTxn(
        AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(id)
            .with_v3_and_below_producer_id(ProducerId(identity.producer_id))
            .with_v3_and_below_producer_epoch(identity.producer_epoch)
            .with_v3_and_below_topics(topics),
    )
}

/// TxnOffsetCommit (v3+) of the offsets the commit has not stored yet.
fn txn_offset_commit(
    id: TransactionalId,
    identity: ProducerIdentity,
    commit: &Commit,
) -> RequestKind {
    let mut by_topic: BTreeMap<&str, Vec<TxnOffsetCommitRequestPartition>> = BTreeMap::new();
    for (tp, &offset) in &commit.uncommitted {
        by_topic.entry(&tp.topic).or_default().push(
            TxnOffsetCommitRequestPartition::default()
                .with_partition_index(tp.partition)
                .with_committed_offset(offset),
        );
    }
    let group = &commit.group;
    RequestKind::TxnOffsetCommit(
        TxnOffsetCommitRequest::default()
            .with_transactional_id(id)
            .with_group_id(GroupId(StrBytes::from_string(group.group_id.clone())))
            .with_producer_id(ProducerId(identity.producer_id))
            .with_producer_epoch(identity.producer_epoch)
            .with_generation_id(group.generation_id)
            .with_member_id(StrBytes::from_string(group.member_id.clone()))
            .with_group_instance_id(group.group_instance_id.clone().map(StrBytes::from_string))
            .with_topics(
                by_topic
                    .into_iter()
                    .map(|(topic, partitions)| {
                        TxnOffsetCommitRequestTopic::default()
                            .with_name(topic_name(topic))
                            .with_partitions(partitions)
                    })
                    .collect(),
            ),
    )
}
