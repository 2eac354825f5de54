//! [`Clock`]: the one place the adapters read the time.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

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

    /// Now, in milliseconds since the Unix epoch, clamped to be non-decreasing.
    pub fn now(&self) -> i64 {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        let before = self.last.fetch_max(wall, Ordering::AcqRel);
        before.max(wall)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_goes_backwards_and_is_close_to_the_wall_clock() {
        let clock = Clock::new();
        let a = clock.now();
        // Pretend an earlier reading was far in the future (a wall clock that stepped back).
        clock.last.store(a + 60_000, Ordering::Release);
        assert_eq!(clock.now(), a + 60_000);
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        assert!((a - wall).abs() < 5_000, "{a} vs {wall}");
    }
}
