//! What the engine tells its group member about the task state it holds, for the state-aware
//! assignor (KIP-441): per task with logged stores whose state is here, the sum over its logged
//! stores of the changelog offset its local copy is up to (exclusive: the store checkpoints).
//!
//! - Tasks running, restoring or standing by here report their live figures. A task with a
//!   store without a checkpoint (empty, or in the middle of a bulk restore) is left out: the
//!   assignor counts it as not caught up.
//! - Every other task whose logged stores *all* have a checkpoint in the store factory
//!   ([`StoreFactory::local_checkpoints`](crate::state::StoreFactory::local_checkpoints):
//!   state left on disk by a task that closed, or by the previous run of this instance)
//!   reports the sum of those, as Kafka Streams reads the checkpoints of every task
//!   directory. A checkpoint of another incarnation of its changelog (a topic id other than the
//!   one metadata knows) does not count. The listing is read once at startup and again after a
//!   task or standby closed (not at every commit: the state of tasks not here does not move);
//!   a listing that cannot be read reports nothing from disk (with a warning).
//!
//! The map is sent again whenever it may have changed (a commit moved the active tasks'
//! checkpoints, a standby wrote a batch, a restore ended, a task came or went): the member
//! writes the latest one into every subscription it sends.

use std::collections::{BTreeMap, BTreeSet};

use super::Engine;
use crate::state::LocalCheckpoint;
use crate::task::{Task, TaskId};

/// The store factory's listing of local checkpoints, as last read.
#[derive(Debug, Default)]
pub(super) struct LocalCheckpoints {
    /// The listing; `None` until read (at the first report).
    listed: Option<Vec<LocalCheckpoint>>,
    /// The tasks running, restoring or standing by here at the last report: one of them
    /// missing at the next means it closed, leaving its state to list again.
    live: BTreeSet<TaskId>,
}

impl Engine {
    /// Sends the member the current offsets when something changed them.
    pub(super) fn report_task_offsets(&mut self) {
        if !self.task_offsets_dirty || self.stopped() {
            return;
        }
        self.task_offsets_dirty = false;
        self.refresh_local_checkpoints();
        let offsets = self.task_offsets();
        self.group.set_task_offsets(offsets);
    }

    /// The tasks whose state is live here: running, restoring or standing by.
    fn live_tasks(&self) -> BTreeSet<TaskId> {
        let running = self.tasks.keys().chain(self.restoring.keys()).copied();
        running.chain(self.standby_tasks()).collect()
    }

    /// Reads the factory's local checkpoints again at the first report and after a task or
    /// standby closed.
    fn refresh_local_checkpoints(&mut self) {
        let live = self.live_tasks();
        let closed = self
            .local_checkpoints
            .live
            .difference(&live)
            .next()
            .is_some();
        if closed || self.local_checkpoints.listed.is_none() {
            let listed = self.stores.local_checkpoints().unwrap_or_else(|error| {
                tracing::warn!(%error, "local store checkpoints unreadable: state on disk not reported");
                Vec::new()
            });
            self.local_checkpoints.listed = Some(listed);
        }
        self.local_checkpoints.live = live;
    }

    /// Per local task with logged stores, the sum of their checkpoints (see the module docs).
    pub(super) fn task_offsets(&self) -> BTreeMap<TaskId, i64> {
        let mut offsets = self.disk_task_offsets();
        for id in self.live_tasks() {
            offsets.remove(&id);
        }
        let running = self.tasks.values();
        let restoring = self.restoring.values().map(|r| &r.task);
        for task in running.chain(restoring) {
            if let Some(sum) = self.checkpoint_sum(task) {
                offsets.insert(task.id(), sum);
            }
        }
        for id in self.standby_tasks() {
            let sum = self.standby_checkpoints(id).and_then(checked_sum);
            if let Some(sum) = sum {
                offsets.insert(id, sum);
            }
        }
        offsets
    }

    /// Per task with a checkpoint of every logged store in the factory's listing (of the
    /// changelog incarnation metadata knows, if it knows one), their sum; live tasks included.
    fn disk_task_offsets(&self) -> BTreeMap<TaskId, i64> {
        let Some(listed) = &self.local_checkpoints.listed else {
            return BTreeMap::new();
        };
        // Per task, per logged store (index into `changelogs`), its offset.
        let mut found: BTreeMap<TaskId, BTreeMap<usize, i64>> = BTreeMap::new();
        for local in listed {
            let Some(index) = self
                .changelogs
                .iter()
                .position(|(_, store, _)| *store == local.store)
            else {
                continue; // not a logged store of this topology
            };
            let (subtopology, _, topic) = &self.changelogs[index];
            let current = self.metadata.topic_id(topic);
            if let (Some(current), Some(theirs)) = (current, local.checkpoint.topic_id)
                && current != theirs
            {
                tracing::debug!(store = %local.store, partition = local.partition, "local checkpoint of an older changelog incarnation not reported");
                continue;
            }
            let task = TaskId {
                subtopology: *subtopology,
                partition: local.partition,
            };
            found
                .entry(task)
                .or_default()
                .insert(index, local.checkpoint.changelog_offset);
        }
        found
            .into_iter()
            .filter_map(|(task, stores)| {
                let logged = self
                    .changelogs
                    .iter()
                    .enumerate()
                    .filter(|(_, (sub, _, _))| *sub == task.subtopology)
                    .map(|(index, _)| stores.get(&index).copied());
                Some((task, checked_sum(logged)?))
            })
            .collect()
    }

    /// The sum of `task`'s logged stores' checkpoints (`None` without logged stores, or when
    /// one has no checkpoint or cannot be read).
    fn checkpoint_sum(&self, task: &Task) -> Option<i64> {
        let id = task.id();
        let mut logged = self
            .changelogs
            .iter()
            .filter(|(sub, _, _)| *sub == id.subtopology)
            .peekable();
        logged.peek()?;
        checked_sum(logged.map(|(_, store, _)| match task.store_checkpoint(store) {
            Ok(checkpoint) => checkpoint.map(|cp| cp.changelog_offset),
            Err(error) => {
                tracing::warn!(task = %id, %store, %error, "store checkpoint unreadable: task offset not reported");
                None
            }
        }))
    }
}

/// The sum of `offsets`, `None` when one is `None` or the sum leaves `i64`.
fn checked_sum(offsets: impl IntoIterator<Item = Option<i64>>) -> Option<i64> {
    offsets
        .into_iter()
        .try_fold(0i64, |sum, offset| sum.checked_add(offset?))
}

#[cfg(test)]
mod tests {
    use super::checked_sum;

    #[test]
    fn a_sum_needs_every_checkpoint_and_never_overflows() {
        assert_eq!(checked_sum([Some(3), Some(4)]), Some(7));
        assert_eq!(checked_sum([Some(3), None]), None);
        assert_eq!(checked_sum([Some(i64::MAX), Some(1)]), None);
        assert_eq!(checked_sum([]), Some(0));
    }
}
