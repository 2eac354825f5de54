//! Drives kstreams [`Engine`]s against the simulated cluster, deterministically: the engines'
//! outputs go to the simulator, its frames come back, and time jumps to the next timer of
//! either side when nothing else is left to do.
//!
//! An optional [`Harness::set_observer`] callback sees the cluster after every request the
//! simulator serves and after every time step, so invariants over the cluster's state (e.g.
//! "no committed offset is ahead of acknowledged output") are checked at every step, not only
//! at the end of a run.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use kstreams_core::client::BrokerId;
use kstreams_core::engine::{ConnectionId, Engine, EngineState, Event, Input, Output};
use kstreams_core::task::TaskId;
use kstreams_core::time::Instant;

use crate::sim::{ConnId, SimCluster};

pub mod committed;
pub mod durable_store;
pub mod ownership;

/// A callback checking the cluster; `Err` describes a violated invariant.
pub type Observer = Box<dyn FnMut(&SimCluster) -> Result<(), String>>;

/// A callback checking an engine (its index and the engine) after every output it gives;
/// `Err` describes a violated invariant.
pub type EngineObserver = Box<dyn FnMut(usize, &Engine) -> Result<(), String>>;

/// A callback checking each event an engine reports, as it reports it: the engine's index,
/// the simulated time, the event, the engine and the cluster as they are then; `Err`
/// describes a violated invariant.
pub type EventObserver =
    Box<dyn FnMut(usize, i64, &Event, &Engine, &SimCluster) -> Result<(), String>>;

/// One engine and its connections to the simulator.
pub struct EngineSlot {
    /// The engine.
    pub engine: Engine,
    /// The engine's sockets: the simulator's connection and the broker it reaches.
    conns: BTreeMap<ConnectionId, (ConnId, BrokerId)>,
    /// Every event the engine reported, in order, with the simulated time it was seen at.
    pub events: Vec<(i64, Event)>,
    /// The engine was dropped without a close ([`Harness::drop_engine`]): it is no longer
    /// polled and its connections are closed, as when a process dies.
    pub dropped: bool,
    /// Connections the harness reported closed or refused to the engine.
    pub disconnects: usize,
    /// What crossed the engine's connections, in order, once [`Harness::record_wire`] asked
    /// for it (`None`: not recorded).
    pub wire: Option<Vec<WireEvent>>,
    /// Every input handed to the engine and every `poll_output` with what it gave, once
    /// [`Harness::record_steps`] asked for it (`None`: not recorded): see [`replay`].
    pub steps: Option<Vec<Step>>,
    /// The engine handled its last timeout and all I/O since (a `pump` ran to quiet after the
    /// harness's last `advance`): then none of its deadlines may be due.
    quiet_since_timeout: bool,
    /// Brokers this engine cannot reach ([`Harness::cut`]): its connections to them are
    /// refused, as in a network partition between this one client and those brokers.
    pub unreachable: BTreeSet<i32>,
}

/// One step of an engine's life as [`Harness::record_steps`] records it.
#[derive(Debug, Clone)]
pub enum Step {
    /// An input handed to the engine at that time.
    Input(Instant, Input),
    /// A `poll_output` at that time, and what it gave (as its `Debug` text).
    Poll(Instant, Option<String>),
}

/// Replays recorded `steps` into `engine`, a new engine built like the recorded one (same
/// topology, configuration, seed and start time): every poll must give what it gave then.
/// Returns the number of polls compared; `Err` names the first that differs.
pub fn replay(steps: &[Step], engine: &mut Engine) -> Result<usize, String> {
    let mut polls = 0;
    for (i, step) in steps.iter().enumerate() {
        match step {
            Step::Input(at, input) => engine.handle_input(input.clone(), *at),
            Step::Poll(at, expected) => {
                polls += 1;
                let got = engine.poll_output(*at).map(|o| format!("{o:?}"));
                if &got != expected {
                    return Err(format!(
                        "step {i} at {at}: recorded {expected:?}, replayed {got:?}"
                    ));
                }
            }
        }
    }
    Ok(polls)
}

/// One thing that crossed an engine's connections to the simulator (see
/// [`Harness::record_wire`]).
#[derive(Debug, Clone)]
pub enum WireEvent {
    /// A connection to `broker` opened.
    Connected {
        /// Simulated time.
        at: i64,
        /// The engine's socket.
        connection: ConnectionId,
        /// The simulated broker the connection reaches (bootstrap connections included).
        broker: BrokerId,
    },
    /// Bytes the engine transmitted and the simulator received (whole frames).
    Sent {
        /// Simulated time.
        at: i64,
        /// The engine's socket.
        connection: ConnectionId,
        /// The simulated broker the connection reaches (bootstrap connections included).
        broker: BrokerId,
        /// The frames, length prefixes included.
        bytes: Bytes,
    },
    /// One frame the simulator sent and the engine received.
    Received {
        /// Simulated time.
        at: i64,
        /// The engine's socket.
        connection: ConnectionId,
        /// The simulated broker the connection reaches (bootstrap connections included).
        broker: BrokerId,
        /// The frame, length prefix included.
        bytes: Bytes,
    },
    /// The connection to `broker` closed (either side).
    Disconnected {
        /// Simulated time.
        at: i64,
        /// The engine's socket.
        connection: ConnectionId,
        /// The simulated broker the connection reaches (bootstrap connections included).
        broker: BrokerId,
    },
}

impl EngineSlot {
    fn log_wire(&mut self, event: impl FnOnce() -> WireEvent) {
        if let Some(wire) = self.wire.as_mut() {
            wire.push(event());
        }
    }

    /// Hands `input` to the engine (recording it when asked to).
    fn input(&mut self, input: Input, now: i64) {
        let now = Instant::from_millis(now);
        if let Some(steps) = self.steps.as_mut() {
            steps.push(Step::Input(now, input.clone()));
        }
        self.engine.handle_input(input, now);
    }

    /// `poll_output` (recording it and what it gave when asked to).
    fn poll(&mut self, now: i64) -> Option<Output> {
        let now = Instant::from_millis(now);
        let output = self.engine.poll_output(now);
        if let Some(steps) = self.steps.as_mut() {
            steps.push(Step::Poll(now, output.as_ref().map(|o| format!("{o:?}"))));
        }
        output
    }
}

impl EngineSlot {
    /// The first `Event::Failed` the engine reported.
    pub fn failure(&self) -> Option<&Event> {
        self.events
            .iter()
            .map(|(_, e)| e)
            .find(|e| matches!(e, Event::Failed(_)))
    }

    /// The tasks running on the engine, sorted.
    pub fn task_ids(&self) -> Vec<TaskId> {
        let mut ids: Vec<TaskId> = self.engine.tasks().map(|t| t.id()).collect();
        ids.sort();
        ids
    }

    /// Whether the engine is still taking part (not dropped, not stopped).
    pub fn is_live(&self) -> bool {
        !self.dropped
            && !matches!(
                self.engine.state(),
                EngineState::NotRunning | EngineState::Error
            )
    }
}

/// A simulated cluster and the engines talking to it.
pub struct Harness {
    /// The cluster.
    pub sim: SimCluster,
    /// The engines (dropped ones keep their slot, so indices stay stable).
    pub engines: Vec<EngineSlot>,
    /// Simulated time, ms since the epoch.
    pub now: i64,
    observer: Option<Observer>,
    engine_observer: Option<EngineObserver>,
    event_observer: Option<EventObserver>,
    /// The first invariant violation the observer reported, with the time it was seen.
    pub violation: Option<(i64, String)>,
}

impl Harness {
    /// A harness around `sim` starting at time `now`.
    pub fn new(sim: SimCluster, now: i64) -> Self {
        Self {
            sim,
            engines: Vec::new(),
            now,
            observer: None,
            engine_observer: None,
            event_observer: None,
            violation: None,
        }
    }

    /// Adds an engine; returns its index.
    pub fn add(&mut self, engine: Engine) -> usize {
        self.engines.push(EngineSlot {
            engine,
            conns: BTreeMap::new(),
            events: Vec::new(),
            dropped: false,
            disconnects: 0,
            wire: None,
            steps: None,
            quiet_since_timeout: false,
            unreachable: BTreeSet::new(),
        });
        self.engines.len() - 1
    }

    /// Starts recording what crosses the connections of the engine at `index` into its
    /// [`EngineSlot::wire`].
    pub fn record_wire(&mut self, index: usize) {
        if let Some(slot) = self.engines.get_mut(index) {
            slot.wire.get_or_insert_with(Vec::new);
        }
    }

    /// Starts recording the inputs and polls of the engine at `index` into its
    /// [`EngineSlot::steps`] (from its creation on, for an exact [`replay`]).
    pub fn record_steps(&mut self, index: usize) {
        if let Some(slot) = self.engines.get_mut(index) {
            slot.steps.get_or_insert_with(Vec::new);
        }
    }

    /// Checks every engine with `observer` after each of its outputs (and each poll that gave
    /// none); a violation is kept like the cluster observer's.
    pub fn set_engine_observer(&mut self, observer: EngineObserver) {
        self.engine_observer = Some(observer);
    }

    /// Checks every event of every engine with `observer` as the engine reports it (before
    /// the harness serves anything else); a violation is kept like the cluster observer's.
    pub fn set_event_observer(&mut self, observer: EventObserver) {
        self.event_observer = Some(observer);
    }

    /// Checks the cluster with `observer` after every served request and every time step.
    pub fn set_observer(&mut self, observer: Observer) {
        self.observer = Some(observer);
        self.observe();
    }

    /// The engine at `index` disappears without closing: its sockets close and it is never
    /// polled again (its group membership lingers until the session times out).
    pub fn drop_engine(&mut self, index: usize) {
        let Some(slot) = self.engines.get_mut(index) else {
            return;
        };
        slot.dropped = true;
        for (_, (conn, _)) in std::mem::take(&mut slot.conns) {
            self.sim.disconnect(conn);
        }
    }

    /// Cuts the network between the engine at `index` and `broker`: its open connections to
    /// the broker close and new ones are refused, until [`heal`](Self::heal). Other engines
    /// still reach the broker.
    pub fn cut(&mut self, index: usize, broker: i32) {
        let Some(slot) = self.engines.get_mut(index) else {
            return;
        };
        slot.unreachable.insert(broker);
        for &(conn, _) in slot.conns.values() {
            if self.sim.broker_of(conn) == Some(broker) {
                // Reported to the engine as a disconnect by the next pump.
                self.sim.disconnect(conn);
            }
        }
    }

    /// Undoes [`cut`](Self::cut): the engine at `index` can connect to `broker` again.
    pub fn heal(&mut self, index: usize, broker: i32) {
        if let Some(slot) = self.engines.get_mut(index) {
            slot.unreachable.remove(&broker);
        }
    }

    /// Starts a clean close of the engine at `index`.
    pub fn close_engine(&mut self, index: usize) {
        if let Some(slot) = self.engines.get_mut(index) {
            slot.input(Input::Close, self.now);
        }
    }

    fn observe(&mut self) {
        observe(&mut self.observer, &mut self.violation, &self.sim, self.now);
    }

    /// Moves bytes both ways until nothing moves; returns whether anything did.
    pub fn pump(&mut self) -> bool {
        let moved = self.pump_until_quiet();
        for slot in &mut self.engines {
            slot.quiet_since_timeout = true;
        }
        moved
    }

    fn pump_until_quiet(&mut self) -> bool {
        let mut moved = false;
        for _ in 0..10_000 {
            let mut progress = false;
            for (index, slot) in self.engines.iter_mut().enumerate() {
                if slot.dropped {
                    continue;
                }
                let _span = tracing::debug_span!("engine", index, now = self.now).entered();
                tagged::polling(index);
                let mut check = Check {
                    observer: &mut self.observer,
                    engine_observer: &mut self.engine_observer,
                    event_observer: &mut self.event_observer,
                    violation: &mut self.violation,
                };
                progress |= pump_engine(&mut self.sim, (index, slot), self.now, &mut check);
            }
            if !progress {
                break;
            }
            moved = true;
        }
        moved
    }

    /// Jumps time to the earliest timer of the engines and the simulator (at most `max_step`
    /// ahead), and fires the engines' timeouts.
    pub fn advance(&mut self, max_step: i64) {
        let mut next = self.now.saturating_add(max_step);
        for (index, slot) in self.engines.iter_mut().enumerate() {
            if slot.dropped {
                continue;
            }
            if let Some(t) = slot.engine.poll_timeout() {
                // Every engine had its timeout at `now` and all its I/O since: a deadline not
                // after `now` would make a real adapter spin without progress.
                if t.as_millis() <= self.now
                    && slot.quiet_since_timeout
                    && !slot.engine.has_pending_work()
                    && self.violation.is_none()
                {
                    self.violation = Some((
                        self.now,
                        format!(
                            "engine {index}: poll_timeout {t} ({:?}) is not after now: a busy loop",
                            slot.engine.last_timeout_reason()
                        ),
                    ));
                }
                next = next.min(t.as_millis());
            }
        }
        if let Some(t) = self.sim.next_timer() {
            next = next.min(t);
        }
        self.now = next.max(self.now + 1);
        self.sim.advance(self.now);
        self.observe();
        for (index, slot) in self.engines.iter_mut().enumerate() {
            if slot.dropped {
                continue;
            }
            let _span = tracing::debug_span!("engine", index, now = self.now).entered();
            slot.input(Input::Timeout, self.now);
            slot.quiet_since_timeout = false;
        }
    }

    /// One step: move bytes until quiet, then advance time (by at most `max_step`).
    pub fn step(&mut self, max_step: i64) {
        self.pump();
        self.advance(max_step);
    }

    /// Runs until `done` holds (checked between steps) or `max_ms` of simulated time pass;
    /// returns whether `done` held. Stops early (false) when every live engine failed or the
    /// observer reported a violation.
    pub fn run_until(&mut self, max_ms: i64, mut done: impl FnMut(&mut Harness) -> bool) -> bool {
        let deadline = self.now + max_ms;
        while self.now <= deadline {
            self.pump();
            if self.violation.is_some() {
                return false;
            }
            if done(self) {
                return true;
            }
            let undropped: Vec<&EngineSlot> = self.engines.iter().filter(|s| !s.dropped).collect();
            if !undropped.is_empty()
                && undropped
                    .iter()
                    .all(|s| matches!(s.engine.state(), EngineState::Error))
            {
                return false;
            }
            self.advance(1_000);
        }
        false
    }
}

struct Check<'a> {
    observer: &'a mut Option<Observer>,
    engine_observer: &'a mut Option<EngineObserver>,
    event_observer: &'a mut Option<EventObserver>,
    violation: &'a mut Option<(i64, String)>,
}

impl Check<'_> {
    fn engine(&mut self, index: usize, engine: &Engine, now: i64) {
        if self.violation.is_some() {
            return;
        }
        if let Some(check) = self.engine_observer.as_mut()
            && let Err(message) = check(index, engine)
        {
            *self.violation = Some((now, format!("engine {index}: {message}")));
        }
    }

    fn event(&mut self, index: usize, event: &Event, engine: &Engine, sim: &SimCluster, now: i64) {
        if self.violation.is_some() {
            return;
        }
        if let Some(check) = self.event_observer.as_mut()
            && let Err(message) = check(index, now, event, engine, sim)
        {
            *self.violation = Some((now, format!("engine {index}: {message}")));
        }
    }
}

fn observe(
    observer: &mut Option<Observer>,
    violation: &mut Option<(i64, String)>,
    sim: &SimCluster,
    now: i64,
) {
    if violation.is_some() {
        return;
    }
    if let Some(check) = observer.as_mut()
        && let Err(message) = check(sim)
    {
        *violation = Some((now, message));
    }
}

fn pump_engine(
    sim: &mut SimCluster,
    (index, slot): (usize, &mut EngineSlot),
    now: i64,
    check: &mut Check,
) -> bool {
    let mut progress = false;
    loop {
        let output = slot.poll(now);
        check.engine(index, &slot.engine, now);
        let Some(out) = output else {
            break;
        };
        progress = true;
        match out {
            Output::Connect {
                connection,
                host,
                port,
            } => {
                let conn = sim
                    .broker_by_address(&host, port)
                    .filter(|b| !slot.unreachable.contains(b))
                    .and_then(|b| sim.connect(b).ok().map(|c| (c, b)));
                match conn {
                    Some((conn, broker)) => {
                        slot.conns.insert(connection, (conn, broker));
                        slot.log_wire(|| WireEvent::Connected {
                            at: now,
                            connection,
                            broker,
                        });
                        slot.input(Input::Connected { connection }, now);
                    }
                    None => {
                        slot.disconnects += 1;
                        slot.input(Input::Disconnected { connection }, now);
                    }
                }
            }
            Output::Transmit { connection, bytes } => {
                let &(conn, broker) = slot
                    .conns
                    .get(&connection)
                    .expect("the engine transmits only on sockets it was told are open");
                slot.log_wire(|| WireEvent::Sent {
                    at: now,
                    connection,
                    broker,
                    bytes: bytes.clone(),
                });
                let result = sim.receive(conn, &bytes, now);
                observe(check.observer, check.violation, sim, now);
                if result.is_err() {
                    slot.disconnects += 1;
                    slot.conns.remove(&connection);
                    slot.log_wire(|| WireEvent::Disconnected {
                        at: now,
                        connection,
                        broker,
                    });
                    slot.input(Input::Disconnected { connection }, now);
                }
            }
            Output::Close { connection } => {
                // A connect the simulator refused is closed already.
                if let Some((conn, broker)) = slot.conns.remove(&connection) {
                    sim.disconnect(conn);
                    slot.log_wire(|| WireEvent::Disconnected {
                        at: now,
                        connection,
                        broker,
                    });
                }
            }
            Output::Event(event) => {
                check.event(index, &event, &slot.engine, sim, now);
                slot.events.push((now, event));
            }
        }
    }
    let sockets: Vec<(ConnectionId, ConnId, BrokerId)> =
        slot.conns.iter().map(|(&id, &(c, b))| (id, c, b)).collect();
    for (connection, conn, broker) in sockets {
        while let Some(frame) = sim.poll_send(conn) {
            progress = true;
            slot.log_wire(|| WireEvent::Received {
                at: now,
                connection,
                broker,
                bytes: frame.clone(),
            });
            slot.input(
                Input::Received {
                    connection,
                    bytes: frame,
                },
                now,
            );
        }
        if !sim.is_open(conn) {
            slot.disconnects += 1;
            progress = true;
            slot.conns.remove(&connection);
            slot.log_wire(|| WireEvent::Disconnected {
                at: now,
                connection,
                broker,
            });
            slot.input(Input::Disconnected { connection }, now);
        }
    }
    progress
}

/// The "tag" topology and the audit of its output: helpers of the engine flow tests.
///
/// Each input record becomes an output record with the same key whose value is
/// `"<input partition>:<input offset>"` (from the record's metadata), written to output
/// partition `input partition % output partitions`. The output topic then says exactly which
/// input records were processed, in which order and how often.
///
/// The stateful variant ([`tag_count_topology`](tagged::tag_count_topology)) also counts
/// each key in a logged store ([`COUNTS`](tagged::COUNTS), changelog
/// [`COUNTS_CHANGELOG`](tagged::COUNTS_CHANGELOG)) and appends the new count:
/// `"<input partition>:<input offset>:<count>"`. Input record `o` of any partition has key
/// `k{o % 3}` ([`input_records`](tagged::input_records)), so its true count is
/// [`true_count`](tagged::true_count)`(o)`.
pub mod tagged {
    use std::cell::{Cell, RefCell};
    use std::collections::BTreeSet;
    use std::fmt::Write as _;
    use std::rc::Rc;
    use std::sync::Arc;

    use bytes::Bytes;
    use kstreams_core::engine::{Engine, EngineConfig, Event};
    use kstreams_core::prelude::*;
    use kstreams_core::record::TopicPartition;
    use kstreams_core::state::MemoryStoreFactory;
    use kstreams_core::time::{Duration, Instant};
    use kstreams_core::topology::Upstream;

    use super::ownership::TaskOwnership;
    use super::{EngineSlot, Harness};
    use crate::sim::{SimCluster, SimRecord, StoredRecord};

    /// The application id (= group id).
    pub const APP: &str = "tagger";
    /// The source topic.
    pub const INPUT: &str = "input";
    /// The sink topic.
    pub const OUTPUT: &str = "output";
    /// Simulated start time.
    pub const T0: i64 = 1_000_000;
    /// Session timeout of [`flow_config`] (the simulated coordinator's minimum).
    pub const SESSION_TIMEOUT_MS: i32 = 6_000;
    /// Heartbeat interval of [`flow_config`].
    pub const HEARTBEAT_MS: i64 = 1_000;

    thread_local! {
        /// Input records the tag processor processed on this thread, as (partition, offset),
        /// in order, until an [`Audit`] takes them. The harness drives its engines on the
        /// test's thread, so these are exactly the records of that test's engines.
        static PROCESSED: RefCell<Vec<(usize, i32, i64)>> = const { RefCell::new(Vec::new()) };
        /// The harness index of the engine being polled (set by the harness's pump).
        static POLLED_ENGINE: Cell<usize> = const { Cell::new(usize::MAX) };
    }

    /// Tells the tag processor which engine the harness polls now.
    pub(super) fn polling(engine: usize) {
        POLLED_ENGINE.with(|e| e.set(engine));
    }

    /// Forwards each record with value `"<partition>:<offset>"` of its input record, and notes
    /// the input record as processed (see [`Audit`]).
    struct Tag;

    impl Processor<Bytes, Bytes, Bytes, String> for Tag {
        fn process(
            &mut self,
            ctx: &mut ProcessorContext<'_, Bytes, String>,
            record: Record<Bytes, Bytes>,
        ) -> Result<(), ProcessError> {
            let meta = record
                .metadata
                .clone()
                .ok_or_else(|| ProcessError::msg("record without metadata"))?;
            note_processed(meta.partition, meta.offset);
            let tag = format!("{}:{}", meta.partition, meta.offset);
            ctx.forward(record.with_value(tag))
        }
    }

    /// The store of [`tag_count_topology`]: count per key, logged.
    pub const COUNTS: &str = "counts";
    /// The changelog topic of [`COUNTS`] (one partition per input partition, created by the
    /// engines).
    pub const COUNTS_CHANGELOG: &str = "tagger-counts-changelog";

    /// Notes an input record as processed by the engine being polled (see [`Audit`]).
    fn note_processed(partition: i32, offset: i64) {
        let engine = POLLED_ENGINE.with(Cell::get);
        PROCESSED.with(|p| p.borrow_mut().push((engine, partition, offset)));
    }

    /// Like [`Tag`], and counts the record's key in [`COUNTS`]: the value forwarded is
    /// `"<partition>:<offset>:<count>"`.
    struct TagCount;

    impl Processor<Bytes, Bytes, Bytes, String> for TagCount {
        fn process(
            &mut self,
            ctx: &mut ProcessorContext<'_, Bytes, String>,
            record: Record<Bytes, Bytes>,
        ) -> Result<(), ProcessError> {
            let meta = record
                .metadata
                .clone()
                .ok_or_else(|| ProcessError::msg("record without metadata"))?;
            note_processed(meta.partition, meta.offset);
            let mut store = ctx.store::<Bytes, i64>(COUNTS)?;
            let count = store.get(&record.key)?.unwrap_or(0) + 1;
            store.put(&record.key, &count)?;
            let tag = format!("{}:{}:{count}", meta.partition, meta.offset);
            ctx.forward(record.with_value(tag))
        }
    }

    /// The true count in [`tag_count_topology`]'s output for input offset `offset` (of any
    /// partition): keys cycle through `k0`, `k1`, `k2` with the offset.
    pub fn true_count(offset: i64) -> i64 {
        offset / 3 + 1
    }

    /// The sink of both topologies: output partition = input partition % output partitions
    /// (from the tag's first field).
    fn add_tag_sink(b: &mut TopologyBuilder, parent: &dyn Upstream<Bytes, String>) {
        b.add_sink_with_partitioner(
            "sink",
            OUTPUT,
            &[parent],
            BytesSerde,
            StringSerde,
            |_, _, value: &String, n| {
                let p: i32 = value.split(':').next()?.parse().ok()?;
                Some(p % n)
            },
        )
        .expect("sink");
    }

    /// input → tag-and-count (store [`COUNTS`], logged) → output, partitioned by input
    /// partition.
    pub fn tag_count_topology() -> Arc<Topology> {
        let mut b = TopologyBuilder::new();
        let src = b
            .add_source("src", &[INPUT], BytesSerde, BytesSerde)
            .expect("source");
        let tag = b.add_processor("tag", &[&src], || TagCount).expect("tag");
        b.add_store(
            StoreBuilder::key_value(COUNTS, BytesSerde, I64Serde),
            &["tag"],
        )
        .expect("store");
        add_tag_sink(&mut b, &tag);
        Arc::new(b.build().expect("topology"))
    }

    /// input → tag → output, partitioned by input partition.
    pub fn tag_topology() -> Arc<Topology> {
        let mut b = TopologyBuilder::new();
        let src = b
            .add_source("src", &[INPUT], BytesSerde, BytesSerde)
            .expect("source");
        let tag = b.add_processor("tag", &[&src], || Tag).expect("tag");
        add_tag_sink(&mut b, &tag);
        Arc::new(b.build().expect("topology"))
    }

    /// Small timeouts so flows take seconds of simulated time.
    pub fn flow_config() -> EngineConfig {
        let mut c = EngineConfig::new(APP, ["sim-0:9092", "sim-1:9093", "sim-2:9094"]);
        c.session_timeout = Duration::from_millis_i64(SESSION_TIMEOUT_MS.into());
        c.heartbeat_interval = Duration::from_millis_i64(HEARTBEAT_MS);
        c.rebalance_timeout = Duration::from_secs(10);
        c.commit_interval = Duration::from_millis(500);
        c.request_timeout = Duration::from_secs(5);
        c.max_batch_records = 5;
        c.producer.linger = Duration::from_millis(5);
        c.producer.request_timeout = Duration::from_secs(5);
        c.fetch.max_wait = Duration::from_millis(100);
        c
    }

    /// An engine running the tag topology.
    pub fn engine(config: EngineConfig, now: i64) -> Engine {
        Engine::new(
            tag_topology(),
            config,
            Box::new(MemoryStoreFactory),
            Instant::from_millis(now),
        )
        .expect("engine")
    }

    /// A cluster of `brokers` brokers with `partitions`-partition input and output topics.
    pub fn cluster(brokers: usize, partitions: i32) -> SimCluster {
        let mut sim = SimCluster::new(0x5157, brokers);
        sim.create_topic(INPUT, partitions).expect("input");
        sim.create_topic(OUTPUT, partitions).expect("output");
        sim
    }

    /// `count` input records for partition `p`, the first meant for offset `from`.
    pub fn input_records(p: i32, from: i64, count: i64) -> Vec<SimRecord> {
        (from..from + count)
            .map(|i| {
                SimRecord::new(
                    Bytes::from(format!("k{}", i % 3)),
                    Bytes::from(format!("v{p}-{i}")),
                    T0 + i,
                )
            })
            .collect()
    }

    /// Appends `per_partition` records to each of `partitions` input partitions.
    pub fn produce_all(sim: &mut SimCluster, partitions: i32, per_partition: i64) {
        if per_partition == 0 {
            return;
        }
        for p in 0..partitions {
            sim.produce_direct(INPUT, p, input_records(p, 0, per_partition))
                .expect("produce");
        }
    }

    /// The group's committed offset of input partition `p`.
    pub fn committed(sim: &SimCluster, p: i32) -> Option<i64> {
        sim.committed_offset(APP, &TopicPartition::new(INPUT, p))
    }

    /// Whether input partition `p` has committed offset `n[p]` (none committed counts as 0),
    /// for every `p`.
    pub fn all_committed(sim: &SimCluster, n: &[i64]) -> bool {
        n.iter()
            .enumerate()
            .all(|(p, &n)| committed(sim, p as i32).unwrap_or(0) == n)
    }

    /// Whether input partition `p` has a committed offset of at least `n[p]` (none committed
    /// counts as 0), for every `p`.
    pub fn committed_at_least(sim: &SimCluster, n: &[i64]) -> bool {
        n.iter()
            .enumerate()
            .all(|(p, &n)| committed(sim, p as i32).unwrap_or(0) >= n)
    }

    /// Parses an output record of either topology: (input partition, input offset).
    pub fn tag_of(record: &StoredRecord) -> Option<(i32, i64)> {
        let value = std::str::from_utf8(record.value.as_deref()?).ok()?;
        let mut fields = value.split(':');
        let p = fields.next()?.parse().ok()?;
        let o = fields.next()?.parse().ok()?;
        Some((p, o))
    }

    /// The count of an output record of [`tag_count_topology`] (`None` for [`tag_topology`]'s).
    pub fn count_of(record: &StoredRecord) -> Option<i64> {
        let value = std::str::from_utf8(record.value.as_deref()?).ok()?;
        value.split(':').nth(2)?.parse().ok()
    }

    /// The input offsets whose output is in the output topic, per input partition, in output
    /// order (with duplicates).
    pub fn outputs(sim: &SimCluster, input_partitions: usize) -> Vec<Vec<i64>> {
        let mut out = vec![Vec::new(); input_partitions];
        let n = sim.partition_count(OUTPUT).unwrap_or(0);
        for q in 0..n {
            for r in sim.read_log(OUTPUT, q).unwrap_or_default() {
                let (p, o) = tag_of(&r).expect("tagged output");
                out[p as usize].push(o);
            }
        }
        out
    }

    /// Every input record `0..n[p]` of every partition has exactly one output, in order.
    pub fn assert_exactly_once(sim: &SimCluster, n: &[i64]) {
        for (p, got) in outputs(sim, n.len()).into_iter().enumerate() {
            let want: Vec<i64> = (0..n[p]).collect();
            assert_eq!(got, want, "outputs of input partition {p}");
        }
    }

    /// Every input record has an output; first outputs are in input order; an input offset
    /// appears more than once only if it is at least `dup_from[p]`.
    pub fn assert_at_least_once(sim: &SimCluster, n: &[i64], dup_from: &[i64]) {
        for (p, got) in outputs(sim, n.len()).into_iter().enumerate() {
            let mut seen = BTreeSet::new();
            let mut firsts = Vec::new();
            for &o in &got {
                if seen.insert(o) {
                    firsts.push(o);
                } else {
                    assert!(
                        o >= dup_from[p],
                        "input {p}:{o} was processed twice but was committed (from {})",
                        dup_from[p]
                    );
                }
            }
            let want: Vec<i64> = (0..n[p]).collect();
            assert_eq!(firsts, want, "first outputs of input partition {p}");
        }
    }

    /// Checks the output topic and committed offsets incrementally (see [`Audit::check`]).
    #[derive(Debug)]
    pub struct Audit {
        output_partitions: i32,
        /// Per output partition, the offset up to which the output was read.
        read: Vec<i64>,
        /// Input offsets with an output, per input partition.
        seen: Vec<BTreeSet<i64>>,
        /// Per input partition, the smallest offset without output (all below have one).
        next_new: Vec<i64>,
        /// Committed offset of each input partition at the previous check (`None`: none).
        committed_before: Vec<Option<i64>>,
        /// Input records processed while they were already committed. A violation of
        /// at-least-once with commits, unless [`Audit::excuse_zombies`] finds the engine was
        /// no longer a member (it lost the task afterwards without committing it).
        pub replays_of_committed: Vec<Replay>,
        /// Replays [`Audit::excuse_zombies`] took out of
        /// [`replays_of_committed`](Self::replays_of_committed): records a member already
        /// removed from the group processed before it learned so (Kafka's zombie; at-least-once
        /// allows the duplicate, only exactly-once fences it).
        pub zombie_replays: usize,
        /// Duplicate outputs appended after their input was committed, though processed before
        /// (so not in [`Audit::replays_of_committed`]): "input partition:offset (committed C)".
        /// Not a violation: the output of a member that was removed from the group while
        /// its output was on the way (it cannot commit any more, and the new owner has
        /// processed and committed the same input meanwhile). At-least-once allows it; only
        /// exactly-once fences it.
        pub late_duplicates: Vec<String>,
        /// Duplicate outputs seen.
        pub duplicates: usize,
        /// Changelog writes (of [`tag_count_topology`]) lower than an earlier write of the same
        /// key in the same partition: a member that lost the task had them in flight, and they
        /// landed after the new owner's (at-least-once does not fence it). The next restore
        /// of that partition brings the stale count back.
        pub stale_changelog_writes: usize,
        /// Outputs counted below the truth, excused by a stale changelog write before them in
        /// their partition (see [`Audit::excuse_stale_changelog_writes`]).
        pub excused_counts: usize,
        /// Input partitions whose changelog had a stale write.
        stale_changelog: BTreeSet<i32>,
        /// Per changelog partition, the raw log read so far (exclusive).
        changelog_read: Vec<i64>,
        /// The highest count written per changelog (partition, key).
        changelog_max: std::collections::BTreeMap<(i32, Bytes), i64>,
        /// Whether a count below the truth is excused after a stale changelog write.
        excuse_stale_changelog: bool,
        /// Who runs which task (see [`Audit::watch_zombies`]).
        ownership: Option<Rc<RefCell<TaskOwnership>>>,
        /// Records a zombie processed: an engine still running a task after the coordinator
        /// removed its membership (at-least-once allows the duplicates; see
        /// [`ownership`](super::ownership)). Counted with [`Audit::watch_zombies`].
        pub zombie_processed: usize,
    }

    impl Audit {
        /// An audit of `input_partitions` input partitions tagged into `output_partitions`.
        pub fn new(input_partitions: i32, output_partitions: i32) -> Self {
            let n = input_partitions as usize;
            // Records processed on this thread before this audit (an earlier run) are not ours.
            PROCESSED.with(|p| p.borrow_mut().clear());
            Self {
                output_partitions,
                read: vec![0; output_partitions as usize],
                seen: vec![BTreeSet::new(); n],
                next_new: vec![0; n],
                committed_before: vec![None; n],
                replays_of_committed: Vec::new(),
                zombie_replays: 0,
                late_duplicates: Vec::new(),
                duplicates: 0,
                stale_changelog_writes: 0,
                excused_counts: 0,
                stale_changelog: BTreeSet::new(),
                changelog_read: vec![0; n],
                changelog_max: std::collections::BTreeMap::new(),
                excuse_stale_changelog: false,
                ownership: None,
                zombie_processed: 0,
            }
        }

        /// Counts the records processed by zombies in [`Audit::zombie_processed`], as
        /// `ownership` tells them.
        pub fn watch_zombies(&mut self, ownership: Rc<RefCell<TaskOwnership>>) {
            self.ownership = Some(ownership);
        }

        /// At-least-once: a count below the truth in an input partition whose changelog had a
        /// stale write before (see [`Audit::stale_changelog_writes`]) is counted in
        /// [`Audit::excused_counts`], not a violation. Exactly-once fences such writes (they
        /// stay in aborted transactions), so it never excuses them.
        pub fn excuse_stale_changelog_writes(&mut self) {
            self.excuse_stale_changelog = true;
        }

        /// Reads new changelog records of [`tag_count_topology`] (raw, as at-least-once
        /// restores them) and notes the stale ones.
        fn read_changelog(&mut self, sim: &SimCluster) -> Result<(), String> {
            let partitions = sim.partition_count(COUNTS_CHANGELOG).unwrap_or(0);
            for p in 0..partitions {
                let Some(read) = usize::try_from(p)
                    .ok()
                    .and_then(|i| self.changelog_read.get_mut(i))
                else {
                    return Err(format!("changelog partition {p} of no input partition"));
                };
                let hw = sim
                    .high_watermark(COUNTS_CHANGELOG, p)
                    .map_err(|e| e.to_string())?;
                if hw <= *read {
                    continue;
                }
                for r in sim
                    .read_log_from(COUNTS_CHANGELOG, p, *read)
                    .map_err(|e| e.to_string())?
                {
                    let (Some(key), Some(value)) = (r.key, r.value) else {
                        continue;
                    };
                    let count = <[u8; 8]>::try_from(value.as_ref())
                        .map(i64::from_be_bytes)
                        .map_err(|_| format!("changelog {p}@{}: not a count", r.offset))?;
                    let max = self.changelog_max.entry((p, key)).or_insert(count);
                    if count < *max {
                        self.stale_changelog_writes += 1;
                        self.stale_changelog.insert(p);
                    }
                    *max = (*max).max(count);
                }
                *read = hw;
            }
            Ok(())
        }

        /// Reads new output records and checks:
        /// - no input record was processed while it was committed. Committed offsets change
        ///   only when the simulator serves an OffsetCommit, after which the harness calls this
        ///   check; so a record processed since the previous check was processed under the
        ///   committed offsets seen by that check;
        /// - each output record is in the output partition of its input partition;
        /// - the count of an output of [`tag_count_topology`] is never below its true count
        ///   (whatever the guarantee: a lower count is a lost store update);
        /// - the first output of each input record comes in input order with no gap (a gap is a
        ///   lost or reordered record);
        ///   (so, after removing replays, each input partition's outputs are in input order;
        ///   a replay, i.e. a repeated output, is counted, and noted in
        ///   [`Audit::late_duplicates`] if its input was committed when it was appended);
        /// - no committed offset is ahead of the outputs: committed `C` means every input
        ///   offset below `C` has its output in the log (acknowledged).
        pub fn check(&mut self, sim: &SimCluster) -> Result<(), String> {
            let processed = PROCESSED.with(|p| std::mem::take(&mut *p.borrow_mut()));
            for (engine, p, o) in processed {
                let Some(&before) = usize::try_from(p)
                    .ok()
                    .and_then(|i| self.committed_before.get(i))
                else {
                    return Err(format!("processed a record of unknown input partition {p}"));
                };
                if let Some(ownership) = &self.ownership
                    && ownership.borrow_mut().zombie_runs(sim, engine, p)
                {
                    self.zombie_processed += 1;
                }
                if let Some(c) = before
                    && c > o
                {
                    self.replays_of_committed.push(Replay {
                        engine,
                        at: sim.now(),
                        partition: p,
                        offset: o,
                        committed: c,
                    });
                }
            }
            for (p, before) in self.committed_before.iter_mut().enumerate() {
                *before = committed(sim, p as i32);
            }
            self.read_changelog(sim)?;
            for q in 0..self.output_partitions {
                let hw = sim.high_watermark(OUTPUT, q).map_err(|e| e.to_string())?;
                let done = self.read[q as usize];
                if hw <= done {
                    continue;
                }
                let new = sim
                    .read_log_from(OUTPUT, q, done)
                    .map_err(|e| e.to_string())?;
                for r in &new {
                    self.record(sim, q, r)?;
                }
                self.read[q as usize] = hw;
            }
            for (p, &next) in self.next_new.iter().enumerate() {
                if let Some(c) = committed(sim, p as i32)
                    && c > next
                {
                    return Err(format!(
                        "input partition {p}: committed offset {c} but offset {next} has no output"
                    ));
                }
            }
            Ok(())
        }

        fn record(&mut self, sim: &SimCluster, q: i32, r: &StoredRecord) -> Result<(), String> {
            let (p, o) = tag_of(r).ok_or_else(|| format!("untagged output {r:?}"))?;
            let Some(seen) = usize::try_from(p).ok().and_then(|i| self.seen.get_mut(i)) else {
                return Err(format!("output of unknown input partition {p}"));
            };
            if p % self.output_partitions != q {
                return Err(format!("output of {p}:{o} in output partition {q}"));
            }
            if let Some(count) = count_of(r)
                && count < true_count(o)
            {
                if self.excuse_stale_changelog && self.stale_changelog.contains(&p) {
                    self.excused_counts += 1;
                } else {
                    return Err(format!(
                        "output {q}@{}: {p}:{o} counted {count}, below the truth {} (a lost update)",
                        r.offset,
                        true_count(o)
                    ));
                }
            }
            if seen.insert(o) {
                let next = &mut self.next_new[p as usize];
                if o != *next {
                    return Err(format!(
                        "first output of {p}:{o} while {p}:{next} has none (lost or reordered)"
                    ));
                }
                *next += 1;
            } else {
                self.duplicates += 1;
                if let Some(c) = committed(sim, p)
                    && c > o
                {
                    self.late_duplicates
                        .push(format!("{p}:{o} (committed {c})"));
                }
            }
            Ok(())
        }

        /// Takes out of [`replays_of_committed`](Self::replays_of_committed) the records
        /// processed by a zombie: an engine that, after processing one, lost its task without
        /// committing the partition in between (a member in good standing commits; a removed
        /// one cannot, and learns it lost the task at its next group answer).
        pub fn excuse_zombies(&mut self, engines: &[EngineSlot]) {
            let before = self.replays_of_committed.len();
            self.replays_of_committed.retain(|r| {
                let Some(slot) = engines.get(r.engine) else {
                    return true;
                };
                let mut later = slot.events.iter().filter(|(at, _)| *at >= r.at);
                let lost_first = later.find_map(|(_, event)| match event {
                    Event::Committed(offsets)
                        if offsets.keys().any(|tp| tp.partition == r.partition) =>
                    {
                        Some(false)
                    }
                    Event::TasksLost(tasks) if tasks.iter().any(|t| t.partition == r.partition) => {
                        Some(true)
                    }
                    _ => None,
                });
                !(lost_first == Some(true) || (lost_first.is_none() && slot.dropped))
            });
            self.zombie_replays += before - self.replays_of_committed.len();
        }

        /// Every input offset below `n[p]` has output, and no committed input was processed
        /// again.
        pub fn assert_complete(&self, n: &[i64]) {
            assert_eq!(self.next_new, n, "input offsets with output, per partition");
            assert!(
                self.replays_of_committed.is_empty(),
                "committed input processed again: {:?}",
                self.replays_of_committed
            );
        }
    }

    /// An input record processed while it was already committed (see [`Audit`]).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Replay {
        /// The harness index of the engine that processed it.
        pub engine: usize,
        /// Simulated time of the check that found it (the processing came before).
        pub at: i64,
        /// Input partition.
        pub partition: i32,
        /// Input offset.
        pub offset: i64,
        /// The committed offset of the partition at the time.
        pub committed: i64,
    }

    /// Installs an [`Audit`] as the harness observer; returns it for final checks.
    pub fn install_audit(
        h: &mut Harness,
        input_partitions: i32,
        output_partitions: i32,
    ) -> Rc<RefCell<Audit>> {
        let audit = Rc::new(RefCell::new(Audit::new(
            input_partitions,
            output_partitions,
        )));
        let shared = Rc::clone(&audit);
        h.set_observer(Box::new(move |sim| shared.borrow_mut().check(sim)));
        audit
    }

    /// Appends input over time: `chunk` records per partition every `every_ms`, up to `target`.
    #[derive(Debug)]
    pub struct Feeder {
        produced: Vec<i64>,
        target: i64,
        chunk: i64,
        every_ms: i64,
        next_at: i64,
        /// One chunk per harness step at most (the pace of an older generator, which some
        /// literal regression scenarios depend on).
        one_per_step: bool,
    }

    impl Feeder {
        /// A feeder for `partitions` partitions already holding `start` records each.
        pub fn new(partitions: i32, start: i64, target: i64, chunk: i64, every_ms: i64) -> Self {
            Self {
                produced: vec![start; partitions as usize],
                target,
                chunk,
                every_ms,
                next_at: i64::MIN,
                one_per_step: false,
            }
        }

        /// Feeds at most one chunk per harness step, however much time passed: how the
        /// feeder worked when seeds 47106 and earlier were recorded.
        pub fn one_per_step(mut self) -> Self {
            self.one_per_step = true;
            self
        }

        /// Appends every chunk due by now: one per `every_ms` of simulated time since the
        /// first, however far apart the harness's steps are (so the input's pace is the
        /// scenario's, not the engines' timers').
        pub fn feed(&mut self, h: &mut Harness) {
            if self.next_at == i64::MIN {
                self.next_at = h.now;
            }
            if self.one_per_step {
                if h.now >= self.next_at {
                    self.feed_now(h);
                }
                return;
            }
            while h.now >= self.next_at && !self.finished() {
                self.append_chunk(h);
                self.next_at = self.next_at.saturating_add(self.every_ms);
            }
        }

        /// Appends a chunk now; the next is due `every_ms` later.
        pub fn feed_now(&mut self, h: &mut Harness) {
            self.next_at = h.now + self.every_ms;
            self.append_chunk(h);
        }

        fn append_chunk(&mut self, h: &mut Harness) {
            for (p, produced) in self.produced.iter_mut().enumerate() {
                let count = self.chunk.min(self.target - *produced);
                if count > 0 {
                    h.sim
                        .produce_direct(INPUT, p as i32, input_records(p as i32, *produced, count))
                        .expect("feed");
                    *produced += count;
                }
            }
        }

        /// Whether every partition reached the target.
        pub fn finished(&self) -> bool {
            self.produced.iter().all(|&p| p >= self.target)
        }
    }

    /// A description of the run for failure messages.
    pub fn describe(h: &Harness, partitions: i32) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "now {} (+{} ms)", h.now, h.now - T0);
        if let Some((at, v)) = &h.violation {
            let _ = writeln!(s, "VIOLATION at {at}: {v}");
        }
        for p in 0..partitions {
            let _ = writeln!(
                s,
                "input {p}: end {:?} committed {:?}",
                h.sim.high_watermark(INPUT, p).ok(),
                committed(&h.sim, p)
            );
        }
        for (i, slot) in h.engines.iter().enumerate() {
            let _ = writeln!(
                s,
                "engine {i}: state {:?} dropped {} tasks {:?} failure {:?}",
                slot.engine.state(),
                slot.dropped,
                slot.task_ids(),
                slot.failure()
            );
            let warnings = slot
                .events
                .iter()
                .filter(|(_, e)| matches!(e, Event::Warning(_)))
                .count();
            let _ = writeln!(s, "  {warnings} warnings; last events:");
            for (at, e) in slot.events.iter().rev().take(12).rev() {
                let _ = writeln!(s, "    {at}: {e:?}");
            }
        }
        s
    }

    /// Panics with a description unless `done` (and no violation).
    pub fn assert_run(h: &Harness, done: bool) {
        let partitions = h.sim.partition_count(INPUT).unwrap_or(0);
        assert!(
            done && h.violation.is_none(),
            "run did not complete:\n{}",
            describe(h, partitions)
        );
    }
}
