//! Memory stores whose committed state outlives their engine, as a state directory outlives
//! its process: a [`SimDisk`] holds the committed entries and the checkpoint of each
//! (store, partition), and every engine opened with a [`DiskStoreFactory`] over the same disk
//! (one "machine") finds the state the previous one committed.
//!
//! So the seeded runs cover what an instance with a persistent store does on restart or when
//! a task comes back: it restores only the changelog tail after its checkpoint, and a checkpoint
//! left by an earlier owner is trusted only while the changelog agrees. Uncommitted writes
//! live in the engine's [`MemoryStore`] only: a dropped engine loses them, as a killed process
//! loses an LMDB write transaction that never committed. Like a state directory, a disk must
//! serve one live engine at a time (the harness's job; real stores take a lock).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use kstreams_store_api::{
    Checkpoint, KeyValue, KvBackend, LocalCheckpoint, StoreError, StoreFactory, WriteBatch, WriteOp,
};
use kstreams_store_mem::MemoryStore;

/// The committed state of one (store, partition).
#[derive(Debug, Default, Clone)]
struct Saved {
    entries: BTreeMap<Bytes, Bytes>,
    checkpoint: Option<Checkpoint>,
}

/// One machine's durable state, shared by the engines that run on it one after the other
/// (or, [`shared_by_threads`](SimDisk::shared_by_threads), at once).
#[derive(Debug, Default, Clone)]
pub struct SimDisk {
    saved: Arc<Mutex<BTreeMap<(String, i32), Saved>>>,
    /// The (store, partition)s open now, when the disk refuses a second open.
    open: Option<OpenStores>,
}

/// The (store, partition)s open on a disk shared by threads.
type OpenStores = Arc<Mutex<BTreeSet<(String, i32)>>>;

impl SimDisk {
    /// An empty disk.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty disk shared by the engines of one process at once, as their stream threads
    /// share one LMDB environment: a (store, partition) open in one is
    /// [`StoreError::InUse`] for the others until its store is dropped.
    pub fn shared_by_threads() -> Self {
        Self {
            saved: Arc::default(),
            open: Some(Arc::default()),
        }
    }

    /// The committed checkpoint of `store` on `partition`, if any.
    pub fn checkpoint(&self, store: &str, partition: i32) -> Option<Checkpoint> {
        self.lock()
            .get(&(store.to_owned(), partition))
            .and_then(|s| s.checkpoint)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, i32), Saved>> {
        self.saved
            .lock()
            .expect("a store panicked while it saved its state: the test failed already")
    }

    fn load(&self, store: &str, partition: i32) -> Saved {
        self.lock()
            .get(&(store.to_owned(), partition))
            .cloned()
            .unwrap_or_default()
    }

    fn save(&self, store: &str, partition: i32, saved: Saved) {
        self.lock().insert((store.to_owned(), partition), saved);
    }
}

/// Opens memory stores backed by a [`SimDisk`].
#[derive(Debug, Clone)]
pub struct DiskStoreFactory {
    disk: SimDisk,
}

impl DiskStoreFactory {
    /// Stores on `disk`.
    pub fn new(disk: SimDisk) -> Self {
        Self { disk }
    }
}

impl StoreFactory for DiskStoreFactory {
    fn open(&self, store: &str, partition: i32) -> Result<Box<dyn KvBackend>, StoreError> {
        if let Some(open) = &self.disk.open {
            let mut open = open.lock().expect("no panic while the set is locked");
            if !open.insert((store.to_owned(), partition)) {
                return Err(StoreError::InUse {
                    store: store.to_owned(),
                    partition,
                });
            }
        }
        let saved = self.disk.load(store, partition);
        let mut inner = MemoryStore::new(store);
        let batch: WriteBatch = saved
            .entries
            .into_iter()
            .map(|(key, value)| WriteOp {
                key,
                value: Some(value),
            })
            .collect();
        match saved.checkpoint {
            Some(checkpoint) => inner.restore_batch(batch, checkpoint)?,
            None if !batch.is_empty() => {
                inner.write_batch(batch)?;
                inner.commit(None)?;
            }
            None => {}
        }
        Ok(Box::new(DiskStore {
            inner,
            disk: self.disk.clone(),
            partition,
        }))
    }

    /// Every (store, partition) on the disk with a committed checkpoint, open or not (as
    /// LMDB's listing, which reads the checkpoints table).
    fn local_checkpoints(&self) -> Result<Vec<LocalCheckpoint>, StoreError> {
        Ok(self
            .disk
            .lock()
            .iter()
            .filter_map(|((store, partition), saved)| {
                Some(LocalCheckpoint {
                    store: store.clone(),
                    partition: *partition,
                    checkpoint: saved.checkpoint?,
                })
            })
            .collect())
    }
}

/// A [`MemoryStore`] that writes its committed state through to its disk.
struct DiskStore {
    inner: MemoryStore,
    disk: SimDisk,
    partition: i32,
}

impl Drop for DiskStore {
    fn drop(&mut self) {
        if let Some(open) = &self.disk.open
            && let Ok(mut open) = open.lock()
        {
            open.remove(&(self.inner.name().to_owned(), self.partition));
        }
    }
}

impl DiskStore {
    /// Copies the committed state to the disk (pending writes, e.g. those after a freeze,
    /// stay out).
    fn save(&self) -> Result<(), StoreError> {
        let entries = self
            .inner
            .committed_entries()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let saved = Saved {
            entries,
            checkpoint: self.inner.checkpoint()?,
        };
        self.disk.save(self.inner.name(), self.partition, saved);
        Ok(())
    }
}

impl KvBackend for DiskStore {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StoreError> {
        self.inner.get(key)
    }

    fn get_batch(&self, keys: &[&[u8]]) -> Result<Vec<Option<Bytes>>, StoreError> {
        self.inner.get_batch(keys)
    }

    fn write_batch(&mut self, batch: WriteBatch) -> Result<(), StoreError> {
        self.inner.write_batch(batch)
    }

    fn range(&self, from: Bound<&[u8]>, to: Bound<&[u8]>) -> Result<Vec<KeyValue>, StoreError> {
        self.inner.range(from, to)
    }

    fn commit(&mut self, checkpoint: Option<Checkpoint>) -> Result<(), StoreError> {
        self.inner.commit(checkpoint)?;
        self.save()
    }

    fn rollback(&mut self) {
        self.inner.rollback();
    }

    fn freeze(&mut self) {
        self.inner.freeze();
    }

    fn set_savepoint(&mut self) {
        self.inner.set_savepoint();
    }

    fn rollback_to_savepoint(&mut self) {
        self.inner.rollback_to_savepoint();
    }

    fn release_savepoint(&mut self) {
        self.inner.release_savepoint();
    }

    fn checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        self.inner.checkpoint()
    }

    fn uncommitted_len(&self) -> usize {
        self.inner.uncommitted_len()
    }

    fn pending_writes(&self) -> Vec<WriteOp> {
        self.inner.pending_writes()
    }

    fn restore_batch(
        &mut self,
        batch: WriteBatch,
        checkpoint: Checkpoint,
    ) -> Result<(), StoreError> {
        self.inner.restore_batch(batch, checkpoint)?;
        self.save()
    }

    fn wipe(&mut self) -> Result<(), StoreError> {
        self.inner.wipe()?;
        self.save()
    }

    // Staged runs are not durable (a crash loses them, as LMDB's leftover runs are dropped
    // on open); the merge is, with its checkpoint.
    fn restore_run(&mut self, batch: WriteBatch) -> Result<(), StoreError> {
        self.inner.restore_run(batch)
    }

    fn finish_restore_runs(&mut self, checkpoint: Checkpoint) -> Result<(), StoreError> {
        self.inner.finish_restore_runs(checkpoint)?;
        self.save()
    }

    fn discard_restore_runs(&mut self) {
        self.inner.discard_restore_runs();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_state_and_checkpoint_outlive_the_store_and_pending_writes_do_not() {
        let disk = SimDisk::new();
        let factory = DiskStoreFactory::new(disk.clone());
        let mut store = factory.open("s", 1).expect("open");
        let mut batch = WriteBatch::default();
        batch.put(Bytes::from_static(b"a"), Bytes::from_static(b"1"));
        store.write_batch(batch).expect("write");
        store
            .commit(Some(Checkpoint::new(7, None)))
            .expect("commit");
        let mut batch = WriteBatch::default();
        batch.put(Bytes::from_static(b"b"), Bytes::from_static(b"2"));
        store.write_batch(batch).expect("write");
        drop(store);
        let again = factory.open("s", 1).expect("reopen");
        assert_eq!(
            again.get(b"a").expect("get"),
            Some(Bytes::from_static(b"1"))
        );
        assert_eq!(again.get(b"b").expect("get"), None, "never committed");
        assert_eq!(
            again.checkpoint().expect("checkpoint"),
            Some(Checkpoint::new(7, None))
        );
        assert_eq!(disk.checkpoint("s", 1), Some(Checkpoint::new(7, None)));
        assert!(
            factory
                .open("s", 0)
                .expect("other")
                .get(b"a")
                .expect("get")
                .is_none()
        );
    }

    #[test]
    fn a_disk_shared_by_threads_opens_a_store_partition_once_at_a_time() {
        let factory = DiskStoreFactory::new(SimDisk::shared_by_threads());
        let first = factory.open("s", 0).expect("open");
        assert!(matches!(
            factory.open("s", 0),
            Err(StoreError::InUse { partition: 0, .. })
        ));
        factory.open("s", 1).expect("another partition");
        drop(first);
        factory.open("s", 0).expect("free again");
        // A plain disk (one engine at a time, crashed ones kept) does not track.
        let plain = DiskStoreFactory::new(SimDisk::new());
        let _a = plain.open("s", 0).expect("open");
        plain.open("s", 0).expect("open again");
    }
}
