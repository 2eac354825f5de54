//! Restoring a store from its changelog into LMDB: **batched** (one `restore_batch`, i.e. one
//! LMDB write transaction, per fetched batch of ~1 MiB of records: 9,039 records) vs **per
//! record** (one `restore_batch` of a single record per record: one write transaction per
//! record, as a store without batch restore does), with keys in random order and, for the
//! batched restore, in increasing order (every batch goes in with `MDB_APPEND`); and the **bulk
//! runs** restore of an empty store: one `restore_run` per ~8 MiB of records (72,315 records,
//! each staged sorted with `MDB_APPEND` in its own run database), then `finish_restore_runs`
//! (a k-way merge of the runs into the store with `MDB_APPEND`, in transactions of 32 MiB).
//!
//! Records: 16-byte keys, 100-byte values, all distinct; every iteration restores into a fresh,
//! empty environment (the environment's creation and removal are not timed). LMDB runs with the
//! default configuration, `SyncMode::NoMetaSync` (one `fdatasync` per write transaction), on a
//! temporary directory. `per_record_nosync` is the per-record restore with `SyncMode::NoSync`:
//! not a setting to run with, a reference for the CPU cost of a transaction per record without
//! its flush.
//!
//! The per-record restores use fewer records (their flushes would take many minutes at 1M);
//! compare rates (records/s and bytes/s of keys and values), not times. Peak memory of a
//! batched 1M restore: `cargo run --release -p kstreams-benches --bin restore_rss`.
//!
//! Run with
//! `cargo bench -p kstreams-benches --bench restore -- --warm-up-time 1 --measurement-time 5`.

use std::time::{Duration, Instant};

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use kstreams_benches::changelog::{Changelog, KeyOrder, RECORDS_PER_FETCH, RECORDS_PER_RUN};
use kstreams_store_api::{Checkpoint, KvBackend, WriteOp};
use kstreams_store_lmdb::{LmdbConfig, LmdbEnvironment, LmdbStore, SyncMode};

/// The changelog's topic id, written with every checkpoint as the engine does.
const TOPIC_ID: [u8; 16] = *b"restore-bench-id";

/// How a case hands the changelog to the store.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Method {
    /// `restore_batch` per batch, with the checkpoint after it.
    RestoreBatch,
    /// `restore_run` per batch, then `finish_restore_runs` with the checkpoint at the end.
    BulkRuns,
}

/// One way of restoring, benchmarked as `restore/{label}/{key order}/{records}`.
struct Case {
    label: &'static str,
    method: Method,
    sync_mode: SyncMode,
    order: KeyOrder,
    records: usize,
    records_per_batch: usize,
}

const CASES: [Case; 5] = [
    Case {
        label: "batched",
        method: Method::RestoreBatch,
        sync_mode: SyncMode::NoMetaSync,
        order: KeyOrder::Random,
        records: 1_000_000,
        records_per_batch: RECORDS_PER_FETCH,
    },
    Case {
        label: "batched",
        method: Method::RestoreBatch,
        sync_mode: SyncMode::NoMetaSync,
        order: KeyOrder::Sorted,
        records: 1_000_000,
        records_per_batch: RECORDS_PER_FETCH,
    },
    Case {
        label: "bulk_runs",
        method: Method::BulkRuns,
        sync_mode: SyncMode::NoMetaSync,
        order: KeyOrder::Random,
        records: 1_000_000,
        records_per_batch: RECORDS_PER_RUN,
    },
    Case {
        label: "per_record",
        method: Method::RestoreBatch,
        sync_mode: SyncMode::NoMetaSync,
        order: KeyOrder::Random,
        records: 10_000,
        records_per_batch: 1,
    },
    Case {
        label: "per_record_nosync",
        method: Method::RestoreBatch,
        sync_mode: SyncMode::NoSync,
        order: KeyOrder::Random,
        records: 100_000,
        records_per_batch: 1,
    },
];

/// An empty environment in a temporary directory, with one store to restore.
struct Target {
    store: LmdbStore,
    _env: LmdbEnvironment,
    _dir: tempfile::TempDir,
}

impl Target {
    fn new(sync_mode: SyncMode) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let env = LmdbEnvironment::open(LmdbConfig::new(dir.path()).with_sync_mode(sync_mode))
            .expect("open LMDB");
        let store = env.open_store("counts", 0).expect("open store");
        Self {
            store,
            _env: env,
            _dir: dir,
        }
    }
}

fn restore(c: &mut Criterion) {
    let mut group = c.benchmark_group("restore");
    // Every iteration takes from a fraction of a second to tens of seconds: 10 samples
    // (criterion's minimum) of one iteration each.
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    for case in &CASES {
        let changelog = Changelog::new(case.records, case.order);
        // Generated once, outside the measurement; an iteration clones `Bytes` handles only.
        let batches: Vec<(Vec<WriteOp>, i64)> = changelog
            .batches(case.records_per_batch)
            .map(|(batch, offset)| (batch.into_ops(), offset))
            .collect();
        group.throughput(Throughput::ElementsAndBytes {
            elements: case.records as u64,
            bytes: changelog.bytes(),
        });
        let id = BenchmarkId::new(
            format!("{}/{}", case.label, case.order.label()),
            case.records,
        );
        group.bench_function(id, |b| {
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                for _ in 0..iters {
                    let mut target = Target::new(case.sync_mode);
                    let start = Instant::now();
                    for (ops, offset) in &batches {
                        let batch = ops.iter().cloned().collect();
                        let checkpoint = Checkpoint::new(*offset, Some(TOPIC_ID));
                        match case.method {
                            Method::RestoreBatch => target.store.restore_batch(batch, checkpoint),
                            Method::BulkRuns => target.store.restore_run(batch),
                        }
                        .expect("restore");
                    }
                    if case.method == Method::BulkRuns {
                        let end = Checkpoint::new(case.records as i64, Some(TOPIC_ID));
                        target.store.finish_restore_runs(end).expect("finish");
                    }
                    elapsed += start.elapsed();
                    assert_eq!(
                        target.store.committed_len().expect("len"),
                        case.records as u64
                    );
                }
                elapsed
            })
        });
    }
    group.finish();
}

/// Fewer bootstrap resamples and no plots: the analysis otherwise takes long on 2 cores.
fn config() -> Criterion {
    Criterion::default().nresamples(20_000).without_plots()
}

criterion_group! {
    name = restore_benches;
    config = config();
    targets = restore
}
criterion_main!(restore_benches);
