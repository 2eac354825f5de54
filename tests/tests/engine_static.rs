//! Static membership (KIP-345) against the simulated cluster, which models Kafka's classic
//! coordinator for static members (see `kstreams_tests::sim::group`): an engine closed and
//! started again under the same `group.instance.id` within the session timeout gets its tasks
//! back with no rebalance; a second engine started under an id in use fences the first.

use kafka_protocol::messages::ApiKey;
use kstreams_core::client::group::GroupError;
use kstreams_core::engine::{EngineConfig, EngineError, EngineState, Event};
use kstreams_core::task::TaskId;
use kstreams_tests::harness::Harness;
use kstreams_tests::harness::tagged::*;
use kstreams_tests::sim::GroupState;

fn static_config(instance: &str) -> EngineConfig {
    let mut config = flow_config();
    config.group_instance_id = Some(instance.to_owned());
    config
}

/// How the members of [`restart_within_the_session_timeout`] join.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Membership {
    /// Static, JoinGroup v9: a restarted leader is told `skip_assignment`.
    Static,
    /// Static, JoinGroup capped at v5: a restarted leader is told the old leader's id.
    StaticBeforeSkipAssignment,
    /// Dynamic (the control: the restart rebalances).
    Dynamic,
}

fn member_config(membership: Membership, instance: &str) -> EngineConfig {
    match membership {
        Membership::Static => static_config(instance),
        Membership::StaticBeforeSkipAssignment => {
            let mut config = static_config(instance);
            config.api_version_caps.insert(ApiKey::JoinGroup, 5);
            config
        }
        Membership::Dynamic => flow_config(),
    }
}

/// Tasks assigned to or taken from the engine at `index` after `since`.
fn task_moves(h: &Harness, index: usize, since: i64) -> Vec<String> {
    h.engines[index]
        .events
        .iter()
        .filter(|(at, _)| *at >= since)
        .filter_map(|(_, e)| match e {
            Event::TasksAssigned(t) => Some(format!("assigned {t:?}")),
            Event::TasksRevoked(t) => Some(format!("revoked {t:?}")),
            Event::TasksLost(t) => Some(format!("lost {t:?}")),
            _ => None,
        })
        .collect()
}

#[test]
fn a_static_member_restarted_within_the_session_timeout_gets_its_tasks_back_without_a_rebalance() {
    restart_within_the_session_timeout(Membership::Static);
    restart_within_the_session_timeout(Membership::StaticBeforeSkipAssignment);
}

#[test]
fn a_dynamic_member_restarted_causes_a_rebalance() {
    restart_within_the_session_timeout(Membership::Dynamic);
}

/// Two members, the first (the group's leader) closed and restarted at once; for static
/// members: generation unchanged, the same tasks back, nothing moved on the other member.
fn restart_within_the_session_timeout(membership: Membership) {
    let dynamic = membership == Membership::Dynamic;
    let mut sim = cluster(3, 4);
    sim.config_mut().group.initial_rebalance_delay_ms = 3_000;
    let n = 80;
    produce_all(&mut sim, 4, 10);
    let mut h = Harness::new(sim, T0);
    let audit = install_audit(&mut h, 4, 4);
    let mut feeder = Feeder::new(4, 10, n, 5, 300).one_per_step();
    let a = h.add(engine(member_config(membership, "instance-a"), h.now));
    let b = h.add(engine(member_config(membership, "instance-b"), h.now));
    assert!(h.run_until(30_000, |h| {
        feeder.feed(h);
        committed_at_least(&h.sim, &[10; 4]) && h.engines.iter().all(|s| s.task_ids().len() == 2)
    }));
    assert!(
        h.sim.group_members(APP)[0].is_leader,
        "A joined first and leads"
    );
    let generation = h.sim.group_generation(APP).expect("group");
    let a_tasks: Vec<TaskId> = h.engines[a].task_ids();
    let b_tasks: Vec<TaskId> = h.engines[b].task_ids();
    let members: Vec<Option<String>> = h
        .sim
        .group_members(APP)
        .into_iter()
        .map(|m| m.group_instance_id)
        .collect();
    assert_eq!(members.len(), 2);
    assert_eq!(
        members.contains(&Some("instance-a".into())),
        !dynamic,
        "{members:?}"
    );

    // Close A: it commits, sends no LeaveGroup, and the group keeps it as a member.
    h.close_engine(a);
    let closed_at = h.now;
    assert!(h.run_until(10_000, |h| {
        feeder.feed(h);
        h.engines[a].engine.state() == EngineState::NotRunning
    }));
    if dynamic {
        // It left: B takes every task, then gives half back to the restarted A.
        let restart = h.add(engine(member_config(membership, "instance-a"), h.now));
        assert!(h.run_until(30_000, |h| {
            feeder.feed(h);
            h.engines[restart].task_ids().len() == 2 && h.engines[b].task_ids().len() == 2
        }));
        assert!(h.sim.group_generation(APP) > Some(generation));
        assert!(!task_moves(&h, b, closed_at).is_empty());
        return;
    }
    assert_eq!(h.sim.group_members(APP).len(), 2, "no LeaveGroup");
    assert_eq!(h.sim.group_state(APP), Some(GroupState::Stable));

    // Restart it under the same id, well within the session timeout.
    let restart = h.add(engine(member_config(membership, "instance-a"), h.now));
    assert!(
        h.now - closed_at < i64::from(SESSION_TIMEOUT_MS) / 2,
        "restarted {} ms after the close",
        h.now - closed_at
    );
    assert!(h.run_until(10_000, |h| {
        feeder.feed(h);
        h.engines[restart].task_ids().len() == 2
    }));
    assert_eq!(h.engines[restart].task_ids(), a_tasks, "the same tasks");
    let synced: Vec<i32> = h.engines[restart]
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::GroupSynced { generation, .. } => Some(*generation),
            _ => None,
        })
        .collect();
    assert_eq!(
        synced,
        [generation],
        "the engine synced the generation it left"
    );
    assert_eq!(
        h.sim.group_generation(APP),
        Some(generation),
        "no rebalance: the generation is unchanged"
    );
    let done = h.run_until(60_000, |h| {
        feeder.feed(h);
        feeder.finished() && all_committed(&h.sim, &[n; 4])
    });
    assert_run(&h, done);
    assert_eq!(h.sim.group_generation(APP), Some(generation));
    assert_eq!(h.engines[b].task_ids(), b_tasks);
    assert_eq!(
        task_moves(&h, b, closed_at),
        Vec::<String>::new(),
        "the other member saw no rebalance"
    );
    // The close committed what A processed: the restart reprocesses nothing.
    assert_exactly_once(&h.sim, &[n; 4]);
    audit.borrow().assert_complete(&[n; 4]);
}

#[test]
fn a_second_engine_under_the_same_instance_id_fences_the_first() {
    let mut sim = cluster(3, 2);
    produce_all(&mut sim, 2, 10);
    let mut h = Harness::new(sim, T0);
    let first = h.add(engine(static_config("instance-a"), h.now));
    assert!(h.run_until(30_000, |h| h.engines[first].task_ids().len() == 2));
    let generation = h.sim.group_generation(APP);
    let second = h.add(engine(static_config("instance-a"), h.now));
    assert!(h.run_until(30_000, |h| {
        h.engines[first].engine.state() == EngineState::Error
            && h.engines[second].task_ids().len() == 2
    }));
    match h.engines[first].failure() {
        Some(Event::Failed(EngineError::Group(GroupError::FencedInstance {
            instance_id, ..
        }))) => assert_eq!(instance_id, "instance-a"),
        other => panic!("{other:?}"),
    }
    assert_eq!(h.sim.group_generation(APP), generation);
}

/// A static member that stays away longer than the session timeout is removed, as Kafka's
/// coordinator does: its tasks move to the other member in a new generation.
#[test]
fn a_static_member_away_longer_than_the_session_timeout_loses_its_tasks() {
    let mut sim = cluster(3, 4);
    sim.config_mut().group.initial_rebalance_delay_ms = 3_000;
    produce_all(&mut sim, 4, 10);
    let mut h = Harness::new(sim, T0);
    let a = h.add(engine(static_config("instance-a"), h.now));
    let b = h.add(engine(static_config("instance-b"), h.now));
    assert!(h.run_until(30_000, |h| {
        h.engines.iter().all(|s| s.task_ids().len() == 2)
    }));
    let generation = h.sim.group_generation(APP).expect("group");
    h.close_engine(a);
    let closed_at = h.now;
    assert!(h.run_until(30_000, |h| h.engines[b].task_ids().len() == 4));
    assert!(
        h.now - closed_at >= i64::from(SESSION_TIMEOUT_MS),
        "moved after {} ms, before the session timeout",
        h.now - closed_at
    );
    assert!(h.sim.group_generation(APP) > Some(generation));
    assert_eq!(h.sim.group_members(APP).len(), 1);
}

/// A broker (here: a version cap) without JoinGroup v5 cannot keep a static member: the engine
/// stops before joining, with an error naming the id, never joining as a dynamic member.
#[test]
fn a_broker_without_join_group_v5_stops_a_static_engine_before_it_joins() {
    let mut sim = cluster(3, 2);
    produce_all(&mut sim, 2, 10);
    let mut h = Harness::new(sim, T0);
    let mut config = static_config("instance-a");
    config.api_version_caps.insert(ApiKey::JoinGroup, 4);
    let a = h.add(engine(config, h.now));
    assert!(h.run_until(30_000, |h| h.engines[a].engine.state()
        == EngineState::Error));
    match h.engines[a].failure() {
        Some(Event::Failed(EngineError::Group(GroupError::StaticMembershipUnsupported {
            instance_id,
            api: ApiKey::JoinGroup,
            version: Some(4),
            needed: 5,
        }))) => assert_eq!(instance_id, "instance-a"),
        other => panic!("{other:?}"),
    }
    assert!(h.sim.group_members(APP).is_empty(), "it never joined");
}

/// The liveness gap of decisions §18, closed by the leader's follow-up for the target owner
/// of a withheld task: a static holder crashes between the assignment that revokes tasks
/// (withheld from their new owner until it revoked them) and its rejoin, and restarts within
/// the session timeout. The coordinator gives the restarted instance its stored assignment
/// without a rebalance, so the holder never starts the follow-up rebalance; the new owner's
/// own follow-up does, one heartbeat interval after its assignment.
#[test]
fn a_static_holder_crashing_before_its_follow_up_does_not_leave_withheld_tasks_unassigned() {
    let mut sim = cluster(3, 4);
    produce_all(&mut sim, 4, 10);
    let mut h = Harness::new(sim, T0);
    let n = 200;
    let mut feeder = Feeder::new(4, 10, n, 2, 50).one_per_step();
    let a = h.add(engine(static_config("instance-a"), h.now));
    assert!(h.run_until(30_000, |h| {
        feeder.feed(h);
        committed_at_least(&h.sim, &[10; 4]) && h.engines[a].task_ids().len() == 4
    }));
    let generation = h.sim.group_generation(APP).expect("group");
    // A reaches only the coordinator from now on: its output cannot be flushed, so the
    // revoke of the tasks that move (which commits first) does not finish and A does not
    // rejoin for the follow-up rebalance.
    let coordinator = h.sim.coordinator_of(APP).expect("coordinator");
    for broker in (0..3).filter(|&b| b != coordinator) {
        h.cut(a, broker);
    }
    let b = h.add(engine(static_config("instance-b"), h.now));
    let synced = |h: &Harness, index: usize| {
        h.engines[index]
            .events
            .iter()
            .any(|(_, e)| matches!(e, Event::GroupSynced { generation: g, .. } if *g > generation))
    };
    assert!(h.run_until(10_000, |h| {
        feeder.feed(h);
        synced(h, a) && synced(h, b)
    }));
    let moved = h.sim.group_generation(APP).expect("group");
    assert_eq!(
        h.engines[a].task_ids().len(),
        4,
        "A still revoking the moved tasks"
    );
    assert!(
        h.engines[b].task_ids().is_empty(),
        "withheld until A revoked them"
    );
    // A crashes and restarts at once under the same id: no rebalance, its stored assignment.
    h.drop_engine(a);
    let restart = h.add(engine(static_config("instance-a"), h.now));
    let restarted_at = h.now;
    assert!(h.run_until(5_000, |h| {
        feeder.feed(h);
        h.engines[restart].task_ids().len() == 2
    }));
    assert_eq!(
        h.sim.group_generation(APP),
        Some(moved),
        "the restart did not rebalance"
    );
    // B's follow-up starts the rebalance that gives it the withheld tasks, well before the
    // session timeout (which would not end the gap: the restarted instance is alive).
    assert!(h.run_until(i64::from(SESSION_TIMEOUT_MS), |h| {
        feeder.feed(h);
        h.engines[b].task_ids().len() == 2
    }));
    assert!(
        h.now - restarted_at < 3 * HEARTBEAT_MS,
        "withheld tasks assigned {} ms after the restart",
        h.now - restarted_at
    );
    assert!(h.sim.group_generation(APP) > Some(moved));
    let done = h.run_until(60_000, |h| {
        feeder.feed(h);
        feeder.finished() && all_committed(&h.sim, &[n; 4])
    });
    assert_run(&h, done);
    let mut running: Vec<TaskId> = [restart, b]
        .iter()
        .flat_map(|&i| h.engines[i].task_ids())
        .collect();
    running.sort();
    assert_eq!(running.len(), 4, "{running:?}");
}
