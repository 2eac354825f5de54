//! Reading many keys of one database within one read transaction, in key order.

use std::ops::Bound;

use bytes::Bytes;
use heed::RoTxn;

use crate::env::RawDb;
use crate::write::key_order;

/// A batch read walks the database between its first and last key (one cursor step per entry,
/// each leaf page once) when it asks for at least one key per this many entries of the
/// database; sparser reads look each key up (a descent from the root per key).
const WALK_ENTRIES_PER_KEY: u64 = 8;

/// Reads `keys[i]` into `out[i]` for every `i` of `wanted` (storable keys only; duplicates
/// allowed). Keys not in the database leave their `out` slot as it is.
///
/// Many keys for the database's size: `wanted` is sorted by key and the database walked once
/// from the first key to the last. Few: one lookup per key, in the order asked.
pub(crate) fn read_many(
    db: &RawDb,
    txn: &RoTxn<'_>,
    keys: &[&[u8]],
    wanted: &mut [usize],
    out: &mut [Option<Bytes>],
) -> heed::Result<()> {
    if wanted.is_empty() {
        return Ok(());
    }
    let entries = db.len(txn)?;
    if (wanted.len() as u64).saturating_mul(WALK_ENTRIES_PER_KEY) < entries {
        for &i in wanted.iter() {
            out[i] = db.get(txn, keys[i])?.map(Bytes::copy_from_slice);
        }
        return Ok(());
    }
    wanted.sort_unstable_by(|&a, &b| key_order(keys[a], keys[b]));
    walk_sorted(db, txn, keys, wanted, out)
}

/// [`read_many`] by one walk: `wanted` sorted by key, non-empty.
fn walk_sorted(
    db: &RawDb,
    txn: &RoTxn<'_>,
    keys: &[&[u8]],
    wanted: &[usize],
    out: &mut [Option<Bytes>],
) -> heed::Result<()> {
    let (Some(&first), Some(&last)) = (wanted.first(), wanted.last()) else {
        return Ok(());
    };
    let bounds = (Bound::Included(keys[first]), Bound::Included(keys[last]));
    let mut entries = db.range(txn, &bounds)?;
    let mut current = entries.next().transpose()?;
    for &i in wanted {
        let key = keys[i];
        while let Some((k, _)) = current
            && key_order(k, key).is_lt()
        {
            current = entries.next().transpose()?;
        }
        match current {
            Some((k, v)) if k == key => out[i] = Some(Bytes::copy_from_slice(v)),
            Some(_) => {}
            // Past the last entry in range: no later key is there either.
            None => break,
        }
    }
    Ok(())
}
