//! Seeded runs of whole flows: for each seed, a random cluster (1–3 brokers, 1–4 input and
//! output partitions), random input fed over time, 1–3 engines of the tag topology (see
//! [`kstreams_tests::harness::tagged`]) with random batch sizes and commit intervals, random
//! broker errors and disconnects, up to three cluster events (a broker down for a while, a
//! partition leader or the group coordinator moved), and maybe one engine closed or dropped
//! mid-run, or all of them closed and replaced by new ones (a restart); random session timeouts
//! and both answers brokers give to a duplicate idempotent batch.
//!
//! Invariants, checked after every request the simulator serves (the [`Audit`]) and at the end:
//! - commits never ahead of acknowledged output: committed offset `C` of an input partition
//!   means every input record below `C` has its output in the output topic;
//! - no record lost and order kept: the first output of each input record comes in input order
//!   without gaps (so after removing replays, every input partition's outputs are exactly its
//!   records in order);
//! - committed input is never processed again (a duplicate output that lands after its input
//!   was committed, from a member removed from the group while its output was on the way, is
//!   counted in `late_duplicates`, not a violation: it was processed before the commit);
//! - eventually every input offset is committed, and no engine failed.
//!
//! `ENGINE_SEEDS=<n>` changes the number of seeds (default 1000), `ENGINE_SEED_START=<s>` the
//! first one (default 0); `ENGINE_SEED=<s>` runs one seed and prints its description, and
//! with `ENGINE_TRACE=1` (and `RUST_LOG`) what happened in it (see `trace_cluster`).

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;

use kstreams_core::engine::{EngineState, Event};
use kstreams_core::record::TopicPartition;
use kstreams_tests::harness::Harness;
use kstreams_tests::harness::tagged::*;
use kstreams_tests::sim::{DuplicateReply, RandomFaults, SimCluster};

/// SplitMix64, for the scenario (the simulator has its own generator from the same seed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// Something that happens to the cluster mid-run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chaos {
    /// The broker goes down for this long.
    BrokerDown { broker: i32, for_ms: i64 },
    /// The broker comes back (scheduled by `BrokerDown`).
    BrokerUp { broker: i32 },
    /// Partition `partition` of the input (`input`) or output topic gets a new leader.
    MoveLeader {
        input: bool,
        partition: i32,
        to: i32,
    },
    /// The group coordinator moves.
    MoveCoordinator { to: i32 },
}

/// What happens to one engine mid-run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    Close,
    /// Every engine closes; as many new ones start (same application id) 2 s later.
    RestartAll,
    Drop,
}

#[derive(Debug)]
struct Scenario {
    brokers: usize,
    input_partitions: i32,
    output_partitions: i32,
    initial: i64,
    target: i64,
    chunk: i64,
    feed_every_ms: i64,
    engine_starts: Vec<i64>,
    max_batch_records: usize,
    max_batches_per_poll: usize,
    max_queued: usize,
    commit_interval_ms: i64,
    linger_ms: i64,
    fetch_wait_ms: i32,
    session_timeout_ms: i32,
    heartbeat_divisor: i64,
    duplicate_reply_original_offset: bool,
    rebalance_delay_ms: i64,
    faults: Option<RandomFaults>,
    exit: Option<(i64, usize, Exit)>,
    chaos: Vec<(i64, Chaos)>,
}

impl Scenario {
    fn from_seed(seed: u64) -> Self {
        let mut r = Rng(seed ^ 0xA5A5_5A5A_0F0F_F0F0);
        let engines = r.range(1, 3) as usize;
        let initial = r.range(0, 12);
        let faults = r.chance(75).then(|| RandomFaults {
            error_probability: r.range(0, 150) as f64 / 1000.0,
            disconnect_probability: r.range(0, 50) as f64 / 1000.0,
        });
        let brokers = r.range(1, 3);
        let input_partitions = r.range(1, 4) as i32;
        let output_partitions = r.range(1, 4) as i32;
        let chaos = (0..r.range(0, 3))
            .map(|_| {
                let at = r.range(0, 8_000);
                let broker = r.range(0, brokers - 1) as i32;
                let what = match r.range(0, 2) {
                    0 => Chaos::BrokerDown {
                        broker,
                        for_ms: r.range(100, 8_000),
                    },
                    1 => {
                        let input = r.chance(50);
                        let count = if input {
                            input_partitions
                        } else {
                            output_partitions
                        };
                        Chaos::MoveLeader {
                            input,
                            partition: r.range(0, i64::from(count) - 1) as i32,
                            to: broker,
                        }
                    }
                    _ => Chaos::MoveCoordinator { to: broker },
                };
                (at, what)
            })
            .collect();
        let exit = r.chance(60).then(|| {
            let how = match r.range(0, 2) {
                0 => Exit::Close,
                1 => Exit::Drop,
                _ => Exit::RestartAll,
            };
            (r.range(500, 6_000), r.below(engines), how)
        });
        Self {
            brokers: brokers as usize,
            input_partitions,
            output_partitions,
            initial,
            target: initial + r.range(0, 15),
            chunk: r.range(1, 4),
            feed_every_ms: r.range(50, 600),
            engine_starts: (0..engines).map(|_| r.range(0, 3_000)).collect(),
            max_batch_records: r.range(1, 8) as usize,
            max_batches_per_poll: r.range(1, 8) as usize,
            max_queued: r.range(1, 20) as usize,
            commit_interval_ms: r.range(50, 2_000),
            linger_ms: r.range(0, 20),
            fetch_wait_ms: r.range(10, 500) as i32,
            session_timeout_ms: r.range(6_000, 15_000) as i32,
            heartbeat_divisor: r.range(3, 6),
            duplicate_reply_original_offset: r.chance(50),
            rebalance_delay_ms: if r.chance(50) { 0 } else { 1_000 },
            faults,
            exit,
            chaos,
        }
    }
}

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Applies a chaos event.
fn apply_chaos(h: &mut Harness, event: Chaos) {
    let result = match event {
        Chaos::BrokerDown { broker, .. } => h.sim.broker_down(broker),
        Chaos::BrokerUp { broker } => h.sim.broker_up(broker),
        Chaos::MoveLeader {
            input,
            partition,
            to,
        } => {
            let topic = if input { INPUT } else { OUTPUT };
            h.sim
                .move_leader(&TopicPartition::new(topic, partition), to)
        }
        Chaos::MoveCoordinator { to } => h.sim.move_coordinator(APP, to),
    };
    result.expect("chaos event applies");
}

/// `ENGINE_TRACE`: logs (`RUST_LOG`, e.g. `kstreams_core=debug`; each line names the engine
/// and the simulated time) and, after every request served, any change of the group (state,
/// generation, coordinator, members) or of the committed offsets, and each new output record
/// with its producer id; every engine event is printed at the end.
fn trace_cluster(h: &mut Harness, audit: &Rc<RefCell<Audit>>, inputs: i32, outputs: i32) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_ansi(false)
        .try_init();
    let audit = Rc::clone(audit);
    let mut last = String::new();
    let mut printed = vec![0; outputs as usize];
    h.set_observer(Box::new(move |sim| {
        let members: Vec<String> = sim
            .group_members(APP)
            .into_iter()
            .map(|m| m.member_id)
            .collect();
        let committed: Vec<Option<i64>> = (0..inputs).map(|p| committed(sim, p)).collect();
        let now = format!(
            "group {:?} generation {:?} coordinator {:?} members {members:?} committed {committed:?}",
            sim.group_state(APP),
            sim.group_generation(APP),
            sim.coordinator_of(APP),
        );
        if now != last {
            println!("cluster at {}: {now}", sim.now());
            last = now;
        }
        for (q, printed) in printed.iter_mut().enumerate() {
            let log = sim.read_log(OUTPUT, q as i32).unwrap_or_default();
            for r in log.iter().skip(*printed) {
                println!(
                    "output {q}@{} at {}: {:?} from producer {}",
                    r.offset,
                    sim.now(),
                    tag_of(r),
                    r.producer_id
                );
            }
            *printed = log.len();
        }
        audit.borrow_mut().check(sim)
    }));
}

/// Runs one seed; `Err` describes the broken invariant and the run.
fn run_seed(seed: u64) -> Result<Stats, String> {
    let s = Scenario::from_seed(seed);
    let mut sim = SimCluster::new(seed, s.brokers);
    sim.create_topic(INPUT, s.input_partitions)
        .map_err(|e| e.to_string())?;
    sim.create_topic(OUTPUT, s.output_partitions)
        .map_err(|e| e.to_string())?;
    sim.config_mut().group.initial_rebalance_delay_ms = s.rebalance_delay_ms;
    if s.duplicate_reply_original_offset {
        sim.config_mut().duplicate_reply = DuplicateReply::OriginalOffset;
    }
    produce_all(&mut sim, s.input_partitions, s.initial);
    sim.set_random_faults(s.faults);
    let mut h = Harness::new(sim, T0);
    let audit = install_audit(&mut h, s.input_partitions, s.output_partitions);
    if std::env::var("ENGINE_TRACE").is_ok() {
        trace_cluster(&mut h, &audit, s.input_partitions, s.output_partitions);
    }
    let mut feeder = Feeder::new(
        s.input_partitions,
        s.initial,
        s.target,
        s.chunk,
        s.feed_every_ms,
    );
    let mut config = flow_config();
    config.max_batch_records = s.max_batch_records;
    config.max_batches_per_poll = s.max_batches_per_poll;
    config.max_queued_records_per_partition = s.max_queued;
    config.commit_interval_ms = s.commit_interval_ms;
    config.producer.linger_ms = s.linger_ms;
    config.fetch.max_wait_ms = s.fetch_wait_ms;
    config.session_timeout_ms = s.session_timeout_ms;
    config.heartbeat_interval_ms = i64::from(s.session_timeout_ms) / s.heartbeat_divisor;
    // The bootstrap list names only brokers that exist.
    config.bootstrap_servers = (0..s.brokers as i32)
        .map(|b| format!("sim-{b}:{}", 9092 + b))
        .collect();
    let mut pending_starts: Vec<(i64, Option<usize>)> = s
        .engine_starts
        .iter()
        .enumerate()
        .map(|(i, &t)| (T0 + t, Some(i)))
        .collect();
    let mut exit = s.exit.map(|(t, i, how)| (T0 + t, i, how));
    let n = vec![s.target; s.input_partitions as usize];
    // Chaos events (and broker restarts) by time, latest first.
    let mut chaos: Vec<(i64, Chaos)> = Vec::new();
    for &(at, c) in &s.chaos {
        chaos.push((T0 + at, c));
        if let Chaos::BrokerDown { broker, for_ms } = c {
            chaos.push((T0 + at + for_ms, Chaos::BrokerUp { broker }));
        }
    }
    chaos.sort_by_key(|&(at, _)| std::cmp::Reverse(at));
    // Slot index of each scenario engine once started.
    let mut slots: Vec<Option<usize>> = vec![None; s.engine_starts.len()];
    let done = h.run_until(600_000, |h| {
        feeder.feed(h);
        pending_starts.retain(|&(at, which)| {
            if h.now < at {
                return true;
            }
            let slot = h.add(engine(config.clone(), h.now));
            if let Some(i) = which {
                slots[i] = Some(slot);
            }
            false
        });
        if let Some((at, i, how)) = exit
            && h.now >= at
            && let Some(slot) = slots[i]
        {
            exit = None;
            match how {
                Exit::Close => h.close_engine(slot),
                Exit::Drop => h.drop_engine(slot),
                Exit::RestartAll => {
                    for j in 0..h.engines.len() {
                        if h.engines[j].is_live() {
                            h.close_engine(j);
                            pending_starts.push((h.now + 2_000, None));
                        }
                    }
                }
            }
            // With no other engine left or coming, a replacement starts.
            let others = h
                .engines
                .iter()
                .enumerate()
                .any(|(j, e)| j != slot && e.is_live());
            if !others && pending_starts.is_empty() {
                pending_starts.push((h.now + 1_000, None));
            }
        }
        while chaos.last().is_some_and(|&(at, _)| h.now >= at) {
            if let Some((_, event)) = chaos.pop() {
                apply_chaos(h, event);
            }
        }
        feeder.finished()
            && chaos.is_empty()
            && pending_starts.is_empty()
            && exit.is_none()
            && committed_at_least(&h.sim, &n)
    });
    if std::env::var("ENGINE_TRACE").is_ok() {
        for (i, e) in h.engines.iter().enumerate() {
            for (at, event) in &e.events {
                println!("engine {i} at {at}: {event:?}");
            }
        }
    }
    let describe_all =
        |h: &Harness| format!("seed {seed}: {s:?}\n{}", describe(h, s.input_partitions));
    if !done {
        return Err(format!("run did not complete\n{}", describe_all(&h)));
    }
    if let Some((i, slot)) = h
        .engines
        .iter()
        .enumerate()
        .find(|(_, e)| e.engine.state() == EngineState::Error)
    {
        return Err(format!(
            "engine {i} failed: {:?}\n{}",
            slot.failure(),
            describe_all(&h)
        ));
    }
    let audit = audit.borrow();
    let checked = catch_unwind(AssertUnwindSafe(|| {
        audit.assert_complete(&n);
        assert_at_least_once(&h.sim, &n, &vec![0; n.len()]);
        assert!(all_committed(&h.sim, &n), "committed beyond the input");
    }));
    if let Err(panic) = checked {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        return Err(format!("{message}\n{}", describe_all(&h)));
    }
    let mut stats = Stats {
        sim_ms: h.now - T0,
        duplicates: audit.duplicates,
        late_duplicates: audit.late_duplicates.len(),
        records: s.target * i64::from(s.input_partitions),
        ..Stats::default()
    };
    stats.disconnects = h.engines.iter().map(|e| e.disconnects).sum();
    for (_, e) in h.engines.iter().flat_map(|e| &e.events) {
        match e {
            Event::Warning(w) => {
                stats.warnings += 1;
                if std::env::var("ENGINE_WARNINGS").is_ok() {
                    println!("seed {seed} warning: {w}");
                }
            }
            Event::TasksRevoked(_) => stats.revokes += 1,
            Event::TasksLost(_) => stats.losses += 1,
            _ => {}
        }
    }
    Ok(stats)
}

/// What a seed went through, summed over seeds and printed (`--nocapture`).
#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    sim_ms: i64,
    records: i64,
    duplicates: usize,
    late_duplicates: usize,
    warnings: usize,
    revokes: usize,
    losses: usize,
    disconnects: usize,
}

impl std::ops::AddAssign for Stats {
    fn add_assign(&mut self, o: Self) {
        self.sim_ms += o.sim_ms;
        self.records += o.records;
        self.duplicates += o.duplicates;
        self.late_duplicates += o.late_duplicates;
        self.warnings += o.warnings;
        self.revokes += o.revokes;
        self.losses += o.losses;
        self.disconnects += o.disconnects;
    }
}

#[test]
fn seeded_flows_keep_every_record_in_order_and_commit_behind_output() {
    if let Ok(seed) = std::env::var("ENGINE_SEED") {
        let seed: u64 = seed.parse().expect("ENGINE_SEED is a number");
        match run_seed(seed) {
            Ok(stats) => println!("{:?}\n{stats:?}", Scenario::from_seed(seed)),
            Err(e) => panic!("{e}"),
        }
        return;
    }
    let seeds: u64 = std::env::var("ENGINE_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000);
    let first: u64 = std::env::var("ENGINE_SEED_START")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut failures = Vec::new();
    let mut total = Stats::default();
    for seed in first..first + seeds {
        let result = catch_unwind(AssertUnwindSafe(|| run_seed(seed)));
        match result {
            Ok(Ok(stats)) => total += stats,
            Ok(Err(e)) => failures.push((seed, e)),
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push((seed, format!("panicked: {message}")));
            }
        }
    }
    println!("{seeds} seeds: {total:?}");
    if let Some((seed, first)) = failures.first() {
        let failed: Vec<u64> = failures.iter().map(|(s, _)| *s).collect();
        panic!(
            "{} of {seeds} seeds failed: {failed:?}\nfirst (seed {seed}, rerun with ENGINE_SEED={seed}):\n{first}",
            failures.len(),
        );
    }
}
