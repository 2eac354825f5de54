//! The commit cycle: flush the producer until every output record is acknowledged, commit
//! the stores, then commit the input offsets; revocations and the close wait for it.
//!
//! # Pipelined commits (at-least-once, on the interval)
//! An interval commit N does not stop processing. At its start it snapshots the committable
//! offsets, hands the stores' pending writes to the changelogs and **freezes** them
//! ([`KvBackend::freeze`](crate::state::KvBackend::freeze)), and marks the output so far:
//! every record handed to the producer is tagged with the commit it belongs to
//! ([`OutputOwner`]), and the records waiting in the backlog at the start are counted
//! (`Engine::backlog_marked`). The tasks go on processing; their output is tagged N+1 and their
//! store writes go to the new pending layer. Once no record tagged N or less is unacknowledged
//! (nor marked in the backlog), the stores commit their frozen layers with the changelog
//! checkpoints, then the snapshot's offsets are committed. Commit N+1 starts only once N
//! ended (accepted or refused). Revoke, cooperative revoke and close commits stop processing
//! as before; one requested while a pipelined commit is under way starts after it ended, as a
//! commit of its own.
//!
//! Under exactly-once the commit is transaction N (`transaction.rs`): its records are those
//! marked, and the output produced after its start is held in the backlog
//! (`Engine::holds_output`) until the transaction ended, since the open transaction would
//! take anything handed to the producer.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kafka_protocol::ResponseError;

use super::transaction::AbortCause;
use super::{Engine, EngineError, EngineState, Event, Output};
use crate::client::group::{CommitError, CommitId};
use crate::record::{ProducerRecord, TopicPartition};
use crate::state::Checkpoint;
use crate::task::TaskId;

/// Who a record handed to the producer belongs to: its task, and the commit whose output it
/// is (the commit that starts next when it was produced).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct OutputOwner {
    pub(super) task: TaskId,
    pub(super) commit: u64,
}

/// A pipelined commit under way: processing goes on.
#[derive(Debug)]
pub(super) struct Pipelined {
    /// Its number: it waits for the output tagged with it or an earlier one.
    pub(super) commit: u64,
    /// The tasks whose stores it froze (a task that started meanwhile has no frozen layer and
    /// is not committed by it).
    pub(super) tasks: BTreeSet<TaskId>,
}

/// Where the commit cycle is.
#[derive(Debug)]
pub(super) enum CommitPhase {
    Idle,
    /// Waiting until all output (of the commit, when pipelined) is acknowledged; processing
    /// paused unless pipelined.
    Flushing {
        offsets: BTreeMap<TopicPartition, i64>,
        pipelined: Option<Pipelined>,
    },
    /// Offsets sent to the coordinator.
    Committing {
        id: CommitId,
        pipelined: bool,
    },
    /// Exactly-once: the producer commits the transaction (its offsets come back with
    /// [`ProducerEvent::TransactionCommitted`](crate::client::producer::ProducerEvent)); when
    /// pipelined, the output produced meanwhile waits in the backlog for the next one.
    Transaction {
        pipelined: Option<Pipelined>,
    },
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

impl CommitPhase {
    /// Whether a pipelined commit is under way (the tasks go on processing).
    pub(super) fn is_pipelined(&self) -> bool {
        matches!(
            self,
            Self::Flushing {
                pipelined: Some(_),
                ..
            } | Self::Committing {
                pipelined: true,
                ..
            } | Self::Transaction { pipelined: Some(_) }
        )
    }
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
                        self.commit_done(false);
                    }
                    return reason != CommitReason::Interval;
                }
                let pipelined =
                    (reason == CommitReason::Interval).then(|| self.start_pipelined_commit());
                self.producer.flush();
                self.commit_started = Some(now);
                self.commit = CommitPhase::Flushing { offsets, pipelined };
                true
            }
            // The offsets (or the transaction's TxnOffsetCommit) would carry a generation the
            // coordinator refuses until the cooperative rebalance's assignment is in.
            CommitPhase::Flushing { .. } if self.commit_waits_for_rebalance() => false,
            CommitPhase::Flushing { pipelined, .. } if self.exactly_once() => {
                // The producer waits for the acknowledgements itself, inside the commit. A
                // pipelined commit hands over only its own records: the output produced since
                // its start waits in the backlog for the next transaction.
                let handed_over = match pipelined {
                    Some(_) => self.backlog_marked.is_empty(),
                    None => self.backlog.is_empty(),
                };
                if !handed_over {
                    return false;
                }
                let CommitPhase::Flushing { offsets, pipelined } =
                    std::mem::replace(&mut self.commit, CommitPhase::Idle)
                else {
                    unreachable!("this arm matched Flushing");
                };
                self.commit_transaction(offsets, pipelined);
                true
            }
            CommitPhase::Flushing { pipelined, .. } => {
                let delivered = match pipelined {
                    Some(p) => {
                        let commit = p.commit;
                        self.backlog_marked.is_empty()
                            && !self.producer.any_unacked(|owner| owner.commit <= commit)
                    }
                    None => self.backlog.is_empty() && self.producer.is_flushed(),
                };
                if !delivered {
                    return false;
                }
                let CommitPhase::Flushing { offsets, pipelined } =
                    std::mem::replace(&mut self.commit, CommitPhase::Idle)
                else {
                    unreachable!("this arm matched Flushing");
                };
                let stored = match &pipelined {
                    Some(p) => self.commit_frozen_stores(&p.tasks),
                    None => self.commit_stores(),
                };
                if !stored {
                    return true;
                }
                let pipelined = pipelined.is_some();
                if offsets.is_empty() {
                    self.last_commit = now;
                    self.count_commit(true);
                    self.commit_done(pipelined);
                } else {
                    let id = self.group.commit(offsets, now);
                    self.commit = CommitPhase::Committing { id, pipelined };
                }
                true
            }
            CommitPhase::Committing { .. }
            | CommitPhase::Transaction { .. }
            | CommitPhase::Aborting { .. } => false,
        }
    }

    /// Whether a commit must wait: between the JoinGroup and SyncGroup answers of a
    /// cooperative rebalance the coordinator refuses commits (`REBALANCE_IN_PROGRESS`), while
    /// the tasks go on processing. The SyncGroup answer (or a lost membership) ends the wait.
    pub(super) fn commit_waits_for_rebalance(&self) -> bool {
        self.group.is_rebalancing_cooperatively() && !self.group.may_commit()
    }

    /// Starts pipelined commit N (the engine's `output_commit`): freezes every task's stores
    /// (their changelog writes were just handed over), counts the backlog's records as N's,
    /// and tags the output from now on N+1.
    fn start_pipelined_commit(&mut self) -> Pipelined {
        let commit = self.output_commit;
        self.output_commit += 1;
        self.held_bytes = 0;
        let mut tasks = BTreeSet::new();
        for (id, task) in &mut self.tasks {
            task.freeze_stores();
            tasks.insert(*id);
        }
        self.backlog_marked = self
            .backlog
            .iter()
            .map(|(id, records)| (*id, records.len()))
            .filter(|(_, count)| *count > 0)
            .collect();
        tracing::trace!(
            commit,
            tasks = tasks.len(),
            backlogged = self.backlog_marked.len(),
            "pipelined commit started"
        );
        Pipelined { commit, tasks }
    }

    /// Commits every task's stores, each logged store with its changelog checkpoint: every
    /// changelog write of this commit is acknowledged (and, under exactly-once, its
    /// transaction committed), so each store's state corresponds to its changelog up to the
    /// last acknowledged offset. False when a store failed (the engine stopped).
    pub(super) fn commit_stores(&mut self) -> bool {
        self.commit_stores_of(None)
    }

    /// [`Engine::commit_stores`] for a pipelined commit: only the frozen layers of the tasks
    /// it froze (the writes since stay pending).
    pub(super) fn commit_frozen_stores(&mut self, tasks: &BTreeSet<TaskId>) -> bool {
        self.commit_stores_of(Some(tasks))
    }

    /// Commits the stores of every task (`None`: everything written) or of the tasks in
    /// `frozen` (their frozen layers only).
    fn commit_stores_of(&mut self, frozen: Option<&BTreeSet<TaskId>>) -> bool {
        for task in self.tasks.values_mut() {
            let id = task.id();
            if frozen.is_some_and(|tasks| !tasks.contains(&id)) {
                continue;
            }
            let checkpoint = |store: &str| {
                let (_, _, topic) = self
                    .changelogs
                    .iter()
                    .find(|(sub, s, _)| *sub == id.subtopology && s == store)?;
                let tp = TopicPartition::new(topic.as_str(), id.partition);
                let offset = *self.changelog_acked.get(&tp)?;
                Some(Checkpoint::new(offset, self.metadata.topic_id(topic)))
            };
            let committed = match frozen {
                Some(_) => task.commit_frozen_stores_with(checkpoint),
                None => task.commit_stores_with(checkpoint),
            };
            if let Err(error) = committed {
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

    /// A commit cycle ended: finish what was waiting for it. A pipelined commit ends nothing
    /// else: the tasks processed while it was under way, so a revocation or close requested
    /// meanwhile gets a commit of its own (the next `drive_commit` starts it).
    pub(super) fn commit_done(&mut self, pipelined: bool) {
        if pipelined {
            return;
        }
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
        if let CommitPhase::Committing {
            id: ours,
            pipelined,
        } = self.commit
            && ours == id
        {
            self.commit = CommitPhase::Idle;
            self.last_commit = self.now;
            self.committed
                .extend(offsets.iter().map(|(tp, o)| (tp.clone(), *o)));
            self.outputs
                .push_back(Output::Event(Event::Committed(offsets)));
            self.count_commit(true);
            self.commit_done(pipelined);
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
        if let CommitPhase::Committing {
            id: ours,
            pipelined,
        } = self.commit
            && ours == id
        {
            self.commit = CommitPhase::Idle;
            self.last_commit = self.now;
            self.warn(EngineError::Commit(error));
            self.count_commit(false);
            self.commit_done(pipelined);
        }
    }
}
