//! Static members in the seeds: every 3rd seed (`seed % 3 == 1`; `ENGINE_MEMBERS=static|
//! dynamic` forces it for every seed) gives most of its machines a `group.instance.id`
//! (`tagger-machine-<n>`, kept by every engine started there, as a restarted process keeps
//! its configuration), some of them leaving the group on close, and restarts engines on their
//! machines: closed or crashed, back after less than the session timeout (a static member
//! then gets its tasks back with no rebalance) or after more (its session expired, its tasks
//! moved).

use super::{Membership, Rng};

/// Static members of a seed (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StaticMembers {
    /// Chance in percent that a new machine's engines are static members.
    pub percent: u64,
    /// Chance in percent that a static machine's engines leave the group on close
    /// (`static_leave_on_close`).
    pub leave_on_close_percent: u64,
    /// Process restarts ([`Membership::Restart`]), by time since the start.
    pub restarts: Vec<(i64, Membership)>,
}

impl StaticMembers {
    /// Whether `seed` has static members (see the module docs).
    pub fn of_seed(seed: u64) -> bool {
        match std::env::var("ENGINE_MEMBERS").as_deref() {
            Ok("static") => true,
            Ok("dynamic") => false,
            Ok(other) => panic!("ENGINE_MEMBERS is static or dynamic, not {other}"),
            Err(_) => seed % 3 == 1,
        }
    }

    /// The static members of `seed`, whose input is fed for `feed_ms` and whose members'
    /// session timeout is `session_timeout_ms`: 1–3 restarts, half of them crashes, half of
    /// them back within the session timeout.
    pub fn draw(seed: u64, feed_ms: i64, session_timeout_ms: i64) -> Self {
        let mut r = Rng(seed ^ 0x57A7_1C00_0000_5EED);
        let percent = r.range(50, 100) as u64;
        let leave_on_close_percent = r.range(0, 30) as u64;
        let mut restarts: Vec<(i64, Membership)> = (0..r.range(1, 3))
            .map(|_| {
                let at = r.range(500, feed_ms.max(501));
                let n = r.below(super::MAX_LIVE_ENGINES);
                let crash = r.chance(50);
                let down_ms = if r.chance(50) {
                    r.range(100, session_timeout_ms * 3 / 4)
                } else {
                    r.range(session_timeout_ms + 500, session_timeout_ms + 6_000)
                };
                (at, Membership::Restart { n, crash, down_ms })
            })
            .collect();
        restarts.sort_by_key(|&(at, _)| at);
        Self {
            percent,
            leave_on_close_percent,
            restarts,
        }
    }
}
