//! A rolling restart on a real broker (crabka-broker 0.3.0), cooperative vs eager, in one test.
//!
//! Three instances (each a `KafkaStreams` in this process with its own state directory) count
//! per key on a logged memory store (`counts`, changelog `<app>-counts-changelog`), six input
//! partitions (two tasks each). An independent rdkafka producer first writes
//! [`STATE_KEYS_PER_PARTITION`] distinct keys to every partition (the state), then one record
//! to every input partition every [`SEND_EVERY`] for the whole run. Each instance in turn is
//! closed (a dynamic member: it commits and sends LeaveGroup), the two others take over its
//! tasks, and it is started again under the same state directory and gets two tasks back
//! (after warming them up: the state-aware assignor moves a task to an instance without its
//! state at a probing rebalance, here every second, once a warm-up replica caught up).
//! The same scenario runs with [`RebalanceProtocol::Cooperative`] (the default) and
//! [`RebalanceProtocol::Eager`], each with its own topics and application id.
//!
//! Checked, for each protocol:
//! - **Counts exact.** The output holds for every key the counts 1, 2, 3, … up to the key's
//!   number of input records, each once, in one output partition (at-least-once with clean
//!   closes: every task that moves was committed before it moved, so nothing is processed
//!   twice). The moved tasks carry their counts through the changelog: a memory store starts
//!   empty on its new instance.
//! - **Staying tasks keep running.** A task on an instance that is not being restarted, on
//!   that instance before the restart and after it (a *staying task*), is watched through a
//!   processor in the topology that notes the wall-clock time of every record the task
//!   counts. Its longest pause between two records during the restart (from before the close
//!   until every task ran again and processed a record) must stay below
//!   [`cooperative_gap_bound`] under cooperative rebalancing, where the staying task is never
//!   revoked (also asserted, from the engine's events). Under eager rebalancing every task
//!   stops at each of the two rebalances of a restart; cooperative's worst staying-task gap
//!   must be below eager's.
//!
//! Why memory stores: the pause of an eager staying task includes restoring its store (a
//! memory store restores its whole changelog), the cost cooperative rebalancing avoids; and a
//! memory store keeps the disk's flush latency (LMDB commits) out of the measured gaps.
//! Why dynamic members: a static member restarted within the session timeout causes no
//! rebalance under either protocol (`e2e_static.rs`); the difference between the protocols
//! shows when tasks move.
//!
//! The figures (gaps per staying task and restart, rebalances seen) are printed to stderr
//! (`cargo test -p kstreams-tests --test e2e_rolling_restart -- --nocapture`).

mod e2e_support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e_support::*;
use kstreams_core::engine::{Event, RebalanceProtocol};
use kstreams_core::prelude::*;
use kstreams_io_common::{Stores, StreamsHandle};
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;

/// Input partitions: two tasks per instance.
const INPUT_PARTITIONS: i32 = 6;
/// The instances, restarted in this order.
const INSTANCES: [&str; 3] = ["a", "b", "c"];
/// The producer writes one record to every input partition this often.
const SEND_EVERY: Duration = Duration::from_millis(20);
/// Keys per input partition of the continuous input.
const KEYS_PER_PARTITION: usize = 25;
/// Keys per input partition written once before the instances start: the state a task
/// restores when it moves (and, under eager rebalancing, at every rebalance). Sized so that
/// restoring it takes a few hundred milliseconds in either build (the release build restores
/// about five times faster), well above a commit's pause.
const STATE_KEYS_PER_PARTITION: usize = if cfg!(debug_assertions) {
    20_000
} else {
    100_000
};
/// After every task ran again, the window of a restart goes on this long (a staying task's
/// gap that began before is then measured to its end).
const SETTLE: Duration = Duration::from_millis(500);

/// The longest a cooperative staying task may pause during a restart: one heartbeat interval
/// of the engines' configuration (`fast_engine_config`: 1 s heartbeats, 200 ms commits, 6 s
/// sessions).
///
/// A cooperative staying task never waits for the group: it keeps processing while its
/// instance rejoins, syncs, and revokes the moved tasks. The group protocol's waits are paced
/// by the heartbeat interval (a member learns of a rebalance at its next heartbeat, or
/// sooner from a commit's answer, and the coordinator answers the JoinGroup once the last
/// member rejoined), so anything the protocol can hold a staying task for ends within one
/// heartbeat interval: a commit that began flushing just before the JoinGroup answer waits
/// for the SyncGroup answer (docs/decisions.md §18, gap (2)). What else stops it is shorter:
/// a commit (every commit interval, 200 ms, and the revoke of the moved tasks, which commits
/// every task) holds processing for a few round trips; the moved tasks restore on the same
/// stream thread, a batch of up to 8 MiB at a time (their ~20,000 keys are one); the input brings a record for
/// every partition every [`SEND_EVERY`]. Measured (load average 3–7 on 2 cores): 100–250 ms
/// in the debug build, 60–70 ms in the release build.
///
/// An eager staying task is revoked at both rebalances of a restart and waits each time for
/// the revoke commit, every member's rejoin, the sync, its offsets and the restore of its
/// store from the changelog (a memory store restores all of it): 330–830 ms measured in the
/// debug build, 270–450 ms in the release build (with its larger state). The members'
/// heartbeats are in step (each restarts its heartbeat timer when the group syncs), so the
/// wait for every member's rejoin is short: the restores make most of the difference.
fn cooperative_gap_bound(config: &kstreams_core::engine::EngineConfig) -> Duration {
    let heartbeat = config.heartbeat_interval.to_std();
    assert!(
        config.commit_interval.to_std() < heartbeat && heartbeat < config.session_timeout.to_std(),
        "the bound's reasoning needs commits more often than heartbeats"
    );
    heartbeat
}

/// When each instance counted a record of each input partition.
#[derive(Default)]
struct Probe {
    times: Mutex<BTreeMap<(String, i32), Vec<Instant>>>,
}

impl Probe {
    fn note(&self, instance: &str, partition: i32) {
        self.times
            .lock()
            .expect("not poisoned")
            .entry((instance.to_owned(), partition))
            .or_default()
            .push(Instant::now());
    }

    /// The longest pause of `instance`'s task `partition` between `from` and `to`: between
    /// consecutive records, from the last record before `from`, and from the last record to
    /// `to`.
    fn longest_gap(&self, instance: &str, partition: i32, from: Instant, to: Instant) -> Duration {
        let times = self.times.lock().expect("not poisoned");
        let Some(times) = times.get(&(instance.to_owned(), partition)) else {
            return to - from;
        };
        let first = times.partition_point(|t| *t < from);
        let mut previous = if first > 0 { times[first - 1] } else { from };
        let mut longest = Duration::ZERO;
        for t in times[first..].iter().take_while(|t| **t <= to) {
            longest = longest.max(*t - previous);
            previous = *t;
        }
        longest.max(to.saturating_duration_since(previous))
    }

    /// Records of `partition` counted by any instance so far.
    fn counted(&self, partition: i32) -> usize {
        self.times
            .lock()
            .expect("not poisoned")
            .iter()
            .filter(|((_, p), _)| *p == partition)
            .map(|(_, times)| times.len())
            .sum()
    }

    /// Whether `instance` counted a record of `partition` after `since`.
    fn counted_since(&self, instance: &str, partition: i32, since: Instant) -> bool {
        self.times
            .lock()
            .expect("not poisoned")
            .get(&(instance.to_owned(), partition))
            .and_then(|times| times.last())
            .is_some_and(|t| *t > since)
    }
}

/// A task move an instance's engine reported.
#[derive(Debug, Clone)]
struct Move {
    at: Instant,
    instance: String,
    what: &'static str,
    partitions: Vec<i32>,
}

/// What every instance's engine reported: task moves and generations synced.
#[derive(Default)]
struct Events {
    moves: Mutex<Vec<Move>>,
    syncs: Mutex<Vec<(Instant, String, i32)>>,
}

/// `input` → count per key (logged memory store `counts`) → note the task's progress →
/// `output`.
fn topology(input: &str, output: &str, probe: Arc<Probe>, instance: &str) -> Topology {
    let instance = instance.to_owned();
    let mut b = TopologyBuilder::new();
    let src = b
        .add_source("src", &[input], StringSerde, StringSerde)
        .unwrap();
    let count = b
        .add_processor("count", &[&src], BatchCountAggregator::supplier("counts"))
        .unwrap();
    b.add_store(
        StoreBuilder::key_value("counts", StringSerde, I64Serde).with_logging(true),
        &["count"],
    )
    .unwrap();
    let noted = b
        .peek("progress", &count, move |r: &Record<String, i64>| {
            probe.note(&instance, partition_of_key(&r.key));
        })
        .unwrap();
    b.add_sink("sink", output, &[&noted], StringSerde, I64Serde)
        .unwrap();
    b.build().unwrap()
}

/// The input partition of a key `p<partition>-k<i>`.
fn partition_of_key(key: &str) -> i32 {
    key.strip_prefix('p')
        .and_then(|rest| rest.split_once('-'))
        .and_then(|(p, _)| p.parse().ok())
        .unwrap_or_else(|| panic!("key `{key}` is not p<partition>-k<i>"))
}

/// One run of the scenario: its broker, topics, application and observers.
struct Run<'a> {
    broker: &'a Broker,
    protocol: RebalanceProtocol,
    app: String,
    input: String,
    output: String,
    state: tempfile::TempDir,
    probe: Arc<Probe>,
    events: Arc<Events>,
}

impl Run<'_> {
    fn start(&self, instance: &str) -> StreamsHandle {
        let mut config = streams_config(self.broker, &self.app, &self.state.path().join(instance));
        config.engine.rebalance_protocol = self.protocol;
        // The restarted instance (a memory store: no state) first warms up the tasks the
        // state-aware assignor keeps on the instances that have their state, and takes them
        // at the next probing rebalance (decisions §19): probe every second, so a restart
        // ends within seconds rather than Kafka Streams' 10 minutes.
        config.engine.probing_rebalance_interval = kstreams_core::time::Duration::from_secs(1);
        let topology = topology(&self.input, &self.output, self.probe.clone(), instance);
        let mut streams = kstreams_tokio::KafkaStreams::new(topology, config, Stores::Memory)
            .expect("the application");
        let events = self.events.clone();
        let name = instance.to_owned();
        streams.set_event_listener(move |_, event| {
            let (what, tasks) = match event {
                Event::TasksAssigned(t) => ("assigned", t),
                Event::TasksRevoked(t) => ("revoked", t),
                Event::TasksLost(t) => ("lost", t),
                Event::GroupSynced { generation, .. } => {
                    events.syncs.lock().expect("not poisoned").push((
                        Instant::now(),
                        name.clone(),
                        *generation,
                    ));
                    return;
                }
                _ => return,
            };
            events.moves.lock().expect("not poisoned").push(Move {
                at: Instant::now(),
                instance: name.clone(),
                what,
                partitions: tasks.iter().map(|t| t.partition).collect(),
            });
        });
        streams.start().expect("started")
    }
}

/// The tasks (input partitions) `handle` runs and has restored.
fn running_tasks(handle: &StreamsHandle) -> BTreeSet<i32> {
    handle
        .local_thread_metadata()
        .into_iter()
        .flat_map(|t| {
            let restoring: BTreeSet<_> = t.restoring_tasks.iter().map(|t| t.partition).collect();
            t.active_tasks
                .into_iter()
                .map(|t| t.partition)
                .filter(move |p| !restoring.contains(p))
        })
        .collect()
}

/// Waits until the instances in `running` run every task, each task on one instance, each
/// instance `per_instance` of them, and each task counted a record on its instance after that
/// (so it runs, not only is assigned); returns the tasks per instance.
fn wait_balanced(
    running: &BTreeMap<&'static str, StreamsHandle>,
    probe: &Probe,
    feed: &Feed,
    per_instance: usize,
    what: &str,
) -> BTreeMap<&'static str, BTreeSet<i32>> {
    let deadline = Instant::now() + WAIT;
    let (tasks, assigned_at) = loop {
        let tasks: BTreeMap<&'static str, BTreeSet<i32>> = running
            .iter()
            .map(|(name, handle)| (*name, running_tasks(handle)))
            .collect();
        let all: Vec<i32> = tasks.values().flatten().copied().collect();
        let distinct: BTreeSet<i32> = all.iter().copied().collect();
        if all.len() == INPUT_PARTITIONS as usize
            && distinct.len() == all.len()
            && tasks.values().all(|t| t.len() == per_instance)
        {
            break (tasks, Instant::now());
        }
        feed.check();
        for (name, handle) in running {
            let state = handle.state();
            assert!(!state.is_terminal(), "instance {name} stopped: {state:?}");
        }
        assert!(
            Instant::now() < deadline,
            "{what}: tasks not balanced after {WAIT:?}: {tasks:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    loop {
        let idle: Vec<(&str, i32)> = tasks
            .iter()
            .flat_map(|(name, t)| t.iter().map(move |p| (*name, *p)))
            .filter(|(name, p)| !probe.counted_since(name, *p, assigned_at))
            .collect();
        if idle.is_empty() {
            return tasks;
        }
        feed.check();
        assert!(
            Instant::now() < deadline,
            "{what}: tasks assigned but not counting after {WAIT:?}: {idle:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The input: first [`STATE_KEYS_PER_PARTITION`] distinct keys per partition, then one record
/// to every input partition every [`SEND_EVERY`] until stopped, from an rdkafka producer on a
/// thread of its own.
struct Feed {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<Input>>,
}

impl Feed {
    fn start(bootstrap: String, topic: String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || produce(&bootstrap, &topic, &stop))
        };
        Self { stop, thread }
    }

    /// Fails the test if the producer stopped on its own (it panicked).
    fn check(&self) {
        assert!(
            !self.thread.is_finished() || self.stop.load(Ordering::Relaxed),
            "the input producer stopped (see its panic above)"
        );
    }

    /// Stops the producer; returns every record produced (all acknowledged), in order.
    fn stop(self) -> Vec<Input> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the input producer")
    }
}

fn produce(bootstrap: &str, topic: &str, stop: &AtomicBool) -> Vec<Input> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "2")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("input producer");
    let mut sent = Vec::new();
    let mut deliveries = Vec::new();
    let mut send = |p: i32, key: String, value: String| {
        let delivery = loop {
            match producer.send_result(
                FutureRecord::to(topic)
                    .partition(p)
                    .key(&key)
                    .payload(&value),
            ) {
                Ok(delivery) => break delivery,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err((e, _)) => panic!("enqueue failed: {e}"),
            }
        };
        deliveries.push(delivery);
        sent.push((p, key.into_bytes(), value.into_bytes()));
    };
    for i in 0..STATE_KEYS_PER_PARTITION {
        for p in 0..INPUT_PARTITIONS {
            send(p, format!("p{p}-s{i}"), format!("{p}:s{i}"));
        }
    }
    let mut next = Instant::now();
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        for p in 0..INPUT_PARTITIONS {
            send(
                p,
                format!("p{p}-k{}", n % KEYS_PER_PARTITION),
                format!("{p}:{n}"),
            );
        }
        n += 1;
        next += SEND_EVERY;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    for delivery in deliveries {
        futures_lite::future::block_on(delivery)
            .expect("delivery future dropped")
            .unwrap_or_else(|(e, _)| panic!("delivery failed: {e}"));
    }
    sent
}

/// The longest pause of each staying task during one restart: `(instance, task) → gap`.
type Gaps = BTreeMap<(&'static str, i32), Duration>;

/// Whether task `partition` of `instance` is one of the staying tasks in `gaps`.
fn staying(gaps: &Gaps, instance: &str, partition: i32) -> bool {
    gaps.keys().any(|(i, p)| *i == instance && *p == partition)
}

/// What one protocol's run measured.
struct Figures {
    protocol: RebalanceProtocol,
    /// Per restarted instance, its staying tasks' longest gaps.
    restarts: Vec<(&'static str, Gaps)>,
    /// The longest gap of any task before the first restart (the input's pace and commits).
    steady: Duration,
}

impl Figures {
    fn worst(&self) -> Duration {
        self.restarts
            .iter()
            .flat_map(|(_, gaps)| gaps.values())
            .copied()
            .max()
            .unwrap_or_default()
    }
}

fn rolling_restart(broker: &Broker, protocol: RebalanceProtocol) -> Figures {
    let name = format!("{protocol:?}").to_lowercase();
    let run = Run {
        broker,
        protocol,
        app: format!("rolling-{name}"),
        input: format!("rolling-{name}-in"),
        output: format!("rolling-{name}-out"),
        state: tempfile::tempdir().expect("state dir"),
        probe: Arc::default(),
        events: Arc::default(),
    };
    broker.create_topic(&run.input, INPUT_PARTITIONS);
    broker.create_topic(&run.output, PARTITIONS);
    let bootstrap = broker.bootstrap();
    let feed = Feed::start(bootstrap.clone(), run.input.clone());

    let mut running: BTreeMap<&'static str, StreamsHandle> = INSTANCES
        .iter()
        .map(|name| (*name, run.start(name)))
        .collect();
    let mut tasks = wait_balanced(&running, &run.probe, &feed, 2, "at start");
    let started = Instant::now();
    let deadline = Instant::now() + WAIT;
    while (0..INPUT_PARTITIONS).any(|p| run.probe.counted(p) < STATE_KEYS_PER_PARTITION) {
        feed.check();
        assert!(
            Instant::now() < deadline,
            "{name}: the state not counted after {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "{name}: the state counted in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    // The steady state: after the commits of the state's backlog.
    std::thread::sleep(Duration::from_secs(1));
    let steady_from = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let steady = tasks
        .iter()
        .flat_map(|(name, t)| t.iter().map(move |p| (*name, *p)))
        .map(|(name, p)| run.probe.longest_gap(name, p, steady_from, Instant::now()))
        .max()
        .unwrap_or_default();

    let mut restarts = Vec::new();
    for victim in INSTANCES {
        let before = tasks.clone();
        let from = Instant::now();
        close(&running.remove(victim).expect("running"));
        wait_balanced(
            &running,
            &run.probe,
            &feed,
            3,
            &format!("{name}: {victim} closed"),
        );
        running.insert(victim, run.start(victim));
        let after = wait_balanced(
            &running,
            &run.probe,
            &feed,
            2,
            &format!("{name}: {victim} back"),
        );
        std::thread::sleep(SETTLE);
        let to = Instant::now();
        let mut gaps = Gaps::new();
        for (instance, was) in before.iter().filter(|(i, _)| **i != victim) {
            for p in was.intersection(&after[instance]) {
                gaps.insert(
                    (*instance, *p),
                    run.probe.longest_gap(instance, *p, from, to),
                );
            }
        }
        assert!(
            !gaps.is_empty(),
            "{name}: restarting {victim}, no task stayed: {before:?} → {after:?}"
        );
        let moves: Vec<Move> = run
            .events
            .moves
            .lock()
            .expect("not poisoned")
            .iter()
            .filter(|m| m.at >= from && m.at <= to)
            .cloned()
            .collect();
        let syncs = run
            .events
            .syncs
            .lock()
            .expect("not poisoned")
            .iter()
            .filter(|(at, _, _)| *at >= from && *at <= to)
            .map(|(_, _, generation)| *generation)
            .collect::<BTreeSet<_>>();
        eprintln!(
            "{name}: restart of {victim} took {:.2} s, generations {syncs:?}; staying-task gaps: {}",
            (to - from - SETTLE).as_secs_f64(),
            gaps.iter()
                .map(|((i, p), g)| format!("{i}/0_{p} {} ms", g.as_millis()))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if protocol == RebalanceProtocol::Cooperative {
            for m in &moves {
                let stayed: Vec<i32> = m
                    .partitions
                    .iter()
                    .filter(|p| staying(&gaps, &m.instance, **p))
                    .copied()
                    .collect();
                assert!(
                    m.what == "assigned" || stayed.is_empty(),
                    "{name}: restarting {victim}, staying tasks {stayed:?} of {} were {} \
                     (moves: {moves:?})",
                    m.instance,
                    m.what
                );
            }
        }
        restarts.push((victim, gaps));
        tasks = after;
    }

    let input = feed.stop();
    let expected = e2e_support::crashes::expected_counts(&input);
    // The last count per key, updated with each record read (recomputing it from all the
    // records read at every poll would be quadratic).
    let mut last: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
    let mut seen = 0;
    let output = read_until(&bootstrap, &run.output, Duration::from_secs(1), |out| {
        last.extend(e2e_support::crashes::last_counts(&out[seen..]));
        seen = out.len();
        e2e_support::crashes::reached(&expected, &last)
    });
    assert_counts_exact(&input, &output);
    eprintln!(
        "{name}: {} input records, {} keys, counts exact",
        input.len(),
        expected.len()
    );
    for handle in running.values() {
        close(handle);
    }
    Figures {
        protocol,
        restarts,
        steady,
    }
}

fn cooperative_and_eager(broker: Broker) {
    let cooperative = rolling_restart(&broker, RebalanceProtocol::Cooperative);
    let eager = rolling_restart(&broker, RebalanceProtocol::Eager);
    for figures in [&cooperative, &eager] {
        eprintln!(
            "{:?}: worst staying-task gap {} ms (steady state before: {} ms); per restart: {}",
            figures.protocol,
            figures.worst().as_millis(),
            figures.steady.as_millis(),
            figures
                .restarts
                .iter()
                .map(|(victim, gaps)| format!(
                    "{victim}: {} ms",
                    gaps.values().max().copied().unwrap_or_default().as_millis()
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let config = streams_config(&broker, "rolling-bound", std::path::Path::new("."));
    let bound = cooperative_gap_bound(&config.engine);
    assert!(
        cooperative.worst() < bound,
        "cooperative: a staying task paused {:?} (bound {bound:?})",
        cooperative.worst()
    );
    assert!(
        cooperative.worst() < eager.worst(),
        "cooperative's worst staying-task gap {:?} is not below eager's {:?}",
        cooperative.worst(),
        eager.worst()
    );
}

#[test]
fn crabka_rolling_restart_cooperative_keeps_staying_tasks_running_and_eager_does_not() {
    bounded(|| cooperative_and_eager(Broker::crabka()));
}
