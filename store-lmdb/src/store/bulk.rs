//! Bulk restore of an empty [`LmdbStore`]: staging runs, merging them, dropping them.
//!
//! * `restore_run` sorts and deduplicates a batch and writes it with `MDB_APPEND` into a new run
//!   database, in one write transaction (run databases: see [`crate::runs`]). Before that, when
//!   the newest [`RUN_FAN_IN`] (16) runs share a level, they are merged into one run of the
//!   next level, so a store stages at most 16 runs of the lowest level and 15 of each other:
//!   with 8 MiB runs, 16 up to 128 MiB of changelog, 31 up to 2 GiB, 46 up to 32 GiB (one more
//!   while runs merge into a bigger one). Each is an LMDB database until the restore ends,
//!   counted against `max_dbs`.
//! * `finish_restore_runs` merges every run into the store's (empty) database with
//!   `MDB_APPEND`, in write transactions of at most
//!   [`LmdbConfig::bulk_restore_txn_bytes`](crate::LmdbConfig::bulk_restore_txn_bytes) of keys
//!   and values; the **last** one also writes the checkpoint and drops the run databases. A
//!   failure in between leaves part of the data without a checkpoint: a retry resumes after the
//!   last merged key; a crash leaves a store without checkpoint, which is restored from the
//!   changelog's beginning after a wipe (and whose run databases the next open drops).
//! * Every attempt that reads or drops run databases opens them by name: LMDB closes a dropped
//!   database's handle at once, even when the dropping transaction then aborts, so no handle is
//!   kept across attempts. Drops happen in write transactions that hold heed's database-opening
//!   lock (`create_databases_and_commit`): closing a handle must not race with another thread
//!   opening one.

use std::convert::Infallible;
use std::io;

use heed::types::Bytes as RawBytes;
use heed::{CommitOrAbort, CommitToken, Database, DatabaseOpener, Env, OnCommit, RwTxn};
use kstreams_store_api::{Checkpoint, StoreError, WriteBatch, layers};
use tracing::{debug, warn};

use super::LmdbStore;
use crate::env::{Plain, RawDb, dbs_full_as_config};
use crate::error;
use crate::merge::{Chunk, Output, merge_chunk};
use crate::runs::{self, RUN_FAN_IN, Run};
use crate::write::sorted_unique;

/// Where a merge writes.
#[derive(Debug, Clone, Copy)]
enum Dest {
    /// The store's database (`finish_restore_runs`).
    Store,
    /// A new run database (merging runs into a bigger one).
    Run(u64),
}

/// Run databases opened by name for one write attempt.
struct OpenedRuns<'e> {
    /// The runs merged, oldest first.
    sources: Vec<Database<'e, RawBytes, RawBytes>>,
    /// The destination run, if the merge writes to one.
    dest: Option<Database<'e, RawBytes, RawBytes>>,
    /// Further run databases to drop with the sources; `None`: it does not exist.
    extra: Vec<Option<Database<'e, RawBytes, RawBytes>>>,
}

impl OnCommit for OpenedRuns<'_> {
    type Committed = OpenedRuns<'static>;

    fn on_commit(self, token: &CommitToken) -> OpenedRuns<'static> {
        OpenedRuns {
            sources: self
                .sources
                .into_iter()
                .map(|db| db.on_commit(token))
                .collect(),
            dest: self.dest.map(|db| db.on_commit(token)),
            extra: self
                .extra
                .into_iter()
                .map(|db| db.map(|db| db.on_commit(token)))
                .collect(),
        }
    }
}

/// An error for a run database that should exist and does not (a broken invariant: only this
/// store creates and drops its runs).
fn missing_run(name: &str) -> heed::Error {
    heed::Error::Io(io::Error::new(
        io::ErrorKind::NotFound,
        format!("restore run database `{name}` is missing"),
    ))
}

/// Opens `names` (which must exist), `dest` (which must exist) and `extra` (which may not) in a
/// short read transaction, keeping the handles for the environment.
fn open_runs(
    env: &Env<heed::WithoutTls>,
    names: &[String],
    dest: Option<&str>,
    extra: &[String],
) -> heed::Result<OpenedRuns<'static>> {
    let rtxn = env.read_txn()?;
    let opened = env.open_databases_and_commit(rtxn, |opener, rtxn| {
        let open = |name: &str| opener.open_database::<RawBytes, RawBytes>(rtxn, Some(name));
        let sources = names
            .iter()
            .map(|name| open(name)?.ok_or_else(|| missing_run(name)))
            .collect::<heed::Result<Vec<_>>>()?;
        let dest = match dest {
            Some(name) => Some(open(name)?.ok_or_else(|| missing_run(name))?),
            None => None,
        };
        let extra = extra
            .iter()
            .map(|name| open(name))
            .collect::<heed::Result<Vec<_>>>()?;
        Ok::<_, heed::Error>(CommitOrAbort::<_, Infallible>::Commit(OpenedRuns {
            sources,
            dest,
            extra,
        }))
    })?;
    match opened {
        CommitOrAbort::Commit(opened) => Ok(opened),
        CommitOrAbort::Abort(never) => match never {},
    }
}

/// Drops the databases `names` that exist, within `wtxn` (opened through `opener`).
fn drop_databases<'e>(
    opener: &DatabaseOpener<'e, heed::WithoutTls>,
    wtxn: &mut RwTxn<'e>,
    names: &[String],
) -> heed::Result<()> {
    for name in names {
        if let Some(db) = opener.open_database::<RawBytes, RawBytes>(wtxn, Some(name))? {
            // SAFETY: heed requires that no other handle copy of the database is used after the
            // drop and that no other transaction modified it. Run databases are private to their
            // store (which is open once per environment), every transaction opens them by name,
            // and this one only drops it.
            unsafe { db.remove(wtxn)? };
        }
    }
    Ok(())
}

/// Runs `body` in a new write transaction with a database opener for it (holding heed's
/// database-opening lock), and commits.
pub(super) fn with_opener<'e, T>(
    env: &'e Env<heed::WithoutTls>,
    body: impl FnOnce(&DatabaseOpener<'e, heed::WithoutTls>, &mut RwTxn<'e>) -> heed::Result<T>,
) -> heed::Result<T> {
    let wtxn = env.write_txn()?;
    let done = env.create_databases_and_commit(wtxn, |opener, wtxn| {
        body(opener, wtxn).map(|value| CommitOrAbort::<_, Infallible>::Commit(Plain(value)))
    })?;
    match done {
        CommitOrAbort::Commit(value) => Ok(value),
        CommitOrAbort::Abort(never) => match never {},
    }
}

/// Creates the run database `name`, which must not hold anything yet.
fn create_run<'e>(
    opener: &DatabaseOpener<'e, heed::WithoutTls>,
    wtxn: &mut RwTxn<'e>,
    name: &str,
) -> heed::Result<Database<'e, RawBytes, RawBytes>> {
    let db = opener.create_database::<RawBytes, RawBytes>(wtxn, Some(name))?;
    if !db.is_empty(wtxn)? {
        // Run ids are never reused in a store's life, and opening a store drops earlier runs.
        debug_assert!(false, "new restore run database `{name}` is not empty");
        warn!(
            run = name,
            "new restore run database is not empty; clearing it"
        );
        db.clear(wtxn)?;
    }
    Ok(db)
}

impl LmdbStore {
    /// Refuses a bulk-restore step unless the store has no uncommitted writes, no checkpoint
    /// and no data (for `finish`, data of its own interrupted merge is allowed).
    fn check_bulk_restore(&self, finish: bool) -> Result<(), StoreError> {
        layers::refuse_if_uncommitted(&self.pending, self.frozen.as_ref(), &self.name)?;
        let has_data = {
            let reader = self.shared().reader(&self.name)?;
            self.db
                .first(&reader.txn)
                .map_err(|e| error::backend(&self.name, e))?
                .is_some()
        };
        let checkpoint = kstreams_store_api::KvBackend::checkpoint(self)?;
        let own_merge = finish && self.runs.finishing;
        if checkpoint.is_some() || (has_data && !own_merge) {
            return Err(StoreError::NotEmpty {
                store: self.name.clone(),
                has_data,
                checkpoint,
            });
        }
        Ok(())
    }

    /// `KvBackend::restore_run`.
    pub(super) fn stage_run(&mut self, batch: WriteBatch) -> Result<(), StoreError> {
        self.check_bulk_restore(false)?;
        self.check_keys(batch.ops())?;
        let records = batch.len();
        let mut ops = sorted_unique(batch.into_ops());
        if self.runs.runs().is_empty() {
            // The oldest run: no older write for a tombstone to shadow.
            ops.retain(|op| op.value.is_some());
        }
        if ops.is_empty() {
            return Ok(());
        }
        while let Some((start, level)) = self.runs.compaction() {
            self.compact(start, level)?;
        }
        let id = self.runs.new_id();
        let name = runs::run_name(&self.db_name, id);
        let this = &*self;
        this.shared()
            .write(&this.name, |env| {
                with_opener(env, |opener, wtxn| {
                    let db = create_run(opener, wtxn, &name)?;
                    let mut cursor = db.iter_mut(wtxn)?;
                    for op in &ops {
                        runs::append_tagged(&mut cursor, &op.key, op.value.as_deref())?;
                    }
                    Ok(())
                })
            })
            .map_err(|e| dbs_full_as_config(e, &self.name, &self.shared().config))?;
        let run = Run {
            id,
            level: 0,
            entries: ops.len() as u64,
            bytes: ops
                .iter()
                .map(|op| (op.key.len() + op.value.as_ref().map_or(0, |v| v.len())) as u64)
                .sum(),
        };
        debug!(
            store = %self.name,
            partition = self.partition,
            run = id,
            records,
            keys = run.entries,
            bytes = run.bytes,
            staged = self.runs.runs().len() + 1,
            "staged a restore run"
        );
        self.runs.push(run);
        Ok(())
    }

    /// Merges the runs from index `start` on (the newest [`RUN_FAN_IN`], of one level) into one
    /// new run of `level`.
    fn compact(&mut self, start: usize, level: u32) -> Result<(), StoreError> {
        debug_assert_eq!(self.runs.runs().len() - start, RUN_FAN_IN);
        let sources: Vec<u64> = self.runs.runs()[start..].iter().map(|r| r.id).collect();
        let id = self.runs.new_id();
        let name = runs::run_name(&self.db_name, id);
        let created = self.shared().write(&self.name, |env| {
            with_opener(env, |opener, wtxn| {
                create_run(opener, wtxn, &name).map(|_| ())
            })
        });
        if let Err(e) = created {
            return Err(dbs_full_as_config(e, &self.name, &self.shared().config));
        }
        // Tombstones must shadow the older runs that are not part of this merge.
        let output = Output::Run {
            keep_tombstones: start > 0,
        };
        match self.merge(&sources, Dest::Run(id), output, None, &[]) {
            Ok(merged) => {
                debug!(
                    store = %self.name,
                    partition = self.partition,
                    runs = sources.len(),
                    run = id,
                    level,
                    keys = merged.entries,
                    bytes = merged.bytes,
                    "merged restore runs into a bigger run"
                );
                self.runs.replace_newest(
                    start,
                    Run {
                        id,
                        level,
                        entries: merged.entries,
                        bytes: merged.bytes,
                    },
                );
                Ok(())
            }
            Err(e) => {
                self.runs.orphan(id);
                Err(e)
            }
        }
    }

    /// `KvBackend::finish_restore_runs`.
    pub(super) fn finish_runs(&mut self, checkpoint: Checkpoint) -> Result<(), StoreError> {
        self.check_bulk_restore(true)?;
        let sources: Vec<u64> = self.runs.runs().iter().map(|r| r.id).collect();
        let orphans = self.runs.orphan_ids().to_vec();
        self.runs.finishing = true;
        let merged = self.merge(
            &sources,
            Dest::Store,
            Output::Store,
            Some(checkpoint),
            &orphans,
        )?;
        debug!(
            store = %self.name,
            partition = self.partition,
            runs = sources.len(),
            keys = merged.entries,
            bytes = merged.bytes,
            ?checkpoint,
            "finished a bulk restore"
        );
        self.runs.clear();
        Ok(())
    }

    /// `KvBackend::discard_restore_runs` (and `Drop`).
    pub(super) fn discard_runs(&mut self) {
        if self.runs.is_clear() {
            return;
        }
        let names = self.run_names(&self.runs.all_ids());
        let dropped = self.shared().write(&self.name, |env| {
            with_opener(env, |opener, wtxn| drop_databases(opener, wtxn, &names))
        });
        match dropped {
            Ok(()) => {
                debug!(
                    store = %self.name,
                    partition = self.partition,
                    runs = names.len(),
                    "discarded the restore runs"
                );
                self.runs.clear();
            }
            Err(e) => {
                warn!(
                    store = %self.name,
                    partition = self.partition,
                    error = %e,
                    "could not drop the restore runs; the next wipe, finish or open drops them"
                );
                self.runs.abandon();
            }
        }
    }

    /// Names of the run databases `ids`.
    pub(super) fn run_names(&self, ids: &[u64]) -> Vec<String> {
        ids.iter()
            .map(|&id| runs::run_name(&self.db_name, id))
            .collect()
    }

    /// Merges the runs `sources` (oldest first) into `dest`, one write transaction per
    /// `bulk_restore_txn_bytes`; the last transaction also writes `checkpoint` (if any) and
    /// drops the sources and the run databases `extra`. Resumes after the destination's last key,
    /// so it continues an interrupted merge into the same destination.
    fn merge(
        &self,
        sources: &[u64],
        dest: Dest,
        output: Output,
        checkpoint: Option<Checkpoint>,
        extra: &[u64],
    ) -> Result<Chunk, StoreError> {
        let names = self.run_names(sources);
        let extra = self.run_names(extra);
        let dest_name = match dest {
            Dest::Store => None,
            Dest::Run(id) => Some(runs::run_name(&self.db_name, id)),
        };
        let max_bytes = self.shared().config.bulk_restore_txn_bytes as u64;
        let mut total = Chunk::default();
        let mut txns = 0_u32;
        loop {
            let chunk = self.shared().write(&self.name, |env| {
                // Handles for the read transaction must be committed before it begins.
                let opened = open_runs(env, &names, dest_name.as_deref(), &extra)?;
                let dest_db: RawDb = opened.dest.unwrap_or(self.db);
                with_opener(env, |_opener, wtxn| {
                    let chunk = {
                        let rtxn = env.read_txn()?;
                        merge_chunk(&opened.sources, &rtxn, &dest_db, output, wtxn, max_bytes)?
                    };
                    if chunk.done {
                        if let Some(checkpoint) = &checkpoint {
                            self.put_checkpoint(wtxn, checkpoint)?;
                        }
                        let sources = opened.sources.iter();
                        for db in sources.chain(opened.extra.iter().flatten()) {
                            // SAFETY: as in `drop_databases`; the read transaction that read the
                            // runs has ended.
                            unsafe { db.remove(wtxn)? };
                        }
                    }
                    Ok(chunk)
                })
            })?;
            txns += 1;
            total.entries += chunk.entries;
            total.bytes += chunk.bytes;
            if chunk.done {
                total.done = true;
                debug!(
                    store = %self.name,
                    partition = self.partition,
                    txns,
                    "merged restore runs"
                );
                return Ok(total);
            }
        }
    }

    /// Drops every run database and orphan within `wtxn` (part of a wipe), opened through
    /// `opener`.
    pub(super) fn drop_runs_in<'e>(
        &self,
        opener: &DatabaseOpener<'e, heed::WithoutTls>,
        wtxn: &mut RwTxn<'e>,
    ) -> heed::Result<()> {
        drop_databases(opener, wtxn, &self.run_names(&self.runs.all_ids()))
    }
}
