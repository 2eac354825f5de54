//! [`EngineMetrics`]: the counters of one stream thread, kept by the engine as plain numbers
//! (no clock, no registry, no allocation when they count) and read by the adapter through
//! [`Engine::metrics`], [`Engine::partition_lags`] and [`Engine::restore_progress`], which
//! publishes them (io-common: the `metrics` facade and the handle's snapshot).
//!
//! Names follow Kafka Streams' and the Kafka clients' metrics where one exists (see
//! `docs/decisions.md`, "Metrics"). Rates are not kept here: they are a derivative over wall
//! time, which the adapter has and the engine does not. Latencies the engine can measure on its
//! own clock (the `now` it is given, milliseconds) are here: the commit latency, which spans
//! network round trips. The processing latency of a batch (microseconds) is below that
//! resolution: the adapter measures it around the polls that ran batches.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::Engine;
use crate::record::TopicPartition;
use crate::task::{TaskId, TaskMetrics};
use crate::time::Duration;

/// Upper bounds (inclusive) of the [`BatchSizes`] buckets; the last bucket takes every larger
/// batch.
pub const BATCH_SIZE_BOUNDS: [u64; 11] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

/// The distribution of batch sizes (records per batch): counts in power-of-two buckets,
/// plus their number, sum and largest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchSizes {
    /// `buckets[i]`: batches of at most [`BATCH_SIZE_BOUNDS`]`[i]` records (and more than the
    /// bound before); the last one, batches over 1024 records.
    pub buckets: [u64; BATCH_SIZE_BOUNDS.len() + 1],
    /// `bucket_sums[i]`: the records of the batches in `buckets[i]` (so a histogram fed per
    /// bucket keeps the exact sum).
    pub bucket_sums: [u64; BATCH_SIZE_BOUNDS.len() + 1],
    /// Batches counted.
    pub count: u64,
    /// Records in them.
    pub sum: u64,
    /// The largest batch.
    pub max: u64,
}

impl BatchSizes {
    /// Counts a batch of `records`.
    pub fn record(&mut self, records: u64) {
        let bucket = BATCH_SIZE_BOUNDS
            .iter()
            .position(|&bound| records <= bound)
            .unwrap_or(BATCH_SIZE_BOUNDS.len());
        self.buckets[bucket] += 1;
        self.bucket_sums[bucket] += records;
        self.count += 1;
        self.sum += records;
        self.max = self.max.max(records);
    }

    /// The mean batch size (0 without batches).
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }
}

/// Count, total and largest of a latency, in milliseconds (Kafka's `-avg` and `-max`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LatencyStats {
    /// Measurements.
    pub count: u64,
    /// Their sum, ms.
    pub total_ms: u64,
    /// The largest, ms.
    pub max_ms: u64,
}

impl LatencyStats {
    /// Counts one measurement.
    pub fn record(&mut self, latency: Duration) {
        let ms = latency.as_millis();
        self.count += 1;
        self.total_ms += ms;
        self.max_ms = self.max_ms.max(ms);
    }

    /// The mean, ms (0 without measurements).
    pub fn avg_ms(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.total_ms as f64 / self.count as f64
        }
    }
}

/// What the producer did for one task and topic: records written (acknowledged by the
/// brokers) and records that failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProducedRecords {
    /// Records the brokers acknowledged.
    pub records: u64,
    /// Records that will not be delivered.
    pub errors: u64,
}

/// The engine's connections to the brokers, counted by its router (Kafka's client
/// `connection-creation-total`, `connection-close-total`, `successful-reauthentication-total`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionMetrics {
    /// Sockets opened (the adapter reported them connected).
    pub created: u64,
    /// Open sockets closed, by the engine or by the other side (not the attempts that never
    /// connected).
    pub closed: u64,
    /// Of those, the ones the broker or the network closed (the engine did not): e.g. a
    /// broker ending a SASL session that was not re-authenticated in time.
    pub lost: u64,
    /// SASL re-authentications (KIP-368) completed on open connections.
    pub reauthentications: u64,
}

/// The counters of one engine (stream thread). All only grow over the engine's life; the
/// per-task counters of the running tasks are [`Task::metrics`](crate::task::Task::metrics),
/// and [`Engine::task_totals`] adds those of the task instances closed before.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EngineMetrics {
    /// Records fetched from input partitions into the tasks' queues (Kafka's consumer
    /// `records-consumed-total`).
    pub records_consumed: u64,
    /// Records processed: taken off the queues by a batch, skipped and dead-lettered ones
    /// included (Kafka Streams' thread `process-total`).
    pub process_total: u64,
    /// Batches run, and their sizes.
    pub batch_sizes: BatchSizes,
    /// Records the tasks' processors sent to sinks or a dead-letter topic (Kafka Streams'
    /// `records-produced-total` summed over sinks; acknowledged or not).
    pub records_sent: u64,
    /// Per task and topic (output, dead-letter and changelog topics), records the producer
    /// wrote or failed to write (Kafka's producer `record-send-total`, `record-error-total`).
    pub produced: BTreeMap<(TaskId, Arc<str>), ProducedRecords>,
    /// Commits that completed: offsets accepted by the coordinator, a transaction committed,
    /// or a commit that only flushed the producer and the stores (no new offsets to send)
    /// (Kafka Streams' `commit-total`). A commit with nothing at all to do (no new offsets, no
    /// record or changelog write waiting, no open transaction) sends nothing and is not
    /// counted, whatever asked for it (the interval, a revocation or the close).
    pub commit_total: u64,
    /// Commits the coordinator or the transaction refused.
    pub commit_failed_total: u64,
    /// From the start of a commit (flushing the producer) to its end
    /// (`commit-latency-avg`/`-max`), on the engine's clock.
    pub commit_latency: LatencyStats,
    /// Assignments received: completed rebalances (Kafka's consumer `rebalance-total`).
    pub rebalance_total: u64,
    /// Rebalances that ended without a usable assignment (`failed-rebalance-total`).
    pub failed_rebalance_total: u64,
    /// Tasks revoked (committed and closed) for a rebalance.
    pub tasks_revoked_total: u64,
    /// Tasks lost (closed without a commit) with the group membership.
    pub tasks_lost_total: u64,
    /// Changelog records written into stores by restores (Kafka Streams' `restore-total`).
    pub restore_total: u64,
    /// Stores whose restore ended.
    pub restores_completed_total: u64,
    /// Changelog records written into the stores of standby tasks.
    pub standby_records_total: u64,
    /// Produce batches sent again after a retriable error (Kafka's producer
    /// `record-retry-total` counts records; see [`EngineMetrics::produce_retry_records`]).
    pub produce_retry_batches: u64,
    /// Records in the batches sent again (`record-retry-total`).
    pub produce_retry_records: u64,
    /// Warnings: problems the engine recovered from.
    pub warnings_total: u64,
    /// The counters of the task instances this engine closed (revoked, lost, or at the
    /// close), summed per task: a task assigned again starts its own counters from 0, so its
    /// totals over the engine's life are these plus the running instance's
    /// ([`Engine::task_totals`]).
    pub closed_tasks: BTreeMap<TaskId, TaskMetrics>,
    /// The connections to the brokers.
    pub connections: ConnectionMetrics,
}

/// Consumer lag of one input partition (Kafka's consumer `records-lag`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    /// The partition.
    pub partition: TopicPartition,
    /// The task that reads it.
    pub task: TaskId,
    /// The next offset to fetch (`None` before the committed offset is known).
    pub position: Option<i64>,
    /// The high watermark of the last fetch answer (`None` before the first).
    pub high_watermark: Option<i64>,
    /// The end a consumer can read up to, from the last fetch answer: the high watermark, or
    /// under read_committed (exactly-once) the last stable offset (`None` before the first).
    pub end_offset: Option<i64>,
    /// Records fetched and still queued in the task.
    pub queued: usize,
}

impl PartitionLag {
    /// `end_offset - position` (Kafka's `records-lag`: records not fetched yet that the
    /// consumer could read; under read_committed the records of open transactions are not
    /// counted), when both are known.
    pub fn records_lag(&self) -> Option<i64> {
        Some((self.end_offset? - self.position?).max(0))
    }
}

/// Progress of one store's restore (Kafka Streams' `restore-total` and
/// `restore-remaining-records-total` of a store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreProgress {
    /// The task.
    pub task: TaskId,
    /// The store.
    pub store: String,
    /// Its changelog partition.
    pub changelog: TopicPartition,
    /// Records written into the store so far.
    pub restored: u64,
    /// Changelog records between the fetch position and the changelog's end (`None` before
    /// the first fetch answer); records fetched but not yet written count as restored only
    /// once written, so `restored + remaining` can be below the total for a moment.
    pub remaining: Option<i64>,
    /// Whether this store reached its changelog's end (its task may wait for another one).
    pub done: bool,
}

impl Engine {
    /// The engine's counters (the running tasks' own are in [`Engine::tasks`]).
    pub fn metrics(&self) -> &EngineMetrics {
        &self.metrics
    }

    /// The consumer lag of each input partition of the running tasks (changelogs being
    /// restored are in [`Engine::restore_progress`]).
    pub fn partition_lags(&self) -> impl Iterator<Item = PartitionLag> + '_ {
        self.tasks.values().flat_map(move |task| {
            task.partitions().map(move |tp| PartitionLag {
                partition: tp.clone(),
                task: task.id(),
                position: self.fetcher.position(tp),
                high_watermark: self.fetcher.high_watermark(tp),
                end_offset: self.fetcher.end_offset(tp),
                queued: task.queued(tp),
            })
        })
    }

    /// Each task's counters over the engine's life: those of its closed instances
    /// ([`EngineMetrics::closed_tasks`]) plus the running one's; tasks no longer assigned
    /// keep their last totals.
    pub fn task_totals(&self) -> BTreeMap<TaskId, TaskMetrics> {
        let mut totals = self.metrics.closed_tasks.clone();
        for task in self.tasks.values() {
            *totals.entry(task.id()).or_default() += task.metrics();
        }
        totals
    }

    /// The restore progress of every store of the tasks being restored.
    pub fn restore_progress(&self) -> impl Iterator<Item = RestoreProgress> + '_ {
        self.restoring.iter().flat_map(move |(&task, restoring)| {
            restoring.stores().map(move |store| {
                let changelog = store.changelog();
                let remaining = match (
                    self.fetcher.position(changelog),
                    self.fetcher.end_offset(changelog),
                ) {
                    (Some(position), Some(end)) => Some((end - position).max(0)),
                    _ => None,
                };
                RestoreProgress {
                    task,
                    store: store.store().to_owned(),
                    changelog: changelog.clone(),
                    restored: store.restored(),
                    remaining: if store.is_done() { Some(0) } else { remaining },
                    done: store.is_done(),
                }
            })
        })
    }

    /// Counts the end of the commit under way: completed (`accepted`) or refused; its
    /// latency runs from its start (`commit_started`) to now.
    pub(super) fn count_commit(&mut self, accepted: bool) {
        if accepted {
            self.metrics.commit_total += 1;
        } else {
            self.metrics.commit_failed_total += 1;
        }
        if let Some(started) = self.commit_started.take() {
            self.metrics
                .commit_latency
                .record(self.now.saturating_duration_since(started));
        }
    }

    /// Copies the counters the producer and the router keep themselves (retries happen
    /// inside the producer, connections in the router).
    pub(super) fn sync_component_metrics(&mut self) {
        let retries = self.producer.retries();
        self.metrics.produce_retry_batches = retries.batches;
        self.metrics.produce_retry_records = retries.records;
        self.metrics.connections = self.router.connection_metrics();
    }

    /// Adds the counters of a task instance being closed to [`EngineMetrics::closed_tasks`].
    pub(super) fn count_closed_task(&mut self, id: TaskId, counters: TaskMetrics) {
        *self.metrics.closed_tasks.entry(id).or_default() += counters;
    }

    /// Counts `records` acknowledged (or, with `failed`, lost) for `task` on `topic`.
    pub(super) fn count_produced(
        &mut self,
        task: TaskId,
        topic: &Arc<str>,
        records: usize,
        failed: bool,
    ) {
        let counts = self
            .metrics
            .produced
            .entry((task, topic.clone()))
            .or_default();
        if failed {
            counts.errors += records as u64;
        } else {
            counts.records += records as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_sizes_fall_in_their_power_of_two_bucket() {
        let mut sizes = BatchSizes::default();
        for n in [1, 2, 3, 4, 5, 1000, 1024, 1025, 5000] {
            sizes.record(n);
        }
        assert_eq!(sizes.buckets, [1, 1, 2, 1, 0, 0, 0, 0, 0, 0, 2, 2]);
        assert_eq!(sizes.bucket_sums[2], 3 + 4);
        assert_eq!(sizes.bucket_sums[11], 1025 + 5000);
        assert_eq!(sizes.count, 9);
        assert_eq!(sizes.sum, 1 + 2 + 3 + 4 + 5 + 1000 + 1024 + 1025 + 5000);
        assert_eq!(sizes.max, 5000);
    }

    #[test]
    fn latency_stats_keep_mean_and_max() {
        let mut latency = LatencyStats::default();
        assert_eq!(latency.avg_ms(), 0.0);
        latency.record(Duration::from_millis(10));
        latency.record(Duration::from_millis(30));
        assert_eq!(latency.avg_ms(), 20.0);
        assert_eq!(latency.max_ms, 30);
    }
}
