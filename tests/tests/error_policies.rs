//! Error policies end to end through the driver: undeserializable records and records whose
//! processing fails, under `Fail`, `Skip` and `DeadLetter`, at any position of a batch.
//!
//! Topology: `words` → `guard` (fails on the value `"boom"`) → `count` → `word-counts`, one
//! partition. The guard comes in two flavours: record-only (the default `process_batch` names
//! the failing offset) and batch-overriding (forwards the records before the failing one as one
//! batch and names the offset itself).

mod common;

use bytes::Bytes;
use common::*;
use kstreams_core::error::{RecordPart, TaskError};
use kstreams_core::prelude::*;
use kstreams_core::serde::SerdeError;
use kstreams_core::task::{
    DLQ_HEADER_ERROR, DLQ_HEADER_OFFSET, DLQ_HEADER_PARTITION, DLQ_HEADER_TOPIC, TaskMetrics,
};
use kstreams_core::testing::DriverError;
use kstreams_core::topology::{ProcessorHandle, SourceHandle};

const DLQ: &str = "dead-letters";

/// A batch guard: forwards everything before the first `"boom"` as one batch, then fails
/// naming that record's offset.
struct BatchFailOnBoom;

impl Processor<String, String, String, String> for BatchFailOnBoom {
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
        mut batch: Batch<String, String>,
    ) -> Result<(), ProcessError> {
        match batch.iter().position(|r| r.value == "boom") {
            None => ctx.forward_batch(batch),
            Some(i) => {
                let failed = batch.split_off(i);
                ctx.forward_batch(batch)?;
                Err(ProcessError::msg(format!("boom at key {}", failed[0].key))
                    .at_offset(failed[0].offset()))
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Guard {
    Record,
    Batch,
}

fn add_guard(
    b: &mut TopologyBuilder,
    guard: Guard,
    parent: &SourceHandle<String, String>,
) -> ProcessorHandle<String, String, String, String> {
    match guard {
        Guard::Record => b.add_processor("guard", &[parent], || FailOnBoom),
        Guard::Batch => b.add_processor("guard", &[parent], || BatchFailOnBoom),
    }
    .unwrap()
}

fn topology(guard: Guard) -> Topology {
    let mut b = TopologyBuilder::new();
    let words = b
        .add_source("words", &[WORDS], StringSerde, StringSerde)
        .unwrap();
    let guarded = add_guard(&mut b, guard, &words);
    let count = b
        .add_processor("count", &[&guarded], BatchCountAggregator::supplier(STORE))
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

struct Setup {
    guard: Guard,
    batch_size: usize,
    deserialization: ErrorPolicy,
    processing: ErrorPolicy,
}

impl Setup {
    fn driver(&self) -> TopologyTestDriver {
        TopologyTestDriver::builder(topology(self.guard))
            .batch_size(self.batch_size)
            .deserialization_errors(self.deserialization.clone())
            .processing_errors(self.processing.clone())
            .build()
            .unwrap()
    }
}

/// Every combination of guard flavour and batch size (whole input in one batch, or split).
fn setups(deserialization: ErrorPolicy, processing: ErrorPolicy) -> Vec<Setup> {
    let mut all = Vec::new();
    for guard in [Guard::Record, Guard::Batch] {
        for batch_size in [1, 2, 3, 100] {
            all.push(Setup {
                guard,
                batch_size,
                deserialization: deserialization.clone(),
                processing: processing.clone(),
            });
        }
    }
    all
}

fn dead_letter() -> ErrorPolicy {
    ErrorPolicy::DeadLetter {
        topic: DLQ.to_owned(),
    }
}

/// One record to pipe into `words` (partition 0): good, or with raw bytes that `StringSerde`
/// rejects (invalid UTF-8) in the key or the value.
enum In {
    Good(&'static str, &'static str),
    BadValue(&'static str),
    BadKey,
}

const INVALID_UTF8: &[u8] = &[0x66, 0x6f, 0xc3, 0x28]; // "fo" + a broken 2-byte sequence

/// Pipes `records` into partition 0 with a `trace` header naming their position; returns their
/// offsets.
fn pipe_in(driver: &mut TopologyTestDriver, records: &[In]) -> Vec<i64> {
    records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let (key, value): (&[u8], &[u8]) = match r {
                In::Good(k, v) => (k.as_bytes(), v.as_bytes()),
                In::BadValue(k) => (k.as_bytes(), INVALID_UTF8),
                In::BadKey => (INVALID_UTF8, b"v"),
            };
            let mut headers = Headers::new();
            headers.add("trace", Some(Bytes::from(format!("t{i}"))));
            driver
                .pipe_raw(
                    WORDS,
                    Some(0),
                    Some(Bytes::copy_from_slice(key)),
                    Some(Bytes::copy_from_slice(value)),
                    100 + i as i64,
                    headers,
                )
                .unwrap()
        })
        .collect()
}

fn metrics(driver: &TopologyTestDriver) -> TaskMetrics {
    driver.tasks().next().unwrap().metrics()
}

fn counts(driver: &mut TopologyTestDriver) -> Vec<(String, i64)> {
    driver
        .output_topic(COUNTS, StringSerde, I64Serde)
        .read_key_values(driver)
        .unwrap()
}

fn header(headers: &Headers, key: &str) -> String {
    let value = headers
        .last(key)
        .unwrap_or_else(|| panic!("no header {key}"));
    String::from_utf8(value.value.clone().unwrap().to_vec()).unwrap()
}

/// A dead-lettered record as read back from the DLQ topic.
#[derive(Debug)]
struct DeadLetter {
    key: Option<Bytes>,
    value: Option<Bytes>,
    timestamp: i64,
    trace: String,
    topic: String,
    partition: String,
    offset: String,
    error: String,
}

fn dead_letters(driver: &mut TopologyTestDriver) -> Vec<DeadLetter> {
    driver
        .output_topic(DLQ, Nullable(BytesSerde), Nullable(BytesSerde))
        .read_records(driver)
        .unwrap()
        .into_iter()
        .map(|r| DeadLetter {
            trace: header(&r.headers, "trace"),
            topic: header(&r.headers, DLQ_HEADER_TOPIC),
            partition: header(&r.headers, DLQ_HEADER_PARTITION),
            offset: header(&r.headers, DLQ_HEADER_OFFSET),
            error: header(&r.headers, DLQ_HEADER_ERROR),
            key: r.key,
            value: r.value,
            timestamp: r.timestamp,
        })
        .collect()
}

fn kv(k: &str, v: i64) -> (String, i64) {
    (k.to_owned(), v)
}

// ---------------------------------------------------------------------------------------------
// Deserialization errors

#[test]
fn undeserializable_record_under_fail_is_a_typed_error_and_nothing_after_it_is_committed() {
    for setup in setups(ErrorPolicy::Fail, ErrorPolicy::Fail) {
        let ctx = format!("{:?} guard, batch size {}", setup.guard, setup.batch_size);
        let mut driver = setup.driver();
        pipe_in(&mut driver, &[In::Good("a", "x"), In::Good("b", "x")]);
        driver.process().unwrap();
        assert_eq!(driver.committed_offset(WORDS, 0), Some(2), "{ctx}");

        let offsets = pipe_in(
            &mut driver,
            &[
                In::Good("a", "x"),
                In::Good("c", "x"),
                In::BadValue("a"),
                In::Good("a", "x"),
            ],
        );
        let bad = offsets[2];
        match driver.process() {
            Err(DriverError::Task(TaskError::Deserialization { task, source })) => {
                assert_eq!(task.partition, 0, "{ctx}");
                assert_eq!(&*source.topic, WORDS, "{ctx}");
                assert_eq!(source.partition, 0, "{ctx}");
                assert_eq!(source.offset, bad, "{ctx}");
                assert_eq!(source.part, RecordPart::Value, "{ctx}");
                assert!(matches!(source.source, SerdeError::Utf8(_)), "{ctx}");
            }
            other => panic!("{ctx}: expected a deserialization error, got {other:?}"),
        }
        // The driver committed nothing of the failed run, and the task never reports anything
        // at or after the bad record as committable.
        assert_eq!(driver.committed_offset(WORDS, 0), Some(2), "{ctx}");
        let committable = driver.tasks().next().unwrap().committable_offsets();
        assert!(
            committable.iter().all(|(_, o)| (2..=bad).contains(o)),
            "{ctx}: {committable:?}"
        );
        assert!(
            matches!(
                driver.process(),
                Err(DriverError::Task(TaskError::Failed(_)))
            ),
            "{ctx}: the task stays failed"
        );
    }
}

#[test]
fn undeserializable_records_under_skip_are_counted_and_the_rest_processed() {
    for setup in setups(ErrorPolicy::Skip, ErrorPolicy::Fail) {
        let ctx = format!("{:?} guard, batch size {}", setup.guard, setup.batch_size);
        let mut driver = setup.driver();
        pipe_in(
            &mut driver,
            &[
                In::Good("a", "x"),
                In::BadValue("a"),
                In::Good("a", "x"),
                In::BadKey,
                In::Good("b", "x"),
            ],
        );
        assert_eq!(
            counts(&mut driver),
            [kv("a", 1), kv("a", 2), kv("b", 1)],
            "{ctx}"
        );
        let m = metrics(&driver);
        assert_eq!(m.skipped_records, 2, "{ctx}");
        assert_eq!(m.dead_lettered_records, 0, "{ctx}");
        assert_eq!(m.consumed_records, 5, "{ctx}");
        assert_eq!(driver.committed_offset(WORDS, 0), Some(5), "{ctx}");
        assert_eq!(
            driver.store_entries::<String, i64>(STORE).unwrap(),
            [kv("a", 2), kv("b", 1)],
            "{ctx}"
        );
        assert!(dead_letters(&mut driver).is_empty(), "{ctx}");
    }
}

#[test]
fn undeserializable_records_under_dead_letter_go_to_the_dlq_with_their_source() {
    for setup in setups(dead_letter(), ErrorPolicy::Fail) {
        let ctx = format!("{:?} guard, batch size {}", setup.guard, setup.batch_size);
        let mut driver = setup.driver();
        let offsets = pipe_in(
            &mut driver,
            &[
                In::Good("a", "x"),
                In::BadValue("a"),
                In::Good("a", "x"),
                In::BadKey,
                In::Good("b", "x"),
            ],
        );
        assert_eq!(
            counts(&mut driver),
            [kv("a", 1), kv("a", 2), kv("b", 1)],
            "{ctx}"
        );
        let dlq = dead_letters(&mut driver);
        assert_eq!(dlq.len(), 2, "{ctx}: {dlq:?}");
        let (value_err, key_err) = (&dlq[0], &dlq[1]);
        // The raw bytes, timestamp and headers of the record, plus where it came from and why.
        assert_eq!(value_err.key.as_deref(), Some(&b"a"[..]), "{ctx}");
        assert_eq!(value_err.value.as_deref(), Some(INVALID_UTF8), "{ctx}");
        assert_eq!(value_err.timestamp, 101, "{ctx}");
        assert_eq!(value_err.trace, "t1", "{ctx}");
        assert_eq!(value_err.topic, WORDS, "{ctx}");
        assert_eq!(value_err.partition, "0", "{ctx}");
        assert_eq!(value_err.offset, offsets[1].to_string(), "{ctx}");
        assert!(
            value_err.error.contains("UTF-8"),
            "{ctx}: {}",
            value_err.error
        );
        assert!(
            value_err.error.contains("value"),
            "{ctx}: {}",
            value_err.error
        );
        assert_eq!(key_err.key.as_deref(), Some(INVALID_UTF8), "{ctx}");
        assert_eq!(key_err.offset, offsets[3].to_string(), "{ctx}");
        assert!(key_err.error.contains("key"), "{ctx}: {}", key_err.error);

        let m = metrics(&driver);
        assert_eq!(m.dead_lettered_records, 2, "{ctx}");
        assert_eq!(m.skipped_records, 0, "{ctx}");
        assert_eq!(driver.committed_offset(WORDS, 0), Some(5), "{ctx}");
    }
}

// ---------------------------------------------------------------------------------------------
// Processing errors inside a batch

/// `x x y boom x y`: the failing record sits in the middle of the batch (or of the input, for
/// small batches).
const WITH_BOOM: [In; 6] = [
    In::Good("x", "v"),
    In::Good("x", "v"),
    In::Good("y", "v"),
    In::Good("x", "boom"),
    In::Good("x", "v"),
    In::Good("y", "v"),
];

#[test]
fn failing_record_under_fail_stops_the_committed_offset_before_it() {
    for setup in setups(ErrorPolicy::Fail, ErrorPolicy::Fail) {
        let ctx = format!("{:?} guard, batch size {}", setup.guard, setup.batch_size);
        let mut driver = setup.driver();
        pipe_in(&mut driver, &[In::Good("z", "v")]);
        driver.process().unwrap();
        assert_eq!(driver.committed_offset(WORDS, 0), Some(1), "{ctx}");

        let offsets = pipe_in(&mut driver, &WITH_BOOM);
        let boom = offsets[3];
        match driver.process() {
            Err(DriverError::Task(TaskError::Processing {
                task,
                node,
                topic,
                partition,
                source,
            })) => {
                assert_eq!(task.partition, 0, "{ctx}");
                assert_eq!(node, "guard", "{ctx}");
                assert_eq!(topic.as_deref(), Some(WORDS), "{ctx}");
                assert_eq!(partition, 0, "{ctx}");
                assert_eq!(source.offset(), Some(boom), "{ctx}");
                assert!(source.to_string().contains("boom at key x"), "{ctx}");
            }
            other => panic!("{ctx}: expected a processing error, got {other:?}"),
        }
        assert_eq!(driver.committed_offset(WORDS, 0), Some(1), "{ctx}");
        let committable = driver.tasks().next().unwrap().committable_offsets();
        assert!(
            committable.iter().all(|(_, o)| (1..=boom).contains(o)),
            "{ctx}: {committable:?}"
        );
        if setup.batch_size == 1 {
            // Record by record, everything before the failed record was processed.
            assert_eq!(committable, [(committable[0].0.clone(), boom)], "{ctx}");
        }
    }
}

#[test]
fn failing_record_under_skip_is_skipped_and_the_rest_of_the_batch_processed() {
    for setup in setups(ErrorPolicy::Fail, ErrorPolicy::Skip) {
        let ctx = format!("{:?} guard, batch size {}", setup.guard, setup.batch_size);
        let mut driver = setup.driver();
        pipe_in(&mut driver, &WITH_BOOM);
        assert_eq!(
            counts(&mut driver),
            [kv("x", 1), kv("x", 2), kv("y", 1), kv("x", 3), kv("y", 2)],
            "{ctx}"
        );
        let m = metrics(&driver);
        assert_eq!(m.skipped_records, 1, "{ctx}");
        assert_eq!(m.consumed_records, 6, "{ctx}");
        assert_eq!(driver.committed_offset(WORDS, 0), Some(6), "{ctx}");
        assert_eq!(
            driver.store_entries::<String, i64>(STORE).unwrap(),
            [kv("x", 3), kv("y", 2)],
            "{ctx}"
        );
        assert!(dead_letters(&mut driver).is_empty(), "{ctx}");
    }
}

#[test]
fn failing_record_under_dead_letter_goes_to_the_dlq_and_the_rest_is_processed() {
    for setup in setups(ErrorPolicy::Fail, dead_letter()) {
        let ctx = format!("{:?} guard, batch size {}", setup.guard, setup.batch_size);
        let mut driver = setup.driver();
        let offsets = pipe_in(&mut driver, &WITH_BOOM);
        assert_eq!(
            counts(&mut driver),
            [kv("x", 1), kv("x", 2), kv("y", 1), kv("x", 3), kv("y", 2)],
            "{ctx}"
        );
        let dlq = dead_letters(&mut driver);
        assert_eq!(dlq.len(), 1, "{ctx}: {dlq:?}");
        let d = &dlq[0];
        assert_eq!(d.key.as_deref(), Some(&b"x"[..]), "{ctx}");
        assert_eq!(d.value.as_deref(), Some(&b"boom"[..]), "{ctx}");
        assert_eq!(d.timestamp, 103, "{ctx}");
        assert_eq!(d.trace, "t3", "{ctx}");
        assert_eq!(d.topic, WORDS, "{ctx}");
        assert_eq!(d.partition, "0", "{ctx}");
        assert_eq!(d.offset, offsets[3].to_string(), "{ctx}");
        assert!(d.error.contains("boom at key x"), "{ctx}: {}", d.error);
        let m = metrics(&driver);
        assert_eq!(m.dead_lettered_records, 1, "{ctx}");
        assert_eq!(m.skipped_records, 0, "{ctx}");
        assert_eq!(driver.committed_offset(WORDS, 0), Some(6), "{ctx}");
        assert_eq!(
            driver.store_entries::<String, i64>(STORE).unwrap(),
            [kv("x", 3), kv("y", 2)],
            "{ctx}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Failures in partial batches

/// Under `Skip`, a failure *downstream* of a batch processor must not make the records after
/// the failed one count twice (the batch processor has already applied them when the failure
/// surfaces): the task undoes the failed run and re-runs the records before the failed one.
/// Record mode (the same topology with `RecordCountAggregator`) must agree.
#[test]
fn failure_downstream_of_a_batch_counter_counts_no_record_twice() {
    /// Fails on the record whose source offset is 3, forwards the others.
    struct FailAtOffset3;
    impl Processor<String, i64, String, i64> for FailAtOffset3 {
        fn process(
            &mut self,
            ctx: &mut ProcessorContext<'_, String, i64>,
            record: Record<String, i64>,
        ) -> Result<(), ProcessError> {
            if record.offset() == Some(3) {
                return Err(ProcessError::msg("offset 3"));
            }
            ctx.forward(record)
        }
    }
    fn run<S: ProcessorSupplier<String, String, String, i64>>(
        counter: S,
    ) -> [Vec<(String, i64)>; 2] {
        let mut b = TopologyBuilder::new();
        let words = b
            .add_source("words", &[WORDS], StringSerde, StringSerde)
            .unwrap();
        let count = b.add_processor("count", &[&words], counter).unwrap();
        let after = b
            .add_processor("fail-at-3", &[&count], || FailAtOffset3)
            .unwrap();
        b.add_store(
            StoreBuilder::key_value(STORE, StringSerde, I64Serde),
            &["count"],
        )
        .unwrap();
        b.add_sink("sink", COUNTS, &[&after], StringSerde, I64Serde)
            .unwrap();
        let mut driver = TopologyTestDriver::builder(b.build().unwrap())
            .batch_size(100)
            .processing_errors(ErrorPolicy::Skip)
            .build()
            .unwrap();
        pipe_in(&mut driver, &[const { In::Good("x", "v") }; 6]);
        let out = counts(&mut driver);
        [out, driver.store_entries(STORE).unwrap()]
    }
    let [batch_out, batch_store] = run(BatchCountAggregator::supplier(STORE));
    let [record_out, record_store] = run(RecordCountAggregator::supplier(STORE));
    // Six records of key x: no count can exceed 6.
    assert!(batch_store[0].1 <= 6, "batch mode stored {batch_store:?}");
    assert_eq!(batch_out, record_out);
    assert_eq!(batch_store, record_store);
}

/// A record that fails to deserialize *after* a record whose processing fails, in the same
/// batch, is handed to its policy once: the task consumes the batch only up to the failed
/// record, so the next batch decodes the bad record again (regression test: it used to be
/// dead-lettered twice).
#[test]
fn undeserializable_record_after_a_failed_one_is_handled_once() {
    const INPUT: [In; 4] = [
        In::Good("a", "v"),
        In::Good("a", "boom"),
        In::BadValue("a"),
        In::Good("a", "v"),
    ];
    for guard in [Guard::Record, Guard::Batch] {
        let setup = Setup {
            guard,
            batch_size: 100,
            deserialization: dead_letter(),
            processing: dead_letter(),
        };
        let mut driver = setup.driver();
        let offsets = pipe_in(&mut driver, &INPUT);
        assert_eq!(counts(&mut driver), [kv("a", 1), kv("a", 2)]);
        let mut dead: Vec<String> = dead_letters(&mut driver)
            .into_iter()
            .map(|d| d.offset)
            .collect();
        dead.sort();
        assert_eq!(
            dead,
            [offsets[1].to_string(), offsets[2].to_string()],
            "{guard:?} guard: each failed record dead-lettered once"
        );
        assert_eq!(metrics(&driver).dead_lettered_records, 2);

        let setup = Setup {
            guard,
            batch_size: 100,
            deserialization: ErrorPolicy::Skip,
            processing: ErrorPolicy::Skip,
        };
        let mut driver = setup.driver();
        pipe_in(&mut driver, &INPUT);
        assert_eq!(counts(&mut driver), [kv("a", 1), kv("a", 2)]);
        assert_eq!(
            metrics(&driver).skipped_records,
            2,
            "{guard:?} guard: each failed record skipped once"
        );
    }
}
