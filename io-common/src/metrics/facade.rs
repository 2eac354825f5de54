//! Publishing a [`ThreadMetrics`] to the `metrics` facade: totals as counters (set to the
//! engine's total with `absolute`), rates, averages, lags and restore progress as gauges, batch
//! sizes as a histogram. Without an installed recorder every call is a no-op.
//!
//! Names are `kstreams_` and Kafka Streams' (or the Kafka clients') metric name with `_` for
//! `-` (exporters such as Prometheus' take no `-` in names or labels); labels are `thread_id`,
//! `task_id`, `topic`, `partition` and `store`. `docs/decisions.md` ("Metrics") lists them all.

use metrics::{Label, Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge};

use super::snapshot::ThreadMetrics;

/// Counters of a thread: name, help, value.
type Total = (&'static str, &'static str, fn(&ThreadMetrics) -> u64);

const THREAD_TOTALS: [Total; 15] = [
    (
        "kstreams_records_consumed_total",
        "Records fetched from input partitions into the tasks",
        |t| t.engine.records_consumed,
    ),
    (
        "kstreams_process_total",
        "Records processed (skipped and dead-lettered ones included)",
        |t| t.engine.process_total,
    ),
    (
        "kstreams_batches_total",
        "Batches run through the topology",
        |t| t.engine.batch_sizes.count,
    ),
    (
        "kstreams_records_produced_total",
        "Records the tasks sent to sinks and dead-letter topics",
        |t| t.engine.records_sent,
    ),
    ("kstreams_commit_total", "Commits completed", |t| {
        t.engine.commit_total
    }),
    (
        "kstreams_commit_failed_total",
        "Commits refused by the coordinator or aborted",
        |t| t.engine.commit_failed_total,
    ),
    (
        "kstreams_rebalance_total",
        "Assignments received (completed rebalances)",
        |t| t.engine.rebalance_total,
    ),
    (
        "kstreams_failed_rebalance_total",
        "Rebalances that ended without a usable assignment",
        |t| t.engine.failed_rebalance_total,
    ),
    (
        "kstreams_tasks_revoked_total",
        "Tasks committed and closed for a rebalance",
        |t| t.engine.tasks_revoked_total,
    ),
    (
        "kstreams_tasks_lost_total",
        "Tasks closed without a commit with the group membership",
        |t| t.engine.tasks_lost_total,
    ),
    (
        "kstreams_restore_total",
        "Changelog records written into stores by restores",
        |t| t.engine.restore_total,
    ),
    (
        "kstreams_restores_completed_total",
        "Store restores that reached their changelog's end",
        |t| t.engine.restores_completed_total,
    ),
    (
        "kstreams_record_retry_total",
        "Records in produce batches sent again after a retriable error",
        |t| t.engine.produce_retry_records,
    ),
    (
        "kstreams_record_retry_batches_total",
        "Produce batches sent again after a retriable error",
        |t| t.engine.produce_retry_batches,
    ),
    (
        "kstreams_warnings_total",
        "Problems the engine recovered from",
        |t| t.engine.warnings_total,
    ),
];

/// Gauges of a thread: name, help, unit, value.
type Level = (&'static str, &'static str, Unit, fn(&ThreadMetrics) -> f64);

const THREAD_GAUGES: [Level; 8] = [
    (
        "kstreams_records_consumed_rate",
        "Records fetched per second",
        Unit::CountPerSecond,
        |t| t.rates.records_consumed,
    ),
    (
        "kstreams_process_rate",
        "Records processed per second",
        Unit::CountPerSecond,
        |t| t.rates.process,
    ),
    (
        "kstreams_records_produced_rate",
        "Records sent to sinks per second",
        Unit::CountPerSecond,
        |t| t.rates.records_sent,
    ),
    (
        "kstreams_commit_rate",
        "Commits per second",
        Unit::CountPerSecond,
        |t| t.rates.commit,
    ),
    (
        "kstreams_process_latency_avg",
        "Mean time of an engine poll that ran batches, ms",
        Unit::Milliseconds,
        |t| t.process_latency.avg_ms(),
    ),
    (
        "kstreams_process_latency_max",
        "Longest engine poll that ran batches, ms",
        Unit::Milliseconds,
        |t| t.process_latency.max_ms(),
    ),
    (
        "kstreams_commit_latency_avg",
        "Mean time from a commit's start to its end, ms",
        Unit::Milliseconds,
        |t| t.engine.commit_latency.avg_ms(),
    ),
    (
        "kstreams_commit_latency_max",
        "Longest commit, ms",
        Unit::Milliseconds,
        |t| t.engine.commit_latency.max_ms as f64,
    ),
];

/// The batch size histogram's name.
pub const BATCH_SIZE: &str = "kstreams_batch_size";

fn describe() {
    for (name, help, _) in THREAD_TOTALS {
        describe_counter!(name, Unit::Count, help);
    }
    for (name, help, unit, _) in THREAD_GAUGES {
        describe_gauge!(name, unit, help);
    }
    describe_histogram!(
        BATCH_SIZE,
        Unit::Count,
        "Records per batch (the batches of a bucket recorded at their mean size)"
    );
    describe_counter!(
        "kstreams_task_process_total",
        Unit::Count,
        "Records a task processed"
    );
    describe_gauge!(
        "kstreams_task_process_rate",
        Unit::CountPerSecond,
        "Records a task processed per second"
    );
    describe_counter!(
        "kstreams_task_records_received_total",
        Unit::Count,
        "Records queued for a task"
    );
    describe_counter!(
        "kstreams_task_records_produced_total",
        Unit::Count,
        "Records a task sent to sinks and dead-letter topics"
    );
    describe_counter!(
        "kstreams_task_dropped_records_total",
        Unit::Count,
        "Records a task skipped or dead-lettered"
    );
    describe_counter!(
        "kstreams_record_send_total",
        Unit::Count,
        "Records the producer wrote, per task and topic"
    );
    describe_counter!(
        "kstreams_record_error_total",
        Unit::Count,
        "Records the producer failed to write, per task and topic"
    );
    describe_gauge!(
        "kstreams_records_lag",
        Unit::Count,
        "High watermark minus fetch position of an input partition"
    );
    describe_gauge!(
        "kstreams_store_restore_total",
        Unit::Count,
        "Changelog records restored into a store partition so far"
    );
    describe_gauge!(
        "kstreams_store_restore_remaining_records_total",
        Unit::Count,
        "Changelog records a store partition has still to restore"
    );
}

/// What a thread published before, for what takes differences.
#[derive(Default)]
pub(crate) struct Published {
    /// The batch size bucket counts, then their sums (the histogram takes their growth).
    batch_buckets: Vec<u64>,
    /// The labels of the restores under way: one that ended (or whose task went) gets its
    /// remaining records set to 0.
    restores: Vec<Vec<Label>>,
}

/// Publishes `metrics`; `published` is what this thread published before, updated.
pub(crate) fn publish(metrics: &ThreadMetrics, published: &mut Published) {
    describe();
    let thread = Label::new("thread_id", metrics.thread_id.clone());
    let labels = [thread.clone()];
    for (name, _, value) in THREAD_TOTALS {
        counter!(name, labels.iter()).absolute(value(metrics));
    }
    for (name, _, _, value) in THREAD_GAUGES {
        gauge!(name, labels.iter()).set(value(metrics));
    }
    let sizes = &metrics.engine.batch_sizes;
    published.batch_buckets.resize(2 * sizes.buckets.len(), 0);
    let (counts, sums) = published.batch_buckets.split_at_mut(sizes.buckets.len());
    let histogram = metrics::histogram!(BATCH_SIZE, labels.iter());
    for (i, (&count, &sum)) in sizes.buckets.iter().zip(&sizes.bucket_sums).enumerate() {
        let grown = count.saturating_sub(counts[i]);
        if grown > 0 {
            // The new batches of a bucket at their mean size: inside the bucket, and the
            // histogram's sum stays exact.
            let mean = sum.saturating_sub(sums[i]) as f64 / grown as f64;
            histogram.record_many(mean, usize::try_from(grown).unwrap_or(usize::MAX));
            counts[i] = count;
            sums[i] = sum;
        }
    }
    for task in &metrics.tasks {
        let labels = [thread.clone(), Label::new("task_id", task.task.to_string())];
        let c = &task.counters;
        counter!("kstreams_task_process_total", labels.iter()).absolute(c.consumed_records);
        gauge!("kstreams_task_process_rate", labels.iter()).set(task.process_rate);
        counter!("kstreams_task_records_received_total", labels.iter())
            .absolute(c.received_records);
        counter!("kstreams_task_records_produced_total", labels.iter())
            .absolute(c.produced_records);
        counter!("kstreams_task_dropped_records_total", labels.iter())
            .absolute(c.skipped_records + c.dead_lettered_records);
    }
    for ((task, topic), counts) in &metrics.engine.produced {
        let labels = [
            thread.clone(),
            Label::new("task_id", task.to_string()),
            Label::new("topic", topic.to_string()),
        ];
        counter!("kstreams_record_send_total", labels.iter()).absolute(counts.records);
        counter!("kstreams_record_error_total", labels.iter()).absolute(counts.errors);
    }
    for lag in &metrics.partitions {
        let Some(records_lag) = lag.records_lag() else {
            continue;
        };
        let labels = [
            thread.clone(),
            Label::new("task_id", lag.task.to_string()),
            Label::new("topic", lag.partition.topic.to_string()),
            Label::new("partition", lag.partition.partition.to_string()),
        ];
        gauge!("kstreams_records_lag", labels.iter()).set(records_lag as f64);
    }
    let mut restores = Vec::with_capacity(metrics.restores.len());
    for restore in &metrics.restores {
        let labels = vec![
            thread.clone(),
            Label::new("task_id", restore.task.to_string()),
            Label::new("store", restore.store.clone()),
            Label::new("topic", restore.changelog.topic.to_string()),
            Label::new("partition", restore.changelog.partition.to_string()),
        ];
        gauge!("kstreams_store_restore_total", labels.iter()).set(restore.restored as f64);
        if let Some(remaining) = restore.remaining {
            gauge!(
                "kstreams_store_restore_remaining_records_total",
                labels.iter()
            )
            .set(remaining as f64);
        }
        restores.push(labels);
    }
    for ended in published.restores.iter().filter(|l| !restores.contains(l)) {
        gauge!(
            "kstreams_store_restore_remaining_records_total",
            ended.iter()
        )
        .set(0.0);
    }
    published.restores = restores;
}
