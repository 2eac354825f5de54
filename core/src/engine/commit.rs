//! The commit cycle: flush the producer until every output record is acknowledged, commit
//! the stores, then commit the input offsets; revocations and the close wait for it.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::ResponseError;

use super::transaction::AbortCause;
use super::{Engine, EngineError, EngineState, Event, Output};
use crate::client::group::{CommitError, CommitId};
use crate::record::{ProducerRecord, TopicPartition};
use crate::state::Checkpoint;

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
    /// Exactly-once: the producer commits the transaction (its offsets come back with
    /// [`ProducerEvent::TransactionCommitted`](crate::client::producer::ProducerEvent)).
    Transaction,
    /// Exactly-once: the producer aborts the transaction.
    Aborting {
        cause: AbortCause,
    },
}

/// Why a commit is wanted now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CommitReason {
    Interval,
    /// Eager: every task is revoked after the commit.
    Revoke,
    /// Cooperative: the tasks in `Engine::revoking` are closed after the commit, the others
    /// go on.
    CooperativeRevoke,
    Close,
}

impl Engine {
    pub(super) fn drive_commit(&mut self) -> bool {
        let now = self.now;
        match &self.commit {
            // An earlier transaction still ending (its tasks were lost while it committed):
            // the producer takes no new commit before its outcome.
            CommitPhase::Idle if self.transaction_ending() => false,
            CommitPhase::Idle => {
                // A commit refused by a cooperative rebalance is retried as soon as the new
                // generation takes commits.
                let retry = self.commit_after_rebalance && self.group.is_stable();
                let reason = self.commit_reason.or_else(|| {
                    (!self.tasks.is_empty()
                        && (retry || now >= self.last_commit + self.config.commit_interval))
                        .then_some(CommitReason::Interval)
                });
                let Some(reason) = reason else {
                    return false;
                };
                // Between the JoinGroup and SyncGroup answers of a cooperative rebalance the
                // coordinator refuses commits: the tasks go on processing, the commit waits.
                if reason != CommitReason::CooperativeRevoke && self.commit_waits_for_rebalance() {
                    return false;
                }
                self.commit_after_rebalance = false;
                let offsets: BTreeMap<TopicPartition, i64> = self
                    .tasks
                    .values()
                    .flat_map(|t| t.committable_offsets())
                    .filter(|(tp, o)| self.committed.get(tp) != Some(o))
                    .collect();
                let logged = self.send_changelog_writes();
                // Under exactly-once, records already acknowledged may still wait in the
                // open transaction.
                if !logged
                    && !self.transaction_open()
                    && offsets.is_empty()
                    && self.backlog.is_empty()
                    && self.producer.is_flushed()
                {
                    self.last_commit = now;
                    if reason != CommitReason::Interval {
                        self.commit_done();
                    }
                    return reason != CommitReason::Interval;
                }
                self.producer.flush();
                self.commit_started = Some(now);
                self.commit = CommitPhase::Flushing { offsets };
                true
            }
            // The offsets (or the transaction's TxnOffsetCommit) would carry a generation the
            // coordinator refuses until the cooperative rebalance's assignment is in.
            CommitPhase::Flushing { .. } if self.commit_waits_for_rebalance() => false,
            CommitPhase::Flushing { .. } if self.exactly_once() => {
                // The producer waits for the acknowledgements itself, inside the commit.
                if !self.backlog.is_empty() {
                    return false;
                }
                let CommitPhase::Flushing { offsets } =
                    std::mem::replace(&mut self.commit, CommitPhase::Idle)
                else {
                    unreachable!("this arm matched Flushing");
                };
                self.commit_transaction(offsets);
                true
            }
            CommitPhase::Flushing { .. } => {
                if !self.backlog.is_empty() || !self.producer.is_flushed() {
                    return false;
                }
                if !self.commit_stores() {
                    return true;
                }
                let CommitPhase::Flushing { offsets } =
                    std::mem::replace(&mut self.commit, CommitPhase::Idle)
                else {
                    unreachable!("this arm matched Flushing");
                };
                if offsets.is_empty() {
                    self.last_commit = now;
                    self.count_commit(true);
                    self.commit_done();
                } else {
                    let id = self.group.commit(offsets, now);
                    self.commit = CommitPhase::Committing { id };
                }
                true
            }
            CommitPhase::Committing { .. }
            | CommitPhase::Transaction
            | CommitPhase::Aborting { .. } => false,
        }
    }

    /// Whether a commit must wait: between the JoinGroup and SyncGroup answers of a
    /// cooperative rebalance the coordinator refuses commits (`REBALANCE_IN_PROGRESS`), while
    /// the tasks go on processing. The SyncGroup answer (or a lost membership) ends the wait.
    pub(super) fn commit_waits_for_rebalance(&self) -> bool {
        self.group.is_rebalancing_cooperatively() && !self.group.may_commit()
    }

    /// Commits every task's stores, each logged store with its changelog checkpoint: every
    /// changelog write of this commit is acknowledged (and, under exactly-once, its
    /// transaction committed), so each store's state corresponds to its changelog up to the
    /// last acknowledged offset. False when a store failed (the engine stopped).
    pub(super) fn commit_stores(&mut self) -> bool {
        for task in self.tasks.values_mut() {
            let id = task.id();
            let checkpoint = |store: &str| {
                let (_, _, topic) = self
                    .changelogs
                    .iter()
                    .find(|(sub, s, _)| *sub == id.subtopology && s == store)?;
                let tp = TopicPartition::new(topic.as_str(), id.partition);
                let offset = *self.changelog_acked.get(&tp)?;
                Some(Checkpoint::new(offset, self.metadata.topic_id(topic)))
            };
            if let Err(error) = task.commit_stores_with(checkpoint) {
                self.fail(error.into());
                return false;
            }
        }
        self.task_offsets_dirty = true;
        true
    }

    /// Hands each logged store's writes since the last commit to the producer (through the
    /// backlog, behind the task's output) as one append to its changelog partition: puts as
    /// records, deletes as tombstones. True when there were any.
    fn send_changelog_writes(&mut self) -> bool {
        let mut any = false;
        let timestamp = self.now.as_millis();
        for (id, task) in &self.tasks {
            for (store, writes) in task.changelog_writes() {
                let (_, _, topic) = self
                    .changelogs
                    .iter()
                    .find(|(sub, s, _)| *sub == id.subtopology && s == store)
                    .expect("a task's logged stores are the engine's changelogs");
                let topic: Arc<str> = topic.as_str().into();
                let records = writes.into_iter().map(|write| ProducerRecord {
                    topic: topic.clone(),
                    partition: Some(id.partition),
                    key: Some(write.key),
                    value: write.value,
                    timestamp,
                    headers: Default::default(),
                });
                self.backlog.entry(*id).or_default().extend(records);
                any = true;
            }
        }
        any
    }

    /// The producer acknowledged `count` records at `base_offset` of `tp`: for a changelog
    /// partition, the next checkpoint of its store moves past them. (Without a base offset, a
    /// duplicate of an earlier write, the checkpoint stays lower, which only restores more.)
    pub(super) fn changelog_write_acked(
        &mut self,
        tp: TopicPartition,
        base_offset: Option<i64>,
        count: usize,
    ) {
        let Some(base) = base_offset else {
            return;
        };
        if !self.changelogs.iter().any(|(_, _, t)| **t == *tp.topic) {
            return;
        }
        let end = i64::try_from(count)
            .ok()
            .and_then(|count| base.checked_add(count));
        let Some(end) = end else {
            tracing::warn!(%tp, base, count, "changelog ack past the offset range ignored");
            return;
        };
        let acked = self.changelog_acked.entry(tp).or_insert(end);
        *acked = (*acked).max(end);
    }

    /// A commit cycle ended: finish what was waiting for it.
    pub(super) fn commit_done(&mut self) {
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
            Some(CommitReason::CooperativeRevoke) => {
                let revoked = self
                    .revoking
                    .take()
                    .expect("a revoke commit is started only with tasks to revoke");
                self.close_revoked(&revoked);
                tracing::info!(
                    ?revoked,
                    "cooperative rebalance: moved tasks committed and closed"
                );
                self.outputs
                    .push_back(Output::Event(Event::TasksRevoked(revoked)));
                self.group.revoke_done(now);
                if !self.closing && self.restoring.is_empty() {
                    self.set_state(EngineState::Running);
                }
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
            self.count_commit(true);
            self.commit_done();
        }
    }

    /// The coordinator refused commit `id` (the offsets stay uncommitted). Refused because a
    /// cooperative rebalance moved the generation on while the tasks kept running, it is
    /// retried under the new generation once that takes commits (as Kafka's consumer does).
    pub(super) fn commit_rejected(&mut self, id: CommitId, error: CommitError) {
        let generation_moved = matches!(
            error,
            CommitError::GenerationEnded(_)
                | CommitError::NotMember
                | CommitError::Rejected(
                    ResponseError::RebalanceInProgress | ResponseError::IllegalGeneration
                )
        );
        if generation_moved && !self.tasks.is_empty() {
            self.commit_after_rebalance = true;
        }
        if matches!(self.commit, CommitPhase::Committing { id: ours } if ours == id) {
            self.commit = CommitPhase::Idle;
            self.last_commit = self.now;
            self.warn(EngineError::Commit(error));
            self.count_commit(false);
            self.commit_done();
        }
    }
}
