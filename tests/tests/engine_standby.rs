//! Standby replicas against the simulated cluster (real members, real assignor): a standby
//! follows its task's changelog on another engine; when the active's engine crashes the
//! survivor promotes its standby and restores only the changelog's tail after the standby's
//! checkpoint (with durable stores, and with memory stores, which keep their checkpoint while
//! open); under exactly-once a standby never holds records of a transaction that is not
//! committed; a standby never runs in its active's process; a task moves to a new member only
//! after a warm-up there caught up, through the probing rebalance.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::ApiKey;

use kstreams_core::engine::{
    Engine, EngineConfig, Event, ProcessingGuarantee, StandbySuspendReason,
};
use kstreams_core::state::{MemoryStoreFactory, StoreFactory};
use kstreams_core::task::TaskId;
use kstreams_core::time::Instant;
use kstreams_tests::harness::Harness;
use kstreams_tests::harness::committed::{CommittedAudit, transactional_id};
use kstreams_tests::harness::durable_store::{DiskStoreFactory, SimDisk};
use kstreams_tests::harness::tagged::*;

/// Input partitions (= tasks).
const PARTITIONS: i32 = 2;

/// What stores an engine's machine keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stores {
    /// Durable (as LMDB): a [`SimDisk`] per machine.
    Disk,
    /// Memory stores: nothing survives a store's close.
    Memory,
}

fn config(process: &str, standbys: usize, guarantee: ProcessingGuarantee) -> EngineConfig {
    let mut c = flow_config();
    c.num_standby_replicas = standbys;
    c.process_id = process.to_owned();
    c.processing_guarantee = guarantee;
    c.client_id = format!("{APP}-{process}");
    c
}

/// An engine of the stateful (counting) topology on a machine with `stores`.
fn stateful_engine(config: EngineConfig, stores: Stores, now: i64) -> Engine {
    let factory: Box<dyn StoreFactory> = match stores {
        Stores::Disk => Box::new(DiskStoreFactory::new(SimDisk::new())),
        Stores::Memory => Box::new(MemoryStoreFactory),
    };
    Engine::new(
        tag_count_topology(),
        config,
        factory,
        Instant::from_millis(now),
    )
    .expect("engine")
}

/// An engine of the stateful topology with its stores on `disk`.
fn engine_on(config: EngineConfig, disk: &SimDisk, now: i64) -> Engine {
    Engine::new(
        tag_count_topology(),
        config,
        Box::new(DiskStoreFactory::new(disk.clone())),
        Instant::from_millis(now),
    )
    .expect("engine")
}

/// The live engines running each task actively, and those keeping a standby of it.
fn placement(h: &Harness) -> BTreeMap<TaskId, (Vec<usize>, Vec<usize>)> {
    let mut placed: BTreeMap<TaskId, (Vec<usize>, Vec<usize>)> = BTreeMap::new();
    for (i, slot) in h.engines.iter().enumerate().filter(|(_, s)| s.is_live()) {
        for id in slot.task_ids() {
            placed.entry(id).or_default().0.push(i);
        }
        for id in slot.engine.standby_tasks() {
            placed.entry(id).or_default().1.push(i);
        }
    }
    placed
}

/// Whether every task runs on one live engine and has `standbys` standbys on others, each
/// caught up with the task's changelog (its checkpoint at the changelog's end).
fn standbys_caught_up(h: &Harness, standbys: usize) -> bool {
    let placed = placement(h);
    let tasks = h.sim.partition_count(INPUT).expect("input topic");
    placed.len() == tasks as usize
        && placed.values().all(|(active, standby)| {
            active.len() == 1 && standby.len() == standbys && !standby.contains(&active[0])
        })
        && h.engines
            .iter()
            .filter(|s| s.is_live())
            .flat_map(|s| s.engine.standby_progress())
            .all(|p| {
                p.position.is_some()
                    && p.position
                        == h.sim
                            .high_watermark(&p.changelog.topic, p.changelog.partition)
                            .ok()
            })
}

/// A promotion of a standby as the promoted engine reported it.
#[derive(Debug)]
struct Promotion {
    /// The standby's checkpoint when it stopped following the changelog.
    suspended_at: Option<i64>,
    /// The checkpoint the task's restore started from.
    restore_from: Option<i64>,
    /// Records the restore wrote, and the position it reached.
    restored: u64,
    restored_to: i64,
}

/// The promotion of `task`'s standby on engine `index` after time `since`.
fn promotion(h: &Harness, index: usize, task: TaskId, since: i64) -> Promotion {
    let events = || {
        h.engines[index]
            .events
            .iter()
            .filter(move |(at, _)| *at >= since)
            .map(|(_, e)| e)
    };
    let suspended_at = events()
        .find_map(|e| match e {
            Event::StandbySuspended {
                task: t,
                position,
                reason: StandbySuspendReason::Promoted,
                ..
            } if *t == task => Some(*position),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{task}'s standby on engine {index} was not promoted"));
    let restore_from = events()
        .find_map(|e| match e {
            Event::RestoreStarted {
                task: t,
                checkpoint,
                ..
            } if *t == task => Some(*checkpoint),
            _ => None,
        })
        .expect("the promoted task restored");
    let (restored, restored_to) = events()
        .find_map(|e| match e {
            Event::RestoreEnded {
                task: t,
                records,
                position,
                ..
            } if *t == task => Some((*records, *position)),
            _ => None,
        })
        .expect("the promoted task's restore ended");
    Promotion {
        suspended_at,
        restore_from,
        restored,
        restored_to,
    }
}

/// Two engines in two processes with one standby each: once every standby caught up, the
/// engine of task 0's active crashes; the survivor promotes its standby of task 0. Returns the
/// harness after all input was committed, the crashed engine's index, the survivor's, and
/// the crash time, with the audits' final checks done.
fn crash_the_active(
    stores: Stores,
    guarantee: ProcessingGuarantee,
) -> (Harness, usize, usize, i64) {
    let exactly_once = guarantee == ProcessingGuarantee::ExactlyOnce;
    let n = 250;
    let mut sim = cluster(3, PARTITIONS);
    produce_all(&mut sim, PARTITIONS, 10);
    let mut h = Harness::new(sim, T0);
    let audit = Rc::new(RefCell::new(Audit::new(PARTITIONS, PARTITIONS)));
    let committed = exactly_once.then(|| {
        Rc::new(RefCell::new(CommittedAudit::new(
            PARTITIONS, PARTITIONS, true,
        )))
    });
    let configs = [
        config("process-a", 1, guarantee),
        config("process-b", 1, guarantee),
    ];
    if let Some(c) = &committed {
        for config in &configs {
            c.borrow_mut().watch(transactional_id(config));
        }
    }
    // Under exactly-once a standby's checkpoint never passes the last stable offset of its
    // changelog (it holds no record of a transaction that may still abort): the cluster's
    // (last stable offset, high watermark) per changelog partition after every request it
    // serves, checked against every standby after every output of its engine, and counted
    // while a transaction is open on the changelog (to show the check met that case).
    let ends: Rc<RefCell<BTreeMap<i32, (i64, i64)>>> = Rc::default();
    let checked_while_open = Rc::new(Cell::new(0usize));
    {
        let (audit, committed, ends) = (audit.clone(), committed.clone(), ends.clone());
        h.set_observer(Box::new(move |sim| {
            audit.borrow_mut().check(sim)?;
            for p in 0..sim.partition_count(COUNTS_CHANGELOG).unwrap_or(0) {
                let lso = sim
                    .last_stable_offset(COUNTS_CHANGELOG, p)
                    .map_err(|e| e.to_string())?;
                let hw = sim
                    .high_watermark(COUNTS_CHANGELOG, p)
                    .map_err(|e| e.to_string())?;
                ends.borrow_mut().insert(p, (lso, hw));
            }
            match &committed {
                Some(c) => c.borrow_mut().check(sim),
                None => Ok(()),
            }
        }));
    }
    if exactly_once {
        let (ends, checked_while_open) = (ends.clone(), checked_while_open.clone());
        h.set_engine_observer(Box::new(move |index, engine| {
            for p in engine.standby_progress() {
                let Some(&(lso, hw)) = ends.borrow().get(&p.changelog.partition) else {
                    continue;
                };
                if p.position.is_some_and(|at| at > lso) {
                    return Err(format!(
                        "engine {index}: standby of {} at {:?}, past the last stable offset {lso}",
                        p.task, p.position
                    ));
                }
                if lso < hw {
                    checked_while_open.set(checked_while_open.get() + 1);
                }
            }
            Ok(())
        }));
    }
    let mut feeder = Feeder::new(PARTITIONS, 10, n, 2, 50);
    let [a_config, b_config] = configs;
    h.add(stateful_engine(a_config, stores, h.now));
    h.add(stateful_engine(b_config, stores, h.now));
    let caught_up = h.run_until(60_000, |h| {
        feeder.feed(h);
        standbys_caught_up(h, 1) && committed_at_least(&h.sim, &[100; PARTITIONS as usize])
    });
    assert_run(&h, caught_up);
    let task0 = TaskId {
        subtopology: 0,
        partition: 0,
    };
    let (active, standby) = placement(&h)[&task0].clone();
    let (crashed, survivor) = (active[0], standby[0]);
    let crashed_changelog_partition = task0.partition;
    if exactly_once {
        // The active's transaction stays open while its EndTxn is refused (retriably), with
        // changelog records in it: the engine crashes then, so they are aborted (by the
        // coordinator's timeout) and the standby, which follows meanwhile, must skip them.
        h.sim.inject_error(
            ApiKey::EndTxn,
            ResponseError::ConcurrentTransactions.code(),
            20,
        );
        let changelog = crashed_changelog_partition;
        let open = h.run_until(30_000, |h| {
            feeder.feed(h);
            let lso = h.sim.last_stable_offset(COUNTS_CHANGELOG, changelog);
            lso.is_ok() && lso.ok() < h.sim.high_watermark(COUNTS_CHANGELOG, changelog).ok()
        });
        assert_run(&h, open);
    }
    let crash_at = h.now;
    h.drop_engine(crashed);
    let done = h.run_until(120_000, |h| {
        feeder.feed(h);
        let finished = match &committed {
            Some(c) => c.borrow().complete(&h.sim, &[n; PARTITIONS as usize]),
            None => all_committed(&h.sim, &[n; PARTITIONS as usize]),
        };
        feeder.finished() && finished && h.engines[survivor].task_ids().len() == 2
    });
    assert_run(&h, done);
    eprintln!(
        "simulated {} ms, crash at +{} ms",
        h.now - T0,
        crash_at - T0
    );
    if exactly_once {
        assert!(
            checked_while_open.get() > 0,
            "no standby seen while a transaction was open"
        );
    }
    let mut audit = audit.borrow_mut();
    audit.excuse_zombies(&h.engines);
    audit.assert_complete(&[n; PARTITIONS as usize]);
    if let Some(c) = &committed {
        c.borrow().assert_complete(&[n; PARTITIONS as usize]);
    }
    (h, crashed, survivor, crash_at)
}

/// The survivor's promotion of task 0: its restore starts at the standby's checkpoint and
/// reads only the tail after it.
fn assert_tail_only(h: &Harness, survivor: usize, crash_at: i64) {
    let task0 = TaskId {
        subtopology: 0,
        partition: 0,
    };
    let promoted = promotion(h, survivor, task0, crash_at);
    eprintln!("{promoted:?}");
    let from = promoted
        .restore_from
        .expect("the restore starts at a checkpoint");
    assert_eq!(
        promoted.suspended_at,
        Some(from),
        "the restore starts where the standby stopped"
    );
    assert!(
        promoted.restored <= (promoted.restored_to - from) as u64,
        "{promoted:?}"
    );
    assert!(
        (promoted.restored as i64) < from,
        "only the tail: fewer records restored than the standby held ({promoted:?})"
    );
}

#[test]
fn the_survivor_of_a_crash_promotes_its_standby_and_restores_only_the_tail() {
    let (h, _, survivor, crash_at) =
        crash_the_active(Stores::Disk, ProcessingGuarantee::AtLeastOnce);
    assert_tail_only(&h, survivor, crash_at);
}

#[test]
fn a_memory_store_standby_promotes_with_only_the_tail() {
    let (h, _, survivor, crash_at) =
        crash_the_active(Stores::Memory, ProcessingGuarantee::AtLeastOnce);
    assert_tail_only(&h, survivor, crash_at);
}

#[test]
fn under_exactly_once_a_standby_never_holds_uncommitted_records_and_counts_stay_exact() {
    let (h, _, survivor, crash_at) =
        crash_the_active(Stores::Disk, ProcessingGuarantee::ExactlyOnce);
    assert_tail_only(&h, survivor, crash_at);
}

#[test]
fn the_metadata_and_metrics_show_standbys() {
    let mut sim = cluster(3, PARTITIONS);
    produce_all(&mut sim, PARTITIONS, 50);
    let mut h = Harness::new(sim, T0);
    let guarantee = ProcessingGuarantee::AtLeastOnce;
    let a = h.add(stateful_engine(
        config("process-a", 1, guarantee),
        Stores::Disk,
        h.now,
    ));
    let b = h.add(stateful_engine(
        config("process-b", 1, guarantee),
        Stores::Disk,
        h.now,
    ));
    let done = h.run_until(60_000, |h| {
        standbys_caught_up(h, 1) && all_committed(&h.sim, &[50; PARTITIONS as usize])
    });
    assert_run(&h, done);
    for index in [a, b] {
        let engine = &h.engines[index].engine;
        assert_eq!(engine.standby_tasks().count(), 1);
        let progress: Vec<_> = engine.standby_progress().collect();
        assert_eq!(progress.len(), 1, "one logged store");
        assert_eq!(progress[0].lag(), Some(0));
        assert!(engine.metrics().standby_records_total > 0);
        assert!(
            h.engines[index]
                .events
                .iter()
                .any(|(_, e)| matches!(e, Event::StandbyStarted { .. })),
        );
    }
}

#[test]
fn a_standby_never_runs_in_the_process_of_its_active() {
    let partitions = 4;
    let mut sim = cluster(3, partitions);
    produce_all(&mut sim, partitions, 20);
    let mut h = Harness::new(sim, T0);
    let audit = install_audit(&mut h, partitions, partitions);
    let guarantee = ProcessingGuarantee::AtLeastOnce;
    // Two engines of one process (two stream threads of an instance) and one of another.
    let processes = ["process-1", "process-1", "process-2"];
    for process in processes {
        h.add(stateful_engine(
            config(process, 1, guarantee),
            Stores::Disk,
            h.now,
        ));
    }
    // By harness index.
    let process = processes;
    let mut violations = Vec::new();
    let mut complete_since = None;
    let done = h.run_until(60_000, |h| {
        for (task, (active, standby)) in placement(h) {
            for s in &standby {
                if active.iter().any(|a| process[*a] == process[*s]) {
                    violations.push(format!(
                        "{}: {task} active on {active:?}, standby on {s}",
                        h.now
                    ));
                }
            }
        }
        let placed = placement(h);
        let complete = placed.len() == partitions as usize
            && placed
                .values()
                .all(|(active, standby)| active.len() == 1 && standby.len() == 1);
        complete_since = complete.then(|| complete_since.unwrap_or(h.now));
        // Complete for a while (several heartbeats), every input committed.
        complete_since.is_some_and(|since| h.now - since > 5_000) && all_committed(&h.sim, &[20; 4])
    });
    assert_run(&h, done);
    assert!(violations.is_empty(), "{violations:#?}");
    audit.borrow().assert_complete(&[20; 4]);
}

/// One engine (A) alone builds up state, then a second (B, another process) joins: with no
/// standbys configured, B's copies are warm-ups only. Returns the harness once B runs one task
/// and all input is committed, A's and B's indices, when B joined and the task it got.
fn scale_out(stores: Stores) -> (Harness, usize, usize, i64, TaskId) {
    let mut sim = cluster(3, PARTITIONS);
    produce_all(&mut sim, PARTITIONS, 10);
    let mut h = Harness::new(sim, T0);
    let audit = install_audit(&mut h, PARTITIONS, PARTITIONS);
    let n = 600;
    let mut feeder = Feeder::new(PARTITIONS, 10, n, 2, 50);
    let warm_up = |process: &str| {
        let mut c = config(process, 0, ProcessingGuarantee::AtLeastOnce);
        c.acceptable_recovery_lag = 5;
        c.probing_rebalance_interval = kstreams_core::time::Duration::from_secs(5);
        c
    };
    let a = h.add(stateful_engine(warm_up("process-a"), stores, h.now));
    // A alone: its changelogs run far beyond the acceptable lag.
    let alone = h.run_until(60_000, |h| {
        feeder.feed(h);
        committed_at_least(&h.sim, &[150; PARTITIONS as usize])
    });
    assert_run(&h, alone);
    assert_eq!(h.engines[a].task_ids().len(), 2);
    let joined_at = h.now;
    let b = h.add(stateful_engine(warm_up("process-b"), stores, h.now));
    let done = h.run_until(120_000, |h| {
        feeder.feed(h);
        feeder.finished()
            && all_committed(&h.sim, &[n; PARTITIONS as usize])
            && h.engines[b].task_ids().len() == 1
    });
    assert_run(&h, done);
    {
        let mut audit = audit.borrow_mut();
        audit.excuse_zombies(&h.engines);
        audit.assert_complete(&[n; PARTITIONS as usize]);
    }
    let moved = h.engines[b].task_ids()[0];
    for (i, slot) in h.engines.iter().enumerate() {
        for (at, e) in slot.events.iter().filter(|(at, _)| *at >= joined_at) {
            if matches!(
                e,
                Event::GroupSynced { .. }
                    | Event::TasksAssigned(_)
                    | Event::TasksRevoked(_)
                    | Event::RestoreStarted { .. }
                    | Event::StandbyStarted { .. }
                    | Event::StandbySuspended { .. }
            ) {
                eprintln!("engine {i} at +{} ms: {e:?}", at - joined_at);
            }
        }
    }
    (h, a, b, joined_at, moved)
}

/// When engine `index` first had `task` revoked after `since`.
fn first_revocation(h: &Harness, index: usize, task: TaskId, since: i64) -> i64 {
    h.engines[index]
        .events
        .iter()
        .filter(|(at, _)| *at >= since)
        .find_map(|(at, e)| matches!(e, Event::TasksRevoked(t) if t.contains(&task)).then_some(*at))
        .expect("the task was revoked")
}

#[test]
fn a_task_moves_to_a_new_member_only_after_its_warm_up_caught_up() {
    let (h, a, b, joined_at, moved) = scale_out(Stores::Disk);
    let b_events = || {
        h.engines[b]
            .events
            .iter()
            .filter(|(at, _)| *at >= joined_at)
    };
    let warm_up_started = b_events()
        .find_map(|(at, e)| {
            matches!(e, Event::StandbyStarted { task, .. } if *task == moved).then_some(*at)
        })
        .expect("B warmed the task up first");
    assert!(
        warm_up_started < first_revocation(&h, a, moved, joined_at),
        "A kept the task while B warmed up"
    );
    // B's restore of the task (its last) started where B's copy was: the tail only.
    let mut copy_at = None;
    let mut restore = None;
    for (_, e) in b_events() {
        match e {
            Event::StandbySuspended { task, position, .. } if *task == moved => {
                copy_at = *position;
            }
            Event::RestoreStarted {
                task, checkpoint, ..
            } if *task == moved => restore = Some((*checkpoint, None)),
            Event::RestoreEnded { task, records, .. } if *task == moved => {
                restore = restore.map(|(from, _)| (from, Some(*records)));
            }
            _ => {}
        }
    }
    let (from, restored) = restore.expect("B restored the task");
    let (from, restored) = (
        from.expect("from a checkpoint"),
        restored.expect("restore ended"),
    );
    assert_eq!(Some(from), copy_at, "from the warm-up's checkpoint");
    assert!(
        (restored as i64) < from,
        "only the tail: {restored} of {from}"
    );
}

/// Kafka Streams' handover: the probing rebalance withholds the task from A, and B, still
/// warming it up in that generation (the assignor's handover standby, decisions §19), gets it
/// in the follow-up and promotes its warm-up. Before the handover standby, B closed its
/// warm-up in the withholding generation, no longer reported its offset, and the follow-up
/// gave the task back to A until the next probing rebalance (with memory stores B's warm-up
/// then started over from the changelog's start).
#[test]
fn a_warm_up_is_promoted_in_the_follow_up_of_the_withholding_rebalance() {
    let (h, a, b, joined_at, moved) = scale_out(Stores::Memory);
    let revocations = h.engines[a]
        .events
        .iter()
        .filter(|(at, e)| {
            *at >= joined_at && matches!(e, Event::TasksRevoked(t) if t.contains(&moved))
        })
        .count();
    assert_eq!(revocations, 1, "one handover");
    let promoted = promotion(&h, b, moved, joined_at);
    let from = promoted
        .restore_from
        .expect("from the warm-up's checkpoint");
    assert_eq!(promoted.suspended_at, Some(from));
    assert!((promoted.restored as i64) < from, "{promoted:?}");
}

/// Two stream threads of one process share its store (as LMDB's environment: a store
/// partition open in one is in use for the other): a standby placed on one thread while the
/// other still commits the task it gives away, and a task made active on one thread while the
/// other still follows it as a standby, wait for the store instead of failing the engine.
#[test]
fn stream_threads_of_one_process_take_a_store_over_in_turn() {
    kstreams_tests::bounded::init_test_logging();
    let partitions = 4;
    let mut sim = cluster(3, partitions);
    produce_all(&mut sim, partitions, 10);
    let mut h = Harness::new(sim, T0);
    let audit = install_audit(&mut h, partitions, partitions);
    let n = 300;
    let mut feeder = Feeder::new(partitions, 10, n, 2, 50);
    let guarantee = ProcessingGuarantee::AtLeastOnce;
    let process_disk = SimDisk::shared_by_threads();
    let thread_config = |thread: &str| {
        let mut c = config("process-1", 1, guarantee);
        c.client_id = format!("{APP}-process-1-{thread}");
        c
    };
    // Polled in the other order than their member ids sort.
    let second = h.add(engine_on(thread_config("2"), &process_disk, h.now));
    let first = h.add(engine_on(thread_config("1"), &process_disk, h.now));
    let alone = h.run_until(60_000, |h| {
        feeder.feed(h);
        committed_at_least(&h.sim, &[50; 4])
    });
    assert_run(&h, alone);
    // Another process joins: tasks move to it, their standbys to the first process.
    let other = h.add(stateful_engine(
        config("process-2", 1, guarantee),
        Stores::Disk,
        h.now,
    ));
    let caught_up = h.run_until(60_000, |h| {
        feeder.feed(h);
        standbys_caught_up(h, 1) && !h.engines[other].task_ids().is_empty()
    });

    assert_run(&h, caught_up);
    // It crashes: its tasks come back to the first process's threads.
    let crash_at = h.now;
    h.drop_engine(other);
    let done = h.run_until(120_000, |h| {
        feeder.feed(h);
        feeder.finished()
            && all_committed(&h.sim, &[n; 4])
            && h.engines[first].task_ids().len() + h.engines[second].task_ids().len() == 4
    });
    assert_run(&h, done);
    // The crashed engine's task went to one thread while the other still followed it; it
    // restored from the standby's checkpoint, which the store kept.
    let restored_from: Vec<Option<i64>> = [first, second]
        .iter()
        .flat_map(|&i| &h.engines[i].events)
        .filter(|(at, _)| *at >= crash_at)
        .filter_map(|(_, e)| match e {
            Event::RestoreStarted { checkpoint, .. } => Some(*checkpoint),
            _ => None,
        })
        .collect();
    assert!(
        !restored_from.is_empty() && restored_from.iter().all(Option::is_some),
        "{restored_from:?}"
    );
    let mut audit = audit.borrow_mut();
    audit.excuse_zombies(&h.engines);
    audit.assert_complete(&[n; 4]);
}

/// A's stores on its disk, without the listing of their checkpoints (the default
/// `StoreFactory::local_checkpoints`): what an engine knew of its disk before it reported it.
struct Unlisted(DiskStoreFactory);

impl StoreFactory for Unlisted {
    fn open(
        &self,
        store: &str,
        partition: i32,
    ) -> Result<Box<dyn kstreams_core::state::KvBackend>, kstreams_core::state::StoreError> {
        self.0.open(store, partition)
    }
}

/// A task's lag below which a copy counts as caught up, in the restart scenario: below the
/// changelogs' lengths when A crashes, above what B adds to them before A restarts.
const RESTART_RECOVERY_LAG: i64 = 8;

/// A runs both tasks alone and crashes; B (a fresh disk) takes both over and processes a
/// little more input (less than [`RESTART_RECOVERY_LAG`]); A restarts on its disk, its
/// factory listing the checkpoints there when `listed`. Runs `after_restart` ms (fed) or until
/// every input is committed and A and B run a task each. Returns the harness, A's and B's
/// indices, the restart time and the checkpoints on A's disk at the restart per partition.
fn restart_on_disk(listed: bool, after_restart: Option<i64>) -> Restart {
    let mut sim = cluster(3, PARTITIONS);
    produce_all(&mut sim, PARTITIONS, 10);
    let mut h = Harness::new(sim, T0);
    let audit = install_audit(&mut h, PARTITIONS, PARTITIONS);
    let n = 400;
    let mut feeder = Feeder::new(PARTITIONS, 10, n, 2, 50);
    // No standbys: a copy the assignor places on A before handing it a task is a warm-up.
    let config = |process: &str| {
        let mut c = config(process, 0, ProcessingGuarantee::AtLeastOnce);
        c.acceptable_recovery_lag = RESTART_RECOVERY_LAG;
        c
    };
    let a_disk = SimDisk::new();
    let a_engine = |now| {
        let disk = DiskStoreFactory::new(a_disk.clone());
        let stores: Box<dyn StoreFactory> = match listed {
            true => Box::new(disk),
            false => Box::new(Unlisted(disk)),
        };
        Engine::new(
            tag_count_topology(),
            config("process-a"),
            stores,
            Instant::from_millis(now),
        )
        .expect("engine")
    };
    let a = h.add(a_engine(h.now));
    let alone = h.run_until(60_000, |h| {
        feeder.feed(h);
        committed_at_least(&h.sim, &[150; PARTITIONS as usize])
            && h.engines[a].task_ids().len() == 2
    });
    assert_run(&h, alone);
    h.drop_engine(a);
    let b = h.add(stateful_engine(config("process-b"), Stores::Disk, h.now));
    let taken_over = h.run_until(120_000, |h| {
        feeder.feed(h);
        h.engines[b].task_ids().len() == 2
            && committed_at_least(&h.sim, &[170; PARTITIONS as usize])
    });
    assert_run(&h, taken_over);
    let on_disk: BTreeMap<i32, i64> = (0..PARTITIONS)
        .map(|p| {
            let checkpoint = a_disk.checkpoint(COUNTS, p).expect("A's checkpoint");
            let end = h
                .sim
                .high_watermark(COUNTS_CHANGELOG, p)
                .expect("changelog");
            eprintln!("partition {p}: A's checkpoint {checkpoint:?}, changelog end {end}");
            // The scenario's premise: A's copy is caught up, an empty one is not.
            assert!(
                end - checkpoint.changelog_offset < RESTART_RECOVERY_LAG
                    && checkpoint.changelog_offset > RESTART_RECOVERY_LAG,
                "partition {p}: checkpoint {checkpoint:?}, changelog end {end}"
            );
            (p, checkpoint.changelog_offset)
        })
        .collect();
    let restarted_at = h.now;
    let a = h.add(a_engine(h.now));
    match after_restart {
        Some(ms) => {
            let _ = h.run_until(ms, |h| {
                feeder.feed(h);
                false
            });
        }
        None => {
            let done = h.run_until(120_000, |h| {
                feeder.feed(h);
                feeder.finished()
                    && all_committed(&h.sim, &[n; PARTITIONS as usize])
                    && h.engines[a].task_ids().len() == 1
                    && h.engines[b].task_ids().len() == 1
            });
            assert_run(&h, done);
            let mut audit = audit.borrow_mut();
            audit.excuse_zombies(&h.engines);
            audit.assert_complete(&[n; PARTITIONS as usize]);
        }
    }
    for (at, e) in &h.engines[a].events {
        eprintln!("restarted A at +{} ms: {e:?}", at - restarted_at);
    }
    Restart {
        h,
        a,
        b,
        restarted_at,
        on_disk,
    }
}

/// What [`restart_on_disk`] returns.
struct Restart {
    h: Harness,
    a: usize,
    b: usize,
    restarted_at: i64,
    on_disk: BTreeMap<i32, i64>,
}

/// An instance restarted on its own disk reports the checkpoints of the state its previous run
/// left there (decisions §19, "Offsets for the assignor"), so it gets one of its tasks back at
/// once: B revokes it in the first rebalance A joins, A follows it meanwhile as the handover
/// standby from the checkpoint on its disk and runs it from the follow-up on, restoring only
/// the tail, long before a probing rebalance.
#[test]
fn an_instance_restarted_on_its_disk_gets_its_tasks_back_without_a_warm_up() {
    let Restart {
        h,
        a,
        b,
        restarted_at,
        on_disk,
    } = restart_on_disk(true, None);
    let a_events = || h.engines[a].events.iter();
    let task = h.engines[a].task_ids()[0];
    let at_restart = on_disk[&task.partition];
    let first_sync = a_events()
        .find_map(|(at, e)| matches!(e, Event::GroupSynced { .. }).then_some(*at))
        .expect("A joined");
    let revoked = first_revocation(&h, b, task, restarted_at);
    assert!(
        revoked <= first_sync,
        "B kept the task past A's first rebalance"
    );
    for (_, e) in a_events() {
        match e {
            Event::StandbyStarted {
                task: t,
                checkpoint,
                ..
            } => {
                assert_eq!(*t, task, "A followed a task it did not get");
                assert_eq!(*checkpoint, Some(at_restart), "from A's disk");
            }
            Event::StandbySuspended { reason, .. } => {
                assert_eq!(*reason, StandbySuspendReason::Promoted, "{e:?}");
            }
            _ => {}
        }
    }
    let (got_at, from, restored) = {
        let started = a_events().find_map(|(at, e)| match e {
            Event::RestoreStarted {
                task: t,
                checkpoint,
                ..
            } if *t == task => Some((*at, *checkpoint)),
            _ => None,
        });
        let (at, from) = started.expect("A restored its task");
        let restored = a_events().find_map(|(_, e)| match e {
            Event::RestoreEnded {
                task: t, records, ..
            } if *t == task => Some(*records),
            _ => None,
        });
        (at, from, restored.expect("A's restore ended"))
    };
    let from = from.expect("A's restore starts at a checkpoint");
    assert!(from >= at_restart, "{from} < {at_restart}");
    assert!(
        (restored as i64) < RESTART_RECOVERY_LAG,
        "only the tail: {restored} records"
    );
    let syncs_before = a_events()
        .filter(|(at, e)| *at <= got_at && matches!(e, Event::GroupSynced { .. }))
        .count();
    assert_eq!(
        syncs_before, 2,
        "A got the task in the follow-up of its first rebalance"
    );
}

/// The same restart when A's factory does not list its checkpoints: A counts as stateless, B
/// keeps both tasks and A only warms one up (until a probing rebalance, 10 minutes away).
#[test]
fn without_the_listing_a_restarted_instance_only_warms_its_tasks_up() {
    let Restart { h, a, b, .. } = restart_on_disk(false, Some(30_000));
    assert!(h.engines[a].task_ids().is_empty(), "A got a task");
    assert_eq!(h.engines[b].task_ids().len(), 2);
    assert!(
        h.engines[a]
            .events
            .iter()
            .any(|(_, e)| matches!(e, Event::StandbyStarted { .. })),
        "A warms a task up"
    );
}
