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
//!   each store database name to its [`Checkpoint`] (8-byte big-endian `i64`), and
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
//!
//! A state directory belongs to one process (and must not be on a network file system). Keys
//! must be 1 to [`LmdbEnvironment::max_key_size`] (511) bytes. A single commit is bounded by
//! LMDB's dirty-page limit (`MDB_TXN_FULL`, about 512 MiB of changed pages with 4 KiB pages):
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
//! store.commit(Some(Checkpoint { changelog_offset: 42 }))?;
//! assert_eq!(store.checkpoint()?, Some(Checkpoint { changelog_offset: 42 }));
//! # Ok(()) }
//! ```
//!
//! [`KvBackend`]: kstreams_store_api::KvBackend
//! [`KvBackend::write_batch`]: kstreams_store_api::KvBackend::write_batch
//! [`KvBackend::commit`]: kstreams_store_api::KvBackend::commit
//! [`KvBackend::rollback`]: kstreams_store_api::KvBackend::rollback
//! [`KvBackend::get_batch`]: kstreams_store_api::KvBackend::get_batch
//! [`KvBackend::range`]: kstreams_store_api::KvBackend::range
//! [`StoreFactory`]: kstreams_store_api::StoreFactory
//! [`Checkpoint`]: kstreams_store_api::Checkpoint
//! [`WriteBuffer`]: kstreams_store_api::WriteBuffer

#![warn(missing_docs)]

mod config;
mod env;
mod error;
mod store;

pub use config::{LmdbConfig, SyncMode};
pub use env::{LmdbEnvironment, MAX_STORE_NAME_LEN};
pub use error::LmdbError;
pub use store::LmdbStore;
