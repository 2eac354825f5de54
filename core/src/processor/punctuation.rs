//! Scheduled punctuations of a task's processors.
//!
//! Both clocks are kept on one scale, milliseconds since the epoch: stream time is a record
//! timestamp (data, an `i64`), wall-clock time an [`Instant`]'s milliseconds (the task converts
//! when it passes wall-clock time in; [`Punctuators::next_wall_clock_due`] converts back).

use super::{PunctuationType, PunctuatorId};
use crate::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub(crate) struct Punctuator {
    pub(crate) id: PunctuatorId,
    pub(crate) node: usize,
    /// At least 1 ms.
    pub(crate) interval: Duration,
    pub(crate) kind: PunctuationType,
    /// When it is due on its clock, in ms since the epoch. `None`: fires at the first time seen
    /// (stream time before the first record).
    pub(crate) next_due: Option<i64>,
}

/// The punctuations of one task.
#[derive(Debug, Default)]
pub(crate) struct Punctuators {
    next_id: u64,
    list: Vec<Punctuator>,
}

impl Punctuators {
    /// Schedules a punctuation every `interval` (at least 1 ms) of the `kind` clock, whose
    /// time is `now` (ms since the epoch; `None` for stream time before the first record).
    pub(crate) fn schedule(
        &mut self,
        node: usize,
        interval: Duration,
        kind: PunctuationType,
        now: Option<i64>,
    ) -> PunctuatorId {
        let id = PunctuatorId(self.next_id);
        self.next_id += 1;
        let interval = interval.max(Duration::from_millis(1));
        self.list.push(Punctuator {
            id,
            node,
            interval,
            kind,
            next_due: now.map(|t| t.saturating_add(interval.as_millis_i64())),
        });
        id
    }

    pub(crate) fn cancel(&mut self, node: usize, id: PunctuatorId) {
        self.list.retain(|p| !(p.id == id && p.node == node));
    }

    /// The punctuations of `kind` due at `time` (ms since the epoch), in scheduling order;
    /// each is moved to its next due time past `time` (missed intervals fire once, as in
    /// Kafka Streams).
    pub(crate) fn take_due(
        &mut self,
        kind: PunctuationType,
        time: i64,
    ) -> Vec<(usize, PunctuatorId)> {
        let mut due = Vec::new();
        for p in self.list.iter_mut().filter(|p| p.kind == kind) {
            let fire = p.next_due.is_none_or(|d| time >= d);
            if fire {
                let base = p.next_due.unwrap_or(time);
                let interval = p.interval.as_millis_i64();
                // Saturating: stream time is a record timestamp, any i64 a producer wrote.
                let missed = (time.saturating_sub(base) / interval).saturating_add(1);
                p.next_due = Some(base.saturating_add(missed.saturating_mul(interval)));
                due.push((p.node, p.id));
            }
        }
        due
    }

    /// Whether `id` is still scheduled (it may be cancelled by an earlier punctuation).
    pub(crate) fn contains(&self, id: PunctuatorId) -> bool {
        self.list.iter().any(|p| p.id == id)
    }

    /// The earliest due wall-clock time, for the task owner's timer.
    pub(crate) fn next_wall_clock_due(&self) -> Option<Instant> {
        self.list
            .iter()
            .filter(|p| p.kind == PunctuationType::WallClock)
            .filter_map(|p| p.next_due)
            .min()
            .map(Instant::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_once_per_advance_and_skips_missed_intervals() {
        let mut p = Punctuators::default();
        let id = p.schedule(
            3,
            Duration::from_millis(10),
            PunctuationType::WallClock,
            Some(100),
        );
        assert!(p.take_due(PunctuationType::WallClock, 109).is_empty());
        assert_eq!(p.take_due(PunctuationType::WallClock, 110), vec![(3, id)]);
        assert!(p.take_due(PunctuationType::WallClock, 115).is_empty());
        // 120, 130 and 140 were all missed: one firing, next due 150.
        assert_eq!(p.take_due(PunctuationType::WallClock, 145).len(), 1);
        assert_eq!(p.next_wall_clock_due(), Some(Instant::from_millis(150)));
        assert!(p.take_due(PunctuationType::StreamTime, 1_000).is_empty());
    }

    #[test]
    fn stream_time_punctuation_without_time_fires_at_first_record() {
        let mut p = Punctuators::default();
        let id = p.schedule(
            0,
            Duration::from_millis(5),
            PunctuationType::StreamTime,
            None,
        );
        assert_eq!(p.take_due(PunctuationType::StreamTime, 42), vec![(0, id)]);
        assert!(p.take_due(PunctuationType::StreamTime, 46).is_empty());
        assert_eq!(p.take_due(PunctuationType::StreamTime, 47).len(), 1);
        p.cancel(0, id);
        assert!(!p.contains(id));
        assert!(p.take_due(PunctuationType::StreamTime, 100).is_empty());
    }
}
