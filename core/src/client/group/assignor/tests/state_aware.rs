//! Tests of the state-aware placement: lags, keeping actives where their state is, warm-ups,
//! standbys, follow-ups, and the whole plan's invariants.

use super::*;

/// Member `id` of process `process`, owning (and, when `holds`, holding) `owned` in
/// generation 3, reporting `offsets`.
fn state(
    id: &str,
    process: &str,
    owned: &[TaskId],
    holds: bool,
    offsets: &[(TaskId, i64)],
) -> MemberSubscription {
    MemberSubscription {
        process_id: process.to_owned(),
        task_offsets: offsets.iter().copied().collect(),
        held_tasks: if holds { owned.to_vec() } else { Vec::new() },
        ..member(id, owned, if owned.is_empty() { -1 } else { 3 })
    }
}

fn config(standbys: usize) -> AssignorConfig {
    AssignorConfig {
        num_standby_replicas: standbys,
        acceptable_recovery_lag: 100,
        max_warmup_replicas: 2,
        probing_rebalance_interval: Duration::from_secs(600),
        withheld_followup: Duration::from_secs(3),
        stateful_subtopologies: vec![0],
    }
}

/// Sub-topology 0 (stateful) reads `a` with `n` partitions; sub-topology 1 (stateless)
/// reads `b` with `n` partitions.
fn plan_of(
    members: &[MemberSubscription],
    n: i32,
    config: &AssignorConfig,
    leader: &str,
) -> AssignmentPlan {
    plan_with_stateless(members, n, n, config, leader)
}

/// As [`plan_of`], with `stateless` partitions of `b`.
fn plan_with_stateless(
    members: &[MemberSubscription],
    n: i32,
    stateless: i32,
    config: &AssignorConfig,
    leader: &str,
) -> AssignmentPlan {
    let subs = [sub(0, &["a"]), sub(1, &["b"])];
    let counts = |topic: &str| Some(if topic == "a" { n } else { stateless });
    plan(members, &subs, counts, config, leader).unwrap()
}

fn tasks0(n: i32) -> Vec<TaskId> {
    (0..n).map(|p| t(0, p)).collect()
}

fn full(tasks: &[TaskId], sum: i64) -> Vec<(TaskId, i64)> {
    tasks.iter().map(|&task| (task, sum)).collect()
}

#[test]
fn a_fresh_group_gets_the_balanced_target_and_standbys_on_other_processes() {
    let members = [
        state("a", "p1", &[], false, &[]),
        state("b", "p2", &[], false, &[]),
        state("c", "p3", &[], false, &[]),
    ];
    let out = plan_of(&members, 3, &config(1), "a");
    let balanced = assign(&members, &[sub(0, &["a"]), sub(1, &["b"])], |_| Some(3)).unwrap();
    for (id, a) in &out.members {
        assert_eq!(a.tasks, balanced[id].tasks);
        assert_eq!(a.followup, None);
    }
    assert!(out.placement.warmups.is_empty());
    // One standby per stateful task, on another member, spread one each; none of the
    // stateless sub-topology 1.
    let mut standbys: Vec<TaskId> = out
        .members
        .values()
        .flat_map(|a| a.standbys.clone())
        .collect();
    standbys.sort_unstable();
    assert_eq!(standbys, tasks0(3));
    // Ties go to the fewest standbys, then the smaller id: 0_0 (on a) → b, 0_1 (on b) →
    // a, 0_2 (on c) → a (one standby each so far, smaller id).
    assert_eq!(out.members["a"].standbys, vec![t(0, 1), t(0, 2)]);
    assert_eq!(out.members["b"].standbys, vec![t(0, 0)]);
    assert!(out.members["c"].standbys.is_empty());
}

#[test]
fn scaling_out_keeps_tasks_where_their_state_is_and_warms_up_the_joiner() {
    let all = tasks0(4);
    let members = [
        state("a", "p1", &all, true, &full(&all, 5_000)),
        state("b", "p2", &[], false, &[]),
    ];
    let out = plan_with_stateless(&members, 4, 0, &config(0), "a");
    // The balanced target gives b half; they stay on a.
    assert_eq!(out.members["a"].tasks, all);
    assert!(out.members["b"].tasks.is_empty());
    assert_eq!(out.placement.kept_caught_up, vec![t(0, 2), t(0, 3)]);
    assert_eq!(out.members["b"].standbys, vec![t(0, 2), t(0, 3)]);
    assert!(out.withheld.is_empty());
    // The leader probes; b just warms up.
    assert_eq!(out.members["a"].followup, Some(Duration::from_secs(600)));
    assert_eq!(out.members["b"].followup, None);

    // At most max_warmup_replicas: the other task simply stays.
    let one = AssignorConfig {
        max_warmup_replicas: 1,
        ..config(0)
    };
    let out = plan_with_stateless(&members, 4, 0, &one, "a");
    assert_eq!(out.members["b"].standbys, vec![t(0, 2)]);
    assert_eq!(out.members["a"].tasks, all);
    // None at all: nothing moves, no probing either.
    let none = AssignorConfig {
        max_warmup_replicas: 0,
        ..config(0)
    };
    let out = plan_with_stateless(&members, 4, 0, &none, "a");
    assert!(out.members["b"].standbys.is_empty());
    assert_eq!(out.members["a"].followup, None);
}

#[test]
fn a_joiner_without_state_is_caught_up_when_the_changelogs_hold_little() {
    // The tasks' changelogs hold at most the acceptable lag (here: nothing logged yet, and
    // 100 records): a member without the state restores that much, so it takes its
    // balanced share at once, without a warm-up (as Kafka Streams, where a client without a
    // task's state lags by the changelog's end).
    let all = tasks0(4);
    for sum in [0, 100] {
        let members = [
            state("a", "p1", &all, true, &full(&all, sum)),
            state("b", "p2", &[], false, &[]),
        ];
        let out = plan_with_stateless(&members, 4, 0, &config(0), "a");
        assert!(out.placement.kept_caught_up.is_empty(), "sum {sum}");
        assert!(out.placement.warmups.is_empty(), "sum {sum}");
        // b's share is withheld while a still holds it (cooperative), then b gets it.
        assert_eq!(out.withheld, vec![t(0, 2), t(0, 3)], "sum {sum}");
    }
    // One record more than acceptable: the joiner warms up first.
    let members = [
        state("a", "p1", &all, true, &full(&all, 101)),
        state("b", "p2", &[], false, &[]),
    ];
    let out = plan_with_stateless(&members, 4, 0, &config(0), "a");
    assert_eq!(out.members["b"].standbys, vec![t(0, 2), t(0, 3)]);
}

#[test]
fn a_caught_up_warmup_takes_its_task_at_the_probing_rebalance() {
    let all = tasks0(4);
    let moving = [t(0, 2), t(0, 3)];
    // b's warm-ups are 60 records behind (acceptable: 100); a still holds everything.
    let members = [
        state("a", "p1", &all, true, &full(&all, 5_000)),
        state("b", "p2", &[], false, &full(&moving, 4_940)),
    ];
    let out = plan_with_stateless(&members, 4, 0, &config(1), "a");
    assert!(out.placement.kept_caught_up.is_empty());
    // Cooperative: a still runs them, so they are withheld this generation; b, their target
    // owner, gets the short follow-up, a (the holder) the standbys of what it gives away.
    assert_eq!(out.withheld, moving.to_vec());
    assert_eq!(out.members["b"].followup, Some(Duration::from_secs(3)));
    assert_eq!(out.members["a"].followup, None);
    assert_eq!(out.members["a"].tasks, vec![t(0, 0), t(0, 1)]);
    assert_eq!(out.members["a"].standbys, moving.to_vec());
    assert_eq!(out.members["b"].standbys, vec![t(0, 0), t(0, 1)]);
    // In the follow-up a holds only what it kept: b gets them.
    let members = [
        state("a", "p1", &[t(0, 0), t(0, 1)], true, &full(&all, 5_000)),
        state("b", "p2", &[], false, &full(&moving, 4_940)),
    ];
    let out = plan_with_stateless(&members, 4, 0, &config(1), "a");
    assert!(out.withheld.is_empty());
    assert_eq!(out.members["b"].tasks, moving.to_vec());
    assert!(out.members.values().all(|a| a.followup.is_none()));
    // 61 records more behind than acceptable: still warming up.
    let members = [
        state("a", "p1", &all, true, &full(&all, 5_000)),
        state("b", "p2", &[], false, &full(&moving, 4_899)),
    ];
    let out = plan_with_stateless(&members, 4, 0, &config(1), "a");
    assert_eq!(out.placement.kept_caught_up, moving.to_vec());
}

#[test]
fn on_failover_the_task_goes_to_the_most_caught_up_standby() {
    // a (active of 0_0) is gone; b has an old copy, c a recent one, d none. The balanced
    // target would give 0_0 to b (fewest tasks, smaller id) or d.
    let members = [
        state("b", "p2", &[], false, &[(t(0, 0), 100)]),
        state(
            "c",
            "p3",
            &[t(0, 1)],
            false,
            &[(t(0, 0), 950), (t(0, 1), 10)],
        ),
        state("d", "p4", &[], false, &[]),
    ];
    let out = plan_of(&members, 2, &config(1), "b");
    // Target: b 0_0; c 0_1 (its claim) and 1_1; d 1_0. b is 850 behind (acceptable 100), c
    // is the reference: 0_0 goes to c, b warms it up (which is also 0_0's one standby).
    assert_eq!(out.members["c"].tasks, vec![t(0, 0), t(0, 1), t(1, 1)]);
    assert!(out.members["b"].tasks.is_empty());
    assert_eq!(
        out.placement.warmups,
        BTreeMap::from([(t(0, 0), "b".to_owned())])
    );
    assert_eq!(out.members["b"].standbys, vec![t(0, 0)]);
    // 0_1's standby: nobody else has its state; d has fewer standbys than b.
    assert_eq!(out.members["d"].standbys, vec![t(0, 1)]);
    assert_eq!(out.members["b"].followup, Some(Duration::from_secs(600)));
}

#[test]
fn the_last_active_is_caught_up_even_behind_a_standby_that_read_further() {
    // a runs 0_0 and reported its position at its last commit; b's standby read 5,000
    // records written since. The task does not move to b.
    let members = [
        state("a", "p1", &[t(0, 0)], true, &[(t(0, 0), 1_000)]),
        state(
            "b",
            "p2",
            &[t(0, 1)],
            true,
            &[(t(0, 0), 6_000), (t(0, 1), 1)],
        ),
    ];
    let out = plan_of(&members, 2, &config(1), "a");
    assert!(out.members["a"].tasks.contains(&t(0, 0)));
    assert!(out.placement.kept_caught_up.is_empty());
    assert!(out.withheld.is_empty());
    // Each has the other's standby.
    assert_eq!(out.members["a"].standbys, vec![t(0, 1)]);
    assert_eq!(out.members["b"].standbys, vec![t(0, 0)]);
}

#[test]
fn members_of_one_process_share_its_state_and_never_hold_replicas_of_its_tasks() {
    // a1 and a2 are two threads of process p1, which has 0_0's state (through a1). The
    // balanced target gives 0_0 to a2: caught up through its process, it takes it (the
    // shared state directory has it); the standby goes to the other process, not to a1.
    let members = [
        state("a1", "p1", &[], false, &[(t(0, 0), 500)]),
        state("a2", "p1", &[], false, &[]),
        state("b", "p2", &[], false, &[]),
    ];
    let out = plan_of(&members, 1, &config(2), "a1");
    assert!(out.placement.kept_caught_up.is_empty());
    let active = out
        .members
        .iter()
        .find(|(_, a)| a.tasks.contains(&t(0, 0)))
        .map(|(id, _)| id.as_str());
    assert_eq!(active, Some("a1"), "balanced target: smallest id");
    assert_eq!(out.members["b"].standbys, vec![t(0, 0)]);
    assert!(out.members["a2"].standbys.is_empty());
    // Two standbys wanted, one other process: one standby, reported short.
    assert_eq!(out.placement.short_of_standbys, vec![t(0, 0)]);
    // Empty process ids are processes of their own.
    let members = [
        state("x", "", &[], false, &[]),
        state("y", "", &[], false, &[]),
        state("z", "", &[], false, &[]),
    ];
    let out = plan_of(&members, 1, &config(2), "x");
    let replicas: usize = out.members.values().map(|a| a.standbys.len()).sum();
    assert_eq!(replicas, 2);
}

#[test]
fn older_members_keep_the_balanced_target_and_get_no_standbys_nor_follow_ups() {
    let all = tasks0(2);
    let mut old = state("b", "", &[], false, &[]);
    old.state_aware = false;
    let members = [state("a", "p1", &all, true, &full(&all, 10)), old];
    let out = plan_with_stateless(&members, 2, 0, &config(1), "a");
    // 0_1 goes to b as the balanced target says (no warm-up possible there); a holds it, so
    // it is withheld, and b cannot read a follow-up.
    assert!(out.placement.kept_caught_up.is_empty());
    assert_eq!(out.withheld, vec![t(0, 1)]);
    assert!(out.members["b"].standbys.is_empty());
    assert_eq!(out.members["b"].followup, None);
    // a keeps a standby of what it gives away (it has the state); b has none of a's 0_0.
    assert_eq!(out.members["a"].standbys, vec![t(0, 1)]);
}

#[test]
fn stateless_tasks_never_get_standbys_nor_lags() {
    let members = [
        state("a", "p1", &[], false, &[(t(1, 0), 7)]),
        state("b", "p2", &[], false, &[]),
    ];
    let stateless = AssignorConfig {
        stateful_subtopologies: Vec::new(),
        ..config(1)
    };
    let out = plan_of(&members, 2, &stateless, "a");
    assert!(out.members.values().all(|a| a.standbys.is_empty()));
    assert_eq!(out.placement, Placement::default());
}

/// A random group: per member (process index or none, state-aware, owned tasks, holds them,
/// tasks with state): state is all-or-nothing (sum 1,000) so lags are 0 or none.
type MemberCase = (Option<u8>, bool, Vec<(usize, i32)>, bool, Vec<(usize, i32)>);

fn arb_members() -> impl Strategy<Value = Vec<MemberCase>> {
    let tasks = || proptest::collection::vec((0usize..3, 0i32..6), 0..6);
    proptest::collection::vec(
        (
            proptest::option::of(0u8..4),
            proptest::bool::weighted(0.85),
            tasks(),
            any::<bool>(),
            tasks(),
        ),
        1..7,
    )
}

fn build(cases: &[MemberCase]) -> Vec<MemberSubscription> {
    cases
        .iter()
        .enumerate()
        .map(|(i, (process, aware, owned, holds, stateful))| {
            let owned: Vec<TaskId> = owned.iter().map(|&(s, p)| t(s, p)).collect();
            let offsets: Vec<(TaskId, i64)> = if *aware {
                stateful.iter().map(|&(s, p)| (t(s, p), 1_000)).collect()
            } else {
                Vec::new()
            };
            let mut m = state(
                &format!("m{i}"),
                &process.map_or_else(String::new, |p| format!("p{p}")),
                &owned,
                *holds,
                &offsets,
            );
            m.state_aware = *aware;
            m
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn plans_keep_every_invariant(
        cases in arb_members(),
        partitions in 1i32..6,
        standbys in 0usize..4,
        warmups in 0usize..4,
        stateful in proptest::collection::btree_set(0usize..3, 0..4),
        leader in any::<prop::sample::Index>(),
    ) {
        let subs = [sub(0, &["a"]), sub(1, &["b"]), sub(2, &["c"])];
        let members = build(&cases);
        let leader = members[leader.index(members.len())].member_id.clone();
        let config = AssignorConfig {
            num_standby_replicas: standbys,
            acceptable_recovery_lag: 0,
            max_warmup_replicas: warmups,
            probing_rebalance_interval: Duration::from_secs(600),
            withheld_followup: Duration::from_secs(3),
            stateful_subtopologies: stateful.iter().copied().collect(),
        };
        let counts = |_: &str| Some(partitions);
        let all = all_tasks(&subs, counts).unwrap();
        let balanced = assign(&members, &subs, counts).unwrap();
        let mut placed = balanced.clone();
        let placement = place_by_state(&mut placed, &members, &subs, &config, &leader);
        let out = plan(&members, &subs, counts, &config, &leader).unwrap();
        let by_id: BTreeMap<&str, &MemberSubscription> =
            members.iter().map(|m| (m.member_id.as_str(), m)).collect();
        let process = |id: &str| match by_id[id].process_id.as_str() {
            "" => format!("own-{id}"),
            p => p.to_owned(),
        };
        let has_state = |id: &str, task: &TaskId| {
            let p = process(id);
            members.iter().any(|m| {
                m.state_aware && process(&m.member_id) == p && m.task_offsets.contains_key(task)
            })
        };

        // Every task exactly one active after the placement; the plan gives each task to
        // one member or withholds it.
        let placed_owner = owners(&placed);
        prop_assert_eq!(placed_owner.keys().copied().collect::<Vec<_>>(), all.clone());
        let mut given: Vec<TaskId> = out.members.values().flat_map(|a| a.tasks.clone()).collect();
        given.extend(out.withheld.iter().copied());
        given.sort_unstable();
        prop_assert_eq!(&given, &all);
        for (id, a) in &out.members {
            prop_assert_eq!(&a.partitions, &tasks_partitions(&subs, &a.tasks));
            prop_assert!(a.standbys.windows(2).all(|w| w[0] < w[1]));
            prop_assert!(a.standbys.iter().all(|s| !a.tasks.contains(s)), "{} active+standby", id);
            if !by_id[id.as_str()].state_aware {
                prop_assert!(a.standbys.is_empty());
                prop_assert_eq!(a.followup, None);
            }
        }

        // Actives: the balanced target unless it lacks the state some aware member has.
        let balanced_owner = owners(&balanced);
        prop_assert!(placement.warmups.len() <= warmups);
        for task in &all {
            let target = &balanced_owner[task];
            let placed = &placed_owner[task];
            let stateful_task = stateful.contains(&task.subtopology);
            let someone = members.iter().any(|m| has_state(&m.member_id, task));
            if !stateful_task || !by_id[target.as_str()].state_aware || has_state(target, task) || !someone {
                prop_assert_eq!(placed, target, "{} moved", task);
            } else {
                prop_assert!(has_state(placed, task), "{} not kept where its state is", task);
            }
            if let Some(w) = placement.warmups.get(task) {
                prop_assert_eq!(w, target);
                prop_assert!(placed != target);
            }
        }

        // Standbys: on aware members, never the active's, on distinct processes other than
        // the active's, as many as the processes allow; none for stateless tasks.
        for task in &all {
            let holders: Vec<&String> = out
                .members
                .iter()
                .filter(|(_, a)| a.standbys.contains(task))
                .map(|(id, _)| id)
                .collect();
            if !stateful.contains(&task.subtopology) {
                prop_assert!(holders.is_empty());
                continue;
            }
            let active = &placed_owner[task];
            let mut used = BTreeSet::from([process(active)]);
            for h in &holders {
                prop_assert!(*h != active);
                prop_assert!(by_id[h.as_str()].state_aware);
                prop_assert!(used.insert(process(h)), "{} standbys share a process", task);
            }
            let eligible: BTreeSet<String> = members
                .iter()
                .filter(|m| m.state_aware)
                .map(|m| process(&m.member_id))
                .filter(|p| *p != process(active))
                .collect();
            let warm = usize::from(placement.warmups.contains_key(task));
            prop_assert_eq!(holders.len(), warm.max(standbys.min(eligible.len())));
        }

        // Follow-ups: the leader probes when warm-ups were placed; the aware target owners
        // of withheld tasks follow up soon; nobody else.
        for (id, a) in &out.members {
            let probing =
                *id == leader && by_id[id.as_str()].state_aware && !placement.warmups.is_empty();
            let withheld = out
                .withheld
                .iter()
                .any(|w| placed_owner[w] == *id && by_id[id.as_str()].state_aware);
            let expected = match (withheld, probing) {
                (true, _) => Some(Duration::from_secs(3)),
                (false, true) => Some(Duration::from_secs(600)),
                (false, false) => None,
            };
            prop_assert_eq!(a.followup, expected, "{}", id);
        }

        // Deterministic whatever the input order.
        let mut reversed = members.clone();
        reversed.reverse();
        prop_assert_eq!(&plan(&reversed, &subs, counts, &config, &leader).unwrap(), &out);
    }
}
