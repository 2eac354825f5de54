//! Time as the core sees it: an [`Instant`] is a point in time handed in by the caller, a
//! [`Duration`] a non-negative span. Both count milliseconds; they are distinct types so a
//! deadline cannot be mixed up with a timeout.
//!
//! The core never reads a clock. Adapters pass the wall clock's milliseconds since the Unix
//! epoch (wall-clock punctuation and record timestamps need that scale) and keep it
//! non-decreasing; every component treats a smaller `now` as the largest it has seen.
//! Arithmetic saturates: a deadline far in the future is [`Instant::MAX`], never a wrap.

use std::fmt;
use std::ops::{Add, AddAssign, Sub};

/// A point in time: milliseconds since the Unix epoch, as the adapter's clock reads it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(i64);

impl Instant {
    /// The earliest instant (a deadline that is always due).
    pub const MIN: Instant = Instant(i64::MIN);
    /// The latest instant (a deadline that never comes).
    pub const MAX: Instant = Instant(i64::MAX);
    /// The Unix epoch.
    pub const EPOCH: Instant = Instant(0);

    /// The instant `ms` milliseconds after the Unix epoch.
    pub const fn from_millis(ms: i64) -> Self {
        Instant(ms)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// How long after `earlier` this is; zero when `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }

    /// `self + duration`, saturating at [`Instant::MAX`].
    pub fn saturating_add(self, duration: Duration) -> Instant {
        Instant(self.0.saturating_add_unsigned(duration.0))
    }

    /// `self - duration`, saturating at [`Instant::MIN`].
    pub fn saturating_sub(self, duration: Duration) -> Instant {
        Instant(self.0.saturating_sub_unsigned(duration.0))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;

    /// Saturating: see [`Instant::saturating_add`].
    fn add(self, rhs: Duration) -> Instant {
        self.saturating_add(rhs)
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, rhs: Duration) {
        *self = self.saturating_add(rhs);
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;

    /// Saturating: see [`Instant::saturating_sub`].
    fn sub(self, rhs: Duration) -> Instant {
        self.saturating_sub(rhs)
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;

    /// Saturating: see [`Instant::saturating_duration_since`].
    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_duration_since(rhs)
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// A span of time in milliseconds, never negative.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(u64);

impl Duration {
    /// No time at all.
    pub const ZERO: Duration = Duration(0);
    /// The longest span (adding it to any instant gives [`Instant::MAX`]).
    pub const MAX: Duration = Duration(u64::MAX);

    /// `ms` milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        Duration(ms)
    }

    /// `s` seconds.
    pub const fn from_secs(s: u64) -> Self {
        Duration(s.saturating_mul(1_000))
    }

    /// Kafka's millisecond settings are signed (`i32`/`i64`): a negative value counts as zero.
    pub fn from_millis_i64(ms: i64) -> Self {
        Duration(u64::try_from(ms).unwrap_or(0))
    }

    /// The span in milliseconds.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// The span in milliseconds as Kafka's `i32` fields carry it, saturating at `i32::MAX`.
    pub fn as_millis_i32(self) -> i32 {
        i32::try_from(self.0).unwrap_or(i32::MAX)
    }

    /// The span in milliseconds as an `i64`, saturating at `i64::MAX`.
    pub fn as_millis_i64(self) -> i64 {
        i64::try_from(self.0).unwrap_or(i64::MAX)
    }

    /// `self * factor`, saturating.
    pub const fn saturating_mul(self, factor: u64) -> Duration {
        Duration(self.0.saturating_mul(factor))
    }

    /// `self + other`, saturating.
    pub const fn saturating_add(self, other: Duration) -> Duration {
        Duration(self.0.saturating_add(other.0))
    }

    /// `self - other`, or zero.
    pub const fn saturating_sub(self, other: Duration) -> Duration {
        Duration(self.0.saturating_sub(other.0))
    }

    /// The same span as a [`std::time::Duration`] (for adapters' timers).
    pub const fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.0)
    }
}

impl From<std::time::Duration> for Duration {
    /// Whole milliseconds, saturating.
    fn from(d: std::time::Duration) -> Self {
        Duration(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

impl Add for Duration {
    type Output = Duration;

    /// Saturating.
    fn add(self, rhs: Duration) -> Duration {
        self.saturating_add(rhs)
    }
}

impl fmt::Debug for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_instead_of_wrapping() {
        assert_eq!(Instant::MAX + Duration::from_millis(1), Instant::MAX);
        assert_eq!(Instant::from_millis(5) + Duration::MAX, Instant::MAX);
        assert_eq!(
            Instant::MIN.saturating_sub(Duration::from_secs(1)),
            Instant::MIN
        );
        assert_eq!(Instant::MIN - Duration::from_secs(1), Instant::MIN);
        assert_eq!(
            Instant::from_millis(10) - Duration::from_millis(3),
            Instant::from_millis(7)
        );
        assert_eq!(
            Instant::from_millis(3) - Instant::from_millis(10),
            Duration::ZERO
        );
        assert_eq!(
            Instant::MAX - Instant::MIN,
            Duration::from_millis(i64::MAX as u64)
        );
        assert_eq!(Duration::from_millis_i64(-5), Duration::ZERO);
        assert_eq!(Duration::MAX.as_millis_i32(), i32::MAX);
        assert_eq!(Duration::MAX.as_millis_i64(), i64::MAX);
    }

    #[test]
    fn std_durations_convert_to_whole_milliseconds() {
        let d = Duration::from(std::time::Duration::from_micros(2_500));
        assert_eq!(d, Duration::from_millis(2));
        assert_eq!(d.to_std(), std::time::Duration::from_millis(2));
        assert_eq!(Duration::from_secs(3).as_millis(), 3_000);
    }
}
