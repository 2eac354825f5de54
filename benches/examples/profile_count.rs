//! A fixed amount of count-aggregation work for instruction counting (callgrind), where
//! criterion's time-bounded loops would make the totals depend on the machine's speed.
//!
//! ```sh
//! cargo build --profile bench -p kstreams-benches --example profile_count
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='profile_count::measured*' \
//!     target/release/examples/profile_count core-count-batch 4
//! ```
//!
//! Workloads (the first argument), each repeated the second argument's number of rounds:
//!
//! * `core-count-batch`, `core-count-record`: the `core_pipeline` bench's count rows (fetch
//!   decode → 8 tasks with memory stores → producer), 8 partitions × 2,000 records per round;
//! * `driver-{memory,lmdb}-{batch,record}`: the `driver` bench's process-only rows (20,000
//!   records over 1,000 skewed keys, 4 partitions, through `TopologyTestDriver::process`);
//! * `engine-lmdb-{batch,record}`: the `engine_count` bench (the engine against the simulated
//!   cluster, LMDB, changelog on), 20,000 records per round.
//!
//! Only [`measured`] is meant to be counted; it prints the records it processed.

#[path = "../benches/engine_count/workload.rs"]
mod engine_count;

use bytes::Bytes;
use kstreams_benches::pipeline::{FetchResponses, Pipeline, Workload};
use kstreams_core::prelude::*;
use kstreams_store_lmdb::{LmdbConfig, LmdbEnvironment};

use kstreams_benches::clicks::{PARTITIONS as DRIVER_PARTITIONS, clicks as driver_input};

fn driver_topology(batch: bool) -> Topology {
    let mut b = TopologyBuilder::new();
    let src = b
        .add_source("src", &["clicks"], StringSerde, StringSerde)
        .expect("source");
    let count = if batch {
        b.add_processor("count", &[&src], BatchCountAggregator::supplier("counts"))
    } else {
        b.add_processor("count", &[&src], RecordCountAggregator::supplier("counts"))
    }
    .expect("count");
    b.add_store(
        StoreBuilder::key_value("counts", StringSerde, I64Serde),
        &["count"],
    )
    .expect("store");
    b.add_sink("sink", "click-counts", &[&count], StringSerde, I64Serde)
        .expect("sink");
    b.build().expect("topology")
}

fn pipe(driver: &mut TopologyTestDriver, input: &[(i32, Bytes, Bytes, i64)]) {
    for (p, k, v, ts) in input {
        driver
            .pipe_raw(
                "clicks",
                Some(*p),
                Some(k.clone()),
                Some(v.clone()),
                *ts,
                Headers::new(),
            )
            .expect("pipe");
    }
}

/// The counted part: runs `work` and returns what it returned.
#[inline(never)]
fn measured<T>(work: impl FnOnce() -> T) -> T {
    work()
}

fn core_count(batch: bool, rounds: usize) -> usize {
    let workload = if batch {
        Workload::CountBatch
    } else {
        Workload::CountRecord
    };
    let mut responses = FetchResponses::new(8, 2_000, 500);
    let mut pipeline = Pipeline::new(workload, 8, 1_000);
    // One untimed round: every key is in the store before counting starts.
    pipeline.run(&responses.next_response());
    let mut records = 0;
    for _ in 0..rounds {
        let response = responses.next_response();
        records += measured(|| pipeline.run(&response));
    }
    records
}

fn driver_count(batch: bool, lmdb: bool, rounds: usize) -> usize {
    let input = driver_input();
    let mut records = 0;
    for _ in 0..rounds {
        let dir = tempfile::tempdir().expect("tempdir");
        let builder = TopologyTestDriver::builder(driver_topology(batch))
            .topic("clicks", DRIVER_PARTITIONS)
            .topic("click-counts", DRIVER_PARTITIONS)
            .batch_size(if batch { 1000 } else { 1 });
        let builder = if lmdb {
            let env = LmdbEnvironment::open(LmdbConfig::new(dir.path())).expect("lmdb");
            builder.store_factory(env)
        } else {
            builder
        };
        let mut driver = builder.build().expect("driver");
        pipe(&mut driver, &input);
        driver.process().expect("warm-up");
        pipe(&mut driver, &input);
        measured(|| driver.process().expect("process"));
        records += input.len();
    }
    records
}

fn engine_count(mode: engine_count::Mode, rounds: usize) -> usize {
    let mut engine =
        engine_count::EngineCount::new(mode, kstreams_store_lmdb::SyncMode::NoMetaSync);
    for _ in 0..rounds {
        engine.produce_round();
        measured(|| engine.run_round());
    }
    println!("changelog records: {}", engine.changelog_records());
    rounds * engine_count::RECORDS_PER_ROUND
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let workload = args
        .get(1)
        .map(String::as_str)
        .unwrap_or("core-count-batch");
    let rounds: usize = args.get(2).and_then(|r| r.parse().ok()).unwrap_or(4);
    let records = match workload {
        "core-count-batch" => core_count(true, rounds),
        "core-count-record" => core_count(false, rounds),
        "driver-memory-batch" => driver_count(true, false, rounds),
        "driver-memory-record" => driver_count(false, false, rounds),
        "driver-lmdb-batch" => driver_count(true, true, rounds),
        "driver-lmdb-record" => driver_count(false, true, rounds),
        "engine-lmdb-batch" => engine_count(engine_count::Mode::Batch, rounds),
        "engine-lmdb-record" => engine_count(engine_count::Mode::Record, rounds),
        other => {
            eprintln!("unknown workload {other}");
            std::process::exit(2);
        }
    };
    println!("{workload}: {records} records measured");
}
