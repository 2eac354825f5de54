//! Reading and freezing through a backend's two uncommitted layers (see
//! [`KvBackend::freeze`](crate::KvBackend::freeze)): the *pending* [`WriteBuffer`] that takes
//! new writes and, while a commit is under way, the read-only *frozen* one that the commit
//! persists. Reads look in the pending layer, then the frozen one, then the durable state.
//!
//! Backends keep `pending: WriteBuffer` and `frozen: Option<WriteBuffer>` and call these
//! functions, so the layering rules live in one place.

use std::ops::Bound;

use bytes::Bytes;

use crate::{KeyValue, StoreError, WriteBatch, WriteBuffer};

/// Moves the pending writes into the frozen layer, leaving `pending` empty and without a
/// savepoint. With a frozen layer already there, the pending writes are applied over it (a
/// newer write of a key wins), so the frozen layer is always "every write up to the last
/// freeze".
pub fn freeze(pending: &mut WriteBuffer, frozen: &mut Option<WriteBuffer>) {
    pending.release_savepoint();
    match frozen {
        None => *frozen = Some(std::mem::take(pending)),
        Some(layer) => {
            layer.apply(pending.to_write_ops().into_iter().collect::<WriteBatch>());
            pending.clear();
        }
    }
}

/// The uncommitted state of `key`: `None` when neither layer wrote it (read the durable
/// state), `Some(None)` for a delete, `Some(Some(v))` for a put. The pending layer shadows
/// the frozen one.
pub fn lookup<'a>(
    pending: &'a WriteBuffer,
    frozen: Option<&'a WriteBuffer>,
    key: &[u8],
) -> Option<Option<&'a Bytes>> {
    pending
        .lookup(key)
        .or_else(|| frozen.and_then(|layer| layer.lookup(key)))
}

/// Merges both layers over `committed` (the durable entries of the same bounds, in key
/// order): the frozen layer first, then the pending one over it. The result is in key order.
pub fn merge_range(
    pending: &WriteBuffer,
    frozen: Option<&WriteBuffer>,
    committed: impl IntoIterator<Item = KeyValue>,
    from: Bound<&[u8]>,
    to: Bound<&[u8]>,
) -> Vec<KeyValue> {
    match frozen {
        Some(layer) => pending.merge_range(layer.merge_range(committed, from, to), from, to),
        None => pending.merge_range(committed, from, to),
    }
}

/// `Err(UncommittedWrites)` while either layer holds writes (restores write to the durable
/// state directly and require none).
pub fn refuse_if_uncommitted(
    pending: &WriteBuffer,
    frozen: Option<&WriteBuffer>,
    store: &str,
) -> Result<(), StoreError> {
    pending.refuse_if_pending(store)?;
    match frozen {
        Some(layer) => layer.refuse_if_pending(store),
        None => Ok(()),
    }
}

/// Number of keys written in either layer (a key in both counts twice).
pub fn uncommitted_len(pending: &WriteBuffer, frozen: Option<&WriteBuffer>) -> usize {
    pending.len() + frozen.map_or(0, WriteBuffer::len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn buffer(ops: &[(&str, Option<&str>)]) -> WriteBuffer {
        let mut buffer = WriteBuffer::new();
        let mut batch = WriteBatch::new();
        for (key, value) in ops {
            match value {
                Some(v) => batch.put(b(key), b(v)),
                None => batch.delete(b(key)),
            }
        }
        buffer.apply(batch);
        buffer
    }

    #[test]
    fn pending_shadows_frozen_which_shadows_committed() {
        let mut pending = buffer(&[("a", Some("1")), ("b", None)]);
        let mut frozen = None;
        freeze(&mut pending, &mut frozen);
        assert!(pending.is_empty());
        pending.apply(buffer_batch(&[("a", Some("2")), ("c", Some("3"))]));
        assert_eq!(lookup(&pending, frozen.as_ref(), b"a"), Some(Some(&b("2"))));
        assert_eq!(lookup(&pending, frozen.as_ref(), b"b"), Some(None));
        assert_eq!(lookup(&pending, frozen.as_ref(), b"d"), None);
        let committed = vec![(b("b"), b("old")), (b("d"), b("4"))];
        let merged = merge_range(
            &pending,
            frozen.as_ref(),
            committed,
            Bound::Unbounded,
            Bound::Unbounded,
        );
        assert_eq!(
            merged,
            vec![(b("a"), b("2")), (b("c"), b("3")), (b("d"), b("4"))]
        );
        assert_eq!(uncommitted_len(&pending, frozen.as_ref()), 4);
        assert!(refuse_if_uncommitted(&WriteBuffer::new(), frozen.as_ref(), "s").is_err());
    }

    #[test]
    fn freezing_again_merges_the_new_writes_into_the_frozen_layer() {
        let mut pending = buffer(&[("a", Some("1")), ("b", Some("1"))]);
        let mut frozen = None;
        freeze(&mut pending, &mut frozen);
        pending.apply(buffer_batch(&[("a", None), ("c", Some("2"))]));
        pending.set_savepoint();
        freeze(&mut pending, &mut frozen);
        assert!(pending.is_empty());
        let layer = frozen.expect("frozen");
        assert_eq!(layer.lookup(b"a"), Some(None));
        assert_eq!(layer.lookup(b"b"), Some(Some(&b("1"))));
        assert_eq!(layer.lookup(b"c"), Some(Some(&b("2"))));
        // The savepoint did not survive the freeze: nothing to undo in the new layer.
        pending.apply(buffer_batch(&[("d", Some("3"))]));
        pending.rollback_to_savepoint();
        assert_eq!(pending.lookup(b"d"), Some(Some(&b("3"))));
    }

    fn buffer_batch(ops: &[(&str, Option<&str>)]) -> WriteBatch {
        buffer(ops).to_write_ops().into_iter().collect()
    }
}
