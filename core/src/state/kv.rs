use std::ops::Bound;

use bytes::{Bytes, BytesMut};

use super::{KvBackend, KvSerdes, StateError, WriteBatch};

/// Typed access to one key-value store of the current task, borrowed from the processor
/// context.
///
/// Reads see every write of the task since its last commit. Each method is atomic:
/// `put_batch` and `delete_batch` apply all their entries or none. A put whose value
/// serializes to Kafka's null is a delete, as in Kafka Streams.
pub struct KeyValueStore<'a, K, V> {
    name: &'a str,
    backend: &'a mut dyn KvBackend,
    serdes: &'a KvSerdes<K, V>,
}

impl<'a, K: 'static, V: 'static> KeyValueStore<'a, K, V> {
    pub(crate) fn new(
        name: &'a str,
        backend: &'a mut dyn KvBackend,
        serdes: &'a KvSerdes<K, V>,
    ) -> Self {
        Self {
            name,
            backend,
            serdes,
        }
    }

    fn serde_err(&self, source: crate::serde::SerdeError) -> StateError {
        StateError::Serde {
            store: self.name.to_owned(),
            source,
        }
    }

    fn key_bytes(&self, key: &K, buf: &mut BytesMut) -> Result<Bytes, StateError> {
        crate::serde::reserve_chunk(buf);
        if !self
            .serdes
            .key
            .serialize_into(self.name, key, buf)
            .map_err(|e| self.serde_err(e))?
        {
            return Err(StateError::NullKey(self.name.to_owned()));
        }
        Ok(buf.split().freeze())
    }

    fn value_bytes(&self, value: &V, buf: &mut BytesMut) -> Result<Option<Bytes>, StateError> {
        crate::serde::reserve_chunk(buf);
        Ok(self
            .serdes
            .value
            .serialize_into(self.name, value, buf)
            .map_err(|e| self.serde_err(e))?
            .then(|| buf.split().freeze()))
    }

    fn decode_value(&self, bytes: Option<Bytes>) -> Result<Option<V>, StateError> {
        bytes
            .map(|b| self.serdes.value.deserialize(self.name, Some(&b)))
            .transpose()
            .map_err(|e| self.serde_err(e))
    }

    /// The value of `key`, if any.
    pub fn get(&self, key: &K) -> Result<Option<V>, StateError> {
        let k = self.key_bytes(key, &mut BytesMut::new())?;
        let v = self.backend.get(&k)?;
        self.decode_value(v)
    }

    /// The values of many keys in one backend pass; one entry per key, in order.
    pub fn get_batch<'k>(
        &self,
        keys: impl IntoIterator<Item = &'k K>,
    ) -> Result<Vec<Option<V>>, StateError>
    where
        K: 'k,
    {
        let mut buf = BytesMut::new();
        let encoded = keys
            .into_iter()
            .map(|k| self.key_bytes(k, &mut buf))
            .collect::<Result<Vec<_>, _>>()?;
        let refs: Vec<&[u8]> = encoded.iter().map(|k| k.as_ref()).collect();
        self.backend
            .get_batch(&refs)?
            .into_iter()
            .map(|v| self.decode_value(v))
            .collect()
    }

    /// Sets `key` to `value` (a delete when `value` serializes to null).
    pub fn put(&mut self, key: &K, value: &V) -> Result<(), StateError> {
        self.put_batch([(key, value)])
    }

    /// Sets many keys atomically; a later entry for the same key wins.
    pub fn put_batch<'e>(
        &mut self,
        entries: impl IntoIterator<Item = (&'e K, &'e V)>,
    ) -> Result<(), StateError>
    where
        K: 'e,
        V: 'e,
    {
        let entries = entries.into_iter();
        let mut batch = WriteBatch::with_capacity(entries.size_hint().0);
        let mut buf = BytesMut::new();
        for (k, v) in entries {
            let k = self.key_bytes(k, &mut buf)?;
            match self.value_bytes(v, &mut buf)? {
                Some(v) => batch.put(k, v),
                None => batch.delete(k),
            }
        }
        Ok(self.backend.write_batch(batch)?)
    }

    /// Removes `key`.
    pub fn delete(&mut self, key: &K) -> Result<(), StateError> {
        self.delete_batch([key])
    }

    /// Removes many keys atomically.
    pub fn delete_batch<'k>(
        &mut self,
        keys: impl IntoIterator<Item = &'k K>,
    ) -> Result<(), StateError>
    where
        K: 'k,
    {
        let keys = keys.into_iter();
        let mut batch = WriteBatch::with_capacity(keys.size_hint().0);
        let mut buf = BytesMut::new();
        for k in keys {
            batch.delete(self.key_bytes(k, &mut buf)?);
        }
        Ok(self.backend.write_batch(batch)?)
    }

    /// The entries with keys between `from` and `to`, ordered by serialized key bytes (for
    /// the big-endian integer serdes that is numeric order for non-negative numbers).
    pub fn range(&self, from: Bound<&K>, to: Bound<&K>) -> Result<Vec<(K, V)>, StateError> {
        let mut buf = BytesMut::new();
        let encode = |b: Bound<&K>, buf: &mut BytesMut| -> Result<Bound<Bytes>, StateError> {
            Ok(match b {
                Bound::Included(k) => Bound::Included(self.key_bytes(k, buf)?),
                Bound::Excluded(k) => Bound::Excluded(self.key_bytes(k, buf)?),
                Bound::Unbounded => Bound::Unbounded,
            })
        };
        let from = encode(from, &mut buf)?;
        let to = encode(to, &mut buf)?;
        let entries = self
            .backend
            .range(as_slice_bound(&from), as_slice_bound(&to))?;
        entries
            .into_iter()
            .map(|(k, v)| {
                let key = self
                    .serdes
                    .key
                    .deserialize(self.name, Some(&k))
                    .map_err(|e| self.serde_err(e))?;
                let value = self
                    .serdes
                    .value
                    .deserialize(self.name, Some(&v))
                    .map_err(|e| self.serde_err(e))?;
                Ok((key, value))
            })
            .collect()
    }

    /// Every entry, in key order.
    pub fn all(&self) -> Result<Vec<(K, V)>, StateError> {
        self.range(Bound::Unbounded, Bound::Unbounded)
    }
}

fn as_slice_bound(b: &Bound<Bytes>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(k.as_ref()),
        Bound::Excluded(k) => Bound::Excluded(k.as_ref()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::serde::{I64Serde, Nullable, StringSerde};
    use crate::state::MemoryStore;

    #[test]
    fn typed_batch_operations_roundtrip() {
        let serdes = KvSerdes::<String, i64> {
            key: Arc::new(StringSerde),
            value: Arc::new(I64Serde),
        };
        let mut backend = MemoryStore::new("counts");
        let mut store = KeyValueStore::new("counts", &mut backend, &serdes);
        let (a, b, c) = ("a".to_owned(), "b".to_owned(), "c".to_owned());
        store.put_batch([(&a, &1), (&b, &2), (&c, &3)]).unwrap();
        assert_eq!(
            store.get_batch([&c, &a, &"zz".to_owned()]).unwrap(),
            vec![Some(3), Some(1), None]
        );
        store.delete_batch([&a]).unwrap();
        assert_eq!(
            store.range(Bound::Included(&b), Bound::Unbounded).unwrap(),
            vec![(b.clone(), 2), (c.clone(), 3)]
        );
        assert_eq!(store.all().unwrap().len(), 2);
        store.put(&b, &20).unwrap();
        assert_eq!(store.get(&b).unwrap(), Some(20));
    }

    #[test]
    fn null_value_put_is_a_delete() {
        let serdes = KvSerdes::<String, Option<i64>> {
            key: Arc::new(StringSerde),
            value: Arc::new(Nullable(I64Serde)),
        };
        let mut backend = MemoryStore::new("s");
        let mut store = KeyValueStore::new("s", &mut backend, &serdes);
        let k = "k".to_owned();
        store.put(&k, &Some(1)).unwrap();
        store.put(&k, &None).unwrap();
        assert_eq!(store.get(&k).unwrap(), None);
        assert!(store.all().unwrap().is_empty());
    }

    #[test]
    fn undecodable_stored_value_is_a_typed_error() {
        let serdes = KvSerdes::<String, i64> {
            key: Arc::new(StringSerde),
            value: Arc::new(I64Serde),
        };
        let mut backend = MemoryStore::new("s");
        let mut batch = WriteBatch::new();
        batch.put("k", "not eight bytes");
        backend.write_batch(batch).unwrap();
        let store = KeyValueStore::new("s", &mut backend, &serdes);
        let err = store.get(&"k".to_owned()).unwrap_err();
        assert!(matches!(err, StateError::Serde { .. }), "{err}");
    }
}
