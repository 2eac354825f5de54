//! What the engine tells its group member about the task state it holds, for the state-aware
//! assignor (KIP-441): per task with logged stores whose state is here (active, restoring or
//! standby), the sum over its logged stores of the changelog offset its local copy is up to
//! (exclusive: the store checkpoints). A task with a store without a checkpoint (empty, or
//! in the middle of a bulk restore) is left out: the assignor counts it as not caught up.
//!
//! The map is sent again whenever it may have changed (a commit moved the active tasks'
//! checkpoints, a standby wrote a batch, a restore ended, a task came or went): the member
//! writes the latest one into every subscription it sends.

use std::collections::BTreeMap;

use super::Engine;
use crate::task::{Task, TaskId};

impl Engine {
    /// Sends the member the current offsets when something changed them.
    pub(super) fn report_task_offsets(&mut self) {
        if !self.task_offsets_dirty || self.stopped() {
            return;
        }
        self.task_offsets_dirty = false;
        let offsets = self.task_offsets();
        self.group.set_task_offsets(offsets);
    }

    /// Per local task with logged stores, the sum of their checkpoints (see the module docs).
    pub(super) fn task_offsets(&self) -> BTreeMap<TaskId, i64> {
        let mut offsets = BTreeMap::new();
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
