//! The core alone, no network: encoded Fetch responses in → fetcher → topology → producer →
//! encoded Produce requests out. Record mode vs batch mode, passthrough and count aggregation
//! (memory store), 8 partitions × 2,000 records of 100-byte values per iteration.
//!
//! `cargo bench -p kstreams-benches --bench core_pipeline`

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use kstreams_benches::pipeline::{FetchResponses, Pipeline, Workload};

const PARTITIONS: i32 = 8;
const RECORDS_PER_PARTITION: usize = 2_000;
const RECORDS_PER_FETCHED_BATCH: usize = 500;

fn pipeline(c: &mut Criterion) {
    let mut group = c.benchmark_group("core_pipeline");
    group.throughput(Throughput::Elements(
        (PARTITIONS as usize * RECORDS_PER_PARTITION) as u64,
    ));
    group.sample_size(20);
    for (name, workload) in [
        ("passthrough/batch", Workload::PassthroughBatch),
        ("passthrough/record", Workload::PassthroughRecord),
        ("count/batch", Workload::CountBatch),
        ("count/record", Workload::CountRecord),
    ] {
        let mut responses =
            FetchResponses::new(PARTITIONS, RECORDS_PER_PARTITION, RECORDS_PER_FETCHED_BATCH);
        let mut pipeline = Pipeline::new(workload, PARTITIONS, 1_000);
        group.bench_function(name, |b| {
            b.iter_batched(
                || responses.next_response(),
                |response| pipeline.run(&response),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
