//! The engine against the simulated cluster: whole flows, deterministic.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use kstreams_core::engine::{Engine, EngineConfig, EngineState, Event};
use kstreams_core::prelude::*;
use kstreams_core::record::TopicPartition;
use kstreams_core::state::MemoryStoreFactory;
use kstreams_tests::harness::Harness;
use kstreams_tests::sim::{SimCluster, SimRecord};

const INPUT: &str = "input";
const OUTPUT: &str = "output";
const APP: &str = "counter";

fn count_topology() -> Arc<Topology> {
    let mut b = TopologyBuilder::new();
    let src = b
        .add_source("src", &[INPUT], StringSerde, StringSerde)
        .unwrap();
    let count = b
        .add_processor("count", &[&src], BatchCountAggregator::supplier("counts"))
        .unwrap();
    b.add_store(
        StoreBuilder::key_value("counts", StringSerde, I64Serde),
        &["count"],
    )
    .unwrap();
    b.add_sink("sink", OUTPUT, &[&count], StringSerde, I64Serde)
        .unwrap();
    Arc::new(b.build().unwrap())
}

fn engine(now: i64) -> Engine {
    let mut config = EngineConfig::new(APP, ["sim-0:9092"]);
    config.commit_interval_ms = 1_000;
    config.producer.linger_ms = 5;
    Engine::new(count_topology(), config, Box::new(MemoryStoreFactory), now).unwrap()
}

fn produce_input(
    sim: &mut SimCluster,
    partitions: i32,
    per_partition: usize,
) -> BTreeMap<String, i64> {
    let mut expected = BTreeMap::new();
    for p in 0..partitions {
        let records: Vec<SimRecord> = (0..per_partition)
            .map(|i| {
                let key = format!("p{p}-k{}", (i * 7) % 5);
                *expected.entry(key.clone()).or_insert(0) += 1;
                SimRecord::new(
                    Bytes::from(key),
                    Bytes::from(format!("v{i}")),
                    1_000 + i as i64,
                )
            })
            .collect();
        sim.produce_direct(INPUT, p, records).unwrap();
    }
    expected
}

/// Final count per key from the output topic (the last count written for each key).
fn final_counts(sim: &SimCluster, partitions: i32) -> BTreeMap<String, i64> {
    let mut counts = BTreeMap::new();
    for p in 0..partitions {
        for r in sim.read_log(OUTPUT, p).unwrap() {
            let key = String::from_utf8(r.key.unwrap().to_vec()).unwrap();
            let value = i64::from_be_bytes(r.value.unwrap().as_ref().try_into().unwrap());
            let c = counts.entry(key).or_insert(0);
            assert!(
                value > *c,
                "counts of a key only grow in its partition's order"
            );
            *c = value;
        }
    }
    counts
}

#[test]
fn one_engine_joins_counts_produces_and_commits() {
    let mut sim = SimCluster::new(1, 3);
    sim.create_topic(INPUT, 4).unwrap();
    sim.create_topic(OUTPUT, 4).unwrap();
    let expected = produce_input(&mut sim, 4, 50);
    let mut h = Harness::new(sim, 1_000_000);
    h.add(engine(h.now));
    let done = h.run_until(120_000, |h| {
        (0..4).all(|p| h.sim.committed_offset(APP, &TopicPartition::new(INPUT, p)) == Some(50))
    });
    let slot = &h.engines[0];
    assert!(
        done,
        "not all offsets committed; failure: {:?}; state {:?}",
        slot.failure(),
        slot.engine.state()
    );
    assert_eq!(slot.engine.state(), EngineState::Running);
    assert_eq!(final_counts(&h.sim, 4), expected);
    let total: usize = (0..4)
        .map(|p| h.sim.read_log(OUTPUT, p).unwrap().len())
        .sum();
    assert_eq!(
        total, 200,
        "one output record per input record, no duplicates without failures"
    );
    assert!(
        slot.events
            .iter()
            .any(|e| matches!(e, Event::TasksAssigned(t) if t.len() == 4))
    );
}
