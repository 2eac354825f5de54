//! [`RateWindow`]: per-second rates from growing totals, over windows of at least
//! [`RATE_WINDOW`](super::RATE_WINDOW).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kstreams_core::engine::Engine;
use kstreams_core::task::TaskId;

use super::snapshot::Rates;

/// The totals rates are taken of.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Totals {
    pub(crate) records_consumed: u64,
    pub(crate) process_total: u64,
    pub(crate) records_sent: u64,
    pub(crate) commit_total: u64,
    /// Records processed per task over the engine's life ([`Engine::task_totals`]), so a task
    /// revoked and assigned again within a window keeps its count.
    pub(crate) tasks: BTreeMap<TaskId, u64>,
}

impl Totals {
    /// `engine`'s totals now.
    pub(crate) fn of(engine: &Engine) -> Self {
        let m = engine.metrics();
        Self {
            records_consumed: m.records_consumed,
            process_total: m.process_total,
            records_sent: m.records_sent,
            commit_total: m.commit_total,
            tasks: engine
                .task_totals()
                .into_iter()
                .map(|(id, counters)| (id, counters.consumed_records))
                .collect(),
        }
    }
}

/// The rates of the last complete window, and where the current one started.
pub(crate) struct RateWindow {
    least: Duration,
    start: Option<(Instant, Totals)>,
    /// The thread's rates.
    pub(crate) rates: Rates,
    /// Each task's `process-rate` (0 for the tasks the engine no longer runs).
    pub(crate) tasks: BTreeMap<TaskId, f64>,
}

impl RateWindow {
    /// Windows of at least `least`.
    pub(crate) fn new(least: Duration) -> Self {
        Self {
            least,
            start: None,
            rates: Rates::default(),
            tasks: BTreeMap::new(),
        }
    }

    /// The totals are `totals` at `now`: once the window is `least` long, the rates become its
    /// growth per second and a new window starts. A task new in the window counts from 0.
    pub(crate) fn observe(&mut self, now: Instant, totals: impl FnOnce() -> Totals) {
        let Some((at, then)) = &self.start else {
            self.start = Some((now, totals()));
            return;
        };
        let elapsed = now.duration_since(*at);
        if elapsed < self.least {
            return;
        }
        let totals = totals();
        let secs = elapsed.as_secs_f64();
        let per_second = |now: u64, then: u64| now.saturating_sub(then) as f64 / secs;
        self.rates = Rates {
            records_consumed: per_second(totals.records_consumed, then.records_consumed),
            process: per_second(totals.process_total, then.process_total),
            records_sent: per_second(totals.records_sent, then.records_sent),
            commit: per_second(totals.commit_total, then.commit_total),
        };
        self.tasks = totals
            .tasks
            .iter()
            .map(|(&id, &now)| {
                (
                    id,
                    per_second(now, then.tasks.get(&id).copied().unwrap_or(0)),
                )
            })
            .collect();
        self.start = Some((now, totals));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(processed: u64, task: u64) -> Totals {
        Totals {
            records_consumed: processed,
            process_total: processed,
            records_sent: processed / 2,
            commit_total: 1,
            tasks: [(
                TaskId {
                    subtopology: 0,
                    partition: 0,
                },
                task,
            )]
            .into(),
        }
    }

    #[test]
    fn rates_are_the_growth_per_second_of_windows_at_least_this_long() {
        let t0 = Instant::now();
        let mut window = RateWindow::new(Duration::from_secs(1));
        window.observe(t0, || totals(100, 10));
        assert_eq!(window.rates, Rates::default(), "no window yet");
        window.observe(t0 + Duration::from_millis(500), || {
            panic!("not read before the window is long enough")
        });
        window.observe(t0 + Duration::from_secs(2), || totals(500, 50));
        assert_eq!(
            window.rates,
            Rates {
                records_consumed: 200.0,
                process: 200.0,
                records_sent: 100.0,
                commit: 0.0,
            }
        );
        assert_eq!(window.tasks.values().copied().collect::<Vec<_>>(), [20.0]);
        // The next window starts where this one ended; an idle one has rate 0.
        window.observe(t0 + Duration::from_secs(3), || totals(500, 50));
        assert_eq!(window.rates.process, 0.0);
    }

    #[test]
    fn a_task_new_in_the_window_counts_from_zero() {
        let t0 = Instant::now();
        let mut window = RateWindow::new(Duration::from_secs(1));
        window.observe(t0, Totals::default);
        window.observe(t0 + Duration::from_secs(1), || totals(30, 30));
        assert_eq!(window.tasks.values().copied().collect::<Vec<_>>(), [30.0]);
    }
}
