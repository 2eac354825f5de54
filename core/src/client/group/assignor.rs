//! The group leader's task assignor: pure functions from the members' subscriptions, the
//! topology's sub-topologies and the source topics' partition counts to one assignment per
//! member.
//!
//! The unit of assignment is a task `(sub-topology, partition)`: task `s_p` owns partition `p` of
//! every source topic of sub-topology `s`, so co-partitioned partitions always stay together.
//!
//! # Algorithm (balanced, then sticky, deterministic)
//! 1. Members are sorted by id (duplicates dropped). With `T` tasks and `n` members every member
//!    gets `⌊T/n⌋` tasks and `T mod n` of them one more: counts differ by at most 1.
//! 2. Previous ownership comes from each member's subscription. A task claimed by several
//!    members goes to the claim with the highest generation, then the smallest member id;
//!    claims on tasks that no longer exist are ignored.
//! 3. The `T mod n` larger quotas go to the members with the most claims (ties: smaller id),
//!    and each member keeps as many of its claimed tasks as its quota allows (lowest task ids
//!    first). This keeps the largest possible number of tasks in place, so a task moves only
//!    when balance requires it.
//! 4. The remaining tasks, in task-id order, each go to the member with the fewest tasks so far
//!    (ties: smaller id) that is below its quota.
//!
//! Every member is assumed to run the same topology (as Kafka Streams assumes); the topics in
//! a subscription are not used to restrict which member may run a task.
//!
//! # State-aware placement, standbys, warm-ups (KIP-441, simplified)
//! Members report, per task whose state they have locally, the sum of its logged stores'
//! changelog positions; [`place_by_state`] turns them into lags (module `lags`: the
//! reference is the largest sum reported, the task's last active counts as caught up, lags
//! are per process) and adjusts the target. Only tasks of the sub-topologies with logged
//! stores ([`AssignorConfig::stateful_subtopologies`]) take part; stateless tasks keep the
//! balanced target and never get standbys.
//! 1. A member is *caught up* for a task when its lag is at most
//!    [`AssignorConfig::acceptable_recovery_lag`]; a member without the task's state lags by
//!    the largest offset sum reported for it (it would restore the whole changelog).
//! 2. When a stateful task's target owner is not caught up but some member is, the task
//!    stays on (goes to) the most caught-up member (ties: its last active, then the smaller
//!    id), and the target owner gets a *warm-up replica* of it (a standby), at most
//!    [`AssignorConfig::max_warmup_replicas`] in the group (in task-id order); beyond that the
//!    task simply stays. When nobody is caught up (no state anywhere) the target stands. This
//!    gives up balance for a while: the leader then asks for a *probing rebalance* (its own
//!    follow-up after [`AssignorConfig::probing_rebalance_interval`]), in which a warm-up
//!    that caught up makes its member caught up and the task moves.
//! 3. Every stateful task gets [`AssignorConfig::num_standby_replicas`] standby replicas, a
//!    warm-up counting as one: on members of processes other than its active's and each
//!    other's (two members of one process share its state directory), preferring the lowest
//!    lag (members that already have the state), then the fewest standbys so far, then the
//!    smaller id. Too few processes give fewer standbys.
//! 4. A member never gets a task both as active and as standby; members whose subscription
//!    cannot say they read standbys (a kstreams before them) keep the balanced target and
//!    get no standbys, warm-ups nor follow-ups.
//!
//! # Cooperative rebalancing: two phases (KIP-429)
//! Under the cooperative protocol a member keeps running its tasks while the group rebalances
//! and lists them as *held* in its subscription. The leader computes the target above (step
//! 1-4, then the state-aware placement), then [`withhold_held_elsewhere`] takes out of it
//! every task that another member still holds: that task goes to nobody in this generation.
//! 1. First rebalance: members that keep a task keep running it untouched; a member whose
//!    assignment lacks a task it holds commits it, closes it (revokes it) and at once rejoins.
//! 2. Follow-up rebalance (triggered by that rejoin): no member holds the task any more, so
//!    the target gives it to its new owner, which restores and starts it.
//!
//! A task therefore never runs on two members at once, and only the tasks that move stop.
//! Held tasks are withheld whatever protocol the coordinator selected: after a group falls
//! back to eager (a member without cooperative support joined), the members that were
//! cooperative still hold their tasks through that one rebalance.
//!
//! Should the holder never rejoin (a static member that crashed or closed between its
//! assignment and its rejoin, and came back within the session timeout: the coordinator
//! gives it back its assignment without a rebalance), nobody would start the follow-up
//! rebalance and the task would run nowhere. So the target owner of every withheld task
//! also gets a short follow-up ([`AssignorConfig::withheld_followup`]); the holder's own
//! rejoin normally starts the next generation first, which cancels it.
//!
//! [`plan`] runs all of it: balanced and sticky, state-aware placement, withholding, the
//! follow-ups.

mod lags;
mod state_aware;

pub use state_aware::{Placement, place_by_state};

use std::collections::{BTreeMap, BTreeSet};

use crate::client::group::GroupConfig;
use crate::record::TopicPartition;
use crate::task::TaskId;
use crate::time::Duration;
use crate::topology::Subtopology;

/// The leader's settings for standbys, warm-ups and follow-ups (from its [`GroupConfig`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignorConfig {
    /// Standby replicas per stateful task.
    pub num_standby_replicas: usize,
    /// The largest lag (changelog records) at which a member is caught up.
    pub acceptable_recovery_lag: i64,
    /// At most this many warm-up replicas in the group.
    pub max_warmup_replicas: usize,
    /// The leader's follow-up when warm-ups were placed.
    pub probing_rebalance_interval: Duration,
    /// The follow-up of the target owner of a withheld task: the leader's heartbeat interval
    /// (a holder rejoins within a commit; a holder that never does is replaced by it).
    pub withheld_followup: Duration,
    /// The sub-topologies with logged stores.
    pub stateful_subtopologies: Vec<usize>,
}

impl From<&GroupConfig> for AssignorConfig {
    fn from(config: &GroupConfig) -> Self {
        Self {
            num_standby_replicas: config.num_standby_replicas,
            acceptable_recovery_lag: config.acceptable_recovery_lag,
            max_warmup_replicas: config.max_warmup_replicas,
            probing_rebalance_interval: config.probing_rebalance_interval,
            withheld_followup: config.heartbeat_interval,
            stateful_subtopologies: config.stateful_subtopologies.clone(),
        }
    }
}

impl Default for AssignorConfig {
    /// [`GroupConfig::new`]'s settings: no standbys, no stateful sub-topologies.
    fn default() -> Self {
        Self::from(&GroupConfig::new(""))
    }
}

/// The leader's whole assignment ([`plan`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AssignmentPlan {
    /// One assignment per distinct member id.
    pub members: BTreeMap<String, MemberAssignment>,
    /// Tasks assigned to nobody in this generation (still held by another member).
    pub withheld: Vec<TaskId>,
    /// What the state-aware placement changed.
    pub placement: Placement,
}

/// One member's input to the assignor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSubscription {
    /// Its member id.
    pub member_id: String,
    /// The topics it subscribed to (informational).
    pub topics: Vec<String>,
    /// Tasks it owned in `generation`.
    pub owned_tasks: Vec<TaskId>,
    /// The generation of that ownership (`-1` when unknown); resolves conflicting claims.
    pub generation: i32,
    /// Tasks it still runs during this rebalance (cooperative): withheld from any other
    /// member until it revoked them (see [`withhold_held_elsewhere`]).
    pub held_tasks: Vec<TaskId>,
    /// Its process id (`""`: unknown, a process of its own).
    pub process_id: String,
    /// Per task whose state it has locally, the sum of its logged stores' changelog
    /// positions.
    pub task_offsets: BTreeMap<TaskId, i64>,
    /// Whether it reads assignments with standbys and follow-ups (it sent `user_data`
    /// version 3); the others get neither.
    pub state_aware: bool,
}

/// One member's output of the assignor.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberAssignment {
    /// Its tasks, sorted.
    pub tasks: Vec<TaskId>,
    /// The partitions those tasks read, sorted.
    pub partitions: Vec<TopicPartition>,
    /// Its standby and warm-up tasks, sorted (never one of `tasks`).
    pub standbys: Vec<TaskId>,
    /// Rejoin after this long (probing rebalance, follow-up of a withheld task).
    pub followup: Option<Duration>,
}

impl MemberAssignment {
    /// Asks the member to rejoin after `delay`, or sooner if it already must.
    pub fn request_followup(&mut self, delay: Duration) {
        self.followup = Some(self.followup.map_or(delay, |d| d.min(delay)));
    }
}

/// Why no assignment could be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssignError {
    /// No partition count is known for a source topic.
    #[error("no partition count for source topic {0}")]
    MissingSourceTopic(String),
    /// The source topics of a sub-topology have different partition counts.
    #[error("source topics of sub-topology {subtopology} are not co-partitioned: {detail}")]
    NotCoPartitioned {
        /// The sub-topology.
        subtopology: usize,
        /// `topic=count` for each source topic.
        detail: String,
    },
    /// A negative partition count.
    #[error("negative partition count {count} for topic {topic}")]
    NegativePartitionCount {
        /// The topic.
        topic: String,
        /// Its count.
        count: i32,
    },
}

/// Every task of the topology, sorted, given the source topics' partition counts.
pub fn all_tasks(
    subtopologies: &[Subtopology],
    partitions_of: impl Fn(&str) -> Option<i32>,
) -> Result<Vec<TaskId>, AssignError> {
    let mut tasks = Vec::new();
    for sub in subtopologies {
        let mut counts = Vec::with_capacity(sub.source_topics.len());
        for topic in &sub.source_topics {
            let count = partitions_of(topic)
                .ok_or_else(|| AssignError::MissingSourceTopic(topic.clone()))?;
            if count < 0 {
                return Err(AssignError::NegativePartitionCount {
                    topic: topic.clone(),
                    count,
                });
            }
            counts.push((topic, count));
        }
        let first = counts.first().map_or(0, |&(_, n)| n);
        if counts.iter().any(|&(_, n)| n != first) {
            return Err(AssignError::NotCoPartitioned {
                subtopology: sub.id,
                detail: counts
                    .iter()
                    .map(|(t, n)| format!("{t}={n}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        tasks.extend((0..first).map(|partition| TaskId {
            subtopology: sub.id,
            partition,
        }));
    }
    tasks.sort_unstable();
    tasks.dedup();
    Ok(tasks)
}

/// The partitions task `task` reads: partition `task.partition` of each source topic of its
/// sub-topology (none for an unknown sub-topology).
pub fn task_partitions(subtopologies: &[Subtopology], task: TaskId) -> Vec<TopicPartition> {
    subtopologies
        .iter()
        .filter(|s| s.id == task.subtopology)
        .flat_map(|s| s.source_topics.iter())
        .map(|t| TopicPartition::new(t.as_str(), task.partition))
        .collect()
}

/// The partitions `tasks` read, sorted, without duplicates.
pub fn tasks_partitions(subtopologies: &[Subtopology], tasks: &[TaskId]) -> Vec<TopicPartition> {
    let mut partitions: Vec<TopicPartition> = tasks
        .iter()
        .flat_map(|&t| task_partitions(subtopologies, t))
        .collect();
    partitions.sort();
    partitions.dedup();
    partitions
}

/// The members sorted by id, duplicates dropped: the order every step works in.
fn sorted_members(members: &[MemberSubscription]) -> Vec<&MemberSubscription> {
    let mut sorted: Vec<&MemberSubscription> = members.iter().collect();
    sorted.sort_by(|a, b| a.member_id.cmp(&b.member_id));
    sorted.dedup_by(|a, b| a.member_id == b.member_id);
    sorted
}

/// Previous ownership of the `existing` tasks (indices into `sorted`): the claim with the
/// highest generation wins, then the smaller member id.
fn previous_owners(
    sorted: &[&MemberSubscription],
    existing: &BTreeSet<TaskId>,
) -> BTreeMap<TaskId, usize> {
    let mut owner: BTreeMap<TaskId, usize> = BTreeMap::new();
    for (i, m) in sorted.iter().enumerate() {
        for task in m.owned_tasks.iter().filter(|t| existing.contains(t)) {
            match owner.get(task) {
                Some(&j) if sorted.get(j).is_some_and(|o| o.generation >= m.generation) => {}
                _ => {
                    owner.insert(*task, i);
                }
            }
        }
    }
    owner
}

/// Assigns every task to exactly one member, balanced and sticky (see the module docs).
/// Returns one entry per distinct member id; no members gives an empty map.
pub fn assign(
    members: &[MemberSubscription],
    subtopologies: &[Subtopology],
    partitions_of: impl Fn(&str) -> Option<i32>,
) -> Result<BTreeMap<String, MemberAssignment>, AssignError> {
    let tasks = all_tasks(subtopologies, partitions_of)?;
    let sorted = sorted_members(members);
    let n = sorted.len();
    if n == 0 {
        return Ok(BTreeMap::new());
    }

    let existing: BTreeSet<TaskId> = tasks.iter().copied().collect();
    let owner = previous_owners(&sorted, &existing);
    let mut claims: Vec<Vec<TaskId>> = vec![Vec::new(); n];
    for (task, &i) in &owner {
        if let Some(c) = claims.get_mut(i) {
            c.push(*task);
        }
    }

    // Quotas: the larger ones go to the members with the most claims.
    let base = tasks.len() / n;
    let extra = tasks.len() % n;
    let mut by_claims: Vec<usize> = (0..n).collect();
    by_claims.sort_by(|&a, &b| claims[b].len().cmp(&claims[a].len()).then(a.cmp(&b)));
    let mut quota = vec![base; n];
    for &i in by_claims.iter().take(extra) {
        quota[i] = base + 1;
    }

    // Keep claims within quota; pool the rest.
    let mut assigned: Vec<Vec<TaskId>> = vec![Vec::new(); n];
    let mut kept: BTreeSet<TaskId> = BTreeSet::new();
    for i in 0..n {
        for &task in claims[i].iter().take(quota[i]) {
            assigned[i].push(task);
            kept.insert(task);
        }
    }
    for task in tasks.iter().filter(|t| !kept.contains(t)) {
        let target = (0..n)
            .filter(|&i| assigned[i].len() < quota[i])
            .min_by_key(|&i| (assigned[i].len(), i));
        match target {
            Some(i) => assigned[i].push(*task),
            // Unreachable: the quotas add up to the number of tasks.
            None => tracing::error!(%task, "assignor found no member below quota"),
        }
    }

    Ok(sorted
        .iter()
        .zip(assigned)
        .map(|(m, mut tasks)| {
            tasks.sort_unstable();
            let partitions = tasks_partitions(subtopologies, &tasks);
            (
                m.member_id.clone(),
                MemberAssignment {
                    tasks,
                    partitions,
                    ..MemberAssignment::default()
                },
            )
        })
        .collect())
}

/// Cooperative rebalancing, first phase (see the module docs): takes out of `target` every
/// task that a member other than its target owner still holds, and returns those tasks
/// (sorted). They are assigned to nobody in this generation; the holders revoke them and
/// rejoin, and the follow-up rebalance assigns them.
pub fn withhold_held_elsewhere(
    target: &mut BTreeMap<String, MemberAssignment>,
    members: &[MemberSubscription],
    subtopologies: &[Subtopology],
) -> Vec<TaskId> {
    let mut holders: BTreeMap<TaskId, BTreeSet<&str>> = BTreeMap::new();
    for m in members {
        for task in &m.held_tasks {
            holders
                .entry(*task)
                .or_default()
                .insert(m.member_id.as_str());
        }
    }
    let mut withheld = Vec::new();
    for (member_id, assignment) in target.iter_mut() {
        let before = assignment.tasks.len();
        assignment.tasks.retain(|task| {
            let elsewhere = holders
                .get(task)
                .is_some_and(|h| h.iter().any(|holder| *holder != member_id.as_str()));
            if elsewhere {
                withheld.push(*task);
            }
            !elsewhere
        });
        if assignment.tasks.len() != before {
            assignment.partitions = tasks_partitions(subtopologies, &assignment.tasks);
        }
    }
    withheld.sort_unstable();
    withheld
}

/// The leader's assignment: the balanced, sticky target ([`assign`]), placed by state
/// ([`place_by_state`]), held tasks withheld ([`withhold_held_elsewhere`]) with a follow-up
/// for their target owners, as the module docs describe. `leader` is the member computing it
/// (it gets the probing follow-up).
pub fn plan(
    members: &[MemberSubscription],
    subtopologies: &[Subtopology],
    partitions_of: impl Fn(&str) -> Option<i32>,
    config: &AssignorConfig,
    leader: &str,
) -> Result<AssignmentPlan, AssignError> {
    let mut target = assign(members, subtopologies, partitions_of)?;
    let placement = place_by_state(&mut target, members, subtopologies, config, leader);
    let target_owner: BTreeMap<TaskId, String> = target
        .iter()
        .flat_map(|(id, a)| a.tasks.iter().map(move |&t| (t, id.clone())))
        .collect();
    let withheld = withhold_held_elsewhere(&mut target, members, subtopologies);
    let state_aware: BTreeSet<&str> = members
        .iter()
        .filter(|m| m.state_aware)
        .map(|m| m.member_id.as_str())
        .collect();
    for task in &withheld {
        let owner = target_owner.get(task).map(String::as_str);
        match owner.filter(|id| state_aware.contains(id)) {
            Some(id) => {
                if let Some(assignment) = target.get_mut(id) {
                    assignment.request_followup(config.withheld_followup);
                }
            }
            None => tracing::debug!(
                %task,
                ?owner,
                "the target owner of a withheld task reads no follow-up: only the holder's rejoin assigns it"
            ),
        }
    }
    Ok(AssignmentPlan {
        members: target,
        withheld,
        placement,
    })
}

#[cfg(test)]
mod tests;
