//! The main end-to-end flows on both brokers and both adapters. Each test's name says its
//! broker (`mock_`: librdkafka 2.12's mock cluster in process; `tansu_`: a Tansu 0.6.0 process
//! with in-memory storage) and its adapter (`_tokio`, `_smol`). Input is produced and output
//! read with rdkafka, an independently written client; committed offsets are read through
//! the broker by an rdkafka consumer of the application's group (OffsetFetch).

mod e2e_support;

use std::time::Duration;

use e2e_support::*;
use kstreams_io_common::{Stores, StreamsHandle};

const INPUT: &str = "input";
const OUTPUT: &str = "output";
const SETTLE: Duration = Duration::from_millis(500);

fn topics(broker: &Broker) {
    broker.create_topic(INPUT, PARTITIONS);
    broker.create_topic(OUTPUT, PARTITIONS);
}

/// 1,000 records pass through unchanged: each exactly once, in its partition's order; the
/// group's committed offsets are the end offsets after close.
fn passthrough(broker: Broker, adapter: Adapter) {
    topics(&broker);
    let bootstrap = broker.bootstrap();
    let app = "e2e-passthrough";
    let input = numbered_input(0, 1_000, 17);
    let ends = end_offsets(&input, &produce(&bootstrap, INPUT, &input));
    let state_dir = tempfile::tempdir().unwrap();
    let handle = adapter.start(
        passthrough_topology(INPUT, OUTPUT),
        streams_config(&broker, app, state_dir.path()),
        Stores::Memory,
    );
    let output = read_exactly(&bootstrap, OUTPUT, input.len(), SETTLE);
    assert_passthrough_exact(&input, &output);
    close(&handle);
    assert_committed_at_end(&bootstrap, app, INPUT, &ends);
}

/// filter (even numbers) → map_values (upper-case, `!`): exactly the expected values.
fn map_filter(broker: Broker, adapter: Adapter) {
    topics(&broker);
    let bootstrap = broker.bootstrap();
    let app = "e2e-map-filter";
    let input = numbered_input(0, 400, 5);
    let ends = end_offsets(&input, &produce(&bootstrap, INPUT, &input));
    let state_dir = tempfile::tempdir().unwrap();
    let handle = adapter.start(
        map_filter_topology(INPUT, OUTPUT),
        streams_config(&broker, app, state_dir.path()),
        Stores::Memory,
    );
    let expected: Vec<Input> = input
        .iter()
        .filter(|(_, _, v)| number_of(std::str::from_utf8(v).unwrap()).is_multiple_of(2))
        .map(|(p, k, v)| {
            let shouted = format!("{}!", String::from_utf8(v.clone()).unwrap().to_uppercase());
            (*p, k.clone(), shouted.into_bytes())
        })
        .collect();
    let output = read_exactly(&bootstrap, OUTPUT, expected.len(), SETTLE);
    assert_passthrough_exact(&expected, &output);
    close(&handle);
    assert_committed_at_end(&bootstrap, app, INPUT, &ends);
}

/// The batch count on LMDB, stopped with `close()` and started again on the same state
/// directory with more input: it resumes from the committed offsets with its stores, so the
/// output over both runs is exactly counts 1, 2, … n per key — nothing lost, nothing twice.
fn count_on_lmdb_stop_and_restart(broker: Broker, adapter: Adapter) {
    topics(&broker);
    let bootstrap = broker.bootstrap();
    let app = "e2e-count-restart";
    let state_dir = tempfile::tempdir().unwrap();
    let first = numbered_input(0, 600, 9);
    let first_offsets = produce(&bootstrap, INPUT, &first);
    let start = || {
        adapter.start(
            count_topology(INPUT, OUTPUT),
            streams_config(&broker, app, state_dir.path()),
            Stores::Lmdb,
        )
    };
    let handle = start();
    let output = read_exactly(&bootstrap, OUTPUT, first.len(), SETTLE);
    assert_counts_exact(&first, &output);
    close(&handle);
    assert_committed_at_end(&bootstrap, app, INPUT, &end_offsets(&first, &first_offsets));

    let second = numbered_input(first.len(), 400, 9);
    let second_offsets = produce(&bootstrap, INPUT, &second);
    let handle = start();
    let all: Vec<Input> = first.iter().chain(&second).cloned().collect();
    let all_offsets: Vec<i64> = first_offsets.into_iter().chain(second_offsets).collect();
    let output = read_exactly(&bootstrap, OUTPUT, all.len(), SETTLE);
    assert_counts_exact(&all, &output);
    close(&handle);
    assert_committed_at_end(&bootstrap, app, INPUT, &end_offsets(&all, &all_offsets));
}

/// Two instances in one group, one on each adapter: the four partitions are split between
/// them, every record is processed exactly once, and both close cleanly.
fn two_instances_split_the_partitions(broker: Broker) {
    topics(&broker);
    let bootstrap = broker.bootstrap();
    let app = "e2e-two-instances";
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let handles: Vec<StreamsHandle> = [Adapter::Tokio, Adapter::Smol]
        .into_iter()
        .zip(&dirs)
        .map(|(adapter, dir)| {
            adapter.start(
                passthrough_topology(INPUT, OUTPUT),
                streams_config(&broker, app, dir.path()),
                Stores::Memory,
            )
        })
        .collect();
    // Wait for the split: both running, every task owned by exactly one of them.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let owned: Vec<usize> = handles
            .iter()
            .map(|h| {
                h.local_thread_metadata()
                    .iter()
                    .map(|t| t.active_tasks.len())
                    .sum()
            })
            .collect();
        let running = handles
            .iter()
            .all(|h| h.state() == kstreams_io_common::StreamsState::Running);
        if running && owned.iter().all(|&n| n > 0) && owned.iter().sum::<usize>() == 4 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "partitions not split between the instances: tasks {owned:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let input = numbered_input(0, 800, 13);
    let ends = end_offsets(&input, &produce(&bootstrap, INPUT, &input));
    let output = read_exactly(&bootstrap, OUTPUT, input.len(), SETTLE);
    assert_passthrough_exact(&input, &output);
    for handle in &handles {
        close(handle);
    }
    assert_committed_at_end(&bootstrap, app, INPUT, &ends);
}

#[test]
fn mock_passthrough_tokio() {
    bounded(|| passthrough(Broker::mock(), Adapter::Tokio));
}

#[test]
fn mock_passthrough_smol() {
    bounded(|| passthrough(Broker::mock(), Adapter::Smol));
}

#[test]
fn tansu_passthrough_tokio() {
    bounded(|| passthrough(Broker::tansu(), Adapter::Tokio));
}

#[test]
fn tansu_passthrough_smol() {
    bounded(|| passthrough(Broker::tansu(), Adapter::Smol));
}

#[test]
fn mock_map_filter_smol() {
    bounded(|| map_filter(Broker::mock(), Adapter::Smol));
}

#[test]
fn tansu_map_filter_tokio() {
    bounded(|| map_filter(Broker::tansu(), Adapter::Tokio));
}

#[test]
fn mock_count_on_lmdb_stop_and_restart_tokio() {
    bounded(|| count_on_lmdb_stop_and_restart(Broker::mock(), Adapter::Tokio));
}

#[test]
fn mock_count_on_lmdb_stop_and_restart_smol() {
    bounded(|| count_on_lmdb_stop_and_restart(Broker::mock(), Adapter::Smol));
}

#[test]
fn tansu_count_on_lmdb_stop_and_restart_tokio() {
    bounded(|| count_on_lmdb_stop_and_restart(Broker::tansu(), Adapter::Tokio));
}

#[test]
fn tansu_count_on_lmdb_stop_and_restart_smol() {
    bounded(|| count_on_lmdb_stop_and_restart(Broker::tansu(), Adapter::Smol));
}

#[test]
fn mock_two_instances_tokio_and_smol_split_the_partitions() {
    bounded(|| two_instances_split_the_partitions(Broker::mock()));
}

#[test]
fn tansu_two_instances_tokio_and_smol_split_the_partitions() {
    bounded(|| two_instances_split_the_partitions(Broker::tansu()));
}

/// The same flows against Apache Kafka in Docker (opt-in: `--features testcontainers`, needs a
/// Docker engine; CI compiles them but has no Docker to run them).
#[cfg(feature = "testcontainers")]
mod container {
    use super::*;

    #[test]
    fn container_passthrough_tokio() {
        bounded(|| passthrough(Broker::container(), Adapter::Tokio));
    }

    #[test]
    fn container_map_filter_smol() {
        bounded(|| map_filter(Broker::container(), Adapter::Smol));
    }

    #[test]
    fn container_count_on_lmdb_stop_and_restart_tokio() {
        bounded(|| count_on_lmdb_stop_and_restart(Broker::container(), Adapter::Tokio));
    }

    #[test]
    fn container_two_instances_tokio_and_smol_split_the_partitions() {
        bounded(|| two_instances_split_the_partitions(Broker::container()));
    }
}
