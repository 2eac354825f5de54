//! The contenders' side: each runs in a child process (the bench binary re-executed), reads
//! the input, counts and writes its output until the parent says stop on stdin.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kstreams_core::engine::{EngineConfig, ProcessingGuarantee};
use kstreams_core::prelude::*;
use kstreams_io_common::{Stores, StreamsConfig, StreamsHandle};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{Offset, TopicPartitionList};

use crate::INPUT;

/// The settings a child gets from the parent.
pub(crate) struct ChildArgs {
    bootstrap: String,
    output: String,
    group: String,
    commit_ms: u64,
    linger_ms: u64,
    fetch_wait_ms: i32,
    /// `EngineConfig::internal_topics.replication_factor`; `None`: the engine's default.
    internal_replication: Option<i16>,
}

/// The child argument that leaves the internal topics' replication factor at the engine's
/// default.
pub(crate) const DEFAULT_REPLICATION: &str = "default";

impl ChildArgs {
    pub(crate) fn parse(args: &[String]) -> Self {
        let [
            bootstrap,
            output,
            group,
            commit_ms,
            linger_ms,
            fetch_wait_ms,
            internal_replication,
        ] = args
        else {
            panic!(
                "child arguments: bootstrap output group commit-ms linger-ms fetch-wait-ms \
                 internal-replication, got {args:?}"
            );
        };
        Self {
            bootstrap: bootstrap.clone(),
            output: output.clone(),
            group: group.clone(),
            commit_ms: commit_ms.parse().expect("commit-ms"),
            linger_ms: linger_ms.parse().expect("linger-ms"),
            fetch_wait_ms: fetch_wait_ms.parse().expect("fetch-wait-ms"),
            internal_replication: (internal_replication != DEFAULT_REPLICATION)
                .then(|| internal_replication.parse().expect("internal-replication")),
        }
    }
}

/// Sets the returned flag once a line (or EOF) arrives on stdin.
fn stop_signal() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(std::io::stdin()).read_line(&mut line);
        flag.store(true, Ordering::SeqCst);
    });
    stop
}

/// `input` → count per key (store `counts`, logged to `<application id>-counts-changelog` if
/// `logged`) → `output`.
fn count_topology(output: &str, batch: bool, logged: bool) -> Result<Topology, TopologyError> {
    let mut b = TopologyBuilder::new();
    let src = b.add_source("src", &[INPUT], BytesSerde, BytesSerde)?;
    let count = if batch {
        b.add_processor("count", &[&src], BatchCountAggregator::supplier("counts"))?
    } else {
        b.add_processor("count", &[&src], RecordCountAggregator::supplier("counts"))?
    };
    b.add_store(
        StoreBuilder::key_value("counts", BytesSerde, I64Serde).with_logging(logged),
        &["count"],
    )?;
    b.add_sink("sink", output, &[&count], BytesSerde, I64Serde)?;
    b.build()
}

/// How a kstreams contender is set up.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KstreamsSetup {
    pub(crate) batch: bool,
    pub(crate) lmdb: bool,
    pub(crate) logged: bool,
    pub(crate) exactly_once: bool,
}

pub(crate) fn run_kstreams(args: ChildArgs, setup: KstreamsSetup) {
    let KstreamsSetup {
        batch,
        lmdb,
        logged,
        exactly_once,
    } = setup;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let stop = stop_signal();
    let state_dir = tempfile::tempdir().expect("state dir");
    let topology = count_topology(&args.output, batch, logged).expect("topology");
    let mut engine = EngineConfig::new(&args.group, args.bootstrap.split(','));
    engine.commit_interval = kstreams_core::time::Duration::from_millis(args.commit_ms);
    engine.producer.linger = kstreams_core::time::Duration::from_millis(args.linger_ms);
    engine.fetch.max_wait =
        kstreams_core::time::Duration::from_millis_i64(args.fetch_wait_ms.into());
    if let Some(replication) = args.internal_replication {
        engine.internal_topics.replication_factor = replication;
    }
    if exactly_once {
        engine.processing_guarantee = ProcessingGuarantee::ExactlyOnce;
    }
    let mut config = StreamsConfig::from_engine_config(engine);
    config.num_stream_threads = 1;
    config.state_dir = state_dir.path().to_owned();
    let stores = if lmdb { Stores::Lmdb } else { Stores::Memory };
    let handle: StreamsHandle = kstreams_tokio::KafkaStreams::new(topology, config, stores)
        .and_then(|s| s.start())
        .expect("starting kstreams");
    while !stop.load(Ordering::SeqCst) {
        let state = handle.state();
        assert!(!state.is_terminal(), "kstreams stopped: {state:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    futures_lite::future::block_on(handle.close()).expect("closing kstreams");
}

/// Counts failed deliveries; a failure ends the loop (an at-least-once loop would have to
/// restart from its last commit).
struct Deliveries {
    failed: AtomicU64,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result
            && self.failed.fetch_add(1, Ordering::Relaxed) == 0
        {
            eprintln!("rdkafka loop: delivery failed: {e}");
        }
    }
}

pub(crate) fn run_rdkafka(args: ChildArgs) {
    let stop = stop_signal();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.bootstrap)
        .set("group.id", &args.group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", args.fetch_wait_ms.to_string())
        .create()
        .expect("consumer");
    consumer.subscribe(&[INPUT]).expect("subscribe");
    let producer: BaseProducer<Deliveries> = ClientConfig::new()
        .set("bootstrap.servers", &args.bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", args.linger_ms.to_string())
        .create_with_context(Deliveries {
            failed: AtomicU64::new(0),
        })
        .expect("producer");
    let interval = Duration::from_millis(args.commit_ms);
    let mut counts: HashMap<Vec<u8>, i64> = HashMap::new();
    // Next offset to commit per input partition (processed, output not yet acknowledged).
    let mut positions: HashMap<i32, i64> = HashMap::new();
    let mut last_commit = Instant::now();
    let commit =
        |positions: &HashMap<i32, i64>, producer: &BaseProducer<Deliveries>, mode: CommitMode| {
            // At-least-once: everything produced so far is acknowledged before the offsets that
            // led to it are committed.
            producer
                .flush(Duration::from_secs(60))
                .expect("flushing the output");
            assert_eq!(
                producer.context().failed.load(Ordering::Relaxed),
                0,
                "rdkafka loop: failed deliveries"
            );
            if positions.is_empty() {
                return;
            }
            let mut tpl = TopicPartitionList::new();
            for (&p, &next) in positions {
                tpl.add_partition_offset(INPUT, p, Offset::Offset(next))
                    .expect("partition offset");
            }
            consumer.commit(&tpl, mode).expect("committing offsets");
        };
    while !stop.load(Ordering::SeqCst) {
        if last_commit.elapsed() >= interval {
            // Async: the offsets are already covered by acknowledged output.
            commit(&positions, &producer, CommitMode::Async);
            last_commit = Instant::now();
        }
        producer.poll(Duration::ZERO);
        let Some(message) = consumer.poll(Duration::from_millis(10)) else {
            continue;
        };
        let message = match message {
            Ok(m) => m,
            Err(e) => {
                eprintln!("rdkafka loop: consume error: {e}");
                continue;
            }
        };
        let key = message.key().unwrap_or_default();
        let count = match counts.get_mut(key) {
            Some(c) => {
                *c += 1;
                *c
            }
            None => {
                counts.insert(key.to_vec(), 1);
                1
            }
        };
        let value = count.to_be_bytes();
        let mut record = BaseRecord::to(&args.output).key(key).payload(&value[..]);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(1));
                }
                Err((e, _)) => panic!("rdkafka loop: produce: {e}"),
            }
        }
        positions.insert(message.partition(), message.offset() + 1);
    }
    commit(&positions, &producer, CommitMode::Sync);
}
