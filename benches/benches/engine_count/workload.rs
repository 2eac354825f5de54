//! Count aggregation on LMDB through the engine, with the store's changelog on: the workload and
//! a harness that runs it against the simulated cluster (shared by the bench and the
//! `profile_count` example).

use std::sync::Arc;

use bytes::Bytes;
use kstreams_core::engine::{Engine, EngineConfig, EngineState};
use kstreams_core::prelude::*;
use kstreams_core::record::TopicPartition;
use kstreams_core::time::{Duration, Instant};
use kstreams_store_lmdb::{LmdbConfig, LmdbEnvironment, SyncMode};
use kstreams_tests::harness::Harness;
use kstreams_tests::sim::{SimCluster, SimRecord};
use tempfile::TempDir;

const APP: &str = "engine-count";
const INPUT: &str = "input";
const OUTPUT: &str = "output";
/// Input (and output) partitions: one task each.
pub const PARTITIONS: i32 = 8;
/// Records per partition per round.
pub const RECORDS_PER_PARTITION: usize = 2_500;
/// Records per round (what one timed iteration processes).
pub const RECORDS_PER_ROUND: usize = PARTITIONS as usize * RECORDS_PER_PARTITION;
/// Distinct keys, each always in the same partition (key index mod [`PARTITIONS`]).
const KEYS: u64 = 10_000;
/// Records per stored input batch (what a producer's batch would hold).
const RECORDS_PER_BATCH: usize = 500;
const VALUE_LEN: usize = 100;
const T0: i64 = 1_700_000_000_000;

/// Which count processor the topology runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `RecordCountAggregator`: a get, a put and a forward per record.
    Record,
    /// `BatchCountAggregator`: one `get_batch`, `put_batch` and `forward_batch` per batch.
    Batch,
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn topology(mode: Mode) -> Arc<Topology> {
    let mut b = TopologyBuilder::new();
    let src = b
        .add_source("src", &[INPUT], BytesSerde, BytesSerde)
        .expect("source");
    let count = match mode {
        Mode::Record => {
            b.add_processor("count", &[&src], RecordCountAggregator::supplier("counts"))
        }
        Mode::Batch => b.add_processor("count", &[&src], BatchCountAggregator::supplier("counts")),
    }
    .expect("count");
    // Logged (the default): every commit appends the keys written since the last one to
    // `engine-count-counts-changelog`.
    b.add_store(
        StoreBuilder::key_value("counts", BytesSerde, I64Serde).with_logging(true),
        &["count"],
    )
    .expect("store");
    b.add_sink("sink", OUTPUT, &[&count], BytesSerde, I64Serde)
        .expect("sink");
    Arc::new(b.build().expect("topology"))
}

/// One engine (LMDB stores in a temporary directory, changelog on, at-least-once, commits
/// every 100 ms of simulated time) against a one-broker simulated cluster, fed a round of input
/// at a time.
pub struct EngineCount {
    harness: Harness,
    rounds: usize,
    _dir: TempDir,
}

impl EngineCount {
    /// Starts the engine and runs one untimed round (group join, changelog creation, the empty
    /// changelog's restore, and every key of the round into the store). `sync`: LMDB's sync
    /// mode (the default `NoMetaSync` flushes once per store commit; `NoSync`, a reference that
    /// shows the CPU alone, never).
    pub fn new(mode: Mode, sync: SyncMode) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let env =
            LmdbEnvironment::open(LmdbConfig::new(dir.path()).with_sync_mode(sync)).expect("LMDB");
        let mut sim = SimCluster::new(7, 1);
        sim.create_topic(INPUT, PARTITIONS).expect("input topic");
        sim.create_topic(OUTPUT, PARTITIONS).expect("output topic");
        let mut config = EngineConfig::new(APP, ["sim-0:9092"]);
        config.commit_interval = Duration::from_millis(100);
        config.producer.linger = Duration::from_millis(5);
        let engine = Engine::new(
            topology(mode),
            config,
            Box::new(env),
            Instant::from_millis(T0),
        )
        .expect("engine");
        let mut harness = Harness::new(sim, T0);
        harness.add(engine);
        let mut this = Self {
            harness,
            rounds: 0,
            _dir: dir,
        };
        this.produce_round();
        this.run_round();
        this
    }

    /// Appends the next round's input to the simulated input topic (not part of the work
    /// measured).
    pub fn produce_round(&mut self) {
        let round = self.rounds as u64;
        let value = Bytes::from(vec![b'v'; VALUE_LEN]);
        for p in 0..PARTITIONS {
            let records: Vec<SimRecord> = (0..RECORDS_PER_PARTITION as u64)
                .map(|i| {
                    let draw = splitmix64((round << 32) ^ ((p as u64) << 24) ^ i) % KEYS;
                    // The key's partition is its index mod PARTITIONS.
                    let key = draw - draw % PARTITIONS as u64 + p as u64;
                    SimRecord::new(
                        Bytes::from(format!("key-{key:012}")),
                        value.clone(),
                        T0 + i as i64,
                    )
                })
                .collect();
            for chunk in records.chunks(RECORDS_PER_BATCH) {
                self.harness
                    .sim
                    .produce_direct(INPUT, p, chunk.to_vec())
                    .expect("produce input");
            }
        }
        self.rounds += 1;
    }

    /// Runs the engine until its committed offsets cover every round produced so far: fetch,
    /// count, produce output and changelog writes, commit.
    pub fn run_round(&mut self) {
        let end = (self.rounds * RECORDS_PER_PARTITION) as i64;
        let done = self.harness.run_until(600_000, |h| {
            (0..PARTITIONS).all(|p| {
                h.sim
                    .committed_offset(APP, &TopicPartition::new(INPUT, p))
                    .is_some_and(|o| o >= end)
            })
        });
        let slot = &self.harness.engines[0];
        assert!(
            done && slot.engine.state() == EngineState::Running,
            "round {} not committed: state {:?}, failure {:?}",
            self.rounds,
            slot.engine.state(),
            slot.failure()
        );
    }

    /// Records in the changelog topic so far (all partitions).
    pub fn changelog_records(&self) -> usize {
        let topic = format!("{APP}-counts-changelog");
        (0..PARTITIONS)
            .map(|p| self.harness.sim.read_log(&topic, p).map_or(0, |r| r.len()))
            .sum()
    }
}
