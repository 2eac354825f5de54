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
//! # Cooperative rebalancing: two phases (KIP-429)
//! Under the cooperative protocol a member keeps running its tasks while the group rebalances
//! and lists them as *held* in its subscription. The leader computes the balanced, sticky
//! target above, then [`withhold_held_elsewhere`] takes out of it every task that another
//! member still holds: that task goes to nobody in this generation.
//! 1. First rebalance: members that keep a task keep running it untouched; a member whose
//!    assignment lacks a task it holds commits it, closes it (revokes it) and at once rejoins.
//! 2. Follow-up rebalance (triggered by that rejoin): no member holds the task any more, so
//!    the target gives it to its new owner, which restores and starts it.
//!
//! A task therefore never runs on two members at once, and only the tasks that move stop.
//! Held tasks are withheld whatever protocol the coordinator selected: after a group falls
//! back to eager (a member without cooperative support joined), the members that were
//! cooperative still hold their tasks through that one rebalance.

use std::collections::{BTreeMap, BTreeSet};

use crate::record::TopicPartition;
use crate::task::TaskId;
use crate::time::Duration;
use crate::topology::Subtopology;

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

/// Assigns every task to exactly one member, balanced and sticky (see the module docs).
/// Returns one entry per distinct member id; no members gives an empty map.
pub fn assign(
    members: &[MemberSubscription],
    subtopologies: &[Subtopology],
    partitions_of: impl Fn(&str) -> Option<i32>,
) -> Result<BTreeMap<String, MemberAssignment>, AssignError> {
    let tasks = all_tasks(subtopologies, partitions_of)?;
    let mut sorted: Vec<&MemberSubscription> = members.iter().collect();
    sorted.sort_by(|a, b| a.member_id.cmp(&b.member_id));
    sorted.dedup_by(|a, b| a.member_id == b.member_id);
    let n = sorted.len();
    if n == 0 {
        return Ok(BTreeMap::new());
    }

    // Resolve previous ownership: highest generation wins, then the smaller member id.
    let existing: BTreeSet<TaskId> = tasks.iter().copied().collect();
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
            let mut partitions: Vec<TopicPartition> = tasks
                .iter()
                .flat_map(|&t| task_partitions(subtopologies, t))
                .collect();
            partitions.sort();
            partitions.dedup();
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
            let mut partitions: Vec<TopicPartition> = assignment
                .tasks
                .iter()
                .flat_map(|&t| task_partitions(subtopologies, t))
                .collect();
            partitions.sort();
            partitions.dedup();
            assignment.partitions = partitions;
        }
    }
    withheld.sort_unstable();
    withheld
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sub(id: usize, topics: &[&str]) -> Subtopology {
        Subtopology {
            id,
            nodes: Vec::new(),
            source_topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            sink_topics: Vec::new(),
            stores: Vec::new(),
        }
    }

    fn member(id: &str, owned: &[TaskId], generation: i32) -> MemberSubscription {
        MemberSubscription {
            member_id: id.to_owned(),
            topics: Vec::new(),
            owned_tasks: owned.to_vec(),
            generation,
            held_tasks: Vec::new(),
            process_id: String::new(),
            task_offsets: BTreeMap::new(),
            state_aware: true,
        }
    }

    fn holding(id: &str, held: &[TaskId], generation: i32) -> MemberSubscription {
        MemberSubscription {
            held_tasks: held.to_vec(),
            ..member(id, held, generation)
        }
    }

    #[test]
    fn a_joiner_gets_moved_tasks_only_after_their_holder_revoked_them() {
        let subs = [sub(0, &["a", "b"])];
        let all: Vec<TaskId> = (0..4).map(|p| t(0, p)).collect();
        // Phase 1: "a" holds all four; "b" joins. The target moves two to "b": withheld.
        let members = [holding("a", &all, 3), member("b", &[], -1)];
        let mut out = assign(&members, &subs, |_| Some(4)).unwrap();
        assert_eq!(out["b"].tasks, vec![t(0, 2), t(0, 3)]);
        let withheld = withhold_held_elsewhere(&mut out, &members, &subs);
        assert_eq!(withheld, vec![t(0, 2), t(0, 3)]);
        assert_eq!(out["a"].tasks, vec![t(0, 0), t(0, 1)]);
        assert!(out["b"].tasks.is_empty());
        assert!(out["b"].partitions.is_empty());
        // Phase 2: "a" revoked them and holds only what it kept: "b" gets them.
        let members = [holding("a", &[t(0, 0), t(0, 1)], 4), member("b", &[], 4)];
        let mut out = assign(&members, &subs, |_| Some(4)).unwrap();
        assert!(withhold_held_elsewhere(&mut out, &members, &subs).is_empty());
        assert_eq!(out["a"].tasks, vec![t(0, 0), t(0, 1)]);
        assert_eq!(out["b"].tasks, vec![t(0, 2), t(0, 3)]);
        assert_eq!(
            out["b"].partitions,
            vec![
                TopicPartition::new("a", 2),
                TopicPartition::new("a", 3),
                TopicPartition::new("b", 2),
                TopicPartition::new("b", 3)
            ]
        );
    }

    #[test]
    fn weak_claims_are_not_withheld_and_double_holders_both_revoke() {
        let subs = [sub(0, &["a"])];
        // "a" lost its membership (claims, holds nothing): nothing is withheld.
        let members = [member("a", &[t(0, 0), t(0, 1)], -1), member("b", &[], -1)];
        let mut out = assign(&members, &subs, |_| Some(2)).unwrap();
        assert!(withhold_held_elsewhere(&mut out, &members, &subs).is_empty());
        // Two members hold the same task (never in a sane group): it goes to neither.
        let members = [holding("a", &[t(0, 0)], 2), holding("b", &[t(0, 0)], 1)];
        let mut out = assign(&members, &subs, |_| Some(2)).unwrap();
        assert_eq!(
            withhold_held_elsewhere(&mut out, &members, &subs),
            vec![t(0, 0)]
        );
        assert!(out.values().all(|a| !a.tasks.contains(&t(0, 0))));
    }

    fn t(s: usize, p: i32) -> TaskId {
        TaskId {
            subtopology: s,
            partition: p,
        }
    }

    #[test]
    fn co_partitioned_topics_go_together() {
        let subs = [sub(0, &["a", "b"]), sub(1, &["c"])];
        let out = assign(
            &[member("m1", &[], -1), member("m2", &[], -1)],
            &subs,
            |topic| Some(if topic == "c" { 1 } else { 2 }),
        )
        .unwrap();
        assert_eq!(out["m1"].tasks, vec![t(0, 0), t(1, 0)]);
        assert_eq!(out["m2"].tasks, vec![t(0, 1)]);
        assert_eq!(
            out["m2"].partitions,
            vec![TopicPartition::new("a", 1), TopicPartition::new("b", 1)]
        );
    }

    #[test]
    fn topology_errors_are_typed() {
        let subs = [sub(0, &["a", "b"])];
        let m = [member("m", &[], -1)];
        assert_eq!(
            assign(&m, &subs, |t| (t == "a").then_some(1)),
            Err(AssignError::MissingSourceTopic("b".into()))
        );
        assert!(matches!(
            assign(&m, &subs, |t| Some(if t == "a" { 1 } else { 2 })),
            Err(AssignError::NotCoPartitioned { subtopology: 0, .. })
        ));
    }

    #[test]
    fn conflicting_claims_go_to_the_newer_generation() {
        let subs = [sub(0, &["a"])];
        let out = assign(
            &[member("a", &[t(0, 0)], 1), member("b", &[t(0, 0)], 2)],
            &subs,
            |_| Some(2),
        )
        .unwrap();
        assert_eq!(out["b"].tasks, vec![t(0, 0)]);
        assert_eq!(out["a"].tasks, vec![t(0, 1)]);
    }

    fn arb_case() -> impl Strategy<Value = (Vec<(usize, i32)>, usize)> {
        // (topics per sub-topology, partitions) for up to 4 sub-topologies, up to 8 members.
        (
            proptest::collection::vec((1usize..4, 0i32..13), 1..5),
            1usize..9,
        )
    }

    fn topology(shape: &[(usize, i32)]) -> (Vec<Subtopology>, BTreeMap<String, i32>) {
        let mut subs = Vec::new();
        let mut counts = BTreeMap::new();
        for (id, &(topics, partitions)) in shape.iter().enumerate() {
            let names: Vec<String> = (0..topics).map(|j| format!("s{id}t{j}")).collect();
            for name in &names {
                counts.insert(name.clone(), partitions);
            }
            subs.push(Subtopology {
                id,
                nodes: Vec::new(),
                source_topics: names,
                sink_topics: Vec::new(),
                stores: Vec::new(),
            });
        }
        (subs, counts)
    }

    fn owners(out: &BTreeMap<String, MemberAssignment>) -> BTreeMap<TaskId, String> {
        out.iter()
            .flat_map(|(m, a)| a.tasks.iter().map(move |t| (*t, m.clone())))
            .collect()
    }

    fn check_valid(
        out: &BTreeMap<String, MemberAssignment>,
        subs: &[Subtopology],
        counts: &BTreeMap<String, i32>,
        members: usize,
    ) -> Result<(), TestCaseError> {
        let tasks = all_tasks(subs, |t| counts.get(t).copied()).unwrap();
        prop_assert_eq!(out.len(), members);
        // Every task exactly once.
        let mut seen: Vec<TaskId> = out.values().flat_map(|a| a.tasks.clone()).collect();
        seen.sort_unstable();
        prop_assert_eq!(&seen, &tasks);
        // Balanced.
        let sizes: Vec<usize> = out.values().map(|a| a.tasks.len()).collect();
        let (min, max) = (sizes.iter().min(), sizes.iter().max());
        prop_assert!(max.zip(min).is_none_or(|(a, b)| a - b <= 1), "{:?}", sizes);
        // Co-partitioned partitions together, and partitions are exactly the tasks'.
        for a in out.values() {
            let mut expected: Vec<TopicPartition> = a
                .tasks
                .iter()
                .flat_map(|&t| {
                    subs[t.subtopology]
                        .source_topics
                        .iter()
                        .map(move |topic| TopicPartition::new(topic.as_str(), t.partition))
                })
                .collect();
            expected.sort();
            prop_assert_eq!(&a.partitions, &expected);
        }
        Ok(())
    }

    /// The fewest tasks that must move away from the `current` owners when `n` members share
    /// `total` tasks: every member keeps at most its quota.
    fn minimal_moves(current: &[usize], n: usize, total: usize) -> usize {
        let (base, extra) = (total / n, total % n);
        let claimed: usize = current.iter().sum();
        let keep_base: usize = current.iter().map(|&c| c.min(base)).sum();
        let above = current.iter().filter(|&&c| c > base).count();
        claimed - keep_base - above.min(extra)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn balanced_complete_and_minimal_moves(
            (shape, n) in arb_case(),
            leave in any::<prop::sample::Index>(),
        ) {
            let (subs, counts) = topology(&shape);
            let lookup = |t: &str| counts.get(t).copied();
            let total = all_tasks(&subs, lookup).unwrap().len();
            let names: Vec<String> = (0..n).map(|i| format!("member-{i:02}")).collect();
            let fresh: Vec<MemberSubscription> =
                names.iter().map(|m| member(m, &[], -1)).collect();
            let first = assign(&fresh, &subs, lookup).unwrap();
            check_valid(&first, &subs, &counts, n)?;

            // Deterministic regardless of input order.
            let mut reversed = fresh.clone();
            reversed.reverse();
            prop_assert_eq!(&assign(&reversed, &subs, lookup).unwrap(), &first);

            let previous = |name: &str| first.get(name).map(|a| a.tasks.clone()).unwrap_or_default();
            let before = owners(&first);

            // One member joins.
            let mut grown: Vec<MemberSubscription> =
                names.iter().map(|m| member(m, &previous(m), 1)).collect();
            grown.push(member("member-zz", &[], -1));
            let after = assign(&grown, &subs, lookup).unwrap();
            check_valid(&after, &subs, &counts, n + 1)?;
            let moved = owners(&after)
                .iter()
                .filter(|(t, m)| before.get(t).is_some_and(|old| old != *m))
                .count();
            let current: Vec<usize> = names.iter().map(|m| previous(m).len()).collect();
            prop_assert_eq!(moved, minimal_moves(&current, n + 1, total));
            prop_assert!(moved <= total.div_ceil(n + 1));

            // One member leaves: only its tasks move.
            if n > 1 {
                let gone = &names[leave.index(n)];
                let shrunk: Vec<MemberSubscription> = names
                    .iter()
                    .filter(|m| *m != gone)
                    .map(|m| member(m, &previous(m), 1))
                    .collect();
                let after = assign(&shrunk, &subs, lookup).unwrap();
                check_valid(&after, &subs, &counts, n - 1)?;
                let moved = owners(&after)
                    .iter()
                    .filter(|(t, m)| before.get(t).is_some_and(|old| old != *m && old != gone))
                    .count();
                prop_assert_eq!(moved, 0);
            }
        }

        #[test]
        fn arbitrary_previous_claims_still_give_a_valid_assignment(
            (shape, n) in arb_case(),
            claims in proptest::collection::vec(
                (0usize..8, 0usize..5, 0i32..14, -1i32..3), 0..40),
        ) {
            let (subs, counts) = topology(&shape);
            let mut members: Vec<MemberSubscription> =
                (0..n).map(|i| member(&format!("m{i}"), &[], -1)).collect();
            for (m, s, p, generation) in claims {
                if let Some(member) = members.get_mut(m) {
                    member.owned_tasks.push(t(s, p));
                    member.generation = generation;
                }
            }
            let out = assign(&members, &subs, |t| counts.get(t).copied()).unwrap();
            check_valid(&out, &subs, &counts, n)?;
        }

        #[test]
        fn withheld_tasks_never_go_to_a_member_other_than_their_holder(
            (shape, n) in arb_case(),
            held in proptest::collection::vec((0usize..8, 0usize..5, 0i32..14), 0..40),
        ) {
            let (subs, counts) = topology(&shape);
            let mut members: Vec<MemberSubscription> =
                (0..n).map(|i| member(&format!("m{i}"), &[], 1)).collect();
            for (m, s, p) in held {
                if let Some(member) = members.get_mut(m) {
                    member.held_tasks.push(t(s, p));
                    member.owned_tasks.push(t(s, p));
                }
            }
            let mut out = assign(&members, &subs, |t| counts.get(t).copied()).unwrap();
            let target = out.clone();
            let withheld = withhold_held_elsewhere(&mut out, &members, &subs);
            // Exactly the target's tasks minus the withheld ones, each once.
            let mut given: Vec<TaskId> = out.values().flat_map(|a| a.tasks.clone()).collect();
            let mut expected: Vec<TaskId> = target
                .values()
                .flat_map(|a| a.tasks.clone())
                .filter(|t| !withheld.contains(t))
                .collect();
            given.sort_unstable();
            expected.sort_unstable();
            prop_assert_eq!(given, expected);
            // No member gets a task another member holds; a holder keeps what the target
            // gives it.
            for (id, a) in &out {
                for task in &a.tasks {
                    prop_assert!(members
                        .iter()
                        .all(|m| m.member_id == *id || !m.held_tasks.contains(task)));
                }
            }
        }
    }
}
