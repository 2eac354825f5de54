//! The bulk-restore contract (`restore_run`, `finish_restore_runs`, `discard_restore_runs`) on
//! both backends, then what only LMDB has: run databases, chunked merges, reopen after a crash.

use std::collections::BTreeMap;
use std::ops::Bound::Unbounded;
use std::path::Path;

use bytes::Bytes;
use kstreams_store_api::{Checkpoint, KvBackend, StoreError, WriteBatch, WriteOp};
use kstreams_store_lmdb::{LmdbConfig, LmdbEnvironment, LmdbError, SyncMode};
use kstreams_store_mem::MemoryStore;

const TOPIC_ID: [u8; 16] = *b"bulk-restore-id!";

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn op(k: &str, v: Option<&str>) -> WriteOp {
    WriteOp {
        key: b(k),
        value: v.map(b),
    }
}

fn batch(ops: &[(&str, Option<&str>)]) -> WriteBatch {
    ops.iter().map(|&(k, v)| op(k, v)).collect()
}

fn all(store: &dyn KvBackend) -> Vec<(Bytes, Bytes)> {
    store.range(Unbounded, Unbounded).unwrap()
}

fn cp(offset: i64) -> Checkpoint {
    Checkpoint::new(offset, Some(TOPIC_ID))
}

/// A changelog of `n` records over `keys` distinct keys in scrambled order, a delete every
/// fifth record (some of keys never written, most of keys written before).
fn changelog(n: u32, keys: u32) -> Vec<WriteOp> {
    (0..n)
        .map(|i| {
            let key = format!("key-{:05}", i.wrapping_mul(7919) % keys);
            if i % 5 == 4 {
                WriteOp {
                    key: Bytes::from(key),
                    value: None,
                }
            } else {
                WriteOp {
                    key: Bytes::from(key),
                    value: Some(Bytes::from(format!("value-{i}"))),
                }
            }
        })
        .collect()
}

/// The changelog applied in order to an empty map.
fn replay(ops: &[WriteOp]) -> Vec<(Bytes, Bytes)> {
    let mut state = BTreeMap::new();
    for op in ops {
        match &op.value {
            Some(v) => state.insert(op.key.clone(), v.clone()),
            None => state.remove(&op.key),
        };
    }
    state.into_iter().collect()
}

/// Cuts `ops` into runs of the given sizes (repeated), including empty ones.
fn runs_of(ops: &[WriteOp], sizes: &[usize]) -> Vec<WriteBatch> {
    let mut runs = Vec::new();
    let mut rest = ops;
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (run, tail) = rest.split_at(size.min(rest.len()));
        runs.push(run.iter().cloned().collect());
        rest = tail;
    }
    runs
}

fn env(dir: &Path) -> LmdbEnvironment {
    LmdbEnvironment::open(LmdbConfig::new(dir)).unwrap()
}

/// Runs `test` on two fresh, empty stores of each backend (two partitions of one LMDB
/// environment, two memory stores).
fn for_both_backends(test: impl Fn(&mut dyn KvBackend, &mut dyn KvBackend)) {
    let dir = tempfile::tempdir().unwrap();
    // Small merge transactions: the LMDB merges take several of them.
    let env = LmdbEnvironment::open(LmdbConfig::new(dir.path()).with_bulk_restore_txn_bytes(1000))
        .unwrap();
    let mut a = env.open_store("s", 0).unwrap();
    let mut b = env.open_store("s", 1).unwrap();
    test(&mut a, &mut b);
    let mut a = MemoryStore::new("s");
    let mut b = MemoryStore::new("s");
    test(&mut a, &mut b);
}

#[test]
fn bulk_restore_equals_restore_batch_of_the_same_changelog() {
    for_both_backends(|bulk, batched| {
        let ops = changelog(3000, 700);
        // Duplicates within and across runs, tombstones of keys in older runs, empty runs.
        for run in runs_of(&ops, &[400, 0, 1, 250, 1000, 0, 17]) {
            bulk.restore_run(run.clone()).unwrap();
            batched.restore_batch(run, cp(1)).unwrap();
        }
        bulk.finish_restore_runs(cp(3000)).unwrap();
        batched.restore_batch(WriteBatch::new(), cp(3000)).unwrap();
        let want = replay(&ops);
        assert!(want.len() > 100, "{}", want.len());
        assert_eq!(all(bulk), want);
        assert_eq!(all(batched), want);
        assert_eq!(bulk.checkpoint().unwrap(), Some(cp(3000)));
        assert_eq!(bulk.uncommitted_len(), 0);
        // Processing goes on as usual.
        let mut next = WriteBatch::new();
        next.put(b("key-00001"), b("processed"));
        bulk.write_batch(next).unwrap();
        bulk.commit(Some(cp(3001))).unwrap();
        assert_eq!(bulk.get(b"key-00001").unwrap(), Some(b("processed")));
    });
}

#[test]
fn newest_write_wins_across_runs_and_tombstones_drop_keys() {
    for_both_backends(|store, _| {
        store
            .restore_run(batch(&[
                ("a", Some("1")),
                ("b", Some("1")),
                ("c", Some("1")),
                ("gone", None),
            ]))
            .unwrap();
        store
            .restore_run(batch(&[
                ("b", None),
                ("a", Some("2")),
                ("d", Some("2")),
                ("d", None),
            ]))
            .unwrap();
        store
            .restore_run(batch(&[("b", Some("3")), ("c", None), ("a", Some("3"))]))
            .unwrap();
        store.restore_run(WriteBatch::new()).unwrap();
        store
            .restore_run(batch(&[("c", Some("5")), ("c", None)]))
            .unwrap();
        store.finish_restore_runs(cp(9)).unwrap();
        assert_eq!(
            all(store),
            vec![(b("a"), b("3")), (b("b"), b("3"))],
            "c: put, deleted, put and deleted again; d: put and deleted in one run"
        );
        assert_eq!(store.checkpoint().unwrap(), Some(cp(9)));
    });
}

#[test]
fn staged_runs_are_invisible_until_finished() {
    for_both_backends(|store, _| {
        store
            .restore_run(batch(&[("a", Some("1")), ("b", Some("2"))]))
            .unwrap();
        assert_eq!(store.get(b"a").unwrap(), None);
        assert_eq!(store.get_batch(&[b"a", b"b"]).unwrap(), vec![None, None]);
        assert!(all(store).is_empty());
        assert_eq!(store.checkpoint().unwrap(), None);
        assert_eq!(store.uncommitted_len(), 0);
        assert!(store.pending_writes().is_empty());
        store.finish_restore_runs(cp(2)).unwrap();
        assert_eq!(all(store), vec![(b("a"), b("1")), (b("b"), b("2"))]);
    });
}

#[test]
fn finishing_without_runs_stores_the_checkpoint_alone() {
    for_both_backends(|store, _| {
        store.finish_restore_runs(cp(0)).unwrap();
        assert!(all(store).is_empty());
        assert_eq!(store.checkpoint().unwrap(), Some(cp(0)));
        // Only deletes: nothing to keep.
        store.wipe().unwrap();
        store.restore_run(batch(&[("x", None)])).unwrap();
        store.restore_run(batch(&[("y", None)])).unwrap();
        store.finish_restore_runs(cp(2)).unwrap();
        assert!(all(store).is_empty());
        assert_eq!(store.checkpoint().unwrap(), Some(cp(2)));
    });
}

#[test]
fn bulk_restore_is_refused_unless_the_store_is_empty() {
    for_both_backends(|store, _| {
        let run = batch(&[("r", Some("restored"))]);
        // Uncommitted writes.
        let mut pending = WriteBatch::new();
        pending.put(b("p"), b("pending"));
        store.write_batch(pending).unwrap();
        for err in [
            store.restore_run(run.clone()).unwrap_err(),
            store.finish_restore_runs(cp(1)).unwrap_err(),
        ] {
            assert!(
                matches!(err, StoreError::UncommittedWrites { count: 1, .. }),
                "{err:?}"
            );
        }
        // Committed data, without a checkpoint (an interrupted bulk restore looks like this).
        store.commit(None).unwrap();
        let err = store.restore_run(run.clone()).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::NotEmpty {
                    has_data: true,
                    checkpoint: None,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("data (without a checkpoint)"),
            "{err}"
        );
        // A checkpoint without data.
        store.wipe().unwrap();
        store.commit(Some(cp(7))).unwrap();
        let err = store.finish_restore_runs(cp(8)).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::NotEmpty {
                    has_data: false,
                    checkpoint: Some(c),
                    ..
                } if c == cp(7)
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("checkpoint at offset 7"), "{err}");
        assert_eq!(store.checkpoint().unwrap(), Some(cp(7)));
        // After a wipe it works.
        store.wipe().unwrap();
        store.restore_run(run).unwrap();
        store.finish_restore_runs(cp(1)).unwrap();
        assert_eq!(all(store), vec![(b("r"), b("restored"))]);
    });
}

#[test]
fn a_refused_finish_keeps_the_runs_until_wiped_or_discarded() {
    for_both_backends(|store, _| {
        store.restore_run(batch(&[("a", Some("run"))])).unwrap();
        // Someone commits meanwhile: the store is no longer empty.
        let mut other = WriteBatch::new();
        other.put(b("z"), b("committed"));
        store.write_batch(other).unwrap();
        store.commit(None).unwrap();
        let err = store.finish_restore_runs(cp(1)).unwrap_err();
        assert!(
            matches!(err, StoreError::NotEmpty { has_data: true, .. }),
            "{err:?}"
        );
        assert_eq!(all(store), vec![(b("z"), b("committed"))]);
        // A wipe drops data and runs: finishing now stores nothing but the checkpoint.
        store.wipe().unwrap();
        store.finish_restore_runs(cp(2)).unwrap();
        assert!(all(store).is_empty());
        assert_eq!(store.checkpoint().unwrap(), Some(cp(2)));
    });
}

#[test]
fn discarded_runs_are_gone() {
    for_both_backends(|store, _| {
        store.restore_run(batch(&[("a", Some("1"))])).unwrap();
        store.restore_run(batch(&[("b", Some("2"))])).unwrap();
        store.discard_restore_runs();
        store.discard_restore_runs(); // nothing left: a no-op
        store.restore_run(batch(&[("c", Some("3"))])).unwrap();
        store.finish_restore_runs(cp(3)).unwrap();
        assert_eq!(all(store), vec![(b("c"), b("3"))]);
    });
}

// ---------------------------------------------------------------------------------------------
// LMDB only.
// ---------------------------------------------------------------------------------------------

/// The names of the databases of the environment in `dir` (which must be closed).
fn database_names(dir: &Path) -> Vec<String> {
    use heed::types::{Bytes as Raw, DecodeIgnore};
    let env = unsafe { heed::EnvOpenOptions::new().max_dbs(8).open(dir).unwrap() };
    let rtxn = env.read_txn().unwrap();
    let mut names = Vec::new();
    env.open_databases_and_commit(rtxn, |opener, rtxn| {
        let main = opener
            .open_database::<Raw, DecodeIgnore>(rtxn, None)?
            .unwrap();
        for entry in main.iter(rtxn)? {
            let (name, ()) = entry?;
            names.push(String::from_utf8(name.to_vec()).unwrap());
        }
        Ok::<_, heed::Error>(heed::CommitOrAbort::<(), ()>::Abort(()))
    })
    .unwrap();
    env.prepare_for_closing().wait();
    names
}

#[test]
fn runs_merge_into_bigger_runs_and_stay_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let env = LmdbEnvironment::open(
        LmdbConfig::new(dir.path())
            .with_sync_mode(SyncMode::NoSync)
            .with_bulk_restore_txn_bytes(2000),
    )
    .unwrap();
    let mut bulk = env.open_store("s", 0).unwrap();
    let ops = changelog(6000, 900);
    // 300 runs of 20 records: runs of levels 0, 1 (16 runs) and 2 (256 runs).
    let mut most = 0;
    for run in runs_of(&ops, &[20]) {
        bulk.restore_run(run).unwrap();
        most = most.max(bulk.staged_restore_runs());
    }
    assert_eq!(
        most, 31,
        "at most 15 runs of level 1 and 16 of level 0 before they merge"
    );
    // 300 = 256 + 2 * 16 + 12.
    assert_eq!(bulk.staged_restore_runs(), 1 + 2 + 12);
    bulk.finish_restore_runs(cp(6000)).unwrap();
    assert_eq!(bulk.staged_restore_runs(), 0);
    assert_eq!(all(&bulk), replay(&ops));
    drop(bulk);
    drop(env);
    assert_eq!(
        database_names(dir.path()),
        vec!["__kstreams_checkpoints", "s.0"]
    );
}

#[test]
fn no_free_database_for_a_run_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    // The checkpoints, the store and one run.
    let env = LmdbEnvironment::open(LmdbConfig::new(dir.path()).with_max_dbs(3)).unwrap();
    let mut store = env.open_store("s", 0).unwrap();
    store.restore_run(batch(&[("a", Some("1"))])).unwrap();
    let err = store.restore_run(batch(&[("b", Some("2"))])).unwrap_err();
    assert!(
        matches!(&err, StoreError::Config { detail, .. } if detail.contains("max_dbs")),
        "{err:?}"
    );
    // The first run is still staged and finishes; its database slot is free again.
    store.finish_restore_runs(cp(1)).unwrap();
    assert_eq!(all(&store), vec![(b("a"), b("1"))]);
    store.wipe().unwrap();
    store.restore_run(batch(&[("c", Some("3"))])).unwrap();
    store.finish_restore_runs(cp(2)).unwrap();
    assert_eq!(all(&store), vec![(b("c"), b("3"))]);
}

#[test]
fn restore_run_rejects_keys_lmdb_cannot_store_whole() {
    let dir = tempfile::tempdir().unwrap();
    let env = env(dir.path());
    let mut store = env.open_store("s", 0).unwrap();
    let mut run = WriteBatch::new();
    run.put(b("fine"), b("1"));
    run.put(vec![b'k'; env.max_key_size() + 1], b("too long"));
    let err = store.restore_run(run).unwrap_err();
    assert!(
        matches!(
            &err,
            StoreError::Backend { source, .. }
                if matches!(source.downcast_ref::<LmdbError>(), Some(LmdbError::InvalidKey { .. }))
        ),
        "{err:?}"
    );
    assert_eq!(store.staged_restore_runs(), 0);
    store.finish_restore_runs(cp(1)).unwrap();
    assert!(all(&store).is_empty());
}

#[test]
fn a_finished_bulk_restore_is_durable_and_leaves_no_run() {
    let dir = tempfile::tempdir().unwrap();
    let ops = changelog(2000, 2000);
    {
        let env = env(dir.path());
        let mut store = env.open_store("s", 0).unwrap();
        for run in runs_of(&ops, &[300]) {
            store.restore_run(run).unwrap();
        }
        store.finish_restore_runs(cp(2000)).unwrap();
    }
    assert_eq!(
        database_names(dir.path()),
        vec!["__kstreams_checkpoints", "s.0"]
    );
    let env = env(dir.path());
    let store = env.open_store("s", 0).unwrap();
    assert_eq!(all(&store), replay(&ops));
    assert_eq!(store.checkpoint().unwrap(), Some(cp(2000)));
}

#[test]
fn dropping_a_store_drops_its_staged_runs() {
    let dir = tempfile::tempdir().unwrap();
    {
        let env = env(dir.path());
        let mut store = env.open_store("s", 0).unwrap();
        store.restore_run(batch(&[("a", Some("1"))])).unwrap();
        store.restore_run(batch(&[("b", Some("1"))])).unwrap();
    }
    assert_eq!(
        database_names(dir.path()),
        vec!["__kstreams_checkpoints", "s.0"]
    );
}

#[test]
fn a_failed_finish_resumes_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let env = LmdbEnvironment::open(
        LmdbConfig::new(dir.path())
            .with_initial_map_size(1 << 20)
            .with_max_map_size(1 << 20)
            .with_sync_mode(SyncMode::NoSync)
            .with_bulk_restore_txn_bytes(4096),
    )
    .unwrap();
    // Another store takes space that it gives back later.
    let mut filler = env.open_store("filler", 0).unwrap();
    let mut fill = WriteBatch::new();
    for i in 0..2000 {
        fill.put(format!("f{i:05}"), vec![1_u8; 200]);
    }
    filler.restore_batch(fill, cp(1)).unwrap();

    let mut store = env.open_store("s", 0).unwrap();
    let mut ops = Vec::new();
    for r in 0..4_u32 {
        let run: Vec<WriteOp> = (0..500_u32)
            .map(|i| WriteOp {
                key: Bytes::from(format!("{:04}", (i * 7 + r * 3) % 1500)),
                value: (i % 9 != 0).then(|| Bytes::from(vec![r as u8; 150])),
            })
            .collect();
        store.restore_run(run.iter().cloned().collect()).unwrap();
        ops.extend(run);
    }
    let err = store.finish_restore_runs(cp(2000)).unwrap_err();
    assert!(
        matches!(
            &err,
            StoreError::Backend { source, .. }
                if matches!(source.downcast_ref::<LmdbError>(), Some(LmdbError::MapFull { .. }))
        ),
        "{err:?}"
    );
    let partial = store.committed_len().unwrap();
    assert!(partial > 0, "part of the merge is committed");
    assert_eq!(store.checkpoint().unwrap(), None);
    assert_eq!(store.staged_restore_runs(), 4);
    // Space comes back; the retry resumes after the merged part.
    filler.wipe().unwrap();
    store.finish_restore_runs(cp(2000)).unwrap();
    assert_eq!(all(&store), replay(&ops));
    assert_eq!(store.checkpoint().unwrap(), Some(cp(2000)));
    assert_eq!(store.staged_restore_runs(), 0);
}
