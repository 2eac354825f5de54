//! The engine against the simulated cluster: whole flows, deterministic.
//!
//! Besides the count flow, every flow runs the "tag" topology
//! ([`kstreams_tests::harness::tagged`]): each input record becomes an output record whose value
//! is `"<input partition>:<input offset>"`, written to the output partition with the input's
//! partition number. So the output topic tells exactly which input records were processed, in
//! which order, and how often; an [`Audit`] checks it (and the committed offsets) after every
//! request the simulator serves.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::ApiKey;
use kstreams_core::client::group::CommitError;
use kstreams_core::engine::{Engine, EngineConfig, EngineError, EngineState, Event};
use kstreams_core::prelude::*;
use kstreams_core::record::TopicPartition;
use kstreams_core::state::MemoryStoreFactory;
use kstreams_core::task::TaskId;
use kstreams_core::time::Instant;
use kstreams_tests::harness::Harness;
use kstreams_tests::harness::tagged::*;
use kstreams_tests::sim::{GroupState, SimCluster, SimRecord};

const COUNTER_APP: &str = "counter";

fn count_topology() -> Arc<Topology> {
    let mut b = TopologyBuilder::new();
    let src = b
        .add_source("src", &[INPUT], StringSerde, StringSerde)
        .unwrap();
    let count = b
        .add_processor("count", &[&src], BatchCountAggregator::supplier("counts"))
        .unwrap();
    b.add_store(
        StoreBuilder::key_value("counts", StringSerde, I64Serde),
        &["count"],
    )
    .unwrap();
    b.add_sink("sink", OUTPUT, &[&count], StringSerde, I64Serde)
        .unwrap();
    Arc::new(b.build().unwrap())
}

/// [`flow_config`] with eager rebalancing (the flows written for it).
fn eager_config() -> EngineConfig {
    let mut config = flow_config();
    config.rebalance_protocol = kstreams_core::engine::RebalanceProtocol::Eager;
    config
}

fn count_engine(now: i64) -> Engine {
    let mut config = EngineConfig::new(COUNTER_APP, ["sim-0:9092"]);
    config.commit_interval = kstreams_core::time::Duration::from_millis(1_000);
    config.producer.linger = kstreams_core::time::Duration::from_millis(5);
    Engine::new(
        count_topology(),
        config,
        Box::new(MemoryStoreFactory),
        Instant::from_millis(now),
    )
    .unwrap()
}

fn produce_input(
    sim: &mut SimCluster,
    partitions: i32,
    per_partition: usize,
) -> BTreeMap<String, i64> {
    let mut expected = BTreeMap::new();
    for p in 0..partitions {
        let records: Vec<SimRecord> = (0..per_partition)
            .map(|i| {
                let key = format!("p{p}-k{}", (i * 7) % 5);
                *expected.entry(key.clone()).or_insert(0) += 1;
                SimRecord::new(
                    Bytes::from(key),
                    Bytes::from(format!("v{i}")),
                    1_000 + i as i64,
                )
            })
            .collect();
        sim.produce_direct(INPUT, p, records).unwrap();
    }
    expected
}

/// Final count per key from the output topic (the last count written for each key).
fn final_counts(sim: &SimCluster, partitions: i32) -> BTreeMap<String, i64> {
    let mut counts = BTreeMap::new();
    for p in 0..partitions {
        for r in sim.read_log(OUTPUT, p).unwrap() {
            let key = String::from_utf8(r.key.unwrap().to_vec()).unwrap();
            let value = i64::from_be_bytes(r.value.unwrap().as_ref().try_into().unwrap());
            let c = counts.entry(key).or_insert(0);
            assert!(
                value > *c,
                "counts of a key only grow in its partition's order"
            );
            *c = value;
        }
    }
    counts
}

#[test]
fn one_engine_joins_counts_produces_and_commits() {
    let mut sim = SimCluster::new(1, 3);
    sim.create_topic(INPUT, 4).unwrap();
    sim.create_topic(OUTPUT, 4).unwrap();
    let expected = produce_input(&mut sim, 4, 50);
    let mut h = Harness::new(sim, 1_000_000);
    h.add(count_engine(h.now));
    let done = h.run_until(120_000, |h| {
        (0..4).all(|p| {
            h.sim
                .committed_offset(COUNTER_APP, &TopicPartition::new(INPUT, p))
                == Some(50)
        })
    });
    let slot = &h.engines[0];
    assert!(
        done,
        "not all offsets committed; failure: {:?}; state {:?}",
        slot.failure(),
        slot.engine.state()
    );
    assert_eq!(slot.engine.state(), EngineState::Running);
    assert_eq!(final_counts(&h.sim, 4), expected);
    let total: usize = (0..4)
        .map(|p| h.sim.read_log(OUTPUT, p).unwrap().len())
        .sum();
    assert_eq!(
        total, 200,
        "one output record per input record, no duplicates without failures"
    );
    assert!(
        slot.events
            .iter()
            .any(|(_, e)| matches!(e, Event::TasksAssigned(t) if t.len() == 4))
    );
}

/// Two engines starting together (the coordinator's initial rebalance delay lets both join the
/// first generation) split four tasks 2/2 and produce every output exactly once.
#[test]
fn two_engines_split_four_partitions() {
    let mut sim = cluster(3, 4);
    sim.config_mut().group.initial_rebalance_delay_ms = 3_000;
    let n = 40;
    produce_all(&mut sim, 4, n);
    let mut h = Harness::new(sim, T0);
    let audit = install_audit(&mut h, 4, 4);
    let a = h.add(engine(flow_config(), h.now));
    let b = h.add(engine(flow_config(), h.now));
    let done = h.run_until(60_000, |h| all_committed(&h.sim, &[n; 4]));
    assert_run(&h, done);
    let (ta, tb) = (h.engines[a].task_ids(), h.engines[b].task_ids());
    assert_eq!((ta.len(), tb.len()), (2, 2), "tasks {ta:?} / {tb:?}");
    assert!(ta.iter().all(|t| !tb.contains(t)), "disjoint");
    for slot in &h.engines {
        let assigned: Vec<usize> = slot
            .events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::TasksAssigned(t) => Some(t.len()),
                _ => None,
            })
            .collect();
        assert_eq!(
            assigned,
            vec![2],
            "one assignment of two tasks, no rebalance"
        );
    }
    assert_exactly_once(&h.sim, &[n; 4]);
    audit.borrow().assert_complete(&[n; 4]);
}

/// A second engine joining later, eager rebalancing: the first revokes every task, commits what
/// it processed before it rejoins, and the two continue 2/2 from the committed offsets: no
/// record lost, none processed twice. (Cooperative: `engine_cooperative.rs`.)
#[test]
fn late_joiner_triggers_rebalance_with_commit_first() {
    let mut sim = cluster(3, 4);
    let n = 60;
    produce_all(&mut sim, 4, 10);
    let mut h = Harness::new(sim, T0);
    let audit = install_audit(&mut h, 4, 4);
    let mut feeder = Feeder::new(4, 10, n, 5, 200).one_per_step();
    let a = h.add(engine(eager_config(), h.now));
    assert!(h.run_until(30_000, |h| {
        feeder.feed(h);
        committed_at_least(&h.sim, &[10; 4])
    }));
    let b = h.add(engine(eager_config(), h.now));
    let done = h.run_until(60_000, |h| {
        feeder.feed(h);
        feeder.finished()
            && all_committed(&h.sim, &[n; 4])
            && h.engines.iter().all(|s| s.task_ids().len() == 2)
    });
    assert_run(&h, done);
    let events = &h.engines[a].events;
    let revoked = events
        .iter()
        .position(|(_, e)| matches!(e, Event::TasksRevoked(t) if t.len() == 4))
        .expect("the first engine revoked its four tasks");
    // The revoke commit: committed offsets right before the revoke, after which the other
    // engine starts exactly there (exactly-once output below proves it).
    assert!(
        events[..revoked]
            .iter()
            .rev()
            .find_map(|(_, e)| match e {
                Event::Committed(o) => Some(o),
                _ => None,
            })
            .is_some(),
        "a commit before the revoke"
    );
    let (ta, tb) = (h.engines[a].task_ids(), h.engines[b].task_ids());
    assert!(
        ta.iter().all(|t| !tb.contains(t)),
        "disjoint: {ta:?} / {tb:?}"
    );
    assert_exactly_once(&h.sim, &[n; 4]);
    audit.borrow().assert_complete(&[n; 4]);
}

/// A clean close: the closing engine commits, sends LeaveGroup, and the other one takes its
/// tasks at once (well within the session timeout) and continues from the committed offsets.
#[test]
fn clean_close_hands_over_without_session_timeout() {
    let mut sim = cluster(3, 4);
    sim.config_mut().group.initial_rebalance_delay_ms = 3_000;
    let n = 80;
    produce_all(&mut sim, 4, 10);
    let mut h = Harness::new(sim, T0);
    let audit = install_audit(&mut h, 4, 4);
    let mut feeder = Feeder::new(4, 10, n, 5, 300).one_per_step();
    let a = h.add(engine(flow_config(), h.now));
    let b = h.add(engine(flow_config(), h.now));
    assert!(h.run_until(30_000, |h| {
        feeder.feed(h);
        committed_at_least(&h.sim, &[10; 4]) && h.engines.iter().all(|s| s.task_ids().len() == 2)
    }));
    h.close_engine(a);
    let closed_at = h.now;
    assert!(h.run_until(30_000, |h| {
        feeder.feed(h);
        h.engines[a].engine.state() == EngineState::NotRunning && h.engines[b].task_ids().len() == 4
    }));
    let handover = h.now - closed_at;
    assert!(
        handover < i64::from(SESSION_TIMEOUT_MS),
        "took {handover} ms: waited for the session timeout"
    );
    assert_eq!(h.sim.group_members(APP).len(), 1, "the closed engine left");
    assert!(
        h.engines[a].engine.tasks().next().is_none(),
        "closed engine has no tasks"
    );
    let closing_commit = h.engines[a]
        .events
        .iter()
        .rev()
        .find_map(|(_, e)| match e {
            Event::Committed(o) => Some(o.clone()),
            _ => None,
        })
        .expect("the closing engine committed");
    for (tp, offset) in &closing_commit {
        assert!(
            h.sim
                .committed_offset(APP, tp)
                .is_some_and(|c| c >= *offset),
            "{tp}: the close commit stands"
        );
    }
    let done = h.run_until(60_000, |h| {
        feeder.feed(h);
        feeder.finished() && all_committed(&h.sim, &[n; 4])
    });
    assert_run(&h, done);
    assert_exactly_once(&h.sim, &[n; 4]);
    audit.borrow().assert_complete(&[n; 4]);
}

/// An engine that vanishes (no close, sockets gone): the other one gets its tasks only after
/// the session timeout, reprocesses from the last committed offsets, and loses nothing;
/// duplicates are limited to the vanished engine's partitions beyond its last commit.
#[test]
fn vanished_engine_is_replaced_after_session_timeout() {
    let mut sim = cluster(3, 4);
    sim.config_mut().group.initial_rebalance_delay_ms = 3_000;
    let n = 80;
    produce_all(&mut sim, 4, 10);
    let mut h = Harness::new(sim, T0);
    let audit = install_audit(&mut h, 4, 4);
    let mut feeder = Feeder::new(4, 10, n, 5, 300).one_per_step();
    let a = h.add(engine(flow_config(), h.now));
    let b = h.add(engine(flow_config(), h.now));
    assert!(h.run_until(30_000, |h| {
        feeder.feed(h);
        committed_at_least(&h.sim, &[10; 4]) && h.engines.iter().all(|s| s.task_ids().len() == 2)
    }));
    // Let it process (and get acknowledged) input it has not committed yet, then vanish.
    let a_tasks = h.engines[a].task_ids();
    let a_partitions: Vec<i32> = a_tasks.iter().map(|t| t.partition).collect();
    feeder.feed_now(&mut h);
    assert!(h.run_until(1_000, |h| {
        let out = outputs(&h.sim, 4);
        a_partitions
            .iter()
            .all(|&p| out[p as usize].len() as i64 == h.sim.high_watermark(INPUT, p).unwrap())
    }));
    let committed_at_drop: Vec<i64> = (0..4).map(|p| committed(&h.sim, p).unwrap_or(0)).collect();
    for &p in &a_partitions {
        assert!(
            committed_at_drop[p as usize] < h.sim.high_watermark(INPUT, p).unwrap(),
            "input {p} has acknowledged but uncommitted output when the engine vanishes"
        );
    }
    h.drop_engine(a);
    let dropped_at = h.now;
    assert!(h.run_until(30_000, |h| {
        feeder.feed(h);
        h.engines[b].task_ids().len() == 4
    }));
    let takeover = h.now - dropped_at;
    assert!(
        takeover >= i64::from(SESSION_TIMEOUT_MS) - HEARTBEAT_MS,
        "took over after {takeover} ms, before the session timeout"
    );
    let done = h.run_until(60_000, |h| {
        feeder.feed(h);
        feeder.finished() && all_committed(&h.sim, &[n; 4])
    });
    assert_run(&h, done);
    let dup_from: Vec<i64> = (0..4)
        .map(|p| {
            if a_tasks.iter().any(|t| t.partition == p) {
                committed_at_drop[p as usize]
            } else {
                i64::MAX
            }
        })
        .collect();
    assert_at_least_once(&h.sim, &[n; 4], &dup_from);
    audit.borrow().assert_complete(&[n; 4]);
    assert!(
        audit.borrow().duplicates > 0,
        "the uncommitted input of the vanished engine was processed again"
    );
}

/// Run, close, start a new engine with the same application id: it resumes from the committed
/// offsets, so no committed input is processed again.
#[test]
fn restart_resumes_from_committed_offsets() {
    let mut sim = cluster(3, 4);
    produce_all(&mut sim, 4, 30);
    let mut h = Harness::new(sim, T0);
    let audit = install_audit(&mut h, 4, 4);
    let a = h.add(engine(flow_config(), h.now));
    assert!(h.run_until(30_000, |h| all_committed(&h.sim, &[30; 4])));
    h.close_engine(a);
    assert!(h.run_until(30_000, |h| h.engines[a].engine.state()
        == EngineState::NotRunning));
    assert!(h.sim.group_members(APP).is_empty());
    assert_eq!(h.sim.group_state(APP), Some(GroupState::Empty));
    for p in 0..4 {
        h.sim
            .produce_direct(INPUT, p, input_records(p, 30, 20))
            .unwrap();
    }
    let a2 = h.add(engine(flow_config(), h.now));
    let done = h.run_until(30_000, |h| all_committed(&h.sim, &[50; 4]));
    assert_run(&h, done);
    assert!(h.engines[a2].task_ids().len() == 4);
    assert_exactly_once(&h.sim, &[50; 4]);
    audit.borrow().assert_complete(&[50; 4]);
}

/// Seed 37760 of `engine_seeds`, made explicit. Engine A cannot reach the leader of its output
/// partition, so output it processed stays unacknowledged. A third engine joins: A must flush
/// before its revoke commit, cannot, and overstays the rebalance timeout, so the coordinator
/// removes it from the group (as Kafka's does) and hands its task to another member, which
/// reprocesses from A's last commit and commits past it. Then A's output goes through (a
/// duplicate appended after that commit), A's revoke commit is rejected with
/// UNKNOWN_MEMBER_ID, and A's tasks are lost.
///
/// The late output is an at-least-once duplicate of input processed before the commit, not
/// committed input processed again: the audit must tell them apart (it used to date a replay
/// by its append and failed this run).
#[test]
fn removed_member_late_output_is_a_duplicate_not_a_replay_of_committed_input() {
    let mut sim = cluster(3, 2);
    sim.config_mut().group.initial_rebalance_delay_ms = 3_000;
    // The output leader of input 0 is neither the coordinator nor the input's leader, so
    // cutting it off leaves A's heartbeats (its view of the rebalance) and fetches intact.
    let coordinator = sim.coordinator_of(APP).expect("a coordinator");
    let in0 = sim.leader_of(&TopicPartition::new(INPUT, 0));
    let leader = (0..3)
        .find(|&b| b != coordinator && Some(b) != in0)
        .expect("a third broker");
    sim.move_leader(&TopicPartition::new(OUTPUT, 0), leader)
        .unwrap();
    produce_all(&mut sim, 2, 10);
    let mut h = Harness::new(sim, T0);
    let audit = install_audit(&mut h, 2, 2);
    // As in the seed, the session outlasts the rebalance timeout (10 s): the coordinator
    // removes A for not rejoining in time, not for missing heartbeats.
    // Eager: A must commit before it rejoins (cooperative, it would rejoin at once).
    let mut config = eager_config();
    config.session_timeout = kstreams_core::time::Duration::from_secs(15);
    let first = h.add(engine(config.clone(), h.now));
    let second = h.add(engine(config.clone(), h.now));
    assert!(h.run_until(30_000, |h| {
        all_committed(&h.sim, &[10, 10]) && h.engines.iter().all(|s| s.task_ids().len() == 1)
    }));
    let task0 = TaskId {
        subtopology: 0,
        partition: 0,
    };
    let a = if h.engines[first].task_ids() == [task0] {
        first
    } else {
        second
    };
    h.cut(a, leader);
    h.sim
        .produce_direct(INPUT, 0, input_records(0, 10, 2))
        .unwrap();
    // A processes 0:10 and 0:11; their output cannot leave.
    h.run_until(1_000, |_| false);
    assert_eq!(outputs(&h.sim, 2)[0].len(), 10, "A's output is held back");
    h.add(engine(config, h.now));
    let rebalance_at = h.now;
    // A overstays the rebalance timeout; the new owner of input 0 reprocesses and commits.
    let handed_over = h.run_until(30_000, |h| committed(&h.sim, 0) == Some(12));
    assert!(
        handed_over,
        "input 0 committed by its new owner:\n{}",
        describe(&h, 2)
    );
    assert!(
        h.now - rebalance_at >= 10_000,
        "the coordinator waited the rebalance timeout for A:\n{}",
        describe(&h, 2)
    );
    assert!(
        !h.engines[a]
            .events
            .iter()
            .any(|(_, e)| matches!(e, Event::TasksLost(_))),
        "A does not know yet"
    );
    h.heal(a, leader);
    let done = h.run_until(30_000, |h| {
        h.engines[a]
            .events
            .iter()
            .any(|(_, e)| matches!(e, Event::TasksLost(_)))
            && h.engines
                .iter()
                .all(|s| s.engine.state() == EngineState::Running)
            && all_committed(&h.sim, &[12, 10])
    });
    assert_run(&h, done);
    let events = &h.engines[a].events;
    assert!(
        events.iter().any(|(_, e)| matches!(
            e,
            Event::Warning(EngineError::Commit(CommitError::Rejected(
                ResponseError::UnknownMemberId
            )))
        )),
        "A's revoke commit was rejected: {events:?}"
    );
    assert!(
        events
            .iter()
            .any(|(_, e)| matches!(e, Event::TasksLost(t) if t.contains(&task0))),
        "A lost its task"
    );
    let audit = audit.borrow();
    assert_eq!(
        audit.late_duplicates,
        ["0:10 (committed 12)", "0:11 (committed 12)"],
        "A's output landed after the new owner's commit"
    );
    audit.assert_complete(&[12, 10]);
    assert_at_least_once(&h.sim, &[12, 10], &[10, i64::MAX]);
}

/// Seed 102678 of `engine_seeds`, made explicit: an engine closing while it cannot reach the
/// cluster loses its membership (no heartbeat within the session timeout). Its close must end
/// there: it used to go back to Rebalancing, rejoin the group it was leaving once the network
/// healed, take every task (stalling the others' rebalance) and only then finish the close.
#[test]
fn membership_lost_while_closing_ends_the_close_without_rejoining() {
    let mut sim = cluster(2, 2);
    // The coordinator also leads the output; the input is on the other broker.
    let coordinator = sim.coordinator_of(APP).expect("a coordinator");
    for p in 0..2 {
        sim.move_leader(&TopicPartition::new(INPUT, p), 1 - coordinator)
            .unwrap();
        sim.move_leader(&TopicPartition::new(OUTPUT, p), coordinator)
            .unwrap();
    }
    produce_all(&mut sim, 2, 10);
    let mut h = Harness::new(sim, T0);
    let audit = install_audit(&mut h, 2, 2);
    let a = h.add(engine(flow_config(), h.now));
    assert!(h.run_until(30_000, |h| all_committed(&h.sim, &[10, 10])));
    // Output that cannot leave keeps the close in its flush, and no heartbeat gets through.
    h.cut(a, coordinator);
    for p in 0..2 {
        h.sim
            .produce_direct(INPUT, p, input_records(p, 10, 5))
            .unwrap();
    }
    h.run_until(1_000, |_| false);
    h.close_engine(a);
    let closed_at = h.now;
    // Beyond the session timeout: the member notices it lost the group.
    h.run_until(i64::from(SESSION_TIMEOUT_MS) + 2_000, |_| false);
    assert!(
        h.engines[a]
            .events
            .iter()
            .any(|(_, e)| matches!(e, Event::TasksLost(_))),
        "the membership was lost during the close"
    );
    h.heal(a, coordinator);
    assert!(h.run_until(30_000, |h| h.engines[a].engine.state()
        == EngineState::NotRunning));
    let after_close: Vec<&Event> = h.engines[a]
        .events
        .iter()
        .filter(|(at, _)| *at >= closed_at)
        .map(|(_, e)| e)
        .collect();
    for event in &after_close {
        assert!(
            !matches!(event, Event::TasksAssigned(_)),
            "a closing engine took tasks: {after_close:?}"
        );
        if let Event::StateChanged { from, to } = event {
            assert!(
                *from != EngineState::PendingShutdown || *to == EngineState::NotRunning,
                "{from:?} -> {to:?} while closing: {after_close:?}"
            );
        }
    }
    assert!(h.sim.group_members(APP).len() <= 1);
    assert!(audit.borrow().replays_of_committed.is_empty());
}

/// What a fault scenario does to the cluster, at a given step of the run.
type Fault = fn(&mut Harness);

/// Runs one engine (two with `two`) over fed input while `faults` strike at their times, then
/// checks that every record was processed at least once, in order, with every offset
/// committed. Returns the harness for extra checks.
fn fault_flow(two: bool, faults: Vec<(i64, Fault)>) -> Harness {
    let mut sim = cluster(3, 4);
    sim.config_mut().group.initial_rebalance_delay_ms = if two { 3_000 } else { 0 };
    let n = 60;
    produce_all(&mut sim, 4, 10);
    let mut h = Harness::new(sim, T0);
    let audit = install_audit(&mut h, 4, 4);
    let mut feeder = Feeder::new(4, 10, n, 5, 300).one_per_step();
    h.add(engine(flow_config(), h.now));
    if two {
        h.add(engine(flow_config(), h.now));
    }
    let mut faults: Vec<(i64, Fault)> = faults.into_iter().map(|(t, f)| (T0 + t, f)).collect();
    faults.reverse();
    let done = h.run_until(120_000, |h| {
        feeder.feed(h);
        while faults.last().is_some_and(|(t, _)| h.now >= *t) {
            if let Some((_, fault)) = faults.pop() {
                fault(h);
            }
        }
        faults.is_empty() && feeder.finished() && all_committed(&h.sim, &[n; 4])
    });
    assert_run(&h, done);
    assert_at_least_once(&h.sim, &[n; 4], &[0; 4]);
    audit.borrow().assert_complete(&[n; 4]);
    h
}

#[test]
fn broker_down_and_back() {
    let h = fault_flow(
        true,
        vec![
            (2_000, |h| {
                // Broker 0: the first bootstrap server and the leader of input partition 0.
                assert_eq!(h.sim.leader_of(&TopicPartition::new(INPUT, 0)), Some(0));
                h.sim.broker_down(0).unwrap();
            }),
            (7_000, |h| {
                for b in 0..3 {
                    h.sim.broker_up(b).unwrap();
                }
            }),
        ],
    );
    assert_ne!(
        h.sim.leader_of(&TopicPartition::new(INPUT, 0)),
        Some(0),
        "the input leader moved away from the broker that went down"
    );
    assert_exactly_once(&h.sim, &[60; 4]);
}

#[test]
fn coordinator_broker_down_and_back() {
    let h = fault_flow(
        true,
        vec![
            (2_500, |h| {
                let c = h.sim.coordinator_of(APP).unwrap();
                h.sim.broker_down(c).unwrap();
            }),
            (4_000, |h| {
                for b in 0..3 {
                    h.sim.broker_up(b).unwrap();
                }
            }),
        ],
    );
    assert_exactly_once(&h.sim, &[60; 4]);
}

#[test]
fn coordinator_moved() {
    let h = fault_flow(
        true,
        vec![(2_500, |h| {
            let c = h.sim.coordinator_of(APP).unwrap();
            h.sim.move_coordinator(APP, (c + 1) % 3).unwrap();
        })],
    );
    assert_exactly_once(&h.sim, &[60; 4]);
}

#[test]
fn leaders_moved() {
    let h = fault_flow(
        false,
        vec![(2_500, |h| {
            for topic in [INPUT, OUTPUT] {
                for p in 0..4 {
                    let tp = TopicPartition::new(topic, p);
                    let leader = h.sim.leader_of(&tp).unwrap();
                    h.sim.move_leader(&tp, (leader + 1) % 3).unwrap();
                }
            }
        })],
    );
    assert_exactly_once(&h.sim, &[60; 4]);
}

#[test]
fn not_leader_on_produce_and_fetch() {
    let h = fault_flow(
        false,
        vec![(2_000, |h| {
            let code = ResponseError::NotLeaderOrFollower.code();
            h.sim.inject_error(ApiKey::Produce, code, 3);
            h.sim.inject_error(ApiKey::Fetch, code, 3);
        })],
    );
    assert_eq!(h.sim.pending_faults(ApiKey::Produce), 0);
    assert_eq!(h.sim.pending_faults(ApiKey::Fetch), 0);
    assert_exactly_once(&h.sim, &[60; 4]);
}

#[test]
fn rebalance_in_progress_on_heartbeat() {
    let h = fault_flow(
        true,
        vec![(2_500, |h| {
            let code = ResponseError::RebalanceInProgress.code();
            h.sim.inject_error(ApiKey::Heartbeat, code, 1);
        })],
    );
    assert_eq!(h.sim.pending_faults(ApiKey::Heartbeat), 0);
    assert!(
        h.sim.group_generation(APP).is_some_and(|g| g >= 2),
        "a rebalance happened"
    );
    // Cooperative (the default): the same members rejoined keeping their tasks, and no task
    // moved, so none was revoked.
    assert!(
        !h.engines
            .iter()
            .flat_map(|s| &s.events)
            .any(|(_, e)| matches!(e, Event::TasksRevoked(_))),
        "no task revoked"
    );
    assert_exactly_once(&h.sim, &[60; 4]);
}

#[test]
fn coordinator_not_available_on_find_coordinator_and_commit() {
    let mut sim_faults: Vec<(i64, Fault)> = vec![(0, |h| {
        let code = ResponseError::CoordinatorNotAvailable.code();
        h.sim.inject_error(ApiKey::FindCoordinator, code, 2);
    })];
    sim_faults.push((2_500, |h| {
        let code = ResponseError::CoordinatorNotAvailable.code();
        h.sim.inject_error(ApiKey::OffsetCommit, code, 2);
        h.sim.inject_error(ApiKey::FindCoordinator, code, 1);
    }));
    let h = fault_flow(true, sim_faults);
    assert_eq!(h.sim.pending_faults(ApiKey::OffsetCommit), 0);
    assert_eq!(h.sim.pending_faults(ApiKey::FindCoordinator), 0);
    assert_exactly_once(&h.sim, &[60; 4]);
}

#[test]
fn disconnect_on_produce() {
    let h = fault_flow(
        false,
        vec![(2_000, |h| h.sim.inject_disconnect(ApiKey::Produce, 2))],
    );
    assert_eq!(h.sim.pending_faults(ApiKey::Produce), 0);
    assert_exactly_once(&h.sim, &[60; 4]);
}

/// A source topic that does not exist stops the engine with an error naming it.
#[test]
fn missing_source_topic_fails_naming_it() {
    let mut sim = SimCluster::new(7, 3);
    sim.create_topic(OUTPUT, 4).unwrap();
    let mut h = Harness::new(sim, T0);
    let a = h.add(engine(flow_config(), h.now));
    let stopped = h.run_until(30_000, |h| {
        h.engines[a].engine.state() == EngineState::Error
    });
    assert!(stopped, "engine did not stop: {:?}", h.engines[a].events);
    match h.engines[a].failure() {
        Some(Event::Failed(EngineError::MissingSourceTopic(topic))) => assert_eq!(topic, INPUT),
        other => panic!("expected MissingSourceTopic, got {other:?}"),
    }
    assert!(h.engines[a].engine.poll_timeout().is_none());
}

/// A sink topic that does not exist leaves the assignment waiting for `max_block_ms`, then
/// stops the engine with an error naming it; nothing was produced or committed.
#[test]
fn missing_sink_topic_fails_after_max_block_ms_naming_it() {
    let mut sim = SimCluster::new(7, 3);
    sim.create_topic(INPUT, 4).unwrap();
    let mut h = Harness::new(sim, T0);
    let mut config = flow_config();
    config.max_block = kstreams_core::time::Duration::from_millis(20_000);
    let a = h.add(engine(config, h.now));
    let stopped = h.run_until(120_000, |h| {
        h.engines[a].engine.state() == EngineState::Error
    });
    assert!(stopped, "engine did not stop: {:?}", h.engines[a].events);
    let failed_at = h.now;
    match h.engines[a].failure() {
        Some(Event::Failed(EngineError::MissingSinkTopics { topics, waited })) => {
            assert_eq!(topics, &[OUTPUT.to_owned()]);
            assert!(waited.as_millis() >= 20_000, "waited {waited}");
        }
        other => panic!("expected MissingSinkTopics, got {other:?}"),
    }
    assert!(
        failed_at - T0 >= 20_000 && failed_at - T0 < 60_000,
        "failed {} ms after start",
        failed_at - T0
    );
    assert!(h.engines[a].engine.poll_timeout().is_none());
}

/// A member whose metadata does not know the sink topic yet when it gets its assignment must
/// wait for it instead of running tasks whose partitioner cannot work (which failed the engine
/// with "partition count unknown").
#[test]
fn assignment_waits_for_sink_partition_counts() {
    let mut sim = cluster(3, 4);
    produce_all(&mut sim, 4, 10);
    let mut h = Harness::new(sim, T0);
    let audit = install_audit(&mut h, 4, 4);
    let mut feeder = Feeder::new(4, 10, 40, 5, 300).one_per_step();
    h.add(engine(flow_config(), h.now));
    assert!(h.run_until(30_000, |h| committed_at_least(&h.sim, &[10; 4])));
    // The joiner's metadata requests fail for a while (topic-level LEADER_NOT_AVAILABLE).
    let code = ResponseError::LeaderNotAvailable.code();
    h.sim.inject_error(ApiKey::Metadata, code, 12);
    let b = h.add(engine(flow_config(), h.now));
    let done = h.run_until(60_000, |h| {
        feeder.feed(h);
        feeder.finished()
            && all_committed(&h.sim, &[40; 4])
            && h.engines.iter().all(|s| s.task_ids().len() == 2)
    });
    assert_run(&h, done);
    assert_eq!(h.sim.pending_faults(ApiKey::Metadata), 0);
    assert!(h.engines[b].failure().is_none());
    assert_exactly_once(&h.sim, &[40; 4]);
    audit.borrow().assert_complete(&[40; 4]);
}

/// A rebalance that reaches a closing engine (its close commit had to be retried, and the
/// heartbeat sent first answered REBALANCE_IN_PROGRESS): the close must not turn into a revoke
/// and a rejoin; the engine commits, leaves and stops, and the other one takes everything.
#[test]
fn close_survives_a_rebalance_during_its_commit() {
    let mut sim = cluster(3, 4);
    produce_all(&mut sim, 4, 10);
    let mut h = Harness::new(sim, T0);
    let audit = install_audit(&mut h, 4, 4);
    let mut feeder = Feeder::new(4, 10, 60, 2, 20).one_per_step();
    let a = h.add(engine(flow_config(), h.now));
    assert!(h.run_until(30_000, |h| {
        feeder.feed(h);
        committed_at_least(&h.sim, &[10; 4])
    }));
    // Uncommitted progress, so the close has offsets to commit.
    feeder.feed_now(&mut h);
    h.pump();
    // The other engine's JoinGroup puts the group into PreparingRebalance.
    let b = h.add(engine(flow_config(), h.now));
    h.pump();
    assert_eq!(h.sim.group_state(APP), Some(GroupState::PreparingRebalance));
    // The close commit meets a moving coordinator and is retried after rediscovery.
    let code = ResponseError::CoordinatorNotAvailable.code();
    h.sim.inject_error(ApiKey::OffsetCommit, code, 1);
    h.close_engine(a);
    let stopped = h.run_until(30_000, |h| {
        feeder.feed(h);
        h.engines[a].engine.state() == EngineState::NotRunning
    });
    assert!(
        stopped,
        "the closing engine did not stop:\n{}",
        describe(&h, 4)
    );
    assert_eq!(h.sim.pending_faults(ApiKey::OffsetCommit), 0);
    assert!(h.engines[a].engine.tasks().next().is_none());
    let done = h.run_until(60_000, |h| {
        feeder.feed(h);
        feeder.finished() && all_committed(&h.sim, &[60; 4]) && h.engines[b].task_ids().len() == 4
    });
    assert_run(&h, done);
    assert_eq!(h.sim.group_members(APP).len(), 1);
    assert_at_least_once(&h.sim, &[60; 4], &[0; 4]);
    audit.borrow().assert_complete(&[60; 4]);
}

/// A JoinGroup legitimately waits at the coordinator until every member rejoined or is
/// removed (here: the vanished member's session runs out, longer than the request timeout).
/// Like Kafka's clients, the engine gives it the rebalance timeout (plus margin) before it
/// calls it timed out; it used to tear the coordinator connection down after
/// `request_timeout_ms` and rejoin.
#[test]
fn join_group_waits_longer_than_the_request_timeout() {
    let mut sim = cluster(3, 4);
    sim.config_mut().group.initial_rebalance_delay_ms = 3_000;
    produce_all(&mut sim, 4, 10);
    let mut h = Harness::new(sim, T0);
    let audit = install_audit(&mut h, 4, 4);
    let mut feeder = Feeder::new(4, 10, 40, 5, 300).one_per_step();
    let mut config = flow_config();
    config.request_timeout = kstreams_core::time::Duration::from_millis(3_000);
    let a = h.add(engine(config.clone(), h.now));
    let b = h.add(engine(config.clone(), h.now));
    assert!(h.run_until(30_000, |h| {
        feeder.feed(h);
        committed_at_least(&h.sim, &[10; 4]) && h.engines.iter().all(|s| s.task_ids().len() == 2)
    }));
    // B vanishes and C joins at once: the rebalance waits for B until its session expires.
    h.drop_engine(b);
    let c = h.add(engine(config, h.now));
    let done = h.run_until(60_000, |h| {
        feeder.feed(h);
        feeder.finished()
            && all_committed(&h.sim, &[40; 4])
            && h.engines[a].task_ids().len() == 2
            && h.engines[c].task_ids().len() == 2
    });
    assert_run(&h, done);
    for i in [a, c] {
        let timeouts: Vec<_> = h.engines[i]
            .events
            .iter()
            .filter(|(_, e)| matches!(e, Event::Warning(EngineError::RequestTimeout { .. })))
            .collect();
        assert!(timeouts.is_empty(), "engine {i}: {timeouts:?}");
    }
    assert_at_least_once(&h.sim, &[40; 4], &[0; 4]);
    audit.borrow().assert_complete(&[40; 4]);
}

/// `(api key, version)` of every request frame in `bytes` (whole frames, length-prefixed).
fn request_versions(mut bytes: &[u8]) -> Vec<(i16, i16)> {
    let mut out = Vec::new();
    while bytes.len() >= 8 {
        let len = i32::from_be_bytes(bytes[0..4].try_into().unwrap()) as usize;
        let api = i16::from_be_bytes(bytes[4..6].try_into().unwrap());
        let version = i16::from_be_bytes(bytes[6..8].try_into().unwrap());
        out.push((api, version));
        bytes = &bytes[(4 + len).min(bytes.len())..];
    }
    out
}

/// Runs the count topology with `config` over `sim` (input: 5 records in each of 2
/// partitions) until everything is committed; returns `(api key, version)` of every request
/// the engine sent.
fn count_recording_requests(mut sim: SimCluster, config: EngineConfig) -> Vec<(i16, i16)> {
    use kstreams_tests::harness::WireEvent;

    sim.create_topic(INPUT, 2).unwrap();
    sim.create_topic(OUTPUT, 2).unwrap();
    produce_input(&mut sim, 2, 5);
    let mut h = Harness::new(sim, 1_000_000);
    let engine = Engine::new(
        count_topology(),
        config,
        Box::new(MemoryStoreFactory),
        Instant::from_millis(h.now),
    )
    .unwrap();
    let index = h.add(engine);
    h.record_wire(index);
    let done = h.run_until(60_000, |h| {
        (0..2).all(|p| {
            h.sim
                .committed_offset(COUNTER_APP, &TopicPartition::new(INPUT, p))
                == Some(5)
        })
    });
    assert!(done, "failure: {:?}", h.engines[0].failure());
    h.engines[0]
        .wire
        .as_ref()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            WireEvent::Sent { bytes, .. } => Some(request_versions(bytes)),
            _ => None,
        })
        .flatten()
        .collect()
}

#[test]
fn api_version_caps_from_the_config_bound_the_versions_sent() {
    use kafka_protocol::messages::ApiKey;

    let mut config = EngineConfig::new(COUNTER_APP, ["sim-0:9092"]);
    config.commit_interval = kstreams_core::time::Duration::from_millis(1_000);
    config.api_version_caps.insert(ApiKey::JoinGroup, 5);
    config.api_version_caps.insert(ApiKey::SyncGroup, 3);
    // Above the built-in cap of 12: the built-in cap still holds.
    config.api_version_caps.insert(ApiKey::Fetch, 13);
    let sent = count_recording_requests(SimCluster::new(3, 1), config);
    let versions_of = |api: ApiKey| -> Vec<i16> {
        sent.iter()
            .filter(|(a, _)| *a == api as i16)
            .map(|&(_, v)| v)
            .collect()
    };
    assert!(!versions_of(ApiKey::JoinGroup).is_empty());
    assert!(
        versions_of(ApiKey::JoinGroup).iter().all(|&v| v == 5),
        "{:?}",
        versions_of(ApiKey::JoinGroup)
    );
    assert!(
        versions_of(ApiKey::SyncGroup).iter().all(|&v| v == 3),
        "{:?}",
        versions_of(ApiKey::SyncGroup)
    );
    assert!(
        versions_of(ApiKey::Fetch).iter().all(|&v| v == 12),
        "{:?}",
        versions_of(ApiKey::Fetch)
    );
}

/// A broker whose flexible Fetch responses cannot be decoded (Tansu 0.6.0 writes a tagged field
/// of v16 into v12 responses): the engine drops that connection, negotiates Fetch v11 on the
/// next one, and processes everything.
#[test]
fn an_undecodable_flexible_fetch_response_falls_back_to_fetch_v11() {
    use kafka_protocol::messages::ApiKey;

    let mut sim = SimCluster::new(3, 1);
    sim.config_mut().fetch_tag_zero_at_every_flexible_version = true;
    let mut config = EngineConfig::new(COUNTER_APP, ["sim-0:9092"]);
    config.commit_interval = kstreams_core::time::Duration::from_millis(1_000);
    let fetch_versions: Vec<i16> = count_recording_requests(sim, config)
        .into_iter()
        .filter(|(api, _)| *api == ApiKey::Fetch as i16)
        .map(|(_, v)| v)
        .collect();
    let first_v11 = fetch_versions
        .iter()
        .position(|&v| v == 11)
        .expect("fell back to Fetch v11");
    assert!(first_v11 > 0, "tried v12 first: {fetch_versions:?}");
    assert!(
        fetch_versions[..first_v11].iter().all(|&v| v == 12)
            && fetch_versions[first_v11..].iter().all(|&v| v == 11),
        "v12 until the first undecodable response, v11 after: {fetch_versions:?}"
    );
}

/// A partition's queue is bounded in bytes, not only in records: with 10 kB records, fetching
/// stops while the task holds `max_queued_bytes_per_partition`, whatever the record bound.
#[test]
fn queued_input_is_bounded_in_bytes() {
    const RECORDS: i64 = 200;
    const VALUE: usize = 10_000;
    const QUEUE_BYTES: usize = 30_000;
    const FETCH_BYTES: i32 = 20_000;
    let mut sim = cluster(1, 1);
    for i in 0..RECORDS {
        // One batch per record, so a fetch brings what partition_max_bytes allows.
        let value = Bytes::from(format!("{i:0>width$}", width = VALUE));
        sim.produce_direct(
            INPUT,
            0,
            vec![SimRecord::new(Bytes::from("k"), value, T0 + i)],
        )
        .unwrap();
    }
    // The first produce requests fail (retriably): output waits in a producer buffer with room
    // for a few records, so processing stops while fetching goes on.
    sim.inject_error(ApiKey::Produce, ResponseError::NotEnoughReplicas.code(), 30);
    let mut config = flow_config();
    config.fetch.partition_max_bytes = FETCH_BYTES;
    config.max_queued_bytes_per_partition = QUEUE_BYTES;
    config.producer.buffer_memory = 64;
    let mut h = Harness::new(sim, T0);
    h.add(engine(config, T0));
    let peak = std::rc::Rc::new(std::cell::Cell::new(0_usize));
    let seen = peak.clone();
    h.set_engine_observer(Box::new(move |_, engine| {
        let queued = engine
            .tasks()
            .flat_map(|t| {
                t.partitions()
                    .map(|tp| t.queued_bytes(tp))
                    .collect::<Vec<_>>()
            })
            .max()
            .unwrap_or(0);
        seen.set(seen.get().max(queued));
        // Full, it may still take the one fetch in flight: at most partition_max_bytes and,
        // since a broker always sends a first whole batch, one record more.
        let bound = QUEUE_BYTES + FETCH_BYTES as usize + VALUE + 100;
        if queued > bound {
            return Err(format!("{queued} bytes queued, bound {bound}"));
        }
        Ok(())
    }));
    let done = h.run_until(120_000, |h| all_committed(&h.sim, &[RECORDS]));
    assert!(done, "violation {:?}", h.violation);
    assert_exactly_once(&h.sim, &[RECORDS]);
    assert!(
        peak.get() >= QUEUE_BYTES,
        "the queue filled up to the bound (peak {} bytes), so the bound was what stopped it",
        peak.get()
    );
}

/// The engine is a function of its inputs: a run recorded as inputs and polls (two engines,
/// injected errors and a disconnect, a rebalance when the second joins, commits) replays into
/// a fresh engine with every poll giving exactly what it gave.
#[test]
fn a_recorded_input_sequence_replays_exactly() {
    let mut sim = cluster(2, 4);
    produce_all(&mut sim, 4, 30);
    sim.inject_error(
        ApiKey::Produce,
        ResponseError::NotLeaderOrFollower.code(),
        2,
    );
    sim.inject_disconnect(ApiKey::Fetch, 1);
    let mut h = Harness::new(sim, T0);
    let mut config = flow_config();
    config.random_seed = 7;
    let a = h.add(engine(config.clone(), T0));
    h.record_steps(a);
    h.run_until(3_000, |_| false);
    assert!(h.violation.is_none(), "{:?}", h.violation);
    h.add(engine(flow_config(), h.now));
    assert!(
        h.run_until(60_000, |h| all_committed(&h.sim, &[30, 30, 30, 30])),
        "{:?}",
        h.violation
    );
    let steps = h.engines[a].steps.take().expect("recorded");
    let inputs = steps
        .iter()
        .filter(|s| matches!(s, kstreams_tests::harness::Step::Input(..)))
        .count();
    assert!(inputs > 100, "a real run: {inputs} inputs");
    let mut again = engine(config, T0);
    let polls = kstreams_tests::harness::replay(&steps, &mut again).expect("same outputs");
    assert!(polls > inputs, "{polls} polls");
    assert_eq!(
        again.committed_offsets(),
        h.engines[a].engine.committed_offsets()
    );
}
