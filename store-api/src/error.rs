use std::error::Error;

use crate::Checkpoint;

/// Errors of a store backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The underlying storage engine failed (I/O, environment, transaction).
    #[error("store `{store}`: backend failure: {source}")]
    Backend {
        /// Store name.
        store: String,
        /// What the engine reported.
        #[source]
        source: Box<dyn Error + Send + Sync>,
    },
    /// Data read back from the store is not what was written (e.g. a malformed checkpoint).
    #[error("store `{store}`: corrupt data: {detail}")]
    Corrupt {
        /// Store name.
        store: String,
        /// What is wrong.
        detail: String,
    },
    /// The operation needs a store without uncommitted writes (e.g.
    /// [`KvBackend::restore_batch`](crate::KvBackend::restore_batch), which runs before any
    /// processing); nothing was changed.
    #[error("store `{store}`: {count} uncommitted write(s); commit or roll back before restoring")]
    UncommittedWrites {
        /// Store name.
        store: String,
        /// Number of distinct keys with an uncommitted write.
        count: usize,
    },
    /// A bulk restore ([`KvBackend::restore_run`](crate::KvBackend::restore_run),
    /// [`KvBackend::finish_restore_runs`](crate::KvBackend::finish_restore_runs)) needs a store
    /// without data and without checkpoint; this one has some. Nothing was changed. Wipe the
    /// store first (or restore it with `restore_batch`).
    #[error(
        "store `{store}`: a bulk restore needs an empty store without checkpoint, but it has {}",
        not_empty_detail(*has_data, checkpoint.as_ref())
    )]
    NotEmpty {
        /// Store name.
        store: String,
        /// Whether the store holds (committed) data.
        has_data: bool,
        /// The store's checkpoint, if it has one.
        checkpoint: Option<Checkpoint>,
    },
    /// The (store, partition) is open already, through another backend of the same storage
    /// (e.g. another stream thread of the process has the task, or a standby of it, on the
    /// same LMDB environment). Nothing was opened; it can be opened once the other backend is
    /// dropped: the engine retries.
    #[error("store `{store}`: partition {partition} is open already (by another stream thread)")]
    InUse {
        /// Store name.
        store: String,
        /// The partition.
        partition: i32,
    },
    /// The store's configuration or name is invalid.
    #[error("store `{store}`: invalid configuration: {detail}")]
    Config {
        /// Store name.
        store: String,
        /// What is wrong.
        detail: String,
    },
}

impl StoreError {
    /// Wraps an engine error for `store`.
    pub fn backend(store: &str, source: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        Self::Backend {
            store: store.to_owned(),
            source: source.into(),
        }
    }
}

/// What a [`StoreError::NotEmpty`] store has, for its message.
fn not_empty_detail(has_data: bool, checkpoint: Option<&Checkpoint>) -> String {
    match (has_data, checkpoint) {
        (true, Some(c)) => format!("data and a checkpoint at offset {}", c.changelog_offset),
        (false, Some(c)) => format!("a checkpoint at offset {}", c.changelog_offset),
        (true, None) => "data (without a checkpoint)".to_owned(),
        // Not constructed: a store without either is empty.
        (false, None) => "neither data nor a checkpoint".to_owned(),
    }
}
