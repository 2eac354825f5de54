//! Errors specific to the LMDB backend, carried as the `source` of
//! [`StoreError::Backend`](kstreams_store_api::StoreError::Backend).

use std::path::PathBuf;

use kstreams_store_api::StoreError;

/// A failure of the LMDB backend that is not a plain LMDB/heed error.
///
/// Reported as the `source` of [`StoreError::Backend`], so callers can
/// `downcast_ref::<LmdbError>()` it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LmdbError {
    /// A commit needs more space than [`LmdbConfig::max_map_size`](crate::LmdbConfig::max_map_size)
    /// allows. Nothing of the commit is durable; its writes are still pending.
    #[error(
        "LMDB map is full at {map_size} bytes and may not grow past max_map_size \
         ({max_map_size} bytes); raise max_map_size or commit less at once"
    )]
    MapFull {
        /// The map size when the commit failed.
        map_size: usize,
        /// The configured maximum.
        max_map_size: usize,
    },
    /// Another [`LmdbEnvironment`](crate::LmdbEnvironment) holds the state directory's lock file
    /// ([`LOCK_FILE_NAME`](crate::LOCK_FILE_NAME)): another kstreams instance, in this process
    /// or another one, uses the directory.
    #[error(
        "another kstreams instance uses the state directory {} (its lock file {} is held); \
         stop it or give each instance its own state directory",
        path.display(),
        crate::LOCK_FILE_NAME
    )]
    DirectoryLocked {
        /// The state directory.
        path: PathBuf,
    },
    /// A key LMDB cannot store: empty, or longer than the environment's maximum key size.
    #[error("LMDB cannot store a key of {len} bytes (keys must be 1..={max} bytes)")]
    InvalidKey {
        /// Length of the rejected key.
        len: usize,
        /// The environment's maximum key size.
        max: usize,
    },
}

/// Wraps a heed error for `store`.
pub(crate) fn backend(store: &str, err: impl Into<heed::Error>) -> StoreError {
    StoreError::backend(store, err.into())
}

/// Wraps one of our own errors for `store`.
pub(crate) fn lmdb(store: &str, err: LmdbError) -> StoreError {
    StoreError::backend(store, err)
}

/// A configuration error for `store`.
pub(crate) fn config(store: &str, detail: impl Into<String>) -> StoreError {
    StoreError::Config {
        store: store.to_owned(),
        detail: detail.into(),
    }
}
