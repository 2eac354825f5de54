//! LMDB batch key-value store for kstreams, on [heed](https://docs.rs/heed).
//!
//! Implements the byte-level contract of [`kstreams_store_api`]: [`KvBackend`] for one
//! (store, partition) and [`StoreFactory`] to open them.
//!
//! # Design
//!
//! * **One environment per state directory.** [`LmdbEnvironment::open`] opens the LMDB
//!   environment described by an [`LmdbConfig`] (path, initial and maximum map size, maximum
//!   number of databases, [`SyncMode`]). The handle is a cheap clone; all stores opened from it
//!   share the one LMDB `Env`.
//! * **One LMDB database per (store, partition)**, named `"{store}.{partition}"`, so partitions
//!   of a store (and different stores) are independent: a task commits its own partition
//!   without touching others, and a revoked partition's data stays where it is for a later
//!   reassignment.
//! * **Checkpoints live next to the data.** A separate database (`__kstreams_checkpoints`) maps
//!   each store database name to its [`Checkpoint`]: the changelog offset as 8 big-endian bytes,
//!   followed by the 16 bytes of the changelog's topic id when it is known (24 bytes). An 8-byte
//!   value (written before topic ids were recorded) reads as a checkpoint without a topic id;
//!   any other length is [`StoreError::Corrupt`](kstreams_store_api::StoreError::Corrupt).
//!   [`KvBackend::commit`] writes a store's pending entries *and* its checkpoint in a single
//!   LMDB write transaction. A crash therefore never leaves state and checkpoint disagreeing:
//!   restore replays the changelog from exactly the checkpoint the state corresponds to.
//! * **Buffered writes.** [`KvBackend::write_batch`] applies a batch to an in-memory
//!   [`WriteBuffer`] (atomic, visible to reads immediately); only `commit` opens a write
//!   transaction, once for everything written since the previous commit. That makes a task's
//!   writes between commits share one transaction, makes [`KvBackend::rollback`] of a failed
//!   batch free, and means **no transaction ever outlives a method call**: stores are `Send`,
//!   and LMDB write transactions (bound to the thread that began them) never migrate between
//!   threads (heed issue #339).
//! * **Restore writes straight to LMDB.** [`KvBackend::restore_batch`] sorts a changelog batch
//!   by key, keeps the last write per key, and writes it with its checkpoint in one write
//!   transaction (one per fetched batch, not per record). When the database is empty or every
//!   key of the batch sorts after its last key, puts use `MDB_APPEND` (no search, leaf pages
//!   packed full): restoring a fresh store from a changelog of ordered keys is a sequential
//!   write. [`KvBackend::wipe`] deletes a store's data and checkpoint in one transaction, for a
//!   restore from scratch when the checkpoint cannot be trusted. `restore_batch` grows the map
//!   and fails like a commit (nothing of the batch durable), and refuses a store with
//!   uncommitted writes: restore comes before processing.
//! * **Bulk restore of an empty store** ([`KvBackend::restore_run`],
//!   [`KvBackend::finish_restore_runs`]): an external merge. Each fetched chunk of the changelog
//!   (~8 MiB) is sorted, deduplicated and written with `MDB_APPEND` into a run database of its
//!   own (`"{store}.{partition}/run/{id}"`, invisible to reads, one write transaction); 16 runs
//!   of one size level are merged into one run of the next level before more are staged, which
//!   bounds the run databases (they count against [`LmdbConfig::max_dbs`]: 16 up to 128 MiB of
//!   changelog, 31 up to 2 GiB, 46 up to 32 GiB, one more while runs merge). The finish merges
//!   all runs with a heap of one entry per run over read cursors (the newest run wins a key, a
//!   delete drops it) into the store with `MDB_APPEND`, in write transactions of
//!   [`LmdbConfig::bulk_restore_txn_bytes`] (32 MiB); the last one writes the checkpoint and
//!   drops the runs. Scattered keys thus cost two sequential writes instead of rewriting pages
//!   all over the tree per batch. Memory: one run's batch while staging, one merge
//!   transaction's dirty pages while finishing. A crash during the finish leaves data without
//!   a checkpoint (restored from the changelog's beginning after a wipe); opening a store drops
//!   the runs an earlier process left. The data file needs room for the runs and the merged
//!   store at once (about twice the restored data); the runs' pages are free again afterwards.
//! * **Reads** consult the buffer first, then LMDB; [`KvBackend::get_batch`] uses one read
//!   transaction for all its keys, [`KvBackend::range`] merges LMDB's range with the buffer.
//! * **The map grows on demand.** When a commit fails with `MDB_MAP_FULL`, the transaction is
//!   aborted, the map size doubles (up to [`LmdbConfig::max_map_size`], then the commit fails
//!   with [`LmdbError::MapFull`] as source and its writes stay pending) and the commit is
//!   retried. Growing requires that no transaction of the process is active: every transaction
//!   of this crate is taken under a shared lock which resizing takes exclusively.
//! * **Durability**: [`SyncMode::NoMetaSync`] by default (one flush per commit; an OS crash may
//!   lose the last commit but never breaks atomicity or consistency, and the changelog brings
//!   the state back from the checkpoint); [`SyncMode::Full`] and an explicit
//!   [`SyncMode::NoSync`] are available.
//! * **One instance per state directory.** [`LmdbEnvironment::open`] takes an exclusive
//!   advisory lock on `<path>/kstreams.lock` ([`LOCK_FILE_NAME`], `std::fs::File::try_lock`)
//!   and holds it until the environment (its last clone and store) is dropped. A second open of
//!   the directory, from this process or another, fails at once with
//!   [`LmdbError::DirectoryLocked`] ("another kstreams instance uses the state directory …")
//!   as the source of a [`StoreError::Backend`](kstreams_store_api::StoreError::Backend). The
//!   OS releases the lock when a process dies, so a crash leaves no stale lock.
//!
//! A state directory must not be on a network file system. Keys must be 1 to
//! [`LmdbEnvironment::max_key_size`] (511) bytes. A single commit (or restored batch) is bounded
//! by LMDB's dirty-page limit (`MDB_TXN_FULL`, about 512 MiB of changed pages with 4 KiB pages):
//! commit more often than that.
//!
//! # Example
//!
//! ```
//! use kstreams_store_api::{Checkpoint, KvBackend, StoreFactory, WriteBatch};
//! use kstreams_store_lmdb::{LmdbConfig, LmdbEnvironment};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let env = LmdbEnvironment::open(LmdbConfig::new(dir.path()))?;
//! let mut store = env.open("counts", 0)?;
//!
//! let mut batch = WriteBatch::new();
//! batch.put(&b"apple"[..], &b"3"[..]);
//! store.write_batch(batch)?;
//! assert_eq!(store.get(b"apple")?.as_deref(), Some(&b"3"[..]));
//!
//! store.commit(Some(Checkpoint::new(42, None)))?;
//! assert_eq!(store.checkpoint()?, Some(Checkpoint::new(42, None)));
//!
//! // A store restored from its changelog: one batch, written with its checkpoint.
//! let mut restored = env.open_store("counts", 1)?;
//! let mut batch = WriteBatch::new();
//! batch.put(&b"pear"[..], &b"1"[..]);
//! batch.put(&b"fig"[..], &b"2"[..]);
//! restored.restore_batch(batch, Checkpoint::new(2, Some([7; 16])))?;
//! assert_eq!(restored.get(b"fig")?.as_deref(), Some(&b"2"[..]));
//! assert_eq!(restored.checkpoint()?, Some(Checkpoint::new(2, Some([7; 16]))));
//!
//! // An empty store restored in bulk: runs staged per fetched chunk, merged at the end.
//! let mut bulk = env.open_store("counts", 2)?;
//! let mut run = WriteBatch::new();
//! run.put(&b"pear"[..], &b"1"[..]);
//! run.put(&b"fig"[..], &b"2"[..]);
//! bulk.restore_run(run)?;
//! let mut run = WriteBatch::new();
//! run.delete(&b"pear"[..]);
//! bulk.restore_run(run)?;
//! assert_eq!(bulk.get(b"fig")?, None); // not visible before the finish
//! bulk.finish_restore_runs(Checkpoint::new(3, Some([7; 16])))?;
//! assert_eq!(bulk.get(b"fig")?.as_deref(), Some(&b"2"[..]));
//! assert_eq!(bulk.get(b"pear")?, None);
//! # Ok(()) }
//! ```
//!
//! [`KvBackend`]: kstreams_store_api::KvBackend
//! [`KvBackend::write_batch`]: kstreams_store_api::KvBackend::write_batch
//! [`KvBackend::commit`]: kstreams_store_api::KvBackend::commit
//! [`KvBackend::rollback`]: kstreams_store_api::KvBackend::rollback
//! [`KvBackend::get_batch`]: kstreams_store_api::KvBackend::get_batch
//! [`KvBackend::range`]: kstreams_store_api::KvBackend::range
//! [`KvBackend::restore_batch`]: kstreams_store_api::KvBackend::restore_batch
//! [`KvBackend::wipe`]: kstreams_store_api::KvBackend::wipe
//! [`KvBackend::restore_run`]: kstreams_store_api::KvBackend::restore_run
//! [`KvBackend::finish_restore_runs`]: kstreams_store_api::KvBackend::finish_restore_runs
//! [`StoreFactory`]: kstreams_store_api::StoreFactory
//! [`Checkpoint`]: kstreams_store_api::Checkpoint
//! [`WriteBuffer`]: kstreams_store_api::WriteBuffer

#![warn(missing_docs)]

mod checkpoint;
mod config;
mod env;
mod error;
mod listing;
mod merge;
mod read;
mod runs;
mod store;
mod write;

pub use config::{LmdbConfig, SyncMode};
pub use env::{LOCK_FILE_NAME, LmdbEnvironment, MAX_STORE_NAME_LEN};
pub use error::LmdbError;
pub use store::LmdbStore;
