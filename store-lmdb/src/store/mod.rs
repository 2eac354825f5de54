//! [`LmdbStore`]: one (store, partition) as one LMDB database, with a write buffer on top.

mod bulk;

use std::fmt;
use std::ops::Bound;
use std::sync::RwLockReadGuard;

use bytes::Bytes;
use heed::{RoTxn, RwTxn, WithoutTls};
use kstreams_store_api::{
    Checkpoint, KeyValue, KvBackend, StoreError, WriteBatch, WriteBuffer, WriteOp, layers,
};
use tracing::{debug, trace, warn};

use crate::checkpoint::{self, EncodedCheckpoint};
use crate::env::{LmdbEnvironment, RawDb, Shared};
use crate::error::{self, LmdbError};
use crate::read::read_many;
use crate::runs::StagedRuns;
use crate::write::{WriteMode, sorted_unique, write_sorted};

/// The backend of one (store, partition): the LMDB database `"{store}.{partition}"` of an
/// [`LmdbEnvironment`], plus a [`WriteBuffer`] of the writes since the last commit.
///
/// * [`write_batch`](KvBackend::write_batch) only touches the buffer (atomic, infallible once
///   the keys are checked), and reads see it at once;
/// * [`get`](KvBackend::get), [`get_batch`](KvBackend::get_batch) (one read transaction for all
///   keys; when they are many for the database's size, sorted and read in one walk of the
///   database, each leaf page once) and [`range`](KvBackend::range) read the buffer, then LMDB;
/// * [`commit`](KvBackend::commit) writes every pending entry and the checkpoint in **one**
///   LMDB write transaction, growing the map and retrying on `MDB_MAP_FULL`; on any failure
///   nothing is durable and the buffer is kept for a retry;
/// * [`rollback`](KvBackend::rollback) clears the buffer (and the frozen one);
/// * [`freeze`](KvBackend::freeze) makes the buffer a frozen layer that the next `commit`
///   writes (alone), a new buffer taking later writes; reads see the buffer, the frozen layer,
///   then LMDB;
/// * [`pending_writes`](KvBackend::pending_writes) lists the buffer (what the changelog must
///   carry at the next commit);
/// * [`restore_batch`](KvBackend::restore_batch) sorts and deduplicates a changelog batch and
///   writes it with its checkpoint in **one** write transaction (`MDB_APPEND` when every key
///   sorts after the database's last key), growing the map like a commit; refused while the
///   buffer holds writes;
/// * [`wipe`](KvBackend::wipe) empties the database, deletes its checkpoint and drops the staged
///   restore runs in one write transaction, then clears the buffer and the savepoint;
/// * [`restore_run`](KvBackend::restore_run) stages a changelog batch of an empty store as a
///   sorted run in a temporary database (`"{store}.{partition}/run/{id}"`, written with
///   `MDB_APPEND` in one write transaction), merging the newest 16 runs into one bigger run
///   first when they share a size level, so a store stages at most 16 runs per level (with
///   8 MiB runs: 16 up to 128 MiB of changelog, 31 up to 2 GiB, 46 up to 32 GiB, one more while
///   runs merge; each counts against [`LmdbConfig::max_dbs`](crate::LmdbConfig::max_dbs), and a
///   run that finds no free database slot fails with [`StoreError::Config`]);
/// * [`finish_restore_runs`](KvBackend::finish_restore_runs) merges the runs (a heap of one entry
///   per run over read cursors) into the store's database with `MDB_APPEND`, in write
///   transactions of at most [`LmdbConfig::bulk_restore_txn_bytes`](crate::LmdbConfig) of keys
///   and values; the last one writes the checkpoint and drops the runs. An error in between
///   leaves part of the data without checkpoint (a retry resumes); so does a crash, and the
///   store is then restored from the changelog's beginning after a [`wipe`](KvBackend::wipe);
/// * [`discard_restore_runs`](KvBackend::discard_restore_runs) (and dropping the store) drops the
///   staged runs; opening a store drops the run databases an earlier process left behind.
///
/// No method leaves a transaction open when it returns, so a store can move between threads
/// (it is `Send`) and LMDB write transactions never do.
///
/// Keys must be 1 to [`LmdbEnvironment::max_key_size`] bytes (511 by default): LMDB cannot store
/// others, so [`write_batch`](KvBackend::write_batch) rejects a batch holding one (whole, with
/// [`LmdbError::InvalidKey`] as source), and reads treat them as absent.
pub struct LmdbStore {
    env: LmdbEnvironment,
    name: String,
    partition: i32,
    db_name: String,
    db: RawDb,
    pending: WriteBuffer,
    /// The writes of a commit under way ([`KvBackend::freeze`]): what the next commit writes.
    frozen: Option<WriteBuffer>,
    /// Restore runs staged by `restore_run`.
    runs: StagedRuns,
}

/// A read transaction with the environment's transaction-gate guard. Fields drop in order: the
/// transaction ends before the guard is released.
struct Reader<'a> {
    txn: RoTxn<'a, WithoutTls>,
    _guard: RwLockReadGuard<'a, ()>,
}

impl Shared {
    fn reader(&self, store: &str) -> Result<Reader<'_>, StoreError> {
        let guard = self.txn_guard();
        let txn = self.env.read_txn().map_err(|e| error::backend(store, e))?;
        Ok(Reader { txn, _guard: guard })
    }
}

impl LmdbStore {
    pub(crate) fn new(
        env: LmdbEnvironment,
        name: &str,
        partition: i32,
        db_name: String,
        db: RawDb,
    ) -> Self {
        Self {
            env,
            name: name.to_owned(),
            partition,
            db_name,
            db,
            pending: WriteBuffer::new(),
            frozen: None,
            runs: StagedRuns::default(),
        }
    }

    /// The partition this store holds.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// The LMDB database name, `"{store}.{partition}"`; also the store's key in the
    /// checkpoints database.
    pub fn db_name(&self) -> &str {
        &self.db_name
    }

    /// The environment the store lives in.
    pub fn environment(&self) -> &LmdbEnvironment {
        &self.env
    }

    /// Number of restore runs staged by [`restore_run`](KvBackend::restore_run) and not yet
    /// merged or discarded (each is an LMDB database until then).
    pub fn staged_restore_runs(&self) -> usize {
        self.runs.runs().len()
    }

    /// Number of committed entries (pending writes not counted).
    pub fn committed_len(&self) -> Result<u64, StoreError> {
        let reader = self.env.shared.reader(&self.name)?;
        self.db
            .len(&reader.txn)
            .map_err(|e| error::backend(&self.name, e))
    }

    fn shared(&self) -> &Shared {
        &self.env.shared
    }

    /// The layer a commit writes: the frozen one when there is one, else the pending one.
    fn committing(&self) -> &WriteBuffer {
        self.frozen.as_ref().unwrap_or(&self.pending)
    }

    /// Writes the committing layer's entries (see [`write_sorted`]) and `checkpoint` into
    /// `wtxn`.
    fn write_pending(
        &self,
        wtxn: &mut RwTxn<'_>,
        checkpoint: Option<Checkpoint>,
    ) -> heed::Result<WriteMode> {
        let entries = self
            .committing()
            .iter()
            .map(|(key, value)| (key.as_ref(), value.map(|v| v.as_ref())));
        let mode = write_sorted(&self.db, wtxn, entries)?;
        if let Some(checkpoint) = checkpoint {
            self.put_checkpoint(wtxn, &checkpoint)?;
        }
        Ok(mode)
    }

    /// Stores `checkpoint` as this store's checkpoint within `wtxn`.
    fn put_checkpoint(&self, wtxn: &mut RwTxn<'_>, checkpoint: &Checkpoint) -> heed::Result<()> {
        self.shared().checkpoints.put(
            wtxn,
            self.db_name.as_bytes(),
            EncodedCheckpoint::new(checkpoint).as_bytes(),
        )
    }

    /// Rejects `ops` whole (with [`LmdbError::InvalidKey`]) if one of its keys cannot be stored.
    fn check_keys(&self, ops: &[WriteOp]) -> Result<(), StoreError> {
        let shared = self.shared();
        match ops.iter().find(|op| !shared.key_is_valid(&op.key)) {
            None => Ok(()),
            Some(bad) => Err(error::lmdb(
                &self.name,
                LmdbError::InvalidKey {
                    len: bad.key.len(),
                    max: shared.max_key_size,
                },
            )),
        }
    }
}

impl fmt::Debug for LmdbStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LmdbStore")
            .field("name", &self.name)
            .field("partition", &self.partition)
            .field("path", &self.env.path())
            .field("uncommitted", &self.uncommitted_len())
            .finish_non_exhaustive()
    }
}

impl Drop for LmdbStore {
    fn drop(&mut self) {
        // Best effort: what cannot be dropped now, the next open of the store drops.
        self.discard_runs();
        if self.uncommitted_len() > 0 {
            trace!(
                store = %self.name,
                partition = self.partition,
                uncommitted = self.uncommitted_len(),
                "dropping LMDB store with uncommitted writes"
            );
        }
        self.env.shared.release(&self.db_name);
    }
}

impl KvBackend for LmdbStore {
    fn name(&self) -> &str {
        &self.name
    }

    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StoreError> {
        if let Some(pending) = layers::lookup(&self.pending, self.frozen.as_ref(), key) {
            return Ok(pending.cloned());
        }
        if !self.shared().key_is_valid(key) {
            return Ok(None);
        }
        let reader = self.shared().reader(&self.name)?;
        let value = self
            .db
            .get(&reader.txn, key)
            .map_err(|e| error::backend(&self.name, e))?;
        Ok(value.map(Bytes::copy_from_slice))
    }

    fn get_batch(&self, keys: &[&[u8]]) -> Result<Vec<Option<Bytes>>, StoreError> {
        let shared = self.shared();
        let mut out = vec![None; keys.len()];
        // The keys the buffer does not answer, read from LMDB in one transaction.
        let mut wanted = Vec::new();
        for (i, &key) in keys.iter().enumerate() {
            match layers::lookup(&self.pending, self.frozen.as_ref(), key) {
                Some(pending) => out[i] = pending.cloned(),
                None if shared.key_is_valid(key) => wanted.push(i),
                None => {}
            }
        }
        if wanted.is_empty() {
            return Ok(out);
        }
        let reader = shared.reader(&self.name)?;
        read_many(&self.db, &reader.txn, keys, &mut wanted, &mut out)
            .map_err(|e| error::backend(&self.name, e))?;
        Ok(out)
    }

    fn write_batch(&mut self, batch: WriteBatch) -> Result<(), StoreError> {
        self.check_keys(batch.ops())?;
        self.pending.apply(batch);
        Ok(())
    }

    fn range(&self, from: Bound<&[u8]>, to: Bound<&[u8]>) -> Result<Vec<KeyValue>, StoreError> {
        if range_is_empty(from, to) {
            // Also keeps `WriteBuffer::merge_range` (a `BTreeMap::range`) from panicking.
            return Ok(Vec::new());
        }
        let mut committed = Vec::new();
        if let Some(bounds) = lmdb_bounds(from, to, self.shared().max_key_size) {
            let reader = self.shared().reader(&self.name)?;
            let iter = self
                .db
                .range(&reader.txn, &bounds)
                .map_err(|e| error::backend(&self.name, e))?;
            for entry in iter {
                let (key, value) = entry.map_err(|e| error::backend(&self.name, e))?;
                committed.push((Bytes::copy_from_slice(key), Bytes::copy_from_slice(value)));
            }
        }
        Ok(layers::merge_range(
            &self.pending,
            self.frozen.as_ref(),
            committed,
            from,
            to,
        ))
    }

    fn commit(&mut self, checkpoint: Option<Checkpoint>) -> Result<(), StoreError> {
        if self.committing().is_empty() && checkpoint.is_none() {
            self.frozen = None;
            return Ok(());
        }
        let this = &*self;
        let result = this.shared().write(&this.name, |env| {
            let mut wtxn = env.write_txn()?;
            let mode = this.write_pending(&mut wtxn, checkpoint)?;
            wtxn.commit()?;
            Ok(mode)
        });
        match result {
            Ok(mode) => {
                trace!(
                    store = %self.name,
                    partition = self.partition,
                    entries = self.committing().len(),
                    ?mode,
                    ?checkpoint,
                    "committed"
                );
                if self.frozen.take().is_none() {
                    self.pending.clear();
                }
                Ok(())
            }
            Err(e) => {
                warn!(
                    store = %self.name,
                    partition = self.partition,
                    entries = self.committing().len(),
                    error = %e,
                    "commit failed; pending writes kept for a retry"
                );
                Err(e)
            }
        }
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
        let reader = self.shared().reader(&self.name)?;
        let raw = self
            .shared()
            .checkpoints
            .get(&reader.txn, self.db_name.as_bytes())
            .map_err(|e| error::backend(&self.name, e))?;
        let Some(raw) = raw else {
            return Ok(None);
        };
        checkpoint::decode(raw)
            .map(Some)
            .map_err(|detail| StoreError::Corrupt {
                store: self.name.clone(),
                detail: format!("`{}`: {detail}", self.db_name),
            })
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
        self.check_keys(batch.ops())?;
        let records = batch.len();
        let ops = sorted_unique(batch.into_ops());
        let this = &*self;
        let mode = this.shared().write(&this.name, |env| {
            let mut wtxn = env.write_txn()?;
            let entries = ops.iter().map(|op| (op.key.as_ref(), op.value.as_deref()));
            let mode = write_sorted(&this.db, &mut wtxn, entries)?;
            this.put_checkpoint(&mut wtxn, &checkpoint)?;
            wtxn.commit()?;
            Ok(mode)
        })?;
        trace!(
            store = %self.name,
            partition = self.partition,
            records,
            keys = ops.len(),
            ?mode,
            ?checkpoint,
            "restored a batch"
        );
        Ok(())
    }

    fn wipe(&mut self) -> Result<(), StoreError> {
        let this = &*self;
        this.shared().write(&this.name, |env| {
            bulk::with_opener(env, |opener, wtxn| {
                this.db.clear(wtxn)?;
                this.shared()
                    .checkpoints
                    .delete(wtxn, this.db_name.as_bytes())?;
                this.drop_runs_in(opener, wtxn)
            })
        })?;
        debug!(
            store = %self.name,
            partition = self.partition,
            dropped_uncommitted = self.uncommitted_len(),
            dropped_runs = self.runs.runs().len(),
            "wiped the store's data and checkpoint"
        );
        self.pending.clear();
        self.pending.release_savepoint();
        self.frozen = None;
        self.runs.clear();
        Ok(())
    }

    fn restore_run(&mut self, batch: WriteBatch) -> Result<(), StoreError> {
        self.stage_run(batch)
    }

    fn finish_restore_runs(&mut self, checkpoint: Checkpoint) -> Result<(), StoreError> {
        self.finish_runs(checkpoint)
    }

    fn discard_restore_runs(&mut self) {
        self.discard_runs();
    }
}

/// A pair of range bounds over byte keys.
type ByteRange<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

/// Whether no key at all lies within `from..to` (bytewise order). `BTreeMap::range` panics on
/// such bounds.
fn range_is_empty(from: Bound<&[u8]>, to: Bound<&[u8]>) -> bool {
    match (from, to) {
        (Bound::Included(a), Bound::Included(b)) => a > b,
        (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) => {
            a >= b
        }
        _ => false,
    }
}

/// Bounds LMDB accepts that select the same *storable* keys (1..=`max` bytes) as `from..to`, or
/// `None` when no storable key is in range. LMDB rejects empty and over-long keys even as range
/// bounds.
///
/// For a bound `k` longer than `max`, with `p = k[..max]`: a storable key `s` is `>= k` (and
/// `> k`) exactly when `s > p`, and `<= k` (and `< k`) exactly when `s <= p`.
fn lmdb_bounds<'a>(
    from: Bound<&'a [u8]>,
    to: Bound<&'a [u8]>,
    max: usize,
) -> Option<ByteRange<'a>> {
    let from = match from {
        Bound::Included(k) | Bound::Excluded(k) if k.is_empty() => Bound::Unbounded,
        Bound::Included(k) | Bound::Excluded(k) if k.len() > max => Bound::Excluded(&k[..max]),
        other => other,
    };
    let to = match to {
        Bound::Included(k) | Bound::Excluded(k) if k.is_empty() => return None,
        Bound::Included(k) | Bound::Excluded(k) if k.len() > max => Bound::Included(&k[..max]),
        other => other,
    };
    if range_is_empty(from, to) {
        None
    } else {
        Some((from, to))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use Bound::{Excluded as Ex, Included as In, Unbounded as Un};

    #[test]
    fn empty_ranges_are_detected() {
        assert!(range_is_empty(In(b"b"), In(b"a")));
        assert!(!range_is_empty(In(b"a"), In(b"a")));
        assert!(range_is_empty(In(b"a"), Ex(b"a")));
        assert!(range_is_empty(Ex(b"a"), In(b"a")));
        assert!(range_is_empty(Ex(b"a"), Ex(b"a")));
        assert!(!range_is_empty(Ex(b"a"), Ex(b"b")));
        assert!(!range_is_empty(Un, Ex(b"")));
        assert!(!range_is_empty(In(b"z"), Un));
    }

    #[test]
    fn bounds_are_mapped_to_storable_keys() {
        let long = b"abcdef";
        assert_eq!(lmdb_bounds(In(b""), Un, 4), Some((Un, Un)));
        assert_eq!(lmdb_bounds(Ex(b""), Un, 4), Some((Un, Un)));
        assert_eq!(lmdb_bounds(Un, In(b""), 4), None);
        assert_eq!(lmdb_bounds(Un, Ex(b""), 4), None);
        assert_eq!(
            lmdb_bounds(In(long), In(long), 4),
            None,
            "no storable key equals a too-long key"
        );
        assert_eq!(lmdb_bounds(In(long), Un, 4), Some((Ex(&b"abcd"[..]), Un)));
        assert_eq!(lmdb_bounds(Un, Ex(long), 4), Some((Un, In(&b"abcd"[..]))));
        assert_eq!(
            lmdb_bounds(In(b"a"), Ex(b"b"), 4),
            Some((In(&b"a"[..]), Ex(&b"b"[..])))
        );
    }
}
