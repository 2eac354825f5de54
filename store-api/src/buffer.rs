use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::OnceLock;

use bytes::Bytes;

use crate::{KeyValue, WriteBatch, WriteOp, key_order};

/// Newest pending state per key: `Some(value)` a put, `None` a delete.
type Pending = HashMap<Bytes, Option<Bytes>, foldhash::fast::RandomState>;

/// The writes of a store since its last commit, newest write per key.
///
/// Backends read through it (a pending write shadows the committed value) and drain it into
/// their durable state on commit. `None` as a value is a pending delete.
///
/// The writes sit in a hash map (foldhash, randomly seeded per buffer), so a write or a lookup
/// costs one hash and one probe whatever the number of pending keys, instead of a B-tree
/// descent. Key order is made only where it is asked for: [`iter`], [`to_write_ops`],
/// [`drain_sorted`] and [`take`] sort the whole buffer once and keep that sorted copy until the
/// next write, so a commit that lists the writes for the changelog and then drains them sorts
/// once. [`merge_range`] uses the sorted copy when there is one, and otherwise sorts the writes
/// within its bounds (a pass over the pending keys plus a sort of those in range), which keeps
/// range reads between writes from sorting everything each time. Everything this type hands
/// out is in key order; the hash map's own order never leaks, so runs stay deterministic.
///
/// A savepoint ([`WriteBuffer::set_savepoint`]) records, while set, how to undo each write, so
/// the writes of one batch can be undone without losing the earlier pending writes.
///
/// [`iter`]: WriteBuffer::iter
/// [`to_write_ops`]: WriteBuffer::to_write_ops
/// [`drain_sorted`]: WriteBuffer::drain_sorted
/// [`take`]: WriteBuffer::take
/// [`merge_range`]: WriteBuffer::merge_range
#[derive(Debug, Default, Clone)]
pub struct WriteBuffer {
    pending: Pending,
    /// Set while a savepoint is active: for each write since it, the key and its previous
    /// pending state (`None`: the key had no pending write).
    undo: Option<Vec<(Bytes, Option<Option<Bytes>>)>>,
    /// The pending writes in key order (reference-counted clones), made by the first reader
    /// that needs the whole order after a change; every change drops it.
    sorted: OnceLock<Vec<(Bytes, Option<Bytes>)>>,
}

/// Whether `key` is at or after the lower bound `from`.
fn in_bounds_from(key: &[u8], from: Bound<&[u8]>) -> bool {
    match from {
        Bound::Included(f) => key_order(key, f).is_ge(),
        Bound::Excluded(f) => key_order(key, f).is_gt(),
        Bound::Unbounded => true,
    }
}

/// Whether `key` is at or before the upper bound `to`.
fn in_bounds_to(key: &[u8], to: Bound<&[u8]>) -> bool {
    match to {
        Bound::Included(t) => key_order(key, t).is_le(),
        Bound::Excluded(t) => key_order(key, t).is_lt(),
        Bound::Unbounded => true,
    }
}

/// Sorts pending entries by key (keys are distinct: a map's).
fn sort_by_key<V>(entries: &mut [(&Bytes, V)]) {
    entries.sort_unstable_by(|a, b| key_order(a.0, b.0));
}

impl WriteBuffer {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records every operation of `batch`; cannot fail, so a batch is applied whole.
    pub fn apply(&mut self, batch: WriteBatch) {
        if batch.is_empty() {
            return;
        }
        self.changed();
        match &mut self.undo {
            None => {
                for op in batch.into_ops() {
                    self.pending.insert(op.key, op.value);
                }
            }
            Some(undo) => {
                undo.reserve(batch.len());
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
        if !undo.is_empty() {
            self.sorted.take();
        }
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
    ///
    /// Costs a pass over every pending key and a sort of those within the bounds.
    pub fn merge_range(
        &self,
        committed: impl IntoIterator<Item = KeyValue>,
        from: Bound<&[u8]>,
        to: Bound<&[u8]>,
    ) -> Vec<KeyValue> {
        if crate::is_empty_range(from, to) {
            return Vec::new();
        }
        let in_range: Vec<(&Bytes, &Option<Bytes>)> = match self.sorted.get() {
            Some(sorted) => {
                let start = sorted.partition_point(|(k, _)| !in_bounds_from(k, from));
                sorted[start..]
                    .iter()
                    .take_while(|(k, _)| in_bounds_to(k, to))
                    .map(|(k, v)| (k, v))
                    .collect()
            }
            None => {
                let mut in_range: Vec<(&Bytes, &Option<Bytes>)> = self
                    .pending
                    .iter()
                    .filter(|(k, _)| in_bounds_from(k, from) && in_bounds_to(k, to))
                    .collect();
                sort_by_key(&mut in_range);
                in_range
            }
        };
        let mut pending = in_range.into_iter().peekable();
        let mut committed = committed.into_iter().peekable();
        let mut out = Vec::new();
        loop {
            let take_pending = match (committed.peek(), pending.peek()) {
                (None, None) => break,
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some((ck, _)), Some((pk, _))) => match key_order(pk, ck) {
                    std::cmp::Ordering::Less => true,
                    std::cmp::Ordering::Equal => {
                        // The pending write shadows the committed entry.
                        committed.next();
                        true
                    }
                    std::cmp::Ordering::Greater => false,
                },
            };
            if take_pending {
                if let Some((k, Some(v))) = pending.next() {
                    out.push((k.clone(), v.clone()));
                }
            } else if let Some(kv) = committed.next() {
                out.push(kv);
            }
        }
        out
    }

    /// The pending writes in key order (sorted at the first call after a change).
    pub fn iter(&self) -> impl Iterator<Item = (&Bytes, Option<&Bytes>)> {
        self.sorted().iter().map(|(k, v)| (k, v.as_ref()))
    }

    /// The sorted copy of the pending writes, made if there is none.
    fn sorted(&self) -> &[(Bytes, Option<Bytes>)] {
        self.sorted.get_or_init(|| {
            let mut entries: Vec<(Bytes, Option<Bytes>)> = self
                .pending
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            entries.sort_unstable_by(|a, b| key_order(&a.0, &b.0));
            entries
        })
    }

    /// Drops the sorted copy: the pending writes changed.
    fn changed(&mut self) {
        self.sorted.take();
    }

    /// The pending writes as [`WriteOp`]s in key order (reference-counted clones of the keys
    /// and values).
    pub fn to_write_ops(&self) -> Vec<WriteOp> {
        self.iter()
            .map(|(key, value)| WriteOp {
                key: key.clone(),
                value: value.cloned(),
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
        self.changed();
        self.pending.clear();
        if let Some(undo) = &mut self.undo {
            undo.clear();
        }
    }

    /// Takes the pending writes out in key order, leaving the buffer empty (an active
    /// savepoint now starts from the empty buffer): what a backend's commit writes.
    pub fn drain_sorted(&mut self) -> Vec<(Bytes, Option<Bytes>)> {
        if let Some(undo) = &mut self.undo {
            undo.clear();
        }
        if let Some(sorted) = self.sorted.take() {
            self.pending.clear();
            return sorted;
        }
        let mut entries: Vec<(Bytes, Option<Bytes>)> = self.pending.drain().collect();
        entries.sort_unstable_by(|a, b| key_order(&a.0, &b.0));
        entries
    }

    /// Takes the pending writes out, leaving the buffer empty (an active savepoint now starts
    /// from the empty buffer). [`drain_sorted`](WriteBuffer::drain_sorted) does the same
    /// without building a map.
    pub fn take(&mut self) -> BTreeMap<Bytes, Option<Bytes>> {
        // Sorted input: the map is built in one pass.
        self.drain_sorted().into_iter().collect()
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
    #[test]
    fn drain_sorted_and_take_give_key_order_and_empty_the_buffer() {
        let mut buf = WriteBuffer::new();
        let mut b = WriteBatch::new();
        // Keys of 8 bytes and more (compared as integers first) and shorter ones, out of order.
        for k in [
            "zz",
            "abcdefgh2",
            "abcdefgh",
            "b",
            "abcdefgi",
            "a",
            "abcdefgh1",
        ] {
            b.put(k, k);
        }
        b.delete("b");
        buf.apply(b.clone());
        let keys = |entries: Vec<(Bytes, Option<Bytes>)>| -> Vec<Bytes> {
            entries.into_iter().map(|(k, _)| k).collect()
        };
        let want: Vec<Bytes> = [
            "a",
            "abcdefgh",
            "abcdefgh1",
            "abcdefgh2",
            "abcdefgi",
            "b",
            "zz",
        ]
        .map(|k: &'static str| Bytes::from_static(k.as_bytes()))
        .to_vec();
        let iterated: Vec<Bytes> = buf.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(iterated, want);
        buf.set_savepoint();
        let drained = buf.drain_sorted();
        assert_eq!(drained[5], (Bytes::from_static(b"b"), None));
        assert_eq!(keys(drained), want);
        assert!(buf.is_empty());
        // The savepoint now starts from the empty buffer.
        buf.apply(b.clone());
        buf.rollback_to_savepoint();
        assert!(buf.is_empty());
        buf.apply(b);
        let taken: Vec<Bytes> = buf.take().into_keys().collect();
        assert_eq!(taken, want);
        assert!(buf.is_empty());
    }

    /// Writes, savepoints, rollbacks and range merges against a `BTreeMap` model, in a long
    /// pseudo-random sequence.
    #[test]
    fn matches_an_ordered_map_model() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let key = |i: u64| Bytes::from(format!("key-{i:02}").repeat(1 + (i % 3) as usize));
        let mut buf = WriteBuffer::new();
        let mut model: BTreeMap<Bytes, Option<Bytes>> = BTreeMap::new();
        let mut saved: Option<BTreeMap<Bytes, Option<Bytes>>> = None;
        for step in 0..3_000 {
            match next(10) {
                0..=5 => {
                    let mut b = WriteBatch::new();
                    for _ in 0..next(6) {
                        let k = key(next(40));
                        if next(4) == 0 {
                            b.delete(k.clone());
                            model.insert(k, None);
                        } else {
                            let v = Bytes::from(format!("v{step}"));
                            b.put(k.clone(), v.clone());
                            model.insert(k, Some(v));
                        }
                    }
                    buf.apply(b);
                }
                6 => {
                    buf.set_savepoint();
                    saved = Some(model.clone());
                }
                7 => {
                    buf.rollback_to_savepoint();
                    if let Some(saved) = &saved {
                        model = saved.clone();
                    }
                }
                8 => {
                    buf.release_savepoint();
                    saved = None;
                }
                _ => {
                    if next(8) == 0 {
                        let drained = buf.drain_sorted();
                        let want: Vec<(Bytes, Option<Bytes>)> =
                            std::mem::take(&mut model).into_iter().collect();
                        assert_eq!(drained, want, "step {step}");
                        if saved.is_some() {
                            saved = Some(BTreeMap::new());
                        }
                    }
                }
            }
            let (lo, hi) = (key(next(40)), key(next(40)));
            let from = Bound::Included(lo.as_ref());
            let to = Bound::Excluded(hi.as_ref());
            let committed = [
                (key(5), Bytes::from_static(b"c")),
                (key(30), Bytes::from_static(b"c")),
            ];
            let in_range: Vec<KeyValue> = committed
                .iter()
                .filter(|(k, _)| in_bounds_from(k, from) && in_bounds_to(k, to))
                .cloned()
                .collect();
            let mut want: BTreeMap<Bytes, Option<Bytes>> = in_range
                .iter()
                .map(|(k, v)| (k.clone(), Some(v.clone())))
                .collect();
            if !crate::is_empty_range(from, to) {
                for (k, v) in model.range::<[u8], _>((from, to)) {
                    want.insert(k.clone(), v.clone());
                }
            }
            let want: Vec<KeyValue> = want
                .into_iter()
                .filter_map(|(k, v)| Some((k, v?)))
                .collect();
            assert_eq!(buf.merge_range(in_range, from, to), want, "step {step}");
            assert_eq!(buf.len(), model.len(), "step {step}");
            let ops: Vec<(Bytes, Option<Bytes>)> = buf
                .to_write_ops()
                .into_iter()
                .map(|op| (op.key, op.value))
                .collect();
            let modelled: Vec<(Bytes, Option<Bytes>)> =
                model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            assert_eq!(ops, modelled, "step {step}");
            let probe = key(next(40));
            assert_eq!(
                buf.lookup(&probe),
                model.get(&probe).map(Option::as_ref),
                "step {step}"
            );
        }
    }
}
