//! Restore runs: the sorted, deduplicated changelog batches a bulk restore stages, each in a
//! temporary LMDB database, until they are merged into the store.
//!
//! A run database is named `"{store}.{partition}/run/{id}"`: `/` never occurs in a store
//! database's name (store names are `[A-Za-z0-9._-]`), so no store of any name collides with a
//! run, and `"{store}.{partition}/run/"` finds every run of one store (opening a store drops
//! the runs an earlier process left behind).
//!
//! A run's value is tagged: `[1] ++ value` for a put, `[0]` for a delete (a tombstone, which
//! must shadow the key in older runs).

use std::io::Write;

use heed::types::Bytes as RawBytes;
use heed::{PutFlags, RwIter};

/// Once this many runs of one level are staged, they are merged into one run of the next
/// level before another run is staged (a size-tiered merge: each level's runs are 16 times
/// bigger than the level below, a run's bytes are rewritten once per level).
pub(crate) const RUN_FAN_IN: usize = 16;

/// Tag of a tombstone.
const TOMBSTONE: u8 = 0;
/// Tag of a put, followed by the value.
const PUT: u8 = 1;

/// The prefix of the names of `db_name`'s run databases.
pub(crate) fn run_prefix(db_name: &str) -> String {
    format!("{db_name}/run/")
}

/// The name of `db_name`'s run database `id`.
pub(crate) fn run_name(db_name: &str, id: u64) -> String {
    format!("{db_name}/run/{id}")
}

/// Decodes a run value: `Some(value)` for a put, `None` for a tombstone.
pub(crate) fn decode(raw: &[u8]) -> heed::Result<Option<&[u8]>> {
    match raw.split_first() {
        Some((&PUT, value)) => Ok(Some(value)),
        Some((&TOMBSTONE, [])) => Ok(None),
        _ => Err(heed::Error::Decoding(
            format!(
                "restore run value of {} bytes has no valid tag (first byte {:?})",
                raw.len(),
                raw.first()
            )
            .into(),
        )),
    }
}

/// Appends `key` with the tagged `value` (`None`: a tombstone) through `cursor`, with
/// `MDB_APPEND` (LMDB refuses with `MDB_KEYEXIST` a key that does not sort after the database's
/// last key).
pub(crate) fn append_tagged(
    cursor: &mut RwIter<'_, RawBytes, RawBytes>,
    key: &[u8],
    value: Option<&[u8]>,
) -> heed::Result<()> {
    let len = 1 + value.map_or(0, <[u8]>::len);
    // SAFETY: heed requires that no reference into the database written is held while it is
    // modified through the cursor. `key` and `value` are owned by the caller or borrowed from a
    // *read* transaction's snapshot, whose pages no write transaction modifies in place (LMDB
    // copies a page before changing it and does not reuse it while a reader may see it). The
    // flags add `MDB_APPEND` to heed's `MDB_RESERVE` (no `MDB_CURRENT`, so the key need not be
    // the cursor's), and the closure fills exactly the reserved `len` bytes.
    unsafe {
        cursor.put_current_reserved_with_flags(
            PutFlags::APPEND,
            key,
            len,
            |space| match value {
                Some(value) => {
                    space.write_all(&[PUT])?;
                    space.write_all(value)
                }
                None => space.write_all(&[TOMBSTONE]),
            },
        )?;
    }
    Ok(())
}

/// One staged run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Run {
    /// Its database is [`run_name`]`(db_name, id)`.
    pub(crate) id: u64,
    /// 0 for a run staged from a batch, `n + 1` for [`RUN_FAN_IN`] runs of level `n` merged.
    pub(crate) level: u32,
    /// Keys in the run (tombstones included).
    pub(crate) entries: u64,
    /// Key and value bytes in the run.
    pub(crate) bytes: u64,
}

/// The runs a store has staged, oldest first, and the run databases to drop.
///
/// Levels never increase from the oldest run to the newest (a merge replaces the newest runs,
/// which share the lowest level), so the runs of every level are contiguous and age order is
/// vector order: for a key, the run latest in the vector wins.
#[derive(Debug, Default)]
pub(crate) struct StagedRuns {
    runs: Vec<Run>,
    next_id: u64,
    /// Run databases that may exist and must be dropped: a merge's destination when the merge
    /// failed, or runs whose drop failed.
    orphans: Vec<u64>,
    /// Set when `finish_restore_runs` starts merging into the store: the store may then hold
    /// part of the merged data (a retry resumes after it).
    pub(crate) finishing: bool,
}

impl StagedRuns {
    /// The staged runs, oldest first.
    pub(crate) fn runs(&self) -> &[Run] {
        &self.runs
    }

    /// Whether no run database is staged or waiting to be dropped.
    pub(crate) fn is_clear(&self) -> bool {
        self.runs.is_empty() && self.orphans.is_empty()
    }

    /// A fresh run id (never used by this store before).
    pub(crate) fn new_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// The runs to merge before staging another one: the index of the first of the newest
    /// [`RUN_FAN_IN`] runs and the level of their merge, when they all share a level.
    pub(crate) fn compaction(&self) -> Option<(usize, u32)> {
        let start = self.runs.len().checked_sub(RUN_FAN_IN)?;
        let level = self.runs[start].level;
        self.runs[start..]
            .iter()
            .all(|run| run.level == level)
            .then_some((start, level + 1))
    }

    /// Adds a run staged from a batch (the newest).
    pub(crate) fn push(&mut self, run: Run) {
        debug_assert!(
            self.runs.last().is_none_or(|last| last.level >= run.level),
            "a run of level {} staged after one of level {:?}",
            run.level,
            self.runs.last().map(|r| r.level)
        );
        self.runs.push(run);
    }

    /// Replaces the runs from index `start` on (already dropped) by `merged`, their merge.
    pub(crate) fn replace_newest(&mut self, start: usize, merged: Run) {
        self.runs.truncate(start);
        self.push(merged);
    }

    /// Marks run database `id` for dropping (it may or may not exist).
    pub(crate) fn orphan(&mut self, id: u64) {
        self.orphans.push(id);
    }

    /// The ids of every run database to drop when the restore ends: the runs and the orphans.
    pub(crate) fn all_ids(&self) -> Vec<u64> {
        self.runs
            .iter()
            .map(|run| run.id)
            .chain(self.orphans.iter().copied())
            .collect()
    }

    /// The orphans' ids.
    pub(crate) fn orphan_ids(&self) -> &[u64] {
        &self.orphans
    }

    /// Forgets every run and orphan (their databases were dropped); ids keep counting.
    pub(crate) fn clear(&mut self) {
        self.runs.clear();
        self.orphans.clear();
        self.finishing = false;
    }

    /// Turns every run into an orphan: the restore is abandoned but the drop failed.
    pub(crate) fn abandon(&mut self) {
        let ids: Vec<u64> = self.runs.drain(..).map(|run| run.id).collect();
        self.orphans.extend(ids);
        self.finishing = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: u64, level: u32) -> Run {
        Run {
            id,
            level,
            entries: 1,
            bytes: 1,
        }
    }

    #[test]
    fn runs_compact_by_level() {
        let mut staged = StagedRuns::default();
        for i in 0..RUN_FAN_IN as u64 - 1 {
            staged.push(run(i, 0));
            assert_eq!(staged.compaction(), None);
        }
        staged.push(run(99, 0));
        assert_eq!(staged.compaction(), Some((0, 1)));
        staged.replace_newest(0, run(100, 1));
        assert_eq!(staged.compaction(), None);
        for i in 0..RUN_FAN_IN as u64 {
            staged.push(run(200 + i, 0));
        }
        // The newest 16 share level 0; the level-1 run stays.
        assert_eq!(staged.compaction(), Some((1, 1)));
        staged.replace_newest(1, run(300, 1));
        assert_eq!(staged.runs().len(), 2);
        assert_eq!(staged.compaction(), None);
    }

    #[test]
    fn abandoned_runs_become_orphans() {
        let mut staged = StagedRuns::default();
        assert!(staged.is_clear());
        let id = staged.new_id();
        staged.push(run(id, 0));
        let orphan = staged.new_id();
        staged.orphan(orphan);
        staged.finishing = true;
        assert_eq!(staged.all_ids(), vec![0, 1]);
        staged.abandon();
        assert!(staged.runs().is_empty());
        assert!(!staged.finishing);
        assert_eq!(staged.orphan_ids(), &[1, 0]);
        staged.clear();
        assert!(staged.is_clear());
        assert_eq!(staged.new_id(), 2, "ids are never reused");
    }

    #[test]
    fn values_round_trip_through_their_tag() {
        assert_eq!(decode(&[PUT]).unwrap(), Some(&[][..]));
        assert_eq!(decode(&[PUT, 7, 8]).unwrap(), Some(&[7, 8][..]));
        assert_eq!(decode(&[TOMBSTONE]).unwrap(), None);
        for bad in [&[][..], &[TOMBSTONE, 1], &[2, 1]] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn run_names_share_the_store_prefix_only() {
        assert_eq!(run_name("s.0", 7), "s.0/run/7");
        assert!(run_name("s.0", 7).starts_with(&run_prefix("s.0")));
        assert!(!run_name("s.01", 7).starts_with(&run_prefix("s.0")));
    }
}
