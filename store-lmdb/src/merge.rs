//! The k-way merge of restore runs into one database, one bounded chunk per write transaction.
//!
//! Runs are read through cursors of a read transaction (zero-copy: keys and values are slices
//! of the memory map) and merged with a binary heap holding one entry per run, so memory does
//! not grow with the runs' size. The destination only ever receives keys after its last one,
//! written with `MDB_APPEND`: a chunk resumes after the destination's last key, which makes a
//! merge resumable after any failed or interrupted write transaction.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::ops::Bound;

use heed::types::Bytes as RawBytes;
use heed::{PutFlags, RoRange, RoTxn, RwTxn, WithoutTls};

use crate::env::RawDb;
use crate::runs;

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
        other
            .key
            .cmp(self.key)
            .then_with(|| self.run.cmp(&other.run))
    }
}

/// Pushes the next entry of run `run` (if any) onto `heap`.
fn advance<'t>(
    iter: &mut RoRange<'t, RawBytes, RawBytes>,
    run: usize,
    heap: &mut BinaryHeap<Head<'t>>,
) -> heed::Result<()> {
    if let Some(entry) = iter.next() {
        let (key, value) = entry?;
        heap.push(Head { key, value, run });
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
        advance(iter, run, &mut heap)?;
    }

    let mut cursor = dest.iter_mut(wtxn)?;
    let mut chunk = Chunk::default();
    while let Some(newest) = heap.pop() {
        advance(&mut iters[newest.run], newest.run, &mut heap)?;
        // Older runs' entries of the same key lose.
        while let Some(older) = heap.peek()
            && older.key == newest.key
        {
            let run = older.run;
            heap.pop();
            advance(&mut iters[run], run, &mut heap)?;
        }
        let value = runs::decode(newest.value)?;
        let written = match (output, value) {
            (Output::Store, Some(value)) => {
                // SAFETY: as in `runs::append_tagged`: `newest` borrows from the read
                // transaction's snapshot, which the write transaction never changes in place;
                // `MDB_APPEND` without `MDB_CURRENT`.
                unsafe {
                    cursor.put_current_with_options::<RawBytes>(
                        PutFlags::APPEND,
                        newest.key,
                        value,
                    )?;
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
                runs::append_tagged(&mut cursor, newest.key, value)?;
                Some(value.map_or(0, <[u8]>::len))
            }
        };
        if let Some(value_len) = written {
            chunk.entries += 1;
            chunk.bytes += (newest.key.len() + value_len) as u64;
            if chunk.bytes >= max_bytes {
                break;
            }
        }
    }
    chunk.done = heap.is_empty();
    Ok(chunk)
}
