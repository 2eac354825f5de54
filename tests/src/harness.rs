//! Drives kstreams [`Engine`]s against the simulated cluster, deterministically: the engines'
//! outputs go to the simulator, its frames come back, and time jumps to the next timer of
//! either side when nothing else is left to do.

use std::collections::BTreeMap;

use kstreams_core::client::BrokerId;
use kstreams_core::engine::{Engine, EngineState, Event, Output};

use crate::sim::{ConnId, SimCluster};

/// One engine and its connections to the simulator.
pub struct EngineSlot {
    /// The engine.
    pub engine: Engine,
    conns: BTreeMap<BrokerId, ConnId>,
    /// Every event the engine reported, in order.
    pub events: Vec<Event>,
}

impl EngineSlot {
    /// Whether the engine reported `Event::Failed`.
    pub fn failure(&self) -> Option<&Event> {
        self.events.iter().find(|e| matches!(e, Event::Failed(_)))
    }
}

/// A simulated cluster and the engines talking to it.
pub struct Harness {
    /// The cluster.
    pub sim: SimCluster,
    /// The engines.
    pub engines: Vec<EngineSlot>,
    /// Simulated time, ms since the epoch.
    pub now: i64,
}

impl Harness {
    /// A harness around `sim` starting at time `now`.
    pub fn new(sim: SimCluster, now: i64) -> Self {
        Self {
            sim,
            engines: Vec::new(),
            now,
        }
    }

    /// Adds an engine; returns its index.
    pub fn add(&mut self, engine: Engine) -> usize {
        self.engines.push(EngineSlot {
            engine,
            conns: BTreeMap::new(),
            events: Vec::new(),
        });
        self.engines.len() - 1
    }

    /// Moves bytes both ways until nothing moves; returns whether anything did.
    pub fn pump(&mut self) -> bool {
        let mut moved = false;
        for _ in 0..10_000 {
            let mut progress = false;
            for slot in &mut self.engines {
                progress |= pump_engine(&mut self.sim, slot, self.now);
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
        for slot in &self.engines {
            if let Some(t) = slot.engine.poll_timeout() {
                next = next.min(t);
            }
        }
        if let Some(t) = self.sim.next_timer() {
            next = next.min(t);
        }
        self.now = next.max(self.now + 1);
        self.sim.advance(self.now);
        for slot in &mut self.engines {
            slot.engine.handle_timeout(self.now);
        }
    }

    /// Runs until `done` holds (checked between steps) or `max_ms` of simulated time pass;
    /// returns whether `done` held.
    pub fn run_until(&mut self, max_ms: i64, mut done: impl FnMut(&mut Harness) -> bool) -> bool {
        let deadline = self.now + max_ms;
        while self.now <= deadline {
            self.pump();
            if done(self) {
                return true;
            }
            if self
                .engines
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

fn pump_engine(sim: &mut SimCluster, slot: &mut EngineSlot, now: i64) -> bool {
    let mut progress = false;
    while let Some(out) = slot.engine.poll_output(now) {
        progress = true;
        match out {
            Output::Connect { node, host, port } => {
                let conn = sim
                    .broker_by_address(&host, port)
                    .and_then(|b| sim.connect(b).ok());
                match conn {
                    Some(conn) => {
                        slot.conns.insert(node, conn);
                        slot.engine.handle_connected(node, now);
                    }
                    None => slot.engine.handle_disconnected(node, now),
                }
            }
            Output::Transmit { node, bytes } => {
                let Some(&conn) = slot.conns.get(&node) else {
                    continue;
                };
                if sim.receive(conn, &bytes, now).is_err() {
                    slot.conns.remove(&node);
                    slot.engine.handle_disconnected(node, now);
                }
            }
            Output::Close { node } => {
                if let Some(conn) = slot.conns.remove(&node) {
                    sim.disconnect(conn);
                }
            }
            Output::Event(event) => slot.events.push(event),
        }
    }
    let nodes: Vec<(BrokerId, ConnId)> = slot.conns.iter().map(|(&n, &c)| (n, c)).collect();
    for (node, conn) in nodes {
        while let Some(frame) = sim.poll_send(conn) {
            progress = true;
            slot.engine.handle_received(node, &frame, now);
        }
        if !sim.is_open(conn) {
            progress = true;
            slot.conns.remove(&node);
            slot.engine.handle_disconnected(node, now);
        }
    }
    progress
}
