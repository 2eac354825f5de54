//! Which timer the engine wants to run next, and why: [`TimeoutReason`] and the fold
//! [`Engine::poll_timeout`](super::Engine::poll_timeout) runs over its sub-systems' deadlines
//! (no allocation; the earliest wins, the first seen on a tie).

use super::Engine;
use super::commit::CommitPhase;
use crate::time::Instant;

/// The sub-system whose deadline [`Engine::poll_timeout`](super::Engine::poll_timeout)
/// returned, as [`Engine::last_timeout_reason`](super::Engine::last_timeout_reason) reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TimeoutReason {
    /// A broker connection may be opened again (reconnect backoff).
    Reconnect,
    /// A request in flight reaches its answer deadline.
    RequestDeadline,
    /// A request waiting for a connection reaches its deadline.
    QueuedRequestDeadline,
    /// A connection's SASL session must be re-authenticated (KIP-368).
    Reauthentication,
    /// Metadata refresh or retry.
    Metadata,
    /// Fetcher retry or backoff.
    Fetcher,
    /// Group membership: heartbeat, session, rejoin or commit retry.
    Group,
    /// Producer: linger, retry backoff or delivery timeout.
    Producer,
    /// Internal topic creation retry.
    InternalTopics,
    /// An assignment waiting for sink topics gives up (`max_block`).
    SinkTopicsWait,
    /// The commit interval ends.
    Commit,
    /// A task's wall-clock punctuation is due.
    Punctuation,
}

/// A deadline and the sub-system it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Deadline {
    pub(crate) at: Instant,
    pub(crate) reason: TimeoutReason,
}

/// The earliest of the deadlines offered to it.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Earliest(Option<Deadline>);

impl Earliest {
    /// Takes `at` (if any) when it is earlier than the earliest so far.
    pub(crate) fn offer(&mut self, at: Option<Instant>, reason: TimeoutReason) {
        if let Some(at) = at
            && self.0.is_none_or(|d| at < d.at)
        {
            self.0 = Some(Deadline { at, reason });
        }
    }

    /// The winner.
    pub(crate) fn get(self) -> Option<Deadline> {
        self.0
    }
}

impl Engine {
    /// The fold behind [`Engine::poll_timeout`]: the earliest deadline of the sub-systems that
    /// can act now, with its reason.
    pub(super) fn next_deadline(&self) -> Option<Deadline> {
        if self.stopped() {
            return None;
        }
        let mut earliest = Earliest::default();
        if self.router.all_general_down() {
            // No general connection: components cannot act before one is open, so the next
            // thing to do is the earliest reconnect (never a busy loop on their due timers).
            earliest.offer(
                self.router.earliest_general_reconnect(),
                TimeoutReason::Reconnect,
            );
            return earliest.get();
        }
        // Components build requests only once a connection negotiated its versions: before
        // that their due timers are not work (waiting on them would spin).
        if self.router.any_ready() {
            earliest.offer(self.metadata.poll_timeout(), TimeoutReason::Metadata);
            earliest.offer(self.fetcher.poll_timeout(), TimeoutReason::Fetcher);
            earliest.offer(self.group.poll_timeout(), TimeoutReason::Group);
            earliest.offer(self.producer.poll_timeout(), TimeoutReason::Producer);
            earliest.offer(
                self.internal_topics.poll_timeout(),
                TimeoutReason::InternalTopics,
            );
        }
        earliest.offer(
            self.sink_wait_since
                .map(|since| since + self.config.max_block),
            TimeoutReason::SinkTopicsWait,
        );
        // A commit under way waits for answers, not for time: offering its (past) interval
        // deadline would make the adapter spin.
        if !self.tasks.is_empty()
            && matches!(self.commit, CommitPhase::Idle)
            && !self.commit_waits_for_rebalance()
        {
            earliest.offer(
                Some(self.last_commit + self.config.commit_interval),
                TimeoutReason::Commit,
            );
        }
        for task in self.tasks.values() {
            earliest.offer(
                task.next_wall_clock_punctuation(),
                TimeoutReason::Punctuation,
            );
        }
        self.router.offer_deadlines(&mut earliest);
        earliest.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_earliest_deadline_wins_and_the_first_on_a_tie() {
        let mut e = Earliest::default();
        e.offer(None, TimeoutReason::Metadata);
        e.offer(Some(Instant::from_millis(20)), TimeoutReason::Group);
        e.offer(Some(Instant::from_millis(10)), TimeoutReason::Commit);
        e.offer(Some(Instant::from_millis(10)), TimeoutReason::Producer);
        e.offer(Some(Instant::from_millis(30)), TimeoutReason::Fetcher);
        assert_eq!(
            e.get(),
            Some(Deadline {
                at: Instant::from_millis(10),
                reason: TimeoutReason::Commit
            })
        );
        assert_eq!(Earliest::default().get(), None);
    }
}
