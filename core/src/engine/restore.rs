//! State restore: before an assigned task processes anything, each of its logged stores is
//! brought up to its changelog's end. The changelog partition is read with the fetcher from the
//! store's checkpoint (or from its start) and every fetched batch is written into the store in
//! one step together with its new checkpoint, so memory stays bounded by the fetch size
//! whatever the changelog's size, and a crash mid-restore resumes where it stopped.
//!
//! A checkpoint is trusted only while it is consistent with the changelog: one of another
//! incarnation of the topic (another topic id) or past the changelog's end (the fetch answers
//! OFFSET_OUT_OF_RANGE) makes the engine wipe the store and restore it from the start. Once
//! every store of a task is restored, its input partitions are assigned and their committed
//! offsets fetched, as for a task without logged stores.

use super::{Engine, EngineError, EngineState, Event, Output};
use crate::client::fetcher::OffsetResetPolicy;
use crate::record::{RawRecord, TopicPartition};
use crate::state::{Checkpoint, WriteBatch};
use crate::task::{Task, TaskId};
use crate::time::Instant;

/// A task whose logged stores are being restored, with the input partitions it gets after.
pub(super) struct Restoring {
    pub(super) task: Task,
    pub(super) partitions: Vec<TopicPartition>,
    stores: Vec<StoreRestore>,
}

/// Progress of one store's restore.
pub(super) struct StoreRestore {
    store: String,
    changelog: TopicPartition,
    started: Instant,
    records: u64,
    bytes: u64,
    /// The checkpoint last written (exclusive changelog offset).
    position: Option<i64>,
    /// The store started empty: batches are staged as sorted runs and merged at the end
    /// (a bulk restore: sequential writes instead of scattered B-tree updates), so the
    /// checkpoint is written only then.
    bulk: bool,
    /// Fetched changelog records not written yet (see [`EngineConfig::restore_batch_bytes`]):
    /// their writes, key and value bytes, and the position after them.
    pending: WriteBatch,
    pending_bytes: usize,
    pending_position: Option<i64>,
    done: bool,
}

impl Restoring {
    /// The restores of its stores, for [`Engine::restore_progress`].
    pub(super) fn stores(&self) -> impl Iterator<Item = &StoreRestore> {
        self.stores.iter()
    }
}

impl StoreRestore {
    /// The store.
    pub(super) fn store(&self) -> &str {
        &self.store
    }

    /// Its changelog partition.
    pub(super) fn changelog(&self) -> &TopicPartition {
        &self.changelog
    }

    /// Records written into the store so far.
    pub(super) fn restored(&self) -> u64 {
        self.records
    }

    /// Whether it reached the changelog's end.
    pub(super) fn is_done(&self) -> bool {
        self.done
    }

    /// Writes the pending records into the store with the checkpoint after them, one
    /// transaction; returns the event to report.
    fn write_pending(
        &mut self,
        task: &mut Task,
        topic_id: Option<[u8; 16]>,
    ) -> Result<Option<Event>, EngineError> {
        let Some(position) = self.pending_position.take() else {
            return Ok(None);
        };
        let batch = std::mem::take(&mut self.pending);
        let (records, bytes) = (batch.len(), std::mem::take(&mut self.pending_bytes));
        if self.bulk {
            task.restore_run(&self.store, batch)?;
        } else {
            task.restore_store(&self.store, batch, Checkpoint::new(position, topic_id))?;
        }
        self.records += records as u64;
        self.bytes += bytes as u64;
        self.position = Some(position);
        Ok(Some(Event::RestoreBatch {
            task: task.id(),
            store: self.store.clone(),
            records,
            bytes,
            position,
        }))
    }
}

impl Engine {
    /// Starts restoring `task`'s logged stores, or returns it when it has none.
    pub(super) fn start_restore(
        &mut self,
        mut task: Task,
        partitions: Vec<TopicPartition>,
    ) -> Result<Option<Task>, EngineError> {
        let id = task.id();
        let logged: Vec<(String, String)> = self
            .changelogs
            .iter()
            .filter(|(sub, _, _)| *sub == id.subtopology)
            .map(|(_, store, topic)| (store.clone(), topic.clone()))
            .collect();
        if logged.is_empty() {
            return Ok(Some(task));
        }
        let mut stores = Vec::with_capacity(logged.len());
        for (store, topic) in logged {
            let changelog = TopicPartition::new(topic.as_str(), id.partition);
            let mut checkpoint = task.store_checkpoint(&store)?;
            let topic_id = self.metadata.topic_id(&topic);
            if let Some(cp) = checkpoint
                && cp.topic_id.is_some()
                && topic_id.is_some()
                && cp.topic_id != topic_id
            {
                tracing::warn!(task = %id, %store, %changelog, "checkpoint of another incarnation of the changelog topic; wiping the store and restoring it from the start");
                task.wipe_store(&store)?;
                checkpoint = None;
            }
            if checkpoint.is_none() {
                // A logged store without a checkpoint holds nothing to trust (at most what
                // an interrupted bulk restore merged): start it empty, for a bulk restore.
                task.wipe_store(&store)?;
            }
            let from = checkpoint.map(|cp| cp.changelog_offset);
            // A checkpoint past the log's end must be reported, not moved (see
            // `checkpoint_out_of_range`).
            self.fetcher.assign_to_read_to_end(changelog.clone(), from);
            if from.is_none() {
                self.fetcher
                    .reset_position(&changelog, OffsetResetPolicy::Earliest);
            }
            tracing::info!(task = %id, %store, %changelog, checkpoint = ?from, "restoring store");
            self.outputs.push_back(Output::Event(Event::RestoreStarted {
                task: id,
                store: store.clone(),
                changelog: changelog.clone(),
                checkpoint: from,
            }));
            stores.push(StoreRestore {
                store,
                changelog,
                started: self.now,
                records: 0,
                bytes: 0,
                position: from,
                bulk: from.is_none(),
                pending: WriteBatch::new(),
                pending_bytes: 0,
                pending_position: None,
                done: false,
            });
        }
        self.fetcher.update_leaders(&self.metadata);
        self.restoring.insert(
            id,
            Restoring {
                task,
                partitions,
                stores,
            },
        );
        Ok(None)
    }

    /// The task whose logged store changelog partition `tp` is, if it is one.
    pub(super) fn changelog_task(&self, tp: &TopicPartition) -> Option<TaskId> {
        let (sub, _, _) = self.changelogs.iter().find(|(_, _, t)| **t == *tp.topic)?;
        Some(TaskId {
            subtopology: *sub,
            partition: tp.partition,
        })
    }

    /// The restoring task and store that read changelog partition `tp`, if any.
    fn restore_slot(&self, tp: &TopicPartition) -> Option<(TaskId, usize)> {
        let id = self.changelog_task(tp)?;
        let slot = self
            .restoring
            .get(&id)?
            .stores
            .iter()
            .position(|s| s.changelog == *tp)?;
        Some((id, slot))
    }

    /// Whether `tp` is a changelog partition being restored.
    pub(super) fn is_restoring(&self, tp: &TopicPartition) -> bool {
        self.restore_slot(tp).is_some()
    }

    /// Adds a fetched changelog batch to its store's pending writes, and writes them (with the
    /// checkpoint after them, one transaction) once they hold
    /// [`EngineConfig::restore_batch_bytes`](super::EngineConfig::restore_batch_bytes): LMDB
    /// pays per transaction for every page a batch of scattered keys touches, so bigger
    /// transactions restore faster, at the cost of that much memory.
    pub(super) fn restore_records(
        &mut self,
        tp: &TopicPartition,
        records: Vec<RawRecord>,
    ) -> Result<(), EngineError> {
        let (id, slot) = self
            .restore_slot(tp)
            .expect("the fetcher holds changelog partitions only while they restore");
        let topic_id = self.metadata.topic_id(&tp.topic);
        let limit = self.config.restore_batch_bytes;
        let restoring = self
            .restoring
            .get_mut(&id)
            .expect("restore_slot found the task");
        let progress = &mut restoring.stores[slot];
        match stage_changelog_records(records, &mut progress.pending, &mut progress.pending_bytes) {
            Ok(None) => return Ok(()),
            Ok(Some(position)) => progress.pending_position = Some(position),
            Err(offset) => {
                return Err(EngineError::CorruptChangelog {
                    task: id,
                    store: progress.store.clone(),
                    changelog: tp.clone(),
                    offset,
                    detail: "a record without a key".into(),
                });
            }
        }
        if progress.pending_bytes >= limit
            && let Some(event) = progress.write_pending(&mut restoring.task, topic_id)?
        {
            self.push_restore_batch(event);
        }
        Ok(())
    }

    /// A restoring changelog answered OFFSET_OUT_OF_RANGE: the store's checkpoint is not in
    /// the log (past its end, or below a start that retention moved), so its local state
    /// cannot be trusted. Wipes it and restores from the start. False when `tp` is not a
    /// restoring changelog.
    pub(super) fn checkpoint_out_of_range(
        &mut self,
        tp: &TopicPartition,
        offset: i64,
    ) -> Result<bool, EngineError> {
        let Some((id, slot)) = self.restore_slot(tp) else {
            return Ok(false);
        };
        let restoring = self
            .restoring
            .get_mut(&id)
            .expect("restore_slot found the task");
        let progress = &mut restoring.stores[slot];
        tracing::warn!(task = %id, store = %progress.store, changelog = %tp, offset, "checkpoint not in the changelog; wiping the store and restoring it from the start");
        restoring.task.wipe_store(&progress.store)?;
        progress.pending = WriteBatch::new();
        progress.pending_bytes = 0;
        progress.pending_position = None;
        progress.position = None;
        progress.bulk = true;
        progress.records = 0;
        progress.bytes = 0;
        self.fetcher.reset_position(tp, OffsetResetPolicy::Earliest);
        Ok(true)
    }

    /// Ends the restores that reached their changelog's end and starts the tasks whose
    /// stores are all restored.
    pub(super) fn drive_restore(&mut self) -> Result<bool, EngineError> {
        let mut progress = false;
        let exactly_once = self.exactly_once();
        let ids: Vec<TaskId> = self.restoring.keys().copied().collect();
        for id in ids {
            let restoring = self
                .restoring
                .get_mut(&id)
                .expect("ids were just read from the map");
            for store in restoring.stores.iter_mut().filter(|s| !s.done) {
                let (Some(position), Some(end)) = (
                    self.fetcher.position(&store.changelog),
                    self.fetcher.end_offset(&store.changelog),
                ) else {
                    continue;
                };
                if position < end {
                    continue;
                }
                // Under exactly-once the end is the last stable offset: while a transaction of
                // an earlier owner (one that died before its commit, whose transaction only
                // the coordinator's timeout ends) holds it below the high watermark, committed
                // writes of later owners may lie beyond it, and the committed offsets the task
                // fetches next include their input. Wait for that transaction's outcome.
                if exactly_once && self.fetcher.high_watermark(&store.changelog) != Some(end) {
                    continue;
                }
                let topic_id = self.metadata.topic_id(&store.changelog.topic);
                if let Some(event) = store.write_pending(&mut restoring.task, topic_id)? {
                    self.metrics.restore_total += restore_batch_records(&event);
                    self.outputs.push_back(Output::Event(event));
                }
                // Control records, aborted or compacted-away records at the end: the
                // checkpoint moves to the end itself, so the next restore starts there.
                if store.bulk {
                    restoring
                        .task
                        .finish_restore_runs(&store.store, Checkpoint::new(position, topic_id))?;
                    store.position = Some(position);
                } else if store.position != Some(position) {
                    restoring.task.restore_store(
                        &store.store,
                        WriteBatch::new(),
                        Checkpoint::new(position, topic_id),
                    )?;
                    store.position = Some(position);
                }
                store.done = true;
                self.task_offsets_dirty = true;
                self.fetcher.unassign(&store.changelog);
                self.metrics.restores_completed_total += 1;
                let duration = self.now - store.started;
                tracing::info!(task = %id, store = %store.store, records = store.records, bytes = store.bytes, %duration, "store restored");
                self.outputs.push_back(Output::Event(Event::RestoreEnded {
                    task: id,
                    store: store.store.clone(),
                    records: store.records,
                    bytes: store.bytes,
                    position,
                    duration,
                }));
                progress = true;
            }
            if restoring.stores.iter().all(|s| s.done) {
                let Restoring {
                    task, partitions, ..
                } = self
                    .restoring
                    .remove(&id)
                    .expect("ids were just read from the map");
                self.tasks.insert(id, task);
                self.start_fetching(partitions);
                progress = true;
            }
        }
        if progress
            && self.restoring.is_empty()
            && !self.closing
            && self.state == EngineState::Rebalancing
            && self.revoking.is_none()
        {
            self.set_state(EngineState::Running);
        }
        Ok(progress)
    }

    /// Reports a restore batch and counts its records.
    fn push_restore_batch(&mut self, event: Event) {
        self.metrics.restore_total += restore_batch_records(&event);
        self.outputs.push_back(Output::Event(event));
    }

    /// The tasks whose stores are being restored.
    pub(super) fn restoring_tasks(&self) -> impl Iterator<Item = TaskId> + '_ {
        self.restoring.keys().copied()
    }
}

/// Adds fetched changelog records (offsets increasing, as the fetcher checks) to a store's
/// pending writes, puts and tombstones, counting their key and value bytes; restore and
/// standbys share it. Returns the position after them (`None` for no records), or the offset
/// of a record without a key (a corrupt changelog).
pub(super) fn stage_changelog_records(
    records: Vec<RawRecord>,
    pending: &mut WriteBatch,
    pending_bytes: &mut usize,
) -> Result<Option<i64>, i64> {
    let Some(last) = records.last().map(|r| r.offset) else {
        return Ok(None);
    };
    for record in records {
        let Some(key) = record.key else {
            return Err(record.offset);
        };
        *pending_bytes += key.len() + record.value.as_ref().map_or(0, |v| v.len());
        match record.value {
            Some(value) => pending.put(key, value),
            None => pending.delete(key),
        }
    }
    // Offsets are checked increasing by the fetcher, so `last + 1` cannot overflow.
    Ok(Some(last + 1))
}

/// The records of a [`Event::RestoreBatch`] (0 for any other event).
fn restore_batch_records(event: &Event) -> u64 {
    match event {
        Event::RestoreBatch { records, .. } => *records as u64,
        _ => 0,
    }
}
