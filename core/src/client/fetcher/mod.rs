//! The fetcher: assigned partitions with their fetch positions, Fetch requests grouped by
//! partition leader, decoded records per partition, and position resets through ListOffsets.
//!
//! [`Fetcher`] is a sans-IO component (see [`crate::client`]).
//!
//! # Positions
//! [`Fetcher::assign`] adds a partition at a position (or none yet), [`Fetcher::seek`] moves
//! it, [`Fetcher::reset_position`] asks the leader for the earliest or latest offset
//! (ListOffsets) and [`Fetcher::unassign`] drops it. The position advances to the decoder's
//! next offset (`base_offset + last_offset_delta + 1` of the last complete batch) when a Fetch
//! response is applied, even when every record was a control record or part of an aborted
//! transaction, so a partition never stalls on such batches.
//!
//! # Leaders
//! The fetcher keeps each partition's leader and leader epoch, copied from [`Metadata`] by
//! [`Fetcher::update_leaders`]. The engine calls it after changing the assignment and whenever
//! [`Metadata::generation`] changes; taking the metadata by reference only for that call keeps
//! the two components independent (no shared borrow).
//!
//! # Requests
//! [`Fetcher::poll_request`] returns at most one request per call, ListOffsets before Fetch;
//! the engine calls it until it returns `None`. At most one Fetch and one ListOffsets are in
//! flight per broker. A partition is left out of a Fetch when it is paused
//! ([`Fetcher::set_paused`], e.g. its task queue is full), when its previous records have not
//! been taken with [`Fetcher::poll_records`] yet, while it is already in a Fetch in flight,
//! while it waits for a position, and during a retry backoff after an error. So memory stays
//! bounded: per partition at most one response being fetched plus one decoded batch.
//!
//! Fetch requests are built for versions [`FETCH_MIN_VERSION`] (4) to [`FETCH_MAX_VERSION`]
//! (12), by topic *name*: v13 and later address topics by id only, so the engine caps Fetch at
//! 12. Every Fetch is a full, sessionless fetch (session id 0, epoch -1); incremental fetch
//! sessions (KIP-227) are a later optimisation. The preferred read replica (KIP-392), the
//! `current_leader` hint of v12 responses and throttle times are not used yet. ListOffsets is
//! built for versions [`LIST_OFFSETS_MIN_VERSION`] (1) to [`LIST_OFFSETS_MAX_VERSION`] (10).
//!
//! # Errors
//! - Leadership errors (`NOT_LEADER_OR_FOLLOWER`, `LEADER_NOT_AVAILABLE`,
//!   `UNKNOWN_TOPIC_OR_PARTITION`, `FENCED_LEADER_EPOCH`, `UNKNOWN_LEADER_EPOCH`, …) emit
//!   [`FetchEvent::MetadataRefreshNeeded`] (the engine calls [`Metadata::request_refresh`]) and
//!   the partition waits [`FetcherConfig::retry_backoff_ms`] or until its leader changes.
//! - `OFFSET_OUT_OF_RANGE` resets the position with the configured [`OffsetResetPolicy`]; with
//!   [`OffsetResetPolicy::None`] it is a [`FetchError::OffsetOutOfRange`] event.
//! - Corrupt record data is a [`FetchError::CorruptRecords`] event naming the partition and
//!   offset; the position does not move.
//! - After an error event that retrying cannot fix (corrupt data, out of range without policy,
//!   non-retriable broker errors), the partition is *halted*: not fetched again until the
//!   engine seeks, resets or unassigns it.
//! - A response for a partition that was unassigned, seeked or reset since the request was
//!   built (its position differs from the request's) is discarded.
//! - A request that got no answer ([`Fetcher::handle_request_failed`]) backs off its broker and
//!   asks for a metadata refresh.
//!
//! Timed work (backoffs ending) happens inside [`Fetcher::poll_request`];
//! [`Fetcher::poll_timeout`] says when.

mod requests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::{
    ApiKey, FetchResponse, ListOffsetsResponse, RequestKind, ResponseKind,
};

use super::metadata::{Metadata, response_api};
use super::{ApiVersionLookup, BrokerId, Outbound, Target};
use crate::record::{Header, Headers, RawRecord, TopicPartition};
use crate::wire::records::{
    AbortedTransaction, DecodeLimits, FetchedPartition, FetchedRecord, IsolationLevel,
    RecordsError, decode_fetched_records,
};
use requests::{FetchEntry, ListOffsetsEntry};

/// Lowest Fetch version this component builds (record batches v2 need Fetch v4).
pub const FETCH_MIN_VERSION: i16 = 4;
/// Highest Fetch version this component builds: v13+ name topics by id only.
pub const FETCH_MAX_VERSION: i16 = 12;
/// Lowest ListOffsets version this component builds.
pub const LIST_OFFSETS_MIN_VERSION: i16 = 1;
/// Highest ListOffsets version this component builds.
pub const LIST_OFFSETS_MAX_VERSION: i16 = 10;

/// What to do when a partition has no valid position (Kafka's `auto.offset.reset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetResetPolicy {
    /// Start at the log start offset (the Kafka Streams default).
    #[default]
    Earliest,
    /// Start at the end of the log (the high watermark, or the last stable offset under
    /// read_committed).
    Latest,
    /// Report [`FetchError::OffsetOutOfRange`] / [`FetchError::NoOffset`] instead.
    None,
}

/// Where a ListOffsets reset goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResetTarget {
    Earliest,
    Latest,
}

impl ResetTarget {
    fn from_policy(policy: OffsetResetPolicy) -> Option<Self> {
        match policy {
            OffsetResetPolicy::Earliest => Some(Self::Earliest),
            OffsetResetPolicy::Latest => Some(Self::Latest),
            OffsetResetPolicy::None => None,
        }
    }

    /// ListOffsets' special timestamps: -2 earliest, -1 latest.
    fn timestamp(self) -> i64 {
        match self {
            Self::Earliest => -2,
            Self::Latest => -1,
        }
    }
}

/// Fetch settings. Byte sizes in bytes, durations in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetcherConfig {
    /// The broker answers once it has this many bytes (or after `max_wait_ms`). Default 1.
    pub min_bytes: i32,
    /// Largest response the broker should build (it still sends at least one whole batch,
    /// KIP-74). Default 50 MiB.
    pub max_bytes: i32,
    /// Largest share of one partition in a response, at first (raised when one batch does not
    /// fit, see [`FetchEvent::PartitionMaxBytesRaised`]). Default 1 MiB.
    pub partition_max_bytes: i32,
    /// How long the broker may wait for `min_bytes`. Default 500.
    pub max_wait_ms: i32,
    /// Which transactional records to read. Default read_uncommitted.
    pub isolation: IsolationLevel,
    /// What to do on `OFFSET_OUT_OF_RANGE`. Default earliest.
    pub offset_reset: OffsetResetPolicy,
    /// Wait before a partition or broker is tried again after an error. Default 100.
    pub retry_backoff_ms: i64,
    /// ListOffsets v10's `timeout_ms`. Default 30 000.
    pub request_timeout_ms: i32,
    /// Bounds for record decoding.
    pub decode_limits: DecodeLimits,
}

impl Default for FetcherConfig {
    fn default() -> Self {
        Self {
            min_bytes: 1,
            max_bytes: 52_428_800,
            partition_max_bytes: 1_048_576,
            max_wait_ms: 500,
            isolation: IsolationLevel::ReadUncommitted,
            offset_reset: OffsetResetPolicy::Earliest,
            retry_backoff_ms: 100,
            request_timeout_ms: 30_000,
            decode_limits: DecodeLimits::default(),
        }
    }
}

/// A problem of the fetcher, in a [`FetchEvent::Error`] or as the error of a method.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The position is outside the partition's log and the reset policy is `None`.
    #[error("{partition}: offset {offset} is out of range and the reset policy is none")]
    OffsetOutOfRange {
        /// The partition.
        partition: TopicPartition,
        /// The position that was out of range.
        offset: i64,
    },
    /// A position reset was asked with policy `None` (no committed offset and no policy).
    #[error("{partition}: no position and the reset policy is none")]
    NoOffset {
        /// The partition.
        partition: TopicPartition,
    },
    /// A record batch could not be decoded; the partition was not advanced.
    #[error("{partition}: corrupt record data at offset {offset}: {source}")]
    CorruptRecords {
        /// The partition.
        partition: TopicPartition,
        /// The bad batch's base offset when readable, else the fetch position.
        offset: i64,
        /// What is wrong.
        #[source]
        source: RecordsError,
    },
    /// The broker reported an error for a partition.
    #[error("{partition}: {api:?} failed: {error}")]
    Partition {
        /// The partition.
        partition: TopicPartition,
        /// Fetch or ListOffsets.
        api: ApiKey,
        /// The broker's error.
        error: ResponseError,
    },
    /// The broker rejected a whole Fetch (top-level error code, v7+).
    #[error("Fetch to broker {broker} failed: {error}")]
    Broker {
        /// The broker.
        broker: BrokerId,
        /// The broker's error.
        error: ResponseError,
    },
    /// The engine offers no version of `api` in the range this component builds.
    #[error(
        "no usable {api:?} version: the engine offers {version:?}, this client builds {min}..={max}"
    )]
    UnsupportedVersion {
        /// Fetch or ListOffsets.
        api: ApiKey,
        /// The version offered.
        version: Option<i16>,
        /// Lowest version built.
        min: i16,
        /// Highest version built.
        max: i16,
    },
    /// A response of an API this component does not send.
    #[error("unexpected response ({api:?}) from broker {from} for the fetcher")]
    UnexpectedResponse {
        /// The broker.
        from: BrokerId,
        /// The response's API, for the APIs the client uses.
        api: Option<ApiKey>,
    },
    /// A response from a broker that has no request of that API in flight.
    #[error("{api:?} response from broker {from} with no request in flight")]
    NotInFlight {
        /// The broker.
        from: BrokerId,
        /// Fetch or ListOffsets.
        api: ApiKey,
    },
}

/// Something the engine should act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchEvent {
    /// Leadership may have moved: call [`Metadata::request_refresh`] with `reason`, then
    /// [`Fetcher::update_leaders`] when the metadata generation changes.
    MetadataRefreshNeeded {
        /// What happened (names the partition or broker and the error).
        reason: String,
    },
    /// A ListOffsets reset gave the partition a new position.
    PositionReset {
        /// The partition.
        partition: TopicPartition,
        /// The new position.
        offset: i64,
    },
    /// A response held only part of the partition's next batch: the per-partition limit is
    /// below one batch. It was raised to `partition_max_bytes` (brokers since KIP-74 send the
    /// first batch whole, so this is rare).
    PartitionMaxBytesRaised {
        /// The partition.
        partition: TopicPartition,
        /// The position at which the batch did not fit.
        offset: i64,
        /// The new limit.
        partition_max_bytes: i32,
    },
    /// A typed error.
    Error(FetchError),
}

/// Decoded records of one partition, ready for its task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedBatch {
    /// The partition.
    pub partition: TopicPartition,
    /// User records in offset order (control records and aborted transactions removed). Keys
    /// and values are slices of the fetched buffer (or of one decompressed batch). Duplicate
    /// header keys of one record have collapsed (see [`crate::wire::records`]).
    pub records: Vec<RawRecord>,
    /// The partition's high watermark in the response.
    pub high_watermark: i64,
}

/// One assigned partition.
#[derive(Debug, Clone)]
struct PartitionState {
    /// Next offset to fetch; `None` until seeked or reset.
    position: Option<i64>,
    /// A ListOffsets reset waiting to be sent or answered.
    reset: Option<ResetTarget>,
    leader: Option<BrokerId>,
    leader_epoch: Option<i32>,
    paused: bool,
    /// Stopped after an error retrying cannot fix; cleared by seek/reset.
    halted: bool,
    /// Not fetched (or reset) before this time.
    retry_at: i64,
    /// Current per-partition limit.
    max_bytes: i32,
    /// A decoded batch of it waits in the ready queue.
    buffered: bool,
}

/// The Fetch in flight to one broker: the offset each partition was asked at.
#[derive(Debug)]
struct InFlightFetch {
    offsets: HashMap<TopicPartition, i64>,
}

/// The ListOffsets in flight to one broker: the target each partition was asked for.
#[derive(Debug)]
struct InFlightListOffsets {
    targets: HashMap<TopicPartition, ResetTarget>,
}

/// The fetcher. See the module documentation.
#[derive(Debug)]
pub struct Fetcher {
    config: FetcherConfig,
    partitions: BTreeMap<TopicPartition, PartitionState>,
    fetches: BTreeMap<BrokerId, InFlightFetch>,
    list_offsets: BTreeMap<BrokerId, InFlightListOffsets>,
    /// Brokers not sent to before this time (after a failed request).
    broker_retry_at: BTreeMap<BrokerId, i64>,
    ready: VecDeque<FetchedBatch>,
    events: VecDeque<FetchEvent>,
    now: i64,
    /// Rotates the partition order of successive Fetches so that `max_bytes` does not always
    /// favour the same partitions.
    rotation: usize,
    /// Unsupported versions already reported, so each is reported once.
    reported_versions: BTreeSet<(i16, Option<i16>)>,
}

impl Fetcher {
    /// A fetcher with no partition.
    pub fn new(config: FetcherConfig) -> Self {
        Self {
            config,
            partitions: BTreeMap::new(),
            fetches: BTreeMap::new(),
            list_offsets: BTreeMap::new(),
            broker_retry_at: BTreeMap::new(),
            ready: VecDeque::new(),
            events: VecDeque::new(),
            now: i64::MIN,
            rotation: 0,
            reported_versions: BTreeSet::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &FetcherConfig {
        &self.config
    }

    /// Assigns a partition at `position`, or with no position yet (`None`: it is not fetched
    /// until [`seek`](Self::seek) or [`reset_position`](Self::reset_position)). Replaces an
    /// existing assignment of it. Its leader is unknown until
    /// [`update_leaders`](Self::update_leaders).
    pub fn assign(&mut self, tp: TopicPartition, position: Option<i64>) {
        self.drop_buffered(&tp);
        self.partitions.insert(
            tp,
            PartitionState {
                position,
                reset: None,
                leader: None,
                leader_epoch: None,
                paused: false,
                halted: false,
                retry_at: i64::MIN,
                max_bytes: self.config.partition_max_bytes,
                buffered: false,
            },
        );
    }

    /// Drops a partition and its undelivered records; a response for it in flight is ignored.
    pub fn unassign(&mut self, tp: &TopicPartition) {
        self.drop_buffered(tp);
        self.partitions.remove(tp);
    }

    /// Moves an assigned partition's position; undelivered records and a response in flight
    /// for the old position are dropped. Clears a halt or pending reset. Returns false when
    /// the partition is not assigned.
    pub fn seek(&mut self, tp: &TopicPartition, offset: i64) -> bool {
        self.drop_buffered(tp);
        let Some(state) = self.partitions.get_mut(tp) else {
            return false;
        };
        state.position = Some(offset);
        state.reset = None;
        state.halted = false;
        state.retry_at = i64::MIN;
        true
    }

    /// Asks for the partition's position to be reset by ListOffsets (earliest or latest) to
    /// its leader; [`FetchEvent::PositionReset`] follows. With [`OffsetResetPolicy::None`] it
    /// is a [`FetchError::NoOffset`] event and the partition waits for a seek. Returns false
    /// when the partition is not assigned.
    pub fn reset_position(&mut self, tp: &TopicPartition, policy: OffsetResetPolicy) -> bool {
        self.drop_buffered(tp);
        let Some(state) = self.partitions.get_mut(tp) else {
            return false;
        };
        state.position = None;
        state.retry_at = i64::MIN;
        match ResetTarget::from_policy(policy) {
            Some(target) => {
                state.reset = Some(target);
                state.halted = false;
            }
            None => {
                state.reset = None;
                state.halted = true;
                self.events
                    .push_back(FetchEvent::Error(FetchError::NoOffset {
                        partition: tp.clone(),
                    }));
            }
        }
        true
    }

    /// Leaves a partition out of Fetches while `paused` (its task queue is full). A Fetch
    /// already in flight still delivers.
    pub fn set_paused(&mut self, tp: &TopicPartition, paused: bool) {
        if let Some(state) = self.partitions.get_mut(tp) {
            state.paused = paused;
        }
    }

    /// Copies leaders and leader epochs of the assigned partitions from `metadata`. A
    /// partition whose leader changed is fetched again without waiting for its backoff.
    pub fn update_leaders(&mut self, metadata: &Metadata) {
        for (tp, state) in &mut self.partitions {
            let leader = metadata.leader(tp);
            let epoch = metadata.leader_epoch(tp);
            if leader != state.leader || epoch != state.leader_epoch {
                if leader.is_some() && !state.halted {
                    state.retry_at = i64::MIN;
                }
                state.leader = leader;
                state.leader_epoch = epoch;
            }
        }
    }

    /// The next fetch position of an assigned partition (`None` while unpositioned).
    pub fn position(&self, tp: &TopicPartition) -> Option<i64> {
        self.partitions.get(tp).and_then(|state| state.position)
    }

    /// The leader the fetcher uses for a partition.
    pub fn leader(&self, tp: &TopicPartition) -> Option<BrokerId> {
        self.partitions.get(tp).and_then(|state| state.leader)
    }

    /// The assigned partitions.
    pub fn assigned(&self) -> impl Iterator<Item = &TopicPartition> + '_ {
        self.partitions.keys()
    }

    /// The current per-partition byte limit of an assigned partition.
    pub fn partition_max_bytes(&self, tp: &TopicPartition) -> Option<i32> {
        self.partitions.get(tp).map(|state| state.max_bytes)
    }

    /// Whether a Fetch to `broker` is in flight.
    pub fn fetch_in_flight(&self, broker: BrokerId) -> bool {
        self.fetches.contains_key(&broker)
    }

    /// The next decoded batch, if any. A partition is fetched again only after its batch was
    /// taken.
    pub fn poll_records(&mut self) -> Option<FetchedBatch> {
        let batch = self.ready.pop_front()?;
        if let Some(state) = self.partitions.get_mut(&batch.partition) {
            state.buffered = false;
        }
        Some(batch)
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<FetchEvent> {
        self.events.pop_front()
    }

    /// The earliest future time at which a backoff ends, when one is running.
    pub fn poll_timeout(&self) -> Option<i64> {
        let partitions = self
            .partitions
            .values()
            .filter(|state| !state.halted && state.leader.is_some())
            .map(|state| state.retry_at);
        partitions
            .chain(self.broker_retry_at.values().copied())
            .filter(|&at| at > self.now)
            .min()
    }

    /// The next request to send: a ListOffsets for pending resets first, then a Fetch, each to
    /// a partition leader with no request of that API in flight. Call until `None`.
    pub fn poll_request(&mut self, now: i64, versions: &dyn ApiVersionLookup) -> Option<Outbound> {
        self.observe(now);
        if let Some(out) = self.poll_list_offsets(versions) {
            return Some(out);
        }
        self.poll_fetch(versions)
    }

    /// The version to build `api` at, or `None` (reported once as an event).
    fn usable_version(
        &mut self,
        api: ApiKey,
        versions: &dyn ApiVersionLookup,
        min: i16,
        max: i16,
    ) -> Option<i16> {
        let offered = versions.version(api);
        match offered {
            Some(v) if (min..=max).contains(&v) => Some(v),
            _ => {
                if self.reported_versions.insert((api as i16, offered)) {
                    self.events
                        .push_back(FetchEvent::Error(FetchError::UnsupportedVersion {
                            api,
                            version: offered,
                            min,
                            max,
                        }));
                }
                None
            }
        }
    }

    fn broker_ready(&self, broker: BrokerId) -> bool {
        self.broker_retry_at
            .get(&broker)
            .is_none_or(|&at| at <= self.now)
    }

    fn in_any_fetch(&self, tp: &TopicPartition) -> bool {
        self.fetches
            .values()
            .any(|fetch| fetch.offsets.contains_key(tp))
    }

    fn in_any_list_offsets(&self, tp: &TopicPartition) -> bool {
        self.list_offsets
            .values()
            .any(|list| list.targets.contains_key(tp))
    }

    fn poll_list_offsets(&mut self, versions: &dyn ApiVersionLookup) -> Option<Outbound> {
        let mut by_broker: BTreeMap<BrokerId, Vec<ListOffsetsEntry>> = BTreeMap::new();
        for (tp, state) in &self.partitions {
            let (Some(target), Some(leader)) = (state.reset, state.leader) else {
                continue;
            };
            if state.halted
                || state.retry_at > self.now
                || self.list_offsets.contains_key(&leader)
                || !self.broker_ready(leader)
                || self.in_any_list_offsets(tp)
            {
                continue;
            }
            by_broker.entry(leader).or_default().push(ListOffsetsEntry {
                partition: tp.clone(),
                target,
                leader_epoch: state.leader_epoch,
            });
        }
        let (broker, entries) = by_broker.into_iter().next()?;
        let version = self.usable_version(
            ApiKey::ListOffsets,
            versions,
            LIST_OFFSETS_MIN_VERSION,
            LIST_OFFSETS_MAX_VERSION,
        )?;
        let request = requests::list_offsets_request(&self.config, version, &entries);
        tracing::debug!(
            broker,
            version,
            partitions = entries.len(),
            "sending ListOffsets"
        );
        self.list_offsets.insert(
            broker,
            InFlightListOffsets {
                targets: entries
                    .into_iter()
                    .map(|entry| (entry.partition, entry.target))
                    .collect(),
            },
        );
        Some(Outbound {
            target: Target::Broker(broker),
            request: RequestKind::ListOffsets(request),
            version,
        })
    }

    fn poll_fetch(&mut self, versions: &dyn ApiVersionLookup) -> Option<Outbound> {
        let mut by_broker: BTreeMap<BrokerId, Vec<FetchEntry>> = BTreeMap::new();
        for (tp, state) in &self.partitions {
            let (Some(position), Some(leader)) = (state.position, state.leader) else {
                continue;
            };
            if state.reset.is_some()
                || state.halted
                || state.paused
                || state.buffered
                || state.retry_at > self.now
                || self.fetches.contains_key(&leader)
                || !self.broker_ready(leader)
                || self.in_any_fetch(tp)
            {
                continue;
            }
            by_broker.entry(leader).or_default().push(FetchEntry {
                partition: tp.clone(),
                offset: position,
                leader_epoch: state.leader_epoch,
                max_bytes: state.max_bytes,
            });
        }
        let (broker, mut entries) = by_broker.into_iter().next()?;
        let version = self.usable_version(
            ApiKey::Fetch,
            versions,
            FETCH_MIN_VERSION,
            FETCH_MAX_VERSION,
        )?;
        let shift = self.rotation % entries.len();
        entries.rotate_left(shift);
        self.rotation = self.rotation.wrapping_add(1);
        let request = requests::fetch_request(&self.config, &entries);
        tracing::trace!(broker, version, partitions = entries.len(), "sending Fetch");
        self.fetches.insert(
            broker,
            InFlightFetch {
                offsets: entries
                    .into_iter()
                    .map(|entry| (entry.partition, entry.offset))
                    .collect(),
            },
        );
        Some(Outbound {
            target: Target::Broker(broker),
            request: RequestKind::Fetch(request),
            version,
        })
    }

    /// Handles the answer to a Fetch or ListOffsets from [`poll_request`](Self::poll_request).
    /// Problems of single partitions become events; the error is for responses this component
    /// cannot have asked for.
    pub fn handle_response(
        &mut self,
        from: BrokerId,
        response: ResponseKind,
        now: i64,
    ) -> Result<(), FetchError> {
        match response {
            ResponseKind::Fetch(response) => self.handle_fetch_response(from, response, now),
            ResponseKind::ListOffsets(response) => {
                self.handle_list_offsets_response(from, response, now)
            }
            other => Err(FetchError::UnexpectedResponse {
                from,
                api: response_api(&other),
            }),
        }
    }

    /// A request from [`poll_request`](Self::poll_request) got no answer: its broker is
    /// backed off, its partitions are fetched (or reset) again afterwards, and a metadata
    /// refresh is asked for.
    pub fn handle_request_failed(&mut self, target: Target, api: ApiKey, now: i64) {
        self.observe(now);
        let Target::Broker(broker) = target else {
            return;
        };
        let removed = match api {
            ApiKey::Fetch => self.fetches.remove(&broker).is_some(),
            ApiKey::ListOffsets => self.list_offsets.remove(&broker).is_some(),
            _ => false,
        };
        if removed {
            tracing::debug!(broker, ?api, "request failed; backing off");
            self.broker_retry_at.insert(
                broker,
                self.now.saturating_add(self.config.retry_backoff_ms),
            );
            self.events.push_back(FetchEvent::MetadataRefreshNeeded {
                reason: format!("{api:?} request to broker {broker} failed"),
            });
        }
    }

    /// Handles a Fetch response (see [`handle_response`](Self::handle_response)).
    pub fn handle_fetch_response(
        &mut self,
        from: BrokerId,
        response: FetchResponse,
        now: i64,
    ) -> Result<(), FetchError> {
        self.observe(now);
        let in_flight = self.fetches.remove(&from).ok_or(FetchError::NotInFlight {
            from,
            api: ApiKey::Fetch,
        })?;
        if response.error_code != 0 {
            let error = ResponseError::try_from_code(response.error_code)
                .unwrap_or(ResponseError::Unknown(response.error_code));
            tracing::warn!(from, %error, "Fetch failed as a whole");
            self.broker_retry_at
                .insert(from, self.now.saturating_add(self.config.retry_backoff_ms));
            self.events.push_back(FetchEvent::Error(FetchError::Broker {
                broker: from,
                error,
            }));
            return Ok(());
        }
        for topic in response.responses {
            let name: std::sync::Arc<str> = topic.topic.0.as_str().into();
            for partition in topic.partitions {
                let tp = TopicPartition::new(name.clone(), partition.partition_index);
                let Some(&sent_offset) = in_flight.offsets.get(&tp) else {
                    tracing::debug!(%tp, "Fetch response for a partition not asked for");
                    continue;
                };
                self.apply_partition(from, tp, sent_offset, partition);
            }
        }
        Ok(())
    }

    /// Applies one partition of a Fetch response asked at `sent_offset`.
    fn apply_partition(
        &mut self,
        from: BrokerId,
        tp: TopicPartition,
        sent_offset: i64,
        data: PartitionData,
    ) {
        let Some(state) = self.partitions.get(&tp) else {
            tracing::debug!(%tp, "Fetch data for an unassigned partition discarded");
            return;
        };
        if state.position != Some(sent_offset) || state.reset.is_some() || state.halted {
            tracing::debug!(%tp, sent_offset, position = ?state.position, "stale Fetch data discarded");
            return;
        }
        if data.error_code != 0 {
            let error = ResponseError::try_from_code(data.error_code)
                .unwrap_or(ResponseError::Unknown(data.error_code));
            self.partition_error(from, &tp, ApiKey::Fetch, sent_offset, error);
            return;
        }
        let aborted: Vec<AbortedTransaction> = data
            .aborted_transactions
            .iter()
            .flatten()
            .map(AbortedTransaction::from)
            .collect();
        let empty = bytes::Bytes::new();
        let records = data.records.as_ref().unwrap_or(&empty);
        let decoded = decode_fetched_records(
            &FetchedPartition {
                partition: tp.partition,
                fetch_offset: sent_offset,
                records,
                isolation: self.config.isolation,
                aborted_transactions: &aborted,
            },
            &self.config.decode_limits,
        );
        let decoded = match decoded {
            Ok(decoded) => decoded,
            Err(source) => {
                let offset = source.base_offset.unwrap_or(sent_offset);
                tracing::warn!(%tp, offset, %source, "corrupt record data");
                self.halt(&tp);
                self.events
                    .push_back(FetchEvent::Error(FetchError::CorruptRecords {
                        partition: tp,
                        offset,
                        source,
                    }));
                return;
            }
        };
        let stalled = decoded.is_stalled();
        let truncated_len = decoded.truncated.and_then(|t| t.batch_len);
        let Some(state) = self.partitions.get_mut(&tp) else {
            return;
        };
        state.position = Some(decoded.next_offset);
        if stalled {
            let wanted = truncated_len
                .and_then(|len| i32::try_from(len).ok())
                .unwrap_or(0);
            let raised = state.max_bytes.saturating_mul(2).max(wanted);
            state.max_bytes = raised;
            tracing::warn!(%tp, offset = sent_offset, raised, "partition max bytes below one batch; raised");
            self.events.push_back(FetchEvent::PartitionMaxBytesRaised {
                partition: tp.clone(),
                offset: sent_offset,
                partition_max_bytes: raised,
            });
        }
        if !decoded.records.is_empty() {
            state.buffered = true;
            self.ready.push_back(FetchedBatch {
                partition: tp,
                records: decoded.records.into_iter().map(raw_record).collect(),
                high_watermark: data.high_watermark,
            });
        }
    }

    /// Reacts to a partition-level error of a Fetch or ListOffsets.
    fn partition_error(
        &mut self,
        from: BrokerId,
        tp: &TopicPartition,
        api: ApiKey,
        offset: i64,
        error: ResponseError,
    ) {
        let retry_at = self.now.saturating_add(self.config.retry_backoff_ms);
        if is_leadership_error(error) {
            tracing::debug!(%tp, from, %error, "leadership error; metadata refresh needed");
            if let Some(state) = self.partitions.get_mut(tp) {
                state.retry_at = retry_at;
            }
            self.events.push_back(FetchEvent::MetadataRefreshNeeded {
                reason: format!("{api:?} {tp} on broker {from}: {error}"),
            });
        } else if error == ResponseError::OffsetOutOfRange && api == ApiKey::Fetch {
            match ResetTarget::from_policy(self.config.offset_reset) {
                Some(target) => {
                    tracing::info!(%tp, offset, ?target, "offset out of range; resetting");
                    if let Some(state) = self.partitions.get_mut(tp) {
                        state.position = None;
                        state.reset = Some(target);
                    }
                }
                None => {
                    self.halt(tp);
                    self.events
                        .push_back(FetchEvent::Error(FetchError::OffsetOutOfRange {
                            partition: tp.clone(),
                            offset,
                        }));
                }
            }
        } else {
            tracing::warn!(%tp, from, %error, ?api, "partition error");
            if error.is_retriable() {
                if let Some(state) = self.partitions.get_mut(tp) {
                    state.retry_at = retry_at;
                }
            } else {
                self.halt(tp);
            }
            self.events
                .push_back(FetchEvent::Error(FetchError::Partition {
                    partition: tp.clone(),
                    api,
                    error,
                }));
        }
    }

    /// Handles a ListOffsets response (see [`handle_response`](Self::handle_response)).
    pub fn handle_list_offsets_response(
        &mut self,
        from: BrokerId,
        response: ListOffsetsResponse,
        now: i64,
    ) -> Result<(), FetchError> {
        self.observe(now);
        let in_flight = self
            .list_offsets
            .remove(&from)
            .ok_or(FetchError::NotInFlight {
                from,
                api: ApiKey::ListOffsets,
            })?;
        for topic in response.topics {
            let name: std::sync::Arc<str> = topic.name.0.as_str().into();
            for partition in topic.partitions {
                let tp = TopicPartition::new(name.clone(), partition.partition_index);
                let Some(&target) = in_flight.targets.get(&tp) else {
                    continue;
                };
                let Some(state) = self.partitions.get_mut(&tp) else {
                    continue;
                };
                if state.reset != Some(target) || state.halted {
                    tracing::debug!(%tp, "stale ListOffsets answer discarded");
                    continue;
                }
                if partition.error_code != 0 {
                    let error = ResponseError::try_from_code(partition.error_code)
                        .unwrap_or(ResponseError::Unknown(partition.error_code));
                    self.partition_error(from, &tp, ApiKey::ListOffsets, -1, error);
                    continue;
                }
                if partition.offset < 0 {
                    tracing::warn!(%tp, offset = partition.offset, "ListOffsets gave no offset; retrying");
                    state.retry_at = self.now.saturating_add(self.config.retry_backoff_ms);
                    continue;
                }
                state.reset = None;
                state.position = Some(partition.offset);
                state.retry_at = i64::MIN;
                tracing::info!(%tp, offset = partition.offset, ?target, "position reset");
                self.events.push_back(FetchEvent::PositionReset {
                    partition: tp,
                    offset: partition.offset,
                });
            }
        }
        Ok(())
    }

    fn halt(&mut self, tp: &TopicPartition) {
        if let Some(state) = self.partitions.get_mut(tp) {
            state.halted = true;
        }
    }

    fn drop_buffered(&mut self, tp: &TopicPartition) {
        self.ready.retain(|batch| &batch.partition != tp);
        if let Some(state) = self.partitions.get_mut(tp) {
            state.buffered = false;
        }
    }

    fn observe(&mut self, now: i64) {
        self.now = self.now.max(now);
    }
}

/// Errors after which the partition's leader must be looked up again.
fn is_leadership_error(error: ResponseError) -> bool {
    matches!(
        error,
        ResponseError::NotLeaderOrFollower
            | ResponseError::LeaderNotAvailable
            | ResponseError::UnknownTopicOrPartition
            | ResponseError::FencedLeaderEpoch
            | ResponseError::UnknownLeaderEpoch
            | ResponseError::ReplicaNotAvailable
            | ResponseError::KafkaStorageError
            | ResponseError::UnknownTopicId
            | ResponseError::InconsistentTopicId
    )
}

/// A decoded record as a task takes it (keys and values stay slices, no copy).
fn raw_record(record: FetchedRecord) -> RawRecord {
    RawRecord {
        offset: record.offset,
        timestamp: record.timestamp,
        key: record.key,
        value: record.value,
        headers: record
            .headers
            .into_iter()
            .map(|header| Header {
                key: header.key.to_string(),
                value: header.value,
            })
            .collect::<Headers>(),
    }
}
