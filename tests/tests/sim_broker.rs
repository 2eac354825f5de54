//! The simulated broker driven with raw frames built with `kafka-protocol` (not with kstreams'
//! engine): every request below is encoded, cut into frames and fed as bytes; every response
//! is decoded from the bytes the simulator sends back.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use kstreams_core::record::TopicPartition;
use kstreams_core::wire::records::{
    DecodeLimits, FetchedPartition, FetchedRecords, IsolationLevel, decode_fetched_records,
};
use kstreams_tests::sim::{
    CloseReason, ConnId, GroupState, RandomFaults, SimCluster, SimConfig, SimRecord,
};

const T0: i64 = 1_700_000_000_000;

/// The transaction APIs, with the helpers of this file.
#[path = "sim_broker/transactions.rs"]
mod transactions;

/// Offset, timestamp, key, value, header count.
type RecordSummary = (i64, i64, Option<Bytes>, Option<Bytes>, usize);

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

fn topic(v: &str) -> TopicName {
    TopicName(s(v))
}

fn api_of<R: Request>() -> ApiKey {
    ApiKey::try_from(R::KEY).expect("known api")
}

/// Encodes a complete request frame (length prefix, header, body).
fn request_frame<R: Request>(request: &R, version: i16, correlation_id: i32) -> Bytes {
    let api = api_of::<R>();
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(s("sim-test")))
        .encode(&mut buf, api.request_header_version(version))
        .expect("header encodes");
    request.encode(&mut buf, version).expect("request encodes");
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    buf.freeze()
}

/// Decodes a response frame, checking the length prefix and the correlation id.
fn decode_response<R: Request>(frame: Bytes, version: i16, correlation_id: i32) -> R::Response {
    let api = api_of::<R>();
    let mut buf = frame;
    let len = buf.get_i32();
    assert_eq!(len as usize, buf.remaining(), "length prefix");
    let header_version = if api == ApiKey::ApiVersions {
        0
    } else {
        api.response_header_version(version)
    };
    let header = ResponseHeader::decode(&mut buf, header_version).expect("response header");
    assert_eq!(header.correlation_id, correlation_id, "correlation id");
    let response = R::Response::decode(&mut buf, version).expect("response body");
    assert_eq!(buf.remaining(), 0, "{api:?} v{version}: trailing bytes");
    response
}

/// One client connection speaking raw frames.
struct Client {
    conn: ConnId,
    next_correlation: i32,
}

impl Client {
    fn connect(sim: &mut SimCluster, broker: i32) -> Self {
        Self {
            conn: sim.connect(broker).expect("broker up"),
            next_correlation: 1,
        }
    }

    /// Sends a request; returns its correlation id.
    fn send<R: Request>(
        &mut self,
        sim: &mut SimCluster,
        request: &R,
        version: i16,
        now: i64,
    ) -> i32 {
        let correlation_id = self.next_correlation;
        self.next_correlation += 1;
        let frame = request_frame(request, version, correlation_id);
        sim.receive(self.conn, &frame, now)
            .expect("connection open");
        correlation_id
    }

    /// The response to `correlation_id` if it has been sent.
    fn try_recv<R: Request>(
        &mut self,
        sim: &mut SimCluster,
        version: i16,
        correlation_id: i32,
    ) -> Option<R::Response> {
        sim.poll_send(self.conn)
            .map(|frame| decode_response::<R>(frame, version, correlation_id))
    }

    /// Sends a request and expects its response at once.
    fn call<R: Request>(
        &mut self,
        sim: &mut SimCluster,
        request: &R,
        version: i16,
        now: i64,
    ) -> R::Response {
        let correlation_id = self.send(sim, request, version, now);
        let response = self
            .try_recv::<R>(sim, version, correlation_id)
            .unwrap_or_else(|| panic!("no immediate response to {:?}", api_of::<R>()));
        assert!(
            sim.poll_send(self.conn).is_none(),
            "one response per request"
        );
        response
    }
}

fn err(code: i16) -> Option<ResponseError> {
    ResponseError::try_from_code(code)
}

fn leader_client(sim: &mut SimCluster, t: &str, partition: i32) -> Client {
    let leader = sim
        .leader_of(&TopicPartition::new(t, partition))
        .expect("partition exists");
    Client::connect(sim, leader)
}

// ----- record helpers ---------------------------------------------------------------------

fn wire_records(
    producer_id: i64,
    epoch: i16,
    base_sequence: i32,
    values: &[(&str, &str, i64)],
) -> Vec<Record> {
    values
        .iter()
        .enumerate()
        .map(|(i, (k, v, ts))| {
            let mut headers = IndexMap::new();
            headers.insert(s("trace"), Some(Bytes::from(format!("h-{k}"))));
            headers.insert(s("empty"), None);
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id,
                producer_epoch: epoch,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: if producer_id >= 0 {
                    base_sequence + i as i32
                } else {
                    -1 + i as i32
                },
                timestamp: *ts,
                key: Some(Bytes::copy_from_slice(k.as_bytes())),
                value: Some(Bytes::copy_from_slice(v.as_bytes())),
                headers,
            }
        })
        .collect()
}

fn batch_bytes(records: &[Record], compression: Compression) -> Bytes {
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .expect("batch encodes");
    buf.freeze()
}

fn produce_request(t: &str, partition: i32, records: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(topic(t))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(records)),
                ]),
        ])
}

fn produce_result(response: &ProduceResponse) -> (i16, i64) {
    let p = &response.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

fn fetch_request(
    t: &str,
    partition: i32,
    offset: i64,
    max_bytes: i32,
    partition_max: i32,
) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(max_bytes)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(topic(t))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(partition)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(partition_max),
                ]),
        ])
}

fn fetched_bytes(response: &FetchResponse) -> (i16, Bytes) {
    let p = &response.responses[0].partitions[0];
    (p.error_code, p.records.clone().unwrap_or_default())
}

fn decode_with_core(records: &Bytes, fetch_offset: i64) -> FetchedRecords {
    decode_fetched_records(
        &FetchedPartition {
            partition: 0,
            fetch_offset,
            records,
            isolation: IsolationLevel::ReadUncommitted,
            aborted_transactions: &[],
        },
        &DecodeLimits::default(),
    )
    .expect("kstreams decodes the simulator's fetch")
}

// ----- group helpers ----------------------------------------------------------------------

const GROUP: &str = "g";
const JOIN_V: i16 = 5;
const SESSION_MS: i32 = 10_000;
const REBALANCE_MS: i32 = 30_000;

fn join_request(member_id: &str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(s(GROUP)))
        .with_session_timeout_ms(SESSION_MS)
        .with_rebalance_timeout_ms(REBALANCE_MS)
        .with_member_id(s(member_id))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(Bytes::from_static(b"subscription")),
        ])
}

fn heartbeat(
    client: &mut Client,
    sim: &mut SimCluster,
    member: &str,
    generation: i32,
    now: i64,
) -> i16 {
    client
        .call(
            sim,
            &HeartbeatRequest::default()
                .with_group_id(GroupId(s(GROUP)))
                .with_generation_id(generation)
                .with_member_id(s(member)),
            4,
            now,
        )
        .error_code
}

fn coordinator_client(sim: &mut SimCluster) -> Client {
    let mut probe = Client::connect(sim, 0);
    let response = probe.call(
        sim,
        &FindCoordinatorRequest::default().with_key(s(GROUP)),
        3,
        T0,
    );
    assert_eq!(response.error_code, 0);
    assert_eq!(Some(response.node_id.0), sim.coordinator_of(GROUP));
    Client::connect(sim, response.node_id.0)
}

/// Joins a new member: MEMBER_ID_REQUIRED first, then the join with the given id, which is
/// left pending (parked) or answered. Returns the member id and the join's correlation id.
fn start_join(client: &mut Client, sim: &mut SimCluster, now: i64) -> (String, i32) {
    let first = client.call(sim, &join_request(""), JOIN_V, now);
    assert_eq!(err(first.error_code), Some(ResponseError::MemberIdRequired));
    let member_id = first.member_id.to_string();
    assert!(member_id.starts_with("sim-test-"), "{member_id}");
    let correlation = client.send(sim, &join_request(&member_id), JOIN_V, now);
    (member_id, correlation)
}

fn sync_request(
    member: &str,
    generation: i32,
    assignments: &[(&str, &'static [u8])],
) -> SyncGroupRequest {
    SyncGroupRequest::default()
        .with_group_id(GroupId(s(GROUP)))
        .with_generation_id(generation)
        .with_member_id(s(member))
        .with_assignments(
            assignments
                .iter()
                .map(|(m, a)| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(s(m))
                        .with_assignment(Bytes::from_static(a))
                })
                .collect(),
        )
}

/// A stable group of two members A (leader) and B at generation 2.
struct TwoMembers {
    a: Client,
    b: Client,
    a_id: String,
    b_id: String,
    generation: i32,
}

fn two_member_group(sim: &mut SimCluster) -> TwoMembers {
    let mut a = coordinator_client(sim);
    let mut b = coordinator_client(sim);
    // A joins alone: generation 1 at once.
    let (a_id, corr) = start_join(&mut a, sim, T0);
    let joined = a
        .try_recv::<JoinGroupRequest>(sim, JOIN_V, corr)
        .expect("sole member joins at once");
    assert_eq!((joined.error_code, joined.generation_id), (0, 1));
    assert_eq!(joined.leader.as_str(), a_id);
    let synced = a.call(sim, &sync_request(&a_id, 1, &[(&a_id, b"A-only")]), 5, T0);
    assert_eq!(synced.assignment, Bytes::from_static(b"A-only"));
    assert_eq!(sim.group_state(GROUP), Some(GroupState::Stable));

    // B joins: its JoinGroup waits until A rejoins.
    let (b_id, b_corr) = start_join(&mut b, sim, T0 + 100);
    assert!(
        b.try_recv::<JoinGroupRequest>(sim, JOIN_V, b_corr)
            .is_none(),
        "B waits for A"
    );
    assert_eq!(sim.group_state(GROUP), Some(GroupState::PreparingRebalance));
    assert_eq!(
        err(heartbeat(&mut a, sim, &a_id, 1, T0 + 200)),
        Some(ResponseError::RebalanceInProgress)
    );
    let a_corr = a.send(sim, &join_request(&a_id), JOIN_V, T0 + 300);
    let a_join = a
        .try_recv::<JoinGroupRequest>(sim, JOIN_V, a_corr)
        .expect("A's join completes");
    let b_join = b
        .try_recv::<JoinGroupRequest>(sim, JOIN_V, b_corr)
        .expect("B's join completes");
    assert_eq!((a_join.error_code, b_join.error_code), (0, 0));
    assert_eq!((a_join.generation_id, b_join.generation_id), (2, 2));
    assert_eq!(
        a_join.leader.as_str(),
        a_id,
        "the first member stays leader"
    );
    assert_eq!(b_join.leader.as_str(), a_id);
    assert_eq!(
        a_join.protocol_name.as_ref().map(|p| p.as_str()),
        Some("range")
    );
    let listed: Vec<&str> = a_join
        .members
        .iter()
        .map(|m| m.member_id.as_str())
        .collect();
    assert_eq!(
        listed,
        vec![a_id.as_str(), b_id.as_str()],
        "the leader gets every member"
    );
    assert!(
        a_join
            .members
            .iter()
            .all(|m| m.metadata == Bytes::from_static(b"subscription"))
    );
    assert!(b_join.members.is_empty(), "followers get no member list");

    // B syncs first and waits for the leader's assignment.
    let b_sync = b.send(sim, &sync_request(&b_id, 2, &[]), 5, T0 + 400);
    assert!(b.try_recv::<SyncGroupRequest>(sim, 5, b_sync).is_none());
    let a_sync = a.call(
        sim,
        &sync_request(&a_id, 2, &[(&a_id, b"for-A"), (&b_id, b"for-B")]),
        5,
        T0 + 500,
    );
    assert_eq!(
        (a_sync.error_code, a_sync.assignment.clone()),
        (0, Bytes::from_static(b"for-A"))
    );
    let b_synced = b
        .try_recv::<SyncGroupRequest>(sim, 5, b_sync)
        .expect("B's sync completes");
    assert_eq!(
        (b_synced.error_code, b_synced.assignment),
        (0, Bytes::from_static(b"for-B"))
    );
    assert_eq!(sim.group_state(GROUP), Some(GroupState::Stable));
    TwoMembers {
        a,
        b,
        a_id,
        b_id,
        generation: 2,
    }
}

// ----- tests ----------------------------------------------------------------------------

#[test]
fn api_versions_advertises_the_table_and_answers_unknown_versions_with_v0() {
    let mut sim = SimCluster::new(1, 1);
    let mut client = Client::connect(&mut sim, 0);
    let response = client.call(
        &mut sim,
        &ApiVersionsRequest::default()
            .with_client_software_name(s("sim-test"))
            .with_client_software_version(s("1")),
        3,
        T0,
    );
    assert_eq!(response.error_code, 0);
    let fetch = response
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::Fetch as i16)
        .expect("Fetch advertised");
    assert_eq!((fetch.min_version, fetch.max_version), (4, 12));
    let produce = response
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::Produce as i16)
        .expect("Produce advertised");
    assert_eq!((produce.min_version, produce.max_version), (3, 12));
    // 14 APIs, and the 4 transaction APIs (see sim_broker/transactions.rs).
    assert_eq!(response.api_keys.len(), 18);

    // A version above the advertised one: UNSUPPORTED_VERSION in a v0 body.
    let correlation = client.send(&mut sim, &ApiVersionsRequest::default(), 4, T0);
    let frame = sim.poll_send(client.conn).expect("answered");
    let unsupported = decode_response::<ApiVersionsRequest>(frame, 0, correlation);
    assert_eq!(
        err(unsupported.error_code),
        Some(ResponseError::UnsupportedVersion)
    );
    assert!(
        unsupported
            .api_keys
            .iter()
            .any(|k| k.api_key == ApiKey::ApiVersions as i16 && k.max_version == 3)
    );

    // The table is configurable: a removed API disappears and a request for it closes.
    sim.config_mut().api_versions.remove(ApiKey::Fetch);
    let response = client.call(&mut sim, &ApiVersionsRequest::default(), 2, T0);
    assert!(
        !response
            .api_keys
            .iter()
            .any(|k| k.api_key == ApiKey::Fetch as i16)
    );
    let frame = request_frame(&fetch_request("t", 0, 0, 1024, 1024), 12, 99);
    assert!(sim.receive(client.conn, &frame, T0).is_err());
    assert!(matches!(
        sim.close_reason(client.conn),
        Some(CloseReason::Malformed(_))
    ));
}

#[test]
fn create_topics_and_metadata_spread_leaders_over_brokers() {
    let mut sim = SimCluster::new(2, 3);
    sim.create_topic("direct", 2).expect("created");
    let mut client = Client::connect(&mut sim, 1);
    let created = client.call(
        &mut sim,
        &CreateTopicsRequest::default()
            .with_timeout_ms(1000)
            .with_topics(vec![
                CreatableTopic::default()
                    .with_name(topic("orders"))
                    .with_num_partitions(6)
                    .with_replication_factor(1),
                CreatableTopic::default()
                    .with_name(topic("direct"))
                    .with_num_partitions(1)
                    .with_replication_factor(1),
                CreatableTopic::default()
                    .with_name(topic("bad/name"))
                    .with_num_partitions(1)
                    .with_replication_factor(1),
            ]),
        7,
        T0,
    );
    let codes: Vec<Option<ResponseError>> =
        created.topics.iter().map(|t| err(t.error_code)).collect();
    assert_eq!(
        codes,
        vec![
            None,
            Some(ResponseError::TopicAlreadyExists),
            Some(ResponseError::InvalidTopicException)
        ]
    );
    assert_eq!(created.topics[0].num_partitions, 6);

    let metadata = client.call(
        &mut sim,
        &MetadataRequest::default().with_topics(None),
        12,
        T0,
    );
    let hosts: Vec<(i32, String, i32)> = metadata
        .brokers
        .iter()
        .map(|b| (b.node_id.0, b.host.to_string(), b.port))
        .collect();
    assert_eq!(
        hosts,
        vec![
            (0, "sim-0".to_owned(), 9092),
            (1, "sim-1".to_owned(), 9093),
            (2, "sim-2".to_owned(), 9094)
        ]
    );
    assert_eq!(
        metadata.cluster_id.as_ref().map(|c| c.as_str()),
        Some("sim-cluster")
    );
    let orders = metadata
        .topics
        .iter()
        .find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some("orders"))
        .expect("orders listed");
    assert_eq!(orders.partitions.len(), 6);
    assert!(!orders.topic_id.is_nil());
    let mut leaders: Vec<i32> = orders.partitions.iter().map(|p| p.leader_id.0).collect();
    for (i, p) in orders.partitions.iter().enumerate() {
        assert_eq!(p.partition_index, i as i32);
        assert_eq!(
            Some(p.leader_id.0),
            sim.leader_of(&TopicPartition::new("orders", i as i32))
        );
    }
    leaders.sort_unstable();
    leaders.dedup();
    assert_eq!(
        leaders,
        vec![0, 1, 2],
        "leaders are spread over all brokers"
    );

    // v1, named topics: an unknown topic has an error, a known one is listed.
    let named = client.call(
        &mut sim,
        &MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic("nope"))),
            MetadataRequestTopic::default().with_name(Some(topic("direct"))),
        ])),
        1,
        T0,
    );
    assert_eq!(
        err(named.topics[0].error_code),
        Some(ResponseError::UnknownTopicOrPartition)
    );
    assert_eq!(named.topics[1].error_code, 0);
    assert_eq!(named.topics[1].partitions.len(), 2);
}

#[test]
fn idempotent_produce_fetches_back_identical_records_and_detects_duplicates() {
    let mut sim = SimCluster::new(3, 2);
    sim.create_topic("t", 1).expect("created");
    let mut client = leader_client(&mut sim, "t", 0);
    let init = client.call(
        &mut sim,
        &InitProducerIdRequest::default().with_transaction_timeout_ms(60_000),
        4,
        T0,
    );
    assert_eq!(init.error_code, 0);
    let (pid, epoch) = (init.producer_id.0, init.producer_epoch);
    assert!(pid >= 0);

    let first = wire_records(
        pid,
        epoch,
        0,
        &[("k0", "v0", T0), ("k1", "v1", T0 + 1), ("k2", "v2", T0 + 5)],
    );
    let second = wire_records(pid, epoch, 3, &[("k3", "v3", T0 + 7), ("k4", "v4", T0 + 8)]);
    let first_bytes = batch_bytes(&first, Compression::None);
    let r = client.call(
        &mut sim,
        &produce_request("t", 0, first_bytes.clone()),
        9,
        T0,
    );
    assert_eq!(produce_result(&r), (0, 0));
    let r = client.call(
        &mut sim,
        &produce_request("t", 0, batch_bytes(&second, Compression::Gzip)),
        12,
        T0,
    );
    assert_eq!(produce_result(&r), (0, 3));

    // A replay of the first batch is detected and not appended.
    let r = client.call(&mut sim, &produce_request("t", 0, first_bytes), 9, T0);
    assert_eq!(
        err(produce_result(&r).0),
        Some(ResponseError::DuplicateSequenceNumber)
    );
    assert_eq!(produce_result(&r).1, 0, "the original offset");
    // A gap in the sequence is refused.
    let gap = wire_records(pid, epoch, 9, &[("k9", "v9", T0)]);
    let r = client.call(
        &mut sim,
        &produce_request("t", 0, batch_bytes(&gap, Compression::None)),
        9,
        T0,
    );
    assert_eq!(
        err(produce_result(&r).0),
        Some(ResponseError::OutOfOrderSequenceNumber)
    );
    assert_eq!(sim.high_watermark("t", 0), Ok(5));

    let log = sim.read_log("t", 0).expect("log");
    let expected: Vec<&Record> = first.iter().chain(second.iter()).collect();
    assert_eq!(log.len(), 5);
    for (i, (stored, sent)) in log.iter().zip(&expected).enumerate() {
        assert_eq!(stored.offset, i as i64);
        assert_eq!(stored.key, sent.key);
        assert_eq!(stored.value, sent.value);
        assert_eq!(stored.timestamp, sent.timestamp);
        assert_eq!(
            (stored.producer_id, stored.producer_epoch, stored.sequence),
            (pid, epoch, i as i32)
        );
        let headers: Vec<(String, Option<Bytes>)> = sent
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        assert_eq!(stored.headers, headers);
    }

    // Fetch everything back; kstreams' own decoder reads the same records.
    let fetched = client.call(
        &mut sim,
        &fetch_request("t", 0, 0, 1 << 20, 1 << 20),
        12,
        T0,
    );
    let (code, bytes) = fetched_bytes(&fetched);
    assert_eq!(code, 0);
    assert_eq!(fetched.responses[0].partitions[0].high_watermark, 5);
    let decoded = decode_with_core(&bytes, 0);
    assert_eq!(decoded.next_offset, 5);
    assert!(decoded.truncated.is_none());
    let got: Vec<RecordSummary> = decoded
        .records
        .iter()
        .map(|r| {
            (
                r.offset,
                r.timestamp,
                r.key.clone(),
                r.value.clone(),
                r.headers.len(),
            )
        })
        .collect();
    let want: Vec<RecordSummary> = log
        .iter()
        .map(|r| {
            (
                r.offset,
                r.timestamp,
                r.key.clone(),
                r.value.clone(),
                r.headers.len(),
            )
        })
        .collect();
    assert_eq!(got, want);
    assert_eq!(
        decoded.records[4].headers[0].value,
        Some(Bytes::from_static(b"h-k4"))
    );

    // Producing to a broker that does not lead the partition.
    let leader = sim.leader_of(&TopicPartition::new("t", 0)).expect("leader");
    let mut other = Client::connect(&mut sim, 1 - leader);
    let more = wire_records(pid, epoch, 5, &[("k5", "v5", T0)]);
    let r = other.call(
        &mut sim,
        &produce_request("t", 0, batch_bytes(&more, Compression::None)),
        9,
        T0,
    );
    assert_eq!(
        err(produce_result(&r).0),
        Some(ResponseError::NotLeaderOrFollower)
    );
    // A corrupted batch (CRC mismatch) is refused at partition level, not by closing.
    let mut corrupt = BytesMut::from(&batch_bytes(&more, Compression::None)[..]);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xFF;
    let r = client.call(&mut sim, &produce_request("t", 0, corrupt.freeze()), 9, T0);
    assert_eq!(
        err(produce_result(&r).0),
        Some(ResponseError::CorruptMessage)
    );
    assert_eq!(sim.high_watermark("t", 0), Ok(5));
}

#[test]
fn two_member_group_joins_syncs_and_heartbeats() {
    let mut sim = SimCluster::new(4, 3);
    let mut g = two_member_group(&mut sim);
    assert_eq!(
        heartbeat(&mut g.a, &mut sim, &g.a_id, g.generation, T0 + 1_000),
        0
    );
    assert_eq!(
        heartbeat(&mut g.b, &mut sim, &g.b_id, g.generation, T0 + 1_000),
        0
    );
    assert_eq!(
        err(heartbeat(
            &mut g.b,
            &mut sim,
            &g.b_id,
            g.generation - 1,
            T0 + 1_000
        )),
        Some(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        err(heartbeat(
            &mut g.b,
            &mut sim,
            "stranger",
            g.generation,
            T0 + 1_000
        )),
        Some(ResponseError::UnknownMemberId)
    );
    let members = sim.group_members(GROUP);
    let summary: Vec<(&str, &[u8], bool)> = members
        .iter()
        .map(|m| (m.member_id.as_str(), &m.assignment[..], m.is_leader))
        .collect();
    assert_eq!(
        summary,
        vec![
            (g.a_id.as_str(), &b"for-A"[..], true),
            (g.b_id.as_str(), &b"for-B"[..], false)
        ]
    );
    // A join with an unknown member id is refused.
    let r =
        g.a.call(&mut sim, &join_request("made-up"), JOIN_V, T0 + 1_000);
    assert_eq!(err(r.error_code), Some(ResponseError::UnknownMemberId));
    // LeaveGroup (v3+: members list) of B triggers a rebalance seen by A.
    let left = g.b.call(
        &mut sim,
        &LeaveGroupRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_members(vec![
                leave_group_request::MemberIdentity::default().with_member_id(s(&g.b_id)),
            ]),
        4,
        T0 + 2_000,
    );
    assert_eq!((left.error_code, left.members[0].error_code), (0, 0));
    assert_eq!(
        err(heartbeat(
            &mut g.a,
            &mut sim,
            &g.a_id,
            g.generation,
            T0 + 2_100
        )),
        Some(ResponseError::RebalanceInProgress)
    );
    let corr =
        g.a.send(&mut sim, &join_request(&g.a_id), JOIN_V, T0 + 2_200);
    let rejoined =
        g.a.try_recv::<JoinGroupRequest>(&mut sim, JOIN_V, corr)
            .expect("alone again");
    assert_eq!((rejoined.generation_id, rejoined.members.len()), (3, 1));
}

#[test]
fn a_third_member_triggers_a_rebalance_and_a_silent_member_expires() {
    let mut sim = SimCluster::new(5, 3);
    let mut g = two_member_group(&mut sim);
    let mut c = coordinator_client(&mut sim);
    let (c_id, c_corr) = start_join(&mut c, &mut sim, T0 + 1_000);
    assert!(
        c.try_recv::<JoinGroupRequest>(&mut sim, JOIN_V, c_corr)
            .is_none()
    );
    assert_eq!(
        err(heartbeat(
            &mut g.a,
            &mut sim,
            &g.a_id,
            g.generation,
            T0 + 1_100
        )),
        Some(ResponseError::RebalanceInProgress)
    );
    // A rejoins; B keeps heartbeating but never rejoins. The join completes only at the
    // rebalance timeout, without B.
    let a_corr =
        g.a.send(&mut sim, &join_request(&g.a_id), JOIN_V, T0 + 1_200);
    assert!(
        g.a.try_recv::<JoinGroupRequest>(&mut sim, JOIN_V, a_corr)
            .is_none()
    );
    let deadline = T0 + 1_000 + i64::from(REBALANCE_MS);
    let mut now = T0 + 3_000;
    while now < deadline {
        assert_eq!(
            err(heartbeat(&mut g.b, &mut sim, &g.b_id, g.generation, now)),
            Some(ResponseError::RebalanceInProgress)
        );
        now += 3_000;
    }
    assert_eq!(
        sim.next_timer(),
        Some(deadline),
        "the rebalance timeout comes first"
    );
    sim.advance(deadline - 1);
    assert!(
        g.a.try_recv::<JoinGroupRequest>(&mut sim, JOIN_V, a_corr)
            .is_none()
    );
    sim.advance(deadline);
    let a_join =
        g.a.try_recv::<JoinGroupRequest>(&mut sim, JOIN_V, a_corr)
            .expect("completed");
    let c_join = c
        .try_recv::<JoinGroupRequest>(&mut sim, JOIN_V, c_corr)
        .expect("completed");
    assert_eq!((a_join.generation_id, c_join.generation_id), (3, 3));
    let ids: Vec<&str> = a_join
        .members
        .iter()
        .map(|m| m.member_id.as_str())
        .collect();
    assert_eq!(ids, vec![g.a_id.as_str(), c_id.as_str()], "B was removed");
    assert_eq!(
        err(heartbeat(
            &mut g.b,
            &mut sim,
            &g.b_id,
            g.generation,
            deadline
        )),
        Some(ResponseError::UnknownMemberId)
    );

    // Stable at generation 3; then C goes silent and its session expires.
    let c_sync = c.send(&mut sim, &sync_request(&c_id, 3, &[]), 5, deadline);
    let a_sync = g.a.call(
        &mut sim,
        &sync_request(&g.a_id, 3, &[(&g.a_id, b"a"), (&c_id, b"c")]),
        5,
        deadline,
    );
    assert_eq!(a_sync.error_code, 0);
    assert_eq!(
        c.try_recv::<SyncGroupRequest>(&mut sim, 5, c_sync)
            .expect("synced")
            .assignment,
        Bytes::from_static(b"c")
    );
    let mut now = deadline;
    for _ in 0..3 {
        now += 3_000;
        assert_eq!(heartbeat(&mut g.a, &mut sim, &g.a_id, 3, now), 0);
    }
    assert_eq!(sim.group_members(GROUP).len(), 2);
    // C was last seen at `deadline`; its session (10 s) has run out by now (+12 s).
    now += 3_000;
    sim.advance(now);
    let members: Vec<String> = sim
        .group_members(GROUP)
        .into_iter()
        .map(|m| m.member_id)
        .collect();
    assert_eq!(members, vec![g.a_id.clone()]);
    assert_eq!(
        err(heartbeat(&mut g.a, &mut sim, &g.a_id, 3, now)),
        Some(ResponseError::RebalanceInProgress)
    );
    assert_eq!(
        err(heartbeat(&mut c, &mut sim, &c_id, 3, now)),
        Some(ResponseError::UnknownMemberId)
    );
}

#[test]
fn offset_commit_and_fetch_check_the_generation() {
    let mut sim = SimCluster::new(6, 3);
    sim.create_topic("in", 2).expect("created");
    let mut g = two_member_group(&mut sim);
    let commit = |member: &str, generation: i32, offset: i64| {
        OffsetCommitRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(s(member))
            .with_topics(vec![
                OffsetCommitRequestTopic::default()
                    .with_name(topic("in"))
                    .with_partitions(vec![
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(1)
                            .with_committed_offset(offset)
                            .with_committed_metadata(Some(s("meta"))),
                    ]),
            ])
    };
    let code = |r: &OffsetCommitResponse| r.topics[0].partitions[0].error_code;
    let ok =
        g.a.call(&mut sim, &commit(&g.a_id, g.generation, 42), 8, T0 + 1_000);
    assert_eq!(code(&ok), 0);
    assert_eq!(
        sim.committed_offset(GROUP, &TopicPartition::new("in", 1)),
        Some(42)
    );
    let stale = g.b.call(
        &mut sim,
        &commit(&g.b_id, g.generation - 1, 50),
        8,
        T0 + 1_000,
    );
    assert_eq!(err(code(&stale)), Some(ResponseError::IllegalGeneration));
    let unknown =
        g.b.call(&mut sim, &commit("ghost", g.generation, 50), 2, T0 + 1_000);
    assert_eq!(err(code(&unknown)), Some(ResponseError::UnknownMemberId));
    assert_eq!(
        sim.committed_offset(GROUP, &TopicPartition::new("in", 1)),
        Some(42)
    );

    let fetch = g.b.call(
        &mut sim,
        &OffsetFetchRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_topics(Some(vec![
                OffsetFetchRequestTopic::default()
                    .with_name(topic("in"))
                    .with_partition_indexes(vec![0, 1]),
            ])),
        7,
        T0 + 1_000,
    );
    assert_eq!(fetch.error_code, 0);
    let offsets: Vec<(i32, i64)> = fetch.topics[0]
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.committed_offset))
        .collect();
    assert_eq!(offsets, vec![(0, -1), (1, 42)]);
    assert_eq!(
        fetch.topics[0].partitions[1]
            .metadata
            .as_ref()
            .map(|m| m.as_str()),
        Some("meta")
    );

    // A rebalance: while the group prepares it, the current generation still commits (the
    // revoke commit of an eager member).
    let a_rejoin =
        g.a.send(&mut sim, &join_request(&g.a_id), JOIN_V, T0 + 2_000);
    assert_eq!(sim.group_state(GROUP), Some(GroupState::PreparingRebalance));
    let revoke =
        g.b.call(&mut sim, &commit(&g.b_id, g.generation, 44), 8, T0 + 2_000);
    assert_eq!(code(&revoke), 0);
    let b_rejoin =
        g.b.send(&mut sim, &join_request(&g.b_id), JOIN_V, T0 + 2_100);
    for (client, corr) in [(&mut g.a, a_rejoin), (&mut g.b, b_rejoin)] {
        let joined = client
            .try_recv::<JoinGroupRequest>(&mut sim, JOIN_V, corr)
            .expect("rejoined");
        assert_eq!(joined.generation_id, g.generation + 1);
    }
    assert_eq!(
        sim.group_state(GROUP),
        Some(GroupState::CompletingRebalance)
    );
    // Waiting for the leader's assignment: as in Kafka, the member and generation are checked
    // first (a stale generation is ILLEGAL_GENERATION), and only a current one hears
    // REBALANCE_IN_PROGRESS.
    let stale =
        g.b.call(&mut sim, &commit(&g.b_id, g.generation, 45), 8, T0 + 2_200);
    assert_eq!(err(code(&stale)), Some(ResponseError::IllegalGeneration));
    let current = g.b.call(
        &mut sim,
        &commit(&g.b_id, g.generation + 1, 45),
        8,
        T0 + 2_200,
    );
    assert_eq!(
        err(code(&current)),
        Some(ResponseError::RebalanceInProgress)
    );
    let unknown = g.b.call(
        &mut sim,
        &commit("ghost", g.generation + 1, 45),
        8,
        T0 + 2_200,
    );
    assert_eq!(err(code(&unknown)), Some(ResponseError::UnknownMemberId));
    assert_eq!(
        sim.committed_offset(GROUP, &TopicPartition::new("in", 1)),
        Some(44)
    );

    // The wrong broker answers NOT_COORDINATOR.
    let coordinator = sim.coordinator_of(GROUP).expect("coordinator");
    let mut wrong = Client::connect(&mut sim, (coordinator + 1) % 3);
    let r = wrong.call(&mut sim, &commit(&g.a_id, g.generation, 43), 8, T0 + 1_000);
    assert_eq!(err(code(&r)), Some(ResponseError::NotCoordinator));

    // A group without members accepts a simple commit (generation -1, no member).
    let other = commit("", -1, 7).with_group_id(GroupId(s("standalone")));
    let coordinator = sim.coordinator_of("standalone").expect("coordinator");
    let mut client = Client::connect(&mut sim, coordinator);
    let r = client.call(&mut sim, &other, 8, T0);
    assert_eq!(code(&r), 0);
    assert_eq!(
        sim.committed_offset("standalone", &TopicPartition::new("in", 1)),
        Some(7)
    );
}

#[test]
fn fetch_with_small_max_bytes_returns_a_truncated_trailing_batch_kstreams_accepts() {
    let mut sim = SimCluster::new(7, 1);
    sim.create_topic("t", 1).expect("created");
    for b in 0..4 {
        let records = (0..3)
            .map(|i| SimRecord::new(format!("k{b}-{i}"), vec![b as u8; 40], T0 + i))
            .collect();
        assert_eq!(sim.produce_direct("t", 0, records), Ok(b * 3));
    }
    let mut client = Client::connect(&mut sim, 0);
    let whole = fetched_bytes(&client.call(
        &mut sim,
        &fetch_request("t", 0, 0, 1 << 20, 1 << 20),
        12,
        T0,
    ))
    .1;
    let first_len = decode_with_core(&whole, 0).complete_bytes / 4;

    // Room for one batch and 30 bytes of the next.
    let limit = (first_len + 30) as i32;
    let (code, cut) =
        fetched_bytes(&client.call(&mut sim, &fetch_request("t", 0, 0, limit, 1 << 20), 12, T0));
    assert_eq!(code, 0);
    assert_eq!(cut.len(), first_len + 30);
    assert_eq!(&cut[..], &whole[..cut.len()]);
    let decoded = decode_with_core(&cut, 0);
    assert_eq!(decoded.records.len(), 3);
    assert_eq!(decoded.next_offset, 3);
    let truncated = decoded.truncated.expect("a truncated trailing batch");
    assert_eq!((truncated.position, truncated.available), (first_len, 30));
    assert_eq!(truncated.base_offset, Some(3));

    // The partition limit cuts too; a first batch larger than the limit still comes whole.
    let (_, tiny) =
        fetched_bytes(&client.call(&mut sim, &fetch_request("t", 0, 4, 1 << 20, 10), 12, T0));
    assert_eq!(
        tiny.len(),
        first_len,
        "KIP-74: the first batch is never cut"
    );
    let decoded = decode_with_core(&tiny, 4);
    let offsets: Vec<i64> = decoded.records.iter().map(|r| r.offset).collect();
    assert_eq!(
        offsets,
        vec![4, 5],
        "records before the fetch offset are dropped by the decoder"
    );
    assert_eq!(decoded.next_offset, 6);

    // Compressed storage comes back decodable too.
    let mut sim = SimCluster::with_config(
        7,
        1,
        SimConfig {
            storage_compression: Some(Compression::Zstd),
            ..SimConfig::default()
        },
    );
    sim.create_topic("z", 1).expect("created");
    sim.produce_direct("z", 0, vec![SimRecord::new("k", vec![7u8; 500], T0)])
        .expect("appended");
    let mut client = Client::connect(&mut sim, 0);
    let (_, bytes) = fetched_bytes(&client.call(
        &mut sim,
        &fetch_request("z", 0, 0, 1 << 20, 1 << 20),
        11,
        T0,
    ));
    assert!(bytes.len() < 200, "zstd shrinks 500 equal bytes");
    let decoded = decode_with_core(&bytes, 0);
    assert_eq!(decoded.records[0].value.as_deref(), Some(&[7u8; 500][..]));
}

#[test]
fn list_offsets_and_long_polling_fetch() {
    let mut sim = SimCluster::new(8, 1);
    sim.create_topic("t", 1).expect("created");
    sim.produce_direct(
        "t",
        0,
        vec![
            SimRecord::new("a", "1", T0),
            SimRecord::new("b", "2", T0 + 50),
        ],
    )
    .expect("appended");
    let mut client = Client::connect(&mut sim, 0);
    let list = |ts: i64| {
        ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![
                ListOffsetsTopic::default()
                    .with_name(topic("t"))
                    .with_partitions(vec![
                        ListOffsetsPartition::default()
                            .with_partition_index(0)
                            .with_timestamp(ts),
                    ]),
            ])
    };
    let offset = |r: &ListOffsetsResponse| {
        (
            r.topics[0].partitions[0].error_code,
            r.topics[0].partitions[0].offset,
        )
    };
    assert_eq!(offset(&client.call(&mut sim, &list(-2), 7, T0)), (0, 0));
    assert_eq!(offset(&client.call(&mut sim, &list(-1), 1, T0)), (0, 2));
    assert_eq!(
        offset(&client.call(&mut sim, &list(T0 + 10), 4, T0)),
        (0, 1)
    );

    // A fetch at the end waits up to max_wait_ms, and is answered when data arrives.
    let mut request = fetch_request("t", 0, 2, 1 << 20, 1 << 20);
    request.max_wait_ms = 500;
    let corr = client.send(&mut sim, &request, 12, T0);
    assert!(
        client
            .try_recv::<FetchRequest>(&mut sim, 12, corr)
            .is_none()
    );
    assert_eq!(sim.next_timer(), Some(T0 + 500));
    sim.produce_direct("t", 0, vec![SimRecord::new("c", "3", T0 + 60)])
        .expect("appended");
    let response = client
        .try_recv::<FetchRequest>(&mut sim, 12, corr)
        .expect("woken by data");
    assert_eq!(
        decode_with_core(&fetched_bytes(&response).1, 2)
            .records
            .len(),
        1
    );
    // With no data, it is answered empty at the deadline.
    request.topics[0].partitions[0].fetch_offset = 3;
    let corr = client.send(&mut sim, &request, 12, T0 + 100);
    sim.advance(T0 + 599);
    assert!(
        client
            .try_recv::<FetchRequest>(&mut sim, 12, corr)
            .is_none()
    );
    sim.advance(T0 + 600);
    let response = client
        .try_recv::<FetchRequest>(&mut sim, 12, corr)
        .expect("deadline");
    assert_eq!(fetched_bytes(&response), (0, Bytes::new()));
    // An offset past the end is out of range.
    let r = client.call(
        &mut sim,
        &fetch_request("t", 0, 9, 1 << 20, 1 << 20),
        12,
        T0 + 700,
    );
    assert_eq!(
        err(fetched_bytes(&r).0),
        Some(ResponseError::OffsetOutOfRange)
    );
}

#[test]
fn injected_errors_apply_to_the_next_requests_of_an_api() {
    let mut sim = SimCluster::new(9, 2);
    sim.create_topic("t", 1).expect("created");
    let mut client = leader_client(&mut sim, "t", 0);
    let records = batch_bytes(
        &wire_records(-1, -1, -1, &[("k", "v", T0)]),
        Compression::None,
    );
    sim.inject_error(
        ApiKey::Produce,
        ResponseError::NotLeaderOrFollower.code(),
        2,
    );
    for _ in 0..2 {
        let r = client.call(&mut sim, &produce_request("t", 0, records.clone()), 9, T0);
        assert_eq!(
            err(produce_result(&r).0),
            Some(ResponseError::NotLeaderOrFollower)
        );
    }
    assert_eq!(
        sim.high_watermark("t", 0),
        Ok(0),
        "failed requests have no effect"
    );
    let r = client.call(&mut sim, &produce_request("t", 0, records), 9, T0);
    assert_eq!(produce_result(&r), (0, 0));

    // Group-level errors, at both FindCoordinator layouts.
    sim.inject_error(
        ApiKey::FindCoordinator,
        ResponseError::CoordinatorNotAvailable.code(),
        2,
    );
    let r = client.call(
        &mut sim,
        &FindCoordinatorRequest::default().with_key(s("g")),
        3,
        T0,
    );
    assert_eq!(
        err(r.error_code),
        Some(ResponseError::CoordinatorNotAvailable)
    );
    let r = client.call(
        &mut sim,
        &FindCoordinatorRequest::default().with_coordinator_keys(vec![s("g")]),
        4,
        T0,
    );
    assert_eq!(
        err(r.coordinators[0].error_code),
        Some(ResponseError::CoordinatorNotAvailable)
    );
    let r = client.call(
        &mut sim,
        &FindCoordinatorRequest::default().with_coordinator_keys(vec![s("g")]),
        4,
        T0,
    );
    assert_eq!(
        (
            r.coordinators[0].error_code,
            Some(r.coordinators[0].node_id.0)
        ),
        (0, sim.coordinator_of("g"))
    );

    // An injected disconnect closes the connection unanswered; the harness is told.
    sim.inject_disconnect(ApiKey::Fetch, 1);
    let frame = request_frame(&fetch_request("t", 0, 0, 1024, 1024), 12, 1);
    assert!(sim.receive(client.conn, &frame, T0).is_err());
    assert_eq!(sim.poll_send(client.conn), None);
    assert_eq!(
        sim.poll_closed(),
        Some((client.conn, CloseReason::InjectedFault))
    );

    // Leader moves and broker failures.
    let tp = TopicPartition::new("t", 0);
    let old = sim.leader_of(&tp).expect("leader");
    let mut on_old = Client::connect(&mut sim, old);
    sim.move_leader(&tp, 1 - old).expect("moved");
    let r = on_old.call(&mut sim, &fetch_request("t", 0, 0, 1024, 1024), 12, T0);
    assert_eq!(
        err(fetched_bytes(&r).0),
        Some(ResponseError::NotLeaderOrFollower)
    );
    assert_eq!(
        r.responses[0].partitions[0].current_leader.leader_id.0,
        1 - old
    );
    sim.broker_down(1 - old).expect("down");
    assert_eq!(sim.leader_of(&tp), Some(old));
    assert!(
        sim.connect(1 - old).is_err(),
        "a down broker refuses connections"
    );
    sim.broker_up(1 - old).expect("up");
    assert!(sim.connect(1 - old).is_ok());
}

#[test]
fn broker_down_closes_its_connections() {
    let mut sim = SimCluster::new(10, 3);
    let mut c1 = Client::connect(&mut sim, 1);
    let c2 = Client::connect(&mut sim, 2);
    c1.call(&mut sim, &ApiVersionsRequest::default(), 0, T0);
    sim.broker_down(1).expect("down");
    assert!(!sim.is_open(c1.conn));
    assert!(sim.is_open(c2.conn));
    assert_eq!(sim.poll_closed(), Some((c1.conn, CloseReason::BrokerDown)));
    assert_eq!(sim.poll_closed(), None);
    let metadata = Client::connect(&mut sim, 0).call(
        &mut sim,
        &MetadataRequest::default().with_topics(None),
        12,
        T0,
    );
    let ids: Vec<i32> = metadata.brokers.iter().map(|b| b.node_id.0).collect();
    assert_eq!(ids, vec![0, 2]);
}

#[test]
fn malformed_frames_close_the_connection_without_panicking() {
    let mut sim = SimCluster::new(11, 1);
    // A valid request fed one byte at a time is served.
    let mut client = Client::connect(&mut sim, 0);
    let frame = request_frame(&ApiVersionsRequest::default(), 2, 5);
    for byte in frame.iter() {
        sim.receive(client.conn, std::slice::from_ref(byte), T0)
            .expect("open");
    }
    let response =
        decode_response::<ApiVersionsRequest>(sim.poll_send(client.conn).expect("served"), 2, 5);
    assert_eq!(response.error_code, 0);

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("unknown api key", {
            let mut f = vec![0, 0, 0, 10];
            f.extend_from_slice(&[0x7F, 0x00, 0, 0, 0, 0, 0, 1, 0xFF, 0xFF]);
            f
        }),
        ("negative length", (-5i32).to_be_bytes().to_vec()),
        ("too short for a header", vec![0, 0, 0, 2, 0, 3]),
        ("truncated body", {
            let full = request_frame(&MetadataRequest::default().with_topics(None), 12, 1);
            let cut = full.len() - 6;
            let mut f = ((cut - 4) as i32).to_be_bytes().to_vec();
            f.extend_from_slice(&full[4..cut]);
            f
        }),
        ("trailing bytes", {
            let full = request_frame(&HeartbeatRequest::default(), 0, 1);
            let mut f = ((full.len() - 4 + 3) as i32).to_be_bytes().to_vec();
            f.extend_from_slice(&full[4..]);
            f.extend_from_slice(&[1, 2, 3]);
            f
        }),
        ("garbage body", {
            let mut f = vec![0, 0, 0, 20, 0, 1, 0, 12, 0, 0, 0, 1];
            f.extend_from_slice(&[0xFF; 12]);
            f
        }),
    ];
    for (name, bytes) in cases {
        client = Client::connect(&mut sim, 0);
        // A good request before the bad frame is still answered.
        let good = request_frame(&ApiVersionsRequest::default(), 0, 1);
        let mut stream = good.to_vec();
        stream.extend_from_slice(&bytes);
        let result = sim.receive(client.conn, &stream, T0);
        assert!(result.is_err(), "{name}: connection closed");
        assert!(
            matches!(
                sim.close_reason(client.conn),
                Some(CloseReason::Malformed(_))
            ),
            "{name}"
        );
        assert!(
            sim.poll_send(client.conn).is_some(),
            "{name}: earlier response kept"
        );
        assert!(
            sim.receive(client.conn, &good, T0).is_err(),
            "{name}: stays closed"
        );
    }
}

/// Runs a fixed script of requests with random faults and returns every byte sent back.
fn scripted_run(seed: u64) -> Vec<Bytes> {
    let mut sim = SimCluster::new(seed, 3);
    sim.set_random_faults(Some(RandomFaults {
        error_probability: 0.3,
        disconnect_probability: 0.05,
    }));
    sim.create_topic("t", 3).expect("created");
    let mut out = Vec::new();
    let mut conn = sim.connect(0).expect("up");
    for i in 0..60 {
        if !sim.is_open(conn) {
            conn = sim.connect(0).expect("up");
        }
        let frame = match i % 3 {
            0 => request_frame(&MetadataRequest::default().with_topics(None), 12, i),
            1 => request_frame(&join_request(""), JOIN_V, i),
            _ => request_frame(
                &produce_request(
                    "t",
                    0,
                    batch_bytes(
                        &wire_records(-1, -1, -1, &[("k", "v", T0)]),
                        Compression::None,
                    ),
                ),
                9,
                i,
            ),
        };
        let _ = sim.receive(conn, &frame, T0 + i64::from(i));
        while let Some(bytes) = sim.poll_send(conn) {
            out.push(bytes);
        }
    }
    out
}

#[test]
fn the_same_seed_gives_the_same_bytes() {
    let a = scripted_run(42);
    assert_eq!(a, scripted_run(42));
    assert_ne!(
        a,
        scripted_run(43),
        "member ids and faults depend on the seed"
    );
    assert!(a.len() > 30);
}
