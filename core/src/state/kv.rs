use std::ops::Bound;

use bytes::{Bytes, BytesMut};

use super::{KvBackend, KvSerdes, StateError, WriteBatch};

/// Room per entry an encode buffer starts with (a key and a small value).
const ENTRY_ESTIMATE: usize = 32;
/// Below this much room, a lookup buffer grows by [`ENTRY_GROWTH`] before the next key.
const ENTRY_LOW_WATER: usize = 32;
/// How much a lookup buffer grows at a time.
const ENTRY_GROWTH: usize = 1024;

/// An encode buffer for one call of `entries` keys (and values).
fn encode_buffer(entries: usize) -> BytesMut {
    BytesMut::with_capacity(entries.clamp(1, 1024) * ENTRY_ESTIMATE)
}

/// Makes room for the next key split off a lookup buffer made by [`encode_buffer`].
fn reserve_entry(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < ENTRY_LOW_WATER {
        buf.reserve(ENTRY_GROWTH);
    }
}

/// The encoded keys and values of a write, as the one allocation they will share while they
/// live — in the write buffer until commit, in the memory store for good — so it is copied
/// to its exact size when the encode buffer is mostly spare room: a `put` must not pin a
/// buffer sized for many entries (with 32 KiB chunks, 10,000 keys put one at a time pinned
/// 320 MiB).
fn pinned(buf: BytesMut) -> Bytes {
    // A buffer that grew by doubling wastes at most half: kept as it is.
    if buf.capacity() >= 2 * buf.len() + 256 {
        Bytes::copy_from_slice(&buf)
    } else {
        buf.freeze()
    }
}

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

    /// The encoding of `key`, split off `buf` (for lookups: the key is dropped after the call).
    fn key_bytes(&self, key: &K, buf: &mut BytesMut) -> Result<Bytes, StateError> {
        reserve_entry(buf);
        self.append_key(key, buf)?;
        Ok(buf.split().freeze())
    }

    /// Appends the encoding of `key` to `buf` (a null key is an error).
    fn append_key(&self, key: &K, buf: &mut BytesMut) -> Result<(), StateError> {
        if self
            .serdes
            .key
            .serialize_into(self.name, key, buf)
            .map_err(|e| self.serde_err(e))?
        {
            Ok(())
        } else {
            Err(StateError::NullKey(self.name.to_owned()))
        }
    }

    fn decode_value(&self, bytes: Option<Bytes>) -> Result<Option<V>, StateError> {
        bytes
            .map(|b| self.serdes.value.deserialize(self.name, Some(&b)))
            .transpose()
            .map_err(|e| self.serde_err(e))
    }

    /// The value of `key`, if any.
    pub fn get(&self, key: &K) -> Result<Option<V>, StateError> {
        let k = self.key_bytes(key, &mut encode_buffer(1))?;
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
        // Every key encoded into one buffer, read back as slices of it: no handle per key.
        let keys = keys.into_iter();
        let mut buf = encode_buffer(keys.size_hint().0);
        let mut ends = Vec::with_capacity(keys.size_hint().0);
        for k in keys {
            self.append_key(k, &mut buf)?;
            ends.push(buf.len());
        }
        let mut start = 0;
        let refs: Vec<&[u8]> = ends
            .iter()
            .map(|&end| {
                let key = &buf[start..end];
                start = end;
                key
            })
            .collect();
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
        let mut scratch = encode_buffer(entries.size_hint().0);
        // (key start, key end, value end; `None`: the value is null, a delete).
        let mut spans: Vec<(usize, usize, Option<usize>)> =
            Vec::with_capacity(entries.size_hint().0);
        for (k, v) in entries {
            let start = scratch.len();
            self.append_key(k, &mut scratch)?;
            let key_end = scratch.len();
            let value = self
                .serdes
                .value
                .serialize_into(self.name, v, &mut scratch)
                .map_err(|e| self.serde_err(e))?;
            spans.push((start, key_end, value.then_some(scratch.len())));
        }
        let all = pinned(scratch);
        let mut batch = WriteBatch::with_capacity(spans.len());
        for (start, key_end, value_end) in spans {
            let key = all.slice(start..key_end);
            match value_end {
                Some(end) => batch.put(key, all.slice(key_end..end)),
                None => batch.delete(key),
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
        let mut scratch = encode_buffer(keys.size_hint().0);
        let mut ends = Vec::with_capacity(keys.size_hint().0);
        for k in keys {
            self.append_key(k, &mut scratch)?;
            ends.push(scratch.len());
        }
        let all = pinned(scratch);
        let mut batch = WriteBatch::with_capacity(ends.len());
        let mut start = 0;
        for end in ends {
            batch.delete(all.slice(start..end));
            start = end;
        }
        Ok(self.backend.write_batch(batch)?)
    }

    /// The entries with keys between `from` and `to`, ordered by serialized key bytes (for
    /// the big-endian integer serdes that is numeric order for non-negative numbers).
    pub fn range(&self, from: Bound<&K>, to: Bound<&K>) -> Result<Vec<(K, V)>, StateError> {
        let mut buf = encode_buffer(2);
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

    #[test]
    fn a_roomy_encode_buffer_is_copied_to_its_exact_size_a_tight_one_is_not() {
        let mut roomy = BytesMut::with_capacity(32 * 1024);
        roomy.extend_from_slice(b"key-1value-1");
        let roomy_ptr = roomy.as_ptr();
        let pinned_roomy = pinned(roomy);
        assert_eq!(&pinned_roomy[..], b"key-1value-1");
        assert_ne!(
            pinned_roomy.as_ptr(),
            roomy_ptr,
            "copied out of the 32 KiB buffer"
        );

        let mut tight = BytesMut::with_capacity(64);
        tight.extend_from_slice(&[7; 60]);
        let tight_ptr = tight.as_ptr();
        let pinned_tight = pinned(tight);
        assert_eq!(pinned_tight.as_ptr(), tight_ptr, "frozen in place, no copy");
        assert_eq!(pinned_tight.len(), 60);
    }

    #[test]
    fn put_batch_with_null_values_deletes_and_every_entry_round_trips() {
        let mut backend = MemoryStore::new("s");
        let serdes = KvSerdes::<String, Option<String>> {
            key: Arc::new(StringSerde),
            value: Arc::new(Nullable(StringSerde)),
        };
        let mut store = KeyValueStore::new("s", &mut backend, &serdes);
        let (a, b, c) = ("a".to_owned(), "bb".to_owned(), "ccc".to_owned());
        store
            .put_batch([(&a, &Some("1".to_owned())), (&b, &Some("22".to_owned()))])
            .unwrap();
        store
            .put_batch([(&b, &None), (&c, &Some("333".to_owned()))])
            .unwrap();
        assert_eq!(
            store.get_batch([&a, &b, &c]).unwrap(),
            vec![
                Some(Some("1".to_owned())),
                None,
                Some(Some("333".to_owned()))
            ]
        );
        store.delete_batch([&a, &c]).unwrap();
        assert_eq!(
            store.get_batch([&a, &b, &c]).unwrap(),
            vec![None, None, None]
        );
    }
}
