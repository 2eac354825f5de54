//! End to end on loopback: kstreams (record mode, batch mode) against a consume → transform →
//! produce loop written on rdkafka, the same broker, the same workload, in one run.
//!
//! ```text
//! cargo bench -p kstreams-benches --bench end_to_end -- \
//!     [--broker tansu|mock] [--records N] [--keys K] [--repeat R] [--commit-ms MS] \
//!     [--linger-ms MS] [--fetch-wait-ms MS] [--contenders rdkafka,record,batch,record-mem,batch-mem]
//! ```
//!
//! `--fetch-wait-ms` (500, both clients' default) sets kstreams' `FetcherConfig::max_wait` and
//! rdkafka's `fetch.wait.max.ms` alike. It matters on Tansu 0.6.0, which holds every Fetch for
//! half of the remaining max wait (or all of it below 250 ms) even when it has data to return
//! (`tansu-storage` `service/fetch.rs`), so each fetch round trip costs ~250 ms at the default.
//!
//! Workload: one input topic of 8 partitions holding `--records` records (1,000,000) with
//! 16-byte keys (`key-000000000042`) drawn pseudo-randomly from `--keys` (10,000) distinct keys,
//! each key always in the same partition (key index mod 8), and 100-byte values; produced once,
//! before any contender starts, by an idempotent rdkafka producer (not timed). Work: count per
//! key, and for every input record produce `key → running count` (8-byte big-endian i64) to
//! the contender's own output topic (8 partitions) with an idempotent producer (acks=all),
//! committing the consumed offsets every `--commit-ms` (1000) only once the output they cover
//! is acknowledged (at-least-once). Each contender has its own group id.
//!
//! Contenders, each in its own child process (this binary re-executed with a hidden
//! subcommand), one after another against the same broker, interleaved for `--repeat` rounds:
//! - `rdkafka`: a `BaseConsumer` poll loop + `BaseProducer`, counts in a `HashMap` in memory;
//!   every commit interval it flushes the producer and then commits the positions it processed.
//! - `record` / `batch`: `kstreams_tokio::KafkaStreams`, one stream thread,
//!   `RecordCountAggregator` / `BatchCountAggregator` on the LMDB store (not logged);
//!   `record-mem` / `batch-mem`: the same on the memory store.
//!
//! A contender's time runs from spawning its process until its group's committed offsets, read
//! through the broker every 20 ms, equal the input's end offsets. Then the parent samples the
//! child's CPU time and peak RSS (`VmHWM`) from `/proc`, tells it to stop (a line on stdin) and
//! checks its output: the last count per key read back from the output topic must equal the
//! number of input records with that key, for every key — a wrong output fails the run.
//!
//! The broker is Tansu 0.6.0 (a separate process, see `kstreams_tests::tansu`) by default, or
//! librdkafka's mock cluster (in this process, three brokers) with `--broker mock`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kstreams_core::engine::{EngineConfig, ProcessingGuarantee};
use kstreams_core::prelude::*;
use kstreams_io_common::{Stores, StreamsConfig, StreamsHandle};
use kstreams_tests::crabka::Crabka;
use kstreams_tests::reader;
use kstreams_tests::tansu::Tansu;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{Offset, TopicPartitionList};

/// Partitions of the input and every output topic.
const PARTITIONS: i32 = 8;
/// Bytes of every input value.
const VALUE_BYTES: usize = 100;
/// The hidden subcommand a child runs.
const CHILD: &str = "__e2e_contender";
/// The input topic.
const INPUT: &str = "e2e-input";
/// How often the parent reads a contender's committed offsets.
const PROGRESS_POLL: Duration = Duration::from_millis(20);
/// Longest a contender may take before the run fails.
const CONTENDER_TIMEOUT: Duration = Duration::from_secs(900);

// ---------------------------------------------------------------------------------------------
// Command line

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BrokerKind {
    Tansu,
    Mock,
    Crabka,
}

/// One contender: who processes the input, on which store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Contender {
    Rdkafka,
    Kstreams { batch: bool, lmdb: bool },
    /// Batch mode on LMDB with the store logged to its changelog, at-least-once or
    /// exactly-once.
    KstreamsLogged { exactly_once: bool },
}

impl Contender {
    fn parse(name: &str) -> Result<Self, String> {
        Ok(match name {
            "rdkafka" => Contender::Rdkafka,
            "record" => Contender::Kstreams {
                batch: false,
                lmdb: true,
            },
            "batch" => Contender::Kstreams {
                batch: true,
                lmdb: true,
            },
            "record-mem" => Contender::Kstreams {
                batch: false,
                lmdb: false,
            },
            "batch-mem" => Contender::Kstreams {
                batch: true,
                lmdb: false,
            },
            "batch-logged" => Contender::KstreamsLogged {
                exactly_once: false,
            },
            "batch-eos" => Contender::KstreamsLogged { exactly_once: true },
            other => return Err(format!("unknown contender `{other}`")),
        })
    }

    fn name(self) -> &'static str {
        match self {
            Contender::Rdkafka => "rdkafka",
            Contender::Kstreams {
                batch: false,
                lmdb: true,
            } => "record",
            Contender::Kstreams {
                batch: true,
                lmdb: true,
            } => "batch",
            Contender::Kstreams {
                batch: false,
                lmdb: false,
            } => "record-mem",
            Contender::Kstreams {
                batch: true,
                lmdb: false,
            } => "batch-mem",
            Contender::KstreamsLogged {
                exactly_once: false,
            } => "batch-logged",
            Contender::KstreamsLogged { exactly_once: true } => "batch-eos",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Contender::Rdkafka => "rdkafka loop (HashMap)",
            Contender::Kstreams {
                batch: false,
                lmdb: true,
            } => "kstreams record mode, LMDB",
            Contender::Kstreams {
                batch: true,
                lmdb: true,
            } => "kstreams batch mode, LMDB",
            Contender::Kstreams {
                batch: false,
                lmdb: false,
            } => "kstreams record mode, memory",
            Contender::Kstreams {
                batch: true,
                lmdb: false,
            } => "kstreams batch mode, memory",
            Contender::KstreamsLogged {
                exactly_once: false,
            } => "kstreams batch mode, LMDB, logged",
            Contender::KstreamsLogged { exactly_once: true } => {
                "kstreams batch mode, LMDB, logged, exactly-once"
            }
        }
    }

    /// Whether this contender's output and offsets are transactional: its output is read with
    /// `isolation.level=read_committed`, and it needs a broker with transactions.
    fn exactly_once(self) -> bool {
        matches!(self, Contender::KstreamsLogged { exactly_once: true })
    }
}

#[derive(Debug, Clone)]
struct Options {
    broker: BrokerKind,
    records: usize,
    keys: usize,
    repeat: usize,
    commit_ms: u64,
    linger_ms: u64,
    fetch_wait_ms: i32,
    contenders: Vec<Contender>,
}

const USAGE: &str = "usage: end_to_end [--broker tansu|mock|crabka] [--records N] [--keys K] \
[--repeat R] [--commit-ms MS] [--linger-ms MS] [--fetch-wait-ms MS] \
[--contenders rdkafka,record,batch,record-mem,batch-mem,batch-logged,batch-eos]";

impl Options {
    fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let mut options = Options {
            broker: BrokerKind::Tansu,
            records: 1_000_000,
            keys: 10_000,
            repeat: 3,
            commit_ms: 1_000,
            linger_ms: 5,
            // Both clients' default (`fetch.max.wait.ms`, `fetch.wait.max.ms`).
            fetch_wait_ms: 500,
            contenders: ["rdkafka", "record", "batch", "record-mem", "batch-mem"]
                .into_iter()
                .map(Contender::parse)
                .collect::<Result<_, _>>()?,
        };
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            // `cargo bench` passes `--bench` to every bench binary.
            if flag == "--bench" {
                continue;
            }
            let value = args
                .next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
            let number = |v: &str| {
                v.parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("{flag}: `{v}` is not a positive number"))
            };
            match flag.as_str() {
                "--broker" => {
                    options.broker = match value.as_str() {
                        "tansu" => BrokerKind::Tansu,
                        "mock" => BrokerKind::Mock,
                        "crabka" => BrokerKind::Crabka,
                        other => {
                            return Err(format!(
                                "--broker: `{other}` is not tansu, mock or crabka"
                            ));
                        }
                    }
                }
                "--records" => options.records = number(&value)?,
                "--keys" => options.keys = number(&value)?,
                "--repeat" => options.repeat = number(&value)?,
                "--commit-ms" => options.commit_ms = number(&value)? as u64,
                "--linger-ms" => options.linger_ms = value.parse().map_err(|_| "--linger-ms")?,
                "--fetch-wait-ms" => {
                    options.fetch_wait_ms = value.parse().map_err(|_| "--fetch-wait-ms")?
                }
                "--contenders" => {
                    options.contenders = value
                        .split(',')
                        .map(Contender::parse)
                        .collect::<Result<_, _>>()?
                }
                _ => return Err(format!("unknown argument `{flag}`\n{USAGE}")),
            }
        }
        if options.broker == BrokerKind::Tansu
            && let Some(c) = options.contenders.iter().find(|c| c.exactly_once())
        {
            return Err(format!(
                "contender `{}` needs a broker with transactions (Tansu 0.6.0 has none): \
                 add --broker crabka",
                c.name()
            ));
        }
        Ok(options)
    }
}

// ---------------------------------------------------------------------------------------------
// Broker

enum Broker {
    Tansu(Tansu),
    Mock(kstreams_tests::mock::Mock),
    Crabka(Crabka),
}

impl Broker {
    fn start(kind: BrokerKind) -> Self {
        match kind {
            BrokerKind::Tansu => Broker::Tansu(
                Tansu::start().unwrap_or_else(|e| panic!("starting the Tansu broker: {e}")),
            ),
            BrokerKind::Mock => Broker::Mock(
                kstreams_tests::mock::mock_cluster(3).expect("librdkafka mock cluster"),
            ),
            BrokerKind::Crabka => Broker::Crabka(
                Crabka::start().unwrap_or_else(|e| panic!("starting crabka-broker: {e}")),
            ),
        }
    }

    fn bootstrap(&self) -> String {
        match self {
            Broker::Tansu(t) => t.bootstrap(),
            Broker::Mock(m) => m.bootstrap_servers(),
            Broker::Crabka(c) => c.bootstrap(),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Broker::Tansu(_) => "Tansu 0.6.0 (memory storage, separate process)",
            Broker::Mock(_) => "librdkafka 2.12 mock cluster (3 brokers, in the parent process)",
            Broker::Crabka(_) => "crabka-broker 0.3.0 (disk storage, separate process)",
        }
    }

    /// The process whose CPU time is the broker's: the Tansu or crabka-broker child, or this
    /// process.
    fn pid(&self) -> u32 {
        match self {
            Broker::Tansu(_) => child_pid("tansu").expect("the Tansu child process in /proc"),
            Broker::Mock(_) => std::process::id(),
            Broker::Crabka(_) => {
                child_pid("crabka-broker").expect("the crabka-broker child process in /proc")
            }
        }
    }

    /// The replication factor kstreams must ask for its internal topics (changelogs), where
    /// the engine's default (`-1`, the broker's default) does not do: crabka-broker 0.3.0
    /// refuses CreateTopics with `-1`.
    fn internal_replication_factor(&self) -> Option<i16> {
        match self {
            Broker::Crabka(_) => Some(1),
            Broker::Tansu(_) | Broker::Mock(_) => None,
        }
    }

    fn admin(&self) -> AdminClient<DefaultClientContext> {
        ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .create()
            .expect("admin client")
    }

    fn create_topic(&self, topic: &str) {
        match self {
            Broker::Mock(m) => m
                .create_topic(topic, PARTITIONS, 1)
                .unwrap_or_else(|e| panic!("create {topic} on the mock: {e}")),
            Broker::Crabka(c) => c
                .create_topic(topic, PARTITIONS)
                .unwrap_or_else(|e| panic!("create {topic} on crabka-broker: {e}")),
            Broker::Tansu(t) => {
                let new = NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1));
                let results = futures_lite::future::block_on(
                    self.admin().create_topics([&new], &AdminOptions::new()),
                )
                .unwrap_or_else(|e| panic!("CreateTopics {topic}: {e}"));
                for result in results {
                    if let Err((topic, code)) = result {
                        panic!("CreateTopics {topic}: {code}; log:\n{}", t.log_tail());
                    }
                }
            }
        }
    }

    /// Deletes a checked output topic so the broker's memory does not grow with every round.
    fn delete_topic(&self, topic: &str) {
        if let Broker::Mock(_) = self {
            // The mock cluster does not serve DeleteTopics (the request times out).
            return;
        }
        let outcome = futures_lite::future::block_on(self.admin().delete_topics(
            &[topic],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        ));
        match outcome {
            Ok(results) => {
                for result in results {
                    if let Err((topic, code)) = result {
                        eprintln!("  (DeleteTopics {topic}: {code}; topic kept)");
                    }
                }
            }
            Err(e) => eprintln!("  (DeleteTopics {topic}: {e}; topic kept)"),
        }
    }
}

/// The pid of our child process whose command name is `name`.
fn child_pid(name: &str) -> Option<u32> {
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (comm, rest) = stat.split_once(") ")?;
            let ppid: u32 = rest.split(' ').nth(1)?.parse().ok()?;
            (comm.strip_suffix(name)?.ends_with('(') && ppid == me).then_some(pid)
        })
}

// ---------------------------------------------------------------------------------------------
// /proc sampling

/// CPU time (user, system) of a process, in seconds.
fn cpu_seconds(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/stat: {e}"));
    let (_, rest) = stat.rsplit_once(") ").expect("/proc/<pid>/stat layout");
    // Fields after the command: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = rest.split(' ').collect();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let field = |i: usize| fields[i - 3].parse::<f64>().expect("a CPU tick count") / ticks;
    (field(14), field(15))
}

/// Peak resident set size (`VmHWM`) of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status")
}

/// Resident set size now (`VmRSS`), in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Workload

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The 16-byte key of key index `k`.
fn key(k: usize) -> Vec<u8> {
    format!("key-{k:012}").into_bytes()
}

/// Records the highest acknowledged offset per partition of the input.
struct InputDeliveries {
    next: std::sync::Mutex<Vec<i64>>,
    acked: AtomicU64,
    failed: AtomicU64,
}

impl ClientContext for InputDeliveries {}

impl ProducerContext for InputDeliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(message) => {
                let mut next = self.next.lock().expect("delivery lock");
                let p = message.partition() as usize;
                next[p] = next[p].max(message.offset() + 1);
                self.acked.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Produces the input; returns the expected final count per key and the end offset of every
/// partition (from the delivery reports).
fn produce_input(
    bootstrap: &str,
    records: usize,
    keys: usize,
) -> (HashMap<Vec<u8>, i64>, Vec<i64>) {
    let producer: BaseProducer<InputDeliveries> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .set("message.timeout.ms", "120000")
        .create_with_context(InputDeliveries {
            next: std::sync::Mutex::new(vec![0; PARTITIONS as usize]),
            acked: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        })
        .expect("input producer");
    let mut expected: HashMap<Vec<u8>, i64> = HashMap::new();
    let mut value = vec![0u8; VALUE_BYTES];
    for i in 0..records {
        let k = (splitmix64(i as u64) % keys as u64) as usize;
        let key = key(k);
        *expected.entry(key.clone()).or_insert(0) += 1;
        let word = splitmix64(i as u64 ^ 0xabcd).to_le_bytes();
        for (j, b) in value.iter_mut().enumerate() {
            *b = word[j % 8].wrapping_add(j as u8);
        }
        let partition = (k % PARTITIONS as usize) as i32;
        let mut record = BaseRecord::to(INPUT)
            .partition(partition)
            .key(&key)
            .payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => panic!("producing the input: {e}"),
            }
        }
        producer.poll(Duration::ZERO);
        if (i + 1) % 100_000 == 0 {
            eprintln!(
                "  input: {} records sent, {} acknowledged",
                i + 1,
                producer.context().acked.load(Ordering::Relaxed)
            );
        }
    }
    producer
        .flush(Duration::from_secs(300))
        .expect("flushing the input");
    let context = producer.context();
    assert_eq!(
        context.failed.load(Ordering::Relaxed),
        0,
        "input deliveries failed"
    );
    let ends = context.next.lock().expect("delivery lock").clone();
    (expected, ends)
}

/// End offsets of `topic`'s partitions.
fn end_offsets(consumer: &BaseConsumer, topic: &str) -> Vec<i64> {
    (0..PARTITIONS)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(30))
                .unwrap_or_else(|e| panic!("watermarks of {topic}-{p}: {e}"))
                .1
        })
        .collect()
}

/// A consumer of group `group` that never joins it (for OffsetFetch and watermarks).
fn observer(bootstrap: &str, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("observer consumer")
}

/// What a transactional contender's output is read with: only committed transactions.
const READ_COMMITTED: (&str, &str) = ("isolation.level", "read_committed");

/// A consumer of all of `topic` from the beginning, to see when the first output appears.
fn first_output_watcher(bootstrap: &str, topic: &str) -> BaseConsumer {
    reader::from_beginning(
        bootstrap,
        "e2e-bench-first-output",
        topic,
        PARTITIONS,
        &[("fetch.wait.max.ms", "10")],
    )
    .expect("first-output consumer")
}

/// Sees when a contender's first output record reaches the broker. Under exactly-once that is
/// before a read_committed reader sees it (at the end of its transaction, up to one commit
/// interval later): the time after it is the contender's processing time in every case.
enum FirstOutputWatch {
    /// A consumer of the whole output topic from its beginning (Tansu, the mock).
    Consumer(BaseConsumer),
    /// The output partitions' end offsets (ListOffsets latest, which crabka-broker 0.3.0
    /// answers with the log end whatever the isolation level), on crabka-broker: it answers a
    /// Fetch of a partition with nothing to return with a null record set, which librdkafka
    /// 2.12 refuses for the whole response (`invalid MessageSetSize -1`), so a consumer of a
    /// still empty topic sees nothing there until every partition has data.
    EndOffsets { consumer: BaseConsumer, topic: String },
}

impl FirstOutputWatch {
    fn new(broker: &Broker, topic: &str) -> Self {
        if let Broker::Crabka(_) = broker {
            FirstOutputWatch::EndOffsets {
                consumer: observer(&broker.bootstrap(), "e2e-bench-first-output"),
                topic: topic.to_owned(),
            }
        } else {
            FirstOutputWatch::Consumer(first_output_watcher(&broker.bootstrap(), topic))
        }
    }

    /// Whether output records are there now.
    fn output_seen(&self) -> bool {
        match self {
            FirstOutputWatch::Consumer(watcher) => {
                if matches!(watcher.poll(Duration::ZERO), Some(Ok(_))) {
                    // Stop fetching: reading the whole output here would compete with the
                    // contender.
                    watcher.unassign().expect("unassign");
                    return true;
                }
                false
            }
            FirstOutputWatch::EndOffsets { consumer, topic } => (0..PARTITIONS).any(|p| {
                consumer
                    .fetch_watermarks(topic, p, Duration::from_secs(5))
                    .is_ok_and(|(_, high)| high > 0)
            }),
        }
    }
}

/// The offsets `group` committed on the input partitions (0 where none).
fn committed(consumer: &BaseConsumer) -> Vec<i64> {
    match reader::committed_offsets(consumer, INPUT, PARTITIONS) {
        Ok(offsets) => offsets
            .into_iter()
            .map(|offset| match offset {
                Offset::Offset(o) => o,
                _ => 0,
            })
            .collect(),
        Err(_) => vec![0; PARTITIONS as usize],
    }
}

/// Reads all of `topic` (only committed transactions if `read_committed`) and checks the last
/// count of every key against `expected`; returns the number of output records.
fn check_output(
    bootstrap: &str,
    topic: &str,
    records: usize,
    expected: &HashMap<Vec<u8>, i64>,
    read_committed: bool,
) -> usize {
    let settings: &[(&str, &str)] = if read_committed {
        &[READ_COMMITTED]
    } else {
        &[]
    };
    let consumer =
        reader::from_beginning(bootstrap, "e2e-bench-checker", topic, PARTITIONS, settings)
            .expect("checker consumer");
    // One output record per input record; then nothing more may come for a second (the end
    // offsets are not used: Tansu 0.6.0 lists wrong ones).
    let mut last: HashMap<Vec<u8>, i64> = HashMap::with_capacity(expected.len());
    let mut read = 0usize;
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut quiet_since = Instant::now();
    while read < records || quiet_since.elapsed() < Duration::from_secs(1) {
        assert!(
            Instant::now() < deadline,
            "{topic}: read {read} of {records}"
        );
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        quiet_since = Instant::now();
        let message = message.unwrap_or_else(|e| panic!("reading {topic}: {e}"));
        let count = message
            .payload()
            .and_then(|v| <[u8; 8]>::try_from(v).ok())
            .map(i64::from_be_bytes)
            .unwrap_or_else(|| panic!("{topic}: a value that is not an 8-byte count"));
        let key = message.key().unwrap_or_default();
        match last.get_mut(key) {
            Some(c) => *c = count,
            None => {
                last.insert(key.to_vec(), count);
            }
        }
        read += 1;
    }
    assert_eq!(
        last.len(),
        expected.len(),
        "{topic}: distinct keys in the output"
    );
    let wrong = expected
        .iter()
        .filter(|(k, c)| last.get(*k) != Some(c))
        .count();
    assert_eq!(wrong, 0, "{topic}: keys whose final count is wrong");
    read
}

// ---------------------------------------------------------------------------------------------
// Parent

/// What one contender run measured.
#[derive(Debug, Clone, Copy)]
struct Measurement {
    seconds: f64,
    /// From spawning the process until its first output record was visible (group join,
    /// first fetch; sampled every 20 ms).
    startup: f64,
    /// User + system CPU of the contender's process until it was done.
    cpu: f64,
    /// CPU of the broker (Tansu process, or this process for the mock) during the run.
    broker_cpu: f64,
    peak_rss_mib: f64,
}

fn spawn_child(contender: Contender, args: &[String]) -> (Child, ChildStdin) {
    let exe = std::env::current_exe().expect("the bench binary's path");
    let mut child = Command::new(exe)
        .arg(CHILD)
        .arg(contender.name())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawning a contender process");
    let stdin = child.stdin.take().expect("child stdin");
    (child, stdin)
}

fn run_contender(
    broker: &Broker,
    options: &Options,
    contender: Contender,
    round: usize,
    ends: &[i64],
    expected: &HashMap<Vec<u8>, i64>,
) -> Measurement {
    let bootstrap = broker.bootstrap();
    let output = format!("e2e-out-{}-{round}", contender.name());
    let group = format!("e2e-{}-{round}", contender.name());
    broker.create_topic(&output);
    let observer = observer(&bootstrap, &group);
    let watch = FirstOutputWatch::new(broker, &output);
    let broker_pid = broker.pid();
    let args = [
        bootstrap.clone(),
        output.clone(),
        group.clone(),
        options.commit_ms.to_string(),
        options.linger_ms.to_string(),
        options.fetch_wait_ms.to_string(),
        broker
            .internal_replication_factor()
            .map_or(DEFAULT_REPLICATION.to_owned(), |r| r.to_string()),
    ];
    let (broker_user0, broker_sys0) = cpu_seconds(broker_pid);
    let started = Instant::now();
    let (mut child, mut stdin) = spawn_child(contender, &args);
    let pid = child.id();
    let mut last_report = Instant::now();
    let mut first_output: Option<f64> = None;
    loop {
        std::thread::sleep(PROGRESS_POLL);
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{} exited early: {status}", contender.name());
        }
        assert!(
            started.elapsed() < CONTENDER_TIMEOUT,
            "{} not done after {CONTENDER_TIMEOUT:?}",
            contender.name()
        );
        if first_output.is_none() && watch.output_seen() {
            first_output = Some(started.elapsed().as_secs_f64());
        }
        let committed = committed(&observer);
        if committed == ends {
            break;
        }
        if last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            eprintln!(
                "  … {} after {:.0} s: {} of {} input records committed",
                contender.name(),
                started.elapsed().as_secs_f64(),
                committed.iter().sum::<i64>(),
                options.records
            );
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let startup = first_output.unwrap_or(seconds);
    let (user, sys) = cpu_seconds(pid);
    let peak = peak_rss_kib(pid);
    let (broker_user1, broker_sys1) = cpu_seconds(broker_pid);
    // Stop: one line on stdin; the child closes cleanly and exits.
    let _ = writeln!(stdin, "stop");
    drop(stdin);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                assert!(
                    status.success(),
                    "{} exited with {status}",
                    contender.name()
                );
                break;
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{} did not stop within 60 s", contender.name());
            }
        }
    }
    let outputs = check_output(
        &bootstrap,
        &output,
        options.records,
        expected,
        contender.exactly_once(),
    );
    broker.delete_topic(&output);
    if let Contender::KstreamsLogged { .. } = contender {
        // The application id is the group id; the store is `counts`.
        broker.delete_topic(&format!("{group}-counts-changelog"));
    }
    let measurement = Measurement {
        seconds,
        startup,
        cpu: user + sys,
        broker_cpu: (broker_user1 - broker_user0) + (broker_sys1 - broker_sys0),
        peak_rss_mib: peak as f64 / 1024.0,
    };
    eprintln!(
        "  round {round} {:<10} {:>7.2} s {:>10.0} rec/s  (first output at {startup:.2} s, \
         {:.0} rec/s after it)  cpu {:>6.2} s (user {user:.2}, sys {sys:.2})  \
         broker cpu {:>6.2} s  peak RSS {:>6.1} MiB  output {outputs} records OK",
        contender.name(),
        seconds,
        options.records as f64 / seconds,
        options.records as f64 / (seconds - startup),
        measurement.cpu,
        measurement.broker_cpu,
        measurement.peak_rss_mib,
    );
    measurement
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn parent(options: Options) {
    let broker = Broker::start(options.broker);
    let bootstrap = broker.bootstrap();
    eprintln!("broker: {} at {bootstrap}", broker.name());
    broker.create_topic(INPUT);
    let produce_started = Instant::now();
    let (expected, ends) = produce_input(&bootstrap, options.records, options.keys);
    // The end offsets come from the delivery reports: Tansu 0.6.0 answers ListOffsets(latest)
    // with a wrong offset (7,936 on every partition of a 100,000-record input whose partitions
    // hold 12,281–12,707 readable records).
    let listed = end_offsets(&observer(&bootstrap, "e2e-bench-setup"), INPUT);
    if listed != ends {
        eprintln!(
            "note: the broker's ListOffsets(latest) says {listed:?}, the delivery reports {ends:?}; \
             using the delivery reports"
        );
    }
    assert_eq!(
        ends.iter().sum::<i64>(),
        options.records as i64,
        "input end offsets"
    );
    eprintln!(
        "input: {} records, {} keys, {VALUE_BYTES}-byte values, {PARTITIONS} partitions, \
         produced in {:.1} s; broker RSS {:.0} MiB",
        options.records,
        expected.len(),
        produce_started.elapsed().as_secs_f64(),
        rss_kib(broker.pid()) as f64 / 1024.0,
    );
    let mut results: Vec<(Contender, Vec<Measurement>)> = options
        .contenders
        .iter()
        .map(|c| (*c, Vec::new()))
        .collect();
    for round in 1..=options.repeat {
        for (contender, measurements) in &mut results {
            let m = run_contender(&broker, &options, *contender, round, &ends, &expected);
            measurements.push(m);
        }
    }
    let rate = |ms: &[Measurement]| {
        median(
            ms.iter()
                .map(|m| options.records as f64 / m.seconds)
                .collect(),
        )
    };
    let steady_rate = |ms: &[Measurement]| {
        median(
            ms.iter()
                .map(|m| options.records as f64 / (m.seconds - m.startup))
                .collect(),
        )
    };
    let reference = results
        .iter()
        .find(|(c, _)| *c == Contender::Rdkafka)
        .map(|(_, ms)| (rate(ms), steady_rate(ms)));
    println!();
    println!(
        "{} records of {VALUE_BYTES} bytes, {} keys, {PARTITIONS} partitions, commit every {} ms, \
         linger {} ms, fetch max wait {} ms; broker: {}; medians of {} rounds",
        options.records,
        options.keys,
        options.commit_ms,
        options.linger_ms,
        options.fetch_wait_ms,
        broker.name(),
        options.repeat
    );
    println!();
    println!(
        "| contender | seconds | records/s | vs rdkafka loop | first output s | records/s after first output | vs rdkafka loop | peak RSS MiB | CPU s (user+sys) | broker CPU s |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (contender, ms) in &results {
        let r = rate(ms);
        let steady = steady_rate(ms);
        println!(
            "| {} | {:.2} | {:.0} | {} | {:.2} | {:.0} | {} | {:.1} | {:.2} | {:.2} |",
            contender.description(),
            median(ms.iter().map(|m| m.seconds).collect()),
            r,
            reference.map_or("-".to_owned(), |(base, _)| format!("{:.2}x", r / base)),
            median(ms.iter().map(|m| m.startup).collect()),
            steady,
            reference.map_or("-".to_owned(), |(_, base)| format!("{:.2}x", steady / base)),
            median(ms.iter().map(|m| m.peak_rss_mib).collect()),
            median(ms.iter().map(|m| m.cpu).collect()),
            median(ms.iter().map(|m| m.broker_cpu).collect()),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Children

/// The settings a child gets from the parent.
struct ChildArgs {
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
const DEFAULT_REPLICATION: &str = "default";

impl ChildArgs {
    fn parse(args: &[String]) -> Self {
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
struct KstreamsSetup {
    batch: bool,
    lmdb: bool,
    logged: bool,
    exactly_once: bool,
}

fn run_kstreams(args: ChildArgs, setup: KstreamsSetup) {
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

fn run_rdkafka(args: ChildArgs) {
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

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(CHILD) {
        let contender =
            Contender::parse(args.get(1).map_or("", String::as_str)).expect("contender name");
        let child_args = ChildArgs::parse(&args[2..]);
        match contender {
            Contender::Rdkafka => run_rdkafka(child_args),
            Contender::Kstreams { batch, lmdb } => run_kstreams(
                child_args,
                KstreamsSetup {
                    batch,
                    lmdb,
                    logged: false,
                    exactly_once: false,
                },
            ),
            Contender::KstreamsLogged { exactly_once } => run_kstreams(
                child_args,
                KstreamsSetup {
                    batch: true,
                    lmdb: true,
                    logged: true,
                    exactly_once,
                },
            ),
        }
        return;
    }
    match Options::parse(args) {
        Ok(options) => parent(options),
        Err(e) => {
            eprintln!("end_to_end: {e}");
            std::process::exit(2);
        }
    }
}
