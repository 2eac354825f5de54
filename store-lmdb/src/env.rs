//! [`LmdbEnvironment`]: one LMDB environment per state directory, shared by its stores.

use std::collections::HashSet;
use std::convert::Infallible;
use std::fmt;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard};

use heed::types::{Bytes as RawBytes, DecodeIgnore};
use heed::{
    CommitOrAbort, CommitToken, Database, Env, EnvFlags, EnvOpenOptions, MdbError, OnCommit,
    WithoutTls,
};
use kstreams_store_api::{KvBackend, LocalCheckpoint, StoreError, StoreFactory};
use tracing::{debug, info, warn};

use crate::config::{LmdbConfig, MAP_SIZE_GRANULE, SyncMode};
use crate::error::{self, LmdbError};
use crate::runs;
use crate::store::LmdbStore;

/// A database of raw byte keys and values.
pub(crate) type RawDb = Database<'static, RawBytes, RawBytes>;

/// Name of the database holding every store's checkpoint. It contains no `.`, so it cannot
/// collide with a store database (always `"{store}.{partition}"`).
pub(crate) const CHECKPOINTS_DB: &str = "__kstreams_checkpoints";

/// Name of the lock file in a state directory. An [`LmdbEnvironment`] holds an exclusive
/// advisory lock on it for its whole life, so a second instance fails at once with
/// [`LmdbError::DirectoryLocked`].
pub const LOCK_FILE_NAME: &str = "kstreams.lock";

/// Longest store name accepted.
pub const MAX_STORE_NAME_LEN: usize = 200;

/// One LMDB environment (a state directory) and the handle stores share.
///
/// Cheap to clone (an `Arc`); every clone and every store opened from it share one LMDB `Env`,
/// so several stores and partitions can live in one environment and commit independently. The
/// environment is closed when the last clone and the last store are dropped. Implements
/// [`StoreFactory`], so a task opens its stores with [`StoreFactory::open`] or, typed,
/// [`LmdbEnvironment::open_store`].
///
/// The environment holds an exclusive advisory lock on `<path>/`[`LOCK_FILE_NAME`] for its
/// whole life (until the last clone and store are dropped). Opening the same directory again
/// while it lives, in this process or in another one, fails at once with
/// [`LmdbError::DirectoryLocked`] (the source of a [`StoreError::Backend`]): clone the first
/// handle to share it. Two processes never use one state directory at once (the map growth
/// below relies on this process being the only one with transactions on it). The lock is
/// `flock`-style (`std::fs::File::try_lock`), released by the OS when the process dies, so a
/// crashed instance never leaves a stale lock behind; it does not protect state directories on
/// network file systems, which LMDB does not support anyway.
#[derive(Clone)]
pub struct LmdbEnvironment {
    pub(crate) shared: Arc<Shared>,
}

/// State shared by an environment's handles and stores.
pub(crate) struct Shared {
    pub(crate) env: Env<WithoutTls>,
    pub(crate) checkpoints: RawDb,
    /// Every transaction this crate opens is begun and ended while holding a *read* guard of this
    /// lock; growing the map takes the *write* guard. That is how we uphold LMDB's (and heed's
    /// `Env::resize`) requirement that no transaction of this process is active during
    /// `mdb_env_set_mapsize`, even when stores of one environment run on several threads.
    /// Guards are never nested (a holder of a read guard never asks for another guard).
    txn_gate: RwLock<()>,
    /// Database names of the stores currently open, so one (store, partition) cannot be opened
    /// twice at once (two write buffers over one database would commit over each other).
    open_stores: Mutex<HashSet<String>>,
    pub(crate) config: LmdbConfig,
    max_map_size: usize,
    pub(crate) max_key_size: usize,
    /// Names the environment in errors that concern no particular store.
    pub(crate) label: String,
    /// The state directory's lock file, locked exclusively while the environment lives. Last
    /// field: dropped (unlocked) after the `Env` is closed.
    _lock: File,
}

impl LmdbEnvironment {
    /// Opens (creating if needed) the environment described by `config`.
    ///
    /// Takes the directory's lock file first (see the type's documentation).
    ///
    /// Errors: [`StoreError::Config`] for invalid sizes; [`StoreError::Backend`] with
    /// [`LmdbError::DirectoryLocked`] as source when another environment (of this process or
    /// another) has the directory open, and for I/O and LMDB failures.
    pub fn open(config: LmdbConfig) -> Result<Self, StoreError> {
        let label = format!("lmdb:{}", config.path.display());
        let (initial_map_size, max_map_size) =
            config.map_sizes().map_err(|e| error::config(&label, e))?;
        std::fs::create_dir_all(&config.path).map_err(|e| error::backend(&label, e))?;
        let lock = lock_directory(&config.path, &label)?;

        let flags = match config.sync_mode {
            SyncMode::Full => EnvFlags::empty(),
            SyncMode::NoMetaSync => EnvFlags::NO_META_SYNC,
            SyncMode::NoSync => EnvFlags::NO_SYNC,
        };
        // Read transactions are short (one method call) and not bound to threads (`MDB_NOTLS`):
        // a task may run on any worker thread of an async runtime, and a thread may read two
        // stores of one environment without LMDB's one-reader-slot-per-thread rule biting.
        let mut options = EnvOpenOptions::new().read_txn_without_tls();
        options.map_size(initial_map_size).max_dbs(config.max_dbs);
        // SAFETY (flags): `NO_META_SYNC` and `NO_SYNC` trade durability of the last commits for
        // speed, never memory safety; `SyncMode` documents what each one may lose. `NO_LOCK` is
        // never set.
        unsafe { options.flags(flags) };
        // SAFETY (open): the map stays valid as long as nothing truncates or rewrites the data
        // file behind LMDB's back. We keep LMDB's lock file (no `NO_LOCK`), hold the directory's
        // `kstreams.lock` (no other environment of this or another process has it open), heed
        // refuses to open one path twice in a process, and we document that a state directory
        // must not be on a network file system.
        let env = match unsafe { options.open(&config.path) } {
            Ok(env) => env,
            Err(heed::Error::EnvAlreadyOpened) => {
                return Err(error::config(
                    &label,
                    "this LMDB environment is already open in this process; \
                     clone the existing LmdbEnvironment to share it",
                ));
            }
            Err(e) => return Err(error::backend(&label, e)),
        };
        let max_key_size = env.max_key_size();

        let gate = RwLock::new(());
        let checkpoints = write_loop(&env, &gate, max_map_size, &label, |env| {
            create_database(env, CHECKPOINTS_DB)
        })?;
        debug!(
            path = %config.path.display(),
            map_size = env.info().map_size,
            sync_mode = ?config.sync_mode,
            "opened LMDB environment"
        );
        Ok(Self {
            shared: Arc::new(Shared {
                env,
                checkpoints,
                txn_gate: gate,
                open_stores: Mutex::new(HashSet::new()),
                config,
                max_map_size,
                max_key_size,
                label,
                _lock: lock,
            }),
        })
    }

    /// Opens (creating if needed) the store `store` for `partition`: the LMDB database
    /// `"{store}.{partition}"`, with its committed entries and checkpoint.
    ///
    /// Store names are 1 to [`MAX_STORE_NAME_LEN`] characters of `[A-Za-z0-9._-]` (the characters
    /// Kafka allows in the store's changelog topic name) and partitions are non-negative;
    /// anything else, or too many databases for [`LmdbConfig::max_dbs`] is a
    /// [`StoreError::Config`]; a (store, partition) that is already open is
    /// [`StoreError::InUse`] (until its store is dropped).
    pub fn open_store(&self, store: &str, partition: i32) -> Result<LmdbStore, StoreError> {
        validate_store_name(store, partition)?;
        let db_name = format!("{store}.{partition}");
        let shared = &self.shared;
        {
            let mut open = lock(&shared.open_stores);
            if !open.insert(db_name.clone()) {
                return Err(StoreError::InUse {
                    store: store.to_owned(),
                    partition,
                });
            }
        }
        let run_prefix = runs::run_prefix(&db_name);
        let opened = shared.write(store, |env| {
            create_store_database(env, &db_name, &run_prefix)
        });
        let (db, leftover_runs) = match opened {
            Ok(opened) => opened,
            Err(e) => {
                lock(&shared.open_stores).remove(&db_name);
                return Err(dbs_full_as_config(e, store, &shared.config));
            }
        };
        if leftover_runs > 0 {
            info!(
                store,
                partition,
                runs = leftover_runs,
                "dropped the restore runs of an unfinished bulk restore"
            );
        }
        debug!(store, partition, db = %db_name, "opened LMDB store");
        Ok(LmdbStore::new(self.clone(), store, partition, db_name, db))
    }

    /// The environment directory.
    pub fn path(&self) -> &Path {
        &self.shared.config.path
    }

    /// The configuration the environment was opened with.
    pub fn config(&self) -> &LmdbConfig {
        &self.shared.config
    }

    /// The current size of the memory map in bytes (grows on demand up to
    /// [`LmdbConfig::max_map_size`]).
    pub fn map_size(&self) -> usize {
        self.shared.env.info().map_size
    }

    /// The longest key LMDB stores in this environment (511 bytes with LMDB's defaults).
    pub fn max_key_size(&self) -> usize {
        self.shared.max_key_size
    }

    /// Flushes every commit to disk, whatever the [`SyncMode`]; useful with
    /// [`SyncMode::NoSync`] or `NoMetaSync` before a clean shutdown.
    pub fn sync(&self) -> Result<(), StoreError> {
        self.shared
            .env
            .force_sync()
            .map_err(|e| error::backend(&self.shared.label, e))
    }
}

impl fmt::Debug for LmdbEnvironment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LmdbEnvironment")
            .field("path", &self.shared.config.path)
            .field("sync_mode", &self.shared.config.sync_mode)
            .field("map_size", &self.map_size())
            .finish_non_exhaustive()
    }
}

impl StoreFactory for LmdbEnvironment {
    fn open(&self, store: &str, partition: i32) -> Result<Box<dyn KvBackend>, StoreError> {
        Ok(Box::new(self.open_store(store, partition)?))
    }

    fn local_checkpoints(&self) -> Result<Vec<LocalCheckpoint>, StoreError> {
        LmdbEnvironment::local_checkpoints(self)
    }
}

impl Shared {
    /// A read guard of the transaction gate: hold it for the whole life of a transaction.
    pub(crate) fn txn_guard(&self) -> RwLockReadGuard<'_, ()> {
        self.txn_gate.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `attempt` (which opens, fills and commits one write transaction) until it succeeds,
    /// growing the map after each `MDB_MAP_FULL`; see [`write_loop`].
    pub(crate) fn write<T>(
        &self,
        store: &str,
        attempt: impl FnMut(&Env<WithoutTls>) -> heed::Result<T>,
    ) -> Result<T, StoreError> {
        write_loop(&self.env, &self.txn_gate, self.max_map_size, store, attempt)
    }

    /// Releases a store's name when the store is dropped.
    pub(crate) fn release(&self, db_name: &str) {
        lock(&self.open_stores).remove(db_name);
    }

    /// Whether LMDB can store `key`.
    pub(crate) fn key_is_valid(&self, key: &[u8]) -> bool {
        !key.is_empty() && key.len() <= self.max_key_size
    }
}

/// Runs `attempt` under a read guard of `gate` until it succeeds. `attempt` must open, fill and
/// commit (or drop, i.e. abort) its write transaction before it returns, so no transaction
/// outlives the call (and none migrates between threads, heed issue #339).
///
/// On `MDB_MAP_FULL` the transaction is already aborted (LMDB aborts a failed commit; a failed
/// put's transaction is dropped by `attempt`'s `?`), the guard is released and the map grows
/// (doubling, capped at `max_map_size`) before the next attempt. Past `max_map_size` it gives up
/// with [`LmdbError::MapFull`].
fn write_loop<T>(
    env: &Env<WithoutTls>,
    gate: &RwLock<()>,
    max_map_size: usize,
    store: &str,
    mut attempt: impl FnMut(&Env<WithoutTls>) -> heed::Result<T>,
) -> Result<T, StoreError> {
    loop {
        let (map_size, result) = {
            let _guard = gate.read().unwrap_or_else(PoisonError::into_inner);
            (env.info().map_size, attempt(env))
        };
        match result {
            Ok(value) => return Ok(value),
            Err(heed::Error::Mdb(MdbError::MapFull)) => {
                grow(env, gate, map_size, max_map_size, store)?;
            }
            Err(e) => return Err(error::backend(store, e)),
        }
    }
}

/// Grows the map after a commit failed with `MDB_MAP_FULL` at size `failed_at`.
fn grow(
    env: &Env<WithoutTls>,
    gate: &RwLock<()>,
    failed_at: usize,
    max_map_size: usize,
    store: &str,
) -> Result<(), StoreError> {
    let _exclusive = gate.write().unwrap_or_else(PoisonError::into_inner);
    let current = env.info().map_size;
    if current > failed_at {
        // Another store of this environment grew the map meanwhile: just retry.
        return Ok(());
    }
    if current >= max_map_size {
        warn!(store, map_size = current, max_map_size, "LMDB map full");
        return Err(error::lmdb(
            store,
            LmdbError::MapFull {
                map_size: current,
                max_map_size,
            },
        ));
    }
    let doubled = current.saturating_mul(2);
    let new_size = doubled.min(max_map_size) / MAP_SIZE_GRANULE * MAP_SIZE_GRANULE;
    let new_size = new_size.max(current + MAP_SIZE_GRANULE).min(max_map_size);
    // SAFETY: `Env::resize` (`mdb_env_set_mapsize`) requires that this process has no active
    // transaction on the environment. Every transaction of this crate runs inside a read guard
    // of `gate` (see `Shared::txn_gate`) and ends before its guard is dropped; we hold the write
    // guard, so none is active. The `Env` is never handed out, so no other code opens
    // transactions on it. No other process has the environment open: we hold the directory's
    // lock file (see `LmdbEnvironment`).
    // The size is a multiple of 64 KiB, hence of the page size.
    unsafe { env.resize(new_size) }.map_err(|e| error::backend(store, e))?;
    info!(
        store,
        from = current,
        to = new_size,
        "LMDB map full: grew the map"
    );
    Ok(())
}

/// Opens (creating if needed) `dir`/[`LOCK_FILE_NAME`] and locks it exclusively without
/// waiting.
fn lock_directory(dir: &Path, label: &str) -> Result<File, StoreError> {
    let path = dir.join(LOCK_FILE_NAME);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| error::backend(label, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => {
            warn!(path = %dir.display(), "state directory is locked by another instance");
            Err(error::lmdb(
                label,
                LmdbError::DirectoryLocked {
                    path: dir.to_path_buf(),
                },
            ))
        }
        Err(TryLockError::Error(e)) => Err(error::backend(label, e)),
    }
}

/// Creates (or opens) the named database in its own write transaction.
fn create_database(env: &Env<WithoutTls>, name: &str) -> heed::Result<RawDb> {
    let wtxn = env.write_txn()?;
    let created = env.create_databases_and_commit(wtxn, |opener, wtxn| {
        opener
            .create_database::<RawBytes, RawBytes>(wtxn, Some(name))
            .map(CommitOrAbort::<_, Infallible>::Commit)
    })?;
    Ok(match created {
        CommitOrAbort::Commit(db) => db,
        CommitOrAbort::Abort(never) => match never {},
    })
}

/// Creates (or opens) the store database `db_name` and drops every database whose name starts
/// with `run_prefix` (restore runs left by an unfinished bulk restore), in one write transaction.
/// Returns the database and the number of runs dropped.
fn create_store_database(
    env: &Env<WithoutTls>,
    db_name: &str,
    run_prefix: &str,
) -> heed::Result<(RawDb, usize)> {
    let wtxn = env.write_txn()?;
    let created = env.create_databases_and_commit(wtxn, |opener, wtxn| {
        let db = opener.create_database::<RawBytes, RawBytes>(wtxn, Some(db_name))?;
        let names = opener
            .open_database::<RawBytes, DecodeIgnore>(wtxn, None)?
            .ok_or(heed::Error::Mdb(MdbError::NotFound))?;
        let leftovers = names
            .prefix_iter(wtxn, run_prefix.as_bytes())?
            .map(|entry| entry.map(|(name, ())| String::from_utf8_lossy(name).into_owned()))
            .collect::<heed::Result<Vec<String>>>()?;
        for name in &leftovers {
            if let Some(run) = opener.open_database::<RawBytes, RawBytes>(wtxn, Some(name))? {
                // SAFETY: heed requires that no other copy of the handle is used after the drop
                // and that no other transaction modified the database. Run databases belong to
                // their store, which is being opened (once per environment), and every user
                // opens them by name.
                unsafe { run.remove(wtxn)? };
            }
        }
        Ok::<_, heed::Error>(CommitOrAbort::<_, Infallible>::Commit((
            db,
            Plain(leftovers.len()),
        )))
    })?;
    Ok(match created {
        CommitOrAbort::Commit((db, dropped)) => (db, dropped),
        CommitOrAbort::Abort(never) => match never {},
    })
}

/// A value that is not a database, returned through heed's `create_databases_and_commit`.
pub(crate) struct Plain<T>(pub(crate) T);

impl<T> OnCommit for Plain<T> {
    type Committed = T;

    fn on_commit(self, _token: &CommitToken) -> T {
        self.0
    }
}

/// Turns a [`StoreError::Backend`] of LMDB's `MDB_DBS_FULL` into a [`StoreError::Config`] that
/// says to raise [`LmdbConfig::max_dbs`]; other errors pass unchanged.
pub(crate) fn dbs_full_as_config(e: StoreError, store: &str, config: &LmdbConfig) -> StoreError {
    match e {
        StoreError::Backend { source, .. }
            if matches!(
                source.downcast_ref::<heed::Error>(),
                Some(heed::Error::Mdb(MdbError::DbsFull))
            ) =>
        {
            error::config(
                store,
                format!(
                    "no free LMDB database: the environment's max_dbs ({}) is reached (every \
                     open store partition and every staged restore run takes one); raise \
                     LmdbConfig::max_dbs",
                    config.max_dbs
                ),
            )
        }
        e => e,
    }
}

/// Checks a store name and partition; see [`LmdbEnvironment::open_store`].
fn validate_store_name(store: &str, partition: i32) -> Result<(), StoreError> {
    if store.is_empty() {
        return Err(error::config(store, "the store name is empty"));
    }
    if store.len() > MAX_STORE_NAME_LEN {
        return Err(error::config(
            store,
            format!(
                "the store name has {} characters, at most {MAX_STORE_NAME_LEN} are allowed",
                store.len()
            ),
        ));
    }
    if let Some(bad) = store
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(error::config(
            store,
            format!("the store name contains {bad:?}; only [A-Za-z0-9._-] are allowed"),
        ));
    }
    if partition < 0 {
        return Err(error::config(
            store,
            format!("partition {partition} is negative"),
        ));
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_names_are_validated() {
        assert!(validate_store_name("counts", 0).is_ok());
        assert!(validate_store_name("a.b_c-D9", 7).is_ok());
        for bad in [
            "",
            "a b",
            "a/b",
            "a\0b",
            "é",
            &"x".repeat(MAX_STORE_NAME_LEN + 1),
        ] {
            assert!(
                matches!(validate_store_name(bad, 0), Err(StoreError::Config { .. })),
                "{bad:?} accepted"
            );
        }
        assert!(matches!(
            validate_store_name("ok", -1),
            Err(StoreError::Config { .. })
        ));
    }
}
