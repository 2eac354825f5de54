//! Random operation sequences against a `BTreeMap` model with a committed/pending split,
//! including restored changelog batches, bulk restores (runs staged, finished, discarded),
//! wipes, and dropping and reopening the environment; `pending_writes` and the checkpoint are
//! checked after every step. A second property restores random runs in bulk and compares with
//! replaying them in order.

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;
use kstreams_store_api::{Checkpoint, KvBackend, StoreError, WriteBatch};
use kstreams_store_lmdb::{LmdbConfig, LmdbEnvironment, LmdbStore, SyncMode};
use proptest::prelude::*;

type Key = Vec<u8>;
type Value = Vec<u8>;

#[derive(Debug, Clone)]
enum Op {
    Put(Key, Value),
    Delete(Key),
    WriteBatch(Vec<(Key, Option<Value>)>),
    Commit(Option<i64>),
    /// A changelog batch restored with `restore_batch` at this offset, with a topic id or not.
    Restore(Vec<(Key, Option<Value>)>, i64, bool),
    Wipe,
    /// A changelog batch staged with `restore_run`.
    RestoreRun(Vec<(Key, Option<Value>)>),
    /// `finish_restore_runs` at this offset.
    FinishRuns(i64),
    DiscardRuns,
    Rollback,
    Get(Key),
    GetBatch(Vec<Key>),
    Range(Bound<Key>, Bound<Key>),
    SetSavepoint,
    RollbackToSavepoint,
    ReleaseSavepoint,
    Reopen,
}

/// Keys from a tiny alphabet (including 0x00 and 0xff) so that writes collide often.
fn key() -> impl Strategy<Value = Key> {
    prop::collection::vec(
        prop::sample::select(vec![0x00_u8, b'a', b'b', b'c', 0xff]),
        1..4,
    )
}

/// Range bounds and lookups may also use the empty key.
fn probe_key() -> impl Strategy<Value = Key> {
    prop::collection::vec(
        prop::sample::select(vec![0x00_u8, b'a', b'b', b'c', 0xff]),
        0..4,
    )
}

/// Mostly small values, sometimes big enough for LMDB overflow pages (and map growth).
fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        8 => prop::collection::vec(any::<u8>(), 0..32),
        1 => (1000_usize..6000).prop_map(|n| vec![0x5a; n]),
    ]
}

fn bound() -> impl Strategy<Value = Bound<Key>> {
    prop_oneof![
        Just(Bound::Unbounded),
        probe_key().prop_map(Bound::Included),
        probe_key().prop_map(Bound::Excluded),
    ]
}

/// A changelog batch: puts and deletes of colliding keys.
fn writes() -> impl Strategy<Value = Vec<(Key, Option<Value>)>> {
    prop::collection::vec((key(), prop::option::weighted(0.75, value())), 0..8)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (key(), value()).prop_map(|(k, v)| Op::Put(k, v)),
        3 => key().prop_map(Op::Delete),
        4 => prop::collection::vec((key(), prop::option::weighted(0.75, value())), 0..8)
            .prop_map(Op::WriteBatch),
        3 => prop::option::of(any::<i64>()).prop_map(Op::Commit),
        2 => (
            prop::collection::vec((key(), prop::option::weighted(0.75, value())), 0..8),
            any::<i64>(),
            any::<bool>(),
        )
            .prop_map(|(writes, offset, with_id)| Op::Restore(writes, offset, with_id)),
        1 => Just(Op::Wipe),
        3 => writes().prop_map(Op::RestoreRun),
        2 => any::<i64>().prop_map(Op::FinishRuns),
        1 => Just(Op::DiscardRuns),
        1 => Just(Op::Rollback),
        3 => probe_key().prop_map(Op::Get),
        2 => prop::collection::vec(probe_key(), 0..6).prop_map(Op::GetBatch),
        3 => (bound(), bound()).prop_map(|(a, b)| Op::Range(a, b)),
        1 => Just(Op::SetSavepoint),
        1 => Just(Op::RollbackToSavepoint),
        1 => Just(Op::ReleaseSavepoint),
        1 => Just(Op::Reopen),
    ]
}

/// Operations of a bulk restore (and a few that observe or interrupt it).
fn bulk_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => writes().prop_map(Op::RestoreRun),
        2 => any::<i64>().prop_map(Op::FinishRuns),
        1 => Just(Op::DiscardRuns),
        1 => Just(Op::Reopen),
        1 => Just(Op::Wipe),
        1 => probe_key().prop_map(Op::Get),
        1 => (bound(), bound()).prop_map(|(a, b)| Op::Range(a, b)),
    ]
}

/// What the store must look like: committed state, pending writes on top, last checkpoint, and
/// the pending writes as they were at the savepoint.
#[derive(Default)]
struct Model {
    committed: BTreeMap<Key, Value>,
    pending: BTreeMap<Key, Option<Value>>,
    checkpoint: Option<Checkpoint>,
    savepoint: Option<BTreeMap<Key, Option<Value>>>,
    /// The staged restore runs, applied in order.
    staged: BTreeMap<Key, Value>,
}

impl Model {
    fn get(&self, key: &[u8]) -> Option<Value> {
        match self.pending.get(key) {
            Some(v) => v.clone(),
            None => self.committed.get(key).cloned(),
        }
    }

    fn visible(&self) -> BTreeMap<Key, Value> {
        let mut all = self.committed.clone();
        for (k, v) in &self.pending {
            match v {
                Some(v) => all.insert(k.clone(), v.clone()),
                None => all.remove(k),
            };
        }
        all
    }

    fn commit(&mut self, checkpoint: Option<Checkpoint>) {
        for (k, v) in std::mem::take(&mut self.pending) {
            match v {
                Some(v) => self.committed.insert(k, v),
                None => self.committed.remove(&k),
            };
        }
        if checkpoint.is_some() {
            self.checkpoint = checkpoint;
        }
        // Committed writes cannot be undone: the savepoint now starts from the empty buffer.
        self.restart_savepoint();
    }

    /// Whether a bulk-restore step is refused: with uncommitted writes, or data or a checkpoint.
    fn bulk_refusal(&self, result: &Result<(), StoreError>) -> Option<bool> {
        let expected_ok =
            self.pending.is_empty() && self.committed.is_empty() && self.checkpoint.is_none();
        let matches = match result {
            Ok(()) => expected_ok,
            Err(StoreError::UncommittedWrites { .. }) => !self.pending.is_empty(),
            Err(StoreError::NotEmpty {
                has_data,
                checkpoint,
                ..
            }) => {
                self.pending.is_empty()
                    && !expected_ok
                    && *has_data != self.committed.is_empty()
                    && *checkpoint == self.checkpoint
            }
            Err(_) => false,
        };
        matches.then_some(!expected_ok)
    }

    fn restart_savepoint(&mut self) {
        if let Some(savepoint) = &mut self.savepoint {
            savepoint.clear();
        }
    }
}

fn contains(from: &Bound<Key>, to: &Bound<Key>, key: &[u8]) -> bool {
    let lower = match from {
        Bound::Included(f) => key >= f.as_slice(),
        Bound::Excluded(f) => key > f.as_slice(),
        Bound::Unbounded => true,
    };
    let upper = match to {
        Bound::Included(t) => key <= t.as_slice(),
        Bound::Excluded(t) => key < t.as_slice(),
        Bound::Unbounded => true,
    };
    lower && upper
}

fn as_ref(b: &Bound<Key>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(k.as_slice()),
        Bound::Excluded(k) => Bound::Excluded(k.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

fn open(config: &LmdbConfig) -> (LmdbEnvironment, LmdbStore) {
    let env = LmdbEnvironment::open(config.clone()).unwrap();
    let store = env.open_store("model", 3).unwrap();
    (env, store)
}

/// The writes as a batch, in order.
fn batch_of(writes: &[(Key, Option<Value>)]) -> WriteBatch {
    let mut batch = WriteBatch::new();
    for (k, v) in writes {
        match v {
            Some(v) => batch.put(k.clone(), v.clone()),
            None => batch.delete(k.clone()),
        }
    }
    batch
}

fn check(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    // A tiny map so that big values make commits grow it; no fsync to keep 256 cases fast (the
    // sync mode does not change what a live or cleanly reopened environment contains).
    // Merges of a few entries per write transaction: finishing a bulk restore takes several.
    let config = LmdbConfig::new(dir.path())
        .with_initial_map_size(64 * 1024)
        .with_sync_mode(SyncMode::NoSync)
        .with_bulk_restore_txn_bytes(64);
    let (mut env, mut store) = open(&config);
    let mut model = Model::default();

    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Put(k, v) => {
                let mut batch = WriteBatch::new();
                batch.put(k.clone(), v.clone());
                store.write_batch(batch).unwrap();
                model.pending.insert(k, Some(v));
            }
            Op::Delete(k) => {
                let mut batch = WriteBatch::new();
                batch.delete(k.clone());
                store.write_batch(batch).unwrap();
                model.pending.insert(k, None);
            }
            Op::WriteBatch(writes) => {
                let mut batch = WriteBatch::new();
                for (k, v) in writes {
                    match &v {
                        Some(v) => batch.put(k.clone(), v.clone()),
                        None => batch.delete(k.clone()),
                    }
                    model.pending.insert(k, v);
                }
                store.write_batch(batch).unwrap();
            }
            Op::Commit(offset) => {
                let checkpoint = offset.map(|offset| Checkpoint::new(offset, None));
                store.commit(checkpoint).unwrap();
                model.commit(checkpoint);
            }
            Op::Restore(writes, offset, with_id) => {
                let topic_id = with_id.then(|| offset.to_be_bytes().repeat(2).try_into().unwrap());
                let checkpoint = Checkpoint::new(offset, topic_id);
                let result = store.restore_batch(batch_of(&writes), checkpoint);
                if model.pending.is_empty() {
                    prop_assert!(result.is_ok(), "step {}: {:?}", step, result);
                    for (k, v) in writes {
                        match v {
                            Some(v) => model.committed.insert(k, v),
                            None => model.committed.remove(&k),
                        };
                    }
                    model.checkpoint = Some(checkpoint);
                } else {
                    prop_assert!(
                        matches!(result, Err(StoreError::UncommittedWrites { .. })),
                        "step {}: {:?}",
                        step,
                        result
                    );
                }
            }
            Op::Wipe => {
                store.wipe().unwrap();
                model.committed.clear();
                model.pending.clear();
                model.checkpoint = None;
                model.savepoint = None;
                model.staged.clear();
            }
            Op::RestoreRun(writes) => {
                let result = store.restore_run(batch_of(&writes));
                let refused = model.bulk_refusal(&result);
                prop_assert!(refused.is_some(), "step {}: {:?}", step, result);
                if refused == Some(false) {
                    for (k, v) in writes {
                        match v {
                            Some(v) => model.staged.insert(k, v),
                            None => model.staged.remove(&k),
                        };
                    }
                }
            }
            Op::FinishRuns(offset) => {
                let checkpoint = Checkpoint::new(offset, None);
                let result = store.finish_restore_runs(checkpoint);
                let refused = model.bulk_refusal(&result);
                prop_assert!(refused.is_some(), "step {}: {:?}", step, result);
                if refused == Some(false) {
                    model.committed = std::mem::take(&mut model.staged);
                    model.checkpoint = Some(checkpoint);
                }
            }
            Op::DiscardRuns => {
                store.discard_restore_runs();
                model.staged.clear();
            }
            Op::Rollback => {
                store.rollback();
                model.pending.clear();
                model.restart_savepoint();
            }
            Op::SetSavepoint => {
                store.set_savepoint();
                model.savepoint = Some(model.pending.clone());
            }
            Op::RollbackToSavepoint => {
                store.rollback_to_savepoint();
                if let Some(savepoint) = &model.savepoint {
                    model.pending = savepoint.clone();
                }
            }
            Op::ReleaseSavepoint => {
                store.release_savepoint();
                model.savepoint = None;
            }
            Op::Get(k) => {
                let got = store.get(&k).unwrap().map(|v| v.to_vec());
                prop_assert_eq!(got, model.get(&k), "step {}: get {:?}", step, k);
            }
            Op::GetBatch(keys) => {
                let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
                let got: Vec<Option<Value>> = store
                    .get_batch(&refs)
                    .unwrap()
                    .into_iter()
                    .map(|v| v.map(|v| v.to_vec()))
                    .collect();
                let want: Vec<Option<Value>> = keys.iter().map(|k| model.get(k)).collect();
                prop_assert_eq!(got, want, "step {}: get_batch {:?}", step, keys);
            }
            Op::Range(from, to) => {
                let got: Vec<(Key, Value)> = store
                    .range(as_ref(&from), as_ref(&to))
                    .unwrap()
                    .into_iter()
                    .map(|(k, v): (Bytes, Bytes)| (k.to_vec(), v.to_vec()))
                    .collect();
                let want: Vec<(Key, Value)> = model
                    .visible()
                    .into_iter()
                    .filter(|(k, _)| contains(&from, &to, k))
                    .collect();
                prop_assert_eq!(got, want, "step {}: range {:?}..{:?}", step, from, to);
            }
            Op::Reopen => {
                drop(store);
                drop(env);
                (env, store) = open(&config);
                model.pending.clear();
                model.savepoint = None;
                // Dropping the store drops its runs (and opening it drops any left).
                model.staged.clear();
            }
        }
        prop_assert_eq!(
            store.uncommitted_len(),
            model.pending.len(),
            "step {}",
            step
        );
        prop_assert_eq!(
            store.checkpoint().unwrap(),
            model.checkpoint,
            "step {}",
            step
        );
        let pending: Vec<(Key, Option<Value>)> = store
            .pending_writes()
            .into_iter()
            .map(|op| (op.key.to_vec(), op.value.map(|v| v.to_vec())))
            .collect();
        let want: Vec<(Key, Option<Value>)> = model.pending.clone().into_iter().collect();
        prop_assert_eq!(pending, want, "step {}: pending_writes", step);
    }

    // Whatever happened, a final reopen shows exactly the committed state.
    drop(store);
    drop(env);
    let (_env, store) = open(&config);
    let got: BTreeMap<Key, Value> = store
        .range(Bound::Unbounded, Bound::Unbounded)
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect();
    prop_assert_eq!(got, model.committed.clone());
    prop_assert_eq!(store.committed_len().unwrap(), model.committed.len() as u64);
    prop_assert_eq!(store.checkpoint().unwrap(), model.checkpoint);
    Ok(())
}

/// Stages `runs` with `restore_run`, finishes, and compares with replaying them in order; then
/// again after a reopen.
fn check_bulk(runs: Vec<Vec<(Key, Option<Value>)>>, txn_bytes: usize) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let config = LmdbConfig::new(dir.path())
        .with_initial_map_size(64 * 1024)
        .with_sync_mode(SyncMode::NoSync)
        .with_bulk_restore_txn_bytes(txn_bytes);
    let mut want = BTreeMap::new();
    {
        let (_env, mut store) = open(&config);
        for writes in &runs {
            store.restore_run(batch_of(writes)).unwrap();
            for (k, v) in writes {
                match v {
                    Some(v) => want.insert(k.clone(), v.clone()),
                    None => want.remove(k),
                };
            }
        }
        prop_assert!(store.staged_restore_runs() <= 31);
        store
            .finish_restore_runs(Checkpoint::new(runs.len() as i64, None))
            .unwrap();
    }
    let (_env, store) = open(&config);
    let got: BTreeMap<Key, Value> = store
        .range(Bound::Unbounded, Bound::Unbounded)
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect();
    prop_assert_eq!(got, want);
    prop_assert_eq!(
        store.checkpoint().unwrap(),
        Some(Checkpoint::new(runs.len() as i64, None))
    );
    Ok(())
}

/// Keys from a wider alphabet than [`key`], some longer than 8 bytes.
fn wide_key() -> impl Strategy<Value = Key> {
    prop_oneof![
        prop::collection::vec(prop::sample::select(vec![0x00_u8, b'a', b'b', 0xff]), 1..5),
        prop::collection::vec(prop::sample::select(vec![0x00_u8, b'a', 0xff]), 7..11),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn lmdb_store_matches_a_btreemap_model(
        bulk in prop::collection::vec(bulk_op(), 0..12),
        ops in prop::collection::vec(op(), 1..60),
    ) {
        // Bulk restores need an empty store: mostly at the start.
        check(bulk.into_iter().chain(ops).collect())?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn bulk_restore_matches_replaying_the_runs(
        runs in prop::collection::vec(
            prop::collection::vec((wide_key(), prop::option::weighted(0.7, value())), 0..24),
            0..40,
        ),
        txn_bytes in 1_usize..400,
    ) {
        check_bulk(runs, txn_bytes)?;
    }
}
