//! Configuration of an [`LmdbEnvironment`](crate::LmdbEnvironment).

use std::path::{Path, PathBuf};

/// Granularity map sizes are rounded to: a multiple of every common OS page size (4, 16 and
/// 64 KiB), as LMDB requires the map size to be a multiple of the page size.
pub(crate) const MAP_SIZE_GRANULE: usize = 64 * 1024;

/// How hard a commit pushes data to stable storage before it returns.
///
/// Every mode keeps each commit atomic: a commit is either wholly visible after a restart or not
/// at all, and state and checkpoint never disagree because they are written in one transaction.
/// The modes differ in how many of the *most recent* commits an operating-system crash or power
/// loss may take back (a process crash loses nothing in any mode: the data is in the OS page
/// cache).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SyncMode {
    /// `fsync` data and meta page on every commit: a returned commit survives an OS crash.
    /// Two synchronous flushes per commit.
    Full,
    /// The default (LMDB's `MDB_NOMETASYNC`): data pages are flushed on every commit, the meta
    /// page is not. An OS crash may lose the last commit(s), but the environment stays consistent
    /// (LMDB falls back to the previous meta page) and atomic.
    ///
    /// That is enough here: a store's state is rebuilt from its changelog starting at the
    /// checkpoint committed *in the same transaction*, so a lost commit means replaying a few more
    /// changelog records, never a store that disagrees with its checkpoint. One synchronous flush
    /// per commit instead of two.
    #[default]
    NoMetaSync,
    /// Explicit opt-in to LMDB's `MDB_NOSYNC`: commits never flush; the OS writes pages back when
    /// it likes. An OS crash may lose any number of recent commits **and, depending on the file
    /// system's write ordering, may corrupt the environment** (LMDB documents this mode as keeping
    /// integrity only if the file system preserves write order). Only for throwaway state, tests,
    /// or callers that call [`LmdbEnvironment::sync`](crate::LmdbEnvironment::sync) themselves
    /// and can rebuild the state directory from changelogs.
    NoSync,
}

/// Options of one LMDB environment (one state directory).
///
/// `LmdbConfig::new(path)` gives the defaults; adjust with the `with_*` methods or the public
/// fields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LmdbConfig {
    /// Directory holding the environment's `data.mdb` and `lock.mdb`; created if missing.
    pub path: PathBuf,
    /// Map size to start with, in bytes (rounded up to a multiple of 64 KiB). When the existing
    /// data is larger, LMDB uses the data's size instead. Default 64 MiB.
    pub initial_map_size: usize,
    /// The map never grows past this many bytes (rounded down to a multiple of 64 KiB); a commit
    /// that would need more fails. Default 256 GiB (virtual address space, not disk: the data
    /// file grows with the data, not with the map).
    pub max_map_size: usize,
    /// Maximum number of named databases: one per (store, partition) ever opened through this
    /// environment in this process, plus one for the checkpoints, plus the restore runs staged
    /// at the same time by bulk restores (each run is a database until the restore finishes:
    /// at most 16 per store up to 128 MiB of changelog in 8 MiB runs, 31 up to 2 GiB, 46 up to
    /// 32 GiB, one more while runs merge; see `KvBackend::restore_run` on
    /// [`LmdbStore`](crate::LmdbStore)). Default 128.
    ///
    /// Not free: LMDB allocates and zeroes about 49 bytes per slot for *every* transaction, so
    /// 1024 slots add ~50 KiB of `memset` to each read (measured: per-key `get` nearly twice as
    /// slow as with 128). Raise it when one state directory holds more (store, partition) pairs.
    pub max_dbs: u32,
    /// Durability of a commit; see [`SyncMode`]. Default [`SyncMode::NoMetaSync`].
    pub sync_mode: SyncMode,
    /// Key and value bytes one write transaction of a bulk restore's merge carries at most
    /// (`finish_restore_runs`, and merging staged runs into a bigger one). Bounds the memory of
    /// the transaction's dirty pages (about 1.1x this) and keeps it far below LMDB's dirty-page
    /// limit; each transaction costs one flush. Default 32 MiB.
    pub bulk_restore_txn_bytes: usize,
}

impl LmdbConfig {
    /// Default initial map size: 64 MiB.
    pub const DEFAULT_INITIAL_MAP_SIZE: usize = 64 * 1024 * 1024;
    /// Default maximum map size: 256 GiB on 64-bit targets, 1 GiB on others.
    pub const DEFAULT_MAX_MAP_SIZE: usize = if usize::BITS >= 64 {
        256 << 30
    } else {
        1 << 30
    };
    /// Default maximum number of named databases.
    pub const DEFAULT_MAX_DBS: u32 = 128;
    /// Default [`bulk_restore_txn_bytes`](Self::bulk_restore_txn_bytes): 32 MiB.
    pub const DEFAULT_BULK_RESTORE_TXN_BYTES: usize = 32 << 20;

    /// The default configuration for an environment in `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            initial_map_size: Self::DEFAULT_INITIAL_MAP_SIZE,
            max_map_size: Self::DEFAULT_MAX_MAP_SIZE,
            max_dbs: Self::DEFAULT_MAX_DBS,
            sync_mode: SyncMode::default(),
            bulk_restore_txn_bytes: Self::DEFAULT_BULK_RESTORE_TXN_BYTES,
        }
    }

    /// Sets [`initial_map_size`](Self::initial_map_size).
    pub fn with_initial_map_size(mut self, bytes: usize) -> Self {
        self.initial_map_size = bytes;
        self
    }

    /// Sets [`max_map_size`](Self::max_map_size).
    pub fn with_max_map_size(mut self, bytes: usize) -> Self {
        self.max_map_size = bytes;
        self
    }

    /// Sets [`max_dbs`](Self::max_dbs).
    pub fn with_max_dbs(mut self, max_dbs: u32) -> Self {
        self.max_dbs = max_dbs;
        self
    }

    /// Sets [`sync_mode`](Self::sync_mode).
    pub fn with_sync_mode(mut self, sync_mode: SyncMode) -> Self {
        self.sync_mode = sync_mode;
        self
    }

    /// Sets [`bulk_restore_txn_bytes`](Self::bulk_restore_txn_bytes).
    pub fn with_bulk_restore_txn_bytes(mut self, bytes: usize) -> Self {
        self.bulk_restore_txn_bytes = bytes;
        self
    }

    /// The environment directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks the sizes and returns `(initial, max)` map sizes rounded to [`MAP_SIZE_GRANULE`].
    pub(crate) fn map_sizes(&self) -> Result<(usize, usize), String> {
        if self.initial_map_size == 0 {
            return Err("initial_map_size must be positive".into());
        }
        if self.bulk_restore_txn_bytes == 0 {
            return Err("bulk_restore_txn_bytes must be positive".into());
        }
        if self.max_dbs == 0 {
            return Err("max_dbs must be at least 1 (the checkpoints database)".into());
        }
        let initial = self
            .initial_map_size
            .checked_next_multiple_of(MAP_SIZE_GRANULE)
            .ok_or_else(|| format!("initial_map_size {} is too large", self.initial_map_size))?;
        let max = self.max_map_size - self.max_map_size % MAP_SIZE_GRANULE;
        if initial > max {
            return Err(format!(
                "initial_map_size ({initial} bytes, rounded up to 64 KiB) exceeds \
                 max_map_size ({max} bytes, rounded down to 64 KiB)"
            ));
        }
        Ok((initial, max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_sizes_are_rounded_and_checked() {
        let c = LmdbConfig::new("x")
            .with_initial_map_size(1)
            .with_max_map_size(MAP_SIZE_GRANULE * 3 + 5);
        assert_eq!(c.map_sizes(), Ok((MAP_SIZE_GRANULE, MAP_SIZE_GRANULE * 3)));

        let c = LmdbConfig::new("x")
            .with_initial_map_size(MAP_SIZE_GRANULE * 2)
            .with_max_map_size(MAP_SIZE_GRANULE);
        assert!(c.map_sizes().is_err());
        assert!(
            LmdbConfig::new("x")
                .with_initial_map_size(0)
                .map_sizes()
                .is_err()
        );
        assert!(LmdbConfig::new("x").with_max_dbs(0).map_sizes().is_err());
        assert!(
            LmdbConfig::new("x")
                .with_bulk_restore_txn_bytes(0)
                .map_sizes()
                .is_err()
        );
        assert!(LmdbConfig::new("x").map_sizes().is_ok());
    }
}
