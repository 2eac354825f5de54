//! In-memory batch key-value store for kstreams: an ordered map (`BTreeMap`) per
//! (store, partition).
//!
//! Writes since the last commit sit in a [`WriteBuffer`] over the committed map, so
//! [`KvBackend::rollback`] can discard a failed batch's writes exactly as the LMDB store does.
//!
//! # Restore
//!
//! Nothing survives the store: [`MemoryStoreFactory::open`] returns a new, empty store every
//! time, without a checkpoint, so a logged memory store **restores fully from its changelog on
//! every assignment** (from the changelog's beginning, as Kafka Streams' in-memory stores do).
//! [`KvBackend::restore_batch`] applies a changelog batch to the committed map; the store's
//! checkpoint is then the one that batch carried.
//!
//! While a store stays open it keeps its data **and its checkpoint** in memory, like a durable
//! store: a standby task keeps its memory stores open as it follows their changelogs, and when
//! it is promoted to an active task the engine hands the same open stores to the task, whose
//! restore then reads only the changelog's tail after that checkpoint.
//!
//! A bulk restore ([`KvBackend::restore_run`]) applies its runs in order to a staging map that
//! reads do not see (puts insert, deletes remove: the store starts empty, so that is the merge);
//! [`KvBackend::finish_restore_runs`] makes the staging map the store's state, with its
//! checkpoint, in one step.

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;
use kstreams_store_api::{
    Checkpoint, KeyValue, KvBackend, StoreError, StoreFactory, WriteBatch, WriteBuffer, WriteOp,
    key_order, layers,
};

/// An ordered in-memory store for one (store, partition).
#[derive(Debug, Default)]
pub struct MemoryStore {
    name: String,
    committed: BTreeMap<Bytes, Bytes>,
    pending: WriteBuffer,
    /// The writes of a commit under way ([`KvBackend::freeze`]): what the next commit applies.
    frozen: Option<WriteBuffer>,
    checkpoint: Option<Checkpoint>,
    /// The restore runs staged so far, applied in order (invisible to reads).
    staged: BTreeMap<Bytes, Bytes>,
}

impl MemoryStore {
    /// An empty store called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }

    /// Number of committed entries (pending writes not counted).
    pub fn committed_len(&self) -> usize {
        self.committed.len()
    }

    /// The committed entries in key order (pending and frozen writes not seen).
    pub fn committed_entries(&self) -> impl Iterator<Item = (&Bytes, &Bytes)> {
        self.committed.iter()
    }

    /// Refuses a bulk restore step unless the store is empty, without checkpoint and without
    /// uncommitted writes.
    fn check_bulk_restore(&self) -> Result<(), StoreError> {
        layers::refuse_if_uncommitted(&self.pending, self.frozen.as_ref(), &self.name)?;
        if !self.committed.is_empty() || self.checkpoint.is_some() {
            return Err(StoreError::NotEmpty {
                store: self.name.clone(),
                has_data: !self.committed.is_empty(),
                checkpoint: self.checkpoint,
            });
        }
        Ok(())
    }
}

impl KvBackend for MemoryStore {
    fn name(&self) -> &str {
        &self.name
    }

    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StoreError> {
        Ok(
            match layers::lookup(&self.pending, self.frozen.as_ref(), key) {
                Some(pending) => pending.cloned(),
                None => self.committed.get(key).cloned(),
            },
        )
    }

    fn get_batch(&self, keys: &[&[u8]]) -> Result<Vec<Option<Bytes>>, StoreError> {
        keys.iter().map(|k| self.get(k)).collect()
    }

    fn write_batch(&mut self, batch: WriteBatch) -> Result<(), StoreError> {
        self.pending.apply(batch);
        Ok(())
    }

    fn range(&self, from: Bound<&[u8]>, to: Bound<&[u8]>) -> Result<Vec<KeyValue>, StoreError> {
        if kstreams_store_api::is_empty_range(from, to) {
            return Ok(Vec::new());
        }
        let committed = self
            .committed
            .range::<[u8], _>((from, to))
            .map(|(k, v)| (k.clone(), v.clone()));
        Ok(layers::merge_range(
            &self.pending,
            self.frozen.as_ref(),
            committed,
            from,
            to,
        ))
    }

    fn commit(&mut self, checkpoint: Option<Checkpoint>) -> Result<(), StoreError> {
        let writes = match self.frozen.take() {
            Some(mut frozen) => frozen.drain_sorted(),
            None => self.pending.drain_sorted(),
        };
        apply_sorted(&mut self.committed, writes);
        if checkpoint.is_some() {
            self.checkpoint = checkpoint;
        }
        Ok(())
    }

    fn rollback(&mut self) {
        self.pending.clear();
        self.frozen = None;
    }

    fn freeze(&mut self) {
        layers::freeze(&mut self.pending, &mut self.frozen);
    }

    fn set_savepoint(&mut self) {
        self.pending.set_savepoint();
    }

    fn rollback_to_savepoint(&mut self) {
        self.pending.rollback_to_savepoint();
    }

    fn release_savepoint(&mut self) {
        self.pending.release_savepoint();
    }

    fn checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        Ok(self.checkpoint)
    }

    fn uncommitted_len(&self) -> usize {
        layers::uncommitted_len(&self.pending, self.frozen.as_ref())
    }

    fn pending_writes(&self) -> Vec<WriteOp> {
        self.pending.to_write_ops()
    }

    fn restore_batch(
        &mut self,
        batch: WriteBatch,
        checkpoint: Checkpoint,
    ) -> Result<(), StoreError> {
        layers::refuse_if_uncommitted(&self.pending, self.frozen.as_ref(), &self.name)?;
        for op in batch.into_ops() {
            match op.value {
                Some(value) => {
                    self.committed.insert(op.key, value);
                }
                None => {
                    self.committed.remove(&op.key);
                }
            }
        }
        self.checkpoint = Some(checkpoint);
        Ok(())
    }

    fn wipe(&mut self) -> Result<(), StoreError> {
        self.committed.clear();
        self.checkpoint = None;
        self.pending.clear();
        self.pending.release_savepoint();
        self.frozen = None;
        self.staged.clear();
        Ok(())
    }

    fn restore_run(&mut self, batch: WriteBatch) -> Result<(), StoreError> {
        self.check_bulk_restore()?;
        for op in batch.into_ops() {
            match op.value {
                Some(value) => {
                    self.staged.insert(op.key, value);
                }
                None => {
                    self.staged.remove(&op.key);
                }
            }
        }
        Ok(())
    }

    fn finish_restore_runs(&mut self, checkpoint: Checkpoint) -> Result<(), StoreError> {
        self.check_bulk_restore()?;
        self.committed = std::mem::take(&mut self.staged);
        self.checkpoint = Some(checkpoint);
        Ok(())
    }

    fn discard_restore_runs(&mut self) {
        self.staged.clear();
    }
}

/// A commit whose writes number at least this fraction of the committed entries rebuilds the
/// map in one merge instead of inserting key by key.
const REBUILD_FRACTION: usize = 4;

/// Applies `writes` (distinct keys in key order, `None` a delete) to `committed`.
///
/// Few writes against a big map are inserted (or removed) one by one, in key order, so
/// consecutive keys find the B-tree's nodes they share in cache. Many writes (at least
/// 1/[`REBUILD_FRACTION`] of the map) are merged with the map's entries into a new map built
/// from the sorted sequence in one pass, without a descent per key.
fn apply_sorted(committed: &mut BTreeMap<Bytes, Bytes>, writes: Vec<(Bytes, Option<Bytes>)>) {
    debug_assert!(
        writes.is_sorted_by(|a, b| key_order(&a.0, &b.0).is_lt()),
        "writes must be distinct keys in key order"
    );
    if writes.len() * REBUILD_FRACTION < committed.len() {
        for (key, value) in writes {
            match value {
                Some(v) => {
                    committed.insert(key, v);
                }
                None => {
                    committed.remove(&key);
                }
            }
        }
        return;
    }
    let mut old = std::mem::take(committed).into_iter().peekable();
    let mut merged = Vec::with_capacity(old.len() + writes.len());
    for (key, value) in writes {
        while let Some(entry) = old.next_if(|(k, _)| key_order(k, &key).is_lt()) {
            merged.push(entry);
        }
        // The write replaces (or deletes) the committed entry of its key.
        old.next_if(|(k, _)| *k == key);
        if let Some(value) = value {
            merged.push((key, value));
        }
    }
    merged.extend(old);
    // Sorted input: `BTreeMap` builds it bottom-up in one pass.
    *committed = merged.into_iter().collect();
}

/// Opens a fresh, empty [`MemoryStore`] (no data, no checkpoint) for every (store, partition),
/// on every call: a memory store restores fully from its changelog on each assignment, unless
/// the engine hands an open one over (a promoted standby).
#[derive(Debug, Default, Clone, Copy)]
pub struct MemoryStoreFactory;

impl StoreFactory for MemoryStoreFactory {
    fn open(&self, store: &str, _partition: i32) -> Result<Box<dyn KvBackend>, StoreError> {
        Ok(Box::new(MemoryStore::new(store)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn reads_see_uncommitted_writes_and_rollback_discards_them() {
        let mut store = MemoryStore::new("s");
        let mut batch = WriteBatch::new();
        batch.put("k1", "v1");
        store.write_batch(batch).unwrap();
        store.commit(None).unwrap();

        let mut batch = WriteBatch::new();
        batch.put("k1", "v2");
        batch.put("k2", "x");
        store.write_batch(batch).unwrap();
        assert_eq!(store.get(b"k1").unwrap(), Some(b("v2")));
        assert_eq!(store.uncommitted_len(), 2);

        store.rollback();
        assert_eq!(store.get(b"k1").unwrap(), Some(b("v1")));
        assert_eq!(store.get(b"k2").unwrap(), None);
        assert_eq!(store.uncommitted_len(), 0);
    }

    #[test]
    fn commit_applies_deletes_and_keeps_checkpoint() {
        let mut store = MemoryStore::new("s");
        let mut batch = WriteBatch::new();
        batch.put("a", "1");
        batch.put("b", "2");
        store.write_batch(batch).unwrap();
        store.commit(Some(Checkpoint::new(7, None))).unwrap();
        let mut batch = WriteBatch::new();
        batch.delete("a");
        store.write_batch(batch).unwrap();
        store.commit(None).unwrap();
        assert_eq!(store.committed_len(), 1);
        assert_eq!(
            store.range(Bound::Unbounded, Bound::Unbounded).unwrap(),
            vec![(b("b"), b("2"))]
        );
        assert_eq!(store.checkpoint().unwrap(), Some(Checkpoint::new(7, None)));
    }

    #[test]
    fn savepoint_undoes_only_the_writes_after_it() {
        let mut store = MemoryStore::new("s");
        let mut batch = WriteBatch::new();
        batch.put("a", "1");
        store.write_batch(batch).unwrap();
        store.set_savepoint();
        let mut batch = WriteBatch::new();
        batch.put("a", "2");
        batch.put("b", "2");
        store.write_batch(batch).unwrap();
        store.rollback_to_savepoint();
        store.release_savepoint();
        assert_eq!(store.get(b"a").unwrap(), Some(b("1")));
        assert_eq!(store.get(b"b").unwrap(), None);
        store.commit(None).unwrap();
        assert_eq!(store.committed_len(), 1);
    }

    #[test]
    fn inverted_or_empty_ranges_are_empty_not_a_panic() {
        let mut store = MemoryStore::new("s");
        let mut batch = WriteBatch::new();
        batch.put("a", "1");
        batch.put("b", "2");
        store.write_batch(batch).unwrap();
        store.commit(None).unwrap();
        let mut batch = WriteBatch::new();
        batch.put("c", "3");
        store.write_batch(batch).unwrap();
        assert!(
            store
                .range(Bound::Included(b"c"), Bound::Included(b"a"))
                .unwrap()
                .is_empty()
        );
        assert!(
            store
                .range(Bound::Excluded(b"b"), Bound::Excluded(b"b"))
                .unwrap()
                .is_empty()
        );
        assert!(
            store
                .range(Bound::Included(b"b"), Bound::Excluded(b"b"))
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            store
                .range(Bound::Included(b"b"), Bound::Included(b"b"))
                .unwrap()
                .len(),
            1
        );
    }

    fn op(k: &str, v: Option<&str>) -> WriteOp {
        WriteOp {
            key: b(k),
            value: v.map(b),
        }
    }

    #[test]
    fn pending_writes_are_the_latest_write_per_key_in_key_order() {
        let mut store = MemoryStore::new("s");
        let mut batch = WriteBatch::new();
        batch.put("z", "1");
        batch.put("a", "1");
        store.write_batch(batch).unwrap();
        store.commit(None).unwrap();
        assert!(store.pending_writes().is_empty());
        let mut batch = WriteBatch::new();
        batch.put("m", "1");
        batch.delete("z");
        batch.put("m", "2");
        batch.delete("never");
        store.write_batch(batch).unwrap();
        assert_eq!(
            store.pending_writes(),
            vec![op("m", Some("2")), op("never", None), op("z", None)]
        );
        store.rollback();
        assert!(store.pending_writes().is_empty());
    }

    #[test]
    fn restore_batch_applies_in_order_and_sets_the_checkpoint() {
        let mut store = MemoryStore::new("s");
        let mut batch = WriteBatch::new();
        batch.put("old", "x");
        batch.put("kept", "k");
        store.write_batch(batch).unwrap();
        store.commit(None).unwrap();

        let mut batch = WriteBatch::new();
        batch.put("b", "1");
        batch.put("a", "1");
        batch.put("b", "2");
        batch.delete("old");
        batch.delete("a");
        batch.put("a", "3");
        batch.delete("never");
        let id = [7_u8; 16];
        store
            .restore_batch(batch, Checkpoint::new(40, Some(id)))
            .unwrap();
        assert_eq!(
            store.range(Bound::Unbounded, Bound::Unbounded).unwrap(),
            vec![(b("a"), b("3")), (b("b"), b("2")), (b("kept"), b("k"))]
        );
        assert_eq!(store.committed_len(), 3);
        assert_eq!(store.uncommitted_len(), 0);
        assert_eq!(
            store.checkpoint().unwrap(),
            Some(Checkpoint::new(40, Some(id)))
        );
        // An empty batch moves the checkpoint alone.
        store
            .restore_batch(WriteBatch::new(), Checkpoint::new(41, None))
            .unwrap();
        assert_eq!(store.checkpoint().unwrap(), Some(Checkpoint::new(41, None)));
        assert_eq!(store.committed_len(), 3);
    }

    #[test]
    fn restore_batch_is_refused_with_uncommitted_writes() {
        let mut store = MemoryStore::new("s");
        let mut batch = WriteBatch::new();
        batch.put("p", "pending");
        store.write_batch(batch).unwrap();
        let mut batch = WriteBatch::new();
        batch.put("r", "restored");
        let err = store
            .restore_batch(batch.clone(), Checkpoint::new(1, None))
            .unwrap_err();
        assert!(
            matches!(err, StoreError::UncommittedWrites { count: 1, .. }),
            "{err:?}"
        );
        assert_eq!(store.get(b"r").unwrap(), None);
        assert_eq!(store.checkpoint().unwrap(), None);
        assert_eq!(store.uncommitted_len(), 1);
        store.rollback();
        store
            .restore_batch(batch, Checkpoint::new(1, None))
            .unwrap();
        assert_eq!(store.get(b"r").unwrap(), Some(b("restored")));
    }

    #[test]
    fn wipe_drops_data_checkpoint_pending_writes_and_savepoint() {
        let mut store = MemoryStore::new("s");
        let mut batch = WriteBatch::new();
        batch.put("a", "1");
        store.write_batch(batch).unwrap();
        store.commit(Some(Checkpoint::new(5, None))).unwrap();
        store.set_savepoint();
        let mut batch = WriteBatch::new();
        batch.put("b", "pending");
        store.write_batch(batch).unwrap();
        store.wipe().unwrap();
        assert_eq!(store.committed_len(), 0);
        assert_eq!(store.uncommitted_len(), 0);
        assert_eq!(store.checkpoint().unwrap(), None);
        assert!(
            store
                .range(Bound::Unbounded, Bound::Unbounded)
                .unwrap()
                .is_empty()
        );
        // The savepoint is gone: a rollback to it after new writes undoes nothing.
        let mut batch = WriteBatch::new();
        batch.put("c", "new");
        store.write_batch(batch).unwrap();
        store.rollback_to_savepoint();
        assert_eq!(store.get(b"c").unwrap(), Some(b("new")));
    }

    #[test]
    fn the_factory_opens_an_empty_store_every_time() {
        let factory = MemoryStoreFactory;
        let mut first = factory.open("s", 0).unwrap();
        let mut batch = WriteBatch::new();
        batch.put("a", "1");
        first
            .restore_batch(batch, Checkpoint::new(9, None))
            .unwrap();
        assert_eq!(first.checkpoint().unwrap(), Some(Checkpoint::new(9, None)));
        drop(first);
        // Reassigned: nothing of the earlier store, so the restore starts from the beginning.
        let again = factory.open("s", 0).unwrap();
        assert_eq!(again.checkpoint().unwrap(), None);
        assert_eq!(again.get(b"a").unwrap(), None);
        assert!(
            again
                .range(Bound::Unbounded, Bound::Unbounded)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn get_batch_answers_in_key_order_given() {
        let mut store = MemoryStore::new("s");
        let mut batch = WriteBatch::new();
        batch.put("a", "1");
        batch.put("c", "3");
        store.write_batch(batch).unwrap();
        let got = store.get_batch(&[b"c", b"b", b"a"]).unwrap();
        assert_eq!(got, vec![Some(b("3")), None, Some(b("1"))]);
    }

    #[test]
    fn a_commit_after_freeze_persists_exactly_the_frozen_writes() {
        let mut store = MemoryStore::new("s");
        let mut batch = WriteBatch::new();
        batch.put("a", "1");
        batch.put("d", "1");
        store.write_batch(batch).unwrap();
        store.commit(None).unwrap();
        let mut batch = WriteBatch::new();
        batch.put("a", "2");
        batch.put("b", "2");
        batch.delete("d");
        store.write_batch(batch).unwrap();
        store.freeze();
        assert!(
            store.pending_writes().is_empty(),
            "the frozen writes are not pending"
        );
        let mut batch = WriteBatch::new();
        batch.put("a", "3");
        batch.put("c", "3");
        store.write_batch(batch).unwrap();
        assert_eq!(store.get(b"a").unwrap(), Some(b("3")));
        assert_eq!(store.get(b"b").unwrap(), Some(b("2")));
        assert_eq!(store.get(b"d").unwrap(), None);
        assert_eq!(
            store.range(Bound::Unbounded, Bound::Unbounded).unwrap(),
            vec![(b("a"), b("3")), (b("b"), b("2")), (b("c"), b("3"))]
        );
        assert!(
            store
                .restore_batch(WriteBatch::new(), Checkpoint::new(1, None))
                .is_err()
        );
        store.commit(Some(Checkpoint::new(5, None))).unwrap();
        let committed: Vec<_> = store
            .committed_entries()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(committed, vec![(b("a"), b("2")), (b("b"), b("2"))]);
        assert_eq!(store.checkpoint().unwrap(), Some(Checkpoint::new(5, None)));
        let pending: Vec<_> = store
            .pending_writes()
            .into_iter()
            .map(|op| op.key)
            .collect();
        assert_eq!(pending, vec![b("a"), b("c")]);
        // The writes after the freeze are still uncommitted.
        store.rollback();
        assert_eq!(store.get(b"a").unwrap(), Some(b("2")));
        assert_eq!(store.get(b"c").unwrap(), None);
    }

    #[test]
    fn rollback_and_wipe_discard_the_frozen_writes_too() {
        let mut store = MemoryStore::new("s");
        let mut batch = WriteBatch::new();
        batch.put("a", "1");
        store.write_batch(batch).unwrap();
        store.freeze();
        let mut batch = WriteBatch::new();
        batch.put("b", "1");
        store.write_batch(batch).unwrap();
        assert_eq!(store.uncommitted_len(), 2);
        store.rollback();
        assert_eq!(store.uncommitted_len(), 0);
        assert_eq!(store.get(b"a").unwrap(), None);
        let mut batch = WriteBatch::new();
        batch.put("a", "1");
        store.write_batch(batch).unwrap();
        store.freeze();
        store.wipe().unwrap();
        assert_eq!(store.get(b"a").unwrap(), None);
        store.commit(None).unwrap();
        assert_eq!(store.committed_len(), 0);
    }

    /// Commits of few writes (inserted key by key) and of many (merged into a rebuilt map),
    /// with puts, overwrites and deletes of present and absent keys, against a model.
    #[test]
    fn commits_small_and_large_match_a_model() {
        let mut store = MemoryStore::new("s");
        let mut model = BTreeMap::new();
        let key = |i: usize| b(&format!("key-{:04}", (i * 7919) % 1000));
        for (round, writes) in [600, 3, 900, 10, 1000, 1].into_iter().enumerate() {
            let mut batch = WriteBatch::new();
            for i in 0..writes {
                let k = key(i + round * 31);
                if (i + round) % 5 == 0 {
                    batch.delete(k.clone());
                    model.remove(&k);
                } else {
                    let v = b(&format!("{round}-{i}"));
                    batch.put(k.clone(), v.clone());
                    model.insert(k, v);
                }
            }
            store.write_batch(batch).unwrap();
            store.commit(None).unwrap();
            assert_eq!(store.committed_len(), model.len(), "round {round}");
            let all: Vec<KeyValue> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            assert_eq!(
                store.range(Bound::Unbounded, Bound::Unbounded).unwrap(),
                all,
                "round {round}"
            );
        }
    }
}
