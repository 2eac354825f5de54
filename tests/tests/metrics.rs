//! The metrics snapshot of a running application ([`StreamsHandle::metrics`]) on librdkafka's
//! mock cluster: the records in and out equal what was produced, the lag reaches 0 when idle,
//! and the final snapshot after the close keeps the totals.

mod e2e_support;

use std::time::{Duration, Instant};

use e2e_support::*;
use kstreams_io_common::{MetricsSnapshot, Stores, StreamsHandle};

const INPUT: &str = "metrics-in";
const OUTPUT: &str = "metrics-out";

/// Waits until `done(snapshot)` holds; panics with the last snapshot after [`WAIT`].
fn wait_for_metrics(handle: &StreamsHandle, done: impl Fn(&MetricsSnapshot) -> bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        let snapshot = handle.metrics();
        if done(&snapshot) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "metrics not reached after {WAIT:?}: {snapshot:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn counts_in_out_and_lag(adapter: Adapter) {
    let broker = Broker::mock();
    for topic in [INPUT, OUTPUT] {
        broker.create_topic(topic, PARTITIONS);
    }
    let state_dir = tempfile::tempdir().unwrap();
    let mut config = streams_config(&broker, "metrics-app", state_dir.path());
    config.num_stream_threads = 2;
    let first = numbered_input(0, 200, 5);
    produce(&broker.bootstrap(), INPUT, &first);
    let handle = adapter.start(passthrough_topology(INPUT, OUTPUT), config, Stores::Memory);
    wait_running(&handle);
    // More input while it runs: the rates see it.
    let second = numbered_input(200, 200, 5);
    produce(&broker.bootstrap(), INPUT, &second);
    let total = (first.len() + second.len()) as u64;
    wait_for_metrics(&handle, |m| {
        m.process_total() == total
            && m.records_produced_to(OUTPUT) == total
            && m.max_records_lag() == Some(0)
    });
    let snapshot = handle.metrics();
    assert_eq!(snapshot.threads.len(), 2, "one per stream thread");
    assert_eq!(snapshot.records_consumed_total(), total);
    let partitions: usize = snapshot.threads.iter().map(|t| t.partitions.len()).sum();
    assert_eq!(
        partitions, PARTITIONS as usize,
        "every input partition has a lag"
    );
    let task_processed: u64 = snapshot
        .threads
        .iter()
        .flat_map(|t| &t.tasks)
        .map(|t| t.counters.consumed_records)
        .sum();
    assert_eq!(task_processed, total);
    let batches: u64 = snapshot
        .threads
        .iter()
        .map(|t| t.engine.batch_sizes.count)
        .sum();
    assert!(batches >= 1 && batches <= total);
    assert!(
        snapshot
            .threads
            .iter()
            .all(|t| t.engine.rebalance_total >= 1 && t.thread_id.contains("StreamThread")),
        "{snapshot:#?}"
    );
    assert!(
        snapshot.threads.iter().any(|t| t.process_latency.count > 0),
        "the processing latency was measured"
    );
    let output = read_exactly(
        &broker.bootstrap(),
        OUTPUT,
        total as usize,
        Duration::from_millis(500),
    );
    assert_eq!(output.len() as u64, total);
    close(&handle);
    let last = handle.metrics();
    assert_eq!(
        last.process_total(),
        total,
        "the final snapshot keeps the totals"
    );
    assert!(
        last.threads
            .iter()
            .map(|t| t.engine.commit_total)
            .sum::<u64>()
            >= 1,
        "the close committed"
    );
}

#[test]
fn mock_snapshot_counts_match_what_was_produced_and_lag_reaches_zero_tokio() {
    bounded(|| counts_in_out_and_lag(Adapter::Tokio));
}

#[test]
fn mock_snapshot_counts_match_what_was_produced_and_lag_reaches_zero_smol() {
    bounded(|| counts_in_out_and_lag(Adapter::Smol));
}
