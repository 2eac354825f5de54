//! Exactly-once end to end. Tansu 0.6.0 has no transactions: an exactly-once application
//! fails at startup there with a typed error. The transactional flows run on crabka-broker
//! (see `tests/src/crabka.rs`), the only broker here that filters aborted transactions for
//! read_committed readers: a clean restart, an instance SIGKILLed again and again while input
//! flows (and the same loop at-least-once), a zombie (SIGSTOP until its tasks moved, then
//! SIGCONT), and a processing error that aborts a transaction. The instances that are killed
//! or stopped run in processes of their own (`src/bin/e2e_count_instance.rs`).

mod e2e_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use e2e_support::count_instance::{CountInstance, CountInstanceArgs};
use e2e_support::crashes::*;
use e2e_support::*;
use kstreams_core::client::producer::TransactionError;
use kstreams_core::engine::{EngineError, ProcessingGuarantee};
use kstreams_io_common::{Stores, StreamsError, StreamsState};

const INPUT: &str = "input";
const OUTPUT: &str = "output";
const SETTLE: std::time::Duration = std::time::Duration::from_secs(1);

/// An exactly-once application on a broker without the transaction APIs stops before it
/// processes anything, saying which API is missing; it never runs at-least-once instead.
fn fails_at_startup_without_transactions(broker: Broker) {
    broker.create_topic(INPUT, PARTITIONS);
    broker.create_topic(OUTPUT, PARTITIONS);
    let input = numbered_input(0, 100, 9);
    produce(&broker.bootstrap(), INPUT, &input);
    let app = "e2e-eos-unsupported";
    let state_dir = tempfile::tempdir().unwrap();
    let mut config = streams_config(&broker, app, state_dir.path());
    config.engine.processing_guarantee = ProcessingGuarantee::ExactlyOnce;
    let handle = Adapter::Tokio.start(passthrough_topology(INPUT, OUTPUT), config, Stores::Memory);
    let waiting = handle.clone();
    let error = kstreams_tests::bounded::bounded("the engine's failure", WAIT, move || {
        block_on(waiting.wait())
    })
    .unwrap_err();
    assert!(
        matches!(
            &error,
            StreamsError::Engine { error, .. } if matches!(
                &**error,
                EngineError::Transaction(TransactionError::Unsupported { .. })
            )
        ),
        "{error}"
    );
    assert_eq!(handle.state(), StreamsState::Error);
    let output = read_until(
        &broker.bootstrap(),
        OUTPUT,
        std::time::Duration::from_secs(2),
        |_| true,
    );
    assert!(output.is_empty(), "nothing was written: {output:?}");
}

/// An exactly-once LMDB count on a broker with transactions: a read_committed reader sees
/// every key's counts 1, 2, 3, … exactly once, across a clean restart on the same state.
fn counts_exactly_once(broker: Broker, adapter: Adapter) {
    broker.create_topic(INPUT, PARTITIONS);
    broker.create_topic(OUTPUT, PARTITIONS);
    let app = "e2e-eos-count";
    let state_dir = tempfile::tempdir().unwrap();
    let start = || {
        let mut config = streams_config(&broker, app, state_dir.path());
        config.engine.processing_guarantee = ProcessingGuarantee::ExactlyOnce;
        adapter.start(
            count_topology_logged(INPUT, OUTPUT, true),
            config,
            Stores::Lmdb,
        )
    };
    let first = numbered_input(0, 400, 9);
    produce(&broker.bootstrap(), INPUT, &first);
    let handle = start();
    let output = read_committed_until(&broker.bootstrap(), OUTPUT, SETTLE, |o| {
        o.len() >= first.len()
    });
    assert_counts_exact(&first, &output);
    close(&handle);
    let second = numbered_input(first.len(), 300, 9);
    produce(&broker.bootstrap(), INPUT, &second);
    let handle = start();
    let all: Vec<Input> = first.iter().chain(&second).cloned().collect();
    let output = read_committed_until(&broker.bootstrap(), OUTPUT, SETTLE, |o| {
        o.len() >= all.len()
    });
    assert_counts_exact(&all, &output);
    close(&handle);
}

#[test]
fn crabka_counts_exactly_once_tokio() {
    bounded(|| counts_exactly_once(Broker::crabka(), Adapter::Tokio));
}

#[test]
fn crabka_counts_exactly_once_smol() {
    bounded(|| counts_exactly_once(Broker::crabka(), Adapter::Smol));
}

#[test]
fn tansu_exactly_once_fails_at_startup_without_transactions() {
    bounded(|| fails_at_startup_without_transactions(Broker::tansu()));
}

/// Instances SIGKILLed in the kill loops.
const KILLS: usize = 5;
/// Rounds of the kill loops that start on a fresh state directory (a new machine: the
/// stores restore in full from their changelogs).
const FRESH_STATE_ROUNDS: [usize; 2] = [3, 5];
/// Rounds of the kill loops whose instance commits every second rather than every 200 ms:
/// killed a random while after a commit, it is more often killed with a transaction open.
const LONG_COMMIT_ROUNDS: [usize; 2] = [2, 4];
/// Session timeout of the killed and stopped instances: a restarted instance waits this long
/// for the group to drop the killed one.
const SHORT_SESSION_MS: u64 = 3_000;
/// Keys per input partition.
const KEYS: usize = 9;

/// How many records read_uncommitted sees beyond the read_committed `visible` ones: records
/// of aborted transactions (and of none still open: every instance is gone or idle).
fn aborted_records(bootstrap: &str, visible: &[Output]) -> usize {
    let all = read_uncommitted_until(bootstrap, OUTPUT, SETTLE, |o| o.len() >= visible.len());
    all.len() - visible.len()
}

/// The kill loop: input flows from a thread while an instance in a process of its own is
/// SIGKILLed [`KILLS`] times, each time a random while after its first commit, and restarted
/// (on the same state directory, or on a fresh one in [`FRESH_STATE_ROUNDS`]); then a last
/// instance runs to the end of the input. Exactly-once: read_committed output is every key's
/// counts 1, 2, 3, … exactly once, ending at the truth (how much read_uncommitted sees of
/// the aborted transactions is printed). At-least-once: no key's last count below the truth
/// (how often counts went back is printed).
fn survives_repeated_sigkill(guarantee: &'static str, ids: TransactionalIds) {
    let started = Instant::now();
    let test = format!("kill loop {guarantee}");
    let mut random = Random::from_env(&test);
    let broker = Broker::crabka();
    broker.create_topic(INPUT, PARTITIONS);
    broker.create_topic(OUTPUT, PARTITIONS);
    let bootstrap = broker.bootstrap();
    let exactly_once = guarantee == "exactly-once";
    let app = format!("e2e-kill-loop-{guarantee}");
    let mut dirs = vec![tempfile::tempdir().unwrap()];
    let args = |dir: &tempfile::TempDir| {
        let mut args =
            CountInstanceArgs::new(&bootstrap, INPUT, OUTPUT, &app, dir.path(), guarantee);
        args.session_timeout_ms = Some(SHORT_SESSION_MS);
        if exactly_once && ids == TransactionalIds::OneForAllRestarts {
            args.transactional_id = Some(format!("{app}-instance"));
        }
        args
    };
    let stop = Arc::new(AtomicBool::new(false));
    let producer = produce_continuously(bootstrap.clone(), INPUT, KEYS, stop.clone());
    for round in 1..=KILLS {
        let fresh = FRESH_STATE_ROUNDS.contains(&round);
        if fresh {
            dirs.push(tempfile::tempdir().unwrap());
        }
        let name = format!("instance {round}");
        let mut round_args = args(dirs.last().unwrap());
        round_args.commit_interval_ms = if LONG_COMMIT_ROUNDS.contains(&round) {
            1_000
        } else {
            200
        };
        let mut instance = CountInstance::spawn(&name, &round_args);
        let spawned = Instant::now();
        if instance.wait_line(WAIT, |l| l == "committed").is_none() {
            instance.drain();
            panic!(
                "{name} never committed; its lines: {:?}{}",
                instance.log(),
                broker.log_tail()
            );
        }
        let committed_after = spawned.elapsed();
        let delay = Duration::from_millis(random.below(1_000));
        std::thread::sleep(delay);
        instance.kill();
        // crabka-broker 0.3.0 keeps a dead member in a rebalance that starts before its
        // session expired (see `wait_group_empty`): the next instance joins an empty group.
        let expired = wait_group_empty(&bootstrap, &app);
        let restored: u64 = instance
            .log()
            .iter()
            .filter_map(|l| l.strip_prefix("restored "))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        eprintln!(
            "{test}: {name} ({}, commits every {} ms) first commit after {committed_after:?}, \
             killed {delay:?} later; restored {restored} records; dropped from the group \
             {expired:?} after",
            if fresh { "fresh state" } else { "same state" },
            round_args.commit_interval_ms
        );
        if fresh {
            assert!(
                restored > 0,
                "{name} on a fresh state directory restored nothing: {:?}",
                instance.log()
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    let input = producer.join().expect("the producer thread");
    let mut last = CountInstance::spawn("last instance", &args(dirs.last().unwrap()));
    let expected = expected_counts(&input);
    if exactly_once {
        let output = read_committed_until(&bootstrap, OUTPUT, SETTLE, |o| o.len() >= input.len());
        assert_counts_exact(&input, &output);
        let aborted = aborted_records(&bootstrap, &output);
        eprintln!(
            "{test}: {} input records, {} visible to read_committed, {aborted} more (aborted) \
             to read_uncommitted; {:?} in all",
            input.len(),
            output.len(),
            started.elapsed()
        );
    } else {
        let output = read_until(&bootstrap, OUTPUT, SETTLE, |o| {
            reached(&expected, &last_counts(o))
        });
        let steps = assert_final_counts_at_least(&input, &output);
        eprintln!(
            "{test}: {} input records, {} output records, counts went back {} and skipped {} \
             times; {:?} in all",
            input.len(),
            output.len(),
            steps.backs,
            steps.skips,
            started.elapsed()
        );
    }
    last.drain();
    assert!(
        !last.log().iter().any(|l| l.starts_with("failed")),
        "the last instance failed: {:?}",
        last.log()
    );
}

/// The transactional ids of the kill loop's exactly-once instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TransactionalIds {
    /// One id for every restart, set explicitly: each instance's InitProducerId aborts the
    /// transaction its killed predecessor left open, also when the predecessor ran on
    /// another state directory (the kill loop's fresh-directory rounds).
    OneForAllRestarts,
    /// The engine's default: `<app>-<process id>-<thread>`, the process id kept in the LMDB
    /// state directory, so the same across restarts on one directory. An instance on a new
    /// directory has a new id: the transaction a killed predecessor elsewhere left open ends
    /// only when the broker's transaction timeout expires it — never on crabka-broker 0.3.0,
    /// which stores `transaction_timeout_ms` and never enforces it (hence the kill loop's
    /// explicit id).
    EngineDefault,
}

#[test]
fn crabka_exactly_once_survives_repeated_sigkill() {
    bounded(|| survives_repeated_sigkill("exactly-once", TransactionalIds::OneForAllRestarts));
}

#[test]
fn crabka_at_least_once_survives_repeated_sigkill() {
    bounded(|| survives_repeated_sigkill("at-least-once", TransactionalIds::EngineDefault));
}

/// A restart ends the transaction the killed instance left open: an instance committing
/// every 3 s is SIGKILLed 1.5 s after a commit, with a transaction open that holds output
/// (read_uncommitted sees more than read_committed), then restarted on the same state
/// directory. With one transactional id for both, the restart's InitProducerId aborts that
/// transaction: read_committed output reaches every key's exact count, and the killed
/// transaction's output is seen by read_uncommitted only.
fn restart_ends_the_open_transaction(ids: TransactionalIds) {
    let started = Instant::now();
    let broker = Broker::crabka();
    broker.create_topic(INPUT, PARTITIONS);
    broker.create_topic(OUTPUT, PARTITIONS);
    let bootstrap = broker.bootstrap();
    let app = "e2e-eos-restart";
    let dir = tempfile::tempdir().unwrap();
    let mut args =
        CountInstanceArgs::new(&bootstrap, INPUT, OUTPUT, app, dir.path(), "exactly-once");
    args.session_timeout_ms = Some(SHORT_SESSION_MS);
    if ids == TransactionalIds::OneForAllRestarts {
        args.transactional_id = Some(format!("{app}-instance"));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let producer = produce_continuously(bootstrap.clone(), INPUT, KEYS, stop.clone());
    let mut killed_args = args.clone();
    killed_args.commit_interval_ms = 3_000;
    let mut killed = CountInstance::spawn("killed instance", &killed_args);
    assert!(
        killed.wait_line(WAIT, |l| l == "committed").is_some(),
        "the instance never committed: {:?}",
        killed.log()
    );
    std::thread::sleep(Duration::from_millis(1_500));
    killed.kill();
    // Nothing writes the output now: what read_uncommitted sees beyond read_committed is
    // the killed instance's open transaction.
    let committed = read_committed_until(&bootstrap, OUTPUT, SETTLE, |_| true);
    let open = read_uncommitted_until(&bootstrap, OUTPUT, SETTLE, |_| true).len() - committed.len();
    assert!(
        open > 0,
        "the killed instance's open transaction held output"
    );
    wait_group_empty(&bootstrap, app);
    let _restarted = CountInstance::spawn("restarted instance", &args);
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let input = producer.join().expect("the producer thread");
    let output = read_committed_until(&bootstrap, OUTPUT, SETTLE, |o| o.len() >= input.len());
    assert_counts_exact(&input, &output);
    let aborted = aborted_records(&bootstrap, &output);
    assert_eq!(
        aborted, open,
        "the open transaction was aborted, nothing else"
    );
    eprintln!(
        "restart ({ids:?}): the killed instance's open transaction held {open} records, \
         aborted; {} input records counted exactly once; {:?} in all",
        input.len(),
        started.elapsed()
    );
}

#[test]
fn crabka_exactly_once_restart_aborts_the_killed_instance_s_transaction() {
    bounded(|| restart_ends_the_open_transaction(TransactionalIds::OneForAllRestarts));
}

/// [`restart_ends_the_open_transaction`] with the engine's own transactional ids: they are
/// kept across restarts on the same state directory (io-common's process id file), so the
/// restarted instance's InitProducerId ends the transaction the killed one left open — on a
/// broker that never expires transactions (crabka-broker 0.3.0) read_committed readers would
/// otherwise be held up for good.
#[test]
fn crabka_exactly_once_restart_with_engine_transactional_ids_aborts_the_killed_instance_s_transaction()
 {
    bounded(|| restart_ends_the_open_transaction(TransactionalIds::EngineDefault));
}

/// A zombie: instances A and B (processes of their own) share the input; A is stopped with
/// SIGSTOP with a transaction open that holds output, until the group dropped it and B runs
/// every task, then resumed with SIGCONT. Whatever A writes after it resumed belongs to a
/// generation that is over: once A learns so (a heartbeat refused, or its TxnOffsetCommit)
/// it aborts its transaction, and read_committed output stays every key's counts 1, 2, 3, …
/// exactly once; read_uncommitted shows that A's transaction held output. A either rejoins
/// the group or stops with a typed error; which one is printed.
fn fences_a_zombie() {
    let started = Instant::now();
    let broker = Broker::crabka();
    broker.create_topic(INPUT, PARTITIONS);
    broker.create_topic(OUTPUT, PARTITIONS);
    let bootstrap = broker.bootstrap();
    let app = "e2e-eos-zombie";
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let args = |dir: &tempfile::TempDir| {
        let mut args =
            CountInstanceArgs::new(&bootstrap, INPUT, OUTPUT, app, dir.path(), "exactly-once");
        args.session_timeout_ms = Some(SHORT_SESSION_MS);
        args
    };
    let stop = Arc::new(AtomicBool::new(false));
    let producer = produce_continuously(bootstrap.clone(), INPUT, KEYS, stop.clone());
    // A commits every 3 s: stopped 1.5 s after a commit, its transaction is open and holds
    // output (input comes every 0.1 s, and a fetch waits up to 0.5 s for it).
    let mut a_args = args(&dirs[0]);
    a_args.commit_interval_ms = 3_000;
    let mut a = CountInstance::spawn("A", &a_args);
    assert!(
        a.wait_line(WAIT, |l| l == "committed").is_some(),
        "A never committed: {:?}",
        a.log()
    );
    let mut b = CountInstance::spawn("B", &args(&dirs[1]));
    // Both run some of the tasks and B committed since it got them.
    let deadline = Instant::now() + WAIT;
    loop {
        let line = b.wait_line(Duration::from_millis(100), |_| true);
        a.drain();
        if line.as_deref() == Some("committed")
            && !a.owned_tasks().is_empty()
            && !b.owned_tasks().is_empty()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "A and B never shared the tasks: A {:?}, B {:?}",
            a.log(),
            b.log()
        );
    }
    eprintln!(
        "zombie: A runs {:?}, B runs {:?} after {:?}",
        a.owned_tasks(),
        b.owned_tasks(),
        started.elapsed()
    );
    assert!(
        a.wait_line(WAIT, |l| l == "committed").is_some(),
        "A stopped committing: {:?}",
        a.log()
    );
    std::thread::sleep(Duration::from_millis(1_500));
    a.signal("STOP");
    let stopped = Instant::now();
    // B takes every task once the group dropped A, and commits with them.
    let deadline = Instant::now() + WAIT;
    loop {
        let line = b.wait_line(Duration::from_millis(100), |_| true);
        if line.as_deref() == Some("committed") && b.owned_tasks().len() == PARTITIONS as usize {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B never took every task: {:?}",
            b.log()
        );
    }
    eprintln!(
        "zombie: B runs every task and committed {:?} after A was stopped",
        stopped.elapsed()
    );
    let progress_before = b.log().iter().filter(|l| *l == "committed").count();
    a.signal("CONT");
    // What becomes of A: it learns that its generation is over (a heartbeat or its
    // TxnOffsetCommit refused), aborts, and rejoins — or stops with an error.
    let outcome = a.wait_line(WAIT, |l| {
        l.starts_with("assigned") || l.starts_with("exit") || l.starts_with("failed")
    });
    a.drain();
    let a_lines_after: Vec<String> = a
        .log()
        .iter()
        .skip_while(|l| !l.starts_with("lost") && !l.starts_with("warning"))
        .cloned()
        .collect();
    eprintln!("zombie: A after SIGCONT: {outcome:?}; its lines since: {a_lines_after:?}");
    match outcome.as_deref() {
        Some(line) if line.starts_with("assigned") => {
            eprintln!(
                "zombie: A rejoined the group and runs {:?}",
                a.owned_tasks()
            )
        }
        Some(line) if line.starts_with("failed") || line.starts_with("exit") => {
            let status = a.wait_exit(WAIT);
            eprintln!("zombie: A stopped ({status:?}): {line}");
            assert!(
                line.contains("fenced") || line.contains("transaction"),
                "A stopped with an error that is not about its transaction: {line}"
            );
        }
        _ => panic!("A neither rejoined nor stopped: {:?}", a.log()),
    }
    stop.store(true, Ordering::Relaxed);
    let input = producer.join().expect("the producer thread");
    let output = read_committed_until(&bootstrap, OUTPUT, SETTLE, |o| o.len() >= input.len());
    assert_counts_exact(&input, &output);
    b.drain();
    let progress_after = b.log().iter().filter(|l| *l == "committed").count();
    let aborted = aborted_records(&bootstrap, &output);
    assert!(
        aborted > 0,
        "the zombie's open transaction held output, aborted since"
    );
    eprintln!(
        "zombie: {} input records, {} visible to read_committed, {aborted} more (aborted) to \
         read_uncommitted; B committed {} times after A resumed; {:?} in all",
        input.len(),
        output.len(),
        progress_after - progress_before,
        started.elapsed()
    );
}

#[test]
fn crabka_exactly_once_fences_a_zombie() {
    bounded(fences_a_zombie);
}

/// The key of the poison record of [`processing_error_aborts`].
const POISON: &str = "poison";

/// A processing error aborts the transaction: the input is counted and committed up to some
/// offsets (A), then an instance that fails on the key [`POISON`] — with a commit interval
/// longer than the test, so everything it does is one transaction — counts more input (B,
/// its output reaches the broker inside the transaction) and then the poison record. It
/// stops with the typed processing error, and:
/// - the group's committed offsets are still A's ends, and read_committed output is exactly
///   A's counts (nothing of the aborted transaction, however much of it read_uncommitted
///   sees);
/// - the transaction was ended, not left open: a record written to each output partition
///   afterwards is visible to read_committed;
/// - its LMDB store kept nothing of it: an instance without the poison check on the same
///   state directory counts B, the poison and what follows exactly once on top of A.
fn processing_error_aborts() {
    let started = Instant::now();
    let broker = Broker::crabka();
    broker.create_topic(INPUT, PARTITIONS);
    broker.create_topic(OUTPUT, PARTITIONS);
    let bootstrap = broker.bootstrap();
    let app = "e2e-eos-poison";
    let dir = tempfile::tempdir().unwrap();
    let args = |commit_interval_ms: u64, poison: bool| {
        let mut args =
            CountInstanceArgs::new(&bootstrap, INPUT, OUTPUT, app, dir.path(), "exactly-once");
        args.session_timeout_ms = Some(SHORT_SESSION_MS);
        args.commit_interval_ms = commit_interval_ms;
        args.fail_on_key = poison.then(|| POISON.to_owned());
        // One id for all three instances: each one's InitProducerId ends what the one
        // before left open (crabka-broker 0.3.0 never expires a transaction).
        args.transactional_id = Some(format!("{app}-instance"));
        args
    };
    // A: counted and committed.
    let a = numbered_input(0, 400, KEYS);
    let a_offsets = produce(&bootstrap, INPUT, &a);
    let mut first = CountInstance::spawn("first instance", &args(200, true));
    let output = read_committed_until(&bootstrap, OUTPUT, SETTLE, |o| o.len() >= a.len());
    assert_counts_exact(&a, &output);
    first.kill();
    wait_group_empty(&bootstrap, app);

    // B, then the poison and more: one transaction, aborted.
    let mut failing = CountInstance::spawn("failing instance", &args(600_000, true));
    let b = numbered_input(a.len(), 200, KEYS);
    produce(&bootstrap, INPUT, &b);
    let uncommitted = read_uncommitted_until(&bootstrap, OUTPUT, Duration::ZERO, |o| {
        o.len() >= a.len() + b.len()
    });
    assert!(uncommitted.len() >= a.len() + b.len());
    let poison: Input = (1, POISON.as_bytes().to_vec(), b"1:poison".to_vec());
    let rest = numbered_input(a.len() + b.len(), 100, KEYS);
    produce(&bootstrap, INPUT, std::slice::from_ref(&poison));
    produce(&bootstrap, INPUT, &rest);
    let status = failing.wait_exit(WAIT);
    let failure = failing
        .log()
        .iter()
        .find(|l| l.starts_with("exit error"))
        .cloned();
    eprintln!("poison: the failing instance ended {status:?} with {failure:?}");
    assert!(
        status.is_some_and(|s| !s.success()),
        "the failing instance did not stop with an error: {status:?}, {:?}",
        failing.log()
    );
    let failure = failure.unwrap_or_default();
    assert!(
        failure.starts_with("exit error processing") && failure.contains(POISON),
        "not the poison's processing error: {failure}"
    );

    let committed: Vec<rdkafka::Offset> = committed_offsets(&bootstrap, app, INPUT);
    let a_ends = end_offsets(&a, &a_offsets);
    assert_eq!(
        committed,
        a_ends
            .iter()
            .map(|&o| rdkafka::Offset::Offset(o))
            .collect::<Vec<_>>(),
        "the group's offsets are still those committed before the poison"
    );
    // A marker after the aborted transaction in every output partition: read_committed
    // reaches it only if the transaction was ended.
    let markers: Vec<Input> = (0..PARTITIONS)
        .map(|p| (p, b"marker".to_vec(), 0_i64.to_be_bytes().to_vec()))
        .collect();
    produce(&bootstrap, OUTPUT, &markers);
    let is_marker = |o: &Output| o.key == b"marker";
    let visible = read_committed_until(&bootstrap, OUTPUT, SETTLE, |o| {
        o.iter().filter(|o| is_marker(o)).count() == markers.len()
    });
    let visible: Vec<Output> = visible.into_iter().filter(|o| !is_marker(o)).collect();
    assert_counts_exact(&a, &visible);
    let everything = read_uncommitted_until(&bootstrap, OUTPUT, SETTLE, |o| {
        o.iter().filter(|o| is_marker(o)).count() == markers.len()
    });
    let aborted = everything.len() - markers.len() - visible.len();
    assert!(
        aborted >= b.len(),
        "B's output reached the broker in the aborted transaction: {aborted} aborted records"
    );
    wait_group_empty(&bootstrap, app);

    // The store rolled back: counting resumes from A's committed state.
    let _last = CountInstance::spawn("last instance", &args(200, false));
    let all: Vec<Input> = a
        .iter()
        .chain(&b)
        .chain(std::iter::once(&poison))
        .chain(&rest)
        .cloned()
        .collect();
    let output = read_committed_until(&bootstrap, OUTPUT, SETTLE, |o| {
        o.iter().filter(|o| !is_marker(o)).count() >= all.len()
    });
    let output: Vec<Output> = output.into_iter().filter(|o| !is_marker(o)).collect();
    assert_counts_exact(&all, &output);
    eprintln!(
        "poison: {} records of the aborted transaction seen by read_uncommitted only; \
         {:?} in all",
        aborted,
        started.elapsed()
    );
}

#[test]
fn crabka_exactly_once_processing_error_aborts() {
    bounded(processing_error_aborts);
}
