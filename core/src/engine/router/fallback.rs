//! Per-broker version fallback for brokers that mis-implement flexible versions.
//!
//! Some brokers advertise flexible versions (KIP-482 tagged fields and compact encodings) of
//! an API they cannot really speak: Tansu 0.6.0 answers Fetch v12 with a tagged field only
//! v16 defines; librdkafka's mock cluster reads JoinGroup v6 and SyncGroup v4 array counts as
//! non-flexible and drops the connection (or worse). A request of such a version fails the
//! same way every time, so retrying it forever would hang the application without a word.
//!
//! The rule, per broker and API:
//! - a response of a flexible version that cannot be decoded, or two connection drops in a
//!   row right after a request of a flexible version (the broker closed the socket within
//!   [`DROP_WINDOW`] of it, with no answer), cap the API at its last non-flexible version for
//!   that broker, once, with a warning naming broker, API and versions. The classic group
//!   APIs fall back together: a broker that cannot parse one of them cannot parse the
//!   others' compact arrays either (librdkafka's mock crashes on SyncGroup v4 after failing
//!   JoinGroup v6);
//! - at a non-flexible version, [`GIVE_UP_AFTER`] undecodable answers in a row, spanning at
//!   least [`GIVE_UP_SPAN`], stop the engine with a typed error instead of retrying forever
//!   (a broken version stays broken; librdkafka's mock answers a follower's SyncGroup with a
//!   null assignment while its group settles, for over 30 s after a member was killed, which
//!   is not that). Every such answer is a warning meanwhile. Dropped connections alone never do: a
//!   flaky network drops them too (the seeded simulation's random disconnects did, five in a
//!   row, in a few seeds of 100,000), and each drop is reported as a warning anyway;
//! - any decoded response of the API from that broker resets its count, and proves its
//!   version: undecodable answers at a version the broker answered decodably before are a
//!   broker fault of the moment, not an incompatibility, so they are retried and never give
//!   up.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::ApiKey;

use super::codec::{is_flexible, last_non_flexible_version};
use crate::client::BrokerId;
use crate::time::{Duration, Instant};

/// A drop this soon after the request counts as the broker refusing the request.
pub(crate) const DROP_WINDOW: Duration = Duration::from_secs(1);
/// Undecodable answers in a row, at a non-flexible version, after which the engine gives up.
pub(crate) const GIVE_UP_AFTER: u32 = 5;
/// The least time from the first to the last of the undecodable answers that give up.
pub(crate) const GIVE_UP_SPAN: Duration = Duration::from_secs(300);
/// Drops in a row of a flexible version after which it falls back.
const DROPS_BEFORE_FALLBACK: u32 = 2;

/// The classic consumer-group APIs: one broker's implementation of their flexible versions
/// stands or falls together.
const GROUP_FAMILY: [ApiKey; 4] = [
    ApiKey::JoinGroup,
    ApiKey::SyncGroup,
    ApiKey::Heartbeat,
    ApiKey::LeaveGroup,
];

/// The lowest version of `api` the engine can work with: falling back below it would turn a
/// retry into a failure. TxnOffsetCommit needs v3 (KIP-447's generation and member id, which
/// exactly-once commits carry); v3 is also its first flexible version.
fn lowest_needed_version(api: ApiKey) -> i16 {
    match api {
        ApiKey::TxnOffsetCommit => 3,
        _ => 0,
    }
}

/// How a request failed in a way that may be the version's fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VersionFailure {
    /// The response body could not be decoded.
    Undecodable,
    /// The broker closed the connection right after the request, unanswered.
    Dropped,
}

/// What to do after a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Retry as before.
    Retry,
    /// These APIs are now capped for the broker at the given versions (from the failed
    /// `version` of the failing API); reconnect so the new caps are negotiated.
    FellBack { caps: Vec<(ApiKey, i16)> },
    /// Nothing works: stop with a typed error after this many failures in a row.
    GiveUp { failures: u32 },
}

/// Failures in a row of one API with one broker.
#[derive(Debug, Clone, Copy, Default)]
struct Streak {
    failures: u32,
    undecodable: u32,
    /// When the first undecodable answer of the streak came.
    first_undecodable: Option<Instant>,
}

/// See the [module docs](self).
#[derive(Debug, Default)]
pub(crate) struct VersionFallback {
    /// Failures in a row per (broker, API key): all, and the undecodable ones.
    failures: BTreeMap<(BrokerId, i16), Streak>,
    /// Caps per (broker, API key) with their API.
    caps: BTreeMap<(BrokerId, i16), (ApiKey, i16)>,
    /// (broker, API key, version) answered decodably at least once.
    proven: BTreeSet<(BrokerId, i16, i16)>,
}

impl VersionFallback {
    /// The cap this fallback put on `api` for `broker`, if any.
    pub(crate) fn cap(&self, broker: BrokerId, api: ApiKey) -> Option<i16> {
        self.caps.get(&(broker, api as i16)).map(|&(_, v)| v)
    }

    /// The lowest cap any broker has for `api`.
    pub(crate) fn lowest_cap(&self, api: ApiKey) -> Option<i16> {
        self.caps
            .values()
            .filter(|(capped, _)| *capped == api)
            .map(|&(_, v)| v)
            .min()
    }

    /// Every cap put on `broker`.
    pub(crate) fn caps_of(&self, broker: BrokerId) -> impl Iterator<Item = (ApiKey, i16)> + '_ {
        self.caps
            .range((broker, i16::MIN)..=(broker, i16::MAX))
            .map(|(_, &cap)| cap)
    }

    /// A response of `api` at `version` from `broker` decoded: the version works.
    pub(crate) fn succeeded(&mut self, broker: BrokerId, api: ApiKey, version: i16) {
        self.failures.remove(&(broker, api as i16));
        self.proven.insert((broker, api as i16, version));
    }

    /// A request of `api` at `version` to `broker` failed as `failure`.
    pub(crate) fn failed(
        &mut self,
        broker: BrokerId,
        api: ApiKey,
        version: i16,
        failure: VersionFailure,
        now: Instant,
    ) -> Verdict {
        let streak = self.failures.entry((broker, api as i16)).or_default();
        streak.failures = streak.failures.saturating_add(1);
        if failure == VersionFailure::Undecodable {
            streak.undecodable = streak.undecodable.saturating_add(1);
            streak.first_undecodable.get_or_insert(now);
        }
        let Streak {
            failures: count,
            undecodable,
            first_undecodable,
        } = *streak;
        let persistent = first_undecodable.is_some_and(|first| now - first >= GIVE_UP_SPAN);
        // A drop at a version the broker answered before is the network's doing, not the
        // version's; and an API is never capped below the lowest version its users need.
        let refused = failure == VersionFailure::Undecodable
            || !self.proven.contains(&(broker, api as i16, version));
        let fallback = last_non_flexible_version(api)
            .filter(|_| is_flexible(api, version) && refused)
            .filter(|&to| to >= lowest_needed_version(api))
            .filter(|&to| self.cap(broker, api).is_none_or(|cap| cap > to));
        match fallback {
            Some(_) if failure == VersionFailure::Undecodable || count >= DROPS_BEFORE_FALLBACK => {
                self.failures.remove(&(broker, api as i16));
                let family: &[ApiKey] = if GROUP_FAMILY.contains(&api) {
                    &GROUP_FAMILY
                } else {
                    std::slice::from_ref(&api)
                };
                let mut caps = Vec::new();
                for &member in family {
                    let Some(to) = last_non_flexible_version(member) else {
                        continue; // never flexible: nothing to cap
                    };
                    if self.cap(broker, member).is_none_or(|cap| cap > to) {
                        self.caps.insert((broker, member as i16), (member, to));
                        caps.push((member, to));
                    }
                }
                Verdict::FellBack { caps }
            }
            Some(_) => Verdict::Retry,
            None if undecodable >= GIVE_UP_AFTER
                && persistent
                && !self.proven.contains(&(broker, api as i16, version)) =>
            {
                Verdict::GiveUp {
                    failures: undecodable,
                }
            }
            None => Verdict::Retry,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Instant = Instant::EPOCH;

    #[test]
    fn an_undecodable_flexible_response_falls_back_at_once_and_only_for_its_api() {
        let mut f = VersionFallback::default();
        let verdict = f.failed(1, ApiKey::Fetch, 12, VersionFailure::Undecodable, T0);
        assert_eq!(
            verdict,
            Verdict::FellBack {
                caps: vec![(ApiKey::Fetch, 11)]
            }
        );
        assert_eq!(f.cap(1, ApiKey::Fetch), Some(11));
        assert_eq!(f.cap(2, ApiKey::Fetch), None, "per broker");
        assert_eq!(f.cap(1, ApiKey::Produce), None, "per API");
    }

    #[test]
    fn drops_fall_back_on_the_second_in_a_row_and_the_group_apis_fall_back_together() {
        let mut f = VersionFallback::default();
        assert_eq!(
            f.failed(0, ApiKey::JoinGroup, 6, VersionFailure::Dropped, T0),
            Verdict::Retry
        );
        let Verdict::FellBack { caps } =
            f.failed(0, ApiKey::JoinGroup, 6, VersionFailure::Dropped, T0)
        else {
            panic!("second drop falls back");
        };
        assert_eq!(
            caps,
            vec![
                (ApiKey::JoinGroup, 5),
                (ApiKey::SyncGroup, 3),
                (ApiKey::Heartbeat, 3),
                (ApiKey::LeaveGroup, 3)
            ]
        );
        assert_eq!(f.caps_of(0).count(), 4);
        assert_eq!(f.caps_of(1).count(), 0);
    }

    #[test]
    fn a_success_in_between_resets_the_count() {
        let mut f = VersionFallback::default();
        f.failed(0, ApiKey::Produce, 9, VersionFailure::Dropped, T0);
        f.succeeded(0, ApiKey::Produce, 9);
        assert_eq!(
            f.failed(0, ApiKey::Produce, 9, VersionFailure::Dropped, T0),
            Verdict::Retry
        );
    }

    #[test]
    fn drops_at_a_version_answered_before_do_not_fall_back() {
        let mut f = VersionFallback::default();
        f.succeeded(0, ApiKey::OffsetCommit, 9);
        for _ in 0..3 {
            assert_eq!(
                f.failed(0, ApiKey::OffsetCommit, 9, VersionFailure::Dropped, T0),
                Verdict::Retry
            );
        }
        assert_eq!(f.cap(0, ApiKey::OffsetCommit), None);
    }

    #[test]
    fn txn_offset_commit_never_falls_back_below_what_transactions_need() {
        let mut f = VersionFallback::default();
        for _ in 0..3 {
            assert_eq!(
                f.failed(0, ApiKey::TxnOffsetCommit, 4, VersionFailure::Dropped, T0),
                Verdict::Retry
            );
        }
        assert_eq!(f.cap(0, ApiKey::TxnOffsetCommit), None);
    }

    #[test]
    fn a_version_answered_decodably_before_never_gives_up() {
        let mut f = VersionFallback::default();
        f.succeeded(3, ApiKey::SyncGroup, 3);
        for _ in 0..3 * GIVE_UP_AFTER {
            assert_eq!(
                f.failed(3, ApiKey::SyncGroup, 3, VersionFailure::Undecodable, T0),
                Verdict::Retry,
                "a broker fault of the moment, not an incompatibility"
            );
        }
        // Another broker, or another version, has proven nothing.
        for _ in 1..GIVE_UP_AFTER {
            f.failed(1, ApiKey::SyncGroup, 3, VersionFailure::Undecodable, T0);
        }
        assert!(matches!(
            f.failed(
                1,
                ApiKey::SyncGroup,
                3,
                VersionFailure::Undecodable,
                T0 + GIVE_UP_SPAN
            ),
            Verdict::GiveUp { .. }
        ));
    }

    #[test]
    fn undecodable_answers_within_a_short_span_do_not_give_up() {
        let mut f = VersionFallback::default();
        let just_short = T0 + GIVE_UP_SPAN - Duration::from_millis(1);
        for _ in 0..3 * GIVE_UP_AFTER {
            assert_eq!(
                f.failed(
                    1,
                    ApiKey::SyncGroup,
                    3,
                    VersionFailure::Undecodable,
                    just_short
                ),
                Verdict::Retry
            );
        }
        assert!(matches!(
            f.failed(
                1,
                ApiKey::SyncGroup,
                3,
                VersionFailure::Undecodable,
                just_short + GIVE_UP_SPAN
            ),
            Verdict::GiveUp { .. }
        ));
    }

    #[test]
    fn non_flexible_versions_give_up_after_repeated_undecodable_answers_only() {
        let mut f = VersionFallback::default();
        for _ in 0..3 * GIVE_UP_AFTER {
            assert_eq!(
                f.failed(0, ApiKey::JoinGroup, 5, VersionFailure::Dropped, T0),
                Verdict::Retry,
                "a flaky network drops connections too"
            );
        }
        for _ in 1..GIVE_UP_AFTER {
            assert_eq!(
                f.failed(0, ApiKey::JoinGroup, 5, VersionFailure::Undecodable, T0),
                Verdict::Retry
            );
        }
        assert_eq!(
            f.failed(
                0,
                ApiKey::JoinGroup,
                5,
                VersionFailure::Undecodable,
                T0 + GIVE_UP_SPAN
            ),
            Verdict::GiveUp {
                failures: GIVE_UP_AFTER
            }
        );
    }

    #[test]
    fn a_response_built_before_the_cap_does_not_fall_back_twice() {
        let mut f = VersionFallback::default();
        f.failed(0, ApiKey::Fetch, 12, VersionFailure::Undecodable, T0);
        // A second v12 response that was already in flight.
        assert_eq!(
            f.failed(0, ApiKey::Fetch, 12, VersionFailure::Undecodable, T0),
            Verdict::Retry
        );
    }
}
