use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiKey, InitProducerIdResponse, ProduceRequest, ProduceResponse, ProducerId, RequestKind,
    ResponseKind, TopicName,
};
use kafka_protocol::protocol::Decodable;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{RecordBatchDecoder, RecordSet};

use super::*;
use crate::client::{Outbound, Target};
use crate::record::{Headers, ProducerRecord};
use crate::time::{Duration, Instant};

const TOPIC: &str = "out";
const PID: i64 = 7;

/// The clock reading `ms` milliseconds after the epoch.
fn clock(ms: i64) -> Instant {
    Instant::from_millis(ms)
}

fn versions(produce: i16) -> HashMap<ApiKey, i16> {
    HashMap::from([(ApiKey::Produce, produce), (ApiKey::InitProducerId, 4)])
}

fn record(
    partition: Option<i32>,
    key: Option<&str>,
    value: &str,
    timestamp: i64,
) -> ProducerRecord {
    ProducerRecord {
        topic: TOPIC.into(),
        partition,
        key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
        value: Some(Bytes::copy_from_slice(value.as_bytes())),
        timestamp,
        headers: Headers::new(),
    }
}

fn at(partition: i32, value: &str) -> ProducerRecord {
    record(Some(partition), None, value, 1_000)
}

/// Leader of partition p: broker 1 for even p, broker 2 for odd p.
fn leader(partition: i32) -> BrokerId {
    1 + partition % 2
}

/// A producer with 4 partitions, leaders known, and producer id 7 epoch 0.
fn producer(config: ProducerConfig) -> Producer<u32> {
    let mut producer = Producer::new(config, clock(0));
    producer.set_partition_count(TOPIC, 4);
    producer.update_leaders((0..4).map(|p| (TopicPartition::new(TOPIC, p), Some(leader(p)))));
    let init = producer
        .poll_request(clock(0), &versions(12))
        .expect("InitProducerId");
    assert_eq!(init.target, Target::AnyBroker);
    let RequestKind::InitProducerId(request) = init.request else {
        panic!("expected InitProducerId, got {init:?}");
    };
    assert_eq!(request.transactional_id, None);
    producer
        .handle_response(0, init_response(PID, 0), clock(0))
        .unwrap();
    assert_eq!(
        producer.identity(),
        Some(ProducerIdentity {
            producer_id: PID,
            producer_epoch: 0
        })
    );
    producer
}

fn init_response(producer_id: i64, epoch: i16) -> ResponseKind {
    let mut response = InitProducerIdResponse::default();
    response.producer_id = ProducerId(producer_id);
    response.producer_epoch = epoch;
    ResponseKind::InitProducerId(response)
}

fn config() -> ProducerConfig {
    ProducerConfig {
        linger: Duration::from_millis(100),
        ..ProducerConfig::default()
    }
}

/// `(partition, records bytes)` of a Produce request, with its target broker.
fn produce_parts(out: &Outbound) -> (BrokerId, Vec<(i32, Bytes)>) {
    let Target::Broker(broker) = out.target else {
        panic!("produce to {:?}", out.target);
    };
    let RequestKind::Produce(request) = &out.request else {
        panic!("expected Produce, got {out:?}");
    };
    assert_eq!(request.acks, -1);
    let parts = request
        .topic_data
        .iter()
        .flat_map(|t| {
            assert_eq!(t.name.0.as_str(), TOPIC);
            t.partition_data.iter()
        })
        .map(|p| (p.index, p.records.clone().expect("records")))
        .collect();
    (broker, parts)
}

fn decode(bytes: &Bytes) -> RecordSet {
    RecordBatchDecoder::decode(&mut bytes.clone()).expect("decodable batch")
}

fn base_sequence(bytes: &Bytes) -> i32 {
    decode(bytes).records[0].sequence
}

/// A Produce response with `(partition, error, base_offset)`.
fn produce_response(parts: &[(i32, ResponseError, i64)]) -> ResponseKind {
    produce_response_codes(
        &parts
            .iter()
            .map(|(p, e, o)| (*p, e.code(), *o))
            .collect::<Vec<_>>(),
    )
}

fn ok(parts: &[(i32, i64)]) -> ResponseKind {
    produce_response_codes(&parts.iter().map(|(p, o)| (*p, 0, *o)).collect::<Vec<_>>())
}

fn produce_response_codes(parts: &[(i32, i16, i64)]) -> ResponseKind {
    let partition_responses = parts
        .iter()
        .map(|(index, error_code, base_offset)| {
            let mut p = PartitionProduceResponse::default();
            p.index = *index;
            p.error_code = *error_code;
            p.base_offset = *base_offset;
            p
        })
        .collect();
    let mut topic = TopicProduceResponse::default();
    topic.name = TopicName(StrBytes::from_static_str(TOPIC));
    topic.partition_responses = partition_responses;
    let mut response = ProduceResponse::default();
    response.responses = vec![topic];
    ResponseKind::Produce(response)
}

fn events(producer: &mut Producer<u32>) -> Vec<ProducerEvent<u32>> {
    std::iter::from_fn(|| producer.poll_event()).collect()
}

fn poll_produce(
    producer: &mut Producer<u32>,
    now: Instant,
) -> Option<(BrokerId, Vec<(i32, Bytes)>)> {
    producer
        .poll_request(now, &versions(12))
        .map(|out| produce_parts(&out))
}

#[test]
fn asks_for_a_producer_id_before_producing() {
    let mut producer: Producer<u32> = Producer::new(config(), clock(0));
    producer.set_partition_count(TOPIC, 4);
    producer.update_leader(TopicPartition::new(TOPIC, 0), Some(1));
    producer.send_batch(1, vec![at(0, "a")], clock(0)).unwrap();
    producer.flush();
    let init = producer.poll_request(clock(0), &versions(12)).unwrap();
    assert!(matches!(init.request, RequestKind::InitProducerId(_)));
    assert_eq!(init.version, 4);
    // Nothing else until the id is known.
    assert_eq!(producer.poll_request(clock(0), &versions(12)), None);
    producer
        .handle_response(0, init_response(PID, 3), clock(0))
        .unwrap();
    let (_, parts) = poll_produce(&mut producer, clock(0)).unwrap();
    let set = decode(&parts[0].1);
    assert_eq!(set.records[0].producer_id, PID);
    assert_eq!(set.records[0].producer_epoch, 3);
    assert_eq!(set.records[0].sequence, 0);
}

#[test]
fn init_producer_id_is_retried_after_a_lost_request() {
    let mut producer: Producer<u32> = Producer::new(config(), clock(0));
    assert!(producer.poll_request(clock(0), &versions(12)).is_some());
    producer.handle_request_failed(Target::AnyBroker, ApiKey::InitProducerId, clock(10));
    assert_eq!(producer.poll_request(clock(50), &versions(12)), None);
    assert_eq!(producer.poll_timeout(), Some(clock(110)));
    let again = producer.poll_request(clock(110), &versions(12)).unwrap();
    assert!(matches!(again.request, RequestKind::InitProducerId(_)));
}

#[test]
fn a_batch_waits_for_linger() {
    let mut producer = producer(config());
    producer
        .send_batch(1, vec![at(0, "a")], clock(1_000))
        .unwrap();
    assert_eq!(poll_produce(&mut producer, clock(1_050)), None);
    assert_eq!(producer.poll_timeout(), Some(clock(1_100)));
    let (broker, parts) = poll_produce(&mut producer, clock(1_100)).unwrap();
    assert_eq!(broker, 1);
    assert_eq!(parts.len(), 1);
}

#[test]
fn a_full_batch_is_sent_without_waiting() {
    let mut producer = producer(ProducerConfig {
        batch_size: 200,
        linger: Duration::from_millis(10_000),
        ..config()
    });
    let value = "x".repeat(80);
    // Two records of ~120 bytes: the second does not fit, so the first batch is complete.
    producer
        .send_batch(1, vec![at(0, &value), at(0, &value)], clock(0))
        .unwrap();
    let (_, parts) = poll_produce(&mut producer, clock(0)).unwrap();
    assert_eq!(decode(&parts[0].1).records.len(), 1);
    // The second batch is open (not full, linger not passed): not sent yet.
    assert_eq!(poll_produce(&mut producer, clock(1)), None);
    // A record of batch_size bytes or more fills a batch by itself.
    producer
        .send_batch(1, vec![at(2, &"y".repeat(200))], clock(2))
        .unwrap();
    let (_, parts) = poll_produce(&mut producer, clock(2)).unwrap();
    assert_eq!(parts[0].0, 2);
}

#[test]
fn one_request_per_leader_with_all_its_partitions() {
    let mut producer = producer(config());
    let records = (0..4).map(|p| at(p, "v")).collect();
    producer.send_batch(1, records, clock(0)).unwrap();
    producer.flush();
    let mut requests = Vec::new();
    while let Some(request) = poll_produce(&mut producer, clock(0)) {
        requests.push(request);
    }
    let summary: Vec<(BrokerId, Vec<i32>)> = requests
        .iter()
        .map(|(b, parts)| (*b, parts.iter().map(|(p, _)| *p).collect()))
        .collect();
    assert_eq!(summary, vec![(1, vec![0, 2]), (2, vec![1, 3])]);
}

#[test]
fn sequences_grow_by_record_count_across_batches() {
    let mut producer = producer(config());
    let mut offset = 0;
    let mut sequences = Vec::new();
    for count in [2usize, 3, 1] {
        producer
            .send_batch(1, (0..count).map(|_| at(0, "v")).collect(), clock(0))
            .unwrap();
        producer.flush();
        let (broker, parts) = poll_produce(&mut producer, clock(0)).unwrap();
        sequences.push(base_sequence(&parts[0].1));
        producer
            .handle_response(broker, ok(&[(0, offset)]), clock(0))
            .unwrap();
        offset += count as i64;
    }
    assert_eq!(sequences, vec![0, 2, 5]);
    assert!(producer.is_flushed());
    assert_eq!(producer.unacked(&1), 0);
}

#[test]
fn at_most_five_batches_of_a_partition_in_flight() {
    let mut producer = producer(config());
    for i in 0..6 {
        producer
            .send_batch(1, vec![at(0, &format!("{i}"))], clock(0))
            .unwrap();
        producer.flush();
    }
    let sent: Vec<_> = std::iter::from_fn(|| poll_produce(&mut producer, clock(0))).collect();
    assert_eq!(sent.len(), 5);
    let sequences: Vec<i32> = sent.iter().map(|(_, p)| base_sequence(&p[0].1)).collect();
    assert_eq!(sequences, vec![0, 1, 2, 3, 4]);
    producer
        .handle_response(1, ok(&[(0, 0)]), clock(0))
        .unwrap();
    let (_, parts) = poll_produce(&mut producer, clock(0)).unwrap();
    assert_eq!(base_sequence(&parts[0].1), 5);
}

/// Three batches in flight for partition 0, owners 1, 2, 3; returns their bytes.
fn three_in_flight(producer: &mut Producer<u32>) -> Vec<Bytes> {
    for owner in 1..=3 {
        producer
            .send_batch(owner, vec![at(0, &format!("v{owner}"))], clock(0))
            .unwrap();
        producer.flush();
    }
    (0..3)
        .map(|_| poll_produce(producer, clock(0)).unwrap().1.remove(0).1)
        .collect()
}

#[test]
fn retriable_error_resends_the_batch_and_later_ones_in_order_with_same_sequences() {
    let mut producer = producer(config());
    let sent = three_in_flight(&mut producer);
    producer
        .handle_response(1, ok(&[(0, 40)]), clock(10))
        .unwrap();
    producer
        .handle_response(
            1,
            produce_response(&[(0, ResponseError::NotLeaderOrFollower, -1)]),
            clock(10),
        )
        .unwrap();
    // The broker rejects batch 3 too (a gap): that answer is stale and ignored.
    producer
        .handle_response(
            1,
            produce_response(&[(0, ResponseError::OutOfOrderSequenceNumber, -1)]),
            clock(10),
        )
        .unwrap();
    assert_eq!(
        events(&mut producer),
        vec![
            ProducerEvent::Acked {
                owner: 1,
                topic_partition: TopicPartition::new(TOPIC, 0),
                base_offset: Some(40),
                count: 1
            },
            ProducerEvent::RefreshMetadata {
                topic: TOPIC.into()
            },
        ]
    );
    assert_eq!(producer.unacked(&1), 0);
    assert_eq!(producer.unacked(&2), 1);
    assert_eq!(producer.unacked(&3), 1);
    // Backoff first.
    assert_eq!(poll_produce(&mut producer, clock(50)), None);
    assert_eq!(producer.poll_timeout(), Some(clock(110)));
    // Leadership moved to broker 2.
    producer.update_leader(TopicPartition::new(TOPIC, 0), Some(2));
    let (broker, resent2) = poll_produce(&mut producer, clock(110)).unwrap();
    let (_, resent3) = poll_produce(&mut producer, clock(110)).unwrap();
    assert_eq!(broker, 2);
    assert_eq!(
        resent2[0].1, sent[1],
        "batch 2 resent byte for byte (same sequence)"
    );
    assert_eq!(
        resent3[0].1, sent[2],
        "batch 3 resent byte for byte (same sequence)"
    );
    assert_eq!(base_sequence(&resent2[0].1), 1);
    assert_eq!(base_sequence(&resent3[0].1), 2);
    producer
        .handle_response(2, ok(&[(0, 41)]), clock(120))
        .unwrap();
    producer
        .handle_response(2, ok(&[(0, 42)]), clock(120))
        .unwrap();
    assert!(producer.is_flushed());
    let acked: Vec<u32> = events(&mut producer)
        .into_iter()
        .filter_map(|e| match e {
            ProducerEvent::Acked { owner, .. } => Some(owner),
            _ => None,
        })
        .collect();
    assert_eq!(acked, vec![2, 3]);
}

/// A later batch of the same producer id written means every earlier one was: a broker appends
/// a sequence only right after the one before it. So an earlier batch waiting to be retried
/// (its answer was an error, yet it may have been written, e.g. REQUEST_TIMED_OUT waiting for
/// replicas) is acknowledged then, and not sent again. Sent again later instead, it could fall
/// out of the broker's window of five recent batches and be refused as
/// OUT_OF_ORDER_SEQUENCE_NUMBER although it is in the log (seed 533 of `engine_seeds`).
#[test]
fn a_later_batch_written_means_the_earlier_ones_were() {
    let mut producer = producer(config());
    three_in_flight(&mut producer);
    producer
        .handle_response(
            1,
            produce_response(&[(0, ResponseError::RequestTimedOut, -1)]),
            clock(10),
        )
        .unwrap();
    producer
        .handle_response(1, ok(&[(0, 41)]), clock(10))
        .unwrap();
    let acked: Vec<(u32, Option<i64>)> = events(&mut producer)
        .into_iter()
        .filter_map(|e| match e {
            ProducerEvent::Acked {
                owner, base_offset, ..
            } => Some((owner, base_offset)),
            _ => None,
        })
        .collect();
    assert_eq!(acked, vec![(1, None), (2, Some(41))]);
    assert_eq!(producer.unacked(&1), 0);
    producer
        .handle_response(1, ok(&[(0, 42)]), clock(10))
        .unwrap();
    assert!(producer.is_flushed());
    assert_eq!(
        poll_produce(&mut producer, clock(200)),
        None,
        "nothing to resend"
    );
}

#[test]
fn a_lost_request_is_retried_like_a_retriable_error() {
    let mut producer = producer(config());
    let sent = three_in_flight(&mut producer);
    producer.handle_request_failed(Target::Broker(1), ApiKey::Produce, clock(5));
    producer.handle_request_failed(Target::Broker(1), ApiKey::Produce, clock(5));
    producer.handle_request_failed(Target::Broker(1), ApiKey::Produce, clock(5));
    let resent: Vec<Bytes> = (0..3)
        .map(|_| {
            poll_produce(&mut producer, clock(105))
                .unwrap()
                .1
                .remove(0)
                .1
        })
        .collect();
    assert_eq!(resent, sent);
}

#[test]
fn duplicate_sequence_number_counts_as_written() {
    let mut producer = producer(config());
    producer
        .send_batch(9, vec![at(0, "a"), at(0, "b")], clock(0))
        .unwrap();
    producer.flush();
    let (broker, _) = poll_produce(&mut producer, clock(0)).unwrap();
    producer
        .handle_response(
            broker,
            produce_response(&[(0, ResponseError::DuplicateSequenceNumber, -1)]),
            clock(0),
        )
        .unwrap();
    assert_eq!(
        events(&mut producer),
        vec![ProducerEvent::Acked {
            owner: 9,
            topic_partition: TopicPartition::new(TOPIC, 0),
            base_offset: None,
            count: 2
        }]
    );
    assert!(producer.is_flushed());
}

#[test]
fn a_base_offset_near_i64_max_acks_without_overflow() {
    let mut producer = producer(config());
    producer
        .send_batch(1, vec![at(0, "a"), at(0, "b")], clock(0))
        .unwrap();
    producer.send_batch(2, vec![at(0, "c")], clock(0)).unwrap();
    producer.flush();
    let (broker, _) = poll_produce(&mut producer, clock(0)).unwrap();
    producer
        .handle_response(broker, ok(&[(0, i64::MAX - 1)]), clock(0))
        .unwrap();
    let tp0 = TopicPartition::new(TOPIC, 0);
    assert_eq!(
        events(&mut producer),
        vec![
            ProducerEvent::Acked {
                owner: 1,
                topic_partition: tp0.clone(),
                base_offset: Some(i64::MAX - 1),
                count: 2
            },
            ProducerEvent::Acked {
                owner: 2,
                topic_partition: tp0,
                base_offset: None,
                count: 1
            },
        ]
    );
}

#[test]
fn non_retriable_error_fails_exactly_the_owners_of_that_batch() {
    let mut producer = producer(config());
    producer
        .send_batch(1, vec![at(0, "a"), at(0, "b")], clock(0))
        .unwrap();
    producer.send_batch(2, vec![at(0, "c")], clock(0)).unwrap();
    producer.send_batch(3, vec![at(2, "d")], clock(0)).unwrap();
    producer.flush();
    let (broker, parts) = poll_produce(&mut producer, clock(0)).unwrap();
    assert_eq!(parts.len(), 2);
    producer
        .handle_response(
            broker,
            produce_response(&[
                (0, ResponseError::MessageTooLarge, -1),
                (2, ResponseError::Unknown(0), 7),
            ]),
            clock(0),
        )
        .unwrap();
    let tp0 = TopicPartition::new(TOPIC, 0);
    let failed = DeliveryError::Broker(ResponseError::MessageTooLarge);
    assert_eq!(
        events(&mut producer),
        vec![
            ProducerEvent::Failed {
                owner: 1,
                topic_partition: tp0.clone(),
                count: 2,
                error: failed.clone()
            },
            ProducerEvent::Failed {
                owner: 2,
                topic_partition: tp0,
                count: 1,
                error: failed
            },
            ProducerEvent::Acked {
                owner: 3,
                topic_partition: TopicPartition::new(TOPIC, 2),
                base_offset: Some(7),
                count: 1
            },
        ]
    );
    assert_eq!(
        (
            producer.unacked(&1),
            producer.unacked(&2),
            producer.unacked(&3)
        ),
        (0, 0, 0)
    );
    assert_eq!(producer.buffered_bytes(), 0);
    // Nothing was sent after the rejected batch: its sequences are reused, same producer id.
    producer.send_batch(4, vec![at(0, "e")], clock(1)).unwrap();
    producer.flush();
    let (_, parts) = poll_produce(&mut producer, clock(1)).unwrap();
    assert_eq!(base_sequence(&parts[0].1), 0);
    assert_eq!(decode(&parts[0].1).records[0].producer_id, PID);
}

#[test]
fn broken_sequence_fails_the_batch_and_resends_later_ones_under_a_new_producer_id() {
    let mut producer = producer(config());
    three_in_flight(&mut producer);
    producer
        .handle_response(
            1,
            produce_response(&[(0, ResponseError::UnknownProducerId, -1)]),
            clock(0),
        )
        .unwrap();
    assert!(matches!(
        events(&mut producer).as_slice(),
        [ProducerEvent::Failed { owner: 1, .. }]
    ));
    // Stale answers for batches 2 and 3 are ignored.
    for _ in 0..2 {
        producer
            .handle_response(
                1,
                produce_response(&[(0, ResponseError::OutOfOrderSequenceNumber, -1)]),
                clock(0),
            )
            .unwrap();
    }
    assert!(events(&mut producer).is_empty());
    let init = producer.poll_request(clock(0), &versions(12)).unwrap();
    assert!(matches!(init.request, RequestKind::InitProducerId(_)));
    producer
        .handle_response(0, init_response(8, 0), clock(0))
        .unwrap();
    let (_, first) = poll_produce(&mut producer, clock(0)).unwrap();
    let (_, second) = poll_produce(&mut producer, clock(0)).unwrap();
    let first = decode(&first[0].1);
    let second = decode(&second[0].1);
    assert_eq!(
        (first.records[0].producer_id, first.records[0].sequence),
        (8, 0)
    );
    assert_eq!(
        (second.records[0].producer_id, second.records[0].sequence),
        (8, 1)
    );
    assert_eq!(first.records[0].value.as_deref(), Some(&b"v2"[..]));
    assert_eq!(second.records[0].value.as_deref(), Some(&b"v3"[..]));
}

#[test]
fn delivery_timeout_fails_a_batch_that_cannot_be_sent() {
    let mut producer = producer(ProducerConfig {
        delivery_timeout: Duration::from_millis(1_000),
        ..config()
    });
    producer.send_batch(5, vec![at(3, "a")], clock(0)).unwrap();
    producer.update_leader(TopicPartition::new(TOPIC, 3), None);
    assert_eq!(poll_produce(&mut producer, clock(200)), None);
    assert_eq!(
        events(&mut producer),
        vec![ProducerEvent::RefreshMetadata {
            topic: TOPIC.into()
        }]
    );
    assert_eq!(producer.poll_timeout(), Some(clock(1_000)));
    producer.handle_timeout(clock(1_000));
    assert_eq!(
        events(&mut producer),
        vec![ProducerEvent::Failed {
            owner: 5,
            topic_partition: TopicPartition::new(TOPIC, 3),
            count: 1,
            error: DeliveryError::DeliveryTimeout {
                timeout: Duration::from_millis(1_000)
            }
        }]
    );
    assert!(producer.is_flushed());
}

#[test]
fn delivery_timeout_bounds_retries() {
    let mut producer = producer(ProducerConfig {
        delivery_timeout: Duration::from_millis(1_000),
        ..config()
    });
    producer.send_batch(5, vec![at(0, "a")], clock(0)).unwrap();
    producer.flush();
    let mut now = clock(0);
    while let Some(Outbound {
        target: Target::Broker(broker),
        ..
    }) = producer.poll_request(now, &versions(12))
    {
        producer
            .handle_response(
                broker,
                produce_response(&[(0, ResponseError::NotEnoughReplicas, -1)]),
                now,
            )
            .unwrap();
        now += Duration::from_millis(100);
    }
    // Sent at 0, 100, ..., 900; at 1000 the batch expires instead of being resent.
    assert_eq!(now, clock(1_000));
    let failed: Vec<_> = events(&mut producer)
        .into_iter()
        .filter(|e| {
            matches!(
                e,
                ProducerEvent::Failed {
                    error: DeliveryError::DeliveryTimeout { .. },
                    ..
                }
            )
        })
        .collect();
    assert_eq!(failed.len(), 1);
    assert!(producer.is_flushed());
    // The batch may have been written: its sequences are burnt, a new producer id is due.
    assert_eq!(producer.identity(), None);
}

#[test]
fn flush_makes_every_batch_ready() {
    let mut producer = producer(ProducerConfig {
        linger: Duration::from_millis(60_000),
        ..config()
    });
    producer
        .send_batch(1, (0..4).map(|p| at(p, "v")).collect(), clock(0))
        .unwrap();
    assert_eq!(poll_produce(&mut producer, clock(1)), None);
    producer.flush();
    let first = poll_produce(&mut producer, clock(1)).unwrap();
    let second = poll_produce(&mut producer, clock(1)).unwrap();
    assert!(!producer.is_flushed());
    producer
        .handle_response(first.0, ok(&[(0, 0), (2, 0)]), clock(2))
        .unwrap();
    producer
        .handle_response(second.0, ok(&[(1, 0), (3, 0)]), clock(2))
        .unwrap();
    assert!(producer.is_flushed());
}

#[test]
fn buffer_full_gives_the_records_back() {
    let mut producer = producer(ProducerConfig {
        buffer_memory: 100,
        ..config()
    });
    producer
        .send_batch(1, vec![at(0, &"x".repeat(60))], clock(0))
        .unwrap();
    let refused = vec![at(0, &"y".repeat(60))];
    let err = producer
        .send_batch(2, refused.clone(), clock(0))
        .unwrap_err();
    assert!(
        matches!(err.error, ProducerError::BufferFull { .. }),
        "{err}"
    );
    assert_eq!(err.records, refused);
    assert_eq!(producer.unacked(&2), 0);
    producer.flush();
    let (broker, _) = poll_produce(&mut producer, clock(0)).unwrap();
    producer
        .handle_response(broker, ok(&[(0, 0)]), clock(0))
        .unwrap();
    assert_eq!(producer.send_batch(2, err.records, clock(0)), Ok(1));
}

#[test]
fn unknown_partition_count_is_refused_without_losing_records() {
    let mut producer = producer(config());
    let records = vec![ProducerRecord {
        topic: "elsewhere".into(),
        ..record(None, Some("k"), "v", 0)
    }];
    let err = producer
        .send_batch(1, records.clone(), clock(0))
        .unwrap_err();
    assert_eq!(
        err.error,
        ProducerError::UnknownPartitionCount {
            topic: "elsewhere".into()
        }
    );
    assert_eq!(err.records, records);
    assert!(producer.is_flushed());
}

#[test]
fn keyed_records_go_to_the_murmur2_partition() {
    let mut producer = producer(config());
    let keys = ["alpha", "beta", "gamma", "delta", "epsilon"];
    producer
        .send_batch(
            1,
            keys.iter().map(|k| record(None, Some(k), k, 0)).collect(),
            clock(0),
        )
        .unwrap();
    producer.flush();
    let mut placed = Vec::new();
    while let Some((_, parts)) = poll_produce(&mut producer, clock(0)) {
        for (partition, bytes) in parts {
            for r in decode(&bytes).records {
                placed.push((
                    String::from_utf8(r.key.unwrap().to_vec()).unwrap(),
                    partition,
                ));
            }
        }
    }
    placed.sort();
    let mut expected: Vec<(String, i32)> = keys
        .iter()
        .map(|k| {
            (
                k.to_string(),
                crate::partitioner::default_partition(k.as_bytes(), 4),
            )
        })
        .collect();
    expected.sort();
    assert_eq!(placed, expected);
}

#[test]
fn null_keys_stick_to_a_partition_until_its_batch_is_sent() {
    let mut producer = producer(config());
    producer
        .send_batch(
            1,
            (0..3)
                .map(|i| record(None, None, &i.to_string(), 0))
                .collect(),
            clock(0),
        )
        .unwrap();
    producer.flush();
    let (_, parts) = poll_produce(&mut producer, clock(0)).unwrap();
    assert_eq!(
        parts.len(),
        1,
        "all three null-key records in one partition"
    );
    let (first_partition, bytes) = &parts[0];
    assert_eq!(decode(bytes).records.len(), 3);
    assert_eq!(poll_produce(&mut producer, clock(0)), None);
    // The batch was sent: the next null-key record goes elsewhere.
    producer
        .send_batch(1, vec![record(None, None, "3", 0)], clock(0))
        .unwrap();
    producer.flush();
    let (_, parts) = poll_produce(&mut producer, clock(0)).unwrap();
    assert_ne!(parts[0].0, *first_partition);
}

#[test]
fn requests_encode_at_produce_v3_and_v12() {
    for (negotiated, built) in [(3, 3), (9, 9), (12, 12), (13, 12)] {
        let mut producer = producer(config());
        producer
            .send_batch(1, vec![at(0, "a"), at(2, "b")], clock(0))
            .unwrap();
        producer.flush();
        let out = producer
            .poll_request(clock(0), &versions(negotiated))
            .unwrap();
        assert_eq!(out.version, built);
        let RequestKind::Produce(request) = &out.request else {
            panic!("{out:?}");
        };
        let mut buf = BytesMut::new();
        out.request.encode(&mut buf, out.version).unwrap();
        let decoded = ProduceRequest::decode(&mut buf.freeze(), out.version).unwrap();
        assert_eq!(&decoded, request);
        assert_eq!(decoded.timeout_ms, 30_000);
    }
}

#[test]
fn produce_below_v3_is_a_fatal_error_not_a_request() {
    let mut producer = producer(config());
    producer.send_batch(1, vec![at(0, "a")], clock(0)).unwrap();
    producer.flush();
    assert_eq!(producer.poll_request(clock(0), &versions(2)), None);
    assert!(matches!(
        events(&mut producer).as_slice(),
        [ProducerEvent::Failed {
            owner: 1,
            error: DeliveryError::ProducerFailed(_),
            ..
        }]
    ));
    let err = producer
        .send_batch(1, vec![at(0, "b")], clock(0))
        .unwrap_err();
    assert_eq!(
        err.error,
        ProducerError::UnsupportedVersion {
            api: ApiKey::Produce
        }
    );
}

fn headed(key: Option<&str>, value: Option<&str>, timestamp: i64) -> ProducerRecord {
    let mut headers = Headers::new();
    headers
        .add("h", Some(Bytes::from_static(b"1")))
        .add("other", None)
        .add("h", Some(Bytes::from_static(b"2")));
    ProducerRecord {
        topic: TOPIC.into(),
        partition: Some(0),
        key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
        value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
        timestamp,
        headers,
    }
}

#[test]
fn batches_decode_back_to_the_records_with_every_codec() {
    let records = vec![
        headed(Some("k1"), Some("v1"), 1_000),
        headed(None, Some("v2"), 999),
        headed(Some("k3"), None, 1_005),
    ];
    let identity = BatchIdentity {
        producer_id: 42,
        producer_epoch: 3,
        base_sequence: 17,
    };
    for compression in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let bytes = encode_batch(&records, identity, compression).unwrap();
        let set = decode(&bytes);
        assert_eq!(set.compression, compression);
        assert_eq!(set.records.len(), 3);
        for (i, (got, sent)) in set.records.iter().zip(&records).enumerate() {
            assert_eq!(got.key, sent.key, "{compression:?}");
            assert_eq!(got.value, sent.value, "{compression:?}");
            assert_eq!(got.timestamp, sent.timestamp, "{compression:?}");
            assert_eq!(got.offset, i as i64);
            assert_eq!(got.sequence, 17 + i as i32);
            assert_eq!((got.producer_id, got.producer_epoch), (42, 3));
            // kafka-protocol's IndexMap keeps one value per key: the last "h" at the position
            // of the first. The wire holds all three headers (see below).
            let headers: Vec<(&str, Option<&[u8]>)> = got
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_deref()))
                .collect();
            assert_eq!(headers, vec![("h", Some(&b"2"[..])), ("other", None)]);
        }
    }
}

/// Reads a zig-zag varint at `pos`.
fn varint(bytes: &[u8], pos: &mut usize) -> i64 {
    let mut value = 0u64;
    let mut shift = 0;
    loop {
        let byte = bytes[*pos];
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

fn field<'a>(bytes: &'a [u8], pos: &mut usize) -> Option<&'a [u8]> {
    let len = varint(bytes, pos);
    (len >= 0).then(|| {
        let start = *pos;
        *pos += len as usize;
        &bytes[start..*pos]
    })
}

#[test]
fn the_wire_keeps_duplicate_header_keys_in_order() {
    let bytes = encode_batch(
        &[headed(Some("k"), Some("v"), 5)],
        BatchIdentity {
            producer_id: 1,
            producer_epoch: 0,
            base_sequence: 0,
        },
        Compression::None,
    )
    .unwrap();
    let section = &bytes[BATCH_HEADER_LEN..];
    let mut pos = 0;
    let length = varint(section, &mut pos) as usize;
    assert_eq!(pos + length, section.len());
    pos += 1; // attributes
    assert_eq!(varint(section, &mut pos), 0); // timestamp delta
    assert_eq!(varint(section, &mut pos), 0); // offset delta
    assert_eq!(field(section, &mut pos), Some(&b"k"[..]));
    assert_eq!(field(section, &mut pos), Some(&b"v"[..]));
    assert_eq!(varint(section, &mut pos), 3);
    let headers: Vec<(&[u8], Option<&[u8]>)> = (0..3)
        .map(|_| {
            let key = field(section, &mut pos).unwrap();
            (key, field(section, &mut pos))
        })
        .collect();
    assert_eq!(
        headers,
        vec![
            (&b"h"[..], Some(&b"1"[..])),
            (&b"other"[..], None),
            (&b"h"[..], Some(&b"2"[..])),
        ]
    );
}

#[test]
fn a_restamped_batch_equals_one_encoded_under_the_new_identity() {
    let records = [
        headed(Some("a"), Some("x"), 1_000),
        headed(None, Some("y"), 990),
        headed(Some("c"), None, 1_005),
    ];
    let identity = |producer_id, base_sequence| BatchIdentity {
        producer_id,
        producer_epoch: 2,
        base_sequence,
    };
    for compression in [Compression::None, Compression::Lz4] {
        let old = encode_batch(&records, identity(7, 40), compression).unwrap();
        let new = super::batch::restamp(&old, identity(8, 0), true);
        let expected = encode_transactional_batch(&records, identity(8, 0), compression).unwrap();
        assert_eq!(new, expected, "{compression:?}");
        let set = decode(&new);
        assert_eq!(set.records.len(), 3);
        assert_eq!(set.records[1].timestamp, 990, "negative timestamp delta");
        assert!(
            set.records
                .iter()
                .all(|r| r.transactional && r.producer_id == 8)
        );
    }
}
