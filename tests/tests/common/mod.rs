//! Helpers shared by the integration tests: the count topology, record-only processors, input
//! with provenance headers, and a model of what counting must output.
#![allow(dead_code)] // each test crate uses a different subset

use std::collections::HashMap;

use bytes::Bytes;
use kstreams_core::partitioner::default_partition;
use kstreams_core::prelude::*;
use kstreams_core::testing::DriverError;
use kstreams_store_lmdb::{LmdbConfig, LmdbEnvironment};
use tempfile::TempDir;

/// Input topic of the count topologies.
pub const WORDS: &str = "words";
/// Output topic of the count topologies.
pub const COUNTS: &str = "word-counts";
/// Store of the count topologies.
pub const STORE: &str = "counts";
/// Header every piped record carries: `"{partition}:{offset}"` of the input record. Headers are
/// forwarded unchanged, so each output record names the input it came from.
pub const SRC: &str = "test.src";

/// `words` (String → String) → `count` (the given counter, store `counts`) → `word-counts`.
pub fn count_topology<S>(counter: S) -> Topology
where
    S: ProcessorSupplier<String, String, String, i64>,
{
    let mut b = TopologyBuilder::new();
    let words = b
        .add_source("words", &[WORDS], StringSerde, StringSerde)
        .unwrap();
    let count = b.add_processor("count", &[&words], counter).unwrap();
    b.add_store(
        StoreBuilder::key_value(STORE, StringSerde, I64Serde),
        &["count"],
    )
    .unwrap();
    b.add_sink("sink", COUNTS, &[&count], StringSerde, I64Serde)
        .unwrap();
    b.build().unwrap()
}

/// A processor that only implements `process` (so it runs record at a time even inside a
/// batch): `f` maps a record to zero or one record.
pub struct RecordOnly<F>(pub F);

impl<K, V, K2, V2, F> Processor<K, V, K2, V2> for RecordOnly<F>
where
    K: 'static,
    V: 'static,
    K2: Clone + 'static,
    V2: Clone + 'static,
    F: FnMut(Record<K, V>) -> Option<Record<K2, V2>> + Send + 'static,
{
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, K2, V2>,
        record: Record<K, V>,
    ) -> Result<(), ProcessError> {
        match (self.0)(record) {
            Some(r) => ctx.forward(r),
            None => Ok(()),
        }
    }
}

/// A record-only processor that fails on every record whose value is `"boom"` and forwards the
/// others unchanged.
pub struct FailOnBoom;

impl Processor<String, String, String, String> for FailOnBoom {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, String>,
        record: Record<String, String>,
    ) -> Result<(), ProcessError> {
        if record.value == "boom" {
            return Err(ProcessError::msg(format!("boom at key {}", record.key)));
        }
        ctx.forward(record)
    }
}

/// Where a driver keeps its stores. Holds the LMDB directory alive.
pub enum Stores {
    Memory,
    Lmdb(TempDir),
}

impl Stores {
    pub fn memory() -> Self {
        Self::Memory
    }

    pub fn lmdb() -> Self {
        Self::Lmdb(tempfile::tempdir().unwrap())
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Lmdb(_) => "lmdb",
        }
    }

    /// A driver of `topology` with `partitions` partitions for `words` and `word-counts`.
    pub fn driver(
        &self,
        topology: Topology,
        partitions: i32,
        batch_size: usize,
    ) -> TopologyTestDriver {
        let b = TopologyTestDriver::builder(topology)
            .topic(WORDS, partitions)
            .topic(COUNTS, partitions)
            .batch_size(batch_size);
        let b = match self {
            Self::Memory => b,
            Self::Lmdb(dir) => {
                b.store_factory(LmdbEnvironment::open(LmdbConfig::new(dir.path())).unwrap())
            }
        };
        b.build().unwrap()
    }
}

/// One input record; `partition: None` lets Kafka's default partitioner choose.
#[derive(Debug, Clone)]
pub struct Input {
    pub partition: Option<i32>,
    pub key: String,
    pub value: String,
    pub timestamp: i64,
}

impl Input {
    pub fn new(key: impl Into<String>, value: impl Into<String>, timestamp: i64) -> Self {
        Self {
            partition: None,
            key: key.into(),
            value: value.into(),
            timestamp,
        }
    }

    pub fn on(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }
}

/// An input record as piped: where it went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piped {
    pub partition: i32,
    pub offset: i64,
    pub key: String,
    pub value: String,
}

/// Pipes `inputs` into `words` (of `partitions` partitions), each with the [`SRC`] header.
/// The driver numbers each partition's offsets from 0 in piping order; `next` keeps the next
/// offset of each partition across calls.
pub fn pipe(
    driver: &mut TopologyTestDriver,
    partitions: i32,
    inputs: &[Input],
    next: &mut HashMap<i32, i64>,
) -> Vec<Piped> {
    let topic = driver.input_topic(WORDS, StringSerde, StringSerde);
    inputs
        .iter()
        .map(|input| {
            let partition = input
                .partition
                .unwrap_or_else(|| default_partition(input.key.as_bytes(), partitions));
            let expected = next.entry(partition).or_insert(0);
            let mut headers = Headers::new();
            headers.add(SRC, Some(Bytes::from(format!("{partition}:{}", *expected))));
            let record = Record::new(input.key.clone(), input.value.clone(), input.timestamp)
                .with_headers(headers);
            let offset = topic.pipe_record(driver, Some(partition), record).unwrap();
            assert_eq!(offset, *expected, "the driver numbers offsets from 0");
            *expected += 1;
            Piped {
                partition,
                offset,
                key: input.key.clone(),
                value: input.value.clone(),
            }
        })
        .collect()
}

/// The `(partition, offset)` of the input record an output record derives from.
pub fn source_of<K, V>(record: &Record<K, V>) -> (i32, i64) {
    let h = record
        .headers
        .last(SRC)
        .and_then(|h| h.value.as_ref())
        .expect("every output record carries the source header");
    let s = std::str::from_utf8(h).unwrap();
    let (p, o) = s.split_once(':').unwrap();
    (p.parse().unwrap(), o.parse().unwrap())
}

/// What counting `piped` (those for which `keep` holds) must output, by input position:
/// `(partition, offset) → (key, running count of the key in that partition's task)`.
pub fn expected_counts(
    piped: &[Piped],
    keep: impl Fn(&Piped) -> bool,
) -> HashMap<(i32, i64), (String, i64)> {
    let mut counts: HashMap<(i32, String), i64> = HashMap::new();
    let mut sorted: Vec<&Piped> = piped.iter().filter(|p| keep(p)).collect();
    sorted.sort_by_key(|p| (p.partition, p.offset));
    sorted
        .into_iter()
        .map(|p| {
            let c = counts.entry((p.partition, p.key.clone())).or_insert(0);
            *c += 1;
            ((p.partition, p.offset), (p.key.clone(), *c))
        })
        .collect()
}

/// Final counts per (partition, key) of `piped` records for which `keep` holds.
pub fn expected_store(
    piped: &[Piped],
    keep: impl Fn(&Piped) -> bool,
) -> HashMap<i32, Vec<(String, i64)>> {
    let mut counts: HashMap<i32, std::collections::BTreeMap<String, i64>> = HashMap::new();
    for p in piped.iter().filter(|p| keep(p)) {
        *counts
            .entry(p.partition)
            .or_default()
            .entry(p.key.clone())
            .or_insert(0) += 1;
    }
    counts
        .into_iter()
        .map(|(p, m)| (p, m.into_iter().collect()))
        .collect()
}

/// Checks `output` against the model: every output record is the expected running count for
/// its input record, each expected record appears exactly once, and per input partition the
/// output keeps input (offset) order.
pub fn check_against_model(
    output: &[Record<String, i64>],
    expected: &HashMap<(i32, i64), (String, i64)>,
) {
    assert_eq!(output.len(), expected.len(), "one output per counted input");
    let mut last: HashMap<i32, i64> = HashMap::new();
    for r in output {
        let (p, o) = source_of(r);
        assert_eq!(
            expected.get(&(p, o)),
            Some(&(r.key.clone(), r.value)),
            "output for input {p}:{o}"
        );
        if let Some(prev) = last.insert(p, o) {
            assert!(prev < o, "partition {p}: output of offset {o} after {prev}");
        }
    }
}

/// The store contents of every partition in `0..partitions`, in key order.
pub fn store_by_partition(
    driver: &mut TopologyTestDriver,
    partitions: i32,
) -> Result<Vec<Vec<(String, i64)>>, DriverError> {
    (0..partitions)
        .map(|p| driver.store_entries_of::<String, i64>(STORE, p))
        .collect()
}
