use std::any::Any;
use std::sync::Arc;

use crate::serde::Serde;

/// The serdes of a typed store.
pub(crate) struct KvSerdes<K, V> {
    pub(crate) key: Arc<dyn Serde<K>>,
    pub(crate) value: Arc<dyn Serde<V>>,
}

/// Declares a key-value store for a topology: its name and key/value serdes.
pub struct StoreBuilder<K, V> {
    name: String,
    serdes: KvSerdes<K, V>,
    logging: bool,
}

impl<K: 'static, V: 'static> StoreBuilder<K, V> {
    /// A key-value store called `name`. Keys are ordered by their serialized bytes.
    pub fn key_value(
        name: impl Into<String>,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
    ) -> Self {
        Self {
            name: name.into(),
            serdes: KvSerdes {
                key: Arc::new(key_serde),
                value: Arc::new(value_serde),
            },
            logging: true,
        }
    }

    /// Whether the store is backed by a changelog topic (`<application_id>-<store>-changelog`,
    /// compacted, one partition per task). On by default: every commit appends the store's
    /// writes since the last one (deletes as tombstones) before the input offsets are
    /// committed, and a task restores the store from it before processing. A store without
    /// logging keeps its state only where it is (an LMDB directory; nothing for the memory
    /// store): it starts empty on an instance that lacks that state. `describe()` marks it
    /// `(not logged)`.
    pub fn with_logging(mut self, enabled: bool) -> Self {
        self.logging = enabled;
        self
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn into_def(self) -> StoreDef {
        StoreDef {
            name: self.name,
            key_type: std::any::type_name::<K>(),
            value_type: std::any::type_name::<V>(),
            serdes: Arc::new(self.serdes),
            logging: self.logging,
        }
    }
}

/// A store as the topology keeps it: types erased, serdes kept for typed access.
#[derive(Clone)]
pub(crate) struct StoreDef {
    pub(crate) name: String,
    pub(crate) key_type: &'static str,
    pub(crate) value_type: &'static str,
    /// A `KvSerdes<K, V>` for the store's K and V.
    pub(crate) serdes: Arc<dyn Any + Send + Sync>,
    pub(crate) logging: bool,
}
