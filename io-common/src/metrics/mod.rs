//! Metrics of the stream threads: what each thread's loop reads from its engine
//! ([`Engine::metrics`], [`Engine::partition_lags`], [`Engine::restore_progress`], the tasks'
//! counters), completes with what only the loop can measure (rates over wall time, the
//! processing latency), and publishes twice: as a [`ThreadMetrics`] snapshot that
//! [`StreamsHandle::metrics`](crate::StreamsHandle::metrics) returns, and to the `metrics`
//! facade ([`facade`]) for whatever exporter the application installed.
//!
//! # Decisions
//! - **When**: a thread publishes at most every [`PUBLISH_INTERVAL`], after a poll of its engine
//!   (a running engine is polled at least every fetch wait, 500 ms by default), and once more
//!   when it stops. Counters are plain numbers in the engine: nothing is locked or allocated
//!   when they count.
//! - **Rates** (`-rate`, per second) are the growth of a total over the last window of at
//!   least [`RATE_WINDOW`] between two publications: per second over about the last second,
//!   where Kafka averages over 30 s samples. Exporters that compute rates themselves (e.g.
//!   Prometheus' `rate()`) can use the totals instead.
//! - **Latencies**: the commit latency is the engine's (its clock has milliseconds: enough for
//!   a commit, which waits for the producer and the coordinator). A batch takes microseconds:
//!   the loop measures the processing latency with the monotonic clock around each poll of
//!   its engine in which batches ran (`process-latency`: that poll's time, the routing of the
//!   fetch answers that fed the batches included). `-avg` and `-max` run over the thread's
//!   life (Kafka uses a 30 s window).

pub mod facade;
mod snapshot;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kstreams_core::engine::{Engine, EngineMetrics};
use kstreams_core::task::TaskId;

pub use snapshot::{MetricsSnapshot, Rates, TaskMetricsSnapshot, ThreadMetrics, TimeStats};

/// Least time between two publications of a thread.
pub const PUBLISH_INTERVAL: Duration = Duration::from_millis(250);

/// Least time a rate is measured over.
pub const RATE_WINDOW: Duration = Duration::from_secs(1);

/// The totals a rate window started from.
struct WindowStart {
    at: Instant,
    records_consumed: u64,
    process_total: u64,
    records_sent: u64,
    commit_total: u64,
    tasks: BTreeMap<TaskId, u64>,
}

impl WindowStart {
    fn of(at: Instant, engine: &Engine) -> Self {
        let m = engine.metrics();
        Self {
            at,
            records_consumed: m.records_consumed,
            process_total: m.process_total,
            records_sent: m.records_sent,
            commit_total: m.commit_total,
            tasks: engine
                .tasks()
                .map(|t| (t.id(), t.metrics().consumed_records))
                .collect(),
        }
    }
}

/// What one stream thread's loop keeps to publish its engine's metrics.
pub(crate) struct MetricsPublisher {
    thread_id: String,
    last_published: Option<Instant>,
    window: Option<WindowStart>,
    rates: Rates,
    task_rates: BTreeMap<TaskId, f64>,
    process_latency: TimeStats,
    /// What was handed to the facade before.
    published: facade::Published,
}

impl MetricsPublisher {
    pub(crate) fn new(thread_id: String) -> Self {
        Self {
            thread_id,
            last_published: None,
            window: None,
            rates: Rates::default(),
            task_rates: BTreeMap::new(),
            process_latency: TimeStats::default(),
            published: facade::Published::default(),
        }
    }

    /// A poll of the engine that ran batches took `elapsed`.
    pub(crate) fn processed(&mut self, elapsed: Duration) {
        self.process_latency.record(elapsed);
    }

    /// Whether a publication is due at `now` (always for the final one).
    pub(crate) fn due(&self, now: Instant) -> bool {
        self.last_published
            .is_none_or(|last| now.duration_since(last) >= PUBLISH_INTERVAL)
    }

    /// The snapshot of `engine` at `now`, published to the facade too.
    pub(crate) fn publish(&mut self, engine: &Engine, now: Instant) -> ThreadMetrics {
        self.last_published = Some(now);
        self.update_rates(engine, now);
        let snapshot = self.snapshot(engine);
        facade::publish(&snapshot, &mut self.published);
        snapshot
    }

    fn update_rates(&mut self, engine: &Engine, now: Instant) {
        let Some(start) = &self.window else {
            self.window = Some(WindowStart::of(now, engine));
            return;
        };
        let elapsed = now.duration_since(start.at);
        if elapsed < RATE_WINDOW {
            return;
        }
        let secs = elapsed.as_secs_f64();
        let per_second = |now: u64, then: u64| now.saturating_sub(then) as f64 / secs;
        let m: &EngineMetrics = engine.metrics();
        self.rates = Rates {
            records_consumed: per_second(m.records_consumed, start.records_consumed),
            process: per_second(m.process_total, start.process_total),
            records_sent: per_second(m.records_sent, start.records_sent),
            commit: per_second(m.commit_total, start.commit_total),
        };
        self.task_rates = engine
            .tasks()
            .map(|t| {
                let then = start.tasks.get(&t.id()).copied().unwrap_or(0);
                (t.id(), per_second(t.metrics().consumed_records, then))
            })
            .collect();
        self.window = Some(WindowStart::of(now, engine));
    }

    fn snapshot(&self, engine: &Engine) -> ThreadMetrics {
        ThreadMetrics {
            thread_id: self.thread_id.clone(),
            engine: engine.metrics().clone(),
            rates: self.rates,
            process_latency: self.process_latency,
            tasks: engine
                .tasks()
                .map(|t| TaskMetricsSnapshot {
                    task: t.id(),
                    counters: t.metrics(),
                    process_rate: self.task_rates.get(&t.id()).copied().unwrap_or(0.0),
                })
                .collect(),
            partitions: engine.partition_lags().collect(),
            restores: engine.restore_progress().collect(),
        }
    }
}
