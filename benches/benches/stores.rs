//! Store backends: per-key transactions vs a shared transaction vs one batch, and per-key reads
//! vs one `get_batch`, on the in-memory store and on LMDB (tempdir, default sync mode), plus
//! LMDB without fsync as a reference for the CPU share of the LMDB writes.
//!
//! Run with `cargo bench -p kstreams-benches --bench stores`; results go to `BENCHMARKS.md`.

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use kstreams_store_api::{Checkpoint, KvBackend, WriteBatch};
use kstreams_store_lmdb::{LmdbConfig, LmdbEnvironment, SyncMode};
use kstreams_store_mem::MemoryStore;

const SIZES: [usize; 3] = [100, 1_000, 10_000];
const KEY_LEN: usize = 16;
const VALUE_LEN: usize = 100;
/// Short warm-up and measurement windows keep the whole file at ~3 minutes on an idle 2-core VM;
/// the slow per-key-commit LMDB cases run 10 single-iteration samples instead (at 10K records
/// that is 110K fsyncs: slower when other jobs load the disk).
const WARM_UP: Duration = Duration::from_millis(200);
const MEASUREMENT: Duration = Duration::from_millis(1000);

/// `n` distinct 16-byte keys in pseudo-random order (not sorted: real keys are not), each with
/// a 100-byte value.
struct Records {
    keys: Vec<Bytes>,
    values: Vec<Bytes>,
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl Records {
    fn new(n: usize) -> Self {
        let keys = (0..n as u64)
            .map(|i| {
                let mut key = [0_u8; KEY_LEN];
                key[..8].copy_from_slice(&splitmix64(i).to_be_bytes());
                key[8..].copy_from_slice(&i.to_be_bytes());
                Bytes::copy_from_slice(&key)
            })
            .collect();
        let values = (0..n)
            .map(|i| Bytes::from(vec![(i % 251) as u8; VALUE_LEN]))
            .collect();
        Self { keys, values }
    }

    fn batch(&self) -> WriteBatch {
        let mut batch = WriteBatch::with_capacity(self.keys.len());
        for (k, v) in self.keys.iter().zip(&self.values) {
            batch.put(k.clone(), v.clone());
        }
        batch
    }

    fn key_refs(&self) -> Vec<&[u8]> {
        self.keys.iter().map(|k| k.as_ref()).collect()
    }
}

/// The backends compared.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Backend {
    /// `kstreams-store-mem`.
    Mem,
    /// LMDB in a temporary directory, default configuration (sync mode `NoMetaSync`).
    Lmdb,
    /// LMDB with `SyncMode::NoSync`: not a configuration to run, a reference that separates the
    /// CPU cost of a commit from the cost of flushing it to disk.
    LmdbNoSync,
}

impl Backend {
    fn label(self) -> &'static str {
        match self {
            Backend::Mem => "mem",
            Backend::Lmdb => "lmdb",
            Backend::LmdbNoSync => "lmdb_nosync",
        }
    }
}

/// One LMDB environment per sync mode, each in its own temporary directory.
struct Environments {
    lmdb: LmdbEnvironment,
    lmdb_nosync: LmdbEnvironment,
    _dirs: [tempfile::TempDir; 2],
}

impl Environments {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let nosync_dir = tempfile::tempdir().expect("tempdir");
        let lmdb = LmdbEnvironment::open(LmdbConfig::new(dir.path())).expect("open LMDB");
        let lmdb_nosync = LmdbEnvironment::open(
            LmdbConfig::new(nosync_dir.path()).with_sync_mode(SyncMode::NoSync),
        )
        .expect("open LMDB");
        Self {
            lmdb,
            lmdb_nosync,
            _dirs: [dir, nosync_dir],
        }
    }

    /// A fresh store called `name` (one LMDB database per name and size).
    fn open(&self, backend: Backend, name: &str, n: usize) -> Box<dyn KvBackend> {
        let lmdb = match backend {
            Backend::Mem => return Box::new(MemoryStore::new(name)),
            Backend::Lmdb => &self.lmdb,
            Backend::LmdbNoSync => &self.lmdb_nosync,
        };
        Box::new(lmdb.open_store(name, n as i32).expect("open LMDB store"))
    }
}

fn one(key: &Bytes, value: &Bytes) -> WriteBatch {
    let mut batch = WriteBatch::with_capacity(1);
    batch.put(key.clone(), value.clone());
    batch
}

fn writes(c: &mut Criterion) {
    let envs = Environments::new();
    let runs: [(Backend, &[usize]); 3] = [
        (Backend::Mem, &SIZES),
        (Backend::Lmdb, &SIZES),
        (Backend::LmdbNoSync, &[10_000]),
    ];
    for (backend, sizes) in runs {
        let mut group = c.benchmark_group(format!("stores/write/{}", backend.label()));
        group.warm_up_time(WARM_UP);
        group.measurement_time(MEASUREMENT);
        for &n in sizes {
            let records = Records::new(n);
            group.throughput(Throughput::Elements(n as u64));
            let mut offset = 0_i64;
            let mut next_checkpoint = move || {
                offset += 1;
                Some(Checkpoint::new(offset, None))
            };

            // Naive: one transaction (commit, with its checkpoint) per key, as a
            // record-at-a-time store that commits every write.
            if backend != Backend::Mem {
                // Every LMDB commit flushes to disk (~0.2-3 ms here, so up to tens of seconds per
                // iteration at 10K): 10 samples (criterion's minimum) of one iteration each.
                group.sample_size(10);
                group.sampling_mode(SamplingMode::Flat);
            }
            let mut store = envs.open(backend, "per_key_txn", n);
            group.bench_function(BenchmarkId::new("per_key_txn", n), |b| {
                b.iter(|| {
                    for (k, v) in records.keys.iter().zip(&records.values) {
                        store.write_batch(one(k, v)).expect("write");
                        store.commit(next_checkpoint()).expect("commit");
                    }
                })
            });
            drop(store);
            group.sample_size(100);
            group.sampling_mode(SamplingMode::Auto);

            // Shared transaction: one write per key, one commit for all of them.
            let mut store = envs.open(backend, "shared_txn", n);
            group.bench_function(BenchmarkId::new("shared_txn", n), |b| {
                b.iter(|| {
                    for (k, v) in records.keys.iter().zip(&records.values) {
                        store.write_batch(one(k, v)).expect("write");
                    }
                    store.commit(next_checkpoint()).expect("commit");
                })
            });
            drop(store);

            // Batch: one write_batch of all n records and one commit.
            let mut store = envs.open(backend, "batch", n);
            group.bench_function(BenchmarkId::new("batch", n), |b| {
                b.iter(|| {
                    store.write_batch(records.batch()).expect("write");
                    store.commit(next_checkpoint()).expect("commit");
                })
            });
        }
        group.finish();
    }
}

fn reads(c: &mut Criterion) {
    let envs = Environments::new();
    for backend in [Backend::Mem, Backend::Lmdb] {
        let mut group = c.benchmark_group(format!("stores/read/{}", backend.label()));
        group.warm_up_time(WARM_UP);
        group.measurement_time(MEASUREMENT);
        for n in SIZES {
            let records = Records::new(n);
            let keys = records.key_refs();
            let mut store = envs.open(backend, "read", n);
            store.write_batch(records.batch()).expect("write");
            store
                .commit(Some(Checkpoint::new(n as i64, None)))
                .expect("commit");
            group.throughput(Throughput::Elements(n as u64));

            group.bench_function(BenchmarkId::new("per_key_get", n), |b| {
                b.iter(|| {
                    for key in &keys {
                        black_box(store.get(key).expect("get"));
                    }
                })
            });
            group.bench_function(BenchmarkId::new("get_batch", n), |b| {
                b.iter(|| black_box(store.get_batch(&keys).expect("get_batch")))
            });
        }
        group.finish();
    }
}

/// Fewer bootstrap resamples and no plots: the analysis otherwise takes as long as the
/// measurements on 2 cores.
fn config() -> Criterion {
    Criterion::default().nresamples(20_000).without_plots()
}

criterion_group! {
    name = stores;
    config = config();
    targets = writes, reads
}
criterion_main!(stores);
