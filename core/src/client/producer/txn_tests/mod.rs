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

mod failures;
mod fencing;
mod lifecycle;
