//! Shared by the end-to-end tests (`e2e_*.rs`): the brokers (librdkafka's mock cluster in
//! process, a Tansu process, a crabka-broker process for transactions), the adapters (tokio, smol), and an independent client (rdkafka)
//! that produces the input, reads the output and reads committed offsets through the broker.
//!
//! Everything here is blocking: each test body runs on a plain thread under [`bounded`], so
//! a hang fails the test after [`TEST_TIMEOUT`] instead of stalling the suite.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use kstreams_core::prelude::*;
use kstreams_io_common::{
    StateRestoreListener, Stores, StreamsConfig, StreamsHandle, StreamsState,
};
use kstreams_tests::bounded::init_test_logging;
use kstreams_tests::crabka::Crabka;
use kstreams_tests::e2e_config::fast_engine_config;
use kstreams_tests::mock::{Mock, mock_cluster};
use kstreams_tests::reader;
use kstreams_tests::tansu::Tansu;
use rdkafka::Offset;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};

/// Bound of each test.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Bound of each wait inside a test.
pub const WAIT: Duration = Duration::from_secs(60);
/// Partitions of the input and output topics.
pub const PARTITIONS: i32 = 4;

/// A broker for one test.
pub enum Broker {
    /// librdkafka 2.12's mock cluster: three brokers in this process.
    Mock(Mock),
    /// A Tansu 0.6.0 process with in-memory storage.
    Tansu(Tansu),
    /// A crabka-broker 0.3.0 process (transactions, read_committed) with a fresh data
    /// directory and `transaction.version` 0.
    Crabka(Crabka),
    /// Apache Kafka 3.8 (KRaft, one node) in a Docker container, with the `testcontainers`
    /// feature.
    #[cfg(feature = "testcontainers")]
    Container(Box<KafkaContainer>),
}

/// A running Kafka container and its bootstrap address.
#[cfg(feature = "testcontainers")]
pub struct KafkaContainer {
    _container: testcontainers_modules::testcontainers::Container<
        testcontainers_modules::kafka::apache::Kafka,
    >,
    bootstrap: String,
}

impl Broker {
    /// A mock cluster of three brokers, with the group API versions capped where librdkafka
    /// 2.12's mock misparses the flexible versions it advertises (`kstreams_tests::mock`).
    pub fn mock() -> Self {
        Broker::Mock(mock_cluster(3).expect("librdkafka mock cluster"))
    }

    /// A Tansu broker; a broker that cannot start fails the test with the reason.
    pub fn tansu() -> Self {
        match Tansu::start() {
            Ok(tansu) => Broker::Tansu(tansu),
            Err(error) => panic!("the Tansu broker this test needs did not start: {error}"),
        }
    }

    /// A crabka-broker; a broker that cannot start (or is not installed) fails the test with
    /// the reason and its log.
    pub fn crabka() -> Self {
        match Crabka::start() {
            Ok(crabka) => Broker::Crabka(crabka),
            Err(error) => panic!("the crabka-broker this test needs did not start: {error}"),
        }
    }

    /// Apache Kafka in Docker; a Docker engine that is missing or refuses fails the test.
    #[cfg(feature = "testcontainers")]
    pub fn container() -> Self {
        use testcontainers_modules::kafka::apache::{KAFKA_PORT, Kafka};
        use testcontainers_modules::testcontainers::runners::SyncRunner;
        let container = Kafka::default()
            .start()
            .unwrap_or_else(|e| panic!("starting the Kafka container (is Docker running?): {e}"));
        let port = container
            .get_host_port_ipv4(KAFKA_PORT)
            .unwrap_or_else(|e| panic!("the Kafka container's port: {e}"));
        Broker::Container(Box::new(KafkaContainer {
            _container: container,
            bootstrap: format!("127.0.0.1:{port}"),
        }))
    }

    /// Which broker, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Broker::Mock(_) => "librdkafka mock cluster",
            Broker::Tansu(_) => "Tansu",
            Broker::Crabka(_) => "crabka-broker",
            #[cfg(feature = "testcontainers")]
            Broker::Container(_) => "Apache Kafka in Docker",
        }
    }

    /// `host:port[,host:port…]`.
    pub fn bootstrap(&self) -> String {
        match self {
            Broker::Mock(mock) => mock.bootstrap_servers(),
            Broker::Tansu(tansu) => tansu.bootstrap(),
            Broker::Crabka(crabka) => crabka.bootstrap(),
            #[cfg(feature = "testcontainers")]
            Broker::Container(kafka) => kafka.bootstrap.clone(),
        }
    }

    /// The mock cluster, for fault injection.
    pub fn as_mock(&self) -> &Mock {
        match self {
            Broker::Mock(mock) => mock,
            _ => panic!(
                "fault injection needs the mock cluster, not {}",
                self.name()
            ),
        }
    }

    /// The partition count of `topic` as the broker's metadata has it (`None`: no such topic).
    pub fn partition_count(&self, topic: &str) -> Option<usize> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .create()
            .expect("consumer");
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .expect("metadata");
        metadata
            .topics()
            .first()
            .filter(|t| t.error().is_none())
            .map(|t| t.partitions().len())
    }

    /// The end of the broker's log, for failure messages (the broker processes only).
    pub fn log_tail(&self) -> String {
        match self {
            Broker::Tansu(tansu) => format!("; broker log:\n{}", tansu.log_tail()),
            Broker::Crabka(crabka) => format!("; broker log:\n{}", crabka.log_tail()),
            _ => String::new(),
        }
    }

    /// Creates `topic` with `partitions` (the mock through its API; crabka with CreateTopics
    /// and a wait for the partitions' leaders; CreateTopics from rdkafka's admin client on the
    /// others).
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        match self {
            Broker::Mock(mock) => mock
                .create_topic(topic, partitions, 1)
                .unwrap_or_else(|e| panic!("create {topic} on the mock: {e}")),
            Broker::Crabka(crabka) => crabka
                .create_topic(topic, partitions)
                .unwrap_or_else(|e| panic!("{e}")),
            _ => {
                let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
                    .set("bootstrap.servers", self.bootstrap())
                    .create()
                    .expect("admin client");
                let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
                let results = futures_lite::future::block_on(
                    admin.create_topics([&new], &AdminOptions::new()),
                )
                .unwrap_or_else(|e| panic!("CreateTopics {topic} on {}: {e}", self.name()));
                for result in results {
                    if let Err((topic, code)) = result {
                        panic!(
                            "CreateTopics {topic} on {}: {code}{}",
                            self.name(),
                            self.log_tail()
                        );
                    }
                }
            }
        }
    }
}

/// Which adapter runs the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adapter {
    /// `kstreams-tokio`.
    Tokio,
    /// `kstreams-smol`.
    Smol,
}

impl Adapter {
    /// Starts `topology` with this adapter.
    pub fn start(self, topology: Topology, config: StreamsConfig, stores: Stores) -> StreamsHandle {
        match self {
            Adapter::Tokio => {
                kstreams_tokio::KafkaStreams::new(topology, config, stores).and_then(|s| s.start())
            }
            Adapter::Smol => {
                kstreams_smol::KafkaStreams::new(topology, config, stores).and_then(|s| s.start())
            }
        }
        .unwrap_or_else(|e| panic!("starting the application on {self:?}: {e}"))
    }

    /// [`Adapter::start`] with a restore listener.
    pub fn start_with_restore_listener(
        self,
        topology: Topology,
        config: StreamsConfig,
        stores: Stores,
        listener: impl StateRestoreListener + 'static,
    ) -> StreamsHandle {
        match self {
            Adapter::Tokio => {
                kstreams_tokio::KafkaStreams::new(topology, config, stores).and_then(|mut s| {
                    s.set_restore_listener(listener);
                    s.start()
                })
            }
            Adapter::Smol => {
                kstreams_smol::KafkaStreams::new(topology, config, stores).and_then(|mut s| {
                    s.set_restore_listener(listener);
                    s.start()
                })
            }
        }
        .unwrap_or_else(|e| panic!("starting the application on {self:?}: {e}"))
    }
}

/// Runs `test` on its own thread with the engines' warnings on the test's output; fails if it
/// panics or takes longer than [`TEST_TIMEOUT`].
pub fn bounded(test: impl FnOnce() + Send + 'static) {
    init_test_logging();
    kstreams_tests::bounded::bounded("the test", TEST_TIMEOUT, test);
}

/// An input record: its partition, key and value.
pub type Input = (i32, Vec<u8>, Vec<u8>);

/// Produces `records` to `topic` with an idempotent rdkafka producer and waits for every
/// acknowledgement; returns the offset of each record, in the same order.
pub fn produce(bootstrap: &str, topic: &str, records: &[Input]) -> Vec<i64> {
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
                    FutureRecord::to(topic)
                        .partition(*partition)
                        .key(key)
                        .payload(value),
                )
                .unwrap_or_else(|(e, _)| panic!("enqueue failed: {e}"))
        })
        .collect();
    deliveries
        .into_iter()
        .map(|delivery| {
            futures_lite::future::block_on(delivery)
                .expect("delivery future dropped")
                .unwrap_or_else(|(e, _)| panic!("delivery failed: {e}"))
                .offset
        })
        .collect()
}

/// `n` records numbered from `first`, spread round-robin over the partitions; values are
/// `"<partition>:<number>"`, keys one of `keys` per partition (`p<partition>-k<i>`).
pub fn numbered_input(first: usize, n: usize, keys: usize) -> Vec<Input> {
    (first..first + n)
        .map(|i| {
            let p = (i % PARTITIONS as usize) as i32;
            let key = format!("p{p}-k{}", (i / PARTITIONS as usize) % keys);
            (p, key.into_bytes(), format!("{p}:{i}").into_bytes())
        })
        .collect()
}

/// A record read back: partition, offset, key, value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Output {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key bytes.
    pub key: Vec<u8>,
    /// Value bytes.
    pub value: Vec<u8>,
}

/// Reads `topic` from the beginning until `done` says the records so far are enough (fails
/// after [`WAIT`]), then for `settle` more; returns them in the order read (per partition in
/// offset order).
pub fn read_until(
    bootstrap: &str,
    topic: &str,
    settle: Duration,
    done: impl FnMut(&[Output]) -> bool,
) -> Vec<Output> {
    read_with(bootstrap, topic, settle, &[], done)
}

/// [`read_until`] with `isolation.level=read_committed`: records of aborted or open
/// transactions are not seen.
pub fn read_committed_until(
    bootstrap: &str,
    topic: &str,
    settle: Duration,
    done: impl FnMut(&[Output]) -> bool,
) -> Vec<Output> {
    read_with(
        bootstrap,
        topic,
        settle,
        &[("isolation.level", "read_committed")],
        done,
    )
}

/// [`read_until`] with these consumer settings.
fn read_with(
    bootstrap: &str,
    topic: &str,
    settle: Duration,
    settings: &[(&str, &str)],
    mut done: impl FnMut(&[Output]) -> bool,
) -> Vec<Output> {
    let consumer = reader::from_beginning(bootstrap, "e2e-reader", topic, PARTITIONS, settings)
        .expect("reader consumer");
    let mut out: Vec<Output> = Vec::new();
    let mut last_offset: BTreeMap<i32, i64> = BTreeMap::new();
    let deadline = Instant::now() + WAIT;
    let mut settle_until: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if settle_until.is_none() && done(&out) {
            settle_until = Some(now + settle);
        }
        if settle_until.is_some_and(|until| now >= until) {
            return out;
        }
        assert!(
            now < deadline || settle_until.is_some(),
            "timed out reading {topic}: {} records so far",
            out.len()
        );
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = message.expect("consume");
        let p = message.partition();
        let previous = last_offset.insert(p, message.offset()).unwrap_or(-1);
        assert!(message.offset() > previous, "{topic}-{p}: offsets increase");
        out.push(Output {
            partition: p,
            offset: message.offset(),
            key: message.key().unwrap_or_default().to_vec(),
            value: message.payload().unwrap_or_default().to_vec(),
        });
    }
}

/// Reads exactly `expected` records from `topic` (and checks for `settle` that no more come).
pub fn read_exactly(
    bootstrap: &str,
    topic: &str,
    expected: usize,
    settle: Duration,
) -> Vec<Output> {
    let out = read_until(bootstrap, topic, settle, |out| out.len() >= expected);
    assert_eq!(out.len(), expected, "{topic}: exactly the expected records");
    out
}

/// The offset group `app` committed for each partition of `topic`, read through the broker
/// by an rdkafka consumer of that group (OffsetFetch).
pub fn committed_offsets(bootstrap: &str, app: &str, topic: &str) -> Vec<Offset> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", app)
        .create()
        .expect("consumer");
    reader::committed_offsets(&consumer, topic, PARTITIONS)
        .expect("committed offsets (OffsetFetch)")
}

/// The end offset of each partition after `input` was produced at `offsets` (the producer's
/// acknowledgements, not the broker's ListOffsets: Tansu 0.6.0 answers ListOffsets LATEST
/// with the last batch's base offset + 1 instead of the high watermark).
pub fn end_offsets(input: &[Input], offsets: &[i64]) -> Vec<i64> {
    let mut ends = vec![0; PARTITIONS as usize];
    for ((p, _, _), offset) in input.iter().zip(offsets) {
        let end = &mut ends[*p as usize];
        *end = (*end).max(offset + 1);
    }
    ends
}

/// [`fast_engine_config`] bootstrapping from `broker`, state under `state_dir`.
pub fn streams_config(broker: &Broker, app: &str, state_dir: &Path) -> StreamsConfig {
    let mut engine = fast_engine_config(app, &broker.bootstrap());
    if let Broker::Crabka(_) = broker {
        // crabka-broker 0.3.0 refuses CreateTopics with the broker-default replication
        // factor (-1: INVALID_REPLICATION_FACTOR); Kafka 2.4+ takes it.
        engine.internal_topics.replication_factor = 1;
    }
    let mut config = StreamsConfig::from_engine_config(engine);
    config.state_dir = state_dir.to_owned();
    config
}

/// Blocks on a future (the handle's futures need no particular runtime).
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    futures_lite::future::block_on(future)
}

/// Waits until `handle` is Running (fails after [`WAIT`] or on a terminal state).
pub fn wait_running(handle: &StreamsHandle) {
    let deadline = Instant::now() + WAIT;
    loop {
        match handle.state() {
            StreamsState::Running => return,
            state if state.is_terminal() => panic!("instance stopped: {state:?}"),
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "instance not running after {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Closes `handle` (bounded) and checks it ended NotRunning.
pub fn close(handle: &StreamsHandle) {
    let closing = handle.clone();
    kstreams_tests::bounded::bounded("close()", WAIT, move || block_on(closing.close()))
        .expect("close() failed");
    assert_eq!(handle.state(), StreamsState::NotRunning);
}

/// Checks through the broker that group `app` committed every partition of `topic` at its
/// end offset `ends[partition]`.
pub fn assert_committed_at_end(bootstrap: &str, app: &str, topic: &str, ends: &[i64]) {
    for (p, (committed, end)) in committed_offsets(bootstrap, app, topic)
        .into_iter()
        .zip(ends)
        .enumerate()
    {
        assert!(*end > 0, "{topic}-{p} has input");
        assert_eq!(
            committed,
            Offset::Offset(*end),
            "{topic}-{p}: committed offset = end offset"
        );
    }
}

/// `input` → `output`, bytes unchanged.
pub fn passthrough_topology(input: &str, output: &str) -> Topology {
    let mut b = TopologyBuilder::new();
    let src = b
        .add_source("src", &[input], BytesSerde, BytesSerde)
        .unwrap();
    b.add_sink("sink", output, &[&src], BytesSerde, BytesSerde)
        .unwrap();
    b.build().unwrap()
}

/// `input` → keep values whose number is even → value upper-cased with a `!` → `output`.
pub fn map_filter_topology(input: &str, output: &str) -> Topology {
    let mut b = TopologyBuilder::new();
    let src = b
        .add_source("src", &[input], StringSerde, StringSerde)
        .unwrap();
    let even = b
        .filter("even", &src, |r: &Record<String, String>| {
            number_of(&r.value).is_multiple_of(2)
        })
        .unwrap();
    let mapped = b
        .map_values("shout", &even, |v: &String| {
            format!("{}!", v.to_uppercase())
        })
        .unwrap();
    b.add_sink("sink", output, &[&mapped], StringSerde, StringSerde)
        .unwrap();
    b.build().unwrap()
}

/// `input` → count per key (store "counts", not logged) → `output` (value: 8-byte count).
pub fn count_topology(input: &str, output: &str) -> Topology {
    count_topology_logged(input, output, false)
}

/// [`count_topology`] with the store logged (changelog `<app>-counts-changelog`) or not.
pub fn count_topology_logged(input: &str, output: &str, logged: bool) -> Topology {
    let mut b = TopologyBuilder::new();
    let src = b
        .add_source("src", &[input], StringSerde, StringSerde)
        .unwrap();
    let count = b
        .add_processor("count", &[&src], BatchCountAggregator::supplier("counts"))
        .unwrap();
    b.add_store(
        StoreBuilder::key_value("counts", StringSerde, I64Serde).with_logging(logged),
        &["count"],
    )
    .unwrap();
    b.add_sink("sink", output, &[&count], StringSerde, I64Serde)
        .unwrap();
    b.build().unwrap()
}

/// The number in a `"<partition>:<number>"` value.
pub fn number_of(value: &str) -> usize {
    let number = value.trim_end_matches('!');
    number
        .split_once(':')
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or_else(|| panic!("value `{value}` is not <partition>:<number>"))
}

/// Checks a passthrough's output against its input: every input record exactly once, and
/// within each output partition the records of each input partition in input order.
pub fn assert_passthrough_exact(input: &[Input], output: &[Output]) {
    let mut seen: Vec<(Vec<u8>, Vec<u8>)> = output
        .iter()
        .map(|o| (o.key.clone(), o.value.clone()))
        .collect();
    let mut expected: Vec<(Vec<u8>, Vec<u8>)> = input
        .iter()
        .map(|(_, k, v)| (k.clone(), v.clone()))
        .collect();
    seen.sort();
    expected.sort();
    assert_eq!(seen, expected, "every input record exactly once");
    assert_order_per_input_partition(output);
}

/// Within each output partition, each input partition's records in input order (the sink
/// partitions by key, so one input partition's records spread over output partitions).
pub fn assert_order_per_input_partition(output: &[Output]) {
    let mut last: BTreeMap<(i32, String), usize> = BTreeMap::new();
    for record in output {
        let value = String::from_utf8(record.value.clone()).expect("utf-8 value");
        let (p, _) = value.split_once(':').expect("<partition>:<number>");
        let number = number_of(&value);
        if let Some(prev) = last.insert((record.partition, p.to_owned()), number) {
            assert!(
                number > prev,
                "output partition {}: input partition {p}'s {number} after {prev}",
                record.partition
            );
        }
    }
}

/// Checks a count's output: per key, one output partition and counts 1, 2, … ending at the
/// key's number of input records.
pub fn assert_counts_exact(input: &[Input], output: &[Output]) {
    let mut expected: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
    for (_, key, _) in input {
        *expected.entry(key.clone()).or_insert(0) += 1;
    }
    let mut seen: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
    let mut home: BTreeMap<Vec<u8>, i32> = BTreeMap::new();
    for record in output {
        let count =
            i64::from_be_bytes(record.value.as_slice().try_into().expect("an 8-byte count"));
        let key = String::from_utf8_lossy(&record.key).into_owned();
        assert_eq!(
            *home.entry(record.key.clone()).or_insert(record.partition),
            record.partition,
            "{key}: one output partition"
        );
        let last = seen.entry(record.key.clone()).or_insert(0);
        assert_eq!(count, *last + 1, "{key}: counts go 1, 2, 3, …");
        *last = count;
    }
    assert_eq!(seen, expected, "final count per key");
}

/// Checks a count's output under at-least-once with reprocessing: per key, one output
/// partition, counts that start at 1 and go up by exactly 1 (a reprocessed record counts on
/// from the restored state: ahead, never back, never skipping), and a final count at least the
/// key's number of input records.
pub fn assert_counts_at_least(input: &[Input], output: &[Output]) {
    let steps = crashes::assert_final_counts_at_least(input, output);
    assert_eq!(
        steps,
        crashes::CountSteps::default(),
        "counts go up by one (never back, never skipping)"
    );
}

pub mod count_instance;
pub mod crashes;

/// [`read_until`] with `isolation.level=read_uncommitted`: records of aborted and open
/// transactions are seen too (librdkafka reads read_committed by default).
pub fn read_uncommitted_until(
    bootstrap: &str,
    topic: &str,
    settle: Duration,
    done: impl FnMut(&[Output]) -> bool,
) -> Vec<Output> {
    read_with(
        bootstrap,
        topic,
        settle,
        &[("isolation.level", "read_uncommitted")],
        done,
    )
}
