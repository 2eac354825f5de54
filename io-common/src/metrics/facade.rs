//! Publishing a [`ThreadMetrics`] to the `metrics` facade: totals as counters (set to the
//! engine's total with `absolute`: the totals only grow, per-task ones too, as they are the
//! task's over the thread's life, not its running instance's), rates, averages, lags and
//! restore progress as gauges, batch sizes as a histogram. A per-task or per-partition gauge
//! whose task or partition the thread no longer has is set to 0 (the facade cannot remove a
//! series). Without an installed recorder every call is a no-op.
//!
//! Names are `kstreams_` and Kafka Streams' (or the Kafka clients') metric name with `_` for
//! `-` (exporters such as Prometheus' take no `-` in names or labels); labels are `thread_id`,
//! `task_id`, `topic`, `partition` and `store`. `docs/decisions.md` ("Metrics") lists them all.

use std::collections::HashSet;

use metrics::{Label, Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge};

use super::snapshot::ThreadMetrics;

/// Counters of a thread: name, help, value.
type Total = (&'static str, &'static str, fn(&ThreadMetrics) -> u64);

const THREAD_TOTALS: [Total; 20] = [
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
        "kstreams_standby_records_total",
        "Changelog records written into the stores of standby tasks",
        |t| t.engine.standby_records_total,
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
    (
        "kstreams_connection_creation_total",
        "Connections to brokers opened",
        |t| t.engine.connections.created,
    ),
    (
        "kstreams_connection_close_total",
        "Open connections to brokers closed, by either side",
        |t| t.engine.connections.closed,
    ),
    (
        "kstreams_connection_lost_total",
        "Open connections the broker or the network closed",
        |t| t.engine.connections.lost,
    ),
    (
        "kstreams_reauthentication_total",
        "SASL re-authentications completed (KIP-368)",
        |t| t.engine.connections.reauthentications,
    ),
];

/// Gauges of a thread: name, help, unit, value.
type Level = (&'static str, &'static str, Unit, fn(&ThreadMetrics) -> f64);

const THREAD_GAUGES: [Level; 9] = [
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
        "kstreams_standby_tasks",
        "Standby tasks the thread keeps warm",
        Unit::Count,
        |t| t.standby_tasks() as f64,
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
        "Records a task processed (over the thread's life)"
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
        "End offset (last stable offset under read_committed) minus fetch position of an input partition"
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
    describe_gauge!(
        "kstreams_standby_lag",
        Unit::Count,
        "Changelog records a standby's store partition is behind the changelog's end"
    );
}

/// The gauges of one name whose series belong to a task, partition or restore: a series
/// published before whose owner is gone is set to 0 once.
struct GaugeSeries {
    name: &'static str,
    last: HashSet<Vec<Label>>,
    current: HashSet<Vec<Label>>,
}

impl GaugeSeries {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            last: HashSet::new(),
            current: HashSet::new(),
        }
    }

    fn set(&mut self, labels: Vec<Label>, value: f64) {
        gauge!(self.name, labels.iter()).set(value);
        self.current.insert(labels);
    }

    /// Sets to 0 the series published last time and not this time.
    fn zero_departed(&mut self) {
        for gone in self.last.difference(&self.current) {
            gauge!(self.name, gone.iter()).set(0.0);
        }
        self.last = std::mem::take(&mut self.current);
    }
}

/// What a thread published before, for what takes differences.
pub(crate) struct Published {
    /// The batch size bucket counts, then their sums (the histogram takes their growth).
    batch_buckets: Vec<u64>,
    /// `kstreams_task_process_rate` of the running tasks.
    task_rates: GaugeSeries,
    /// `kstreams_records_lag` of the assigned input partitions.
    lags: GaugeSeries,
    /// `kstreams_store_restore_remaining_records_total` of the restores under way: one that
    /// ended (or whose task went) gets 0.
    restores_remaining: GaugeSeries,
    /// `kstreams_standby_lag` of the standbys' stores: one that stopped gets 0.
    standby_lags: GaugeSeries,
}

impl Default for Published {
    fn default() -> Self {
        Self {
            batch_buckets: Vec::new(),
            task_rates: GaugeSeries::new("kstreams_task_process_rate"),
            lags: GaugeSeries::new("kstreams_records_lag"),
            restores_remaining: GaugeSeries::new("kstreams_store_restore_remaining_records_total"),
            standby_lags: GaugeSeries::new("kstreams_standby_lag"),
        }
    }
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
    let task_labels = |task: &kstreams_core::task::TaskId| {
        vec![thread.clone(), Label::new("task_id", task.to_string())]
    };
    // Over the thread's life: a task revoked and assigned again continues from its total.
    for (task, c) in metrics.task_totals() {
        let labels = task_labels(&task);
        counter!("kstreams_task_process_total", labels.iter()).absolute(c.consumed_records);
        counter!("kstreams_task_records_received_total", labels.iter())
            .absolute(c.received_records);
        counter!("kstreams_task_records_produced_total", labels.iter())
            .absolute(c.produced_records);
        counter!("kstreams_task_dropped_records_total", labels.iter())
            .absolute(c.skipped_records + c.dead_lettered_records);
    }
    for task in &metrics.tasks {
        published
            .task_rates
            .set(task_labels(&task.task), task.process_rate);
    }
    published.task_rates.zero_departed();
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
        let labels = vec![
            thread.clone(),
            Label::new("task_id", lag.task.to_string()),
            Label::new("topic", lag.partition.topic.to_string()),
            Label::new("partition", lag.partition.partition.to_string()),
        ];
        published.lags.set(labels, records_lag as f64);
    }
    published.lags.zero_departed();
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
            published.restores_remaining.set(labels, remaining as f64);
        }
    }
    published.restores_remaining.zero_departed();
    for standby in &metrics.standbys {
        let Some(lag) = standby.lag() else {
            continue;
        };
        let labels = vec![
            thread.clone(),
            Label::new("task_id", standby.task.to_string()),
            Label::new("store", standby.store.clone()),
            Label::new("topic", standby.changelog.topic.to_string()),
            Label::new("partition", standby.changelog.partition.to_string()),
        ];
        published.standby_lags.set(labels, lag as f64);
    }
    published.standby_lags.zero_departed();
}

#[cfg(test)]
mod tests;
