//! A deterministic, in-memory Kafka cluster that speaks the real wire protocol.
//!
//! [`SimCluster`] lets the sans-IO engine be driven through whole flows without sockets: a
//! test harness opens a connection to a broker with [`SimCluster::connect`], feeds the bytes
//! the engine wants to transmit into [`SimCluster::receive`] (any chunking), and hands the
//! frames from [`SimCluster::poll_send`] back to the engine as received bytes. Requests are
//! decoded with `kafka-protocol` at the header and API version the client used; responses
//! are encoded the same way.
//!
//! # Determinism and time
//!
//! Nothing here reads a clock, sleeps or spawns. Time comes in as `now` (milliseconds) with
//! [`receive`](SimCluster::receive) and [`advance`](SimCluster::advance); a smaller value than
//! one seen before counts as the largest seen. Member ids, topic ids and random faults come
//! from a SplitMix64 generator seeded by [`SimCluster::new`]'s `seed`, and all state lives in
//! ordered maps, so one seed and one sequence of calls always give the same bytes.
//!
//! # What is modelled
//!
//! - Brokers `0..n` at `sim-<id>:<9092 + id>`; every partition has one replica (its leader);
//!   leaders are spread round-robin and move when their broker goes down.
//! - APIs (see [`ApiVersionTable`]): ApiVersions, Metadata, FindCoordinator (v0–v4, group
//!   and transaction coordinators), the classic group protocol
//!   (JoinGroup/SyncGroup/Heartbeat/LeaveGroup, see [`group`]), OffsetCommit/OffsetFetch,
//!   ListOffsets, Fetch, Produce (idempotent and transactional), InitProducerId,
//!   CreateTopics, and the transaction APIs AddPartitionsToTxn, AddOffsetsToTxn, EndTxn and
//!   TxnOffsetCommit ([`ApiVersionTable::without_transactions`] builds a broker without them).
//! - A connection is served in order, one request at a time, like a Kafka broker that mutes a
//!   channel while a request is in progress: a delayed response (JoinGroup waiting for the
//!   other members, SyncGroup waiting for the leader, Fetch waiting for `min_bytes` up to
//!   `max_wait_ms`) holds back later requests on the same connection. [`SimCluster::next_timer`]
//!   says when [`advance`](SimCluster::advance) has timed work (session expiry, rebalance
//!   timeout, fetch wait).
//! - Fetch returns stored batches as record batch v2 bytes, stops at `max_bytes` /
//!   `partition_max_bytes` with the next batch cut at the limit (a truncated trailing batch, as
//!   brokers send), and always returns the first batch of the first non-empty partition whole
//!   (KIP-74). Fetch sessions are declined (response `session_id` 0), so clients do full
//!   fetches; a request naming a session gets `FETCH_SESSION_ID_NOT_FOUND`.
//! - Produce requires one v2 batch per partition, checks its CRC, and tracks idempotent
//!   producers per partition: the last 5 batches per producer are remembered; a replay of one
//!   of them is answered per [`DuplicateReply`]; a gap gets `OUT_OF_ORDER_SEQUENCE_NUMBER`; an
//!   older epoch `INVALID_PRODUCER_EPOCH`. `acks=0` gets no response.
//! - Transactions as Kafka's transaction version 0 has them (see `txn`): InitProducerId with
//!   a transactional id bumps the epoch and fences the previous producer (aborting its open
//!   transaction); a transactional batch is accepted only for a partition added to the
//!   ongoing transaction of the request's transactional id, at the current epoch. EndTxn
//!   writes a commit or abort marker (a control batch) into every partition of the
//!   transaction and makes its TxnOffsetCommit offsets visible to OffsetFetch (on commit).
//!   Open transactions hold each partition's last stable offset back: read_committed Fetch
//!   returns batches below it with the aborted transactions it covers, and ListOffsets
//!   LATEST under read_committed answers it. An ongoing transaction older than its producer's
//!   transaction timeout is aborted by [`advance`](SimCluster::advance), fencing the producer.
//! - A frame that cannot be parsed (bad length prefix, unknown API key, version not served,
//!   body that does not decode, trailing bytes after the body) closes the connection.
//!
//! # Not modelled
//!
//! Replication (ISR, high watermark lag), log retention and compaction, static group
//! membership, the consumer protocol of KIP-848, transaction version 2 (KIP-890), the
//! coordinator's `CONCURRENT_TRANSACTIONS` window (markers are written at once), fetch
//! sessions, quotas.
//!
//! # Hostile input
//!
//! `kafka-protocol` pre-allocates collections from length fields it reads (arrays, record
//! counts, header counts). The simulator bounds record counts in produced batches before
//! decoding them, but a request whose top-level array claims billions of elements can still
//! make the allocator abort. The simulator is meant to be fed by the engine's encoder, not by
//! a fuzzer.

mod faults;
pub mod group;
mod handlers;
mod log;
mod txn;
mod txn_handlers;
mod versions;

use std::collections::{BTreeMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};
use kafka_protocol::records::Compression;
use kstreams_core::record::TopicPartition;

pub use faults::{Fault, RandomFaults, retriable_errors};
pub use group::{GroupConfig, GroupMemberInfo, GroupState, MemberRemoval, RemovalReason};
pub use log::{NO_PRODUCER_ID, RETAINED_PRODUCER_BATCHES, SimRecord, StoredRecord};
pub use txn::{DEFAULT_MAX_TRANSACTION_TIMEOUT_MS, TransactionInfo, TxnState};
pub use versions::{ApiVersionTable, TRANSACTION_APIS};

use faults::{FaultPlan, SplitMix64};
use group::{Delivery, Group, PendingReply};
use log::{AppendOutcome, IncomingBatch, PartitionLog};

/// Port of broker 0; broker `n` listens on `BASE_PORT + n`.
pub const BASE_PORT: i32 = 9092;

/// Cluster id reported in Metadata.
pub const CLUSTER_ID: &str = "sim-cluster";

/// Identifies one client connection to one simulated broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

/// Why a connection was closed by the simulator or the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The client called [`SimCluster::disconnect`].
    ClientDisconnect,
    /// The broker went down ([`SimCluster::broker_down`]).
    BrokerDown,
    /// A frame could not be parsed; the detail says why.
    Malformed(String),
    /// An injected [`Fault::Disconnect`].
    InjectedFault,
    /// The simulator could not encode its own response: a bug in the simulator.
    SimulatorBug(String),
}

/// Errors of the direct (non-wire) helpers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    /// No broker with this id.
    #[error("unknown broker {0}")]
    UnknownBroker(i32),
    /// The broker is down: connection refused.
    #[error("broker {0} is down")]
    BrokerDown(i32),
    /// The connection does not exist or was closed.
    #[error("connection {0:?} is closed: {1:?}")]
    ConnectionClosed(ConnId, Option<CloseReason>),
    /// No such topic.
    #[error("unknown topic {0}")]
    UnknownTopic(String),
    /// No such partition.
    #[error("unknown partition {0}-{1}")]
    UnknownPartition(String, i32),
    /// The topic exists already.
    #[error("topic {0} already exists")]
    TopicExists(String),
    /// Partition count below 1.
    #[error("invalid partition count {0}")]
    InvalidPartitions(i32),
    /// The append was refused with a Kafka error.
    #[error("append refused: {0}")]
    Append(ResponseError),
}

/// How a Produce retry of a batch still in the producer's recent-batch cache is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DuplicateReply {
    /// `DUPLICATE_SEQUENCE_NUMBER` with the original base offset (clients treat it as success).
    #[default]
    ErrorCode,
    /// No error and the original base offset, as current Kafka brokers answer.
    OriginalOffset,
}

/// Cluster behaviour knobs.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// APIs and versions served.
    pub api_versions: ApiVersionTable,
    /// Group coordinator limits.
    pub group: GroupConfig,
    /// Answer to a duplicate idempotent batch.
    pub duplicate_reply: DuplicateReply,
    /// `None`: batches are stored (and fetched) with the producer's codec; `Some`: re-encoded
    /// with this codec, like a topic's `compression.type`.
    pub storage_compression: Option<Compression>,
    /// Metadata requests create unknown topics (when the request allows it).
    pub auto_create_topics: bool,
    /// Partitions of auto-created topics and of CreateTopics with `num_partitions = -1`.
    pub default_partitions: i32,
    /// Largest request frame accepted; longer closes the connection.
    pub max_request_len: usize,
    /// Emulates Tansu 0.6.0: every Fetch response of a flexible version (v12+) carries the
    /// top-level tagged field 0 (`NodeEndpoints`), which the protocol defines from v16 on only.
    pub fetch_tag_zero_at_every_flexible_version: bool,
    /// Largest transaction timeout InitProducerId accepts (Kafka's
    /// `transaction.max.timeout.ms`).
    pub transaction_max_timeout_ms: i32,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            api_versions: ApiVersionTable::default(),
            group: GroupConfig::default(),
            duplicate_reply: DuplicateReply::default(),
            storage_compression: None,
            auto_create_topics: false,
            default_partitions: 1,
            max_request_len: 100 * 1024 * 1024,
            fetch_tag_zero_at_every_flexible_version: false,
            transaction_max_timeout_ms: DEFAULT_MAX_TRANSACTION_TIMEOUT_MS,
        }
    }
}

/// A Fetch held back until data arrives or `max_wait_ms` passes.
#[derive(Debug, Clone)]
struct ParkedFetch {
    correlation_id: i32,
    version: i16,
    request: kafka_protocol::messages::FetchRequest,
    deadline: i64,
}

#[derive(Debug, Clone)]
enum Parked {
    /// A JoinGroup/SyncGroup whose response the group coordinator will deliver.
    Group { correlation_id: i32 },
    /// A Fetch waiting for data.
    Fetch(Box<ParkedFetch>),
}

#[derive(Debug)]
struct Conn {
    broker: i32,
    read_buf: BytesMut,
    inbox: VecDeque<Bytes>,
    outbox: VecDeque<Bytes>,
    parked: Option<Parked>,
    closed: Option<CloseReason>,
}

#[derive(Debug)]
struct Topic {
    id: uuid::Uuid,
    partitions: Vec<PartitionLog>,
}

/// What handling one request produced.
enum Reply {
    Respond(Box<ResponseKind>),
    /// The response comes later (group coordinator delivery).
    ParkGroup,
    /// A Fetch waits.
    ParkFetch(Box<ParkedFetch>),
    /// No response (Produce with acks=0).
    Silent,
    Close(CloseReason),
}

impl Reply {
    fn respond(response: ResponseKind) -> Self {
        Self::Respond(Box::new(response))
    }
}

/// Context of the request being handled.
struct RequestCtx {
    conn: ConnId,
    broker: i32,
    correlation_id: i32,
    version: i16,
    client_id: String,
}

impl RequestCtx {
    fn origin(&self) -> PendingReply {
        PendingReply {
            conn: self.conn,
            correlation_id: self.correlation_id,
            version: self.version,
        }
    }
}

/// The simulated cluster. See the [module documentation](self).
#[derive(Debug)]
pub struct SimCluster {
    config: SimConfig,
    rng: SplitMix64,
    now: i64,
    brokers_up: Vec<bool>,
    topics: BTreeMap<String, Topic>,
    topics_created: usize,
    groups: BTreeMap<String, Group>,
    coordinator_overrides: BTreeMap<String, i32>,
    conns: BTreeMap<ConnId, Conn>,
    next_conn: u64,
    closed_events: VecDeque<(ConnId, CloseReason)>,
    faults: FaultPlan,
    next_producer_id: i64,
    /// The transaction coordinator's state, by transactional id.
    transactions: BTreeMap<String, txn::Transaction>,
    deliveries: Vec<Delivery>,
}

impl SimCluster {
    /// A cluster of `brokers` brokers (ids `0..brokers`, at least one) with default settings.
    pub fn new(seed: u64, brokers: usize) -> Self {
        Self::with_config(seed, brokers, SimConfig::default())
    }

    /// A cluster with explicit settings.
    pub fn with_config(seed: u64, brokers: usize, config: SimConfig) -> Self {
        Self {
            config,
            rng: SplitMix64::new(seed),
            now: i64::MIN,
            brokers_up: vec![true; brokers.max(1)],
            topics: BTreeMap::new(),
            topics_created: 0,
            groups: BTreeMap::new(),
            coordinator_overrides: BTreeMap::new(),
            conns: BTreeMap::new(),
            next_conn: 0,
            closed_events: VecDeque::new(),
            faults: FaultPlan::default(),
            next_producer_id: 1000,
            transactions: BTreeMap::new(),
            deliveries: Vec::new(),
        }
    }

    /// The settings (change them between requests, e.g. to drop an API from the table).
    pub fn config_mut(&mut self) -> &mut SimConfig {
        &mut self.config
    }

    /// The largest `now` seen so far (`i64::MIN` before any).
    pub fn now(&self) -> i64 {
        self.now
    }

    /// Number of brokers (up or down).
    pub fn broker_count(&self) -> usize {
        self.brokers_up.len()
    }

    /// `(host, port)` of broker `id` as advertised in Metadata.
    pub fn broker_address(&self, id: i32) -> Option<(String, i32)> {
        self.broker_index(id)
            .map(|_| (format!("sim-{id}"), BASE_PORT + id))
    }

    /// The broker advertised at `host:port`, for harnesses that map the engine's connect
    /// addresses to brokers.
    pub fn broker_by_address(&self, host: &str, port: i32) -> Option<i32> {
        let id = host.strip_prefix("sim-")?.parse::<i32>().ok()?;
        (self.broker_index(id).is_some() && port == BASE_PORT + id).then_some(id)
    }

    fn broker_index(&self, id: i32) -> Option<usize> {
        usize::try_from(id)
            .ok()
            .filter(|&i| i < self.brokers_up.len())
    }

    fn is_up(&self, id: i32) -> bool {
        self.broker_index(id)
            .and_then(|i| self.brokers_up.get(i).copied())
            .unwrap_or(false)
    }

    fn up_brokers(&self) -> Vec<i32> {
        (0..self.brokers_up.len() as i32)
            .filter(|&id| self.is_up(id))
            .collect()
    }

    // ----- topics and logs -------------------------------------------------------------

    /// Creates `name` with `partitions` partitions, leaders spread over the up brokers.
    pub fn create_topic(&mut self, name: &str, partitions: i32) -> Result<(), SimError> {
        self.create_topic_with_leaders(name, partitions, None)
    }

    fn create_topic_with_leaders(
        &mut self,
        name: &str,
        partitions: i32,
        leaders: Option<Vec<i32>>,
    ) -> Result<(), SimError> {
        if self.topics.contains_key(name) {
            return Err(SimError::TopicExists(name.to_owned()));
        }
        if partitions < 1 {
            return Err(SimError::InvalidPartitions(partitions));
        }
        let up = self.up_brokers();
        let offset = self.topics_created;
        let logs = (0..partitions as usize)
            .map(|p| {
                let leader = leaders
                    .as_ref()
                    .and_then(|l| l.get(p).copied())
                    .or_else(|| up.get((offset + p) % up.len().max(1)).copied())
                    .unwrap_or(-1);
                PartitionLog::new(leader)
            })
            .collect();
        let id = uuid::Uuid::from_u64_pair(self.rng.next_u64(), self.rng.next_u64());
        self.topics.insert(
            name.to_owned(),
            Topic {
                id,
                partitions: logs,
            },
        );
        self.topics_created += 1;
        Ok(())
    }

    /// Partition count of `topic`.
    pub fn partition_count(&self, topic: &str) -> Option<i32> {
        self.topics.get(topic).map(|t| t.partitions.len() as i32)
    }

    fn partition(&self, topic: &str, partition: i32) -> Result<&PartitionLog, SimError> {
        let t = self
            .topics
            .get(topic)
            .ok_or_else(|| SimError::UnknownTopic(topic.to_owned()))?;
        usize::try_from(partition)
            .ok()
            .and_then(|p| t.partitions.get(p))
            .ok_or_else(|| SimError::UnknownPartition(topic.to_owned(), partition))
    }

    fn partition_mut(
        &mut self,
        topic: &str,
        partition: i32,
    ) -> Result<&mut PartitionLog, SimError> {
        let t = self
            .topics
            .get_mut(topic)
            .ok_or_else(|| SimError::UnknownTopic(topic.to_owned()))?;
        usize::try_from(partition)
            .ok()
            .and_then(|p| t.partitions.get_mut(p))
            .ok_or_else(|| SimError::UnknownPartition(topic.to_owned(), partition))
    }

    /// Appends `records` as one non-idempotent, uncompressed batch, as an independent
    /// producer would. Returns the first record's offset. Parked fetches see the new data.
    pub fn produce_direct(
        &mut self,
        topic: &str,
        partition: i32,
        records: Vec<SimRecord>,
    ) -> Result<i64, SimError> {
        self.produce_direct_with(topic, partition, records, Compression::None)
    }

    /// Like [`produce_direct`](Self::produce_direct) with a codec for the stored batch.
    pub fn produce_direct_with(
        &mut self,
        topic: &str,
        partition: i32,
        records: Vec<SimRecord>,
        compression: Compression,
    ) -> Result<i64, SimError> {
        let compression = self.config.storage_compression.unwrap_or(compression);
        let outcome = self.partition_mut(topic, partition)?.append(IncomingBatch {
            producer_id: NO_PRODUCER_ID,
            producer_epoch: -1,
            base_sequence: -1,
            transactional: false,
            compression,
            records,
        });
        let result = match outcome {
            AppendOutcome::Appended { base_offset } => Ok(base_offset),
            AppendOutcome::Duplicate { base_offset } => Ok(base_offset),
            AppendOutcome::Rejected(error) => Err(SimError::Append(error)),
        };
        self.wake_fetches();
        self.pump();
        result
    }

    /// Every record of a partition, in offset order.
    pub fn read_log(&self, topic: &str, partition: i32) -> Result<Vec<StoredRecord>, SimError> {
        Ok(self
            .partition(topic, partition)?
            .records()
            .cloned()
            .collect())
    }

    /// The records of a partition from `offset` on, in offset order.
    pub fn read_log_from(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<Vec<StoredRecord>, SimError> {
        Ok(self
            .partition(topic, partition)?
            .records_from(offset)
            .cloned()
            .collect())
    }

    /// The partition's high watermark (= log end offset).
    pub fn high_watermark(&self, topic: &str, partition: i32) -> Result<i64, SimError> {
        Ok(self.partition(topic, partition)?.high_watermark())
    }

    /// The partition's leader.
    pub fn leader_of(&self, tp: &TopicPartition) -> Option<i32> {
        self.partition(&tp.topic, tp.partition)
            .ok()
            .map(|p| p.leader)
    }

    /// Makes `broker` the leader of `tp` (leader epoch + 1). Parked fetches on the old leader
    /// complete with `NOT_LEADER_OR_FOLLOWER`.
    pub fn move_leader(&mut self, tp: &TopicPartition, broker: i32) -> Result<(), SimError> {
        if self.broker_index(broker).is_none() {
            return Err(SimError::UnknownBroker(broker));
        }
        let log = self.partition_mut(&tp.topic, tp.partition)?;
        if log.leader != broker {
            log.leader = broker;
            log.leader_epoch += 1;
        }
        self.wake_fetches();
        self.pump();
        Ok(())
    }

    // ----- groups --------------------------------------------------------------------

    /// The committed offset of `tp` for `group`.
    pub fn committed_offset(&self, group: &str, tp: &TopicPartition) -> Option<i64> {
        self.groups
            .get(group)?
            .offsets
            .get(&(tp.topic.to_string(), tp.partition))
            .map(|c| c.offset)
    }

    /// The group's members in join order (empty for an unknown group).
    pub fn group_members(&self, group: &str) -> Vec<GroupMemberInfo> {
        self.groups
            .get(group)
            .map(Group::members)
            .unwrap_or_default()
    }

    /// The members the coordinator of `group` removed so far, in order (empty for an unknown
    /// group): see [`Group::removals`].
    pub fn group_removals(&self, group: &str) -> &[MemberRemoval] {
        self.groups.get(group).map_or(&[], Group::removals)
    }

    /// The group's state, `None` for an unknown group.
    pub fn group_state(&self, group: &str) -> Option<GroupState> {
        self.groups.get(group).map(Group::state)
    }

    /// The group's generation, `None` for an unknown group.
    pub fn group_generation(&self, group: &str) -> Option<i32> {
        self.groups.get(group).map(Group::generation)
    }

    /// The broker coordinating `key` (a group or transactional id): an override from
    /// [`move_coordinator`](Self::move_coordinator) if that broker is up, else a hash of the
    /// key over the brokers, skipping down ones. `None` if every broker is down.
    pub fn coordinator_of(&self, key: &str) -> Option<i32> {
        if let Some(&broker) = self.coordinator_overrides.get(key)
            && self.is_up(broker)
        {
            return Some(broker);
        }
        let n = self.brokers_up.len();
        let start = fnv1a(key.as_bytes()) as usize % n;
        (0..n)
            .map(|i| ((start + i) % n) as i32)
            .find(|&id| self.is_up(id))
    }

    /// Makes `broker` the coordinator of `group`. Parked JoinGroup/SyncGroup requests are
    /// answered with `NOT_COORDINATOR`; group state (members, generation, offsets) moves
    /// along, as the new coordinator would load it from `__consumer_offsets`.
    pub fn move_coordinator(&mut self, group: &str, broker: i32) -> Result<(), SimError> {
        if self.broker_index(broker).is_none() {
            return Err(SimError::UnknownBroker(broker));
        }
        let before = self.coordinator_of(group);
        self.coordinator_overrides.insert(group.to_owned(), broker);
        if before != self.coordinator_of(group)
            && let Some(g) = self.groups.get_mut(group)
        {
            g.fail_pending(ResponseError::NotCoordinator, &mut self.deliveries);
        }
        self.pump();
        Ok(())
    }

    // ----- brokers ---------------------------------------------------------------------

    /// Takes broker `id` down: its connections close ([`CloseReason::BrokerDown`], reported
    /// by [`poll_closed`](Self::poll_closed)), its partitions move to the next up broker
    /// (leader epoch + 1) and the groups it coordinated move by [`coordinator_of`](Self::coordinator_of).
    pub fn broker_down(&mut self, id: i32) -> Result<(), SimError> {
        let index = self.broker_index(id).ok_or(SimError::UnknownBroker(id))?;
        if !self.brokers_up.get(index).copied().unwrap_or(false) {
            return Ok(());
        }
        let moved_groups: Vec<String> = self
            .groups
            .keys()
            .filter(|g| self.coordinator_of(g) == Some(id))
            .cloned()
            .collect();
        if let Some(up) = self.brokers_up.get_mut(index) {
            *up = false;
        }
        let ids: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.broker == id && c.closed.is_none())
            .map(|(&cid, _)| cid)
            .collect();
        for cid in ids {
            self.close(cid, CloseReason::BrokerDown, true);
        }
        let up = self.up_brokers();
        for log in self
            .topics
            .values_mut()
            .flat_map(|t| t.partitions.iter_mut())
        {
            if log.leader == id {
                let n = up.len();
                log.leader = if n == 0 {
                    -1
                } else {
                    let next = usize::try_from(id + 1).unwrap_or(0);
                    up.iter()
                        .copied()
                        .find(|&b| b as usize >= next)
                        .or_else(|| up.first().copied())
                        .unwrap_or(-1)
                };
                log.leader_epoch += 1;
            }
        }
        for group in moved_groups {
            if let Some(g) = self.groups.get_mut(&group) {
                g.fail_pending(ResponseError::NotCoordinator, &mut self.deliveries);
            }
        }
        self.wake_fetches();
        self.pump();
        Ok(())
    }

    /// Brings broker `id` back. Leadership does not move back by itself (use
    /// [`move_leader`](Self::move_leader)).
    pub fn broker_up(&mut self, id: i32) -> Result<(), SimError> {
        let index = self.broker_index(id).ok_or(SimError::UnknownBroker(id))?;
        if let Some(up) = self.brokers_up.get_mut(index) {
            *up = true;
        }
        for log in self
            .topics
            .values_mut()
            .flat_map(|t| t.partitions.iter_mut())
        {
            if log.leader < 0 {
                log.leader = id;
                log.leader_epoch += 1;
            }
        }
        Ok(())
    }

    // ----- faults ----------------------------------------------------------------------

    /// The next `count` requests of `api` (on any broker) are answered with `error_code`
    /// instead of being served (see [`Fault::Error`] for the level).
    pub fn inject_error(&mut self, api: ApiKey, error_code: i16, count: usize) {
        self.faults.script(api, Fault::Error(error_code), count);
    }

    /// The next `count` requests of `api` close their connection unanswered.
    pub fn inject_disconnect(&mut self, api: ApiKey, count: usize) {
        self.faults.script(api, Fault::Disconnect, count);
    }

    /// Scripted faults of `api` not yet applied.
    pub fn pending_faults(&self, api: ApiKey) -> usize {
        self.faults.pending(api)
    }

    /// Enables (or with `None` disables) seeded random faults.
    pub fn set_random_faults(&mut self, faults: Option<RandomFaults>) {
        self.faults.random = faults;
    }

    // ----- connections -----------------------------------------------------------------

    /// Opens a connection to broker `id`; refused if the broker is unknown or down.
    pub fn connect(&mut self, id: i32) -> Result<ConnId, SimError> {
        if self.broker_index(id).is_none() {
            return Err(SimError::UnknownBroker(id));
        }
        if !self.is_up(id) {
            return Err(SimError::BrokerDown(id));
        }
        let cid = ConnId(self.next_conn);
        self.next_conn += 1;
        self.conns.insert(
            cid,
            Conn {
                broker: id,
                read_buf: BytesMut::new(),
                inbox: VecDeque::new(),
                outbox: VecDeque::new(),
                parked: None,
                closed: None,
            },
        );
        Ok(cid)
    }

    /// The broker a connection goes to.
    pub fn broker_of(&self, conn: ConnId) -> Option<i32> {
        self.conns.get(&conn).map(|c| c.broker)
    }

    /// Whether the connection is open.
    pub fn is_open(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_some_and(|c| c.closed.is_none())
    }

    /// Why the connection closed, if it did.
    pub fn close_reason(&self, conn: ConnId) -> Option<&CloseReason> {
        self.conns.get(&conn).and_then(|c| c.closed.as_ref())
    }

    /// The next connection closed by the simulator (broker down, malformed frame, injected
    /// fault), for the harness to report to the engine as a disconnect.
    pub fn poll_closed(&mut self) -> Option<(ConnId, CloseReason)> {
        self.closed_events.pop_front()
    }

    /// The client closes the connection. Parked requests on it are dropped.
    pub fn disconnect(&mut self, conn: ConnId) {
        if self.is_open(conn) {
            self.close(conn, CloseReason::ClientDisconnect, true);
            // Not reported by poll_closed: the client knows.
            self.closed_events.retain(|(c, _)| *c != conn);
        }
    }

    /// Bytes from the client, in any chunking. Complete request frames are served in order;
    /// responses become available through [`poll_send`](Self::poll_send). Runs the timers
    /// for `now` first (like [`advance`](Self::advance)).
    ///
    /// `Err` if the connection is (now) closed; a malformed frame closes it.
    pub fn receive(&mut self, conn: ConnId, bytes: &[u8], now: i64) -> Result<(), SimError> {
        self.advance(now);
        let max = self.config.max_request_len;
        let Some(c) = self.conns.get_mut(&conn) else {
            return Err(SimError::ConnectionClosed(conn, None));
        };
        if let Some(reason) = &c.closed {
            return Err(SimError::ConnectionClosed(conn, Some(reason.clone())));
        }
        c.read_buf.extend_from_slice(bytes);
        let mut framing_error = None;
        while let Some(prefix) = c.read_buf.get(..4) {
            let len = i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
            let Some(len) = usize::try_from(len).ok().filter(|&l| l <= max) else {
                framing_error = Some(format!("bad frame length {len}"));
                break;
            };
            if c.read_buf.len() - 4 < len {
                break;
            }
            c.read_buf.advance(4);
            c.inbox.push_back(c.read_buf.split_to(len).freeze());
        }
        // Frames before the bad length prefix are served first.
        self.pump();
        if let Some(detail) = framing_error {
            self.close(conn, CloseReason::Malformed(detail), true);
        }
        match self.close_reason(conn) {
            Some(reason) => Err(SimError::ConnectionClosed(conn, Some(reason.clone()))),
            None => Ok(()),
        }
    }

    /// The next complete response frame (with its length prefix) for the client, in order.
    /// Frames queued before a close stay readable, except after [`CloseReason::BrokerDown`].
    pub fn poll_send(&mut self, conn: ConnId) -> Option<Bytes> {
        self.conns.get_mut(&conn)?.outbox.pop_front()
    }

    /// Runs the timers up to `now`: expires group members whose session ran out, completes
    /// rebalances whose timeout passed, aborts transactions whose timeout passed, answers
    /// fetches whose wait ended.
    pub fn advance(&mut self, now: i64) {
        self.now = self.now.max(now);
        let now = self.now;
        let config = self.config.group;
        for group in self.groups.values_mut() {
            group.expire(&config, now, &mut self.deliveries);
        }
        self.expire_transactions();
        self.wake_fetches();
        self.pump();
    }

    /// The earliest time at which [`advance`](Self::advance) has something to do.
    pub fn next_timer(&self) -> Option<i64> {
        let groups = self.groups.values().filter_map(Group::next_deadline);
        let fetches = self.conns.values().filter_map(|c| match &c.parked {
            Some(Parked::Fetch(f)) if c.closed.is_none() => Some(f.deadline),
            _ => None,
        });
        groups
            .chain(fetches)
            .chain(self.next_transaction_deadline())
            .min()
    }

    fn close(&mut self, conn: ConnId, reason: CloseReason, report: bool) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.closed.is_some() {
            return;
        }
        tracing::debug!(?conn, ?reason, "simulated broker closes a connection");
        if reason == CloseReason::BrokerDown {
            c.outbox.clear();
        }
        c.inbox.clear();
        c.read_buf.clear();
        c.parked = None;
        c.closed = Some(reason.clone());
        for group in self.groups.values_mut() {
            group.forget_connection(conn);
        }
        if report {
            self.closed_events.push_back((conn, reason));
        }
    }

    /// Delivers delayed responses and serves queued frames until nothing can progress.
    fn pump(&mut self) {
        loop {
            for (reply, response) in std::mem::take(&mut self.deliveries) {
                self.deliver(reply, &response);
            }
            let next = self.conns.iter().find_map(|(&id, c)| {
                (c.closed.is_none() && c.parked.is_none() && !c.inbox.is_empty()).then_some(id)
            });
            let Some(id) = next else {
                if self.deliveries.is_empty() {
                    break;
                }
                continue;
            };
            let Some(frame) = self.conns.get_mut(&id).and_then(|c| c.inbox.pop_front()) else {
                break;
            };
            self.serve_frame(id, frame);
        }
    }

    fn deliver(&mut self, reply: PendingReply, response: &ResponseKind) {
        let Some(c) = self.conns.get(&reply.conn) else {
            return;
        };
        if c.closed.is_some() {
            return;
        }
        match &c.parked {
            Some(Parked::Group { correlation_id }) if *correlation_id == reply.correlation_id => {}
            _ => {
                tracing::warn!(
                    ?reply,
                    "simulated coordinator: delivery for a request not parked"
                );
                return;
            }
        }
        if let Some(c) = self.conns.get_mut(&reply.conn) {
            c.parked = None;
        }
        self.respond(reply.conn, reply.correlation_id, reply.version, response);
    }

    fn respond(
        &mut self,
        conn: ConnId,
        correlation_id: i32,
        version: i16,
        response: &ResponseKind,
    ) {
        match encode_response(correlation_id, version, response) {
            Ok(frame) => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.outbox.push_back(frame);
                }
            }
            Err(detail) => {
                tracing::error!(%detail, "simulated broker cannot encode its response");
                self.close(conn, CloseReason::SimulatorBug(detail), true);
            }
        }
    }

    /// Re-evaluates parked fetches (new data, leader change, deadline).
    fn wake_fetches(&mut self) {
        let parked: Vec<(ConnId, Box<ParkedFetch>)> = self
            .conns
            .iter()
            .filter_map(|(&id, c)| match &c.parked {
                Some(Parked::Fetch(f)) if c.closed.is_none() => Some((id, f.clone())),
                _ => None,
            })
            .collect();
        for (id, fetch) in parked {
            let Some(broker) = self.conns.get(&id).map(|c| c.broker) else {
                continue;
            };
            let (response, satisfied) = self.fetch_response(&fetch.request, fetch.version, broker);
            if satisfied || self.now >= fetch.deadline {
                if let Some(c) = self.conns.get_mut(&id) {
                    c.parked = None;
                }
                self.respond(id, fetch.correlation_id, fetch.version, &response);
            }
        }
    }

    fn serve_frame(&mut self, conn: ConnId, frame: Bytes) {
        let Some(broker) = self.conns.get(&conn).map(|c| c.broker) else {
            return;
        };
        let (ctx, request) = match self.parse_request(conn, broker, frame) {
            Ok(parsed) => parsed,
            Err(Parse::Close(detail)) => {
                self.close(conn, CloseReason::Malformed(detail), true);
                return;
            }
            Err(Parse::Respond {
                correlation_id,
                response,
            }) => {
                self.respond(conn, correlation_id, 0, &response);
                return;
            }
        };
        let api = api_key_of(&request);
        let reply = match self.faults.next(api, &mut self.rng) {
            Some(Fault::Disconnect) => Reply::Close(CloseReason::InjectedFault),
            Some(Fault::Error(code)) => match handlers::error_response(&request, ctx.version, code)
            {
                Some(response) => Reply::respond(response),
                None => Reply::Close(CloseReason::InjectedFault),
            },
            None => self.dispatch(&ctx, request),
        };
        match reply {
            Reply::Respond(response) => {
                self.respond(conn, ctx.correlation_id, ctx.version, &response)
            }
            Reply::ParkGroup => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.parked = Some(Parked::Group {
                        correlation_id: ctx.correlation_id,
                    });
                }
            }
            Reply::ParkFetch(fetch) => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.parked = Some(Parked::Fetch(fetch));
                }
            }
            Reply::Silent => {}
            Reply::Close(reason) => self.close(conn, reason, true),
        }
    }

    fn parse_request(
        &self,
        conn: ConnId,
        broker: i32,
        frame: Bytes,
    ) -> Result<(RequestCtx, RequestKind), Parse> {
        let Some(head) = frame.get(..8) else {
            return Err(Parse::Close(format!("frame of {} bytes", frame.len())));
        };
        let key = i16::from_be_bytes([head[0], head[1]]);
        let version = i16::from_be_bytes([head[2], head[3]]);
        let correlation_id = i32::from_be_bytes([head[4], head[5], head[6], head[7]]);
        let api =
            ApiKey::try_from(key).map_err(|()| Parse::Close(format!("unknown API key {key}")))?;
        if !self.config.api_versions.supports(api, version) {
            if api == ApiKey::ApiVersions {
                return Err(Parse::Respond {
                    correlation_id,
                    response: Box::new(handlers::api_versions_response(
                        &self.config.api_versions,
                        0,
                        ResponseError::UnsupportedVersion.code(),
                    )),
                });
            }
            return Err(Parse::Close(format!("{api:?} v{version} is not served")));
        }
        let mut buf = frame;
        let decoded = catch_unwind(AssertUnwindSafe(|| {
            let header = RequestHeader::decode(&mut buf, api.request_header_version(version))?;
            let body = RequestKind::decode(api, &mut buf, version)?;
            Ok::<_, anyhow_compat::Error>((header, body))
        }));
        let (header, body) = match decoded {
            Ok(Ok(parsed)) => parsed,
            Ok(Err(error)) => {
                return Err(Parse::Close(format!("{api:?} v{version}: {error}")));
            }
            Err(_) => {
                return Err(Parse::Close(format!(
                    "{api:?} v{version}: decoder panicked"
                )));
            }
        };
        if buf.has_remaining() {
            return Err(Parse::Close(format!(
                "{api:?} v{version}: {} trailing bytes",
                buf.remaining()
            )));
        }
        let ctx = RequestCtx {
            conn,
            broker,
            correlation_id: header.correlation_id,
            version,
            client_id: header
                .client_id
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_default(),
        };
        Ok((ctx, body))
    }

    fn dispatch(&mut self, ctx: &RequestCtx, request: RequestKind) -> Reply {
        match request {
            RequestKind::ApiVersions(_) => Reply::respond(handlers::api_versions_response(
                &self.config.api_versions,
                ctx.version,
                0,
            )),
            RequestKind::Metadata(r) => self.handle_metadata(ctx, &r),
            RequestKind::FindCoordinator(r) => self.handle_find_coordinator(ctx, &r),
            RequestKind::JoinGroup(r) => self.handle_join_group(ctx, &r),
            RequestKind::SyncGroup(r) => self.handle_sync_group(ctx, &r),
            RequestKind::Heartbeat(r) => self.handle_heartbeat(ctx, &r),
            RequestKind::LeaveGroup(r) => self.handle_leave_group(ctx, &r),
            RequestKind::OffsetCommit(r) => self.handle_offset_commit(ctx, &r),
            RequestKind::OffsetFetch(r) => self.handle_offset_fetch(ctx, &r),
            RequestKind::ListOffsets(r) => self.handle_list_offsets(ctx, &r),
            RequestKind::Fetch(r) => self.handle_fetch(ctx, r),
            RequestKind::Produce(r) => self.handle_produce(ctx, &r),
            RequestKind::InitProducerId(r) => self.handle_init_producer_id(ctx, &r),
            RequestKind::CreateTopics(r) => self.handle_create_topics(ctx, &r),
            RequestKind::AddPartitionsToTxn(r) => self.handle_add_partitions_to_txn(ctx, &r),
            RequestKind::AddOffsetsToTxn(r) => self.handle_add_offsets_to_txn(ctx, &r),
            RequestKind::EndTxn(r) => self.handle_end_txn(ctx, &r),
            RequestKind::TxnOffsetCommit(r) => self.handle_txn_offset_commit(ctx, &r),
            other => Reply::Close(CloseReason::Malformed(format!(
                "{:?} is not implemented by the simulator",
                api_key_of(&other)
            ))),
        }
    }

    fn next_member_id(&mut self, client_id: &str) -> String {
        format!("{client_id}-{:016x}", self.rng.next_u64())
    }
}

/// `anyhow::Error` as `kafka-protocol` returns it, without naming the crate.
mod anyhow_compat {
    /// The decoder's error type.
    pub type Error = Box<dyn std::error::Error + Send + Sync + 'static>;
}

enum Parse {
    Close(String),
    Respond {
        correlation_id: i32,
        response: Box<ResponseKind>,
    },
}

fn api_key_of(request: &RequestKind) -> ApiKey {
    match request {
        RequestKind::ApiVersions(_) => ApiKey::ApiVersions,
        RequestKind::Metadata(_) => ApiKey::Metadata,
        RequestKind::FindCoordinator(_) => ApiKey::FindCoordinator,
        RequestKind::JoinGroup(_) => ApiKey::JoinGroup,
        RequestKind::SyncGroup(_) => ApiKey::SyncGroup,
        RequestKind::Heartbeat(_) => ApiKey::Heartbeat,
        RequestKind::LeaveGroup(_) => ApiKey::LeaveGroup,
        RequestKind::OffsetCommit(_) => ApiKey::OffsetCommit,
        RequestKind::OffsetFetch(_) => ApiKey::OffsetFetch,
        RequestKind::ListOffsets(_) => ApiKey::ListOffsets,
        RequestKind::Fetch(_) => ApiKey::Fetch,
        RequestKind::Produce(_) => ApiKey::Produce,
        RequestKind::InitProducerId(_) => ApiKey::InitProducerId,
        RequestKind::CreateTopics(_) => ApiKey::CreateTopics,
        RequestKind::AddPartitionsToTxn(_) => ApiKey::AddPartitionsToTxn,
        RequestKind::AddOffsetsToTxn(_) => ApiKey::AddOffsetsToTxn,
        RequestKind::EndTxn(_) => ApiKey::EndTxn,
        RequestKind::TxnOffsetCommit(_) => ApiKey::TxnOffsetCommit,
        _ => ApiKey::SaslHandshake,
    }
}

fn response_api_key(response: &ResponseKind) -> Option<ApiKey> {
    Some(match response {
        ResponseKind::ApiVersions(_) => ApiKey::ApiVersions,
        ResponseKind::Metadata(_) => ApiKey::Metadata,
        ResponseKind::FindCoordinator(_) => ApiKey::FindCoordinator,
        ResponseKind::JoinGroup(_) => ApiKey::JoinGroup,
        ResponseKind::SyncGroup(_) => ApiKey::SyncGroup,
        ResponseKind::Heartbeat(_) => ApiKey::Heartbeat,
        ResponseKind::LeaveGroup(_) => ApiKey::LeaveGroup,
        ResponseKind::OffsetCommit(_) => ApiKey::OffsetCommit,
        ResponseKind::OffsetFetch(_) => ApiKey::OffsetFetch,
        ResponseKind::ListOffsets(_) => ApiKey::ListOffsets,
        ResponseKind::Fetch(_) => ApiKey::Fetch,
        ResponseKind::Produce(_) => ApiKey::Produce,
        ResponseKind::InitProducerId(_) => ApiKey::InitProducerId,
        ResponseKind::CreateTopics(_) => ApiKey::CreateTopics,
        ResponseKind::AddPartitionsToTxn(_) => ApiKey::AddPartitionsToTxn,
        ResponseKind::AddOffsetsToTxn(_) => ApiKey::AddOffsetsToTxn,
        ResponseKind::EndTxn(_) => ApiKey::EndTxn,
        ResponseKind::TxnOffsetCommit(_) => ApiKey::TxnOffsetCommit,
        _ => return None,
    })
}

/// Encodes a response frame: length prefix, response header (v0 for ApiVersions), body.
fn encode_response(
    correlation_id: i32,
    version: i16,
    response: &ResponseKind,
) -> Result<Bytes, String> {
    let api = response_api_key(response).ok_or("response of an unimplemented API")?;
    let header_version = if api == ApiKey::ApiVersions {
        0
    } else {
        api.response_header_version(version)
    };
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, header_version)
        .map_err(|e| format!("{api:?} v{version} header: {e:#}"))?;
    response
        .encode(&mut buf, version)
        .map_err(|e| format!("{api:?} v{version}: {e:#}"))?;
    let len = i32::try_from(buf.len() - 4).map_err(|_| "response too large".to_owned())?;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf.freeze())
}

/// 32-bit FNV-1a, a stable hash for coordinator placement.
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811C_9DC5u32, |hash, &b| {
        (hash ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}
