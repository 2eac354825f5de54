use std::error::Error;

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
