//! The snapshot types: [`MetricsSnapshot`] of an instance, [`ThreadMetrics`] of one stream
//! thread.

use std::collections::BTreeMap;
use std::time::Duration;

use kstreams_core::engine::{EngineMetrics, PartitionLag, RestoreProgress, StandbyProgress};
use kstreams_core::task::{TaskId, TaskMetrics};

/// The metrics of every stream thread of an instance, as each last published them (see the
/// [module docs](super) for when).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsSnapshot {
    /// One per stream thread that published, in thread order.
    pub threads: Vec<ThreadMetrics>,
}

impl MetricsSnapshot {
    /// Records processed by all threads (`process-total` summed).
    pub fn process_total(&self) -> u64 {
        self.threads.iter().map(|t| t.engine.process_total).sum()
    }

    /// Records fetched from input partitions by all threads (`records-consumed-total`).
    pub fn records_consumed_total(&self) -> u64 {
        self.threads.iter().map(|t| t.engine.records_consumed).sum()
    }

    /// Records all threads' producers wrote to `topic` (`record-send-total` of the topic).
    pub fn records_produced_to(&self, topic: &str) -> u64 {
        self.threads
            .iter()
            .flat_map(|t| &t.engine.produced)
            .filter(|((_, t), _)| &**t == topic)
            .map(|(_, counts)| counts.records)
            .sum()
    }

    /// Records processed by the tasks of all threads, from their counters over each thread's
    /// life ([`ThreadMetrics::task_totals`]): equals [`MetricsSnapshot::process_total`] across
    /// rebalances, where the running tasks' own counters start over with each assignment.
    pub fn task_process_total(&self) -> u64 {
        self.threads
            .iter()
            .flat_map(|t| t.task_totals().into_values())
            .map(|counters| counters.consumed_records)
            .sum()
    }

    /// SASL re-authentications completed by all threads' connections.
    pub fn reauthentications(&self) -> u64 {
        self.threads
            .iter()
            .map(|t| t.engine.connections.reauthentications)
            .sum()
    }

    /// The largest `records-lag` of any input partition of any thread (`None` when no
    /// partition has a known lag).
    pub fn max_records_lag(&self) -> Option<i64> {
        self.threads
            .iter()
            .flat_map(|t| &t.partitions)
            .filter_map(PartitionLag::records_lag)
            .max()
    }
}

/// Per-second rates over the last window (see the [module docs](super)).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rates {
    /// Records fetched into the tasks (`records-consumed-rate`).
    pub records_consumed: f64,
    /// Records processed (`process-rate`).
    pub process: f64,
    /// Records the tasks sent to sinks (`records-produced-rate`).
    pub records_sent: f64,
    /// Commits (`commit-rate`).
    pub commit: f64,
}

/// Count, total and largest of a duration measured by the loop.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeStats {
    /// Measurements.
    pub count: u64,
    /// Their sum.
    pub total: Duration,
    /// The largest.
    pub max: Duration,
}

impl TimeStats {
    /// Counts one measurement.
    pub fn record(&mut self, elapsed: Duration) {
        self.count += 1;
        self.total += elapsed;
        self.max = self.max.max(elapsed);
    }

    /// The mean in milliseconds (0 without measurements).
    pub fn avg_ms(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.total.as_secs_f64() * 1000.0 / self.count as f64
        }
    }

    /// The largest in milliseconds.
    pub fn max_ms(&self) -> f64 {
        self.max.as_secs_f64() * 1000.0
    }
}

/// One running task's counters.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskMetricsSnapshot {
    /// The task.
    pub task: TaskId,
    /// The counters of its running instance, from its assignment on (records received,
    /// processed, skipped, dead-lettered, produced; batches); over the thread's life:
    /// [`ThreadMetrics::task_totals`].
    pub counters: TaskMetrics,
    /// Records processed per second over the last window (the task's `process-rate`).
    pub process_rate: f64,
}

/// The metrics of one stream thread.
#[derive(Debug, Clone, PartialEq)]
pub struct ThreadMetrics {
    /// The thread's name (Kafka Streams' `thread-id` tag).
    pub thread_id: String,
    /// The engine's counters: records, batches, commits, rebalances, restores, produce acks,
    /// errors and retries.
    pub engine: EngineMetrics,
    /// Rates over the last window.
    pub rates: Rates,
    /// How long the polls of the engine that ran batches took (`process-latency-avg/max`).
    pub process_latency: TimeStats,
    /// The running tasks (a revoked task's counters stay in
    /// [`EngineMetrics::closed_tasks`]).
    pub tasks: Vec<TaskMetricsSnapshot>,
    /// Consumer lag of the running tasks' input partitions.
    pub partitions: Vec<PartitionLag>,
    /// Restores under way, per store partition.
    pub restores: Vec<RestoreProgress>,
    /// The standby tasks' stores: checkpoint, changelog end, records applied.
    pub standbys: Vec<StandbyProgress>,
}

impl ThreadMetrics {
    /// The standby tasks of the thread.
    pub fn standby_tasks(&self) -> usize {
        let mut tasks: Vec<TaskId> = self.standbys.iter().map(|s| s.task).collect();
        tasks.dedup();
        tasks.len()
    }

    /// Each task's counters over the thread's life: its closed instances'
    /// ([`EngineMetrics::closed_tasks`]) plus the running one's. They only grow, across
    /// revocations and reassignments; a task the thread no longer runs keeps its totals.
    pub fn task_totals(&self) -> BTreeMap<TaskId, TaskMetrics> {
        let mut totals = self.engine.closed_tasks.clone();
        for task in &self.tasks {
            *totals.entry(task.task).or_default() += task.counters;
        }
        totals
    }
}
