//! The commit cycle: flush the producer until every output record is acknowledged, commit
//! the stores, then commit the input offsets; revocations and the close wait for it.

use std::collections::BTreeMap;

use super::{Engine, EngineError, Event, Output};
use crate::client::group::{CommitError, CommitId};
use crate::record::TopicPartition;

/// Where the commit cycle is.
#[derive(Debug)]
pub(super) enum CommitPhase {
    Idle,
    /// Processing paused; waiting until all output is acknowledged.
    Flushing {
        offsets: BTreeMap<TopicPartition, i64>,
    },
    /// Offsets sent to the coordinator.
    Committing {
        id: CommitId,
    },
}

/// Why a commit is wanted now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CommitReason {
    Interval,
    Revoke,
    Close,
}

impl Engine {
    pub(super) fn drive_commit(&mut self) -> bool {
        let now = self.now;
        match &self.commit {
            CommitPhase::Idle => {
                let reason = self.commit_reason.or_else(|| {
                    (!self.tasks.is_empty()
                        && now >= self.last_commit + self.config.commit_interval)
                        .then_some(CommitReason::Interval)
                });
                let Some(reason) = reason else {
                    return false;
                };
                let offsets: BTreeMap<TopicPartition, i64> = self
                    .tasks
                    .values()
                    .flat_map(|t| t.committable_offsets())
                    .filter(|(tp, o)| self.committed.get(tp) != Some(o))
                    .collect();
                if offsets.is_empty() && self.backlog.is_empty() && self.producer.is_flushed() {
                    self.last_commit = now;
                    if reason != CommitReason::Interval {
                        self.commit_done();
                    }
                    return reason != CommitReason::Interval;
                }
                self.producer.flush();
                self.commit = CommitPhase::Flushing { offsets };
                true
            }
            CommitPhase::Flushing { .. } => {
                if !self.backlog.is_empty() || !self.producer.is_flushed() {
                    return false;
                }
                for task in self.tasks.values_mut() {
                    if let Err(error) = task.commit_stores() {
                        self.fail(error.into());
                        return true;
                    }
                }
                let CommitPhase::Flushing { offsets } =
                    std::mem::replace(&mut self.commit, CommitPhase::Idle)
                else {
                    unreachable!("this arm matched Flushing");
                };
                if offsets.is_empty() {
                    self.last_commit = now;
                    self.commit_done();
                } else {
                    let id = self.group.commit(offsets, now);
                    self.commit = CommitPhase::Committing { id };
                }
                true
            }
            CommitPhase::Committing { .. } => false,
        }
    }

    /// A commit cycle ended: finish what was waiting for it.
    fn commit_done(&mut self) {
        let now = self.now;
        match self.commit_reason.take() {
            Some(CommitReason::Revoke) => {
                let revoked = self
                    .revoking
                    .take()
                    .expect("a revoke commit is started only with tasks to revoke");
                self.close_tasks(true);
                self.outputs
                    .push_back(Output::Event(Event::TasksRevoked(revoked)));
                self.group.revoke_done(now);
            }
            Some(CommitReason::Close) => {
                self.close_tasks(true);
                self.group.leave(now);
            }
            Some(CommitReason::Interval) | None => {}
        }
    }

    /// The coordinator accepted commit `id`.
    pub(super) fn commit_accepted(&mut self, id: CommitId, offsets: BTreeMap<TopicPartition, i64>) {
        // Another id: a commit of tasks that were lost since (its outcome changes nothing).
        if matches!(self.commit, CommitPhase::Committing { id: ours } if ours == id) {
            self.commit = CommitPhase::Idle;
            self.last_commit = self.now;
            self.committed
                .extend(offsets.iter().map(|(tp, o)| (tp.clone(), *o)));
            self.outputs
                .push_back(Output::Event(Event::Committed(offsets)));
            self.commit_done();
        }
    }

    /// The coordinator refused commit `id` (the offsets stay uncommitted).
    pub(super) fn commit_rejected(&mut self, id: CommitId, error: CommitError) {
        if matches!(self.commit, CommitPhase::Committing { id: ours } if ours == id) {
            self.commit = CommitPhase::Idle;
            self.last_commit = self.now;
            self.warn(EngineError::Commit(error));
            self.commit_done();
        }
    }
}
