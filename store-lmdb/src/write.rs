//! Writing key-ordered entries into an LMDB write transaction, shared by commits and restores.

use heed::types::Bytes as RawBytes;
use heed::{PutFlags, RwTxn};
use kstreams_store_api::WriteOp;

use crate::env::RawDb;

/// Bytewise (LMDB's) order of two keys; see [`kstreams_store_api::key_order`].
pub(crate) use kstreams_store_api::key_order;

/// Sorts `ops` by key and keeps one operation per key, the last one of the batch (a later write
/// to a key wins).
pub(crate) fn sorted_unique(mut ops: Vec<WriteOp>) -> Vec<WriteOp> {
    // A stable sort keeps equal keys in batch order, so the last of a run is the latest write.
    // (Already sorted input, e.g. a compacted changelog of ordered keys, is one linear pass.)
    ops.sort_by(|a, b| key_order(&a.key, &b.key));
    // `dedup_by` passes (later, kept) and removes `later` when told to: move its value into the
    // kept slot first.
    ops.dedup_by(|later, kept| {
        if later.key == kept.key {
            kept.value = later.value.take();
            true
        } else {
            false
        }
    });
    ops
}

/// How [`write_sorted`] wrote its entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteMode {
    /// No entries.
    Nothing,
    /// Every key sorted after the database's last key: puts with `MDB_APPEND`, deletes skipped.
    Append,
    /// Plain puts and deletes.
    Update,
}

/// Writes `entries` (strictly increasing keys, `None` a delete) into `db` within `wtxn`.
///
/// Runs of puts go through one LMDB cursor, so that a put whose key falls on the leaf page of the
/// previous one searches that page only instead of descending from the root (`mdb_cursor_set` has
/// this fast path; `mdb_put` opens a fresh cursor every time). When every key sorts after the
/// database's last key (an empty database, e.g. restoring a fresh assignment from its
/// changelog, or keys that only grow), puts use `MDB_APPEND`, which packs leaf pages full and
/// skips the search, and deletes are skipped: they cannot match anything.
pub(crate) fn write_sorted<'e>(
    db: &RawDb,
    wtxn: &mut RwTxn<'_>,
    entries: impl IntoIterator<Item = (&'e [u8], Option<&'e [u8]>)>,
) -> heed::Result<WriteMode> {
    let mut entries = entries.into_iter().peekable();
    let mode = match entries.peek() {
        None => return Ok(WriteMode::Nothing),
        Some((first, _)) => match db.last(wtxn)? {
            None => WriteMode::Append,
            Some((last, _)) if *first > last => WriteMode::Append,
            Some(_) => WriteMode::Update,
        },
    };
    let flags = match mode {
        WriteMode::Append => PutFlags::APPEND,
        _ => PutFlags::empty(),
    };
    while entries.peek().is_some() {
        if matches!(entries.peek(), Some((_, Some(_)))) {
            let mut cursor = db.iter_mut(wtxn)?;
            while let Some((key, Some(value))) = entries.next_if(|(_, v)| v.is_some()) {
                // SAFETY: heed requires that no reference into the database is held while it is
                // modified through the cursor; `key` and `value` are owned by the caller (write
                // buffer or restore batch), and we read nothing from the database in this loop.
                // The flags are a plain put (no `MDB_CURRENT`, so the key need not be the
                // cursor's) or `MDB_APPEND`, which LMDB checks (`MDB_KEYEXIST` if the key does
                // not sort last).
                unsafe {
                    cursor.put_current_with_options::<RawBytes>(flags, key, value)?;
                }
            }
        }
        while let Some((key, None)) = entries.next_if(|(_, v)| v.is_none()) {
            if mode == WriteMode::Update {
                db.delete(wtxn, key)?;
            }
        }
    }
    Ok(mode)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn op(k: &'static str, v: Option<&'static str>) -> WriteOp {
        WriteOp {
            key: Bytes::from_static(k.as_bytes()),
            value: v.map(|v| Bytes::from_static(v.as_bytes())),
        }
    }

    #[test]
    fn sorted_unique_keeps_the_last_write_per_key() {
        let ops = vec![
            op("c", Some("1")),
            op("a", Some("1")),
            op("c", None),
            op("b", None),
            op("a", Some("2")),
            op("c", Some("3")),
            op("b", Some("1")),
            op("a", None),
        ];
        assert_eq!(
            sorted_unique(ops),
            vec![op("a", None), op("b", Some("1")), op("c", Some("3"))]
        );
        assert!(sorted_unique(Vec::new()).is_empty());
    }
}
