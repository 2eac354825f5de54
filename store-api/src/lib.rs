//! The byte-level contract between kstreams tasks and their key-value store backends.
//!
//! A backend stores opaque, byte-ordered keys and values for one (store, partition). Typed
//! access (serdes) lives in `kstreams-core`; this crate is what a backend implements:
//! `kstreams-store-mem` (ordered in-memory map) and `kstreams-store-lmdb` (LMDB via heed).
//!
//! # Write model: buffered until commit
//!
//! Writes are applied atomically per call ([`KvBackend::write_batch`]) and are visible to reads
//! at once, but they become durable only at [`KvBackend::commit`], which persists everything
//! written since the previous commit *together with* the caller's [`Checkpoint`] in one atomic
//! step. [`KvBackend::rollback`] discards everything written since the previous commit.
//!
//! This is what lets a task commit its state and its changelog/input position as one unit (so a
//! crash never leaves them disagreeing), and lets a failed batch be retried from its first
//! record without its partial writes leaking into the store. The pending writes are kept in a
//! [`WriteBuffer`], which backends share.
//!
//! A commit can also be *pipelined*: [`KvBackend::freeze`] turns the pending writes into a
//! read-only frozen layer that the next `commit` persists, while new writes go to a new
//! pending layer (see [`layers`]).
//!
//! # Changelog and restore
//!
//! A logged store sends its writes to a changelog topic at each commit:
//! [`KvBackend::pending_writes`] lists exactly what must leave (the latest write per key, in key
//! order, deletes as tombstones). When a task is assigned, its store is brought up to date from
//! the changelog before anything is processed: [`KvBackend::restore_batch`] writes one fetched
//! batch straight to durable state together with the [`Checkpoint`] after it, so an
//! interrupted restore resumes where it stopped. A [`Checkpoint`] carries the changelog offset
//! and, when known, the changelog topic's id (its incarnation); a checkpoint that disagrees with
//! the changelog is not trusted, and [`KvBackend::wipe`] clears the local state for a restore
//! from scratch.
//!
//! # Bulk restore of an empty store
//!
//! Restoring a large changelog batch by batch into a B-tree rewrites pages all over the tree
//! for every batch when the keys are scattered. A store that starts **empty** (no data, no
//! checkpoint: a new assignment, or after a wipe) can instead be restored as an external merge:
//! [`KvBackend::restore_run`] stages each fetched batch as a sorted, deduplicated *run* that
//! reads do not see, and [`KvBackend::finish_restore_runs`] merges all runs into the store (the
//! newest write of a key wins, deletes drop the key) together with the checkpoint after the
//! changelog's last record. Memory stays bounded by one batch (staging) or one merge chunk
//! (finishing), whatever the changelog's size. [`KvBackend::discard_restore_runs`] abandons a
//! bulk restore (a revoked task), and [`KvBackend::wipe`] does so too.
//!
//! The state is never half-restored *with* a checkpoint: until `finish_restore_runs` returns,
//! the store has no checkpoint. A backend may write the merged data in several steps (LMDB
//! does, to bound a transaction's size), so a crash during the finish can leave data **without
//! a checkpoint**. Such a store is restored from the changelog's beginning, and must be
//! [wiped](KvBackend::wipe) before a new bulk restore (which refuses a store with data,
//! [`StoreError::NotEmpty`]); `restore_batch` from the beginning is also correct over it.

mod buffer;
mod error;
pub mod layers;

use std::cmp::Ordering;
use std::ops::Bound;

use bytes::Bytes;

pub use buffer::WriteBuffer;
pub use error::StoreError;

/// One key-value pair read from a store.
pub type KeyValue = (Bytes, Bytes);

/// A position a store's durable state corresponds to, committed atomically with the state.
///
/// `changelog_offset` is the next offset of the store's changelog partition that is *not* yet
/// reflected in the store (Kafka Streams' `.checkpoint` file semantics). `topic_id` names the
/// changelog topic's *incarnation*: its Kafka topic id (a UUID) when known. A topic deleted and
/// created again under the same name gets a new id and starts its offsets over, so a checkpoint
/// is trusted only against a changelog with the same id; `None` (unknown, or written by an older
/// version that did not record it) leaves that check to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Checkpoint {
    /// Next changelog offset to restore from.
    pub changelog_offset: i64,
    /// The changelog topic's Kafka topic id when known (the topic incarnation the offset
    /// belongs to).
    pub topic_id: Option<[u8; 16]>,
}

impl Checkpoint {
    /// A checkpoint at `changelog_offset` of the changelog incarnation `topic_id`.
    pub const fn new(changelog_offset: i64, topic_id: Option<[u8; 16]>) -> Self {
        Self {
            changelog_offset,
            topic_id,
        }
    }
}

/// One write in a [`WriteBatch`]: a put (`value: Some`) or a delete (`value: None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOp {
    /// The key written.
    pub key: Bytes,
    /// The new value, or `None` to delete the key.
    pub value: Option<Bytes>,
}

/// An ordered list of puts and deletes applied atomically; a later write to a key wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    ops: Vec<WriteOp>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty batch with room for `n` operations.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            ops: Vec::with_capacity(n),
        }
    }

    /// Adds a put of `key` → `value`.
    pub fn put(&mut self, key: impl Into<Bytes>, value: impl Into<Bytes>) {
        self.ops.push(WriteOp {
            key: key.into(),
            value: Some(value.into()),
        });
    }

    /// Adds a delete of `key`.
    pub fn delete(&mut self, key: impl Into<Bytes>) {
        self.ops.push(WriteOp {
            key: key.into(),
            value: None,
        });
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the batch holds no operation.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The operations in the order they were added.
    pub fn ops(&self) -> &[WriteOp] {
        &self.ops
    }

    /// Consumes the batch into its operations.
    pub fn into_ops(self) -> Vec<WriteOp> {
        self.ops
    }
}

impl FromIterator<WriteOp> for WriteBatch {
    fn from_iter<I: IntoIterator<Item = WriteOp>>(iter: I) -> Self {
        Self {
            ops: iter.into_iter().collect(),
        }
    }
}

/// A byte-level key-value store for one (store, partition), with atomic batches and explicit
/// commit points. Keys are ordered bytewise (lexicographically, unsigned).
///
/// Implementations must be `Send` so a task can move between threads between calls; they
/// never hold a write transaction open across calls (LMDB write transactions must not migrate
/// between threads).
pub trait KvBackend: Send {
    /// The store's name (as registered in the topology).
    fn name(&self) -> &str;

    /// Reads one key, seeing uncommitted writes.
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StoreError>;

    /// Reads many keys in one pass (one read transaction where the backend has them); the result
    /// has one entry per key, in the same order.
    fn get_batch(&self, keys: &[&[u8]]) -> Result<Vec<Option<Bytes>>, StoreError>;

    /// Applies all operations atomically: either all of them become visible or none does.
    fn write_batch(&mut self, batch: WriteBatch) -> Result<(), StoreError>;

    /// All entries with keys in the given bounds, in key order, seeing uncommitted writes.
    fn range(&self, from: Bound<&[u8]>, to: Bound<&[u8]>) -> Result<Vec<KeyValue>, StoreError>;

    /// Makes every write since the previous commit durable, atomically with `checkpoint` (when
    /// given); with a frozen layer ([`KvBackend::freeze`]), exactly the frozen writes (the
    /// pending ones stay pending). After an error nothing of this commit is durable and the
    /// writes are kept, so the commit can be retried.
    fn commit(&mut self, checkpoint: Option<Checkpoint>) -> Result<(), StoreError>;

    /// Discards every write since the previous commit: the pending writes and the frozen
    /// ones ([`KvBackend::freeze`]).
    fn rollback(&mut self);

    /// Freezes the writes since the previous commit, so that a commit can be under way while
    /// the store takes new writes (a pipelined commit: the owner sends the frozen writes to
    /// the changelog, waits for their acknowledgement, and only then commits).
    ///
    /// Contract:
    /// - the pending writes become a read-only *frozen* layer and a new, empty pending layer
    ///   takes every later write; reads see the pending layer, then the frozen one, then the
    ///   durable state (nothing a read returns changes by freezing);
    /// - [`KvBackend::commit`] then persists **exactly the frozen layer** (with its
    ///   checkpoint) and drops it; the pending layer stays pending. Without a frozen layer,
    ///   `commit` persists the pending writes, as it always did;
    /// - [`KvBackend::pending_writes`] and the savepoint calls see only the pending layer; a
    ///   savepoint set before the freeze is released by it (freeze between batches);
    /// - freezing while a frozen layer exists applies the pending writes over it (the frozen
    ///   layer is every write up to the last freeze);
    /// - [`KvBackend::rollback`] and [`KvBackend::wipe`] discard both layers;
    ///   [`KvBackend::uncommitted_len`] counts both, and restores refuse while either holds
    ///   writes.
    ///
    /// Never fails: it moves buffers, nothing durable changes.
    fn freeze(&mut self);

    /// Marks the current state so that [`KvBackend::rollback_to_savepoint`] can undo every
    /// write after it (and only those). One savepoint at a time: a new one replaces the old.
    /// Tasks set one before a batch when a failed record must be skipped without undoing the
    /// batches before it.
    fn set_savepoint(&mut self);

    /// Undoes every write since the savepoint, which stays set; without one, does nothing.
    fn rollback_to_savepoint(&mut self);

    /// Drops the savepoint, keeping the writes made since it.
    fn release_savepoint(&mut self);

    /// The checkpoint stored by the last commit that carried one.
    fn checkpoint(&self) -> Result<Option<Checkpoint>, StoreError>;

    /// Number of distinct keys written since the previous commit (with a frozen layer, the
    /// keys of both layers: a key written in both counts twice).
    fn uncommitted_len(&self) -> usize;

    /// Every write since the previous commit (since the last [`KvBackend::freeze`], when a
    /// frozen layer exists), one per key (the latest), in key order, deletes as
    /// `value: None`: what the store's changelog must carry at the next commit. Cheap: the keys
    /// and values are reference-counted [`Bytes`] clones.
    fn pending_writes(&self) -> Vec<WriteOp>;

    /// Restores a batch read from the store's changelog: applies the operations in order (a
    /// later write to a key wins) directly to the durable state, together with `checkpoint`
    /// (normally the offset after the batch's last record), in one atomic step.
    ///
    /// Restore happens before a task processes anything, so a store with uncommitted writes
    /// refuses with [`StoreError::UncommittedWrites`] and changes nothing. On any error nothing
    /// of the batch is durable.
    fn restore_batch(
        &mut self,
        batch: WriteBatch,
        checkpoint: Checkpoint,
    ) -> Result<(), StoreError>;

    /// Deletes all data and the checkpoint of this (store, partition) durably, in one atomic
    /// step, and drops the pending writes, the savepoint and any staged restore runs (see
    /// [`KvBackend::discard_restore_runs`]). Used when the local state cannot be trusted (its
    /// checkpoint disagrees with the changelog, or an interrupted bulk restore left data without
    /// a checkpoint) and must be restored from scratch. On error nothing changed.
    fn wipe(&mut self) -> Result<(), StoreError>;

    /// Stages one batch read from the changelog for a bulk restore of an **empty** store (see
    /// the crate documentation): the operations in changelog order (a later write to a key
    /// wins, a delete is a tombstone for the key's earlier writes, in this batch and in runs
    /// staged before) become one sorted, deduplicated run. Runs are not visible to reads and
    /// carry no checkpoint; [`KvBackend::finish_restore_runs`] makes them the store's state.
    /// An empty batch stages nothing.
    ///
    /// Allowed only while the store has no data, no checkpoint and no uncommitted writes:
    /// otherwise [`StoreError::UncommittedWrites`] or [`StoreError::NotEmpty`], and nothing
    /// changed. On any other error the batch is not staged (the runs staged before stay).
    /// Meant to be called per fetched chunk of the changelog (a few MiB): a run's size bounds
    /// the memory staging it takes.
    fn restore_run(&mut self, batch: WriteBatch) -> Result<(), StoreError>;

    /// Merges every staged run into the store (for a key, the newest write wins; a key whose
    /// newest write is a delete is absent) and stores `checkpoint` (normally the changelog's
    /// end offset), then drops the runs. With no run staged, stores the checkpoint alone.
    ///
    /// Either the merged state and the checkpoint are there when it returns `Ok`, or there is
    /// no checkpoint. Backends that merge in several steps may leave part of the merged data
    /// without a checkpoint after an error (or a crash): calling `finish_restore_runs` again
    /// resumes the merge; otherwise [`KvBackend::wipe`] (which also drops the runs) before any
    /// other restore.
    ///
    /// Refuses like [`KvBackend::restore_run`] a store with uncommitted writes, a checkpoint,
    /// or data other than its own interrupted merge ([`StoreError::UncommittedWrites`],
    /// [`StoreError::NotEmpty`]); the runs stay staged.
    fn finish_restore_runs(&mut self, checkpoint: Checkpoint) -> Result<(), StoreError>;

    /// Drops every staged run, abandoning a bulk restore (e.g. its task was revoked); the
    /// store's data and checkpoint are untouched. Never fails: a backend that cannot drop
    /// durable runs now drops them at the next wipe, finish or reopen.
    fn discard_restore_runs(&mut self);
}

/// Bytewise order of two keys (the order of stores and of [`KvBackend::range`]): the same order
/// as `a.cmp(b)`, comparing 8 bytes at a time as big-endian integers instead of calling
/// `memcmp`, which costs more than the comparison itself for the short keys of a store (and
/// keys often share a long prefix, such as `key-000000…`).
#[inline]
pub fn key_order(a: &[u8], b: &[u8]) -> Ordering {
    let (mut a, mut b) = (a, b);
    while let (Some((ca, ra)), Some((cb, rb))) =
        (a.split_first_chunk::<8>(), b.split_first_chunk::<8>())
    {
        if ca != cb {
            return u64::from_be_bytes(*ca).cmp(&u64::from_be_bytes(*cb));
        }
        (a, b) = (ra, rb);
    }
    // Fewer than 8 bytes left in one of them.
    for (x, y) in a.iter().zip(b) {
        if x != y {
            return x.cmp(y);
        }
    }
    a.len().cmp(&b.len())
}

/// Whether no key can lie within `from..to` (an inverted range, or both ends excluding the
/// same key). `BTreeMap::range` panics on such bounds, so check before calling it.
pub fn is_empty_range(from: Bound<&[u8]>, to: Bound<&[u8]>) -> bool {
    match (from, to) {
        (Bound::Included(a), Bound::Included(b)) => a > b,
        (Bound::Included(a), Bound::Excluded(b))
        | (Bound::Excluded(a), Bound::Included(b))
        | (Bound::Excluded(a), Bound::Excluded(b)) => a >= b,
        _ => false,
    }
}

/// Opens the backend of one (store, partition); how a task gets its stores.
pub trait StoreFactory: Send + Sync {
    /// Opens (creating if needed) the backend for `store` on `partition`.
    fn open(&self, store: &str, partition: i32) -> Result<Box<dyn KvBackend>, StoreError>;

    /// The (store, partition)s this factory holds locally with a checkpoint, and their
    /// checkpoints: state a task left behind (e.g. before a restart) that
    /// [`open`](StoreFactory::open) would find again. The engine reports it to the group's
    /// state-aware assignor, as Kafka Streams reads the checkpoints of every task directory.
    ///
    /// Listing opens nothing for writing and takes no store away from an open elsewhere (a
    /// store open now is listed with its last committed checkpoint). The default lists
    /// nothing, right for factories whose state does not outlive their stores (memory).
    fn local_checkpoints(&self) -> Result<Vec<LocalCheckpoint>, StoreError> {
        Ok(Vec::new())
    }
}

/// A checkpoint a [`StoreFactory`] holds locally ([`StoreFactory::local_checkpoints`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalCheckpoint {
    /// The store's name.
    pub store: String,
    /// The store's partition.
    pub partition: i32,
    /// Its last committed checkpoint.
    pub checkpoint: Checkpoint,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_is_bytewise_order() {
        let mut keys: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"\x00".to_vec(),
            b"a".to_vec(),
            b"abcdefg".to_vec(),
            b"abcdefgh".to_vec(),
            b"abcdefgh\x00".to_vec(),
            b"abcdefgha".to_vec(),
            b"abcdefgi".to_vec(),
            b"abcdefh".to_vec(),
            b"key-000000001234".to_vec(),
            b"key-000000001235".to_vec(),
            b"key-0000000012345".to_vec(),
            b"key-00000000123".to_vec(),
            b"\xff\xff\xff\xff\xff\xff\xff\xff".to_vec(),
            b"\xff\xff\xff\xff\xff\xff\xff\xff\x00".to_vec(),
        ];
        // And pseudo-random keys of 0..24 bytes over a small alphabet (many shared prefixes).
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..300 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 24) as usize;
            keys.push(
                (0..len)
                    .map(|i| b"ab\xff"[((x >> (i * 2)) % 3) as usize])
                    .collect(),
            );
        }
        for a in &keys {
            for b in &keys {
                assert_eq!(key_order(a, b), a.cmp(b), "{a:?} vs {b:?}");
            }
        }
    }
}
