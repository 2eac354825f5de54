//! Standby tasks: copies of other members' task state, kept warm here by following the tasks'
//! changelogs, so a failover (or a planned move) restores only the changelog's tail.
//!
//! A standby holds the open backends of its task's **logged** stores and no processors: it
//! runs no user code (as Kafka Streams' `StandbyTask`). Each store starts as a restore does
//! (its checkpoint when it is one of this changelog incarnation, else wiped and read from the
//! start) and follows its changelog partition for as long as it is assigned, with the engine's
//! fetcher (long-poll, since it has no end to reach; read_committed under exactly-once, so it
//! never holds writes of transactions that may abort). Fetched records collect in a batch that
//! is written with its checkpoint, one store transaction, once it holds
//! [`EngineConfig::restore_batch_bytes`](super::EngineConfig::restore_batch_bytes) or the
//! fetch position reached the changelog's end (so the checkpoint, and the lag the member
//! reports, follow the changelog closely when it is quiet). An OFFSET_OUT_OF_RANGE of the
//! checkpoint wipes the store and reads from the start, as restore does.
//!
//! - **Promotion** (the task becomes active here): the pending batch is written, the changelog
//!   reading stops, and the task is built over the same open backends ([`StandbyStores`]), so
//!   its restore starts at the standby's checkpoint and reads only the tail. This also holds
//!   for memory stores, which keep their checkpoint while open.
//! - **Active → standby** (a cooperative revocation whose assignment names the task as a
//!   standby here): the committed task's backends become the standby's, open.
//! - **Gone** (the assignment no longer names it, or the engine closes): the pending batch is
//!   written and the backends are closed. A lost membership or an eager revocation leaves
//!   standbys alone (as Kafka Streams does): the next assignment decides.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use super::restore::stage_changelog_records;
use super::{Engine, EngineError, Event, Output, StandbySuspendReason};
use crate::client::fetcher::OffsetResetPolicy;
use crate::error::TaskError;
use crate::record::{RawRecord, TopicPartition};
use crate::state::{Checkpoint, KvBackend, StoreError, StoreFactory, WriteBatch};
use crate::task::{OpenStores, Task, TaskConfig, TaskId};

/// The standby tasks of an engine, and the assignment's.
#[derive(Default)]
pub(super) struct Standbys {
    /// The standbys running here.
    running: BTreeMap<TaskId, Standby>,
    /// The standby tasks the member's assignment names.
    pub(super) assigned: BTreeSet<TaskId>,
    /// The running standbys may differ from the assignment's (see
    /// `Engine::reconcile_standbys`).
    pub(super) dirty: bool,
}

/// A standby task: its logged stores, each following its changelog partition.
struct Standby {
    stores: Vec<StandbyStore>,
}

/// One store of a standby.
struct StandbyStore {
    store: String,
    backend: Box<dyn KvBackend>,
    changelog: TopicPartition,
    /// The checkpoint last written (exclusive changelog offset; `None`: the store is empty
    /// and has none).
    position: Option<i64>,
    /// Fetched records not written yet, their key and value bytes, and the position after
    /// them.
    pending: WriteBatch,
    pending_bytes: usize,
    pending_position: Option<i64>,
    /// Records written since the standby started.
    applied: u64,
}

/// Progress of one store of a standby task (see [`Engine::standby_progress`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandbyProgress {
    /// The task.
    pub task: TaskId,
    /// The store.
    pub store: String,
    /// Its changelog partition.
    pub changelog: TopicPartition,
    /// The store's checkpoint: the changelog offset its state is up to (exclusive; `None`
    /// while it has none).
    pub position: Option<i64>,
    /// The changelog's end as last fetched (the high watermark; the last stable offset under
    /// exactly-once; `None` before the first fetch answer).
    pub end: Option<i64>,
    /// Changelog records written into the store since the standby started.
    pub applied: u64,
}

impl StandbyProgress {
    /// Changelog records the store does not hold yet: `end - position` (from the start when
    /// it has no checkpoint), once the end is known.
    pub fn lag(&self) -> Option<i64> {
        Some((self.end? - self.position.unwrap_or(0)).max(0))
    }
}

/// Hands a task being created the standby's open backends, and opens its other stores with
/// the engine's factory: a promoted standby's task restores from the standby's checkpoint.
struct StandbyStores<'a> {
    open: Mutex<HashMap<String, Box<dyn KvBackend>>>,
    others: &'a dyn StoreFactory,
}

impl StoreFactory for StandbyStores<'_> {
    fn open(&self, store: &str, partition: i32) -> Result<Box<dyn KvBackend>, StoreError> {
        let kept = self
            .open
            .lock()
            .expect("the map is only locked by this call, which does not panic")
            .remove(store);
        match kept {
            Some(backend) => Ok(backend),
            None => self.others.open(store, partition),
        }
    }
}

impl StandbyStore {
    /// Writes the pending records with the checkpoint after them, one store transaction;
    /// returns the [`Event::StandbyBatch`] to report, if anything was pending. `end`: the
    /// changelog's end as last fetched.
    fn write_pending(
        &mut self,
        task: TaskId,
        topic_id: Option<[u8; 16]>,
        end: Option<i64>,
    ) -> Result<Option<Event>, TaskError> {
        let Some(position) = self.pending_position.take() else {
            return Ok(None);
        };
        let batch = std::mem::take(&mut self.pending);
        let (records, bytes) = (batch.len(), std::mem::take(&mut self.pending_bytes));
        self.backend
            .restore_batch(batch, Checkpoint::new(position, topic_id))
            .map_err(|source| TaskError::Store { task, source })?;
        self.applied += records as u64;
        self.position = Some(position);
        Ok(Some(Event::StandbyBatch {
            task,
            store: self.store.clone(),
            changelog: self.changelog.clone(),
            records,
            bytes,
            position,
            end,
        }))
    }
}

impl Engine {
    /// The standby tasks the group assigned to this engine (the member's assignment):
    /// reconciled with the running standbys by [`Engine::reconcile_standbys`].
    pub(super) fn standbys_assigned(&mut self, standbys: Vec<TaskId>) {
        self.standbys.assigned = standbys.into_iter().collect();
        self.standbys.dirty = true;
    }

    /// Closes the standbys the assignment no longer names and opens the ones it names that
    /// do not run here yet (once the changelogs exist, and not while the task is still active
    /// here, e.g. during its cooperative revocation, which opens it after).
    fn reconcile_standbys(&mut self) -> Result<bool, EngineError> {
        if !self.standbys.dirty || self.stopped() {
            return Ok(false);
        }
        // A task the pending assignment makes active here keeps its standby until promoted.
        let promoting: BTreeSet<TaskId> = self
            .pending_assignment
            .iter()
            .flat_map(|(tasks, _)| tasks.iter().copied())
            .collect();
        let mut progress = false;
        let gone: Vec<TaskId> = self
            .standbys
            .running
            .keys()
            .filter(|id| !self.standbys.assigned.contains(id) && !promoting.contains(id))
            .copied()
            .collect();
        for id in gone {
            self.close_standby(id, StandbySuspendReason::Migrated)?;
            progress = true;
        }
        if self.closing {
            self.standbys.dirty = false;
            return Ok(progress);
        }
        if !self.changelogs_ready() {
            // Retried on a later drive (the assignment waits for them too).
            return Ok(progress);
        }
        let new: Vec<TaskId> = self
            .standbys
            .assigned
            .iter()
            .filter(|id| {
                !self.standbys.running.contains_key(id)
                    && !self.tasks.contains_key(id)
                    && !self.restoring.contains_key(id)
                    && !promoting.contains(id)
            })
            .copied()
            .collect();
        let mut blocked = false;
        for id in new {
            match self.open_standby(id, Vec::new()) {
                Ok(()) => progress = true,
                // Another stream thread of the process still has the task (it gives it up,
                // or its standby moves here): tried again on the next poll.
                Err(error) if error.is_store_in_use() => {
                    tracing::debug!(task = %id, %error, "standby's stores still open in another stream thread; starting it later");
                    blocked = true;
                }
                Err(error) => return Err(error),
            }
        }
        self.standbys.dirty = blocked;
        Ok(progress)
    }

    /// Starts standby `id`: its logged stores from `kept` (backends of the task that just ran
    /// here) or opened now, each following its changelog from its checkpoint.
    pub(super) fn open_standby(&mut self, id: TaskId, kept: OpenStores) -> Result<(), EngineError> {
        let mut kept: HashMap<String, Box<dyn KvBackend>> = kept.into_iter().collect();
        let logged: Vec<(String, String)> = self
            .changelogs
            .iter()
            .filter(|(sub, _, _)| *sub == id.subtopology)
            .map(|(_, store, topic)| (store.clone(), topic.clone()))
            .collect();
        if logged.is_empty() {
            tracing::debug!(task = %id, "standby of a task without logged stores: nothing to keep");
            return Ok(());
        }
        let store_error = |source| EngineError::from(TaskError::Store { task: id, source });
        // Every store first (one may be in use by another stream thread: then nothing of the
        // standby exists yet), then their changelogs.
        let mut stores = Vec::with_capacity(logged.len());
        for (store, topic) in logged {
            let mut backend = match kept.remove(&store) {
                // Committed before it was handed over: nothing may be pending (a changelog
                // batch is refused over uncommitted writes).
                Some(mut backend) => {
                    debug_assert_eq!(
                        backend.uncommitted_len(),
                        0,
                        "a store handed over uncommitted"
                    );
                    backend.rollback();
                    backend
                }
                None => self
                    .stores
                    .open(&store, id.partition)
                    .map_err(store_error)?,
            };
            let changelog = TopicPartition::new(topic.as_str(), id.partition);
            let topic_id = self.metadata.topic_id(&topic);
            let mut checkpoint = backend.checkpoint().map_err(store_error)?;
            if let Some(cp) = checkpoint
                && cp.topic_id.is_some()
                && topic_id.is_some()
                && cp.topic_id != topic_id
            {
                tracing::warn!(task = %id, %store, %changelog, "standby: checkpoint of another incarnation of the changelog topic; wiping the store");
                checkpoint = None;
            }
            if checkpoint.is_none() {
                // Nothing to trust without a checkpoint (as for a restore).
                backend.wipe().map_err(store_error)?;
            }
            stores.push(StandbyStore {
                store,
                backend,
                changelog,
                position: checkpoint.map(|cp| cp.changelog_offset),
                pending: WriteBatch::new(),
                pending_bytes: 0,
                pending_position: None,
                applied: 0,
            });
        }
        for store in &stores {
            let (changelog, from) = (&store.changelog, store.position);
            self.fetcher.assign_to_follow(changelog.clone(), from);
            if from.is_none() {
                self.fetcher
                    .reset_position(changelog, OffsetResetPolicy::Earliest);
            }
            tracing::info!(task = %id, store = %store.store, %changelog, checkpoint = ?from, "standby started");
            self.outputs.push_back(Output::Event(Event::StandbyStarted {
                task: id,
                store: store.store.clone(),
                changelog: changelog.clone(),
                checkpoint: from,
            }));
        }
        self.fetcher.update_leaders(&self.metadata);
        self.standbys.running.insert(id, Standby { stores });
        self.task_offsets_dirty = true;
        Ok(())
    }

    /// Stops standby `id` (writing what it fetched) and closes its stores.
    pub(super) fn close_standby(
        &mut self,
        id: TaskId,
        reason: StandbySuspendReason,
    ) -> Result<(), EngineError> {
        self.suspend_standby(id, reason).map(drop)
    }

    /// Closes every standby (the engine closes).
    pub(super) fn close_standbys(&mut self) -> Result<(), EngineError> {
        self.standbys.assigned.clear();
        let ids: Vec<TaskId> = self.standbys.running.keys().copied().collect();
        for id in ids {
            self.close_standby(id, StandbySuspendReason::Closed)?;
        }
        Ok(())
    }

    /// Creates active task `id`: from its standby here when there is one (which stops: its
    /// pending records are written, its changelog reading ends, and the task gets its open
    /// backends, so its restore starts at the standby's checkpoint), else with fresh stores.
    pub(super) fn create_task(
        &mut self,
        id: TaskId,
        config: TaskConfig,
        sink_counts: HashMap<String, i32>,
    ) -> Result<Task, EngineError> {
        let now = self.now;
        if !self.standbys.running.contains_key(&id) {
            return Ok(Task::new(
                &self.topology,
                id,
                self.stores.as_ref(),
                config,
                sink_counts,
                now,
            )?);
        }
        let open = self.suspend_standby(id, StandbySuspendReason::Promoted)?;
        tracing::info!(task = %id, "standby promoted: its restore reads only the changelog's tail after its checkpoint");
        let stores = StandbyStores {
            open: Mutex::new(open),
            others: self.stores.as_ref(),
        };
        Ok(Task::new(
            &self.topology,
            id,
            &stores,
            config,
            sink_counts,
            now,
        )?)
    }

    /// Writes standby `id`'s pending records, stops its changelog reading and returns its
    /// backends, open.
    fn suspend_standby(
        &mut self,
        id: TaskId,
        reason: StandbySuspendReason,
    ) -> Result<HashMap<String, Box<dyn KvBackend>>, EngineError> {
        let Some(standby) = self.standbys.running.remove(&id) else {
            return Ok(HashMap::new());
        };
        self.task_offsets_dirty = true;
        let mut open = HashMap::with_capacity(standby.stores.len());
        for mut store in standby.stores {
            let topic_id = self.metadata.topic_id(&store.changelog.topic);
            let end = self.fetcher.end_offset(&store.changelog);
            self.fetcher.unassign(&store.changelog);
            if let Some(event) = store.write_pending(id, topic_id, end)? {
                self.push_standby_batch(event);
            }
            tracing::info!(task = %id, store = %store.store, position = ?store.position, ?reason, "standby suspended");
            self.outputs
                .push_back(Output::Event(Event::StandbySuspended {
                    task: id,
                    store: store.store.clone(),
                    changelog: store.changelog.clone(),
                    position: store.position,
                    end,
                    reason,
                }));
            open.insert(store.store, store.backend);
        }
        Ok(open)
    }

    /// The standby and store that follow changelog partition `tp`, if any.
    fn standby_slot(&self, tp: &TopicPartition) -> Option<(TaskId, usize)> {
        let id = self.changelog_task(tp)?;
        let slot = self
            .standbys
            .running
            .get(&id)?
            .stores
            .iter()
            .position(|s| s.changelog == *tp)?;
        Some((id, slot))
    }

    /// Whether `tp` is a changelog partition a standby follows.
    pub(super) fn is_standby_changelog(&self, tp: &TopicPartition) -> bool {
        self.standby_slot(tp).is_some()
    }

    /// Adds a fetched changelog batch to its standby store's pending records; writes them once
    /// they hold `restore_batch_bytes` (the end of the changelog writes them too, see
    /// [`Engine::drive_standbys`]).
    pub(super) fn standby_records(
        &mut self,
        tp: &TopicPartition,
        records: Vec<RawRecord>,
    ) -> Result<(), EngineError> {
        let (id, slot) = self
            .standby_slot(tp)
            .expect("called for standby changelog partitions only");
        let topic_id = self.metadata.topic_id(&tp.topic);
        let end = self.fetcher.end_offset(tp);
        let limit = self.config.restore_batch_bytes;
        let store = &mut self
            .standbys
            .running
            .get_mut(&id)
            .expect("standby_slot found it")
            .stores[slot];
        match stage_changelog_records(records, &mut store.pending, &mut store.pending_bytes) {
            Ok(None) => return Ok(()),
            Ok(Some(position)) => store.pending_position = Some(position),
            Err(offset) => {
                return Err(EngineError::CorruptChangelog {
                    task: id,
                    store: store.store.clone(),
                    changelog: tp.clone(),
                    offset,
                    detail: "a record without a key".into(),
                });
            }
        }
        if store.pending_bytes >= limit
            && let Some(event) = store.write_pending(id, topic_id, end)?
        {
            self.push_standby_batch(event);
        }
        Ok(())
    }

    /// The standbys' work: follow the assignment, write what reached the changelogs' ends.
    pub(super) fn drive_standbys(&mut self) -> Result<bool, EngineError> {
        let reconciled = self.reconcile_standbys()?;
        Ok(self.write_caught_up_standbys()? || reconciled)
    }

    /// Writes the pending records of every standby store whose fetch reached its changelog's
    /// end, and moves a checkpoint to the end when only control or aborted records were
    /// behind it: the standby's position follows a quiet changelog exactly.
    fn write_caught_up_standbys(&mut self) -> Result<bool, EngineError> {
        let mut written = Vec::new();
        for (&id, standby) in &mut self.standbys.running {
            for store in &mut standby.stores {
                let (Some(position), Some(end)) = (
                    self.fetcher.position(&store.changelog),
                    self.fetcher.end_offset(&store.changelog),
                ) else {
                    continue;
                };
                if position < end || store.position >= Some(position) {
                    continue;
                }
                let topic_id = self.metadata.topic_id(&store.changelog.topic);
                // Past the last record fetched: control records (exactly-once) or records
                // compacted away; the checkpoint moves to the end with the batch (or alone).
                store.pending_position = Some(position);
                written.extend(store.write_pending(id, topic_id, Some(end))?);
            }
        }
        let progress = !written.is_empty();
        for event in written {
            self.push_standby_batch(event);
        }
        Ok(progress)
    }

    /// A standby's changelog answered OFFSET_OUT_OF_RANGE: its checkpoint is not in the log
    /// (past its end, or below a start that retention moved). Wipes the store and reads the
    /// changelog from the start. False when `tp` is not a standby's changelog.
    pub(super) fn standby_out_of_range(
        &mut self,
        tp: &TopicPartition,
        offset: i64,
    ) -> Result<bool, EngineError> {
        let Some((id, slot)) = self.standby_slot(tp) else {
            return Ok(false);
        };
        let store = &mut self
            .standbys
            .running
            .get_mut(&id)
            .expect("standby_slot found it")
            .stores[slot];
        tracing::warn!(task = %id, store = %store.store, changelog = %tp, offset, "standby: checkpoint not in the changelog; wiping the store and reading it from the start");
        store
            .backend
            .wipe()
            .map_err(|source| TaskError::Store { task: id, source })?;
        store.pending = WriteBatch::new();
        store.pending_bytes = 0;
        store.pending_position = None;
        store.position = None;
        self.fetcher.reset_position(tp, OffsetResetPolicy::Earliest);
        self.task_offsets_dirty = true;
        Ok(true)
    }

    /// The standby tasks running here, sorted.
    pub fn standby_tasks(&self) -> impl Iterator<Item = TaskId> + '_ {
        self.standbys.running.keys().copied()
    }

    /// The progress of every store of the standby tasks: checkpoint, changelog end, lag.
    pub fn standby_progress(&self) -> impl Iterator<Item = StandbyProgress> + '_ {
        self.standbys
            .running
            .iter()
            .flat_map(move |(&task, standby)| {
                standby.stores.iter().map(move |store| StandbyProgress {
                    task,
                    store: store.store.clone(),
                    changelog: store.changelog.clone(),
                    position: store.position,
                    end: self.fetcher.end_offset(&store.changelog),
                    applied: store.applied,
                })
            })
    }

    /// The checkpoint of every store of standby `id` (`None` for a store without one).
    pub(super) fn standby_checkpoints(&self, id: TaskId) -> Option<Vec<Option<i64>>> {
        let standby = self.standbys.running.get(&id)?;
        Some(standby.stores.iter().map(|s| s.position).collect())
    }

    /// Reports a standby batch and counts its records.
    fn push_standby_batch(&mut self, event: Event) {
        if let Event::StandbyBatch { records, .. } = &event {
            self.metrics.standby_records_total += *records as u64;
        }
        self.task_offsets_dirty = true;
        self.outputs.push_back(Output::Event(event));
    }
}

#[cfg(test)]
mod tests;
