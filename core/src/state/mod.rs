//! State stores: typed key-value access over byte backends.
//!
//! A store is declared in the topology with a [`StoreBuilder`] (name + key/value serdes) and
//! connected to the processors that use it. Each task opens its own backend per store through
//! a [`StoreFactory`] (memory by default; `kstreams-store-lmdb` for LMDB). Processors reach it
//! typed, as a [`KeyValueStore`], from their context.

mod kv;
mod spec;

pub use kstreams_store_api::{
    Checkpoint, KeyValue, KvBackend, LocalCheckpoint, StoreError, StoreFactory, WriteBatch,
    WriteBuffer, WriteOp,
};
pub use kstreams_store_mem::{MemoryStore, MemoryStoreFactory};
pub use kv::KeyValueStore;
pub use spec::StoreBuilder;
pub(crate) use spec::{KvSerdes, StoreDef};

use crate::serde::SerdeError;

/// Errors of typed store access.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The backend failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A key or value could not be (de)serialized with the store's serdes.
    #[error("store `{store}`: {source}")]
    Serde {
        /// Store name.
        store: String,
        /// The serde error.
        #[source]
        source: SerdeError,
    },
    /// A store key serialized to null; store keys must not be null.
    #[error("store `{0}`: keys must not serialize to null")]
    NullKey(String),
    /// The calling processor is not connected to the store.
    #[error("processor `{processor}` is not connected to store `{store}`")]
    NotConnected {
        /// The processor.
        processor: String,
        /// The store.
        store: String,
    },
    /// The store holds other key/value types than the ones asked for.
    #[error("store `{store}` holds ({key}, {value}), asked for ({asked_key}, {asked_value})")]
    TypeMismatch {
        /// Store name.
        store: String,
        /// Its key type.
        key: &'static str,
        /// Its value type.
        value: &'static str,
        /// Key type asked for.
        asked_key: &'static str,
        /// Value type asked for.
        asked_value: &'static str,
    },
}

impl From<StateError> for crate::error::ProcessError {
    fn from(e: StateError) -> Self {
        Self::new(e)
    }
}
