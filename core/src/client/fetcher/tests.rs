//! Fetcher tests. Record batches are written with `kafka-protocol`'s `RecordBatchEncoder`;
//! requests are encoded and decoded at the version they were built for, and responses are
//! built as structs, encoded at the request's version and decoded again.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction as WireAbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId as WireBrokerId, FetchRequest, FetchResponse, ListOffsetsRequest,
    ListOffsetsResponse, MetadataResponse, ProducerId, RequestKind, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;

use super::*;
use crate::client::metadata::{Metadata, MetadataConfig};
use crate::client::{Outbound, Target};
use crate::time::Duration;
use crate::wire::records::IsolationLevel;
use crate::wire::records::fixtures::{self, batch_with as batch, marker, record, transactional};

const T0: Instant = Instant::from_millis(1_700_000_000_000);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

fn versions(fetch: i16, list_offsets: i16) -> HashMap<ApiKey, i16> {
    HashMap::from([(ApiKey::Fetch, fetch), (ApiKey::ListOffsets, list_offsets)])
}

fn max_versions() -> HashMap<ApiKey, i16> {
    versions(FETCH_MAX_VERSION, LIST_OFFSETS_MAX_VERSION)
}

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_owned()))
}

/// Metadata that learned `leaders` = (topic, partition, leader, epoch) from a real response.
fn metadata(leaders: &[(&str, i32, i32, i32)]) -> Metadata {
    let mut metadata = Metadata::new(MetadataConfig::default(), [("b".to_owned(), 1)], T0);
    let mut topics: Vec<&str> = leaders.iter().map(|l| l.0).collect();
    topics.dedup();
    metadata.set_topics(topics.iter().copied());
    metadata
        .poll_request(T0, &HashMap::from([(ApiKey::Metadata, 12)]))
        .unwrap();
    let mut response = MetadataResponse::default();
    for id in [1, 2] {
        let mut broker = MetadataResponseBroker::default();
        broker.node_id = WireBrokerId(id);
        broker.host = StrBytes::from_string(format!("kafka-{id}"));
        broker.port = 9092;
        response.brokers.push(broker);
    }
    for topic in topics {
        let mut entry = MetadataResponseTopic::default();
        entry.name = Some(name(topic));
        for &(_, partition, leader, epoch) in leaders.iter().filter(|l| l.0 == topic) {
            let mut p = MetadataResponsePartition::default();
            p.partition_index = partition;
            p.leader_id = WireBrokerId(leader);
            p.leader_epoch = epoch;
            entry.partitions.push(p);
        }
        response.topics.push(entry);
    }
    metadata
        .handle_response(1, ResponseKind::Metadata(response), T0)
        .unwrap();
    metadata
}

fn fetcher_with(
    config: FetcherConfig,
    assigned: &[(TopicPartition, i64)],
    md: &Metadata,
) -> Fetcher {
    let mut fetcher = Fetcher::new(config);
    for (tp, offset) in assigned {
        fetcher.assign(tp.clone(), Some(*offset));
    }
    fetcher.update_leaders(md);
    fetcher
}

/// Sets a batch's last offset delta (as compaction leaves it) and recomputes the CRC.
fn with_last_offset_delta(batch: &Bytes, delta: i32) -> Bytes {
    let mut bytes = batch.to_vec();
    bytes[23..27].copy_from_slice(&delta.to_be_bytes());
    let crc = crc32c::crc32c(&bytes[21..]);
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    bytes.into()
}

fn concat(parts: &[Bytes]) -> Bytes {
    parts
        .iter()
        .flat_map(|b| b.to_vec())
        .collect::<Vec<u8>>()
        .into()
}

struct Part {
    tp: TopicPartition,
    error: ResponseError,
    records: Bytes,
    aborted: Vec<(i64, i64)>,
}

fn ok(tp: TopicPartition, records: Bytes) -> Part {
    Part {
        tp,
        error: ResponseError::Unknown(0),
        records,
        aborted: Vec::new(),
    }
}

fn failed(tp: TopicPartition, error: ResponseError) -> Part {
    Part {
        tp,
        error,
        records: Bytes::new(),
        aborted: Vec::new(),
    }
}

/// A Fetch response, encoded and decoded at `version`.
fn fetch_response(version: i16, parts: Vec<Part>) -> ResponseKind {
    let mut response = FetchResponse::default();
    for part in parts {
        let mut data = PartitionData::default();
        data.partition_index = part.tp.partition;
        data.error_code = part.error.code();
        data.high_watermark = 100;
        data.records = Some(part.records);
        data.aborted_transactions = Some(
            part.aborted
                .iter()
                .map(|&(pid, first)| {
                    let mut txn = WireAbortedTransaction::default();
                    txn.producer_id = ProducerId(pid);
                    txn.first_offset = first;
                    txn
                })
                .collect(),
        );
        match response
            .responses
            .iter_mut()
            .find(|t| t.topic.0.as_str() == &*part.tp.topic)
        {
            Some(topic) => topic.partitions.push(data),
            None => {
                let mut topic = FetchableTopicResponse::default();
                topic.topic = name(&part.tp.topic);
                topic.partitions.push(data);
                response.responses.push(topic);
            }
        }
    }
    let mut buf = BytesMut::new();
    ResponseKind::Fetch(response)
        .encode(&mut buf, version)
        .unwrap();
    ResponseKind::decode(ApiKey::Fetch, &mut buf.freeze(), version).unwrap()
}

/// A ListOffsets response with (partition, error, offset), encoded and decoded at `version`.
fn list_offsets_response(
    version: i16,
    parts: &[(TopicPartition, ResponseError, i64)],
) -> ResponseKind {
    let mut response = ListOffsetsResponse::default();
    for (tp, error, offset) in parts {
        let mut p = ListOffsetsPartitionResponse::default();
        p.partition_index = tp.partition;
        p.error_code = error.code();
        p.offset = *offset;
        let mut topic = ListOffsetsTopicResponse::default();
        topic.name = name(&tp.topic);
        topic.partitions.push(p);
        response.topics.push(topic);
    }
    let mut buf = BytesMut::new();
    ResponseKind::ListOffsets(response)
        .encode(&mut buf, version)
        .unwrap();
    ResponseKind::decode(ApiKey::ListOffsets, &mut buf.freeze(), version).unwrap()
}

/// Encodes the request at its version and decodes it back, as a broker would read it.
fn decoded_fetch(out: &Outbound) -> FetchRequest {
    assert!(matches!(out.request, RequestKind::Fetch(_)), "{out:?}");
    let mut buf = BytesMut::new();
    out.request.encode(&mut buf, out.version).unwrap();
    match RequestKind::decode(ApiKey::Fetch, &mut buf.freeze(), out.version).unwrap() {
        RequestKind::Fetch(request) => request,
        _ => unreachable!(),
    }
}

fn decoded_list_offsets(out: &Outbound) -> ListOffsetsRequest {
    assert!(
        matches!(out.request, RequestKind::ListOffsets(_)),
        "{out:?}"
    );
    let mut buf = BytesMut::new();
    out.request.encode(&mut buf, out.version).unwrap();
    match RequestKind::decode(ApiKey::ListOffsets, &mut buf.freeze(), out.version).unwrap() {
        RequestKind::ListOffsets(request) => request,
        _ => unreachable!(),
    }
}

/// (topic, partition, offset, max bytes) of each partition of a Fetch, in request order.
fn fetched_partitions(request: &FetchRequest) -> Vec<(String, i32, i64, i32)> {
    request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                (
                    t.topic.0.to_string(),
                    p.partition,
                    p.fetch_offset,
                    p.partition_max_bytes,
                )
            })
        })
        .collect()
}

fn offsets(batch: &FetchedBatch) -> Vec<i64> {
    batch.records.iter().map(|r| r.offset).collect()
}

fn events(fetcher: &mut Fetcher) -> Vec<FetchEvent> {
    std::iter::from_fn(|| fetcher.poll_event()).collect()
}

#[test]
fn fetches_group_partitions_by_leader_with_one_in_flight_per_broker() {
    let md = metadata(&[("a", 0, 1, 0), ("a", 1, 2, 0), ("b", 0, 1, 0)]);
    let mut fetcher = fetcher_with(
        FetcherConfig::default(),
        &[(tp("a", 0), 5), (tp("a", 1), 6), (tp("b", 0), 7)],
        &md,
    );
    let first = fetcher.poll_request(T0, &max_versions()).unwrap();
    assert_eq!(first.target, Target::Broker(1));
    let mut parts = fetched_partitions(&decoded_fetch(&first));
    parts.sort();
    assert_eq!(
        parts,
        [("a".into(), 0, 5, 1_048_576), ("b".into(), 0, 7, 1_048_576)]
    );
    let second = fetcher.poll_request(T0, &max_versions()).unwrap();
    assert_eq!(second.target, Target::Broker(2));
    assert_eq!(
        fetched_partitions(&decoded_fetch(&second)),
        [("a".into(), 1, 6, 1_048_576)]
    );
    // Both brokers have a Fetch in flight.
    assert!(fetcher.fetch_in_flight(1) && fetcher.fetch_in_flight(2));
    assert_eq!(fetcher.poll_request(T0 + ms(1), &max_versions()), None);

    // An empty answer from broker 1 frees it; its partitions are fetched again at the same
    // positions, broker 2 still waits.
    fetcher
        .handle_response(
            1,
            fetch_response(12, vec![ok(tp("a", 0), Bytes::new())]),
            T0 + ms(2),
        )
        .unwrap();
    let third = fetcher.poll_request(T0 + ms(2), &max_versions()).unwrap();
    assert_eq!(third.target, Target::Broker(1));
    assert_eq!(fetcher.poll_request(T0 + ms(2), &max_versions()), None);
    assert_eq!(fetcher.position(&tp("a", 0)), Some(5));
}

#[test]
fn partitions_without_leader_or_position_are_not_fetched() {
    let md = metadata(&[("a", 0, 1, 0)]);
    let mut fetcher = Fetcher::new(FetcherConfig::default());
    fetcher.assign(tp("a", 0), Some(0));
    // No update_leaders yet: leader unknown.
    assert_eq!(fetcher.poll_request(T0, &max_versions()), None);
    fetcher.assign(tp("a", 0), None);
    fetcher.update_leaders(&md);
    assert_eq!(fetcher.poll_request(T0, &max_versions()), None);
    assert!(fetcher.seek(&tp("a", 0), 3));
    assert!(fetcher.poll_request(T0, &max_versions()).is_some());
}

#[test]
fn requests_encode_at_min_and_max_versions() {
    let md = metadata(&[("a", 0, 1, 9), ("a", 1, 1, 9)]);
    for version in [FETCH_MIN_VERSION, 7, 9, 11, FETCH_MAX_VERSION] {
        for isolation in [
            IsolationLevel::ReadUncommitted,
            IsolationLevel::ReadCommitted,
        ] {
            let config = FetcherConfig {
                isolation,
                min_bytes: 10,
                max_bytes: 1_000,
                max_wait: ms(250),
                ..FetcherConfig::default()
            };
            let mut fetcher = fetcher_with(config, &[(tp("a", 0), 1), (tp("a", 1), 2)], &md);
            let out = fetcher.poll_request(T0, &versions(version, 1)).unwrap();
            assert_eq!(out.version, version);
            let request = decoded_fetch(&out);
            assert_eq!(*request.replica_id, -1);
            assert_eq!(request.min_bytes, 10);
            assert_eq!(request.max_bytes, 1_000);
            assert_eq!(request.max_wait_ms, 250);
            assert_eq!(
                request.isolation_level,
                i8::from(isolation == IsolationLevel::ReadCommitted)
            );
            assert_eq!(request.topics.len(), 1, "one entry per topic");
            if version >= 7 {
                assert_eq!((request.session_id, request.session_epoch), (0, -1));
            }
            let epochs: Vec<i32> = request.topics[0]
                .partitions
                .iter()
                .map(|p| p.current_leader_epoch)
                .collect();
            let expected = if version >= 9 { 9 } else { -1 };
            assert_eq!(epochs, [expected, expected], "version {version}");
        }
    }

    for version in [LIST_OFFSETS_MIN_VERSION, 2, 4, LIST_OFFSETS_MAX_VERSION] {
        let config = FetcherConfig {
            isolation: IsolationLevel::ReadCommitted,
            ..FetcherConfig::default()
        };
        let mut fetcher = fetcher_with(config, &[], &md);
        fetcher.assign(tp("a", 0), None);
        fetcher.assign(tp("a", 1), None);
        fetcher.update_leaders(&md);
        fetcher.reset_position(&tp("a", 0), OffsetResetPolicy::Earliest);
        fetcher.reset_position(&tp("a", 1), OffsetResetPolicy::Latest);
        let out = fetcher.poll_request(T0, &versions(12, version)).unwrap();
        assert_eq!((out.target, out.version), (Target::Broker(1), version));
        let request = decoded_list_offsets(&out);
        assert_eq!(*request.replica_id, -1);
        assert_eq!(request.isolation_level, i8::from(version >= 2));
        let parts: Vec<(i32, i64, i32)> = request.topics[0]
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.timestamp, p.current_leader_epoch))
            .collect();
        let epoch = if version >= 4 { 9 } else { -1 };
        assert_eq!(parts, [(0, -2, epoch), (1, -1, epoch)], "version {version}");
    }
}

#[test]
fn unusable_versions_are_reported_once_and_nothing_is_sent() {
    let md = metadata(&[("a", 0, 1, 0)]);
    let mut fetcher = fetcher_with(FetcherConfig::default(), &[(tp("a", 0), 0)], &md);
    let lookup = versions(13, 10);
    assert_eq!(fetcher.poll_request(T0, &lookup), None);
    assert_eq!(fetcher.poll_request(T0, &lookup), None);
    assert_eq!(
        events(&mut fetcher),
        [FetchEvent::Error(FetchError::UnsupportedVersion {
            api: ApiKey::Fetch,
            version: Some(13),
            min: 4,
            max: 12
        })]
    );
    assert!(fetcher.poll_request(T0, &versions(3, 10)).is_none());
    assert!(fetcher.poll_request(T0, &versions(12, 10)).is_some());
}

#[test]
fn paused_and_undrained_partitions_are_left_out() {
    let md = metadata(&[("a", 0, 1, 0), ("a", 1, 1, 0)]);
    let mut fetcher = fetcher_with(
        FetcherConfig::default(),
        &[(tp("a", 0), 0), (tp("a", 1), 0)],
        &md,
    );
    fetcher.set_paused(&tp("a", 1), true);
    let out = fetcher.poll_request(T0, &max_versions()).unwrap();
    assert_eq!(
        fetched_partitions(&decoded_fetch(&out)),
        [("a".into(), 0, 0, 1_048_576)]
    );
    fetcher
        .handle_response(
            1,
            fetch_response(
                12,
                vec![ok(tp("a", 0), batch(&[record(0, "x")], Compression::None))],
            ),
            T0,
        )
        .unwrap();
    // a-0 has undelivered records, a-1 is paused: nothing to fetch.
    assert_eq!(fetcher.poll_request(T0, &max_versions()), None);
    fetcher.set_paused(&tp("a", 1), false);
    let out = fetcher.poll_request(T0, &max_versions()).unwrap();
    assert_eq!(
        fetched_partitions(&decoded_fetch(&out)),
        [("a".into(), 1, 0, 1_048_576)]
    );
    fetcher
        .handle_response(1, fetch_response(12, vec![]), T0)
        .unwrap();
    // Taking the batch makes a-0 fetchable again, from its new position.
    let batch = fetcher.poll_records().unwrap();
    assert_eq!(
        (batch.partition.clone(), offsets(&batch)),
        (tp("a", 0), vec![0])
    );
    let out = fetcher.poll_request(T0, &max_versions()).unwrap();
    let mut parts = fetched_partitions(&decoded_fetch(&out));
    parts.sort();
    assert_eq!(
        parts,
        [("a".into(), 0, 1, 1_048_576), ("a".into(), 1, 0, 1_048_576)]
    );
}

fn positions_advance_past_compacted_gap_and_control_batch(compression: Compression) {
    let md = metadata(&[("a", 0, 1, 0)]);
    let mut fetcher = fetcher_with(FetcherConfig::default(), &[(tp("a", 0), 10)], &md);
    fetcher.poll_request(T0, &max_versions()).unwrap();
    // 10, 11, 13 (12 compacted away), and 14..=15 compacted from the tail: last delta 5.
    let compacted = with_last_offset_delta(
        &batch(
            &[record(10, "a"), record(11, "b"), record(13, "c")],
            compression,
        ),
        5,
    );
    let control = batch(&[marker(16, 7, true)], Compression::None);
    let records = concat(&[compacted, control]);
    fetcher
        .handle_response(1, fetch_response(12, vec![ok(tp("a", 0), records)]), T0)
        .unwrap();
    let batch = fetcher.poll_records().unwrap();
    assert_eq!(offsets(&batch), [10, 11, 13]);
    assert_eq!(batch.records[2].value.as_deref(), Some(&b"c"[..]));
    assert_eq!(batch.records[0].key.as_deref(), Some(&b"k10"[..]));
    // Record timestamps are data: the fixture's, not the clock's.
    assert_eq!(batch.records[1].timestamp, fixtures::T0 + 11);
    assert_eq!(batch.high_watermark, 100);
    assert_eq!(fetcher.position(&tp("a", 0)), Some(17));
    assert_eq!(fetcher.poll_records(), None);
    let out = fetcher.poll_request(T0, &max_versions()).unwrap();
    assert_eq!(fetched_partitions(&decoded_fetch(&out))[0].2, 17);
}

#[test]
fn positions_advance_past_compacted_gap_and_control_batch_uncompressed() {
    positions_advance_past_compacted_gap_and_control_batch(Compression::None);
}

#[test]
fn positions_advance_past_compacted_gap_and_control_batch_lz4() {
    positions_advance_past_compacted_gap_and_control_batch(Compression::Lz4);
}

#[test]
fn uncompressed_keys_and_values_are_slices_of_the_fetched_buffer() {
    let md = metadata(&[("a", 0, 1, 0)]);
    let mut fetcher = fetcher_with(FetcherConfig::default(), &[(tp("a", 0), 0)], &md);
    fetcher.poll_request(T0, &max_versions()).unwrap();
    let response = fetch_response(
        12,
        vec![ok(
            tp("a", 0),
            batch(&[record(0, "value")], Compression::None),
        )],
    );
    let ResponseKind::Fetch(decoded) = &response else {
        unreachable!()
    };
    let buffer = decoded.responses[0].partitions[0].records.clone().unwrap();
    let range = buffer.as_ptr() as usize..buffer.as_ptr() as usize + buffer.len();
    fetcher.handle_response(1, response, T0).unwrap();
    let batch = fetcher.poll_records().unwrap();
    let value = batch.records[0].value.as_ref().unwrap();
    assert!(range.contains(&(value.as_ptr() as usize)));
}

#[test]
fn only_control_or_aborted_records_still_advance_the_position() {
    let md = metadata(&[("a", 0, 1, 0)]);
    let config = FetcherConfig {
        isolation: IsolationLevel::ReadCommitted,
        ..FetcherConfig::default()
    };
    let mut fetcher = fetcher_with(config, &[(tp("a", 0), 0)], &md);
    fetcher.poll_request(T0, &max_versions()).unwrap();
    let aborted = batch(
        &[
            transactional(record(0, "x"), 7),
            transactional(record(1, "y"), 7),
        ],
        Compression::None,
    );
    let abort = batch(&[marker(2, 7, false)], Compression::None);
    let mut part = ok(tp("a", 0), concat(&[aborted, abort]));
    part.aborted = vec![(7, 0)];
    fetcher
        .handle_response(1, fetch_response(12, vec![part]), T0)
        .unwrap();
    assert_eq!(fetcher.poll_records(), None);
    assert_eq!(fetcher.position(&tp("a", 0)), Some(3));
    // Not buffered, so fetched again right away from 3.
    let out = fetcher.poll_request(T0, &max_versions()).unwrap();
    assert_eq!(fetched_partitions(&decoded_fetch(&out))[0].2, 3);
}

#[test]
fn truncated_trailing_batch_is_fetched_again() {
    let md = metadata(&[("a", 0, 1, 0)]);
    let mut fetcher = fetcher_with(FetcherConfig::default(), &[(tp("a", 0), 0)], &md);
    fetcher.poll_request(T0, &max_versions()).unwrap();
    let first = batch(&[record(0, "a"), record(1, "b")], Compression::Lz4);
    let second = batch(&[record(2, "c"), record(3, "d")], Compression::None);
    let cut = second.slice(..second.len() - 5);
    fetcher
        .handle_response(
            1,
            fetch_response(12, vec![ok(tp("a", 0), concat(&[first, cut]))]),
            T0,
        )
        .unwrap();
    assert_eq!(offsets(&fetcher.poll_records().unwrap()), [0, 1]);
    assert_eq!(fetcher.position(&tp("a", 0)), Some(2));
    assert_eq!(events(&mut fetcher), []);
    assert_eq!(fetcher.partition_max_bytes(&tp("a", 0)), Some(1_048_576));
}

#[test]
fn a_batch_larger_than_partition_max_bytes_raises_the_limit() {
    let md = metadata(&[("a", 0, 1, 0)]);
    let config = FetcherConfig {
        partition_max_bytes: 16,
        ..FetcherConfig::default()
    };
    let mut fetcher = fetcher_with(config, &[(tp("a", 0), 4)], &md);
    fetcher.poll_request(T0, &max_versions()).unwrap();
    let whole = batch(&[record(4, &"v".repeat(100))], Compression::None);
    let cut = whole.slice(..16);
    fetcher
        .handle_response(1, fetch_response(12, vec![ok(tp("a", 0), cut)]), T0)
        .unwrap();
    assert_eq!(fetcher.poll_records(), None);
    assert_eq!(fetcher.position(&tp("a", 0)), Some(4));
    let raised = i32::try_from(whole.len()).unwrap();
    assert_eq!(
        events(&mut fetcher),
        [FetchEvent::PartitionMaxBytesRaised {
            partition: tp("a", 0),
            offset: 4,
            partition_max_bytes: raised
        }]
    );
    let out = fetcher.poll_request(T0, &max_versions()).unwrap();
    assert_eq!(
        fetched_partitions(&decoded_fetch(&out)),
        [("a".into(), 0, 4, raised)]
    );
    fetcher
        .handle_response(1, fetch_response(12, vec![ok(tp("a", 0), whole)]), T0)
        .unwrap();
    assert_eq!(offsets(&fetcher.poll_records().unwrap()), [4]);
    assert_eq!(fetcher.position(&tp("a", 0)), Some(5));
}

#[test]
fn a_batch_above_the_fetch_size_limit_halts_the_partition_instead_of_growing() {
    let md = metadata(&[("a", 0, 1, 0)]);
    let config = FetcherConfig {
        partition_max_bytes: 16,
        partition_max_bytes_limit: 64,
        ..FetcherConfig::default()
    };
    let mut fetcher = fetcher_with(config, &[(tp("a", 0), 4)], &md);
    fetcher.poll_request(T0, &max_versions()).unwrap();
    // A batch whose length field claims about 1 GiB, cut at 16 bytes.
    let mut claimed = batch(&[record(4, "v")], Compression::None).to_vec();
    claimed[8..12].copy_from_slice(&(1_i32 << 30).to_be_bytes());
    let cut = Bytes::from(claimed).slice(..16);
    fetcher
        .handle_response(1, fetch_response(12, vec![ok(tp("a", 0), cut)]), T0)
        .unwrap();
    assert_eq!(fetcher.poll_records(), None);
    assert_eq!(fetcher.position(&tp("a", 0)), Some(4), "not advanced");
    assert!(matches!(
        events(&mut fetcher).as_slice(),
        [FetchEvent::Error(FetchError::BatchTooLarge { offset: 4, limit: 64, batch_len, .. })]
            if *batch_len == (1 << 30) + 12
    ),);
    assert!(
        fetcher.poll_request(T0, &max_versions()).is_none(),
        "a halted partition is not fetched"
    );
}

#[test]
fn compressed_partitions_of_one_response_share_a_decompression_budget() {
    let md = metadata(&[("a", 0, 1, 0), ("a", 1, 1, 0)]);
    let value = "x".repeat(10_000);
    let compressed = |base: i64| {
        batch(
            &(base..base + 10)
                .map(|o| record(o, &value))
                .collect::<Vec<_>>(),
            Compression::Gzip,
        )
    };
    let mut config = FetcherConfig::default();
    // Room for one batch of about 100 kB decompressed, not two.
    config.decode_limits.max_decompressed_response_bytes = 150_000;
    let mut fetcher = fetcher_with(config, &[(tp("a", 0), 0), (tp("a", 1), 0)], &md);
    fetcher.poll_request(T0, &max_versions()).unwrap();
    fetcher
        .handle_response(
            1,
            fetch_response(
                12,
                vec![ok(tp("a", 0), compressed(0)), ok(tp("a", 1), compressed(0))],
            ),
            T0,
        )
        .unwrap();
    let first = fetcher.poll_records().unwrap();
    assert_eq!(first.partition, tp("a", 0));
    assert_eq!(offsets(&first).len(), 10);
    assert_eq!(fetcher.poll_records(), None, "the second waits");
    assert_eq!(fetcher.position(&tp("a", 1)), Some(0), "not advanced");
    assert!(events(&mut fetcher).is_empty(), "not an error");
}

#[test]
fn response_after_seek_or_unassign_is_discarded() {
    let md = metadata(&[("a", 0, 1, 0), ("a", 1, 1, 0), ("a", 2, 1, 0)]);
    let mut fetcher = fetcher_with(
        FetcherConfig::default(),
        &[(tp("a", 0), 0), (tp("a", 1), 0), (tp("a", 2), 0)],
        &md,
    );
    fetcher.poll_request(T0, &max_versions()).unwrap();
    assert!(fetcher.seek(&tp("a", 0), 50));
    fetcher.unassign(&tp("a", 1));
    let data = || batch(&[record(0, "x"), record(1, "y")], Compression::None);
    fetcher
        .handle_response(
            1,
            fetch_response(
                12,
                vec![
                    ok(tp("a", 0), data()),
                    ok(tp("a", 1), data()),
                    ok(tp("a", 2), data()),
                ],
            ),
            T0,
        )
        .unwrap();
    let batch = fetcher.poll_records().unwrap();
    assert_eq!(
        (batch.partition.clone(), offsets(&batch)),
        (tp("a", 2), vec![0, 1])
    );
    assert_eq!(fetcher.poll_records(), None);
    assert_eq!(fetcher.position(&tp("a", 0)), Some(50));
    assert_eq!(fetcher.position(&tp("a", 1)), None);
    let out = fetcher.poll_request(T0, &max_versions()).unwrap();
    let mut parts = fetched_partitions(&decoded_fetch(&out));
    parts.sort();
    assert_eq!(
        parts,
        [
            ("a".into(), 0, 50, 1_048_576),
            ("a".into(), 2, 2, 1_048_576)
        ]
    );
}

#[test]
fn seek_drops_undelivered_records() {
    let md = metadata(&[("a", 0, 1, 0)]);
    let mut fetcher = fetcher_with(FetcherConfig::default(), &[(tp("a", 0), 0)], &md);
    fetcher.poll_request(T0, &max_versions()).unwrap();
    fetcher
        .handle_response(
            1,
            fetch_response(
                12,
                vec![ok(tp("a", 0), batch(&[record(0, "x")], Compression::None))],
            ),
            T0,
        )
        .unwrap();
    fetcher.seek(&tp("a", 0), 0);
    assert_eq!(fetcher.poll_records(), None);
    assert!(fetcher.poll_request(T0, &max_versions()).is_some());
}

#[test]
fn offset_out_of_range_resets_through_list_offsets() {
    let md = metadata(&[("a", 0, 2, 3)]);
    let mut fetcher = fetcher_with(FetcherConfig::default(), &[(tp("a", 0), 500)], &md);
    fetcher.poll_request(T0, &max_versions()).unwrap();
    fetcher
        .handle_response(
            2,
            fetch_response(
                12,
                vec![failed(tp("a", 0), ResponseError::OffsetOutOfRange)],
            ),
            T0,
        )
        .unwrap();
    assert_eq!(fetcher.position(&tp("a", 0)), None);
    let out = fetcher.poll_request(T0, &max_versions()).unwrap();
    assert_eq!(out.target, Target::Broker(2));
    let request = decoded_list_offsets(&out);
    assert_eq!(request.topics[0].partitions[0].timestamp, -2, "earliest");
    // No Fetch for it meanwhile.
    assert_eq!(fetcher.poll_request(T0, &max_versions()), None);
    fetcher
        .handle_response(
            2,
            list_offsets_response(10, &[(tp("a", 0), ResponseError::Unknown(0), 42)]),
            T0,
        )
        .unwrap();
    assert_eq!(
        events(&mut fetcher),
        [FetchEvent::PositionReset {
            partition: tp("a", 0),
            offset: 42
        }]
    );
    let out = fetcher.poll_request(T0, &max_versions()).unwrap();
    assert_eq!(fetched_partitions(&decoded_fetch(&out))[0].2, 42);
}

#[test]
fn offset_out_of_range_without_policy_is_an_error_and_halts() {
    let md = metadata(&[("a", 0, 1, 0)]);
    let config = FetcherConfig {
        offset_reset: OffsetResetPolicy::None,
        ..FetcherConfig::default()
    };
    let mut fetcher = fetcher_with(config, &[(tp("a", 0), 500)], &md);
    fetcher.poll_request(T0, &max_versions()).unwrap();
    fetcher
        .handle_response(
            1,
            fetch_response(
                12,
                vec![failed(tp("a", 0), ResponseError::OffsetOutOfRange)],
            ),
            T0,
        )
        .unwrap();
    assert_eq!(
        events(&mut fetcher),
        [FetchEvent::Error(FetchError::OffsetOutOfRange {
            partition: tp("a", 0),
            offset: 500
        })]
    );
    assert_eq!(fetcher.poll_request(T0 + ms(10_000), &max_versions()), None);
    fetcher.seek(&tp("a", 0), 0);
    assert!(
        fetcher
            .poll_request(T0 + ms(10_000), &max_versions())
            .is_some()
    );
}

#[test]
fn new_partition_without_offset_resets_to_latest_and_none_is_an_error() {
    let md = metadata(&[("a", 0, 1, 0), ("a", 1, 1, 0)]);
    let mut fetcher = Fetcher::new(FetcherConfig::default());
    fetcher.assign(tp("a", 0), None);
    fetcher.assign(tp("a", 1), None);
    fetcher.update_leaders(&md);
    assert!(fetcher.reset_position(&tp("a", 0), OffsetResetPolicy::Latest));
    assert!(fetcher.reset_position(&tp("a", 1), OffsetResetPolicy::None));
    assert!(!fetcher.reset_position(&tp("zz", 0), OffsetResetPolicy::Latest));
    assert_eq!(
        events(&mut fetcher),
        [FetchEvent::Error(FetchError::NoOffset {
            partition: tp("a", 1)
        })]
    );
    let out = fetcher.poll_request(T0, &versions(12, 1)).unwrap();
    let request = decoded_list_offsets(&out);
    assert_eq!(request.topics[0].partitions.len(), 1);
    assert_eq!(request.topics[0].partitions[0].timestamp, -1, "latest");
    // A leadership error: refresh asked, retried after the backoff.
    fetcher
        .handle_response(
            1,
            list_offsets_response(1, &[(tp("a", 0), ResponseError::NotLeaderOrFollower, -1)]),
            T0,
        )
        .unwrap();
    assert_eq!(
        events(&mut fetcher),
        [FetchEvent::MetadataRefreshNeeded {
            reason: "ListOffsets a-0 on broker 1: ".to_owned()
                + &ResponseError::NotLeaderOrFollower.to_string()
        }]
    );
    // Retried after the backoff.
    assert_eq!(fetcher.poll_request(T0 + ms(99), &versions(12, 1)), None);
    assert_eq!(fetcher.poll_timeout(), Some(T0 + ms(100)));
    let out = fetcher
        .poll_request(T0 + ms(100), &versions(12, 1))
        .unwrap();
    assert!(matches!(out.request, RequestKind::ListOffsets(_)));
    // The answer to the retry arrives after a seek: stale, dropped.
    fetcher.seek(&tp("a", 0), 7);
    fetcher
        .handle_response(
            1,
            list_offsets_response(1, &[(tp("a", 0), ResponseError::Unknown(0), 99)]),
            T0 + ms(100),
        )
        .unwrap();
    assert_eq!(fetcher.position(&tp("a", 0)), Some(7));
    assert_eq!(events(&mut fetcher), []);
}

#[test]
fn leadership_errors_request_a_refresh_and_back_off_until_the_leader_moves() {
    let md = metadata(&[("a", 0, 1, 4), ("a", 1, 1, 4)]);
    let mut fetcher = fetcher_with(
        FetcherConfig::default(),
        &[(tp("a", 0), 0), (tp("a", 1), 0)],
        &md,
    );
    for error in [
        ResponseError::NotLeaderOrFollower,
        ResponseError::FencedLeaderEpoch,
        ResponseError::UnknownLeaderEpoch,
        ResponseError::LeaderNotAvailable,
        ResponseError::UnknownTopicOrPartition,
    ] {
        let mut fetcher = fetcher_with(FetcherConfig::default(), &[(tp("a", 0), 0)], &md);
        fetcher.poll_request(T0, &max_versions()).unwrap();
        fetcher
            .handle_response(1, fetch_response(12, vec![failed(tp("a", 0), error)]), T0)
            .unwrap();
        assert!(
            matches!(&events(&mut fetcher)[..], [FetchEvent::MetadataRefreshNeeded { reason }] if reason.contains("a-0")),
            "{error}"
        );
    }

    fetcher.poll_request(T0, &max_versions()).unwrap();
    fetcher
        .handle_response(
            1,
            fetch_response(
                12,
                vec![
                    failed(tp("a", 0), ResponseError::NotLeaderOrFollower),
                    ok(tp("a", 1), Bytes::new()),
                ],
            ),
            T0,
        )
        .unwrap();
    // a-1 goes on, a-0 waits.
    let out = fetcher.poll_request(T0 + ms(1), &max_versions()).unwrap();
    assert_eq!(
        fetched_partitions(&decoded_fetch(&out)),
        [("a".into(), 1, 0, 1_048_576)]
    );
    assert_eq!(fetcher.poll_timeout(), Some(T0 + ms(100)));
    // The refreshed metadata moves a-0 to broker 2: fetched there at once.
    let moved = metadata(&[("a", 0, 2, 5), ("a", 1, 1, 4)]);
    fetcher.update_leaders(&moved);
    assert_eq!(fetcher.leader(&tp("a", 0)), Some(2));
    let out = fetcher.poll_request(T0 + ms(2), &max_versions()).unwrap();
    assert_eq!(out.target, Target::Broker(2));
    let request = decoded_fetch(&out);
    assert_eq!(request.topics[0].partitions[0].current_leader_epoch, 5);
}

#[test]
fn corrupt_records_are_an_error_naming_partition_and_offset_and_do_not_advance() {
    let md = metadata(&[("a", 0, 1, 0)]);
    let mut fetcher = fetcher_with(FetcherConfig::default(), &[(tp("a", 0), 20)], &md);
    fetcher.poll_request(T0, &max_versions()).unwrap();
    let mut bytes = batch(&[record(20, "hello")], Compression::None).to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff; // CRC no longer matches
    fetcher
        .handle_response(
            1,
            fetch_response(12, vec![ok(tp("a", 0), bytes.into())]),
            T0,
        )
        .unwrap();
    let events = events(&mut fetcher);
    let [
        FetchEvent::Error(
            error @ FetchError::CorruptRecords {
                partition, offset, ..
            },
        ),
    ] = &events[..]
    else {
        panic!("{events:?}");
    };
    assert_eq!((partition, *offset), (&tp("a", 0), 20));
    assert!(error.to_string().contains("a-0"));
    assert_eq!(fetcher.position(&tp("a", 0)), Some(20));
    assert_eq!(fetcher.poll_records(), None);
    // Halted: no hot loop over the same bad batch.
    assert_eq!(fetcher.poll_request(T0 + ms(10_000), &max_versions()), None);
}

#[test]
fn other_partition_errors_are_typed_events() {
    let md = metadata(&[("a", 0, 1, 0)]);
    let mut fetcher = fetcher_with(FetcherConfig::default(), &[(tp("a", 0), 0)], &md);
    fetcher.poll_request(T0, &max_versions()).unwrap();
    fetcher
        .handle_response(
            1,
            fetch_response(
                12,
                vec![failed(tp("a", 0), ResponseError::TopicAuthorizationFailed)],
            ),
            T0,
        )
        .unwrap();
    assert_eq!(
        events(&mut fetcher),
        [FetchEvent::Error(FetchError::Partition {
            partition: tp("a", 0),
            api: ApiKey::Fetch,
            error: ResponseError::TopicAuthorizationFailed
        })]
    );
    assert_eq!(fetcher.poll_request(T0 + ms(10_000), &max_versions()), None);
}

#[test]
fn failed_request_backs_off_its_broker_and_asks_for_metadata() {
    let md = metadata(&[("a", 0, 1, 0), ("a", 1, 2, 0)]);
    let mut fetcher = fetcher_with(
        FetcherConfig::default(),
        &[(tp("a", 0), 0), (tp("a", 1), 0)],
        &md,
    );
    let first = fetcher.poll_request(T0, &max_versions()).unwrap();
    assert_eq!(first.target, Target::Broker(1));
    fetcher.handle_request_failed(Target::Broker(1), ApiKey::Fetch, T0);
    assert!(matches!(
        &events(&mut fetcher)[..],
        [FetchEvent::MetadataRefreshNeeded { .. }]
    ));
    let second = fetcher.poll_request(T0, &max_versions()).unwrap();
    assert_eq!(second.target, Target::Broker(2));
    assert_eq!(fetcher.poll_request(T0 + ms(99), &max_versions()), None);
    assert_eq!(fetcher.poll_timeout(), Some(T0 + ms(100)));
    let again = fetcher.poll_request(T0 + ms(100), &max_versions()).unwrap();
    assert_eq!(again.target, Target::Broker(1));
}

#[test]
fn responses_not_asked_for_are_errors() {
    let mut fetcher = Fetcher::new(FetcherConfig::default());
    assert_eq!(
        fetcher.handle_response(1, fetch_response(12, vec![]), T0),
        Err(FetchError::NotInFlight {
            from: 1,
            api: ApiKey::Fetch
        })
    );
    assert_eq!(
        fetcher.handle_response(1, ResponseKind::Metadata(Default::default()), T0),
        Err(FetchError::UnexpectedResponse {
            from: 1,
            api: Some(ApiKey::Metadata)
        })
    );
}

#[test]
fn fetch_responses_decode_at_the_minimum_version() {
    let md = metadata(&[("a", 0, 1, 0)]);
    let mut fetcher = fetcher_with(FetcherConfig::default(), &[(tp("a", 0), 0)], &md);
    let out = fetcher.poll_request(T0, &versions(4, 1)).unwrap();
    assert_eq!(out.version, 4);
    fetcher
        .handle_response(
            1,
            fetch_response(
                4,
                vec![ok(
                    tp("a", 0),
                    batch(&[record(0, "x"), record(1, "y")], Compression::Gzip),
                )],
            ),
            T0,
        )
        .unwrap();
    assert_eq!(offsets(&fetcher.poll_records().unwrap()), [0, 1]);
    assert_eq!(fetcher.position(&tp("a", 0)), Some(2));
}

#[test]
fn a_partition_read_to_its_end_does_not_wait_reports_its_end_and_never_resets_silently() {
    let md = metadata(&[("a", 0, 1, 0), ("log", 0, 1, 0)]);
    let mut fetcher = fetcher_with(FetcherConfig::default(), &[(tp("a", 0), 0)], &md);
    // Only ordinary partitions: the configured long-poll wait.
    let out = fetcher.poll_request(T0, &max_versions()).unwrap();
    assert_eq!(
        decoded_fetch(&out).max_wait_ms,
        FetcherConfig::default().max_wait.as_millis_i32()
    );
    fetcher
        .handle_response(
            1,
            fetch_response(12, vec![ok(tp("a", 0), Bytes::new())]),
            T0,
        )
        .unwrap();
    assert_eq!(
        fetcher.end_offset(&tp("a", 0)),
        Some(100),
        "the high watermark"
    );

    fetcher.assign_to_read_to_end(tp("log", 0), Some(500));
    fetcher.update_leaders(&md);
    assert_eq!(fetcher.end_offset(&tp("log", 0)), None, "no answer yet");
    let out = fetcher.poll_request(T0, &max_versions()).unwrap();
    assert_eq!(
        decoded_fetch(&out).max_wait_ms,
        0,
        "a restore does not wait"
    );
    fetcher
        .handle_response(
            1,
            fetch_response(
                12,
                vec![
                    ok(tp("a", 0), Bytes::new()),
                    failed(tp("log", 0), ResponseError::OffsetOutOfRange),
                ],
            ),
            T0,
        )
        .unwrap();
    // The config resets to earliest, but a checkpoint past the log's end is reported.
    assert_eq!(
        events(&mut fetcher),
        [FetchEvent::Error(FetchError::OffsetOutOfRange {
            partition: tp("log", 0),
            offset: 500
        })]
    );
    assert_eq!(fetcher.position(&tp("log", 0)), Some(500), "not moved");
}

#[test]
fn a_followed_partition_waits_like_any_other_and_never_resets_silently() {
    let md = metadata(&[("log", 0, 1, 0)]);
    let mut fetcher = Fetcher::new(FetcherConfig::default());
    fetcher.assign_to_follow(tp("log", 0), Some(500));
    fetcher.update_leaders(&md);
    let out = fetcher.poll_request(T0, &max_versions()).unwrap();
    assert_eq!(
        decoded_fetch(&out).max_wait_ms,
        FetcherConfig::default().max_wait.as_millis_i32(),
        "a standby has no end to reach: it long-polls"
    );
    fetcher
        .handle_response(
            1,
            fetch_response(
                12,
                vec![failed(tp("log", 0), ResponseError::OffsetOutOfRange)],
            ),
            T0,
        )
        .unwrap();
    assert_eq!(
        events(&mut fetcher),
        [FetchEvent::Error(FetchError::OffsetOutOfRange {
            partition: tp("log", 0),
            offset: 500
        })]
    );
    assert_eq!(fetcher.position(&tp("log", 0)), Some(500), "not moved");
}
