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
mod rates;
mod snapshot;

use std::time::{Duration, Instant};

use kstreams_core::engine::Engine;

use rates::{RateWindow, Totals};

pub use snapshot::{MetricsSnapshot, Rates, TaskMetricsSnapshot, ThreadMetrics, TimeStats};

/// Least time between two publications of a thread.
pub const PUBLISH_INTERVAL: Duration = Duration::from_millis(250);

/// Least time a rate is measured over.
pub const RATE_WINDOW: Duration = Duration::from_secs(1);

/// What one stream thread's loop keeps to publish its engine's metrics.
pub(crate) struct MetricsPublisher {
    thread_id: String,
    last_published: Option<Instant>,
    rates: RateWindow,
    process_latency: TimeStats,
    /// What was handed to the facade before.
    published: facade::Published,
}

impl MetricsPublisher {
    pub(crate) fn new(thread_id: String) -> Self {
        Self {
            thread_id,
            last_published: None,
            rates: RateWindow::new(RATE_WINDOW),
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
        self.rates.observe(now, || Totals::of(engine));
        let snapshot = self.snapshot(engine);
        facade::publish(&snapshot, &mut self.published);
        snapshot
    }

    fn snapshot(&self, engine: &Engine) -> ThreadMetrics {
        ThreadMetrics {
            thread_id: self.thread_id.clone(),
            engine: engine.metrics().clone(),
            rates: self.rates.rates,
            process_latency: self.process_latency,
            tasks: engine
                .tasks()
                .map(|t| TaskMetricsSnapshot {
                    task: t.id(),
                    counters: t.metrics(),
                    process_rate: self.rates.tasks.get(&t.id()).copied().unwrap_or(0.0),
                })
                .collect(),
            partitions: engine.partition_lags().collect(),
            restores: engine.restore_progress().collect(),
            standbys: engine.standby_progress().collect(),
        }
    }
}
