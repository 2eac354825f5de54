//! Seeded runs of whole flows: for each seed, a random cluster (1–3 brokers, 1–4 input and
//! output partitions), random input fed over time, 1–3 engines of the tag topology (see
//! [`kstreams_tests::harness::tagged`]) with random batch sizes and commit intervals, random
//! broker errors and disconnects, up to three cluster events (a broker down for a while, a
//! partition leader or the group coordinator moved), and maybe one engine closed or dropped
//! mid-run, or all of them closed and replaced by new ones (a restart); random session timeouts
//! and both answers brokers give to a duplicate idempotent batch.
//!
//! Every 4th seed (`seed % 4 == 3`) runs the engines exactly-once (`ENGINE_GUARANTEE=
//! exactly-once|at-least-once` forces one for every seed); half the seeds run the stateful
//! topology ([`tag_count_topology`]: a count per key in a logged store), whose stores live on
//! a simulated machine's disk ([`DiskStoreFactory`]): a starting engine takes the machine of a
//! stopped or dropped one now and then (its state, its checkpoints and, under exactly-once,
//! its transactional id, which fences the dead engine's open transaction), else a new one.
//!
//! Invariants, checked after every request the simulator serves (the [`Audit`]) and at the end:
//! - commits never ahead of acknowledged output: committed offset `C` of an input partition
//!   means every input record below `C` has its output in the output topic;
//! - no record lost and order kept: the first output of each input record comes in input order
//!   without gaps (so after removing replays, every input partition's outputs are exactly its
//!   records in order);
//! - committed input is never processed again by a member of the group (a duplicate output
//!   that lands after its input was committed, from a member removed from the group while its
//!   output was on the way, is counted in `late_duplicates`; input a removed member processed
//!   before it learned it was removed — it lost the task afterwards without committing it — in
//!   `zombie_replays`; neither is a violation: at-least-once allows both, only exactly-once
//!   fences zombies);
//! - eventually every input offset is committed, and no engine failed;
//! - a closing engine only stops (PendingShutdown → NotRunning or Error);
//! - a task never runs on two members at once ([`TaskOwnership`], from the engines' events and
//!   the coordinator's removals): a task starts on a member only once every other member that
//!   ran it revoked it, lost it or stopped — or was removed from the group by the coordinator
//!   (session expired, not rejoined in time, replaced by a restarted static member). Such a
//!   zombie may still run the task until it learns; at-least-once allows its duplicates and
//!   counts them (`zombie_overlaps`, `zombie_processed`); under exactly-once none of its
//!   records may ever become visible (`zombie_records`, checked by the [`CommittedAudit`]);
//! - stateful: no output count below its true count (a lost store update) — under
//!   at-least-once, unless a member that lost the task had changelog writes in flight that
//!   landed after the new owner's (a stale count the next restore brings back: at-least-once
//!   does not fence zombies; counted in `stale_changelog_writes` and `excused_counts`).
//!
//! Exactly-once seeds are checked, also after every request, on what a read_committed reader
//! sees ([`CommittedAudit`]): only records of committed transactions (none of an aborted one),
//! each input record's output exactly once and in order (no duplicate, nothing lost), the
//! committed offsets never ahead of that output; stateful: every visible count exact, and the
//! read_committed changelog ends with every key's exact count.
//!
//! Engines run cooperative rebalancing ([`RebalanceProtocol::Cooperative`], the default);
//! every 5th seed (`seed % 5 == 2`) mixes in engines offering only eager (each start has a
//! 30 % chance), so the group falls back to eager and back while members come and go.
//! `ENGINE_PROTOCOL=eager|cooperative|mixed` forces one for every seed.
//!
//! Stateful seeds with `seed % 3 == 1` run with one standby replica per task
//! (`num_standby_replicas`, each machine a process of its own): standbys follow the
//! changelogs on other engines and are promoted, moved and dropped as members come, go and
//! crash, under the same invariants. `ENGINE_STANDBYS=<n>` sets the count for every stateful
//! seed.
//! Every 3rd seed (`seed % 3 == 1`) has static members and process restarts within and beyond
//! the session timeout (see [`StaticMembers`]); `ENGINE_MEMBERS=static|dynamic` forces it.
//!
//! `ENGINE_SEEDS=<n>` changes the number of seeds (default 1000), `ENGINE_SEED_START=<s>` the
//! first one (default 0); `ENGINE_SEED=<s>` runs one seed and prints its description, and
//! with `ENGINE_TRACE=1` (and `RUST_LOG`) what happened in it (see `trace_cluster`);
//! `ENGINE_SEED_STATS=1` prints each seed's figures. `ENGINE_GUARANTEE` (see above) and
//! `ENGINE_TXN_TIMEOUT_MS=<ms>` override what the seed drew.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use kstreams_core::engine::{
    Engine, EngineConfig, EngineState, Event, ProcessingGuarantee, RebalanceProtocol,
    StandbySuspendReason,
};
use kstreams_core::record::TopicPartition;
use kstreams_core::time::{Duration, Instant};
use kstreams_tests::harness::Harness;
use kstreams_tests::harness::committed::{CommittedAudit, transactional_id};
use kstreams_tests::harness::durable_store::{DiskStoreFactory, SimDisk};
use kstreams_tests::harness::ownership::TaskOwnership;
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

/// A change of the group's membership mid-run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Membership {
    /// A new engine starts.
    Start,
    /// A running engine (the `n`-th live one, modulo their number) closes cleanly.
    Close(usize),
    /// A running engine (the `n`-th live one, modulo their number) vanishes without a close:
    /// the group notices after its session timeout.
    Drop(usize),
    /// Every engine closes; as many new ones start (same application id) 2 s later.
    RestartAll,
    /// A running engine (the `n`-th live one, modulo their number) closes, or vanishes
    /// without a close (`crash`), and a new one starts on its machine (same disk,
    /// transactional id and `group.instance.id`) `down_ms` later, once the old one stopped:
    /// a process restart (see [`StaticMembers`]).
    Restart { n: usize, crash: bool, down_ms: i64 },
}

/// At most this many engines run at once (a `Start` beyond it is skipped).
const MAX_LIVE_ENGINES: usize = 4;

/// How much input a seed feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Volume {
    /// Hundreds to a few thousand records per partition (the default of release builds).
    Full,
    /// A tenth of that, fed over a third of the time (the default of debug builds, where the
    /// simulation runs some 10 times slower: the 1,000 seeds of `cargo test --workspace` stay
    /// within a couple of minutes).
    Small,
}

impl Volume {
    /// `ENGINE_VOLUME=full|small`, else by build profile.
    fn from_env() -> Self {
        match std::env::var("ENGINE_VOLUME").as_deref() {
            Ok("full") => Self::Full,
            Ok("small") => Self::Small,
            Ok(other) => panic!("ENGINE_VOLUME is full or small, not {other}"),
            Err(_) if cfg!(debug_assertions) => Self::Small,
            Err(_) => Self::Full,
        }
    }

    /// Records per partition: (most before the engines start, most fed over the run).
    fn records(self) -> (i64, i64) {
        match self {
            Self::Full => (300, 3_000),
            Self::Small => (30, 300),
        }
    }

    /// Bounds of the time over which the input is fed, in ms. The run's cost grows with its
    /// simulated time (every engine's timers fire) more than with its records.
    fn feed_ms(self) -> (i64, i64) {
        match self {
            Self::Full => (3_000, 30_000),
            Self::Small => (1_500, 10_000),
        }
    }
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
    /// Input fed at most one chunk per harness step (the feeder's pace before it caught up
    /// with simulated time; literal old scenarios need it to replay as recorded).
    feed_one_per_step: bool,
    faults: Option<RandomFaults>,
    membership: Vec<(i64, Membership)>,
    chaos: Vec<(i64, Chaos)>,
    /// Exactly-once engines (else at-least-once).
    exactly_once: bool,
    /// The stateful topology, its stores on the machines' disks (else the tag topology).
    stateful: bool,
    /// The producers' `transaction.timeout.ms` (exactly-once).
    transaction_timeout_ms: i64,
    /// Chance in percent that a starting engine takes the machine of a stopped or dropped one.
    reuse_machine_percent: u64,
    /// The engines' rebalance protocols; `None`: by seed and guarantee (see
    /// `Protocols::of_seed`). Literal old scenarios replay eager, as recorded.
    protocols: Option<Protocols>,
    /// Standby replicas per task (stateful seeds only; see the module docs).
    standbys: usize,
    /// Static members and process restarts (`None`: dynamic members only).
    static_members: Option<StaticMembers>,
}

impl Scenario {
    /// The scenario of `seed`: input fed for 3–30 s of simulated time (1.5–10 s at small
    /// volume), commits every 50–2,000 ms, 1–4 membership changes and up to 4 cluster events
    /// spread over the feed.
    fn from_seed(seed: u64, volume: Volume) -> Self {
        let mut r = Rng(seed ^ 0xA5A5_5A5A_0F0F_F0F0);
        let engines = r.range(1, 3) as usize;
        let (most_initial, most_fed) = volume.records();
        let initial = r.range(0, most_initial);
        let fed = r.range(most_fed / 10, most_fed);
        let (shortest, longest) = volume.feed_ms();
        let feed_ms = r.range(shortest, longest);
        let feed_every_ms = r.range(20, 300);
        // Enough per chunk to feed everything within `feed_ms`.
        let chunks = (feed_ms / feed_every_ms).max(1);
        let chunk = (fed + chunks - 1) / chunks;
        let faults = r.chance(75).then(|| RandomFaults {
            error_probability: r.range(0, 150) as f64 / 1000.0,
            disconnect_probability: r.range(0, 50) as f64 / 1000.0,
        });
        let brokers = r.range(1, 3);
        let input_partitions = r.range(1, 4) as i32;
        let output_partitions = r.range(1, 4) as i32;
        let chaos = (0..r.range(0, 4))
            .map(|_| {
                let at = r.range(0, feed_ms);
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
        let mut membership: Vec<(i64, Membership)> = (0..r.range(1, 4))
            .map(|_| {
                let at = r.range(500, feed_ms);
                let what = match r.range(0, 99) {
                    0..=34 => Membership::Start,
                    35..=64 => Membership::Close(r.below(MAX_LIVE_ENGINES)),
                    65..=84 => Membership::Drop(r.below(MAX_LIVE_ENGINES)),
                    _ => Membership::RestartAll,
                };
                (at, what)
            })
            .collect();
        membership.sort_by_key(|&(at, _)| at);
        // Small batches and queues now and then, or thousands of records take long.
        let small = r.chance(20);
        let mut scenario = Self {
            brokers: brokers as usize,
            input_partitions,
            output_partitions,
            initial,
            target: initial + fed,
            chunk,
            feed_every_ms,
            engine_starts: (0..engines).map(|_| r.range(0, 3_000)).collect(),
            max_batch_records: if small {
                r.range(1, 8)
            } else {
                r.range(8, 500)
            } as usize,
            max_batches_per_poll: r.range(1, 8) as usize,
            max_queued: if small {
                r.range(1, 20)
            } else {
                r.range(20, 2_000)
            } as usize,
            commit_interval_ms: r.range(50, 2_000),
            linger_ms: r.range(0, 20),
            fetch_wait_ms: r.range(10, 500) as i32,
            session_timeout_ms: r.range(6_000, 15_000) as i32,
            heartbeat_divisor: r.range(3, 6),
            duplicate_reply_original_offset: r.chance(50),
            rebalance_delay_ms: if r.chance(50) { 0 } else { 1_000 },
            feed_one_per_step: false,
            faults,
            membership,
            chaos,
            exactly_once: seed % 4 == 3,
            stateful: false,
            transaction_timeout_ms: 0,
            reuse_machine_percent: 0,
            protocols: None,
            standbys: 0,
            static_members: None,
        };
        // Drawn last, so the at-least-once stateless scenarios stay those of the seeds before.
        scenario.stateful = r.chance(50);
        // Above the longest a live engine's transaction stays open here (outages of up to 8 s,
        // which may overlap: 16 s seen in 10,000 seeds), as the engine stops when the
        // coordinator aborts its transaction on timeout (see `ENGINE_TXN_TIMEOUT_MS`); so a
        // timeout aborts only a dropped engine's transaction, whose last stable offset is held
        // back that long. Kafka Streams' default is 10 s, the producer's 60 s.
        scenario.transaction_timeout_ms = r.range(25_000, 45_000);
        scenario.reuse_machine_percent = r.range(0, 100) as u64;
        // By seed, not drawn: the other draws stay those of the seeds before.
        scenario.standbys = usize::from(scenario.stateful && seed % 3 == 1);
        // From a generator of its own, so the other draws stay those of the seeds before.
        scenario.static_members = StaticMembers::of_seed(seed)
            .then(|| StaticMembers::draw(seed, feed_ms, scenario.session_timeout_ms.into()));
        scenario
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

/// The engines taking part and not closing, by slot.
fn running_engines(h: &Harness) -> Vec<usize> {
    (0..h.engines.len())
        .filter(|&i| {
            let e = &h.engines[i];
            e.is_live() && e.engine.state() != EngineState::PendingShutdown
        })
        .collect()
}

/// A simulated machine: a disk for the stores, and the seed of the transactional id of the
/// engine running there (an instance restarted on the same machine keeps its id, as Kafka
/// Streams keeps its process id in the state directory).
struct Machine {
    disk: SimDisk,
    random_seed: u64,
    /// The harness slot of the last engine started here.
    engine: Option<usize>,
    /// The `group.instance.id` of the engines started here (a static member), and whether
    /// they leave the group on close (`static_leave_on_close`).
    instance: Option<(String, bool)>,
}

/// Which rebalance protocol the engines of a run offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocols {
    /// This one for every engine.
    All(RebalanceProtocol),
    /// Cooperative, but each engine started offers only eager with a 30 % chance.
    Mixed,
}

impl Protocols {
    /// `ENGINE_PROTOCOL`, else by seed (see the module docs).
    fn of_seed(seed: u64) -> Self {
        match std::env::var("ENGINE_PROTOCOL").as_deref() {
            Ok("eager") => Self::All(RebalanceProtocol::Eager),
            Ok("cooperative") => Self::All(RebalanceProtocol::Cooperative),
            Ok("mixed") => Self::Mixed,
            Ok(other) => panic!("ENGINE_PROTOCOL is eager, cooperative or mixed, not {other}"),
            Err(_) if seed % 5 == 2 => Self::Mixed,
            Err(_) => Self::All(RebalanceProtocol::Cooperative),
        }
    }
}

/// Starts the engines of a run, each on a machine.
struct Fleet {
    config: EngineConfig,
    exactly_once: bool,
    stateful: bool,
    reuse_machine_percent: u64,
    machines: Vec<Machine>,
    rng: Rng,
    seed: u64,
    committed: Option<Rc<RefCell<CommittedAudit>>>,
    protocols: Protocols,
    /// Draws the protocols of a mixed run (apart from `rng`, so the other draws stay those
    /// of the seeds before).
    protocol_rng: Rng,
    /// Static members, if the run has them.
    static_members: Option<StaticMembers>,
    /// Draws the machines' instance ids (apart from `rng`, as `protocol_rng`).
    static_rng: Rng,
    /// Who runs which task (the invariant of [`TaskOwnership`]).
    ownership: Rc<RefCell<TaskOwnership>>,
    /// Machines kept for a pending restart (no other engine starts there meanwhile).
    reserved: BTreeSet<usize>,
}

impl Fleet {
    /// Whether the engine last started on `machine` stopped or was dropped.
    fn is_free(&self, h: &Harness, machine: usize) -> bool {
        self.machines[machine]
            .engine
            .is_none_or(|slot| !h.engines[slot].is_live())
    }

    /// The machine the engine at harness slot `slot` runs on.
    fn machine_of(&self, slot: usize) -> Option<usize> {
        self.machines.iter().position(|m| m.engine == Some(slot))
    }

    /// Starts an engine on machine `on`, which must be free; or, with `None`, on a machine
    /// whose engine stopped or was dropped (now and then) or on a new one.
    fn start(&mut self, h: &mut Harness, on: Option<usize>) {
        let free =
            (0..self.machines.len()).find(|&m| !self.reserved.contains(&m) && self.is_free(h, m));
        let machine = match (on, free) {
            (Some(m), _) => m,
            (None, Some(m)) if self.rng.chance(self.reuse_machine_percent) => m,
            _ => {
                let index = self.machines.len();
                let instance = self.static_members.as_ref().and_then(|s| {
                    self.static_rng.chance(s.percent).then(|| {
                        let leave = self.static_rng.chance(s.leave_on_close_percent);
                        (format!("{APP}-machine-{index}"), leave)
                    })
                });
                self.machines.push(Machine {
                    disk: SimDisk::new(),
                    random_seed: (self.seed << 8) | index as u64,
                    engine: None,
                    instance,
                });
                index
            }
        };
        debug_assert!(
            self.is_free(h, machine),
            "machine {machine} still runs an engine"
        );
        self.reserved.remove(&machine);
        let slot = h.engines.len();
        let m = &mut self.machines[machine];
        let mut config = self.config.clone();
        if config.num_standby_replicas > 0 {
            // A machine is a process: standbys go to other machines than their active.
            config.process_id = format!("machine-{machine}");
        }
        match self.protocols {
            Protocols::All(protocol) => config.rebalance_protocol = protocol,
            Protocols::Mixed => {
                config.rebalance_protocol = if self.protocol_rng.chance(30) {
                    RebalanceProtocol::Eager
                } else {
                    RebalanceProtocol::Cooperative
                };
            }
        }
        if let Some((id, leave_on_close)) = &m.instance {
            config.group_instance_id = Some(id.clone());
            config.static_leave_on_close = *leave_on_close;
        }
        if self.exactly_once {
            config.processing_guarantee = ProcessingGuarantee::ExactlyOnce;
            config.random_seed = m.random_seed;
            if let Some(audit) = &self.committed {
                let id = transactional_id(&config);
                audit.borrow_mut().run_by(&id, slot);
                audit.borrow_mut().watch(id);
            }
        }
        let engine = if self.stateful {
            Engine::new(
                tag_count_topology(),
                config,
                Box::new(DiskStoreFactory::new(m.disk.clone())),
                Instant::from_millis(h.now),
            )
            .expect("engine")
        } else {
            engine(config, h.now)
        };
        m.engine = Some(h.add(engine));
    }
}

/// An engine due to start: when, and on which machine (`None`: any, see [`Fleet::start`]).
type PendingStart = (i64, Option<usize>);

/// Applies a membership change; engines due to start later go to `pending_starts`.
fn change_membership(
    h: &mut Harness,
    change: Membership,
    fleet: &mut Fleet,
    pending_starts: &mut Vec<PendingStart>,
) {
    let running = running_engines(h);
    match change {
        Membership::Start => {
            if running.len() + pending_starts.len() < MAX_LIVE_ENGINES {
                fleet.start(h, None);
            }
        }
        Membership::Close(n) | Membership::Drop(n) if !running.is_empty() => {
            let slot = running[n % running.len()];
            if matches!(change, Membership::Close(_)) {
                h.close_engine(slot);
            } else {
                h.drop_engine(slot);
                fleet.ownership.borrow_mut().dropped(slot);
            }
        }
        Membership::Close(_) | Membership::Drop(_) => {}
        Membership::RestartAll => {
            for slot in running {
                h.close_engine(slot);
                pending_starts.push((h.now + 2_000, None));
            }
        }
        Membership::Restart { n, crash, down_ms } if !running.is_empty() => {
            let slot = running[n % running.len()];
            if crash {
                h.drop_engine(slot);
                fleet.ownership.borrow_mut().dropped(slot);
            } else {
                h.close_engine(slot);
            }
            let machine = fleet.machine_of(slot);
            debug_assert!(machine.is_some(), "every engine runs on a machine");
            fleet.reserved.extend(machine);
            pending_starts.push((h.now + down_ms, machine));
        }
        Membership::Restart { .. } => {}
    }
    // With no engine left or coming, a replacement starts.
    if running_engines(h).is_empty() && pending_starts.is_empty() {
        pending_starts.push((h.now + 1_000, None));
    }
}

/// `ENGINE_TRACE`: logs (`RUST_LOG`, e.g. `kstreams_core=debug`; each line names the engine
/// and the simulated time) and, after every request served, any change of the group (state,
/// generation, coordinator, members) or of the committed offsets, and each new output record
/// with its producer id; every engine event is printed at the end.
fn trace_cluster(
    h: &mut Harness,
    mut check: impl FnMut(&SimCluster) -> Result<(), String> + 'static,
    inputs: i32,
    outputs: i32,
) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_ansi(false)
        .try_init();
    let mut last = String::new();
    let mut printed = vec![0i64; outputs as usize];
    let mut printed_changelog = vec![0i64; inputs as usize];
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
            let log = sim
                .read_log_from(OUTPUT, q as i32, *printed)
                .unwrap_or_default();
            for r in &log {
                println!(
                    "output {q}@{} at {}: {:?} count {:?} from producer {} epoch {}",
                    r.offset,
                    sim.now(),
                    tag_of(r),
                    count_of(r),
                    r.producer_id,
                    r.producer_epoch
                );
            }
            *printed = sim.high_watermark(OUTPUT, q as i32).unwrap_or(*printed);
        }
        for (p, printed) in printed_changelog.iter_mut().enumerate() {
            let log = sim
                .read_log_from(COUNTS_CHANGELOG, p as i32, *printed)
                .unwrap_or_default();
            for r in &log {
                let count = r
                    .value
                    .as_deref()
                    .and_then(|v| <[u8; 8]>::try_from(v).ok())
                    .map(i64::from_be_bytes);
                println!(
                    "changelog {p}@{} at {}: {:?} = {count:?} from producer {} epoch {}",
                    r.offset,
                    sim.now(),
                    r.key,
                    r.producer_id,
                    r.producer_epoch
                );
            }
            *printed = sim
                .high_watermark(COUNTS_CHANGELOG, p as i32)
                .unwrap_or(*printed);
        }
        check(sim)
    }));
}

/// The checks of every step: the raw log's [`Audit`], and under exactly-once the
/// read_committed view's [`CommittedAudit`].
fn checks(
    audit: &Rc<RefCell<Audit>>,
    committed: &Option<Rc<RefCell<CommittedAudit>>>,
) -> impl FnMut(&SimCluster) -> Result<(), String> + 'static {
    let audit = Rc::clone(audit);
    let committed = committed.clone();
    move |sim| {
        audit.borrow_mut().check(sim)?;
        match &committed {
            Some(c) => c.borrow_mut().check(sim),
            None => Ok(()),
        }
    }
}

/// The scenario of `seed`, with the guarantee `ENGINE_GUARANTEE` forces if set.
fn scenario(seed: u64, volume: Volume) -> Scenario {
    let mut s = Scenario::from_seed(seed, volume);
    match std::env::var("ENGINE_GUARANTEE").as_deref() {
        Ok("exactly-once") => s.exactly_once = true,
        Ok("at-least-once") => s.exactly_once = false,
        Ok(other) => panic!("ENGINE_GUARANTEE is exactly-once or at-least-once, not {other}"),
        Err(_) => {}
    }
    if let Ok(n) = std::env::var("ENGINE_STANDBYS") {
        let n: usize = n.parse().expect("ENGINE_STANDBYS is a number");
        s.standbys = if s.stateful { n } else { 0 };
    }
    if let Ok(ms) = std::env::var("ENGINE_TXN_TIMEOUT_MS") {
        s.transaction_timeout_ms = ms.parse().expect("ENGINE_TXN_TIMEOUT_MS is a number");
    }
    s
}

/// Runs one seed; `Err` describes the broken invariant and the run.
fn run_seed(seed: u64, volume: Volume) -> Result<Stats, String> {
    run_scenario(seed, scenario(seed, volume))
}

/// Runs scenario `s` on the cluster of `seed`; `Err` describes the broken invariant and the run.
fn run_scenario(seed: u64, s: Scenario) -> Result<Stats, String> {
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
    let audit = Rc::new(RefCell::new(Audit::new(
        s.input_partitions,
        s.output_partitions,
    )));
    let ownership = Rc::new(RefCell::new(TaskOwnership::new(APP)));
    audit.borrow_mut().watch_zombies(Rc::clone(&ownership));
    if !s.exactly_once {
        audit.borrow_mut().excuse_stale_changelog_writes();
    }
    let committed_audit = s.exactly_once.then(|| {
        let audit = CommittedAudit::new(s.input_partitions, s.output_partitions, s.stateful);
        let audit = Rc::new(RefCell::new(audit));
        audit.borrow_mut().watch_zombies(Rc::clone(&ownership));
        audit
    });
    h.set_event_observer({
        let ownership = Rc::clone(&ownership);
        Box::new(move |engine, at, event, running, sim| {
            ownership
                .borrow_mut()
                .observe(engine, at, event, running, sim)
        })
    });
    if std::env::var("ENGINE_TRACE").is_ok() {
        if let Some(c) = &committed_audit {
            c.borrow_mut().trace();
        }
        trace_cluster(
            &mut h,
            checks(&audit, &committed_audit),
            s.input_partitions,
            s.output_partitions,
        );
    } else {
        h.set_observer(Box::new(checks(&audit, &committed_audit)));
    }
    let mut feeder = Feeder::new(
        s.input_partitions,
        s.initial,
        s.target,
        s.chunk,
        s.feed_every_ms,
    );
    if s.feed_one_per_step {
        feeder = feeder.one_per_step();
    }
    let mut config = flow_config();
    config.max_batch_records = s.max_batch_records;
    config.max_batches_per_poll = s.max_batches_per_poll;
    config.max_queued_records_per_partition = s.max_queued;
    config.commit_interval = Duration::from_millis_i64(s.commit_interval_ms);
    config.producer.linger = Duration::from_millis_i64(s.linger_ms);
    config.fetch.max_wait = Duration::from_millis_i64(s.fetch_wait_ms.into());
    config.session_timeout = Duration::from_millis_i64(s.session_timeout_ms.into());
    config.heartbeat_interval =
        Duration::from_millis_i64(i64::from(s.session_timeout_ms) / s.heartbeat_divisor);
    // The bootstrap list names only brokers that exist.
    config.bootstrap_servers = (0..s.brokers as i32)
        .map(|b| format!("sim-{b}:{}", 9092 + b))
        .collect();
    config.producer.transaction_timeout = Duration::from_millis_i64(s.transaction_timeout_ms);
    config.num_standby_replicas = s.standbys;
    let mut fleet = Fleet {
        config,
        exactly_once: s.exactly_once,
        stateful: s.stateful,
        reuse_machine_percent: s.reuse_machine_percent,
        machines: Vec::new(),
        rng: Rng(seed ^ 0x3C3C_C3C3_6969_9696),
        seed,
        committed: committed_audit.clone(),
        protocols: s.protocols.unwrap_or_else(|| Protocols::of_seed(seed)),
        protocol_rng: Rng(seed ^ 0x5A5A_A5A5_1234_4321),
        static_members: s.static_members.clone(),
        static_rng: Rng(seed ^ 0x0D15_EA5E_5717_1C00),
        ownership: Rc::clone(&ownership),
        reserved: BTreeSet::new(),
    };
    let mut pending_starts: Vec<PendingStart> =
        s.engine_starts.iter().map(|&t| (T0 + t, None)).collect();
    // Membership changes (process restarts of static runs among them) and chaos events (with
    // broker restarts) by time, latest first.
    let restarts = s.static_members.iter().flat_map(|m| &m.restarts);
    let mut membership: Vec<(i64, Membership)> = s
        .membership
        .iter()
        .chain(restarts)
        .map(|&(t, m)| (T0 + t, m))
        .collect();
    membership.sort_by_key(|&(at, _)| at);
    membership.reverse();
    let n = vec![s.target; s.input_partitions as usize];
    let mut chaos: Vec<(i64, Chaos)> = Vec::new();
    for &(at, c) in &s.chaos {
        chaos.push((T0 + at, c));
        if let Chaos::BrokerDown { broker, for_ms } = c {
            chaos.push((T0 + at + for_ms, Chaos::BrokerUp { broker }));
        }
    }
    chaos.sort_by_key(|&(at, _)| std::cmp::Reverse(at));
    let done = h.run_until(600_000, |h| {
        feeder.feed(h);
        // A restart waits until its machine's engine stopped.
        let mut due = Vec::new();
        pending_starts.retain(|&(at, on)| {
            let start = h.now >= at && on.is_none_or(|m| fleet.is_free(h, m));
            if start {
                due.push(on);
            }
            !start
        });
        for on in due {
            fleet.start(h, on);
        }
        while membership.last().is_some_and(|&(at, _)| h.now >= at) {
            if let Some((_, change)) = membership.pop() {
                change_membership(h, change, &mut fleet, &mut pending_starts);
            }
        }
        while chaos.last().is_some_and(|&(at, _)| h.now >= at) {
            if let Some((_, event)) = chaos.pop() {
                apply_chaos(h, event);
            }
        }
        feeder.finished()
            && chaos.is_empty()
            && membership.is_empty()
            && pending_starts.is_empty()
            && committed_at_least(&h.sim, &n)
            && committed_audit
                .as_ref()
                .is_none_or(|c| c.borrow().complete(&h.sim, &n))
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
    for (i, slot) in h.engines.iter().enumerate() {
        let illegal = slot.events.iter().find(|(_, e)| {
            matches!(e, Event::StateChanged { from: EngineState::PendingShutdown, to }
                if !matches!(to, EngineState::NotRunning | EngineState::Error))
        });
        if let Some((at, e)) = illegal {
            return Err(format!(
                "engine {i} left its close at {at}: {e:?}\n{}",
                describe_all(&h)
            ));
        }
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
    audit.borrow_mut().excuse_zombies(&h.engines);
    let audit = audit.borrow();
    let checked = catch_unwind(AssertUnwindSafe(|| {
        audit.assert_complete(&n);
        assert_at_least_once(&h.sim, &n, &vec![0; n.len()]);
        assert!(all_committed(&h.sim, &n), "committed beyond the input");
        if let Some(committed) = &committed_audit {
            committed.borrow().assert_complete(&n);
        }
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
        zombie_replays: audit.zombie_replays,
        stale_changelog_writes: audit.stale_changelog_writes,
        excused_counts: audit.excused_counts,
        records: s.target * i64::from(s.input_partitions),
        ..Stats::default()
    };
    stats.zombie_processed = audit.zombie_processed;
    let owners = ownership.borrow().stats();
    stats.zombie_overlaps = owners.zombie_overlaps;
    stats.resumed_without_rebalance = owners.resumed_without_rebalance;
    stats.expired = owners.expired;
    stats.not_rejoined = owners.not_rejoined;
    stats.replaced = owners.replaced;
    stats.static_seeds = usize::from(s.static_members.is_some());
    stats.disconnects = h.engines.iter().map(|e| e.disconnects).sum();
    stats.engines = h.engines.len();
    stats.machines = fleet.machines.len();
    stats.exactly_once = usize::from(s.exactly_once);
    stats.stateful = usize::from(s.stateful);
    stats.standby_seeds = usize::from(s.standbys > 0);
    if let Some(committed) = &committed_audit {
        let txns = committed.borrow().stats();
        stats.txn_commits = txns.committed;
        stats.txn_aborts = txns.aborted;
        stats.aborted_records = txns.aborted_records;
        stats.txns_fenced = txns.fenced;
        stats.longest_txn_ms = txns.longest_ms;
        stats.zombie_records = txns.zombie_records;
    }
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
            Event::Committed(_) => stats.commits += 1,
            Event::RestoreStarted { .. } => stats.restores += 1,
            Event::RestoreEnded { records, .. } => stats.restored_records += *records as usize,
            Event::StandbySuspended {
                reason: StandbySuspendReason::Promoted,
                ..
            } => stats.promotions += 1,
            Event::StandbyBatch { records, .. } => stats.standby_records += *records,
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
    /// Records a removed member processed after the new owner committed them.
    zombie_replays: usize,
    /// At-least-once: changelog writes of a member that lost the task landing after the new
    /// owner's, and the outputs counted below the truth after them (see
    /// `Audit::stale_changelog_writes`).
    stale_changelog_writes: usize,
    excused_counts: usize,
    /// Records processed by a zombie: a member still running a task after the coordinator
    /// removed its membership (see `TaskOwnership`).
    zombie_processed: usize,
    /// Tasks started while a zombie still ran them.
    zombie_overlaps: usize,
    /// Exactly-once: records a zombie appended (all in aborted transactions).
    zombie_records: usize,
    /// Memberships the coordinator removed: session expired, not rejoined in time, replaced
    /// by a restarted static member.
    expired: usize,
    not_rejoined: usize,
    replaced: usize,
    /// Engines whose first sync was of a generation synced before they started: static
    /// members restarted within the session timeout, back with no rebalance.
    resumed_without_rebalance: usize,
    /// Seeds with static members.
    static_seeds: usize,
    warnings: usize,
    /// Engines started.
    engines: usize,
    commits: usize,
    revokes: usize,
    losses: usize,
    disconnects: usize,
    /// Machines (disks, and transactional ids under exactly-once) the engines ran on.
    machines: usize,
    /// Seeds run exactly-once.
    exactly_once: usize,
    /// Seeds run with the stateful topology.
    stateful: usize,
    /// Transactions committed and aborted (exactly-once; by the coordinator's outcome).
    txn_commits: usize,
    txn_aborts: usize,
    /// Records (output and changelog) of aborted transactions.
    aborted_records: usize,
    /// Transactions the coordinator aborted (timeout, or fenced by the next engine on the
    /// same machine).
    txns_fenced: usize,
    /// The longest a transaction stayed open before its engine ended it (the largest of any
    /// seed, not a sum).
    longest_txn_ms: i64,
    /// Store restores started, and changelog records they restored.
    restores: usize,
    restored_records: usize,
    /// Seeds run with standbys; standbys promoted to active tasks, and changelog records
    /// standbys wrote.
    standby_seeds: usize,
    promotions: usize,
    standby_records: usize,
}

impl std::ops::AddAssign for Stats {
    fn add_assign(&mut self, o: Self) {
        self.sim_ms += o.sim_ms;
        self.records += o.records;
        self.duplicates += o.duplicates;
        self.late_duplicates += o.late_duplicates;
        self.zombie_replays += o.zombie_replays;
        self.stale_changelog_writes += o.stale_changelog_writes;
        self.excused_counts += o.excused_counts;
        self.zombie_processed += o.zombie_processed;
        self.zombie_overlaps += o.zombie_overlaps;
        self.zombie_records += o.zombie_records;
        self.expired += o.expired;
        self.not_rejoined += o.not_rejoined;
        self.replaced += o.replaced;
        self.resumed_without_rebalance += o.resumed_without_rebalance;
        self.static_seeds += o.static_seeds;
        self.warnings += o.warnings;
        self.engines += o.engines;
        self.commits += o.commits;
        self.revokes += o.revokes;
        self.losses += o.losses;
        self.disconnects += o.disconnects;
        self.machines += o.machines;
        self.exactly_once += o.exactly_once;
        self.stateful += o.stateful;
        self.txn_commits += o.txn_commits;
        self.txn_aborts += o.txn_aborts;
        self.aborted_records += o.aborted_records;
        self.txns_fenced += o.txns_fenced;
        self.longest_txn_ms = self.longest_txn_ms.max(o.longest_txn_ms);
        self.restores += o.restores;
        self.restored_records += o.restored_records;
        self.standby_seeds += o.standby_seeds;
        self.promotions += o.promotions;
        self.standby_records += o.standby_records;
    }
}

#[path = "engine_seeds/regressions.rs"]
mod regressions;

#[path = "engine_seeds/closing.rs"]
mod closing;

#[path = "engine_seeds/static_regressions.rs"]
mod static_regressions;

#[path = "engine_seeds/twins.rs"]
mod twins;

#[path = "engine_seeds/static_members.rs"]
mod static_members;
use static_members::StaticMembers;

/// Seed 47106 (full volume) of the generator as it was when it failed, kept literally so a
/// change of the generator does not lose it. An OffsetFetch queued for one assignment (engine
/// 1 owned input 1 and 3; the request failed and was queued again) was answered after the next
/// assignment, which gave it input 1 and 3 again: it started them (no committed offset, so from
/// the earliest) and processed up to 165. Then the new assignment's own OffsetFetch was answered
/// and reset them to the earliest once more; the task refused offset 0 ("not after 165") and
/// its batch was dropped while the fetcher moved on: input 1:166-189 never had output. Only the
/// first committed offset answered after an assignment starts a partition now.
#[test]
fn seed_47106_a_second_committed_offset_answer_does_not_move_a_started_partition() {
    let scenario = Scenario {
        brokers: 1,
        input_partitions: 4,
        output_partitions: 4,
        initial: 82,
        target: 2763,
        chunk: 12,
        feed_every_ms: 71,
        engine_starts: vec![944, 2755],
        max_batch_records: 243,
        max_batches_per_poll: 8,
        max_queued: 1512,
        commit_interval_ms: 1598,
        linger_ms: 5,
        fetch_wait_ms: 404,
        session_timeout_ms: 10097,
        heartbeat_divisor: 6,
        duplicate_reply_original_offset: false,
        rebalance_delay_ms: 1000,
        feed_one_per_step: true,
        faults: Some(RandomFaults {
            error_probability: 0.121,
            disconnect_probability: 0.029,
        }),
        membership: vec![(923, Membership::RestartAll), (3997, Membership::Close(1))],
        chaos: vec![(12410, Chaos::MoveCoordinator { to: 0 })],
        exactly_once: false,
        stateful: false,
        transaction_timeout_ms: 60_000,
        reuse_machine_percent: 0,
        protocols: Some(Protocols::All(RebalanceProtocol::Eager)),
        standbys: 0,
        static_members: None,
    };
    let logs = Arc::new(Mutex::new(Vec::new()));
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "kstreams_core::engine=debug",
        ))
        .with_ansi(false)
        .with_writer({
            let logs = Arc::clone(&logs);
            move || SharedLog(Arc::clone(&logs))
        })
        .finish();
    let result = tracing::subscriber::with_default(subscriber, || run_scenario(47106, scenario));
    if let Err(e) = result {
        panic!("{e}");
    }
    let logs = String::from_utf8_lossy(&logs.lock().expect("log buffer")).into_owned();
    assert!(
        logs.contains("committed offset for a partition not waiting for one ignored"),
        "the scenario no longer answers a committed offset twice for one assignment: it no \
         longer covers the bug; find another way to reproduce it"
    );
}

/// A log sink shared with the test that reads it.
struct SharedLog(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for SharedLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("log buffer poisoned"))?
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn seeded_flows_keep_every_record_in_order_and_commit_behind_output() {
    let volume = Volume::from_env();
    if let Ok(seed) = std::env::var("ENGINE_SEED") {
        let seed: u64 = seed.parse().expect("ENGINE_SEED is a number");
        match run_seed(seed, volume) {
            Ok(stats) => println!("{:?}\n{stats:?}", Scenario::from_seed(seed, volume)),
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
    let started = std::time::Instant::now();
    for seed in first..first + seeds {
        let result = catch_unwind(AssertUnwindSafe(|| run_seed(seed, volume)));
        match result {
            Ok(Ok(stats)) => {
                if std::env::var("ENGINE_SEED_STATS").is_ok() {
                    println!("seed {seed}: {stats:?}");
                }
                total += stats
            }
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
        if (seed + 1 - first).is_multiple_of(1_000) && seeds > 1_000 {
            println!(
                "{} seeds in {:.0?}, {} failed so far",
                seed + 1 - first,
                started.elapsed(),
                failures.len()
            );
        }
    }
    println!(
        "{seeds} seeds ({volume:?} volume) in {:.1?}: {total:?}",
        started.elapsed()
    );
    if let Some((seed, first)) = failures.first() {
        let failed: Vec<u64> = failures.iter().map(|(s, _)| *s).collect();
        let volume = format!("{volume:?}").to_lowercase();
        panic!(
            "{} of {seeds} seeds failed: {failed:?}\nfirst (seed {seed}, rerun with ENGINE_SEED={seed} ENGINE_VOLUME={volume}):\n{first}",
            failures.len(),
        );
    }
}
