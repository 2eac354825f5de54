//! Group membership seen from the engine: group events, and tasks coming and going with
//! assignments, revocations and lost memberships.

use std::collections::HashMap;

use super::commit::{CommitPhase, CommitReason};
use super::transaction::AbortCause;
use super::{Engine, EngineError, EngineState, Event, Output};
use crate::client::group::GroupEvent;
use crate::record::TopicPartition;
use crate::task::{TaskConfig, TaskId};

impl Engine {
    pub(super) fn handle_group_event(&mut self, event: GroupEvent) {
        match event {
            GroupEvent::CoordinatorFound { id, host, port } => {
                self.router.set_address(id, host, port);
            }
            GroupEvent::PartitionCountsNeeded { topics } => {
                self.metadata
                    .request_refresh(&format!("partition counts of {}", topics.join(", ")));
            }
            GroupEvent::Assigned {
                tasks,
                partitions,
                revoked,
                protocol,
                generation,
                standbys,
            } => {
                self.outputs.push_back(Output::Event(Event::GroupSynced {
                    generation,
                    member_id: self.group.member_id().to_owned(),
                }));
                self.metrics.rebalance_total += 1;
                self.assignment = Some((tasks.clone(), partitions.clone()));
                if !revoked.is_empty() {
                    tracing::info!(
                        generation,
                        ?protocol,
                        ?revoked,
                        "cooperative rebalance: committing and closing the tasks that move; the others keep running"
                    );
                    if !self.closing {
                        // They stop processing (as every task does during a commit) until the
                        // commit is done, then only they close (see `commit_done`).
                        self.metrics.tasks_revoked_total += revoked.len() as u64;
                        self.revoking = Some(revoked);
                        self.commit_reason = Some(CommitReason::CooperativeRevoke);
                    }
                }
                // A new generation replaces an assignment still waiting (changelogs, sink
                // counts, a transaction ending, a store in use by another stream thread):
                // starting the old one later would run tasks this generation moved away.
                self.pending_assignment = None;
                self.sink_wait_since = None;
                // Before the tasks: a task that was a standby here and becomes active is
                // promoted in `assign` (its standby is kept while the assignment waits).
                self.standbys_assigned(standbys);
                self.assign(tasks, partitions);
            }
            GroupEvent::OffsetsFetched { offsets } => {
                for (tp, offset) in offsets {
                    // Only the first answer starts a partition: a later one (an OffsetFetch of
                    // the previous assignment answered after this one's) must not move a
                    // position already fetched and processed. Also skips partitions revoked or
                    // lost while the OffsetFetch was in flight.
                    if !self.awaiting_committed.remove(&tp) {
                        tracing::debug!(partition = %tp, ?offset, "committed offset for a partition not waiting for one ignored");
                        continue;
                    }
                    match offset {
                        Some(o) => {
                            self.fetcher.seek(&tp, o);
                            self.committed.insert(tp, o);
                        }
                        None => {
                            let policy = self.config.fetch.offset_reset;
                            self.fetcher.reset_position(&tp, policy);
                        }
                    }
                }
            }
            GroupEvent::OffsetFetchFailed { partitions, error } => {
                self.warn(EngineError::OffsetFetch(error));
                self.group.fetch_committed(partitions);
            }
            GroupEvent::Revoke { tasks } => {
                self.pending_assignment = None;
                self.sink_wait_since = None;
                if self.closing {
                    // The close commits these tasks and then leaves: no revoke and rejoin.
                    return;
                }
                self.set_state(EngineState::Rebalancing);
                self.assignment = None;
                self.metrics.tasks_revoked_total += tasks.len() as u64;
                self.revoking = Some(tasks);
                self.commit_reason = Some(CommitReason::Revoke);
            }
            GroupEvent::Lost { tasks } => {
                self.metrics.tasks_lost_total += tasks.len() as u64;
                // A commit under way ends with the tasks: not counted as one that failed.
                self.commit_started = None;
                if !self.closing {
                    self.set_state(EngineState::Rebalancing);
                }
                self.assignment = None;
                self.close_tasks(false);
                match self.commit {
                    // An abort under way restarts nothing now: the tasks are gone.
                    CommitPhase::Aborting { .. } => {
                        self.commit = CommitPhase::Aborting {
                            cause: AbortCause::Discard,
                        };
                    }
                    _ => self.commit = CommitPhase::Idle,
                }
                if self.exactly_once() && self.transaction_open() {
                    // The lost tasks' uncommitted output must never become visible.
                    self.abort_transaction(AbortCause::Discard);
                }
                self.revoking = None;
                if matches!(
                    self.commit_reason,
                    Some(CommitReason::Revoke | CommitReason::CooperativeRevoke)
                ) {
                    // The revoked tasks are gone with the others: nothing to commit for them.
                    self.commit_reason = None;
                }
                self.outputs
                    .push_back(Output::Event(Event::TasksLost(tasks)));
                if self.closing {
                    // Nothing of the lost tasks can be committed: the close ends here, without
                    // rejoining the group it is leaving (the member would, and take tasks),
                    // once the transaction aborted above (or an EndTxn in flight) ended.
                    self.commit_reason = None;
                    if self.transaction_open() || self.transaction_ending() {
                        self.leave_after_transaction = true;
                    } else {
                        self.group.leave(self.now);
                    }
                }
            }
            GroupEvent::AssignmentFailed { error } => {
                self.metrics.failed_rebalance_total += 1;
                self.warn(EngineError::Assignment(error));
            }
            GroupEvent::CommitSucceeded { id, offsets } => self.commit_accepted(id, offsets),
            GroupEvent::CommitFailed { id, error, .. } => self.commit_rejected(id, error),
            GroupEvent::Left => {
                self.router.close_all();
                self.set_state(EngineState::NotRunning);
            }
            GroupEvent::Failed(error) => self.fail(error.into()),
        }
    }

    pub(super) fn assign(&mut self, tasks: Vec<TaskId>, partitions: Vec<TopicPartition>) {
        if self.closing {
            // Its tasks close (or were closed, or lost) and it leaves: an assignment the member
            // synced meanwhile starts nothing (`seed_143…`, `seed_1891…`).
            return;
        }
        if self.transaction_ending() {
            // Tasks restore their changelogs and fetch their committed offsets: both must see
            // the outcome of a transaction still ending (see `transaction_ending`).
            self.pending_assignment = Some((tasks, partitions));
            return;
        }
        if !self.changelogs_ready() {
            // Tasks restore from and log to their changelogs: start them once those exist.
            self.pending_assignment = Some((tasks, partitions));
            return;
        }
        let missing: Vec<String> = self
            .topology
            .sink_topics()
            .into_iter()
            .filter(|t| self.metadata.partition_count(t).is_none())
            .collect();
        if !missing.is_empty() {
            // Sinks with a partitioner cannot work without the count: start the tasks once
            // metadata knows it, or fail after `max_block`.
            let since = *self.sink_wait_since.get_or_insert(self.now);
            let waited = self.now - since;
            if waited >= self.config.max_block {
                self.fail(EngineError::MissingSinkTopics {
                    topics: missing,
                    waited,
                });
                return;
            }
            self.metadata.request_refresh(&format!(
                "partition counts of sink topics {}",
                missing.join(", ")
            ));
            self.pending_assignment = Some((tasks, partitions));
            return;
        }
        self.sink_wait_since = None;
        let now = self.now;
        let config = TaskConfig {
            max_batch_records: self.config.max_batch_records,
            deserialization_errors: self.config.deserialization_errors.clone(),
            processing_errors: self.config.processing_errors.clone(),
        };
        let sink_counts: HashMap<String, i32> = self
            .topology
            .sink_topics()
            .into_iter()
            .filter_map(|t| self.metadata.partition_count(&t).map(|n| (t, n)))
            .collect();
        let mut ready_partitions = Vec::new();
        let mut started = Vec::new();
        // Tasks whose stores another stream thread of the process still has open.
        let mut blocked = Vec::new();
        for &id in &tasks {
            // Kept running through a cooperative rebalance: untouched (its partitions go on
            // from where they are).
            if self.tasks.contains_key(&id) || self.restoring.contains_key(&id) {
                continue;
            }
            let own: Vec<TopicPartition> = partitions
                .iter()
                .filter(|tp| self.task_of(tp) == Some(id))
                .cloned()
                .collect();
            // From its standby here, if any (restoring only the changelog's tail).
            let task = match self.create_task(id, config.clone(), sink_counts.clone()) {
                Ok(task) => task,
                Err(error) if error.is_store_in_use() => {
                    // That thread closes them once it took its own assignment in: the task
                    // starts on a later poll (see `resume_assignment`).
                    tracing::debug!(task = %id, %error, "stores still open in another stream thread; starting the task later");
                    blocked.push(id);
                    continue;
                }
                Err(error) => {
                    self.fail(error);
                    return;
                }
            };
            started.push(id);
            // A task with logged stores starts fetching its input once they are restored.
            match self.start_restore(task, own.clone()) {
                Ok(Some(task)) => {
                    self.tasks.insert(id, task);
                    ready_partitions.extend(own);
                }
                Ok(None) => {}
                Err(error) => {
                    self.fail(error);
                    return;
                }
            }
        }
        self.start_fetching(ready_partitions);
        self.task_offsets_dirty = true;
        self.standbys.dirty = true;
        let retry = !blocked.is_empty();
        if retry {
            self.pending_assignment = Some((tasks, partitions));
        }
        // A retry that started nothing is no news.
        if !(retry && started.is_empty()) {
            self.last_commit = now;
            self.outputs
                .push_back(Output::Event(Event::TasksAssigned(started)));
        }
        // As in Kafka Streams, a thread whose tasks restore stays Rebalancing until they
        // run (see `drive_restore`), and one revoking tasks until they are closed.
        if !self.closing && self.restoring.is_empty() && self.revoking.is_none() && !retry {
            self.set_state(EngineState::Running);
        } else if !self.closing {
            self.set_state(EngineState::Rebalancing);
        }
    }

    /// Assigns input partitions of running tasks to the fetcher; their positions come from
    /// the committed offsets asked for here.
    pub(super) fn start_fetching(&mut self, partitions: Vec<TopicPartition>) {
        if partitions.is_empty() {
            return;
        }
        for tp in &partitions {
            self.fetcher.assign(tp.clone(), None);
            self.awaiting_committed.insert(tp.clone());
        }
        self.fetcher.update_leaders(&self.metadata);
        self.group.fetch_committed(partitions);
    }

    /// The task that reads input partition `tp`.
    fn task_of(&self, tp: &TopicPartition) -> Option<TaskId> {
        self.subtopology_of
            .get(&*tp.topic)
            .map(|&subtopology| TaskId {
                subtopology,
                partition: tp.partition,
            })
    }

    /// Starts the tasks of an assignment that waited for sink partition counts, once known
    /// (or fails it once it waited `max_block` for them).
    pub(super) fn resume_assignment(&mut self) -> bool {
        let sinks_known = self
            .topology
            .sink_topics()
            .iter()
            .all(|t| self.metadata.partition_count(t).is_some());
        let sinks_overdue = self
            .sink_wait_since
            .is_some_and(|since| self.now - since >= self.config.max_block);
        let ready = self.pending_assignment.is_some()
            && !self.transaction_ending()
            && self.changelogs_ready()
            && (sinks_known || sinks_overdue);
        match self.pending_assignment.take() {
            Some((tasks, partitions)) if ready => {
                let running = self.tasks.len() + self.restoring.len();
                self.assign(tasks, partitions);
                // Progress unless it waits again with nothing started (its tasks' stores still
                // open in another stream thread): then it is tried on the next poll.
                self.pending_assignment.is_none()
                    || self.tasks.len() + self.restoring.len() != running
            }
            pending => {
                self.pending_assignment = pending;
                false
            }
        }
    }

    /// Closes the tasks `ids` after their commit (a cooperative revoke); every other task goes
    /// on untouched.
    pub(super) fn close_revoked(&mut self, ids: &[TaskId]) {
        let mut changelogs: Vec<TopicPartition> = Vec::new();
        for id in ids {
            if let Some(r) = self.restoring.get(id) {
                changelogs.extend(r.stores().map(|s| s.changelog().clone()));
            }
        }
        let partitions: Vec<TopicPartition> = self
            .fetcher
            .assigned()
            .filter(|tp| {
                changelogs.contains(tp) || self.task_of(tp).is_some_and(|id| ids.contains(&id))
            })
            .cloned()
            .collect();
        for tp in &partitions {
            self.fetcher.unassign(tp);
            self.awaiting_committed.remove(tp);
        }
        self.task_offsets_dirty = true;
        self.standbys.dirty = true;
        for id in ids {
            self.backlog.remove(id);
            self.backlog_marked.remove(id);
            self.backlog_full_at.remove(id);
            let restoring = self.restoring.remove(id).map(|r| r.task);
            for task in self.tasks.remove(id).into_iter().chain(restoring) {
                self.count_closed_task(*id, task.metrics());
                if self.closing || !self.standbys.assigned.contains(id) {
                    if let Err(error) = task.close() {
                        self.warn(error.into());
                    }
                    continue;
                }
                // A standby here from now on: it keeps the committed stores, open.
                let (closed, stores) = task.close_keeping_stores();
                if let Err(error) = closed {
                    self.warn(error.into());
                }
                if let Err(error) = self.open_standby(*id, stores) {
                    self.fail(error);
                    return;
                }
            }
        }
    }

    /// Closes every task; `committed`: their work was committed (else stores roll back).
    pub(super) fn close_tasks(&mut self, committed: bool) {
        self.pending_assignment = None;
        self.sink_wait_since = None;
        self.task_offsets_dirty = true;
        self.standbys.dirty = true;
        let partitions: Vec<TopicPartition> = self
            .fetcher
            .assigned()
            .filter(|tp| !self.is_standby_changelog(tp))
            .cloned()
            .collect();
        for tp in partitions {
            self.fetcher.unassign(&tp);
        }
        self.awaiting_committed.clear();
        self.backlog.clear();
        self.backlog_marked.clear();
        self.backlog_full_at.clear();
        let restoring = std::mem::take(&mut self.restoring)
            .into_values()
            .map(|r| (r.task.id(), r.task));
        for (id, mut task) in std::mem::take(&mut self.tasks).into_iter().chain(restoring) {
            self.count_closed_task(id, task.metrics());
            if !committed {
                task.rollback_stores();
            }
            if let Err(error) = task.close() {
                self.warn(error.into());
            }
        }
    }

    // ---- processing ------------------------------------------------------------------------
}
