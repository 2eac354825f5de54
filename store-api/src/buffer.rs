use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;

use crate::{KeyValue, WriteBatch, WriteOp};

/// The writes of a store since its last commit, newest write per key, in key order.
///
/// Backends read through it (a pending write shadows the committed value) and drain it into
/// their durable state on commit. `None` as a value is a pending delete.
///
/// A savepoint ([`WriteBuffer::set_savepoint`]) records, while set, how to undo each write, so
/// the writes of one batch can be undone without losing the earlier pending writes.
#[derive(Debug, Default, Clone)]
pub struct WriteBuffer {
    pending: BTreeMap<Bytes, Option<Bytes>>,
    /// Set while a savepoint is active: for each write since it, the key and its previous
    /// pending state (`None`: the key had no pending write).
    undo: Option<Vec<(Bytes, Option<Option<Bytes>>)>>,
}

impl WriteBuffer {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records every operation of `batch`; cannot fail, so a batch is applied whole.
    pub fn apply(&mut self, batch: WriteBatch) {
        match &mut self.undo {
            None => {
                for op in batch.into_ops() {
                    self.pending.insert(op.key, op.value);
                }
            }
            Some(undo) => {
                for op in batch.into_ops() {
                    let previous = self.pending.insert(op.key.clone(), op.value);
                    undo.push((op.key, previous));
                }
            }
        }
    }

    /// Starts recording how to undo the writes from now on (replacing an earlier savepoint).
    pub fn set_savepoint(&mut self) {
        match &mut self.undo {
            Some(undo) => undo.clear(),
            None => self.undo = Some(Vec::new()),
        }
    }

    /// Undoes every write since the savepoint, which stays set. Without a savepoint, nothing
    /// happens.
    pub fn rollback_to_savepoint(&mut self) {
        let Some(undo) = &mut self.undo else {
            return;
        };
        // Undo newest first, so a key written twice gets its oldest state back.
        while let Some((key, previous)) = undo.pop() {
            match previous {
                Some(value) => {
                    self.pending.insert(key, value);
                }
                None => {
                    self.pending.remove(&key);
                }
            }
        }
    }

    /// Stops recording undo information; the writes since the savepoint stay.
    pub fn release_savepoint(&mut self) {
        self.undo = None;
    }

    /// `None`: the key has no pending write. `Some(None)`: a pending delete.
    /// `Some(Some(v))`: a pending put of `v`.
    pub fn lookup(&self, key: &[u8]) -> Option<Option<&Bytes>> {
        self.pending.get(key).map(Option::as_ref)
    }

    /// Merges the pending writes in `[from, to]` over `committed`, which must be the committed
    /// entries of the same bounds in key order. The result is in key order.
    pub fn merge_range(
        &self,
        committed: impl IntoIterator<Item = KeyValue>,
        from: Bound<&[u8]>,
        to: Bound<&[u8]>,
    ) -> Vec<KeyValue> {
        if crate::is_empty_range(from, to) {
            return Vec::new();
        }
        let mut pending = self
            .pending
            .range::<[u8], _>((from, to))
            .map(|(k, v)| (k.clone(), v.clone()))
            .peekable();
        let mut committed = committed.into_iter().peekable();
        let mut out = Vec::new();
        loop {
            let take_pending = match (committed.peek(), pending.peek()) {
                (None, None) => break,
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some((ck, _)), Some((pk, _))) => {
                    if pk <= ck {
                        if pk == ck {
                            // The pending write shadows the committed entry.
                            committed.next();
                        }
                        true
                    } else {
                        false
                    }
                }
            };
            if take_pending {
                if let Some((k, Some(v))) = pending.next() {
                    out.push((k, v));
                }
            } else if let Some(kv) = committed.next() {
                out.push(kv);
            }
        }
        out
    }

    /// The pending writes in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&Bytes, Option<&Bytes>)> {
        self.pending.iter().map(|(k, v)| (k, v.as_ref()))
    }

    /// The pending writes as [`WriteOp`]s in key order (reference-counted clones of the keys
    /// and values).
    pub fn to_write_ops(&self) -> Vec<WriteOp> {
        self.pending
            .iter()
            .map(|(key, value)| WriteOp {
                key: key.clone(),
                value: value.clone(),
            })
            .collect()
    }

    /// Number of distinct keys with a pending write.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// `Err(UncommittedWrites)` for `store` while writes are pending: what restores (which
    /// write to durable state directly) require first.
    pub fn refuse_if_pending(&self, store: &str) -> Result<(), crate::StoreError> {
        if self.is_empty() {
            return Ok(());
        }
        Err(crate::StoreError::UncommittedWrites {
            store: store.to_owned(),
            count: self.len(),
        })
    }

    /// Drops every pending write (and the savepoint's undo information with them).
    pub fn clear(&mut self) {
        self.pending.clear();
        if let Some(undo) = &mut self.undo {
            undo.clear();
        }
    }

    /// Takes the pending writes out, leaving the buffer empty (an active savepoint now starts
    /// from the empty buffer).
    pub fn take(&mut self) -> BTreeMap<Bytes, Option<Bytes>> {
        if let Some(undo) = &mut self.undo {
            undo.clear();
        }
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(k: &str, v: &str) -> KeyValue {
        (
            Bytes::copy_from_slice(k.as_bytes()),
            Bytes::copy_from_slice(v.as_bytes()),
        )
    }

    #[test]
    fn later_write_to_a_key_wins() {
        let mut buf = WriteBuffer::new();
        let mut b = WriteBatch::new();
        b.put("a", "1");
        b.put("a", "2");
        b.put("b", "1");
        b.delete("b");
        buf.apply(b);
        assert_eq!(buf.lookup(b"a"), Some(Some(&Bytes::from_static(b"2"))));
        assert_eq!(buf.lookup(b"b"), Some(None));
        assert_eq!(buf.lookup(b"c"), None);
        assert_eq!(buf.len(), 2);
    }

    #[test]
    fn write_ops_are_the_latest_write_per_key_in_key_order() {
        let mut buf = WriteBuffer::new();
        let mut b = WriteBatch::new();
        b.put("c", "1");
        b.put("a", "1");
        b.delete("c");
        b.put("b", "1");
        b.put("b", "2");
        buf.apply(b);
        let op = |k: &'static str, v: Option<&'static str>| WriteOp {
            key: Bytes::from_static(k.as_bytes()),
            value: v.map(|v| Bytes::from_static(v.as_bytes())),
        };
        assert_eq!(
            buf.to_write_ops(),
            vec![op("a", Some("1")), op("b", Some("2")), op("c", None)]
        );
        buf.clear();
        assert!(buf.to_write_ops().is_empty());
    }

    #[test]
    fn merge_range_shadows_and_deletes_committed_entries() {
        let mut buf = WriteBuffer::new();
        let mut b = WriteBatch::new();
        b.put("b", "new");
        b.delete("c");
        b.put("e", "5");
        b.put("z", "out of range");
        buf.apply(b);
        let committed = vec![kv("a", "1"), kv("b", "old"), kv("c", "3"), kv("d", "4")];
        let merged = buf.merge_range(committed, Bound::Unbounded, Bound::Excluded(b"f"));
        assert_eq!(
            merged,
            vec![kv("a", "1"), kv("b", "new"), kv("d", "4"), kv("e", "5")]
        );
    }

    #[test]
    fn rollback_to_savepoint_restores_earlier_pending_writes() {
        let mut buf = WriteBuffer::new();
        let mut b = WriteBatch::new();
        b.put("a", "1");
        b.delete("d");
        buf.apply(b);
        buf.set_savepoint();
        let mut b = WriteBatch::new();
        b.put("a", "2");
        b.put("a", "3");
        b.put("b", "new");
        b.put("d", "back");
        buf.apply(b);
        assert_eq!(buf.lookup(b"a"), Some(Some(&Bytes::from_static(b"3"))));
        buf.rollback_to_savepoint();
        assert_eq!(buf.lookup(b"a"), Some(Some(&Bytes::from_static(b"1"))));
        assert_eq!(buf.lookup(b"b"), None);
        assert_eq!(buf.lookup(b"d"), Some(None));
        assert_eq!(buf.len(), 2);
        // The savepoint stays: later writes can be undone again; after release they stay.
        let mut b = WriteBatch::new();
        b.put("c", "x");
        buf.apply(b.clone());
        buf.rollback_to_savepoint();
        assert_eq!(buf.lookup(b"c"), None);
        buf.release_savepoint();
        buf.apply(b);
        buf.rollback_to_savepoint();
        assert_eq!(buf.lookup(b"c"), Some(Some(&Bytes::from_static(b"x"))));
    }

    #[test]
    fn merge_range_respects_inclusive_bounds() {
        let mut buf = WriteBuffer::new();
        let mut b = WriteBatch::new();
        b.put("a", "1");
        b.put("b", "2");
        b.put("c", "3");
        buf.apply(b);
        let merged = buf.merge_range(Vec::new(), Bound::Included(b"b"), Bound::Included(b"c"));
        assert_eq!(merged, vec![kv("b", "2"), kv("c", "3")]);
    }
}
