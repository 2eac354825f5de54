//! Count aggregation on LMDB through the engine, changelog on: record mode
//! (`RecordCountAggregator`) vs batch mode (`BatchCountAggregator`), side by side in one run;
//! and the same with LMDB's `SyncMode::NoSync` (`lmdb_logged_nosync/*`), not a configuration
//! to run but a reference that separates the flushes from the CPU work.
//!
//! `cargo bench -p kstreams-benches --bench engine_count`
//!
//! The sans-IO engine runs against the simulated cluster of `kstreams-tests` (one broker, in
//! this process: no sockets, no broker process). Workload per iteration: 8 partitions × 2,500
//! records (16-byte keys drawn from 10,000, each key in one partition; 100-byte values). Stores:
//! LMDB (default config: `NoMetaSync`, one flush per store commit) in a temporary directory,
//! logged. Commits every 100 ms of simulated time; the simulated clock moves only when the
//! engine and the cluster are idle, so each round is processed whole and committed once: every
//! key written in the round goes to the changelog.
//!
//! Timed: from the round's input being in the input topic to the engine's commit covering it
//! (fetch, decode, process, produce output and changelog writes, store commit, OffsetCommit).
//! That includes the simulated broker's own work (encoding fetch responses, checking and
//! storing produced batches), the same for both modes.

mod workload;

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kstreams_store_lmdb::SyncMode;
use workload::{EngineCount, Mode, RECORDS_PER_ROUND};

fn engine_count(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine_count");
    group.throughput(Throughput::Elements(RECORDS_PER_ROUND as u64));
    group.sample_size(10);
    for (name, mode, sync) in [
        ("lmdb_logged/batch", Mode::Batch, SyncMode::NoMetaSync),
        ("lmdb_logged/record", Mode::Record, SyncMode::NoMetaSync),
        ("lmdb_logged_nosync/batch", Mode::Batch, SyncMode::NoSync),
        ("lmdb_logged_nosync/record", Mode::Record, SyncMode::NoSync),
    ] {
        let mut engine = EngineCount::new(mode, sync);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    engine.produce_round();
                    let start = Instant::now();
                    engine.run_round();
                    total += start.elapsed();
                }
                total
            })
        });
        assert!(engine.changelog_records() > 0, "the changelog is written");
    }
    group.finish();
}

criterion_group!(benches, engine_count);
criterion_main!(benches);
