//! Count aggregation through the `TopologyTestDriver`: record mode vs batch mode on the same
//! workload, with memory and LMDB stores.
//!
//! Workload: 20 000 records over 1 000 keys (skewed) and 4 partitions, keyed like Kafka's
//! default partitioner would. Topology: source → count (store `counts`) → sink.
//!
//! * `record`: `RecordCountAggregator`, batch size 1 — record-at-a-time end to end (one record
//!   per source decode, store get/put and sink append);
//! * `record-proc-batch-1000`: `RecordCountAggregator` in batches of 1000 — batched source and
//!   sink, record-at-a-time processor and store access (the default `process_batch`);
//! * `batch`: `BatchCountAggregator`, batch size 1000 — one `get_batch`, `put_batch` and
//!   `forward_batch` per batch.
//!
//! Each iteration starts from a driver whose store already holds every key (one untimed round
//! of the same workload, committed), then times piping the 20 000 raw records, processing them
//! and the commit (`TopologyTestDriver::process`). Building and warming the driver and dropping
//! it are outside the timed part. The `count-aggregation-process-only` groups pipe in the
//! untimed setup too and time `process` alone.
//!
//! Run with `cargo bench -p kstreams-benches --bench driver`; results go to `BENCHMARKS.md`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kstreams_core::prelude::*;
use kstreams_store_lmdb::{LmdbConfig, LmdbEnvironment};
use tempfile::TempDir;

use kstreams_benches::clicks::{Clicks as Workload, PARTITIONS, RECORDS, clicks as workload};

#[derive(Clone, Copy)]
enum Mode {
    Record,
    RecordProcBatched,
    Batch,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Self::Record => "record",
            Self::RecordProcBatched => "record-proc-batch-1000",
            Self::Batch => "batch",
        }
    }

    fn batch_size(self) -> usize {
        match self {
            Self::Record => 1,
            Self::RecordProcBatched | Self::Batch => 1000,
        }
    }

    fn topology(self) -> Topology {
        let mut b = TopologyBuilder::new();
        let src = b
            .add_source("src", &["clicks"], StringSerde, StringSerde)
            .unwrap();
        let count = match self {
            Self::Record | Self::RecordProcBatched => {
                b.add_processor("count", &[&src], RecordCountAggregator::supplier("counts"))
            }
            Self::Batch => {
                b.add_processor("count", &[&src], BatchCountAggregator::supplier("counts"))
            }
        }
        .unwrap();
        b.add_store(
            StoreBuilder::key_value("counts", StringSerde, I64Serde),
            &["count"],
        )
        .unwrap();
        b.add_sink("sink", "click-counts", &[&count], StringSerde, I64Serde)
            .unwrap();
        b.build().unwrap()
    }
}

fn pipe(driver: &mut TopologyTestDriver, workload: &Workload) {
    for (p, k, v, ts) in workload {
        driver
            .pipe_raw(
                "clicks",
                Some(*p),
                Some(k.clone()),
                Some(v.clone()),
                *ts,
                Headers::new(),
            )
            .unwrap();
    }
}

/// A driver whose store holds every key of the workload, committed.
fn warm_driver(
    mode: Mode,
    lmdb: bool,
    workload: &Workload,
) -> (TopologyTestDriver, Option<TempDir>) {
    let b = TopologyTestDriver::builder(mode.topology())
        .topic("clicks", PARTITIONS)
        .topic("click-counts", PARTITIONS)
        .batch_size(mode.batch_size());
    let (b, dir) = if lmdb {
        let dir = tempfile::tempdir().unwrap();
        let env = LmdbEnvironment::open(LmdbConfig::new(dir.path())).unwrap();
        (b.store_factory(env), Some(dir))
    } else {
        (b, None)
    };
    let mut driver = b.build().unwrap();
    pipe(&mut driver, workload);
    driver.process().unwrap();
    (driver, dir)
}

fn count_aggregation(c: &mut Criterion) {
    let workload = workload();
    for (store, lmdb) in [("memory", false), ("lmdb", true)] {
        let mut group = c.benchmark_group(format!("count-aggregation/{store}"));
        group.throughput(Throughput::Elements(RECORDS as u64));
        group.sample_size(10);
        group.warm_up_time(Duration::from_millis(500));
        group.measurement_time(Duration::from_secs(3));
        for mode in [Mode::Record, Mode::RecordProcBatched, Mode::Batch] {
            group.bench_function(BenchmarkId::from_parameter(mode.name()), |b| {
                b.iter_batched(
                    || warm_driver(mode, lmdb, &workload),
                    |(mut driver, dir)| {
                        pipe(&mut driver, &workload);
                        driver.process().unwrap();
                        // Dropped after the timing.
                        black_box((driver, dir))
                    },
                    BatchSize::PerIteration,
                );
            });
        }
        group.finish();
    }
}

/// The same without the piping: the records are queued in the untimed setup, the timed part is
/// `process` alone (batches through source, count and sink, routing the output, commit).
fn count_aggregation_process_only(c: &mut Criterion) {
    let workload = workload();
    for (store, lmdb) in [("memory", false), ("lmdb", true)] {
        let mut group = c.benchmark_group(format!("count-aggregation-process-only/{store}"));
        group.throughput(Throughput::Elements(RECORDS as u64));
        group.sample_size(10);
        group.warm_up_time(Duration::from_millis(500));
        group.measurement_time(Duration::from_secs(3));
        for mode in [Mode::Record, Mode::Batch] {
            group.bench_function(BenchmarkId::from_parameter(mode.name()), |b| {
                b.iter_batched(
                    || {
                        let (mut driver, dir) = warm_driver(mode, lmdb, &workload);
                        pipe(&mut driver, &workload);
                        (driver, dir)
                    },
                    |(mut driver, dir)| {
                        driver.process().unwrap();
                        black_box((driver, dir))
                    },
                    BatchSize::PerIteration,
                );
            });
        }
        group.finish();
    }
}

criterion_group!(driver, count_aggregation, count_aggregation_process_only);
criterion_main!(driver);
