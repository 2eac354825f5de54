//! Pipelined commits (at-least-once) against the simulated cluster: an interval commit that
//! waits for its output's acknowledgements does not stop processing; the next commit waits
//! for it; a cooperative rebalance while it waits does not stop processing either; nothing is
//! lost and the counts stay right once the output gets through.
//!
//! The output topic's leader is made unreachable for the engine ([`Harness::cut`]) while the
//! input and the group coordinator stay reachable, so every commit started meanwhile waits
//! for acknowledgements that cannot come.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::ApiKey;
use kstreams_core::engine::{Engine, EngineConfig, Event, ProcessingGuarantee};
use kstreams_core::record::TopicPartition;
use kstreams_core::state::MemoryStoreFactory;
use kstreams_core::time::Instant;
use kstreams_tests::harness::Harness;
use kstreams_tests::harness::tagged::*;
use kstreams_tests::sim::{GroupState, SimCluster};

/// Input leaders and the group coordinator on broker 0, output leaders on broker 1.
fn placed_cluster(partitions: i32) -> SimCluster {
    let mut sim = SimCluster::new(0x5157, 3);
    sim.create_topic(INPUT, partitions).expect("input");
    sim.create_topic(OUTPUT, partitions).expect("output");
    for p in 0..partitions {
        sim.move_leader(&TopicPartition::new(INPUT, p), 0)
            .expect("input leader");
        sim.move_leader(&TopicPartition::new(OUTPUT, p), 1)
            .expect("output leader");
    }
    sim
}

fn counting_engine(config: EngineConfig, now: i64) -> Engine {
    Engine::new(
        tag_count_topology(),
        config,
        Box::new(MemoryStoreFactory),
        Instant::from_millis(now),
    )
    .expect("engine")
}

/// A running engine `engine` counting the input of `partitions` partitions (10 records each
/// already committed), with `feeder` ready to add up to `n` per partition; with an audit of
/// every output under at-least-once.
struct Started {
    h: Harness,
    feeder: Feeder,
    engine: usize,
    audit: Option<std::rc::Rc<std::cell::RefCell<Audit>>>,
}

fn started(partitions: i32, n: i64, guarantee: ProcessingGuarantee) -> Started {
    let mut sim = placed_cluster(partitions);
    produce_all(&mut sim, partitions, 10);
    let mut h = Harness::new(sim, T0);
    let audit = (guarantee == ProcessingGuarantee::AtLeastOnce)
        .then(|| install_audit(&mut h, partitions, partitions));
    h.sim
        .move_coordinator(APP, 0)
        .expect("group coordinator on broker 0");
    let mut config = flow_config();
    config.processing_guarantee = guarantee;
    let feeder = Feeder::new(partitions, 10, n, 2, 50);
    let engine = h.add(counting_engine(config, h.now));
    let ready = vec![10; partitions as usize];
    assert!(h.run_until(30_000, |h| {
        committed_at_least(&h.sim, &ready)
            && h.engines[engine].task_ids().len() == partitions as usize
    }));
    Started {
        h,
        feeder,
        engine,
        audit,
    }
}

fn processed(h: &Harness, engine: usize) -> u64 {
    h.engines[engine].engine.metrics().process_total
}

fn commits(h: &Harness, engine: usize) -> Vec<(i64, Vec<i64>)> {
    h.engines[engine]
        .events
        .iter()
        .filter_map(|(at, e)| match e {
            Event::Committed(offsets) => Some((*at, offsets.values().copied().collect())),
            _ => None,
        })
        .collect()
}

#[test]
fn processing_goes_on_while_a_commit_waits_for_its_output_and_the_next_commit_waits_for_it() {
    const N: i64 = 120;
    let Started {
        mut h,
        mut feeder,
        engine: a,
        audit,
    } = started(2, N, ProcessingGuarantee::AtLeastOnce);
    let audit = audit.expect("at-least-once runs are audited");
    // The output's leader becomes unreachable: no produce acknowledgement from now on.
    h.cut(a, 1);
    let cut_at = h.now;
    let before = processed(&h, a);
    let commits_before = commits(&h, a).len();
    // Six commit intervals.
    h.run_until(3_000, |h| {
        feeder.feed(h);
        false
    });
    assert_eq!(
        commits(&h, a).len(),
        commits_before,
        "no commit can end without the output's acknowledgements"
    );
    let during = processed(&h, a) - before;
    assert!(
        during >= 150,
        "the tasks processed only {during} records in the 3 s after the cut (input kept coming: \
         a commit waiting for its output stopped them)"
    );
    h.heal(a, 1);
    let done = h.run_until(60_000, |h| {
        feeder.feed(h);
        feeder.finished() && all_committed(&h.sim, &[N; 2])
    });
    assert_run(&h, done);
    audit.borrow().assert_complete(&[N; 2]);
    assert_at_least_once(&h.sim, &[N; 2], &[N; 2]);
    // The commit that was waiting (started within one interval of the cut, its snapshot
    // taken then) ended first, with its own offsets; only then did the next one start.
    let after: Vec<(i64, Vec<i64>)> = commits(&h, a)
        .into_iter()
        .filter(|(at, _)| *at > cut_at)
        .collect();
    assert!(
        after.len() >= 2,
        "the waiting commit, then the rest: {after:?}"
    );
    let first_total: i64 = after[0].1.iter().sum();
    assert!(
        first_total < 2 * N,
        "the first commit after the cut carries the snapshot of its start, not what was \
         processed while it waited: {after:?}"
    );
    for pair in after.windows(2) {
        assert!(
            pair[0].1.iter().zip(&pair[1].1).all(|(x, y)| x <= y),
            "commits end in order: {after:?}"
        );
    }
}

#[test]
fn a_cooperative_rebalance_while_a_commit_waits_does_not_stop_processing() {
    const N: i64 = 200;
    let Started {
        mut h,
        mut feeder,
        engine: a,
        audit,
    } = started(4, N, ProcessingGuarantee::AtLeastOnce);
    let audit = audit.expect("at-least-once runs are audited");
    h.cut(a, 1);
    // Commits start (three intervals): the one under way waits for its output.
    h.run_until(1_500, |h| {
        feeder.feed(h);
        false
    });
    let generation = h.sim.group_generation(APP).expect("group");
    let b = h.add(counting_engine(flow_config(), h.now));
    // What A processed when the group left Stable (A's JoinGroup to come) and when A synced
    // the new generation: its commit waits for the output all along, and for the new
    // generation from the JoinGroup answer on.
    let mut left_stable: Option<u64> = None;
    let mut synced: Option<u64> = None;
    assert!(h.run_until(30_000, |h| {
        feeder.feed(h);
        if left_stable.is_none() && h.sim.group_state(APP) != Some(GroupState::Stable) {
            left_stable = Some(processed(h, a));
        }
        let a_synced = h.engines[a]
            .events
            .iter()
            .any(|(_, e)| matches!(e, Event::GroupSynced { generation: g, .. } if *g > generation));
        if a_synced && synced.is_none() {
            synced = Some(processed(h, a));
        }
        synced.is_some()
    }));
    let (left_stable, synced) = (
        left_stable.expect("the group rebalanced"),
        synced.expect("A synced"),
    );
    assert!(
        synced > left_stable,
        "A processed nothing from the rebalance's start to its SyncGroup answer, its commit \
         waiting ({left_stable} records before, {synced} after)"
    );
    assert!(h.run_until(30_000, |h| {
        feeder.feed(h);
        h.sim.group_state(APP) == Some(GroupState::Stable) && !h.engines[b].task_ids().is_empty()
    }));
    h.heal(a, 1);
    let done = h.run_until(60_000, |h| {
        feeder.feed(h);
        feeder.finished()
            && all_committed(&h.sim, &[N; 4])
            && h.engines.iter().all(|s| s.task_ids().len() == 2)
    });
    assert_run(&h, done);
    audit.borrow().assert_complete(&[N; 4]);
}

/// The read_committed output: per input partition, (input offset, count) in output order.
fn committed_outputs(h: &Harness, input_partitions: usize) -> Vec<Vec<(i64, i64)>> {
    let mut out = vec![Vec::new(); input_partitions];
    let n = h.sim.partition_count(OUTPUT).unwrap_or(0);
    for q in 0..n {
        for r in h.sim.read_committed_from(OUTPUT, q, 0).expect("output") {
            let (p, o) = tag_of(&r).expect("tagged output");
            out[p as usize].push((o, count_of(&r).expect("counted output")));
        }
    }
    out
}

#[test]
fn exactly_once_holds_the_output_of_a_waiting_transaction_out_of_it_and_an_abort_rolls_it_back() {
    const N: i64 = 120;
    let Started {
        mut h,
        mut feeder,
        engine: a,
        ..
    } = started(2, N, ProcessingGuarantee::ExactlyOnce);
    h.cut(a, 1);
    let before = processed(&h, a);
    let commits_before = commits(&h, a).len();
    h.run_until(3_000, |h| {
        feeder.feed(h);
        false
    });
    assert_eq!(
        commits(&h, a).len(),
        commits_before,
        "no transaction can end"
    );
    let during = processed(&h, a) - before;
    assert!(
        during >= 150,
        "the tasks processed only {during} records in the 3 s after the cut (their output \
         waits for the next transaction)"
    );
    // The waiting transaction fails at its TxnOffsetCommit: it aborts, and everything since
    // the last committed transaction (its records, the output held for the next one, the
    // store writes of both) is rolled back and processed again.
    h.sim.inject_error(
        ApiKey::TxnOffsetCommit,
        ResponseError::UnknownMemberId.code(),
        1,
    );
    h.heal(a, 1);
    let done = h.run_until(60_000, |h| {
        feeder.feed(h);
        feeder.finished() && all_committed(&h.sim, &[N; 2])
    });
    assert_run(&h, done);
    assert_eq!(
        h.sim.pending_faults(ApiKey::TxnOffsetCommit),
        0,
        "the fault was served"
    );
    for (p, got) in committed_outputs(&h, 2).into_iter().enumerate() {
        let want: Vec<(i64, i64)> = (0..N).map(|o| (o, true_count(o))).collect();
        assert_eq!(got, want, "read_committed outputs of input partition {p}");
    }
}

#[test]
fn exactly_once_commits_a_waiting_transaction_without_the_records_processed_meanwhile() {
    const N: i64 = 120;
    let Started {
        mut h,
        mut feeder,
        engine: a,
        ..
    } = started(2, N, ProcessingGuarantee::ExactlyOnce);
    h.cut(a, 1);
    h.run_until(3_000, |h| {
        feeder.feed(h);
        false
    });
    let before = processed(&h, a);
    let commits_before = commits(&h, a).len();
    h.heal(a, 1);
    // The waiting transaction commits: its offsets are the snapshot of its start, and the
    // read_committed output holds exactly the records below them, none processed since.
    assert!(h.run_until(30_000, |h| commits(h, a).len() > commits_before));
    let (_, offsets) = commits(&h, a).pop().expect("a commit");
    let total: i64 = offsets.iter().sum();
    assert!(
        (total as u64) < before,
        "the transaction carries its start's offsets ({offsets:?}), not the {before} records \
         processed by now"
    );
    for (p, got) in committed_outputs(&h, 2).into_iter().enumerate() {
        let want: Vec<(i64, i64)> = (0..offsets[p]).map(|o| (o, true_count(o))).collect();
        assert_eq!(got, want, "read_committed outputs of input partition {p}");
    }
    let done = h.run_until(60_000, |h| {
        feeder.feed(h);
        feeder.finished() && all_committed(&h.sim, &[N; 2])
    });
    assert_run(&h, done);
    for (p, got) in committed_outputs(&h, 2).into_iter().enumerate() {
        let want: Vec<(i64, i64)> = (0..N).map(|o| (o, true_count(o))).collect();
        assert_eq!(got, want, "read_committed outputs of input partition {p}");
    }
}
