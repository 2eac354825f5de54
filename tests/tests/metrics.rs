//! The metrics snapshot of a running application ([`StreamsHandle::metrics`]) on librdkafka's
//! mock cluster: the records in and out equal what was produced, per thread and per task,
//! the lag reaches 0 when idle, the rates rise with the processing and fall back to 0, and the
//! final snapshot after the close keeps the totals.

mod e2e_support;

use std::time::{Duration, Instant};

use e2e_support::*;
use kstreams_io_common::{MetricsSnapshot, Stores, StreamsHandle};

const INPUT: &str = "metrics-in";
const OUTPUT: &str = "metrics-out";

/// Waits until `done(snapshot)` holds and returns that snapshot; panics with the last one
/// after [`WAIT`].
fn wait_for_metrics(
    handle: &StreamsHandle,
    done: impl Fn(&MetricsSnapshot) -> bool,
) -> MetricsSnapshot {
    let deadline = Instant::now() + WAIT;
    loop {
        let snapshot = handle.metrics();
        if done(&snapshot) {
            return snapshot;
        }
        assert!(
            Instant::now() < deadline,
            "metrics not reached after {WAIT:?}: {snapshot:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether every assigned input partition has a known lag of 0.
fn all_lags_zero(m: &MetricsSnapshot) -> bool {
    m.threads
        .iter()
        .flat_map(|t| &t.partitions)
        .all(|p| p.records_lag() == Some(0))
}

fn counts_in_out_and_lag(adapter: Adapter) {
    let broker = Broker::mock();
    for topic in [INPUT, OUTPUT] {
        broker.create_topic(topic, PARTITIONS);
    }
    let state_dir = tempfile::tempdir().unwrap();
    let mut config = streams_config(&broker, "metrics-app", state_dir.path());
    config.num_stream_threads = 2;
    let handle = adapter.start(passthrough_topology(INPUT, OUTPUT), config, Stores::Memory);
    wait_running(&handle);
    // The input comes once both threads share the partitions and know where to read: a
    // rebalance while records flow (the second thread joining late) could process some twice
    // (at least once), and the counts below are exact.
    wait_for_metrics(&handle, |m| {
        m.threads.len() == 2
            && m.threads.iter().all(|t| !t.partitions.is_empty())
            && m.threads.iter().map(|t| t.partitions.len()).sum::<usize>() == PARTITIONS as usize
            && all_lags_zero(m)
    });
    let first = numbered_input(0, 200, 5);
    produce(&broker.bootstrap(), INPUT, &first);
    wait_for_metrics(&handle, |m| m.process_total() == first.len() as u64);
    // More input while it runs.
    let second = numbered_input(200, 200, 5);
    produce(&broker.bootstrap(), INPUT, &second);
    let total = (first.len() + second.len()) as u64;
    // Every partition is assigned, with its lag known: the assertions below hold on this one
    // snapshot (and the per-task totals would survive a revocation, where the running tasks'
    // counters start over).
    let snapshot = wait_for_metrics(&handle, |m| {
        m.process_total() == total
            && m.records_produced_to(OUTPUT) == total
            && m.threads.iter().map(|t| t.partitions.len()).sum::<usize>() == PARTITIONS as usize
            && all_lags_zero(m)
    });
    assert_eq!(snapshot.records_consumed_total(), total);
    assert_eq!(
        snapshot.task_process_total(),
        total,
        "the tasks' totals over each thread's life add up to the threads' totals"
    );
    for thread in &snapshot.threads {
        let tasks: u64 = thread
            .task_totals()
            .values()
            .map(|c| c.consumed_records)
            .sum();
        assert_eq!(tasks, thread.engine.process_total, "{thread:#?}");
    }
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
    // The rates: the processing shows as a positive rate over a window of at least 1 s (so
    // at most the records processed), and an idle window brings it back to 0.
    let busy = wait_for_metrics(&handle, |m| m.threads.iter().any(|t| t.rates.process > 0.0));
    let rate: f64 = busy.threads.iter().map(|t| t.rates.process).sum();
    assert!(rate > 0.0 && rate <= total as f64, "{busy:#?}");
    let consumed: f64 = busy.threads.iter().map(|t| t.rates.records_consumed).sum();
    assert!(consumed <= total as f64, "{busy:#?}");
    wait_for_metrics(&handle, |m| {
        m.threads.iter().all(|t| t.rates.process == 0.0)
    });
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
