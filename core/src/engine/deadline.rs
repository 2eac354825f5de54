//! Which timer the engine wants to run next, and why: [`TimeoutReason`] and the fold
//! [`Engine::poll_timeout`](super::Engine::poll_timeout) runs over its sub-systems' deadlines
//! (no allocation; the earliest wins, the first seen on a tie).

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
