//! State-aware placement (KIP-441, simplified): keeps a stateful task on a member whose
//! state is caught up instead of moving it to a member that would restore it from scratch,
//! warms the state up on its balanced target owner instead, and places standby replicas.
//! See the [assignor](super) module docs, "State-aware placement", for the rules.

use std::collections::{BTreeMap, BTreeSet};

use super::lags::{Lags, Processes};
use super::{AssignorConfig, MemberAssignment, MemberSubscription, sorted_members};
use crate::task::TaskId;
use crate::topology::Subtopology;

/// What the state-aware step changed, for the leader's log and for tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    /// Stateful tasks kept on (or given to) a caught-up member instead of their balanced
    /// target owner, which was not caught up.
    pub kept_caught_up: Vec<TaskId>,
    /// Warm-up replicas: the task and the member warming it up (its balanced target owner).
    pub warmups: BTreeMap<TaskId, String>,
    /// Stateful tasks that got fewer standbys than configured (too few other processes).
    pub short_of_standbys: Vec<TaskId>,
}

/// Adjusts the balanced, sticky `target` (one entry per member, as [`super::assign`]
/// returns it) to where the state is, adds warm-up and standby replicas, and gives `leader`
/// the probing follow-up when warm-ups were placed. Deterministic.
pub fn place_by_state(
    target: &mut BTreeMap<String, MemberAssignment>,
    members: &[MemberSubscription],
    subtopologies: &[Subtopology],
    config: &AssignorConfig,
    leader: &str,
) -> Placement {
    let sorted = sorted_members(members);
    debug_assert!(
        sorted.iter().map(|m| &m.member_id).eq(target.keys()),
        "the target has one entry per member"
    );
    let stateful: BTreeSet<usize> = config.stateful_subtopologies.iter().copied().collect();
    let processes = Processes::new(&sorted);
    let mut owner: BTreeMap<TaskId, usize> = BTreeMap::new();
    for (i, assignment) in target.values().enumerate() {
        for &task in &assignment.tasks {
            owner.insert(task, i);
        }
    }
    let existing: BTreeSet<TaskId> = owner.keys().copied().collect();
    let last_active = last_actives(&sorted, &existing);
    let lags = Lags::new(&sorted, &processes, &stateful, &last_active);
    let acceptable = config.acceptable_recovery_lag.max(0);
    let caught_up =
        |task: TaskId, i: usize| lags.restore_lag(task, i).is_some_and(|l| l <= acceptable);
    let stateful_tasks: Vec<TaskId> = owner
        .keys()
        .copied()
        .filter(|&t| lags.is_stateful(t))
        .collect();

    // Actives stay where their state is; their target owners warm up.
    let mut placement = Placement::default();
    let mut replicas: BTreeMap<TaskId, Vec<usize>> = BTreeMap::new();
    for &task in &stateful_tasks {
        let Some(&target_owner) = owner.get(&task) else {
            continue;
        };
        if !sorted[target_owner].state_aware || caught_up(task, target_owner) {
            continue;
        }
        let best = (0..sorted.len())
            .filter(|&i| sorted[i].state_aware && caught_up(task, i))
            .min_by_key(|&i| {
                (
                    lags.restore_lag(task, i),
                    last_active.get(&task) != Some(&i),
                    i,
                )
            });
        let Some(best) = best else {
            // Nobody has the state: the balanced target stands (a fresh start).
            continue;
        };
        debug_assert_ne!(
            processes.of(best),
            processes.of(target_owner),
            "lags are per process: a caught-up process is caught up for all its members"
        );
        owner.insert(task, best);
        placement.kept_caught_up.push(task);
        if placement.warmups.len() < config.max_warmup_replicas {
            replicas.entry(task).or_default().push(target_owner);
            placement
                .warmups
                .insert(task, sorted[target_owner].member_id.clone());
        }
    }

    // Standbys on other processes, a warm-up counting as one of its task's standbys.
    let mut standby_count = vec![0usize; sorted.len()];
    for members in replicas.values() {
        for &i in members {
            standby_count[i] += 1;
        }
    }
    for &task in &stateful_tasks {
        let Some(&active) = owner.get(&task) else {
            continue;
        };
        let chosen = replicas.entry(task).or_default();
        let mut used: BTreeSet<usize> = chosen.iter().map(|&i| processes.of(i)).collect();
        used.insert(processes.of(active));
        while chosen.len() < config.num_standby_replicas {
            let next = (0..sorted.len())
                .filter(|&i| {
                    i != active
                        && sorted[i].state_aware
                        && !chosen.contains(&i)
                        && !used.contains(&processes.of(i))
                })
                .min_by_key(|&i| {
                    let lag = lags.of(task, i);
                    // Lags are per process: among its threads, the task's last active has
                    // the copy open (memory stores: the only copy; LMDB: no store handover).
                    let not_last = last_active.get(&task) != Some(&i);
                    (lag.is_none(), lag, not_last, standby_count[i], i)
                });
            let Some(next) = next else {
                tracing::debug!(
                    %task,
                    standbys = chosen.len(),
                    wanted = config.num_standby_replicas,
                    "too few other processes for every standby replica"
                );
                placement.short_of_standbys.push(task);
                break;
            };
            used.insert(processes.of(next));
            standby_count[next] += 1;
            chosen.push(next);
        }
    }

    // Write back: actives moved, standbys added, the probing follow-up.
    let ids: Vec<String> = sorted.iter().map(|m| m.member_id.clone()).collect();
    let mut tasks_of: Vec<Vec<TaskId>> = vec![Vec::new(); sorted.len()];
    for (&task, &i) in &owner {
        tasks_of[i].push(task);
    }
    let mut standbys_of: Vec<Vec<TaskId>> = vec![Vec::new(); sorted.len()];
    for (&task, members) in &replicas {
        for &i in members {
            standbys_of[i].push(task);
        }
    }
    for (i, id) in ids.iter().enumerate() {
        let Some(assignment) = target.get_mut(id) else {
            continue;
        };
        let tasks = std::mem::take(&mut tasks_of[i]);
        if tasks != assignment.tasks {
            assignment.partitions = super::tasks_partitions(subtopologies, &tasks);
            assignment.tasks = tasks;
        }
        assignment.standbys = std::mem::take(&mut standbys_of[i]);
    }
    if !placement.warmups.is_empty() {
        let aware = sorted
            .iter()
            .any(|m| m.member_id == leader && m.state_aware);
        match target.get_mut(leader).filter(|_| aware) {
            Some(assignment) => assignment.request_followup(config.probing_rebalance_interval),
            None => tracing::warn!(leader, "the leader cannot probe: no probing rebalance"),
        }
    }
    placement
}

/// Each task's last active (indices into `sorted`): a member holding it (the smallest id if
/// several), else its previous owner.
fn last_actives(
    sorted: &[&MemberSubscription],
    existing: &BTreeSet<TaskId>,
) -> BTreeMap<TaskId, usize> {
    let mut last = super::previous_owners(sorted, existing);
    for (i, m) in sorted.iter().enumerate().rev() {
        for task in m.held_tasks.iter().filter(|t| existing.contains(t)) {
            last.insert(*task, i);
        }
    }
    last
}
