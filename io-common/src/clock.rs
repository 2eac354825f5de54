//! [`Clock`]: the one place the adapters read the time.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use kstreams_core::time::Instant;

/// Wall-clock milliseconds since the Unix epoch, never going backwards.
///
/// The engine wants `now` as epoch milliseconds (it compares them with record timestamps and
/// broker-side deadlines) and requires it to be non-decreasing. `SystemTime` can step back
/// (NTP, a manual change); this clock returns the largest value it has returned so far
/// instead, so a step back freezes time until the wall clock catches up. A step forward is
/// passed on (timers fire early, which the engine handles like any late wake-up).
///
/// Shared by every stream thread of a `KafkaStreams` instance (`Arc<Clock>`), so all engines
/// of one process see one time line.
#[derive(Debug, Default)]
pub struct Clock {
    last: AtomicI64,
}

impl Clock {
    /// A clock starting at the current wall-clock time.
    pub fn new() -> Self {
        Self::default()
    }

    /// Now (milliseconds since the Unix epoch), clamped to be non-decreasing.
    pub fn now(&self) -> Instant {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        let before = self.last.fetch_max(wall, Ordering::AcqRel);
        Instant::from_millis(before.max(wall))
    }
}

/// A seed for the reconnect jitter of the engine of stream thread `thread_index`
/// ([`EngineConfig::random_seed`](kstreams_core::engine::EngineConfig::random_seed)): the wall
/// clock's nanoseconds XOR the process id (in the high half) XOR the thread index. Threads of
/// one instance (same reading of the clock) get different seeds by their index, instances by
/// their time and process id, so their engines do not reconnect in lockstep.
pub(crate) fn jitter_seed(thread_index: u64) -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ (u64::from(std::process::id()) << 32) ^ thread_index
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_seeds_differ_per_thread() {
        let seeds: std::collections::BTreeSet<u64> = (0..8).map(jitter_seed).collect();
        assert_eq!(seeds.len(), 8, "{seeds:?}");
    }

    #[test]
    fn never_goes_backwards_and_is_close_to_the_wall_clock() {
        let clock = Clock::new();
        let a = clock.now().as_millis();
        // Pretend an earlier reading was far in the future (a wall clock that stepped back).
        clock.last.store(a + 60_000, Ordering::Release);
        assert_eq!(clock.now(), Instant::from_millis(a + 60_000));
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        assert!((a - wall).abs() < 5_000, "{a} vs {wall}");
    }
}
