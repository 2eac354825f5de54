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
//!   the partition waits [`FetcherConfig::retry_backoff`] or until its leader changes.
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
//!
//! # Files
//! - `config`, `error`, `events`: the settings, the error type, what the fetcher reports;
//! - `partitions`: per-partition state (position, reset, leader, pause, halt, backoff) and the
//!   methods that change it;
//! - `requests`: choosing and building the next ListOffsets or Fetch;
//! - `responses`: applying the answers (records, positions, errors) and failed requests.
//!
//! This file holds the [`Fetcher`] itself, its in-flight requests and its outputs.

mod config;
mod error;
mod events;
mod partitions;
mod requests;
mod responses;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use crate::client::BrokerId;
#[cfg(doc)]
use crate::client::metadata::Metadata;
use crate::record::TopicPartition;
use crate::time::Instant;
use config::ResetTarget;
use partitions::PartitionState;

pub use config::{FetcherConfig, OffsetResetPolicy};
pub use error::FetchError;
pub use events::{FetchEvent, FetchedBatch};

/// Lowest Fetch version this component builds (record batches v2 need Fetch v4).
pub const FETCH_MIN_VERSION: i16 = 4;
/// Highest Fetch version this component builds: v13+ name topics by id only.
pub const FETCH_MAX_VERSION: i16 = 12;
/// Lowest ListOffsets version this component builds.
pub const LIST_OFFSETS_MIN_VERSION: i16 = 1;
/// Highest ListOffsets version this component builds.
pub const LIST_OFFSETS_MAX_VERSION: i16 = 10;

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
    broker_retry_at: BTreeMap<BrokerId, Instant>,
    ready: VecDeque<FetchedBatch>,
    events: VecDeque<FetchEvent>,
    /// Largest `now` seen.
    now: Instant,
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
            now: Instant::MIN,
            rotation: 0,
            reported_versions: BTreeSet::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &FetcherConfig {
        &self.config
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
    pub fn poll_timeout(&self) -> Option<Instant> {
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

    fn observe(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }
}
