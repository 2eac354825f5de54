//! The k-way merge of restore runs into one database, one bounded chunk per write transaction.
//!
//! Runs are read through cursors of a read transaction (zero-copy: keys and values are slices
//! of the memory map) and merged with a binary heap holding one entry per run, so memory does
//! not grow with the runs' size. The destination only ever receives keys after its last one,
//! written with `MDB_APPEND`: a chunk resumes after the destination's last key, which makes a
//! merge resumable after any failed or interrupted write transaction.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::collections::binary_heap::PeekMut;
use std::ops::Bound;

use heed::types::Bytes as RawBytes;
use heed::{PutFlags, RoRange, RoTxn, RwTxn, WithoutTls};

use crate::env::RawDb;
use crate::runs;
use crate::write::key_order;

/// What the destination of a merge holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Output {
    /// The store's database: plain values; tombstones drop their key.
    Store,
    /// A run database: tagged values; tombstones are kept when older runs, not part of the
    /// merge, may hold their key.
    Run {
        /// Whether tombstones are written.
        keep_tombstones: bool,
    },
}

/// What one chunk did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Chunk {
    /// Entries written (winners only, tombstones only when kept).
    pub(crate) entries: u64,
    /// Key and value bytes written.
    pub(crate) bytes: u64,
    /// Whether every run is merged (nothing is left after this chunk).
    pub(crate) done: bool,
}

/// The next entry of one run.
struct Head<'t> {
    key: &'t [u8],
    /// Tagged (see [`runs::decode`]).
    value: &'t [u8],
    /// Index of the run (higher: newer).
    run: usize,
}

impl PartialEq for Head<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Head<'_> {}

impl PartialOrd for Head<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Head<'_> {
    /// `BinaryHeap` pops the greatest: the smallest key, and for equal keys the newest run.
    fn cmp(&self, other: &Self) -> Ordering {
        key_order(other.key, self.key).then_with(|| self.run.cmp(&other.run))
    }
}

/// Replaces the heap's top entry by the next entry of its run, or removes it when the run is
/// exhausted (one sift instead of a pop and a push).
fn advance_top<'t>(
    mut top: PeekMut<'_, Head<'t>>,
    iters: &mut [RoRange<'t, RawBytes, RawBytes>],
) -> heed::Result<()> {
    let run = top.run;
    match iters[run].next() {
        Some(entry) => {
            let (key, value) = entry?;
            *top = Head { key, value, run };
        }
        None => {
            PeekMut::pop(top);
        }
    }
    Ok(())
}

/// Merges `sources` (runs, oldest first, read in `rtxn`) into `dest` within `wtxn`, starting
/// after `dest`'s last key as `rtxn` sees it, until at least `max_bytes` of keys and values are
/// written or the runs are exhausted.
///
/// For a key, the newest run's entry wins; a winning tombstone is written only to a run that
/// keeps tombstones. `dest` must hold nothing but an earlier part of this same merge (it starts
/// empty), and `rtxn` must see every committed chunk of it.
pub(crate) fn merge_chunk(
    sources: &[RawDb],
    rtxn: &RoTxn<'_, WithoutTls>,
    dest: &RawDb,
    output: Output,
    wtxn: &mut RwTxn<'_>,
    max_bytes: u64,
) -> heed::Result<Chunk> {
    let resume = dest.last(rtxn)?.map(|(key, _)| key);
    let bounds = (
        resume.map_or(Bound::Unbounded, Bound::Excluded),
        Bound::Unbounded,
    );
    let mut iters = sources
        .iter()
        .map(|db| db.range(rtxn, &bounds))
        .collect::<heed::Result<Vec<_>>>()?;
    let mut heap = BinaryHeap::with_capacity(iters.len());
    for (run, iter) in iters.iter_mut().enumerate() {
        if let Some(entry) = iter.next() {
            let (key, value) = entry?;
            heap.push(Head { key, value, run });
        }
    }

    let mut cursor = dest.iter_mut(wtxn)?;
    let mut chunk = Chunk::default();
    loop {
        let Some(top) = heap.peek_mut() else {
            break;
        };
        let (key, tagged) = (top.key, top.value);
        advance_top(top, &mut iters)?;
        // Older runs' entries of the same key lose.
        while let Some(older) = heap.peek_mut()
            && older.key == key
        {
            advance_top(older, &mut iters)?;
        }
        let value = runs::decode(tagged)?;
        let written = match (output, value) {
            (Output::Store, Some(value)) => {
                // SAFETY: as in `runs::append_tagged`: `key` and `value` borrow from the read
                // transaction's snapshot, which the write transaction never changes in place;
                // `MDB_APPEND` without `MDB_CURRENT`.
                unsafe {
                    cursor.put_current_with_options::<RawBytes>(PutFlags::APPEND, key, value)?;
                }
                Some(value.len())
            }
            (Output::Store, None)
            | (
                Output::Run {
                    keep_tombstones: false,
                },
                None,
            ) => None,
            (Output::Run { .. }, value) => {
                runs::append_tagged(&mut cursor, key, value)?;
                Some(value.map_or(0, <[u8]>::len))
            }
        };
        if let Some(value_len) = written {
            chunk.entries += 1;
            chunk.bytes += (key.len() + value_len) as u64;
            if chunk.bytes >= max_bytes {
                break;
            }
        }
    }
    chunk.done = heap.is_empty();
    Ok(chunk)
}
