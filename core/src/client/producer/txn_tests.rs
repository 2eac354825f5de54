//! The transactional producer against a scripted fake broker: every request is checked (API,
//! target, version, fields, and that it encodes at that version) and answered by hand.

use std::collections::{BTreeMap, HashMap};

use bytes::{Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnResponse, AddPartitionsToTxnResponse, ApiKey, BrokerId as NodeId,
    EndTxnResponse, FindCoordinatorResponse, InitProducerIdResponse, ProduceResponse, ProducerId,
    RequestKind, ResponseKind, TopicName, TxnOffsetCommitResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{RecordBatchDecoder, RecordSet};

use super::*;
use crate::client::{Outbound, Target};
use crate::record::{Headers, ProducerRecord};
use crate::time::{Duration, Instant};

const TOPIC: &str = "out";
const TXN_ID: &str = "app-0_1";
const COORDINATOR: BrokerId = 9;
const PID: i64 = 7;

fn clock(ms: i64) -> Instant {
    Instant::from_millis(ms)
}

/// A broker that speaks every transactional API at versions above what the producer builds.
fn versions() -> HashMap<ApiKey, i16> {
    HashMap::from([
        (ApiKey::Produce, 12),
        (ApiKey::InitProducerId, 4),
        (ApiKey::FindCoordinator, 4),
        (ApiKey::AddPartitionsToTxn, 5),
        (ApiKey::AddOffsetsToTxn, 4),
        (ApiKey::TxnOffsetCommit, 5),
        (ApiKey::EndTxn, 5),
    ])
}

fn config() -> ProducerConfig {
    ProducerConfig {
        transactional_id: Some(TXN_ID.to_owned()),
        linger: Duration::from_millis(100),
        ..ProducerConfig::default()
    }
}

fn at(partition: i32, value: &str) -> ProducerRecord {
    ProducerRecord {
        topic: TOPIC.into(),
        partition: Some(partition),
        key: None,
        value: Some(Bytes::copy_from_slice(value.as_bytes())),
        timestamp: 1_000,
        headers: Headers::new(),
    }
}

/// Leader of partition p: broker 1 for even p, broker 2 for odd p.
fn leader(partition: i32) -> BrokerId {
    1 + partition % 2
}

fn group() -> GroupMetadata {
    GroupMetadata {
        group_id: "app".to_owned(),
        generation_id: 5,
        member_id: "member-1".to_owned(),
        group_instance_id: Some("instance-1".to_owned()),
    }
}

fn events(producer: &mut Producer<u32>) -> Vec<ProducerEvent<u32>> {
    std::iter::from_fn(|| producer.poll_event()).collect()
}

/// The next request; it must encode at the version it was built for.
fn poll(producer: &mut Producer<u32>, now: Instant) -> Option<Outbound> {
    let out = producer.poll_request(now, &versions())?;
    let mut buf = BytesMut::new();
    out.request
        .encode(&mut buf, out.version)
        .unwrap_or_else(|e| panic!("{out:?} does not encode at v{}: {e:#}", out.version));
    Some(out)
}

fn find_coordinator_response(node: BrokerId, error: Option<ResponseError>) -> ResponseKind {
    let coordinator = Coordinator::default()
        .with_key(StrBytes::from_static_str(TXN_ID))
        .with_node_id(NodeId(node))
        .with_host(StrBytes::from_static_str("localhost"))
        .with_port(9092)
        .with_error_code(error.map_or(0, |e| e.code()));
    ResponseKind::FindCoordinator(
        FindCoordinatorResponse::default().with_coordinators(vec![coordinator]),
    )
}

fn init_response(epoch: i16, error: Option<ResponseError>) -> ResponseKind {
    ResponseKind::InitProducerId(
        InitProducerIdResponse::default()
            .with_error_code(error.map_or(0, |e| e.code()))
            .with_producer_id(ProducerId(PID))
            .with_producer_epoch(epoch),
    )
}

fn add_partitions_response(parts: &[(i32, Option<ResponseError>)]) -> ResponseKind {
    let results = parts
        .iter()
        .map(|(p, e)| {
            AddPartitionsToTxnPartitionResult::default()
                .with_partition_index(*p)
                .with_partition_error_code(e.map_or(0, |e| e.code()))
        })
        .collect();
    ResponseKind::AddPartitionsToTxn(
        AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(vec![
            AddPartitionsToTxnTopicResult::default()
                .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                .with_results_by_partition(results),
        ]),
    )
}

fn add_offsets_response(error: Option<ResponseError>) -> ResponseKind {
    ResponseKind::AddOffsetsToTxn(
        AddOffsetsToTxnResponse::default().with_error_code(error.map_or(0, |e| e.code())),
    )
}

fn txn_offset_commit_response(
    topic: &'static str,
    parts: &[(i32, Option<ResponseError>)],
) -> ResponseKind {
    let partitions = parts
        .iter()
        .map(|(p, e)| {
            TxnOffsetCommitResponsePartition::default()
                .with_partition_index(*p)
                .with_error_code(e.map_or(0, |e| e.code()))
        })
        .collect();
    ResponseKind::TxnOffsetCommit(TxnOffsetCommitResponse::default().with_topics(vec![
        TxnOffsetCommitResponseTopic::default()
            .with_name(TopicName(StrBytes::from_static_str(topic)))
            .with_partitions(partitions),
    ]))
}

fn end_txn_response(error: Option<ResponseError>) -> ResponseKind {
    ResponseKind::EndTxn(EndTxnResponse::default().with_error_code(error.map_or(0, |e| e.code())))
}

fn produce_response(parts: &[(i32, Option<ResponseError>)]) -> ResponseKind {
    let partition_responses = parts
        .iter()
        .map(|(index, error)| {
            PartitionProduceResponse::default()
                .with_index(*index)
                .with_error_code(error.map_or(0, |e| e.code()))
                .with_base_offset(if error.is_none() { 0 } else { -1 })
        })
        .collect();
    ResponseKind::Produce(ProduceResponse::default().with_responses(vec![
        TopicProduceResponse::default()
            .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_partition_responses(partition_responses),
    ]))
}

/// A transactional producer with 4 partitions and their leaders known, not initialized.
fn fresh() -> Producer<u32> {
    let mut producer = Producer::new(config(), clock(0));
    producer.set_partition_count(TOPIC, 4);
    producer.update_leaders((0..4).map(|p| (TopicPartition::new(TOPIC, p), Some(leader(p)))));
    producer
}

/// Finds the coordinator and initializes: producer id 7, epoch 0.
fn initialize(producer: &mut Producer<u32>, now: Instant) {
    let find = poll(producer, now).expect("FindCoordinator");
    assert_eq!(find.target, Target::AnyBroker);
    let RequestKind::FindCoordinator(request) = &find.request else {
        panic!("expected FindCoordinator, got {find:?}");
    };
    assert_eq!(request.key_type, 1, "transaction coordinator");
    assert_eq!(
        request.coordinator_keys,
        vec![StrBytes::from_static_str(TXN_ID)]
    );
    producer
        .handle_response(0, find_coordinator_response(COORDINATOR, None), now)
        .unwrap();
    let init = poll(producer, now).expect("InitProducerId");
    assert_eq!(init.target, Target::Broker(COORDINATOR));
    let RequestKind::InitProducerId(request) = &init.request else {
        panic!("expected InitProducerId, got {init:?}");
    };
    assert_eq!(
        request.transactional_id.as_ref().map(|id| id.0.as_str()),
        Some(TXN_ID)
    );
    assert_eq!(request.transaction_timeout_ms, 60_000);
    producer
        .handle_response(COORDINATOR, init_response(0, None), now)
        .unwrap();
}

/// A producer initialized, its coordinator events taken.
fn ready() -> Producer<u32> {
    let mut producer = fresh();
    initialize(&mut producer, clock(0));
    assert_eq!(producer.transaction_state(), Some(TransactionState::Ready));
    events(&mut producer);
    producer
}

/// The partitions of an AddPartitionsToTxn (which must go to the coordinator at v3).
fn added_partitions(out: &Outbound) -> Vec<i32> {
    assert_eq!(out.target, Target::Broker(COORDINATOR), "{out:?}");
    assert_eq!(out.version, 3, "the client shape of AddPartitionsToTxn");
    let RequestKind::AddPartitionsToTxn(request) = &out.request else {
        panic!("expected AddPartitionsToTxn, got {out:?}");
    };
    assert_eq!(request.v3_and_below_transactional_id.0.as_str(), TXN_ID);
    assert_eq!(request.v3_and_below_producer_id.0, PID);
    request
        .v3_and_below_topics
        .iter()
        .flat_map(|t| {
            assert_eq!(t.name.0.as_str(), TOPIC);
            t.partitions.iter().copied()
        })
        .collect()
}

/// The broker and `(partition, records)` of a transactional Produce request (v11 at most).
fn produced(out: &Outbound) -> (BrokerId, Vec<(i32, RecordSet)>) {
    let Target::Broker(broker) = out.target else {
        panic!("produce to {:?}", out.target);
    };
    let RequestKind::Produce(request) = &out.request else {
        panic!("expected Produce, got {out:?}");
    };
    assert_eq!(out.version, 11, "transaction v1 caps Produce at v11");
    assert_eq!(
        request.transactional_id.as_ref().map(|id| id.0.as_str()),
        Some(TXN_ID)
    );
    let parts = request
        .topic_data
        .iter()
        .flat_map(|t| t.partition_data.iter())
        .map(|p| {
            let mut bytes = p.records.clone().expect("records");
            let set = RecordBatchDecoder::decode(&mut bytes).expect("decodable batch");
            for record in &set.records {
                assert!(record.transactional, "transactional attribute set");
            }
            (p.index, set)
        })
        .collect();
    (broker, parts)
}

fn end_txn(out: &Outbound) -> bool {
    assert_eq!(out.target, Target::Broker(COORDINATOR), "{out:?}");
    assert_eq!(out.version, 4, "transaction v1 caps EndTxn at v4");
    let RequestKind::EndTxn(request) = &out.request else {
        panic!("expected EndTxn, got {out:?}");
    };
    assert_eq!(request.transactional_id.0.as_str(), TXN_ID);
    request.committed
}

/// Appends records to `partitions`, adds them to the transaction and sends them: returns the
/// Produce requests in flight.
fn produce_in_transaction(
    producer: &mut Producer<u32>,
    owner: u32,
    partitions: &[i32],
) -> Vec<Outbound> {
    let records = partitions.iter().map(|p| at(*p, "v")).collect();
    producer.send_batch(owner, records, clock(0)).unwrap();
    producer.flush();
    let add = poll(producer, clock(0)).expect("AddPartitionsToTxn");
    let mut added = added_partitions(&add);
    added.sort();
    let mut wanted = partitions.to_vec();
    wanted.sort();
    wanted.dedup();
    assert_eq!(added, wanted);
    producer
        .handle_response(
            COORDINATOR,
            add_partitions_response(&added.iter().map(|p| (*p, None)).collect::<Vec<_>>()),
            clock(0),
        )
        .unwrap();
    std::iter::from_fn(|| poll(producer, clock(0))).collect()
}

#[test]
fn init_finds_the_transaction_coordinator_then_asks_for_an_epoch() {
    let mut producer = fresh();
    assert_eq!(
        producer.transaction_state(),
        Some(TransactionState::Initializing)
    );
    initialize(&mut producer, clock(0));
    assert_eq!(
        events(&mut producer),
        vec![ProducerEvent::TransactionCoordinatorFound {
            id: COORDINATOR,
            host: "localhost".to_owned(),
            port: 9092
        }]
    );
    assert_eq!(
        producer.identity(),
        Some(ProducerIdentity {
            producer_id: PID,
            producer_epoch: 0
        })
    );
    assert_eq!(producer.transaction_state(), Some(TransactionState::Ready));
    assert_eq!(producer.transaction_coordinator(), Some(COORDINATOR));
    assert_eq!(poll(&mut producer, clock(0)), None, "nothing to do");
}

#[test]
fn coordinator_errors_are_retried_after_a_backoff() {
    let mut producer = fresh();
    assert!(poll(&mut producer, clock(0)).is_some());
    producer
        .handle_response(
            0,
            find_coordinator_response(-1, Some(ResponseError::CoordinatorNotAvailable)),
            clock(0),
        )
        .unwrap();
    assert_eq!(poll(&mut producer, clock(50)), None);
    assert_eq!(producer.poll_timeout(), Some(clock(100)));
    let find = poll(&mut producer, clock(100)).unwrap();
    assert!(matches!(find.request, RequestKind::FindCoordinator(_)));
    producer
        .handle_response(0, find_coordinator_response(COORDINATOR, None), clock(100))
        .unwrap();
    // The coordinator is still loading the transaction log: InitProducerId again, same
    // coordinator.
    let init = poll(&mut producer, clock(100)).unwrap();
    assert!(matches!(init.request, RequestKind::InitProducerId(_)));
    producer
        .handle_response(
            COORDINATOR,
            init_response(0, Some(ResponseError::CoordinatorLoadInProgress)),
            clock(100),
        )
        .unwrap();
    assert_eq!(poll(&mut producer, clock(150)), None);
    let init = poll(&mut producer, clock(200)).unwrap();
    assert_eq!(init.target, Target::Broker(COORDINATOR));
    // It moved: found again, after the backoff.
    producer
        .handle_response(
            COORDINATOR,
            init_response(0, Some(ResponseError::NotCoordinator)),
            clock(200),
        )
        .unwrap();
    assert_eq!(poll(&mut producer, clock(250)), None);
    let find = poll(&mut producer, clock(300)).unwrap();
    assert!(matches!(find.request, RequestKind::FindCoordinator(_)));
    producer
        .handle_response(0, find_coordinator_response(3, None), clock(300))
        .unwrap();
    let init = poll(&mut producer, clock(300)).unwrap();
    assert_eq!(init.target, Target::Broker(3));
    producer
        .handle_response(3, init_response(0, None), clock(300))
        .unwrap();
    assert_eq!(producer.transaction_state(), Some(TransactionState::Ready));
}

#[test]
fn partitions_are_added_once_per_transaction_before_anything_is_produced() {
    let mut producer = ready();
    producer
        .send_batch(1, vec![at(0, "a"), at(1, "b"), at(2, "c")], clock(0))
        .unwrap();
    assert_eq!(
        producer.transaction_state(),
        Some(TransactionState::InTransaction)
    );
    producer.flush();
    // Batches are ready, but their partitions are not in the transaction yet.
    let add = poll(&mut producer, clock(0)).unwrap();
    assert_eq!(added_partitions(&add), vec![0, 1, 2]);
    assert_eq!(
        poll(&mut producer, clock(0)),
        None,
        "no Produce before the answer"
    );
    producer
        .send_batch(2, vec![at(0, "d"), at(3, "e")], clock(0))
        .unwrap();
    producer.flush();
    assert_eq!(
        poll(&mut producer, clock(0)),
        None,
        "one transactional request at a time"
    );
    producer
        .handle_response(
            COORDINATOR,
            add_partitions_response(&[(0, None), (1, None), (2, None)]),
            clock(0),
        )
        .unwrap();
    // Partition 3 is new: added first; partition 0 is in already.
    let add = poll(&mut producer, clock(0)).unwrap();
    assert_eq!(added_partitions(&add), vec![3]);
    let sent: Vec<_> = std::iter::from_fn(|| poll(&mut producer, clock(0)))
        .map(|out| produced(&out))
        .collect();
    let partitions: Vec<Vec<i32>> = sent
        .iter()
        .map(|(_, parts)| parts.iter().map(|(p, _)| *p).collect())
        .collect();
    // Partition 0's second batch follows its first; not partition 3 yet.
    assert_eq!(partitions, vec![vec![0, 2], vec![1], vec![0]]);
    producer
        .handle_response(COORDINATOR, add_partitions_response(&[(3, None)]), clock(0))
        .unwrap();
    let (broker, parts) = produced(&poll(&mut producer, clock(0)).unwrap());
    assert_eq!(broker, 2);
    assert_eq!(parts.iter().map(|(p, _)| *p).collect::<Vec<_>>(), vec![3]);
    let set = &parts[0].1;
    assert_eq!(
        (set.records[0].producer_id, set.records[0].producer_epoch),
        (PID, 0)
    );
}

/// Acknowledges every Produce in `requests`.
fn ack_all(producer: &mut Producer<u32>, requests: &[Outbound]) {
    for out in requests {
        let (broker, parts) = produced(out);
        let answer: Vec<_> = parts.iter().map(|(p, _)| (*p, None)).collect();
        producer
            .handle_response(broker, produce_response(&answer), clock(0))
            .unwrap();
    }
}

#[test]
fn commit_sends_offsets_and_end_txn_only_after_every_ack() {
    let mut producer = ready();
    let in_flight = produce_in_transaction(&mut producer, 1, &[0, 1]);
    assert_eq!(in_flight.len(), 2);
    let offsets = BTreeMap::from([
        (TopicPartition::new("in", 0), 42),
        (TopicPartition::new("in", 3), 7),
    ]);
    producer
        .commit_transaction(offsets.clone(), group())
        .unwrap();
    assert_eq!(
        producer.transaction_state(),
        Some(TransactionState::Committing)
    );
    let refused = producer
        .send_batch(2, vec![at(0, "late")], clock(0))
        .unwrap_err();
    assert_eq!(refused.error, ProducerError::TransactionEnding);
    assert_eq!(
        poll(&mut producer, clock(0)),
        None,
        "records not acknowledged yet"
    );
    ack_all(&mut producer, &in_flight[..1]);
    assert_eq!(
        poll(&mut producer, clock(0)),
        None,
        "one record not acknowledged yet"
    );
    ack_all(&mut producer, &in_flight[1..]);

    let add_offsets = poll(&mut producer, clock(0)).unwrap();
    assert_eq!(add_offsets.target, Target::Broker(COORDINATOR));
    let RequestKind::AddOffsetsToTxn(request) = &add_offsets.request else {
        panic!("expected AddOffsetsToTxn, got {add_offsets:?}");
    };
    assert_eq!(request.group_id.0.as_str(), "app");
    assert_eq!(request.producer_id.0, PID);
    producer
        .handle_response(COORDINATOR, add_offsets_response(None), clock(0))
        .unwrap();

    let commit = poll(&mut producer, clock(0)).unwrap();
    assert_eq!(commit.target, Target::Coordinator, "the group coordinator");
    assert_eq!(
        commit.version, 4,
        "transaction v1 caps TxnOffsetCommit at v4"
    );
    let RequestKind::TxnOffsetCommit(request) = &commit.request else {
        panic!("expected TxnOffsetCommit, got {commit:?}");
    };
    assert_eq!(request.transactional_id.0.as_str(), TXN_ID);
    assert_eq!(request.group_id.0.as_str(), "app");
    assert_eq!(request.generation_id, 5);
    assert_eq!(request.member_id.as_str(), "member-1");
    assert_eq!(
        request.group_instance_id.as_ref().map(|i| i.as_str()),
        Some("instance-1")
    );
    let sent: Vec<(i32, i64)> = request
        .topics
        .iter()
        .flat_map(|t| {
            assert_eq!(t.name.0.as_str(), "in");
            t.partitions
                .iter()
                .map(|p| (p.partition_index, p.committed_offset))
        })
        .collect();
    assert_eq!(sent, vec![(0, 42), (3, 7)]);
    // One partition is retried (the coordinator is loading), the other is stored.
    producer
        .handle_response(
            1,
            txn_offset_commit_response(
                "in",
                &[
                    (0, None),
                    (3, Some(ResponseError::CoordinatorLoadInProgress)),
                ],
            ),
            clock(0),
        )
        .unwrap();
    assert_eq!(poll(&mut producer, clock(50)), None, "backoff");
    let again = poll(&mut producer, clock(100)).unwrap();
    let RequestKind::TxnOffsetCommit(request) = &again.request else {
        panic!("expected TxnOffsetCommit, got {again:?}");
    };
    assert_eq!(request.topics[0].partitions.len(), 1);
    assert_eq!(request.topics[0].partitions[0].partition_index, 3);
    producer
        .handle_response(
            1,
            txn_offset_commit_response("in", &[(3, None)]),
            clock(100),
        )
        .unwrap();
    assert!(
        events(&mut producer)
            .iter()
            .all(|e| matches!(e, ProducerEvent::Acked { .. }))
    );

    let end = poll(&mut producer, clock(100)).unwrap();
    assert!(end_txn(&end), "EndTxn(commit)");
    assert_eq!(
        producer.abort_transaction(),
        Err(ProducerError::InvalidTransactionState {
            operation: "abort_transaction",
            state: TransactionState::Committing
        }),
        "no abort once EndTxn(commit) was sent"
    );
    producer
        .handle_response(COORDINATOR, end_txn_response(None), clock(100))
        .unwrap();
    assert_eq!(
        events(&mut producer),
        vec![ProducerEvent::TransactionCommitted { offsets }]
    );
    assert_eq!(producer.transaction_state(), Some(TransactionState::Ready));
    // The next transaction adds partition 0 again.
    producer
        .send_batch(2, vec![at(0, "next")], clock(100))
        .unwrap();
    let add = poll(&mut producer, clock(100)).unwrap();
    assert_eq!(added_partitions(&add), vec![0]);
}

#[test]
fn an_empty_transaction_commits_without_a_request() {
    let mut producer = ready();
    producer
        .commit_transaction(BTreeMap::new(), group())
        .unwrap();
    assert_eq!(
        events(&mut producer),
        vec![ProducerEvent::TransactionCommitted {
            offsets: BTreeMap::new()
        }]
    );
    assert_eq!(poll(&mut producer, clock(0)), None);
    // Also before the producer is initialized.
    let mut producer = fresh();
    producer
        .commit_transaction(BTreeMap::new(), group())
        .unwrap();
    assert!(matches!(
        events(&mut producer).as_slice(),
        [ProducerEvent::TransactionCommitted { .. }]
    ));
    // And an abort with nothing open.
    let mut producer = ready();
    producer.abort_transaction().unwrap();
    assert_eq!(
        events(&mut producer),
        vec![ProducerEvent::TransactionAborted]
    );
    assert_eq!(poll(&mut producer, clock(0)), None);
}

#[test]
fn offsets_alone_are_committed_in_a_transaction() {
    let mut producer = ready();
    let offsets = BTreeMap::from([(TopicPartition::new("in", 1), 10)]);
    producer
        .commit_transaction(offsets.clone(), group())
        .unwrap();
    let out = poll(&mut producer, clock(0)).unwrap();
    assert!(matches!(out.request, RequestKind::AddOffsetsToTxn(_)));
    producer
        .handle_response(COORDINATOR, add_offsets_response(None), clock(0))
        .unwrap();
    let out = poll(&mut producer, clock(0)).unwrap();
    assert!(matches!(out.request, RequestKind::TxnOffsetCommit(_)));
    producer
        .handle_response(1, txn_offset_commit_response("in", &[(1, None)]), clock(0))
        .unwrap();
    let out = poll(&mut producer, clock(0)).unwrap();
    assert!(end_txn(&out));
    producer
        .handle_response(COORDINATOR, end_txn_response(None), clock(0))
        .unwrap();
    assert_eq!(
        events(&mut producer),
        vec![ProducerEvent::TransactionCommitted { offsets }]
    );
}

#[test]
fn abort_fails_unsent_batches_and_waits_for_the_ones_in_flight() {
    let mut producer = ready();
    // Partitions 0 and 2 (broker 1) are in flight; partition 1's batch is not sent.
    producer
        .send_batch(1, vec![at(0, "a"), at(2, "b")], clock(0))
        .unwrap();
    producer.send_batch(2, vec![at(1, "c")], clock(0)).unwrap();
    producer.flush();
    let add = poll(&mut producer, clock(0)).unwrap();
    assert_eq!(added_partitions(&add), vec![0, 1, 2]);
    producer
        .handle_response(
            COORDINATOR,
            add_partitions_response(&[(0, None), (1, None), (2, None)]),
            clock(0),
        )
        .unwrap();
    let first = poll(&mut producer, clock(0)).unwrap();
    assert_eq!(produced(&first).0, 1);
    producer.abort_transaction().unwrap();
    assert_eq!(
        producer.transaction_state(),
        Some(TransactionState::Aborting)
    );
    assert_eq!(
        events(&mut producer),
        vec![ProducerEvent::Failed {
            owner: 2,
            topic_partition: TopicPartition::new(TOPIC, 1),
            count: 1,
            error: DeliveryError::Aborted
        }]
    );
    assert_eq!(
        poll(&mut producer, clock(0)),
        None,
        "no EndTxn while a Produce is in flight"
    );
    producer
        .handle_response(1, produce_response(&[(0, None), (2, None)]), clock(0))
        .unwrap();
    let end = poll(&mut producer, clock(0)).unwrap();
    assert!(!end_txn(&end), "EndTxn(abort)");
    producer
        .handle_response(COORDINATOR, end_txn_response(None), clock(0))
        .unwrap();
    let outcome: Vec<_> = events(&mut producer)
        .into_iter()
        .filter(|e| !matches!(e, ProducerEvent::Acked { .. }))
        .collect();
    assert_eq!(outcome, vec![ProducerEvent::TransactionAborted]);
    assert_eq!(producer.transaction_state(), Some(TransactionState::Ready));
    assert_eq!(
        producer.identity().map(|i| i.producer_epoch),
        Some(0),
        "nothing sequenced was dropped: same epoch"
    );
    // A new transaction adds its partitions again.
    producer.send_batch(3, vec![at(1, "d")], clock(0)).unwrap();
    let add = poll(&mut producer, clock(0)).unwrap();
    assert_eq!(added_partitions(&add), vec![1]);
}

#[test]
fn a_sequenced_batch_dropped_by_an_abort_makes_a_new_epoch() {
    let mut producer = ready();
    let sent = produce_in_transaction(&mut producer, 1, &[0]);
    producer.abort_transaction().unwrap();
    // The broker could not write it; the abort does not send it again.
    producer
        .handle_response(
            1,
            produce_response(&[(0, Some(ResponseError::NotEnoughReplicas))]),
            clock(0),
        )
        .unwrap();
    assert!(matches!(
        events(&mut producer).as_slice(),
        [ProducerEvent::Failed {
            error: DeliveryError::Aborted,
            ..
        }]
    ));
    assert_eq!(produced(&sent[0]).0, 1);
    let end = poll(&mut producer, clock(200)).unwrap();
    assert!(!end_txn(&end));
    producer
        .handle_response(COORDINATOR, end_txn_response(None), clock(200))
        .unwrap();
    assert_eq!(
        events(&mut producer),
        vec![ProducerEvent::TransactionAborted]
    );
    assert_eq!(
        producer.transaction_state(),
        Some(TransactionState::Initializing)
    );
    // KIP-360: the current identity is named so that the coordinator bumps its epoch.
    let init = poll(&mut producer, clock(200)).unwrap();
    assert_eq!(init.target, Target::Broker(COORDINATOR));
    let RequestKind::InitProducerId(request) = &init.request else {
        panic!("expected InitProducerId, got {init:?}");
    };
    assert_eq!((request.producer_id.0, request.producer_epoch), (PID, 0));
    producer
        .handle_response(COORDINATOR, init_response(1, None), clock(200))
        .unwrap();
    let sent = produce_in_transaction(&mut producer, 2, &[0]);
    let (_, parts) = produced(&sent[0]);
    let record = &parts[0].1.records[0];
    assert_eq!(
        (record.producer_epoch, record.sequence),
        (1, 0),
        "sequences restart under the new epoch"
    );
}

#[test]
fn a_failed_batch_fails_the_transaction_until_it_is_aborted() {
    let mut producer = ready();
    produce_in_transaction(&mut producer, 1, &[0]);
    producer
        .handle_response(
            1,
            produce_response(&[(0, Some(ResponseError::MessageTooLarge))]),
            clock(0),
        )
        .unwrap();
    let error = TransactionError::Delivery(DeliveryError::Broker(ResponseError::MessageTooLarge));
    assert_eq!(
        events(&mut producer),
        vec![
            ProducerEvent::Failed {
                owner: 1,
                topic_partition: TopicPartition::new(TOPIC, 0),
                count: 1,
                error: DeliveryError::Broker(ResponseError::MessageTooLarge)
            },
            ProducerEvent::TransactionFailed {
                error: error.clone()
            }
        ]
    );
    assert_eq!(
        producer.transaction_state(),
        Some(TransactionState::AbortableError)
    );
    let refused = producer
        .send_batch(2, vec![at(1, "x")], clock(0))
        .unwrap_err();
    assert_eq!(
        refused.error,
        ProducerError::TransactionAbortable(error.clone())
    );
    assert_eq!(
        producer.commit_transaction(BTreeMap::new(), group()),
        Err(ProducerError::TransactionAbortable(error))
    );
    producer.abort_transaction().unwrap();
    let end = poll(&mut producer, clock(0)).unwrap();
    assert!(!end_txn(&end));
    producer
        .handle_response(COORDINATOR, end_txn_response(None), clock(0))
        .unwrap();
    assert_eq!(
        events(&mut producer),
        vec![ProducerEvent::TransactionAborted]
    );
    assert_eq!(producer.transaction_state(), Some(TransactionState::Ready));
    producer.send_batch(2, vec![at(1, "x")], clock(0)).unwrap();
}

#[test]
fn a_refused_offset_commit_fails_the_transaction() {
    let mut producer = ready();
    let offsets = BTreeMap::from([(TopicPartition::new("in", 0), 3)]);
    producer.commit_transaction(offsets, group()).unwrap();
    let _add_offsets = poll(&mut producer, clock(0)).unwrap();
    producer
        .handle_response(COORDINATOR, add_offsets_response(None), clock(0))
        .unwrap();
    let _commit = poll(&mut producer, clock(0)).unwrap();
    // The member was kicked out of the group: a zombie must not commit.
    producer
        .handle_response(
            1,
            txn_offset_commit_response("in", &[(0, Some(ResponseError::IllegalGeneration))]),
            clock(0),
        )
        .unwrap();
    assert_eq!(
        events(&mut producer),
        vec![ProducerEvent::TransactionFailed {
            error: TransactionError::OffsetCommit {
                topic_partition: TopicPartition::new("in", 0),
                error: ResponseError::IllegalGeneration
            }
        }]
    );
    producer.abort_transaction().unwrap();
    let end = poll(&mut producer, clock(0)).unwrap();
    assert!(
        !end_txn(&end),
        "the offsets partition is in the transaction: EndTxn(abort)"
    );
}

#[test]
fn a_newer_instance_fences_this_one_on_produce() {
    let mut producer = ready();
    let sent = produce_in_transaction(&mut producer, 1, &[0, 1]);
    // A new instance with the same transactional id called InitProducerId: epoch 1.
    let (broker, _) = produced(&sent[0]);
    producer
        .handle_response(
            broker,
            produce_response(&[
                (0, Some(ResponseError::InvalidProducerEpoch)),
                (2, Some(ResponseError::InvalidProducerEpoch)),
            ]),
            clock(0),
        )
        .unwrap();
    let error = TransactionError::Fenced {
        api: ApiKey::Produce,
        error: ResponseError::InvalidProducerEpoch,
    };
    let evs = events(&mut producer);
    assert_eq!(
        evs.last(),
        Some(&ProducerEvent::Fenced {
            error: error.clone()
        })
    );
    assert!(
        evs.iter().any(|e| matches!(
            e,
            ProducerEvent::Failed {
                owner: 1,
                error: DeliveryError::ProducerFailed(_),
                topic_partition,
                ..
            } if topic_partition.partition == 1
        )),
        "the batch of the other broker fails too: {evs:?}"
    );
    assert!(
        !evs.iter()
            .any(|e| matches!(e, ProducerEvent::TransactionFailed { .. })),
        "fatal, not abortable: {evs:?}"
    );
    assert_eq!(producer.transaction_state(), Some(TransactionState::Fatal));
    assert_eq!(poll(&mut producer, clock(0)), None);
    let refused = producer
        .send_batch(2, vec![at(0, "x")], clock(0))
        .unwrap_err();
    assert_eq!(
        refused.error,
        ProducerError::TransactionFatal(error.clone())
    );
    assert_eq!(
        producer.abort_transaction(),
        Err(ProducerError::TransactionFatal(error))
    );
}

#[test]
fn a_newer_instance_fences_this_one_on_end_txn() {
    let mut producer = ready();
    let sent = produce_in_transaction(&mut producer, 1, &[0]);
    ack_all(&mut producer, &sent);
    producer
        .commit_transaction(BTreeMap::new(), group())
        .unwrap();
    let end = poll(&mut producer, clock(0)).unwrap();
    assert!(end_txn(&end));
    producer
        .handle_response(
            COORDINATOR,
            end_txn_response(Some(ResponseError::ProducerFenced)),
            clock(0),
        )
        .unwrap();
    let evs = events(&mut producer);
    assert_eq!(
        evs.last(),
        Some(&ProducerEvent::Fenced {
            error: TransactionError::Fenced {
                api: ApiKey::EndTxn,
                error: ResponseError::ProducerFenced
            }
        })
    );
    assert_eq!(producer.transaction_state(), Some(TransactionState::Fatal));
}

#[test]
fn the_coordinator_moving_mid_transaction_is_followed() {
    let mut producer = ready();
    producer.send_batch(1, vec![at(0, "a")], clock(0)).unwrap();
    let add = poll(&mut producer, clock(0)).unwrap();
    assert_eq!(added_partitions(&add), vec![0]);
    producer
        .handle_response(
            COORDINATOR,
            add_partitions_response(&[(0, Some(ResponseError::NotCoordinator))]),
            clock(0),
        )
        .unwrap();
    assert_eq!(poll(&mut producer, clock(50)), None);
    let find = poll(&mut producer, clock(100)).unwrap();
    assert!(matches!(find.request, RequestKind::FindCoordinator(_)));
    producer
        .handle_response(0, find_coordinator_response(4, None), clock(100))
        .unwrap();
    let add = poll(&mut producer, clock(100)).unwrap();
    assert_eq!(add.target, Target::Broker(4));
    producer
        .handle_response(4, add_partitions_response(&[(0, None)]), clock(100))
        .unwrap();
    let (_, parts) = produced(&poll(&mut producer, clock(100)).unwrap());
    assert_eq!(parts[0].0, 0);
    producer
        .handle_response(1, produce_response(&[(0, None)]), clock(100))
        .unwrap();
    producer
        .commit_transaction(BTreeMap::new(), group())
        .unwrap();
    let end = poll(&mut producer, clock(100)).unwrap();
    assert_eq!(end.target, Target::Broker(4));
    // No answer: the coordinator is looked for again and the EndTxn sent again (the
    // coordinator answers a repeated EndTxn of a completed commit with no error).
    producer.handle_request_failed(Target::Broker(4), ApiKey::EndTxn, clock(100));
    let find = poll(&mut producer, clock(200)).unwrap();
    assert!(matches!(find.request, RequestKind::FindCoordinator(_)));
    producer
        .handle_response(0, find_coordinator_response(4, None), clock(200))
        .unwrap();
    let end = poll(&mut producer, clock(200)).unwrap();
    let RequestKind::EndTxn(request) = &end.request else {
        panic!("expected EndTxn, got {end:?}");
    };
    assert!(request.committed);
    producer
        .handle_response(4, end_txn_response(None), clock(200))
        .unwrap();
    assert!(
        events(&mut producer)
            .iter()
            .any(|e| matches!(e, ProducerEvent::TransactionCommitted { .. }))
    );
}

#[test]
fn an_unanswered_add_partitions_is_resolved_before_the_abort() {
    let mut producer = ready();
    producer.send_batch(1, vec![at(2, "a")], clock(0)).unwrap();
    let _add = poll(&mut producer, clock(0)).unwrap();
    producer.handle_request_failed(
        Target::Broker(COORDINATOR),
        ApiKey::AddPartitionsToTxn,
        clock(0),
    );
    producer.abort_transaction().unwrap();
    assert!(matches!(
        events(&mut producer).as_slice(),
        [ProducerEvent::Failed {
            error: DeliveryError::Aborted,
            ..
        }]
    ));
    // Maybe added: the partition is added again (an idempotent request) so that the abort
    // knows the coordinator holds a transaction.
    let find = poll(&mut producer, clock(100)).unwrap();
    assert!(matches!(find.request, RequestKind::FindCoordinator(_)));
    producer
        .handle_response(0, find_coordinator_response(COORDINATOR, None), clock(100))
        .unwrap();
    let add = poll(&mut producer, clock(100)).unwrap();
    assert_eq!(added_partitions(&add), vec![2]);
    producer
        .handle_response(
            COORDINATOR,
            add_partitions_response(&[(2, None)]),
            clock(100),
        )
        .unwrap();
    let end = poll(&mut producer, clock(100)).unwrap();
    assert!(!end_txn(&end));
    producer
        .handle_response(COORDINATOR, end_txn_response(None), clock(100))
        .unwrap();
    assert!(
        events(&mut producer).contains(&ProducerEvent::TransactionAborted),
        "aborted"
    );
}

#[test]
fn brokers_without_transactions_are_a_typed_fatal_error() {
    for (api, negotiated) in [
        (ApiKey::EndTxn, None),
        (ApiKey::AddPartitionsToTxn, None),
        (ApiKey::TxnOffsetCommit, Some(2)),
    ] {
        let mut producer = fresh();
        producer.send_batch(1, vec![at(0, "a")], clock(0)).unwrap();
        let mut table = versions();
        match negotiated {
            Some(version) => table.insert(api, version),
            None => table.remove(&api),
        };
        assert_eq!(producer.poll_request(clock(0), &table), None);
        let evs = events(&mut producer);
        assert_eq!(
            evs.last(),
            Some(&ProducerEvent::TransactionsUnsupported { missing_api: api })
        );
        assert!(
            matches!(
                evs.first(),
                Some(ProducerEvent::Failed {
                    error: DeliveryError::ProducerFailed(_),
                    ..
                })
            ),
            "{evs:?}"
        );
        assert_eq!(producer.transaction_state(), Some(TransactionState::Fatal));
        let refused = producer
            .send_batch(1, vec![at(0, "b")], clock(0))
            .unwrap_err();
        assert_eq!(
            refused.error,
            ProducerError::TransactionFatal(TransactionError::Unsupported { missing_api: api })
        );
        assert_eq!(producer.poll_request(clock(0), &table), None);
    }
}

#[test]
fn transaction_methods_need_a_transactional_producer() {
    let mut producer: Producer<u32> = Producer::new(ProducerConfig::default(), clock(0));
    assert!(!producer.is_transactional());
    assert_eq!(producer.transaction_state(), None);
    assert_eq!(
        producer.commit_transaction(BTreeMap::new(), group()),
        Err(ProducerError::NotTransactional)
    );
    assert_eq!(
        producer.abort_transaction(),
        Err(ProducerError::NotTransactional)
    );
}

#[test]
fn transactional_batches_carry_the_transactional_attribute() {
    let identity = BatchIdentity {
        producer_id: 1,
        producer_epoch: 2,
        base_sequence: 3,
    };
    let plain = encode_batch(&[at(0, "a")], identity, Compression::None).unwrap();
    let txn = encode_transactional_batch(&[at(0, "a")], identity, Compression::None).unwrap();
    let decode = |bytes: &Bytes| {
        RecordBatchDecoder::decode(&mut bytes.clone())
            .unwrap()
            .records
            .remove(0)
    };
    assert!(!decode(&plain).transactional);
    assert!(decode(&txn).transactional);
    // Only the attribute (and with it the CRC) differs.
    assert_eq!(plain.len(), txn.len());
    assert_eq!(plain[..17], txn[..17]);
    assert_eq!(plain[23..], txn[23..]);
}

#[test]
fn the_first_add_of_a_transaction_retries_concurrent_transactions_sooner() {
    let mut producer = ready();
    producer.send_batch(1, vec![at(0, "a")], clock(0)).unwrap();
    let _add = poll(&mut producer, clock(0)).unwrap();
    producer
        .handle_response(
            COORDINATOR,
            add_partitions_response(&[(0, Some(ResponseError::ConcurrentTransactions))]),
            clock(0),
        )
        .unwrap();
    assert_eq!(producer.poll_timeout(), Some(clock(20)));
    let add = poll(&mut producer, clock(20)).unwrap();
    assert_eq!(added_partitions(&add), vec![0]);
    producer
        .handle_response(
            COORDINATOR,
            add_partitions_response(&[(0, None)]),
            clock(20),
        )
        .unwrap();
    // Later in the transaction: the usual backoff.
    producer.send_batch(1, vec![at(1, "b")], clock(20)).unwrap();
    let add = poll(&mut producer, clock(20))
        .into_iter()
        .chain(std::iter::from_fn(|| poll(&mut producer, clock(20))))
        .find(|out| matches!(out.request, RequestKind::AddPartitionsToTxn(_)))
        .expect("AddPartitionsToTxn of partition 1");
    assert_eq!(added_partitions(&add), vec![1]);
    producer
        .handle_response(
            COORDINATOR,
            add_partitions_response(&[(1, Some(ResponseError::ConcurrentTransactions))]),
            clock(20),
        )
        .unwrap();
    let early: Vec<Outbound> = std::iter::from_fn(|| poll(&mut producer, clock(100))).collect();
    assert!(
        early
            .iter()
            .all(|out| matches!(out.request, RequestKind::Produce(_))),
        "no AddPartitionsToTxn before the backoff: {early:?}"
    );
    let add = poll(&mut producer, clock(120)).unwrap();
    assert_eq!(added_partitions(&add), vec![1]);
}
