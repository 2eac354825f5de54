//! A fixed amount of the `core_pipeline` bench's work, for instruction counts and profiles
//! (callgrind, `perf stat -e instructions`, `perf record`): the same workload, responses built
//! before the timed part, a fixed number of rounds instead of criterion's timing loop.
//!
//! Usage: `cargo run --profile bench -p kstreams-benches --bin core_pipeline_profile --
//! [passthrough-batch|passthrough-record|count-batch|count-record] [rounds]` (default
//! passthrough-batch, 20 rounds of 8 partitions × 2,000 records). Prints the records
//! produced; divide an instruction count by it for instructions per record.

use kstreams_benches::pipeline::{FetchResponses, Pipeline, Workload};

const PARTITIONS: i32 = 8;
const RECORDS_PER_PARTITION: usize = 2_000;
const RECORDS_PER_FETCHED_BATCH: usize = 500;

fn main() {
    let mut args = std::env::args().skip(1);
    let workload = match args.next().as_deref() {
        None | Some("passthrough-batch") => Workload::PassthroughBatch,
        Some("passthrough-record") => Workload::PassthroughRecord,
        Some("count-batch") => Workload::CountBatch,
        Some("count-record") => Workload::CountRecord,
        Some(other) => panic!("unknown workload {other}"),
    };
    let rounds: usize = args
        .next()
        .map_or(20, |r| r.parse().expect("rounds is a number"));
    let mut responses =
        FetchResponses::new(PARTITIONS, RECORDS_PER_PARTITION, RECORDS_PER_FETCHED_BATCH);
    // One warm-up round (first allocations, producer batches), then the measured ones.
    let mut pipeline = Pipeline::new(workload, PARTITIONS, 1_000);
    let inputs: Vec<_> = (0..=rounds).map(|_| responses.next_response()).collect();
    let mut produced = 0;
    for (round, response) in inputs.iter().enumerate() {
        let n = pipeline.run(response);
        if round > 0 {
            produced += n;
        }
    }
    println!("{produced} records produced in {rounds} rounds (+1 warm-up)");
}
