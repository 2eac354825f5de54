//! Property tests of the batch contract through the `TopologyTestDriver`:
//!
//! * a topology of batch processors (`filter`, `map_values`, `BatchCountAggregator`) and the
//!   same logic as a chain of record-only processors with `RecordCountAggregator` give the
//!   same output records and store contents, for any input and batch size, and both match a
//!   model in which every input partition's output keeps input order;
//! * the batches a processor sees never mix partitions, never exceed the batch size, and
//!   cover each partition's offsets exactly once, in order.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use common::*;
use kstreams_core::prelude::*;
use proptest::prelude::*;

const KEYS: [&str; 6] = ["a", "b", "c", "d", "e", "f"];
const VALUES: [&str; 4] = ["v0", "v1", "v2", "drop"];

/// Random input: partition count, records (key, value, partition, timestamp), batch size and
/// number of `process` rounds the input is split into.
fn scenario() -> impl Strategy<Value = (i32, Vec<Input>, usize, usize)> {
    (1..=4i32).prop_flat_map(|partitions| {
        let record = (0..KEYS.len(), 0..VALUES.len(), 0..partitions, 0..10_000i64)
            .prop_map(|(k, v, p, ts)| Input::new(KEYS[k], VALUES[v], ts).on(p));
        (
            Just(partitions),
            proptest::collection::vec(record, 0..200),
            1..=64usize,
            1..=3usize,
        )
    })
}

fn keep(value: &str) -> bool {
    value != "drop"
}

/// Batch mode: the built-in batch processors.
fn batch_topology() -> Topology {
    let mut b = TopologyBuilder::new();
    let words = b
        .add_source("words", &[WORDS], StringSerde, StringSerde)
        .unwrap();
    let kept = b
        .filter("keep", &words, |r: &Record<String, String>| keep(&r.value))
        .unwrap();
    let upper = b
        .map_values("upper", &kept, |v: &String| v.to_uppercase())
        .unwrap();
    let count = b
        .add_processor("count", &[&upper], BatchCountAggregator::supplier(STORE))
        .unwrap();
    b.add_store(
        StoreBuilder::key_value(STORE, StringSerde, I64Serde),
        &["count"],
    )
    .unwrap();
    b.add_sink("sink", COUNTS, &[&count], StringSerde, I64Serde)
        .unwrap();
    b.build().unwrap()
}

/// Record mode: the same logic in processors that only implement `process`.
fn record_topology() -> Topology {
    let mut b = TopologyBuilder::new();
    let words = b
        .add_source("words", &[WORDS], StringSerde, StringSerde)
        .unwrap();
    let kept = b
        .add_processor("keep", &[&words], || {
            RecordOnly(|r: Record<String, String>| keep(&r.value).then_some(r))
        })
        .unwrap();
    let upper = b
        .add_processor("upper", &[&kept], || {
            RecordOnly(|r: Record<String, String>| {
                let v = r.value.to_uppercase();
                Some(r.with_value(v))
            })
        })
        .unwrap();
    let count = b
        .add_processor("count", &[&upper], RecordCountAggregator::supplier(STORE))
        .unwrap();
    b.add_store(
        StoreBuilder::key_value(STORE, StringSerde, I64Serde),
        &["count"],
    )
    .unwrap();
    b.add_sink("sink", COUNTS, &[&count], StringSerde, I64Serde)
        .unwrap();
    b.build().unwrap()
}

struct Run {
    output: Vec<Record<String, i64>>,
    stores: Vec<Vec<(String, i64)>>,
    piped: Vec<Piped>,
}

fn run(topology: Topology, partitions: i32, input: &[Input], batch: usize, rounds: usize) -> Run {
    let mut driver = Stores::memory().driver(topology, partitions, batch);
    let mut next = HashMap::new();
    let mut piped = Vec::new();
    let chunk = input.len().div_ceil(rounds).max(1);
    for part in input.chunks(chunk) {
        piped.extend(pipe(&mut driver, partitions, part, &mut next));
        driver.process().unwrap();
    }
    let output = driver
        .output_topic(COUNTS, StringSerde, I64Serde)
        .read_records(&mut driver)
        .unwrap();
    Run {
        output,
        stores: store_by_partition(&mut driver, partitions).unwrap(),
        piped,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn batch_and_record_topologies_agree((partitions, input, batch, rounds) in scenario()) {
        let batched = run(batch_topology(), partitions, &input, batch, rounds);
        let recorded = run(record_topology(), partitions, &input, batch, rounds);
        // Record mode at its purest: one record per batch.
        let single = run(record_topology(), partitions, &input, 1, rounds);

        prop_assert_eq!(&batched.output, &recorded.output);
        prop_assert_eq!(&batched.stores, &recorded.stores);
        prop_assert_eq!(&batched.output, &single.output);
        prop_assert_eq!(&batched.stores, &single.stores);

        // Both are right, and each input partition's output is in input order.
        check_against_model(
            &batched.output,
            &expected_counts(&batched.piped, |p| keep(&p.value)),
        );
        let expected = expected_store(&batched.piped, |p| keep(&p.value));
        for p in 0..partitions {
            prop_assert_eq!(
                &batched.stores[p as usize],
                &expected.get(&p).cloned().unwrap_or_default()
            );
        }
    }
}

/// What one `process_batch` call saw.
#[derive(Debug, Clone)]
struct SeenBatch {
    task_partition: i32,
    /// `ctx.record_metadata()` during the call.
    context_metadata: bool,
    /// (topic, partition, offset) of each record.
    records: Vec<(String, i32, i64)>,
}

/// Logs every batch it receives and forwards nothing.
struct BatchRecorder(Arc<Mutex<Vec<SeenBatch>>>);

impl Processor<String, String, String, String> for BatchRecorder {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, String>,
        record: Record<String, String>,
    ) -> Result<(), ProcessError> {
        self.process_batch(ctx, vec![record])
    }

    fn process_batch(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, String>,
        batch: Batch<String, String>,
    ) -> Result<(), ProcessError> {
        let records = batch
            .iter()
            .map(|r| {
                let m = r
                    .metadata
                    .as_ref()
                    .expect("consumed records carry metadata");
                (m.topic.to_string(), m.partition, m.offset)
            })
            .collect();
        self.0.lock().unwrap().push(SeenBatch {
            task_partition: ctx.task_id().partition,
            context_metadata: ctx.record_metadata().is_some(),
            records,
        });
        Ok(())
    }
}

const OTHER: &str = "more-words";

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Two co-partitioned topics feed one source, so each task has two input partitions whose
    /// batches interleave by timestamp.
    #[test]
    fn batches_respect_the_contract(
        (partitions, input, batch, rounds) in scenario(),
        second_topic in proptest::collection::vec(any::<bool>(), 200),
    ) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut b = TopologyBuilder::new();
        let src = b
            .add_source("src", &[WORDS, OTHER], StringSerde, StringSerde)
            .unwrap();
        let sink_log = log.clone();
        b.add_processor("recorder", &[&src], move || BatchRecorder(sink_log.clone()))
            .unwrap();
        let mut driver = TopologyTestDriver::builder(b.build().unwrap())
            .topic(WORDS, partitions)
            .topic(OTHER, partitions)
            .batch_size(batch)
            .build()
            .unwrap();

        // Pipe each record into one of the two topics; remember every (topic, partition)'s
        // offsets.
        let mut piped: BTreeMap<(String, i32), Vec<i64>> = BTreeMap::new();
        let chunk = input.len().div_ceil(rounds).max(1);
        let mut i = 0;
        for part in input.chunks(chunk) {
            for rec in part {
                let topic = if second_topic[i] { OTHER } else { WORDS };
                i += 1;
                let p = rec.partition.unwrap();
                let offset = driver
                    .input_topic(topic, StringSerde, StringSerde)
                    .pipe_record(
                        &mut driver,
                        Some(p),
                        Record::new(rec.key.clone(), rec.value.clone(), rec.timestamp),
                    )
                    .unwrap();
                piped.entry((topic.to_owned(), p)).or_default().push(offset);
            }
            driver.process().unwrap();
        }

        let seen = log.lock().unwrap().clone();
        let mut covered: BTreeMap<(String, i32), Vec<i64>> = BTreeMap::new();
        for b in &seen {
            prop_assert!(!b.records.is_empty(), "empty batch");
            prop_assert!(b.records.len() <= batch, "{} > {batch}", b.records.len());
            let (topic, partition, _) = &b.records[0];
            prop_assert!(
                b.records.iter().all(|(t, p, _)| t == topic && p == partition),
                "batch mixes partitions: {:?}", b.records
            );
            prop_assert_eq!(b.task_partition, *partition);
            // No single current record during process_batch.
            prop_assert!(!b.context_metadata);
            covered
                .entry((topic.clone(), *partition))
                .or_default()
                .extend(b.records.iter().map(|&(_, _, o)| o));
        }
        // Every partition's offsets exactly once, in order (the driver numbers them from 0).
        prop_assert_eq!(&covered, &piped);
        for offsets in covered.values() {
            prop_assert!(offsets.iter().copied().eq(0..offsets.len() as i64));
        }
        let batches: u64 = driver.tasks().map(|t| t.metrics().batches).sum();
        prop_assert_eq!(batches, seen.len() as u64);
    }
}
