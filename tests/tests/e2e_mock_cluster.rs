//! End to end against librdkafka's mock cluster (`rdkafka::mocking::MockCluster`): an
//! independently written broker, in process, on real loopback TCP. Input is produced and
//! output read with rdkafka clients; the application runs with `kstreams_tokio::KafkaStreams`.
//!
//! The mock cluster has no CreateTopics (librdkafka 2.12 serves Produce, Fetch, ListOffsets,
//! OffsetFetch, OffsetCommit, ApiVersions ≤ 2, Metadata, FindCoordinator, InitProducerId,
//! JoinGroup, Heartbeat, LeaveGroup, SyncGroup, the transaction APIs, OffsetForLeaderEpoch and
//! ConsumerGroupHeartbeat), so topics are made with `MockCluster::create_topic`. A logged
//! store's changelog topic must then exist already: the engine checks its partition count
//! instead of creating it (see `a_logged_store_uses_a_changelog_made_beforehand` and
//! `a_logged_store_without_its_changelog_fails_saying_how_to_create_it`).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use kstreams_core::client::admin::InternalTopicsError;
use kstreams_core::engine::{EngineConfig, EngineError};
use kstreams_core::prelude::*;
use kstreams_tokio::{KafkaStreams, Stores, StreamsConfig, StreamsError, StreamsState};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaApiKey;
use rdkafka::{Offset, TopicPartitionList};

const INPUT: &str = "input";
const OUTPUT: &str = "output";
const PARTITIONS: i32 = 4;
/// Bound of each test (it fails loudly past it, never hangs).
const TEST_TIMEOUT: Duration = Duration::from_secs(90);
/// Bound of each blocking wait inside a test.
const WAIT: Duration = Duration::from_secs(60);

type Mock = MockCluster<'static, DefaultProducerContext>;
/// An input record: (partition, key, value).
type InputRecord = (i32, Vec<u8>, Vec<u8>);

/// A mock cluster of three brokers with the input and output topics.
fn mock_cluster() -> Mock {
    let mock = MockCluster::new(3).expect("mock cluster");
    mock.create_topic(INPUT, PARTITIONS, 1)
        .expect("create input");
    mock.create_topic(OUTPUT, PARTITIONS, 1)
        .expect("create output");
    // librdkafka 2.12's mock misparses the flexible versions of the classic group APIs it
    // advertises (librdkafka's own client never sends them): JoinGroup v6 and SyncGroup v4 read
    // their protocol/assignment array count as a fixed INT32 instead of a compact-array
    // varint (JoinGroup then sees a count > 1000 and closes the connection; SyncGroup reads
    // member ids out of bounds and crashes the process with SIGSEGV), and LeaveGroup reads
    // the v0-v2 layout (`member_id`) at every version, so v3+'s `members` array is misread.
    // Cap the mock at the highest versions it parses: JoinGroup v5, SyncGroup v3, LeaveGroup
    // v2.
    for (api, max) in [
        (RDKafkaApiKey::JoinGroup, 5),
        (RDKafkaApiKey::SyncGroup, 3),
        (RDKafkaApiKey::LeaveGroup, 2),
    ] {
        mock.apiversion(api, Some(0), Some(max))
            .expect("cap a group API version");
    }
    mock
}

async fn bounded<F: Future>(test: F) -> F::Output {
    // Engine warnings and errors on the test's stderr (shown for failed tests).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
    tokio::time::timeout(TEST_TIMEOUT, test)
        .await
        .expect("test timed out")
}

/// Produces `records` as `(partition, key, value)` with an idempotent rdkafka producer (so a
/// partition's records keep their order) and waits for every acknowledgement.
async fn produce(bootstrap: &str, records: &[(i32, Vec<u8>, Vec<u8>)]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("producer");
    let deliveries: Vec<_> = records
        .iter()
        .map(|(partition, key, value)| {
            producer
                .send_result(
                    FutureRecord::to(INPUT)
                        .partition(*partition)
                        .key(key)
                        .payload(value),
                )
                .unwrap_or_else(|(e, _)| panic!("enqueue failed: {e}"))
        })
        .collect();
    for delivery in deliveries {
        delivery
            .await
            .expect("delivery future dropped")
            .unwrap_or_else(|(e, _)| panic!("delivery failed: {e}"));
    }
}

/// Reads `topic` from the beginning until `expected` records arrived (panics after [`WAIT`]);
/// returns them per partition as `(key, value)`, in offset order. Then checks for `settle`
/// that nothing more arrives.
fn read_exactly(
    bootstrap: &str,
    topic: &str,
    expected: usize,
    settle: Duration,
) -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "e2e-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).expect("assign");
    let mut out: Vec<Vec<(Vec<u8>, Vec<u8>)>> = vec![Vec::new(); PARTITIONS as usize];
    let mut offsets: Vec<i64> = vec![-1; PARTITIONS as usize];
    let mut total = 0;
    let deadline = Instant::now() + WAIT;
    let mut settle_until: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if total >= expected {
            let until = *settle_until.get_or_insert(now + settle);
            if now >= until {
                break;
            }
        }
        assert!(
            now < deadline,
            "timed out reading {topic}: {total} of {expected} records"
        );
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = message.expect("consume");
        let p = message.partition() as usize;
        assert!(
            message.offset() > offsets[p],
            "{topic}-{p}: offsets increase"
        );
        offsets[p] = message.offset();
        out[p].push((
            message.key().unwrap_or_default().to_vec(),
            message.payload().unwrap_or_default().to_vec(),
        ));
        total += 1;
    }
    assert_eq!(total, expected, "{topic}: exactly the expected records");
    out
}

/// The end offset of each input partition, and the offset the group `app` committed for it,
/// read through the broker by an rdkafka consumer in that group.
fn committed_and_end_offsets(bootstrap: &str, app: &str) -> Vec<(Offset, i64)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", app)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut partitions = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        partitions.add_partition(INPUT, p);
    }
    let committed = consumer
        .committed_offsets(partitions, Duration::from_secs(10))
        .expect("committed offsets");
    (0..PARTITIONS)
        .map(|p| {
            let (_, high) = consumer
                .fetch_watermarks(INPUT, p, Duration::from_secs(10))
                .expect("watermarks");
            let offset = committed
                .find_partition(INPUT, p)
                .expect("partition in answer")
                .offset();
            (offset, high)
        })
        .collect()
}

/// Quick commits and a short session, bootstrapping from the mock cluster.
fn streams_config(bootstrap: &str, app: &str, state_dir: &Path) -> StreamsConfig {
    let mut engine = EngineConfig::new(app, bootstrap.split(','));
    engine.commit_interval_ms = 200;
    engine.producer.linger_ms = 5;
    engine.session_timeout_ms = 6_000;
    engine.heartbeat_interval_ms = 1_000;
    let mut config = StreamsConfig::from_engine_config(engine);
    config.state_dir = state_dir.to_owned();
    config
}

/// input → output, bytes unchanged.
fn passthrough_topology() -> Topology {
    let mut b = TopologyBuilder::new();
    let src = b
        .add_source("src", &[INPUT], BytesSerde, BytesSerde)
        .unwrap();
    b.add_sink("sink", OUTPUT, &[&src], BytesSerde, BytesSerde)
        .unwrap();
    b.build().unwrap()
}

/// input → count per key (store "counts", logged or not) → output.
fn count_topology(logged: bool) -> Topology {
    let mut b = TopologyBuilder::new();
    let src = b
        .add_source("src", &[INPUT], StringSerde, StringSerde)
        .unwrap();
    let count = b
        .add_processor("count", &[&src], BatchCountAggregator::supplier("counts"))
        .unwrap();
    b.add_store(
        StoreBuilder::key_value("counts", StringSerde, I64Serde).with_logging(logged),
        &["count"],
    )
    .unwrap();
    b.add_sink("sink", OUTPUT, &[&count], StringSerde, I64Serde)
        .unwrap();
    b.build().unwrap()
}

/// `count` input records over the partitions, keyed so each key stays in one partition, and
/// the final count per key.
fn count_input(count: i32) -> (Vec<InputRecord>, BTreeMap<String, i64>) {
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    let input = (0..count)
        .map(|i| {
            let p = i % PARTITIONS;
            let key = format!("p{p}-k{}", (i / PARTITIONS) % 11);
            *expected.entry(key.clone()).or_insert(0) += 1;
            (p, key.into_bytes(), format!("v{i}").into_bytes())
        })
        .collect();
    (input, expected)
}

/// The count topology's output: each key in one partition, its counts going 1, 2, 3, … up to
/// its `expected` final count.
fn assert_counts(output: &[Vec<(Vec<u8>, Vec<u8>)>], expected: &BTreeMap<String, i64>) {
    let mut seen: BTreeMap<String, i64> = BTreeMap::new();
    let mut home: BTreeMap<String, usize> = BTreeMap::new();
    for (p, records) in output.iter().enumerate() {
        for (key, value) in records {
            let key = String::from_utf8(key.clone()).unwrap();
            let count = i64::from_be_bytes(value.as_slice().try_into().unwrap());
            assert_eq!(
                *home.entry(key.clone()).or_insert(p),
                p,
                "{key}: one partition"
            );
            let last = seen.entry(key.clone()).or_insert(0);
            assert_eq!(count, *last + 1, "{key}: counts go 1, 2, 3, …");
            *last = count;
        }
    }
    assert_eq!(&seen, expected, "final count per key");
}

/// Closes the instance (bounded), then checks through the broker that the group committed
/// every input partition at its end offset.
async fn close_and_check_commits(
    handle: kstreams_tokio::StreamsHandle,
    bootstrap: &str,
    app: &str,
) {
    tokio::time::timeout(WAIT, handle.close())
        .await
        .expect("close() timed out")
        .expect("close() failed");
    assert_eq!(handle.state(), StreamsState::NotRunning);
    for (p, (committed, end)) in committed_and_end_offsets(bootstrap, app)
        .into_iter()
        .enumerate()
    {
        assert!(end > 0, "{INPUT}-{p} has input");
        assert_eq!(
            committed,
            Offset::Offset(end),
            "{INPUT}-{p}: committed offset = end offset"
        );
    }
}

/// 1,000 records over 4 partitions pass through unchanged: each exactly once, in its
/// partition's order (the sink's partitioner may move a key to another output partition, so
/// order is checked per input partition, whose values carry a sequence number).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_of_1000_records_exactly_once_in_order() {
    bounded(async {
        let mock = mock_cluster();
        let bootstrap = mock.bootstrap_servers();
        let app = "e2e-passthrough";
        let input: Vec<(i32, Vec<u8>, Vec<u8>)> = (0..1_000)
            .map(|i| {
                let p = i % PARTITIONS;
                let seq = i / PARTITIONS;
                (
                    p,
                    format!("k{p}-{}", seq % 17).into_bytes(),
                    format!("{p}:{seq}").into_bytes(),
                )
            })
            .collect();
        produce(&bootstrap, &input).await;

        let state_dir = tempfile::tempdir().unwrap();
        let streams = KafkaStreams::new(
            passthrough_topology(),
            streams_config(&bootstrap, app, state_dir.path()),
            Stores::Memory,
        )
        .unwrap();
        let handle = streams.start().unwrap();
        let output = read_exactly(&bootstrap, OUTPUT, input.len(), Duration::from_millis(500));

        // Every input record exactly once.
        let mut seen: Vec<_> = output.iter().flatten().cloned().collect();
        let mut expected: Vec<_> = input
            .iter()
            .map(|(_, k, v)| (k.clone(), v.clone()))
            .collect();
        expected.sort();
        seen.sort();
        assert_eq!(seen, expected, "every record exactly once");
        // Per input partition, in sequence order within each output partition (the sink
        // partitions by key, so an input partition's records spread over output partitions).
        for records in &output {
            let mut last: BTreeMap<i32, usize> = BTreeMap::new();
            for (_, value) in records {
                let text = String::from_utf8(value.clone()).unwrap();
                let (p, seq) = text.split_once(':').unwrap();
                let (p, seq): (i32, usize) = (p.parse().unwrap(), seq.parse().unwrap());
                if let Some(prev) = last.insert(p, seq) {
                    assert!(
                        seq > prev,
                        "input partition {p}: {seq} after {prev} in one output partition"
                    );
                }
            }
        }
        close_and_check_commits(handle, &bootstrap, app).await;
    })
    .await;
}

/// The batch count aggregation over LMDB stores: each key's counts are 1, 2, … n in its
/// output partition, ending at the exact total; offsets committed at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_count_with_lmdb_exact_final_counts() {
    bounded(async {
        let mock = mock_cluster();
        let bootstrap = mock.bootstrap_servers();
        let app = "e2e-count";
        let (input, expected) = count_input(800);
        produce(&bootstrap, &input).await;

        let state_dir = tempfile::tempdir().unwrap();
        let streams = KafkaStreams::new(
            count_topology(false),
            streams_config(&bootstrap, app, state_dir.path()),
            Stores::Lmdb,
        )
        .unwrap();
        let handle = streams.start().unwrap();
        let output = read_exactly(&bootstrap, OUTPUT, input.len(), Duration::from_millis(500));
        assert_counts(&output, &expected);
        close_and_check_commits(handle, &bootstrap, app).await;
    })
    .await;
}

/// The mock cluster does not serve CreateTopics: a logged store whose changelog topic was made
/// beforehand (with the input's partition count) is checked in metadata and used, and the
/// counts come out right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logged_store_uses_a_changelog_made_beforehand() {
    bounded(async {
        let mock = mock_cluster();
        let bootstrap = mock.bootstrap_servers();
        let app = "e2e-logged";
        mock.create_topic(&format!("{app}-counts-changelog"), PARTITIONS, 1)
            .expect("create changelog");
        let (input, expected) = count_input(400);
        produce(&bootstrap, &input).await;
        let state_dir = tempfile::tempdir().unwrap();
        let streams = KafkaStreams::new(
            count_topology(true),
            streams_config(&bootstrap, app, state_dir.path()),
            Stores::Memory,
        )
        .unwrap();
        let handle = streams.start().unwrap();
        let output = read_exactly(&bootstrap, OUTPUT, input.len(), Duration::from_millis(500));
        assert_counts(&output, &expected);
        close_and_check_commits(handle, &bootstrap, app).await;
    })
    .await;
}

/// Without CreateTopics and without its changelog topic, a logged store stops the engine with
/// a typed error that names the topic and says how to create it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logged_store_without_its_changelog_fails_saying_how_to_create_it() {
    bounded(async {
        let mock = mock_cluster();
        let bootstrap = mock.bootstrap_servers();
        let app = "e2e-unlogged-cluster";
        let state_dir = tempfile::tempdir().unwrap();
        let streams = KafkaStreams::new(
            count_topology(true),
            streams_config(&bootstrap, app, state_dir.path()),
            Stores::Memory,
        )
        .unwrap();
        let handle = streams.start().unwrap();
        let error = tokio::time::timeout(WAIT, handle.wait())
            .await
            .expect("the engine neither failed nor stopped")
            .unwrap_err();
        let topic = format!("{app}-counts-changelog");
        assert!(
            matches!(
                &error,
                StreamsError::Engine { error, .. } if matches!(
                    &**error,
                    EngineError::InternalTopic(InternalTopicsError::UnsupportedVersion {
                        topic: t,
                        partitions: PARTITIONS,
                        version: None,
                        ..
                    }) if *t == topic
                )
            ),
            "{error}"
        );
        assert!(
            error.to_string().contains(&format!(
                "create topic `{topic}` with {PARTITIONS} partitions (cleanup.policy=compact) yourself"
            )),
            "{error}"
        );
        assert_eq!(handle.state(), StreamsState::Error);
    })
    .await;
}
