//! How far behind each member's copy of a stateful task's state is, from the task offsets in
//! the subscriptions (see the [assignor](super) module docs, "State-aware placement").
//!
//! - The reference position of task `t` is the largest offset sum any member reports for it.
//!   The leader asks no broker for changelog end offsets: the task's active reports its own
//!   position after its last commit, so the reference is the changelog's end up to that
//!   commit (or further, when a standby read records written since).
//! - A member's own lag is the reference minus its sum. No sum means no state: it would
//!   restore the whole changelog, so its lag is the reference itself (Kafka Streams counts a
//!   client without the task's state as lagging by the changelog's end). A task whose
//!   changelog holds at most the acceptable recovery lag is therefore caught up everywhere.
//!   The task's last active (the member that held it, else its previous owner), when it
//!   reports a sum, has lag 0: its position is that of its last commit, which a standby can
//!   pass by reading the records written since (Kafka Streams' running actives report
//!   "latest" for the same reason).
//! - Lags are per *process*: the members of one process share one state directory (the
//!   adapters' stream threads share one LMDB environment), so a member's lag is the smallest
//!   lag in its process. Members with an empty process id are a process of their own.

use std::collections::{BTreeMap, BTreeSet};

use super::MemberSubscription;
use crate::task::TaskId;

/// The process of every member (indices into the sorted members).
#[derive(Debug, Clone)]
pub(super) struct Processes {
    of_member: Vec<usize>,
}

impl Processes {
    /// Numbers the processes of `members`: one per distinct non-empty id, one per member
    /// without an id.
    pub(super) fn new(members: &[&MemberSubscription]) -> Self {
        let mut ids: BTreeMap<&str, usize> = BTreeMap::new();
        let mut next = 0;
        let of_member = members
            .iter()
            .map(|m| {
                let mut fresh = || {
                    next += 1;
                    next - 1
                };
                if m.process_id.is_empty() {
                    fresh()
                } else {
                    *ids.entry(m.process_id.as_str()).or_insert_with(fresh)
                }
            })
            .collect();
        Self { of_member }
    }

    /// The process of member `member`.
    pub(super) fn of(&self, member: usize) -> usize {
        self.of_member.get(member).copied().unwrap_or(usize::MAX)
    }
}

/// Per stateful task, every member's lag.
#[derive(Debug, Clone, Default)]
pub(super) struct Lags {
    /// Per stateful task with a sum anywhere, per member: its process's lag, `None` without
    /// state.
    by_task: BTreeMap<TaskId, Vec<Option<i64>>>,
    /// Per stateful task with a sum anywhere: the largest sum (the reference position).
    reference: BTreeMap<TaskId, i64>,
    stateful: BTreeSet<usize>,
}

impl Lags {
    /// The lags of `members` (sorted) for the tasks of the `stateful` sub-topologies, given
    /// each task's last active.
    pub(super) fn new(
        members: &[&MemberSubscription],
        processes: &Processes,
        stateful: &BTreeSet<usize>,
        last_active: &BTreeMap<TaskId, usize>,
    ) -> Self {
        let mut sums: BTreeMap<TaskId, Vec<Option<i64>>> = BTreeMap::new();
        for (i, m) in members.iter().enumerate() {
            for (&task, &sum) in &m.task_offsets {
                if stateful.contains(&task.subtopology) {
                    let row = sums
                        .entry(task)
                        .or_insert_with(|| vec![None; members.len()]);
                    row[i] = Some(sum);
                }
            }
        }
        let reference: BTreeMap<TaskId, i64> = sums
            .iter()
            .map(|(task, row)| (*task, row.iter().flatten().copied().max().unwrap_or(0)))
            .collect();
        let by_task = sums
            .into_iter()
            .map(|(task, row)| {
                let reference = row.iter().flatten().copied().max().unwrap_or(0);
                let own: Vec<Option<i64>> = row
                    .iter()
                    .enumerate()
                    .map(|(i, sum)| {
                        sum.map(|s| {
                            if last_active.get(&task) == Some(&i) {
                                0
                            } else {
                                reference.saturating_sub(s).max(0)
                            }
                        })
                    })
                    .collect();
                let mut by_process: BTreeMap<usize, i64> = BTreeMap::new();
                for (i, lag) in own.iter().enumerate() {
                    if let Some(lag) = *lag {
                        let best = by_process.entry(processes.of(i)).or_insert(lag);
                        *best = (*best).min(lag);
                    }
                }
                let lags = (0..members.len())
                    .map(|i| by_process.get(&processes.of(i)).copied())
                    .collect();
                (task, lags)
            })
            .collect();
        Self {
            by_task,
            reference,
            stateful: stateful.clone(),
        }
    }

    /// Whether `task` has state (its sub-topology has logged stores).
    pub(super) fn is_stateful(&self, task: TaskId) -> bool {
        self.stateful.contains(&task.subtopology)
    }

    /// Member `member`'s lag for `task`: `None` when its process has no state of it; `0` for
    /// a stateless task.
    pub(super) fn of(&self, task: TaskId, member: usize) -> Option<i64> {
        if !self.is_stateful(task) {
            return Some(0);
        }
        self.by_task
            .get(&task)
            .and_then(|row| row.get(member).copied().flatten())
    }

    /// How many changelog records member `member` would restore to run `task`: its lag, or
    /// for a member without the task's state the whole changelog up to the reference
    /// position; `None` when no member reported a sum for the task (nobody has state, or
    /// no record was ever logged).
    pub(super) fn restore_lag(&self, task: TaskId, member: usize) -> Option<i64> {
        if !self.is_stateful(task) {
            return Some(0);
        }
        let reference = *self.reference.get(&task)?;
        Some(self.of(task, member).unwrap_or(reference))
    }
}
