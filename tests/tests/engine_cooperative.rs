//! Cooperative incremental rebalancing (KIP-429) against the simulated cluster: a second
//! engine joining takes over only the tasks that move, while the first keeps processing the
//! tasks it keeps (no revoke, output continuing through the rebalance); a follow-up rebalance
//! hands the moved tasks over; a group with a member offering only eager falls back to eager.

use kstreams_core::engine::{EngineConfig, Event, RebalanceProtocol};
use kstreams_core::task::TaskId;
use kstreams_tests::harness::Harness;
use kstreams_tests::harness::tagged::*;
use kstreams_tests::sim::GroupState;

const N: i64 = 200;

fn config(protocol: RebalanceProtocol) -> EngineConfig {
    let mut c = flow_config();
    c.rebalance_protocol = protocol;
    c
}

/// What a run of "engine A alone, then engine B joins" saw.
struct Run {
    h: Harness,
    /// When B was added.
    joined_at: i64,
    /// When B started its first tasks.
    b_started_at: i64,
    /// Group generation when B was added, and at the end.
    generations: (i32, i32),
    /// Per input partition, (time, output high watermark, group rebalancing) after each step.
    outputs: Vec<Vec<(i64, i64, bool)>>,
}

fn join_second_engine(a_protocol: RebalanceProtocol, b_protocol: RebalanceProtocol) -> Run {
    let mut sim = cluster(3, 4);
    produce_all(&mut sim, 4, 10);
    let mut h = Harness::new(sim, T0);
    let audit = install_audit(&mut h, 4, 4);
    // 2 records per partition every 50 ms (for almost 5 s): input keeps coming through the
    // rebalance.
    let mut feeder = Feeder::new(4, 10, N, 2, 50).one_per_step();
    let a = h.add(engine(config(a_protocol), h.now));
    assert!(h.run_until(30_000, |h| {
        feeder.feed(h);
        committed_at_least(&h.sim, &[10; 4])
    }));
    assert_eq!(h.engines[a].task_ids().len(), 4);
    let joined_at = h.now;
    let generation = h.sim.group_generation(APP).expect("group");
    let b = h.add(engine(config(b_protocol), h.now));
    let mut outputs = vec![Vec::new(); 4];
    let done = h.run_until(60_000, |h| {
        feeder.feed(h);
        let rebalancing = h.sim.group_state(APP) != Some(GroupState::Stable);
        for (p, series) in outputs.iter_mut().enumerate() {
            let hw = h.sim.high_watermark(OUTPUT, p as i32).expect("output");
            series.push((h.now, hw, rebalancing));
        }
        feeder.finished()
            && all_committed(&h.sim, &[N; 4])
            && h.engines.iter().all(|s| s.task_ids().len() == 2)
    });
    assert_run(&h, done);
    audit.borrow().assert_complete(&[N; 4]);
    assert_at_least_once(&h.sim, &[N; 4], &[0; 4]);
    let b_started_at = h.engines[b]
        .events
        .iter()
        .find_map(|(at, e)| matches!(e, Event::TasksAssigned(t) if !t.is_empty()).then_some(*at))
        .expect("B started tasks");
    let generations = (generation, h.sim.group_generation(APP).expect("group"));
    Run {
        h,
        joined_at,
        b_started_at,
        generations,
        outputs,
    }
}

fn revoked(run: &Run, engine: usize) -> Vec<Vec<TaskId>> {
    run.h.engines[engine]
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::TasksRevoked(t) => Some(t.clone()),
            _ => None,
        })
        .collect()
}

/// Output records of partition `p` appended while the group was rebalancing (between two
/// steps both seeing the group rebalance), after B joined.
fn output_while_rebalancing(run: &Run, p: usize) -> i64 {
    run.outputs[p]
        .windows(2)
        .filter(|w| w[0].0 >= run.joined_at && w[0].2 && w[1].2)
        .map(|w| w[1].1 - w[0].1)
        .sum()
}

/// Simulated time the group spent rebalancing after B joined (between steps both seeing it).
fn rebalancing_ms(run: &Run) -> i64 {
    run.outputs[0]
        .windows(2)
        .filter(|w| w[0].0 >= run.joined_at && w[0].2 && w[1].2)
        .map(|w| w[1].0 - w[0].0)
        .sum()
}

#[test]
fn a_joining_engine_takes_only_the_moved_tasks_and_the_staying_ones_never_stop() {
    let run = join_second_engine(
        RebalanceProtocol::Cooperative,
        RebalanceProtocol::Cooperative,
    );
    let (a, b) = (0, 1);
    assert_eq!(
        run.h.engines[a].engine.rebalance_protocol(),
        RebalanceProtocol::Cooperative
    );
    let staying = run.h.engines[a].task_ids();
    let moved = run.h.engines[b].task_ids();
    assert_eq!((staying.len(), moved.len()), (2, 2));
    // Only the moved tasks were revoked, once; nothing was lost.
    assert_eq!(revoked(&run, a), vec![moved.clone()]);
    assert!(
        !run.h.engines[a]
            .events
            .iter()
            .any(|(_, e)| matches!(e, Event::TasksLost(_)))
    );
    // The staying tasks were assigned once, at the start, and never again.
    let assigned: Vec<&Vec<TaskId>> = run.h.engines[a]
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::TasksAssigned(t) if !t.is_empty() => Some(t),
            _ => None,
        })
        .collect();
    assert_eq!(assigned.len(), 1, "{assigned:?}");
    // Two rebalances: the join (moved tasks withheld), then the follow-up that hands them over.
    assert!(
        run.generations.1 >= run.generations.0 + 2,
        "generations {:?}",
        run.generations
    );
    assert!(run.b_started_at > run.joined_at);
    // Output of the staying tasks went on while the group rebalanced (twice, some 1.1 s of
    // simulated time). Printed next to eager's, whose members process only until they learn
    // of the rebalance (their next heartbeat) and then revoke everything.
    let eager = join_second_engine(RebalanceProtocol::Eager, RebalanceProtocol::Eager);
    for task in &staying {
        let p = task.partition as usize;
        let (during, eager_during) = (
            output_while_rebalancing(&run, p),
            output_while_rebalancing(&eager, p),
        );
        eprintln!(
            "partition {p}: {during} output records while the group rebalanced ({} ms) \
             cooperative, {eager_during} eager ({} ms)",
            rebalancing_ms(&run),
            rebalancing_ms(&eager)
        );
        assert!(during > 0, "partition {p}: no output during the rebalance");
    }
}

#[test]
fn an_eager_rebalance_stops_every_task_for_comparison() {
    let run = join_second_engine(RebalanceProtocol::Eager, RebalanceProtocol::Eager);
    assert_eq!(
        run.h.engines[0].engine.rebalance_protocol(),
        RebalanceProtocol::Eager
    );
    // Every task revoked at once.
    let revoked = revoked(&run, 0);
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0].len(), 4);
}

#[test]
fn a_member_offering_only_eager_makes_the_group_fall_back_to_eager() {
    // A runs cooperative, B offers only eager: the coordinator selects eager.
    let run = join_second_engine(RebalanceProtocol::Cooperative, RebalanceProtocol::Eager);
    for slot in &run.h.engines {
        assert_eq!(slot.engine.rebalance_protocol(), RebalanceProtocol::Eager);
    }
    // A held its tasks through the join (it was cooperative then); the moved ones were
    // withheld, revoked and handed over in the follow-up, which, eager, revoked A's rest too.
    let a_revoked = revoked(&run, 0);
    assert!(!a_revoked.is_empty());
    let all: usize = a_revoked.iter().map(Vec::len).sum();
    assert_eq!(all, 4, "{a_revoked:?}");
}
