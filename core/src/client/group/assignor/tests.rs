//! Tests of the balanced, sticky assignment and of withholding held tasks.

use proptest::prelude::*;

use super::*;

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

mod state_aware;
