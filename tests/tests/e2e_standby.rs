//! Standby replicas and warm-up on a real broker (crabka-broker), with count instances in
//! processes of their own (`src/bin/e2e_count_instance.rs`, LMDB store `counts` logged to its
//! changelog) under exactly-once, and a large store (10,000 keys per task):
//!
//! - **Failover**: two instances with `num_standby_replicas = 1`; each keeps a standby of the
//!   other's tasks. One is SIGKILLed: the survivor promotes its standbys, whose restore starts
//!   at the standby's checkpoint and reads only the tail (asserted from the restore listener's
//!   lines), and the counts stay exact.
//! - **Scale out**: one instance holds every task; a second joins. The state-aware assignor
//!   leaves the tasks where their state is and gives the newcomer warm-up replicas; a probing
//!   rebalance moves the tasks once the warm-ups caught up, so the moved tasks restore only a
//!   tail and their output pauses for about a rebalance, not for a full restore.
//!
//! Why the failover kills an idle instance (its output committed): crabka-broker 0.3.0 never
//! aborts a transaction whose producer died (it stores `transaction.timeout.ms` and does not
//! enforce it, see `e2e_exactly_once.rs`), so a kill with a transaction open would hold the
//! last stable offset of the dead instance's partitions for good. Input keeps coming after
//! the kill, and the survivor processes it.

mod e2e_support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use e2e_support::count_instance::{CountInstance, CountInstanceArgs};
use e2e_support::crashes::produce_continuously;
use e2e_support::*;

/// Distinct keys of the preloaded input: each task's store holds a quarter of them.
const STORE_KEYS: usize = 40_000;
/// Keys per task (partition) of the preloaded input.
const KEYS_PER_TASK: usize = STORE_KEYS / PARTITIONS as usize;
/// Keys per partition of the input that flows while the instances fail over or scale out.
const FLOWING_KEYS: usize = 50;
/// Session timeout of the instances: the survivor takes over this long after the kill.
const SESSION_MS: u64 = 6_000;
/// A promoted standby restores at most this many changelog records (the tail), where a
/// restore from scratch reads at least [`KEYS_PER_TASK`].
const TAIL_BOUND: u64 = KEYS_PER_TASK as u64 / 10;

/// `(position, end)` of the last `standby TASK counts POSITION END` line for each task.
fn standby_positions(instance: &CountInstance) -> BTreeMap<String, (i64, Option<i64>)> {
    let mut last = BTreeMap::new();
    for line in instance.log() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let ["standby", task, _store, position, end] = words.as_slice()
            && let Ok(position) = position.parse::<i64>()
        {
            last.insert((*task).to_owned(), (position, end.parse::<i64>().ok()));
        }
    }
    last
}

/// The checkpoint of each `restore-start TASK counts CHECKPOINT|none MS` line, by task
/// (`None`: a restore from the changelog's start), the last one per task.
fn restore_starts(instance: &CountInstance) -> BTreeMap<String, Option<i64>> {
    let mut starts = BTreeMap::new();
    for line in instance.log() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let ["restore-start", task, _store, checkpoint, _ms] = words.as_slice() {
            starts.insert((*task).to_owned(), checkpoint.parse::<i64>().ok());
        }
    }
    starts
}

/// Records restored per task (`restored TASK counts RECORDS`), the last restore per task.
fn restored_records(instance: &CountInstance) -> BTreeMap<String, u64> {
    let mut restored = BTreeMap::new();
    for line in instance.log() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let ["restored", task, _store, records] = words.as_slice()
            && let Ok(records) = records.parse::<u64>()
        {
            restored.insert((*task).to_owned(), records);
        }
    }
    restored
}

/// Epoch milliseconds of the first `WORD…` line naming `task` (`revoked-at MS TASK…` or
/// `restored-at TASK MS`).
fn moment(instance: &CountInstance, word: &str, task: &str) -> Option<u128> {
    instance.log().iter().find_map(|line| {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["revoked-at", ms, tasks @ ..] if word == "revoked-at" && tasks.contains(&task) => {
                ms.parse().ok()
            }
            ["restored-at", t, ms] if word == "restored-at" && *t == task => ms.parse().ok(),
            _ => None,
        }
    })
}

fn epoch_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// Waits until `done` holds for `instance`'s lines (fails after [`WAIT`]).
fn wait_for(
    instance: &mut CountInstance,
    what: &str,
    mut done: impl FnMut(&CountInstance) -> bool,
) {
    let deadline = Instant::now() + WAIT;
    while !done(instance) {
        assert!(
            Instant::now() < deadline,
            "{}: {what} did not happen within {WAIT:?}; its lines: {:?}",
            instance.name,
            instance.log()
        );
        instance.wait_line(Duration::from_millis(200), |_| true);
        instance.drain();
    }
}

/// The preloaded input (every key of every task once), produced.
fn preload(bootstrap: &str) -> Vec<Input> {
    let input = numbered_input(0, STORE_KEYS, KEYS_PER_TASK);
    produce(bootstrap, INPUT, &input);
    input
}

const INPUT: &str = "standby-in";
const OUTPUT: &str = "standby-out";

fn args(bootstrap: &str, app: &str, dir: &std::path::Path) -> CountInstanceArgs {
    let mut args = CountInstanceArgs::new(bootstrap, INPUT, OUTPUT, app, dir, "exactly-once");
    args.session_timeout_ms = Some(SESSION_MS);
    args
}

#[test]
fn crabka_failover_promotes_the_standby_and_restores_only_the_tail() {
    bounded(|| {
        let broker = Broker::crabka();
        broker.create_topic(INPUT, PARTITIONS);
        broker.create_topic(OUTPUT, PARTITIONS);
        let bootstrap = broker.bootstrap();
        let app = "e2e-standby-failover";
        let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let with_standby = |dir: &tempfile::TempDir| {
            let mut a = args(&bootstrap, app, dir.path());
            a.num_standby_replicas = Some(1);
            a
        };
        // Both start before the state exists: the assignment is balanced (a second instance
        // joining a stateful one would first only warm up, see the scale-out test).
        let mut a = CountInstance::spawn("instance A", &with_standby(&dir_a));
        let mut b = CountInstance::spawn("instance B", &with_standby(&dir_b));
        wait_for(&mut a, "A runs half the tasks", |i| {
            i.owned_tasks().len() == PARTITIONS as usize / 2
        });
        let mut input = preload(&bootstrap);
        read_committed_until(&bootstrap, OUTPUT, Duration::ZERO, |o| {
            o.len() >= input.len()
        });
        // Each instance's standbys of the other's tasks caught up with the whole store.
        a.drain();
        b.drain();
        let (a_tasks, b_tasks) = (a.owned_tasks(), b.owned_tasks());
        assert_eq!(
            a_tasks.len() + b_tasks.len(),
            PARTITIONS as usize,
            "A runs {a_tasks:?}, B runs {b_tasks:?}"
        );
        assert!(
            !a_tasks.is_empty() && !b_tasks.is_empty(),
            "both instances run tasks"
        );
        let caught_up = |other: BTreeSet<String>| {
            move |i: &CountInstance| {
                let standbys = standby_positions(i);
                other.iter().all(|task| {
                    standbys.get(task).is_some_and(|&(position, end)| {
                        position >= KEYS_PER_TASK as i64 && end == Some(position)
                    })
                })
            }
        };
        wait_for(
            &mut a,
            "standbys of B's tasks caught up",
            caught_up(b_tasks.clone()),
        );
        wait_for(
            &mut b,
            "standbys of A's tasks caught up",
            caught_up(a_tasks.clone()),
        );
        let standby_checkpoints = standby_positions(&b);

        a.kill();
        let killed_at = epoch_ms();
        let stop = Arc::new(AtomicBool::new(false));
        let flowing = produce_continuously(bootstrap.clone(), INPUT, FLOWING_KEYS, stop.clone());
        wait_for(&mut b, "B runs every task", |i| {
            i.owned_tasks().len() == PARTITIONS as usize
                && a_tasks
                    .iter()
                    .all(|t| moment(i, "restored-at", t).is_some())
        });
        let starts = restore_starts(&b);
        let restored = restored_records(&b);
        for task in &a_tasks {
            let standby = standby_checkpoints.get(task).map(|&(p, _)| p);
            let start = starts.get(task).copied().flatten();
            assert!(
                start.is_some() && start >= standby,
                "{task}: B's restore starts at its standby's checkpoint {standby:?}, not {start:?}"
            );
            let records = restored.get(task).copied().unwrap_or(u64::MAX);
            assert!(
                records <= TAIL_BOUND,
                "{task}: B restored {records} records, more than a tail ({TAIL_BOUND}) of a \
                 store of {KEYS_PER_TASK} keys"
            );
            let running = moment(&b, "restored-at", task).unwrap_or(0);
            eprintln!(
                "failover: {task} restored {records} records from checkpoint {start:?}; running \
                 again {} ms after the kill (session timeout {SESSION_MS} ms)",
                running.saturating_sub(killed_at)
            );
        }
        std::thread::sleep(Duration::from_secs(1));
        stop.store(true, Ordering::Relaxed);
        input.extend(flowing.join().expect("the producer thread"));
        let output = read_committed_until(&bootstrap, OUTPUT, Duration::from_secs(1), |o| {
            o.len() >= input.len()
        });
        assert_counts_exact(&input, &output);
        b.drain();
        assert!(
            !b.log().iter().any(|l| l.starts_with("failed")),
            "B failed: {:?}",
            b.log()
        );
    });
}

#[test]
fn crabka_scale_out_warms_up_before_moving_tasks() {
    bounded(|| {
        let broker = Broker::crabka();
        broker.create_topic(INPUT, PARTITIONS);
        broker.create_topic(OUTPUT, PARTITIONS);
        let bootstrap = broker.bootstrap();
        let app = "e2e-standby-scale-out";
        let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut input = preload(&bootstrap);
        let warming = |dir: &tempfile::TempDir| {
            let mut a = args(&bootstrap, app, dir.path());
            a.acceptable_recovery_lag = Some(500);
            a.probing_rebalance_ms = Some(3_000);
            a
        };
        let mut a = CountInstance::spawn("instance A", &warming(&dir_a));
        read_committed_until(&bootstrap, OUTPUT, Duration::ZERO, |o| {
            o.len() >= input.len()
        });
        let stop = Arc::new(AtomicBool::new(false));
        let flowing = produce_continuously(bootstrap.clone(), INPUT, FLOWING_KEYS, stop.clone());
        let mut b = CountInstance::spawn("instance B", &warming(&dir_b));
        wait_for(&mut b, "B runs half the tasks", |i| {
            let owned = i.owned_tasks();
            // `restored-at` follows `restored`: both lines of every moved task are in.
            owned.len() == PARTITIONS as usize / 2
                && owned.iter().all(|t| moment(i, "restored-at", t).is_some())
        });
        a.drain();
        let moved = b.owned_tasks();
        let starts = restore_starts(&b);
        let restored = restored_records(&b);
        for task in &moved {
            // The warm-up came first: standby batches of the task before its assignment.
            let first_standby = b
                .log()
                .iter()
                .position(|l| l.starts_with(&format!("standby {task} ")));
            let assigned = b.log().iter().position(|l| {
                l.starts_with("assigned ") && l.split_whitespace().any(|w| w == task)
            });
            assert!(
                first_standby.is_some() && first_standby < assigned,
                "{task}: B warmed it up before it ran it: {:?}",
                b.log()
            );
            let start = starts.get(task).copied().flatten();
            assert!(
                start.is_some_and(|s| s >= KEYS_PER_TASK as i64),
                "{task}: B's restore starts at its warm-up's checkpoint, not {start:?}"
            );
            let records = restored.get(task).copied().unwrap_or(u64::MAX);
            assert!(
                records <= TAIL_BOUND,
                "{task}: B restored {records} records, more than a tail ({TAIL_BOUND}) of a \
                 store of {KEYS_PER_TASK} keys"
            );
            let revoked = moment(&a, "revoked-at", task).expect("A revoked the moved task");
            let running = moment(&b, "restored-at", task).expect("B restored the moved task");
            let pause = running.saturating_sub(revoked);
            eprintln!(
                "scale out: {task} moved after its warm-up; restored {records} records from \
                 checkpoint {start:?}; paused {pause} ms between A's revocation and B's start"
            );
            // A follow-up rebalance and a tail restore, not a restore of 10,000 keys on a
            // loaded machine: a few seconds at most.
            assert!(pause < 10_000, "{task}: paused {pause} ms");
        }
        std::thread::sleep(Duration::from_secs(1));
        stop.store(true, Ordering::Relaxed);
        input.extend(flowing.join().expect("the producer thread"));
        let output = read_committed_until(&bootstrap, OUTPUT, Duration::from_secs(1), |o| {
            o.len() >= input.len()
        });
        assert_counts_exact(&input, &output);
        for instance in [&mut a, &mut b] {
            instance.drain();
            assert!(
                !instance.log().iter().any(|l| l.starts_with("failed")),
                "{} failed: {:?}",
                instance.name,
                instance.log()
            );
        }
    });
}
