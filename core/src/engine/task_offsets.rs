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

    /// Per task with a checkpoint of every logged store in the factory's listing, their sum
    /// (see [`listed_task_offsets`]); live tasks included.
    fn disk_task_offsets(&self) -> BTreeMap<TaskId, i64> {
        match &self.local_checkpoints.listed {
            Some(listed) => {
                listed_task_offsets(listed, &self.changelogs, |t| self.metadata.topic_id(t))
            }
            None => BTreeMap::new(),
        }
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

/// Per task with a checkpoint in `listed` for every logged store of its sub-topology (the
/// `changelogs`: sub-topology, store, changelog topic), the sum of their offsets. A
/// checkpoint of another changelog incarnation than `topic_id` knows (both ids known and
/// different) does not count; stores not in `changelogs` are ignored.
fn listed_task_offsets(
    listed: &[LocalCheckpoint],
    changelogs: &[(usize, String, String)],
    topic_id: impl Fn(&str) -> Option<[u8; 16]>,
) -> BTreeMap<TaskId, i64> {
    // Per task, per logged store (index into `changelogs`), its offset.
    let mut found: BTreeMap<TaskId, BTreeMap<usize, i64>> = BTreeMap::new();
    for local in listed {
        let Some(index) = changelogs
            .iter()
            .position(|(_, store, _)| *store == local.store)
        else {
            continue; // not a logged store of this topology
        };
        let (subtopology, _, topic) = &changelogs[index];
        if let (Some(current), Some(theirs)) = (topic_id(topic), local.checkpoint.topic_id)
            && current != theirs
        {
            tracing::debug!(
                store = %local.store,
                partition = local.partition,
                "local checkpoint of another changelog incarnation not reported"
            );
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
            let logged = changelogs
                .iter()
                .enumerate()
                .filter(|(_, (sub, _, _))| *sub == task.subtopology)
                .map(|(index, _)| stores.get(&index).copied());
            Some((task, checked_sum(logged)?))
        })
        .collect()
}

/// The sum of `offsets`, `None` when one is `None` or the sum leaves `i64`.
fn checked_sum(offsets: impl IntoIterator<Item = Option<i64>>) -> Option<i64> {
    offsets
        .into_iter()
        .try_fold(0i64, |sum, offset| sum.checked_add(offset?))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::{checked_sum, listed_task_offsets};
    use crate::state::{Checkpoint, LocalCheckpoint};
    use crate::task::TaskId;

    #[test]
    fn a_listed_task_needs_every_logged_store_of_the_current_incarnation() {
        let (current, older) = ([1; 16], [2; 16]);
        let changelogs: Vec<(usize, String, String)> = [
            (0, "a", "app-a-changelog"),
            (0, "b", "app-b-changelog"),
            (1, "c", "app-c-changelog"),
        ]
        .iter()
        .map(|(sub, store, topic)| (*sub, (*store).to_owned(), (*topic).to_owned()))
        .collect();
        let local = |store: &str, partition, offset, id| LocalCheckpoint {
            store: store.to_owned(),
            partition,
            checkpoint: Checkpoint::new(offset, id),
        };
        let listed = [
            // Task 0_0: both stores (one without a topic id): reported.
            local("a", 0, 10, Some(current)),
            local("b", 0, 5, None),
            // Task 0_1: store `b` missing: not reported.
            local("a", 1, 7, Some(current)),
            // Task 0_2: store `b` of an older incarnation: not reported.
            local("a", 2, 7, Some(current)),
            local("b", 2, 7, Some(older)),
            // Task 1_3: its one store, the topic id unknown to metadata: reported.
            local("c", 3, 4, Some(older)),
            // Not a logged store of this topology.
            local("unlogged", 0, 1, None),
        ];
        let topic_id = |topic: &str| (topic != "app-c-changelog").then_some(current);
        let task = |subtopology, partition| TaskId {
            subtopology,
            partition,
        };
        assert_eq!(
            listed_task_offsets(&listed, &changelogs, topic_id),
            BTreeMap::from([(task(0, 0), 15), (task(1, 3), 4)])
        );
        assert_eq!(
            listed_task_offsets(&[], &changelogs, topic_id),
            BTreeMap::new()
        );
    }

    #[test]
    fn a_sum_needs_every_checkpoint_and_never_overflows() {
        assert_eq!(checked_sum([Some(3), Some(4)]), Some(7));
        assert_eq!(checked_sum([Some(3), None]), None);
        assert_eq!(checked_sum([Some(i64::MAX), Some(1)]), None);
        assert_eq!(checked_sum([]), Some(0));
    }
}
