//! Fault injection: scripted per-API faults and seeded random faults, plus the seeded PRNG.

use std::collections::{BTreeMap, VecDeque};

use kafka_protocol::ResponseError;
use kafka_protocol::messages::ApiKey;

/// A fault applied to one request instead of serving it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this Kafka error code at the level the API reports errors (partition-level
    /// for Produce, Fetch, ListOffsets, OffsetCommit, OffsetFetch v1; topic-level for Metadata
    /// and CreateTopics; top-level otherwise). The request has no effect.
    Error(i16),
    /// Close the connection without answering (the request has no effect).
    Disconnect,
}

/// Seeded random faults: each request (except ApiVersions) independently fails with
/// `error_probability` (a retriable error typical of its API) or is answered by closing the
/// connection with `disconnect_probability`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RandomFaults {
    /// Probability in `[0, 1]` that a request gets a retriable error.
    pub error_probability: f64,
    /// Probability in `[0, 1]` that a request closes its connection unanswered.
    pub disconnect_probability: f64,
}

/// SplitMix64: a tiny, well-distributed, seedable generator (deterministic across platforms).
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform float in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A uniform index below `n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// The faults waiting to be applied.
#[derive(Debug, Default)]
pub struct FaultPlan {
    scripted: BTreeMap<i16, VecDeque<Fault>>,
    /// Random faults, if enabled.
    pub random: Option<RandomFaults>,
}

impl FaultPlan {
    /// Queues `count` faults for the next requests of `api`.
    pub fn script(&mut self, api: ApiKey, fault: Fault, count: usize) {
        let queue = self.scripted.entry(api as i16).or_default();
        queue.extend(std::iter::repeat_n(fault, count));
    }

    /// Number of scripted faults not yet applied for `api`.
    pub fn pending(&self, api: ApiKey) -> usize {
        self.scripted.get(&(api as i16)).map_or(0, VecDeque::len)
    }

    /// The fault for the next request of `api`, if any (consumes it).
    pub fn next(&mut self, api: ApiKey, rng: &mut SplitMix64) -> Option<Fault> {
        if let Some(fault) = self
            .scripted
            .get_mut(&(api as i16))
            .and_then(VecDeque::pop_front)
        {
            return Some(fault);
        }
        let random = self.random?;
        if api == ApiKey::ApiVersions {
            return None;
        }
        let draw = rng.next_f64();
        if draw < random.disconnect_probability {
            return Some(Fault::Disconnect);
        }
        if draw < random.disconnect_probability + random.error_probability {
            let choices = retriable_errors(api);
            if choices.is_empty() {
                return None;
            }
            let error = choices[rng.below(choices.len())];
            return Some(Fault::Error(error.code()));
        }
        None
    }
}

/// Retriable errors a real broker returns for `api` in normal operation (leader moves,
/// coordinator moves, slow replicas).
pub fn retriable_errors(api: ApiKey) -> &'static [ResponseError] {
    use ResponseError as E;
    match api {
        ApiKey::Produce => &[E::NotLeaderOrFollower, E::RequestTimedOut],
        ApiKey::Fetch => &[E::NotLeaderOrFollower, E::UnknownLeaderEpoch],
        ApiKey::ListOffsets => &[E::NotLeaderOrFollower, E::LeaderNotAvailable],
        ApiKey::Metadata => &[E::LeaderNotAvailable],
        ApiKey::FindCoordinator | ApiKey::InitProducerId => &[E::CoordinatorNotAvailable],
        ApiKey::JoinGroup
        | ApiKey::SyncGroup
        | ApiKey::Heartbeat
        | ApiKey::LeaveGroup
        | ApiKey::OffsetCommit => &[E::CoordinatorNotAvailable, E::NotCoordinator],
        ApiKey::OffsetFetch => &[
            E::CoordinatorNotAvailable,
            E::NotCoordinator,
            E::CoordinatorLoadInProgress,
        ],
        ApiKey::CreateTopics => &[E::RequestTimedOut],
        // Answered before the coordinator did anything, so a retry is always safe.
        ApiKey::AddPartitionsToTxn | ApiKey::AddOffsetsToTxn | ApiKey::EndTxn => &[
            E::CoordinatorNotAvailable,
            E::NotCoordinator,
            E::ConcurrentTransactions,
        ],
        ApiKey::TxnOffsetCommit => &[
            E::CoordinatorNotAvailable,
            E::NotCoordinator,
            E::CoordinatorLoadInProgress,
        ],
        _ => &[],
    }
}
