//! "A task never runs on two members at once", observed from the engines' events.
//!
//! A member runs a task from its [`Event::TasksAssigned`] until its [`Event::TasksRevoked`],
//! [`Event::TasksLost`], its stop (`StateChanged` to `NotRunning` or `Error`: a close commits
//! and closes every task before it leaves) or its drop ([`TaskOwnership::dropped`]: the
//! process is gone). Each run belongs to the membership the engine last synced
//! ([`Event::GroupSynced`]'s member id).
//!
//! Tasks also close without an event (a close commits and closes them all, an aborted
//! transaction closes them dirty before they start again): a run also ends when its task is
//! no longer in the engine at the engine's next event.
//!
//! Invariant, checked as each event is reported ([`TaskOwnership::observe`]): when a task
//! starts on one member, no other member runs it, unless the coordinator removed one of the
//! two memberships before (its session expired, it did not rejoin in time, or a restarted
//! static member took its place: [`SimCluster::group_removals`]; the starting one is a
//! zombie re-creating its tasks after an aborted transaction before it learns it lost them). Such a member is a
//! *zombie* until it learns it lost its tasks: it may still process and produce.
//! - Under at-least-once that is allowed (duplicates), and counted: the overlaps in
//!   [`OwnershipStats::zombie_overlaps`], the records a zombie processed by the
//!   [`Audit`](super::tagged::Audit) (`zombie_processed`).
//! - Under exactly-once a zombie's output must never become visible: the
//!   [`CommittedAudit`](super::committed::CommittedAudit) asks [`TaskOwnership::zombie_runs`]
//!   about each record appended and fails if read_committed ever shows one of a zombie.
//!
//! A member that left with LeaveGroup closed its tasks before it sent it: leaving ends its
//! runs (a stop that still finds tasks in the engine is a violation).

use std::collections::BTreeMap;

use kstreams_core::engine::{Engine, EngineState, Event};
use kstreams_core::task::TaskId;

use crate::sim::{RemovalReason, SimCluster};

/// Figures of a run (see the module docs).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OwnershipStats {
    /// Tasks started on a member while a zombie (whose membership the coordinator removed)
    /// still ran them.
    pub zombie_overlaps: usize,
    /// Members whose first sync was of a generation synced before they started (a new
    /// member always makes a new one): static members restarted within the session timeout,
    /// which rejoin with no rebalance.
    pub resumed_without_rebalance: usize,
    /// Memberships the coordinator removed, by reason: session expired, not rejoined in
    /// time, replaced by a restarted static member (a LeaveGroup is not counted).
    pub expired: usize,
    /// See [`expired`](Self::expired).
    pub not_rejoined: usize,
    /// See [`expired`](Self::expired).
    pub replaced: usize,
}

/// A task running on a member.
#[derive(Debug, Clone)]
struct Run {
    /// The membership it runs under.
    member_id: String,
    /// When it started.
    since: i64,
}

/// What the events of one engine said so far.
#[derive(Debug, Default)]
struct Member {
    /// The member id of the last sync.
    member_id: Option<String>,
    /// Its tasks running.
    runs: BTreeMap<TaskId, Run>,
    /// Whether it synced a generation yet.
    synced: bool,
    /// Whether it reported an event yet.
    seen: bool,
    /// The latest generation any member had synced when this one reported its first event.
    generation_before: Option<i32>,
}

/// The tracker of the invariant (see the module docs).
#[derive(Debug)]
pub struct TaskOwnership {
    group: String,
    /// By harness index.
    members: Vec<Member>,
    /// How many of the coordinator's removals were read.
    removals_read: usize,
    /// Member ids the coordinator removed (LeaveGroup apart), with when and why.
    removed: BTreeMap<String, (i64, RemovalReason)>,
    /// The latest generation some member synced.
    latest_generation: Option<i32>,
    stats: OwnershipStats,
}

impl TaskOwnership {
    /// A tracker of the members of `group`.
    pub fn new(group: &str) -> Self {
        Self {
            group: group.to_owned(),
            members: Vec::new(),
            removals_read: 0,
            removed: BTreeMap::new(),
            latest_generation: None,
            stats: OwnershipStats::default(),
        }
    }

    /// The figures so far.
    pub fn stats(&self) -> OwnershipStats {
        self.stats
    }

    fn member(&mut self, engine: usize) -> &mut Member {
        if self.members.len() <= engine {
            self.members.resize_with(engine + 1, Member::default);
        }
        &mut self.members[engine]
    }

    /// Reads the coordinator's removals since the last call.
    fn read_removals(&mut self, sim: &SimCluster) {
        let removals = sim.group_removals(&self.group);
        for removal in removals.iter().skip(self.removals_read) {
            match removal.reason {
                RemovalReason::Left => {
                    // It closed its tasks before it sent LeaveGroup.
                    for member in &mut self.members {
                        member
                            .runs
                            .retain(|_, run| run.member_id != removal.member_id);
                    }
                    continue;
                }
                RemovalReason::SessionExpired => self.stats.expired += 1,
                RemovalReason::NotRejoined => self.stats.not_rejoined += 1,
                RemovalReason::Replaced => self.stats.replaced += 1,
            }
            self.removed
                .insert(removal.member_id.clone(), (removal.at, removal.reason));
        }
        self.removals_read = removals.len();
    }

    /// Whether `engine` runs the task of input partition `partition` as a zombie now (its
    /// membership removed by the coordinator).
    pub fn zombie_runs(&mut self, sim: &SimCluster, engine: usize, partition: i32) -> bool {
        self.read_removals(sim);
        if self.removed.is_empty() {
            return false;
        }
        self.members.get(engine).is_some_and(|m| {
            m.runs.iter().any(|(id, run)| {
                id.partition == partition && self.removed.contains_key(&run.member_id)
            })
        })
    }

    /// The engine at `engine` was dropped: its process is gone, it runs nothing.
    pub fn dropped(&mut self, engine: usize) {
        self.member(engine).runs.clear();
    }

    /// Checks an event of `engine` at `at` (see the module docs).
    pub fn observe(
        &mut self,
        engine: usize,
        at: i64,
        event: &Event,
        running: &Engine,
        sim: &SimCluster,
    ) -> Result<(), String> {
        self.read_removals(sim);
        let latest = self.latest_generation;
        let member = self.member(engine);
        if !member.seen {
            member.seen = true;
            member.generation_before = latest;
        }
        // Tasks close without an event of their own (a close commits and closes them all, an
        // aborted transaction closes them dirty before they start again): a run ends when its
        // task is no longer in the engine, seen at the engine's next event.
        member.runs.retain(|task, _| {
            running.tasks().any(|t| t.id() == *task) || running.restoring().any(|t| t == *task)
        });
        match event {
            Event::GroupSynced {
                generation,
                member_id,
            } => {
                let member = self.member(engine);
                if !member.synced && member.generation_before.is_some_and(|g| *generation <= g) {
                    self.stats.resumed_without_rebalance += 1;
                }
                self.latest_generation = latest.max(Some(*generation));
                let member = self.member(engine);
                member.synced = true;
                if let Some((task, run)) = member
                    .runs
                    .iter()
                    .find(|(_, run)| run.member_id != *member_id)
                {
                    return Err(format!(
                        "synced generation {generation} as member {member_id} while still \
                         running task {task:?} of its former membership {} (since {})",
                        run.member_id, run.since
                    ));
                }
                member.member_id = Some(member_id.clone());
            }
            Event::TasksAssigned(tasks) => {
                let Some(member_id) = self.member(engine).member_id.clone() else {
                    return Err(format!("tasks {tasks:?} started before any sync"));
                };
                for &task in tasks {
                    self.start(engine, task, &member_id, at)?;
                }
            }
            Event::TasksRevoked(tasks) | Event::TasksLost(tasks) => {
                let member = self.member(engine);
                for task in tasks {
                    member.runs.remove(task);
                }
            }
            Event::StateChanged {
                to: EngineState::NotRunning,
                ..
            } => {
                self.member(engine).runs.clear();
                if let Some(task) = running.tasks().next() {
                    return Err(format!("stopped with task {:?} still open", task.id()));
                }
            }
            Event::StateChanged {
                to: EngineState::Error,
                ..
            } => self.member(engine).runs.clear(),
            _ => {}
        }
        Ok(())
    }

    /// `task` starts on `engine` as `member_id`.
    fn start(
        &mut self,
        engine: usize,
        task: TaskId,
        member_id: &str,
        at: i64,
    ) -> Result<(), String> {
        for (other, member) in self.members.iter().enumerate() {
            if other == engine {
                continue;
            }
            let Some(run) = member.runs.get(&task) else {
                continue;
            };
            // Either side may be the zombie: the other run's member was removed, or this one
            // was and re-creates its tasks (after an aborted transaction) before it learns
            // it lost them.
            match self
                .removed
                .get(&run.member_id)
                .or_else(|| self.removed.get(member_id))
            {
                Some(_) => self.stats.zombie_overlaps += 1,
                None => {
                    return Err(format!(
                        "task {task:?} started as member {member_id} while engine {other} \
                         still runs it as member {} (since {}), a membership the coordinator \
                         never removed: a task on two members at once",
                        run.member_id, run.since
                    ));
                }
            }
        }
        // A task started again on the same member (re-created after an aborted transaction)
        // keeps running under the membership it synced last.
        self.member(engine).runs.insert(
            task,
            Run {
                member_id: member_id.to_owned(),
                since: at,
            },
        );
        Ok(())
    }
}
