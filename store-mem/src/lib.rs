//! In-memory batch key-value store for kstreams: an ordered map (`BTreeMap`) per
//! (store, partition).
//!
//! Writes since the last commit sit in a [`WriteBuffer`] over the committed map, so
//! [`KvBackend::rollback`] can discard a failed batch's writes exactly as the LMDB store does.
//! Nothing survives the process: a memory store is rebuilt from its changelog on assignment.

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;
use kstreams_store_api::{
    Checkpoint, KeyValue, KvBackend, StoreError, StoreFactory, WriteBatch, WriteBuffer,
};

/// An ordered in-memory store for one (store, partition).
#[derive(Debug, Default)]
pub struct MemoryStore {
    name: String,
    committed: BTreeMap<Bytes, Bytes>,
    pending: WriteBuffer,
    checkpoint: Option<Checkpoint>,
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
}

impl KvBackend for MemoryStore {
    fn name(&self) -> &str {
        &self.name
    }

    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StoreError> {
        Ok(match self.pending.lookup(key) {
            Some(pending) => pending.cloned(),
            None => self.committed.get(key).cloned(),
        })
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
        Ok(self.pending.merge_range(committed, from, to))
    }

    fn commit(&mut self, checkpoint: Option<Checkpoint>) -> Result<(), StoreError> {
        for (key, value) in self.pending.take() {
            match value {
                Some(v) => {
                    self.committed.insert(key, v);
                }
                None => {
                    self.committed.remove(&key);
                }
            }
        }
        if checkpoint.is_some() {
            self.checkpoint = checkpoint;
        }
        Ok(())
    }

    fn rollback(&mut self) {
        self.pending.clear();
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
        self.pending.len()
    }
}

/// Opens a fresh, empty [`MemoryStore`] for every (store, partition).
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
        store
            .commit(Some(Checkpoint {
                changelog_offset: 7,
            }))
            .unwrap();
        let mut batch = WriteBatch::new();
        batch.delete("a");
        store.write_batch(batch).unwrap();
        store.commit(None).unwrap();
        assert_eq!(store.committed_len(), 1);
        assert_eq!(
            store.range(Bound::Unbounded, Bound::Unbounded).unwrap(),
            vec![(b("b"), b("2"))]
        );
        assert_eq!(
            store.checkpoint().unwrap(),
            Some(Checkpoint {
                changelog_offset: 7
            })
        );
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
}
