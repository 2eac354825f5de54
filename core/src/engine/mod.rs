//! The [`Engine`]: one stream thread of a kstreams application as a pure state machine.
//!
//! It owns the client components (metadata, group membership, fetcher, producer), one
//! connection state machine per broker, and the tasks the group assigned to it. Bytes and time
//! go in; frames to write, connections to open or close, and events come out:
//!
//! ```text
//! loop {
//!     while let Some(out) = engine.poll_output(now) {
//!         match out {
//!             Output::Connect { node, host, port } => /* open TCP, then handle_connected */,
//!             Output::Transmit { node, bytes }     => /* write all of `bytes` to node's socket */,
//!             Output::Close { node }               => /* drop the socket */,
//!             Output::Event(event)                 => /* state changes, commits, errors */,
//!         }
//!     }
//!     // wait for socket data, a connect result, or engine.poll_timeout()
//!     engine.handle_received(node, &bytes, now);      // raw bytes, any chunking
//!     engine.handle_connected(node, now);             // or handle_disconnected(node, now)
//!     engine.handle_timeout(now);
//! }
//! ```
//!
//! `now` is milliseconds since the Unix epoch, non-decreasing (smaller values count as the
//! largest seen). The engine never reads a clock.
//!
//! # Delivery
//! At-least-once: on the commit interval (and before tasks are revoked, and on close) the
//! engine stops processing, waits until every record the tasks produced is acknowledged, commits
//! the stores, and only then commits the tasks' committable offsets. An offset is reported in
//! [`Event::Committed`] only after the coordinator accepted it.
//!
//! # Internal topics
//! Each logged store has a compacted changelog topic `<application_id>-<store>-changelog` with
//! as many partitions as its sub-topology has tasks (the largest partition count of its source
//! topics). Once metadata knows those counts the engine creates the changelogs (see
//! [`crate::client::admin`]); an assignment waits until all of them exist with the right count,
//! and a changelog that cannot be had stops the engine ([`EngineError::InternalTopic`]). On
//! brokers that offer no usable CreateTopics version the changelogs must exist already: they
//! are only looked up in metadata, and one still missing at a second look stops the engine
//! with a message saying how to create it.

mod config;
mod jitter;
mod node;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, ResponseKind};
use kafka_protocol::protocol::StrBytes;

pub use config::EngineConfig;

use crate::client::admin::{
    InternalTopics, InternalTopicsError, InternalTopicsEvent, TopicSpec, changelog_topic,
};
use crate::client::fetcher::{FetchError, FetchEvent, Fetcher};
use crate::client::group::{
    AssignError, CommitError, CommitId, FetchError as OffsetFetchError, GroupError, GroupEvent,
    GroupMember,
};
use crate::client::metadata::{Metadata, MetadataError, MetadataEvent};
use crate::client::producer::{DeliveryError, Producer, ProducerError, ProducerEvent};
use crate::client::{BrokerId, Outbound, Target};
use crate::error::TaskError;
use crate::record::{ProducerRecord, TopicPartition};
use crate::state::StoreFactory;
use crate::task::{ErrorPolicy, Task, TaskConfig, TaskId};
use crate::topology::Topology;
use crate::wire::connection::{ConnectionConfig, ConnectionError, Received};
use crate::wire::framing::FrameError;
use crate::wire::versions::VersionPolicy;
use node::{ClusterVersions, Link, Node, Token, api_of, decode_response, send_request};

/// Node ids from here up are the fetch connections of brokers (`broker + FETCH_LANE`).
const FETCH_LANE: BrokerId = 1 << 30;
/// Fetch v11 is the last version without tagged fields (see `fall_back_from_flexible_fetch`).
const FETCH_LAST_NON_FLEXIBLE_VERSION: i16 = 11;

/// The client component a request belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Component {
    Metadata,
    Fetcher,
    Group,
    Producer,
    InternalTopics,
}

/// The lifecycle of an engine, as in Kafka Streams' `KafkaStreams.State`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EngineState {
    /// Built, not polled yet.
    Created,
    /// Joining the group or between assignments.
    Rebalancing,
    /// Processing its assigned tasks.
    Running,
    /// Closing: committing, then leaving the group.
    PendingShutdown,
    /// Closed cleanly.
    NotRunning,
    /// Stopped by an error ([`Event::Failed`]).
    Error,
}

/// Something the adapter must do, or know.
#[derive(Debug)]
pub enum Output {
    /// Open a TCP connection to `host:port` for broker `node`, then call
    /// [`Engine::handle_connected`] (or [`Engine::handle_disconnected`] if it fails).
    Connect {
        /// The broker id (negative for bootstrap servers).
        node: BrokerId,
        /// Host name.
        host: String,
        /// Port.
        port: i32,
    },
    /// Write all of `bytes` (whole frames) to the socket of `node`, in order.
    Transmit {
        /// The broker.
        node: BrokerId,
        /// Frames to write.
        bytes: Bytes,
    },
    /// Close the socket of `node`; do not call `handle_disconnected` for it.
    Close {
        /// The broker.
        node: BrokerId,
    },
    /// A state change or report.
    Event(Event),
}

/// What happened.
#[derive(Debug)]
pub enum Event {
    /// The engine moved from one state to another.
    StateChanged {
        /// Before.
        from: EngineState,
        /// After.
        to: EngineState,
    },
    /// These tasks now run here.
    TasksAssigned(Vec<TaskId>),
    /// These tasks were committed and closed for a rebalance.
    TasksRevoked(Vec<TaskId>),
    /// These tasks were closed without a commit (membership lost).
    TasksLost(Vec<TaskId>),
    /// The coordinator accepted these offsets; their output was acknowledged before.
    Committed(BTreeMap<TopicPartition, i64>),
    /// A problem the engine recovers from (retries, rejoins); for logs and metrics.
    Warning(EngineError),
    /// The engine stopped: [`EngineState::Error`].
    Failed(EngineError),
}

/// Errors an engine reports.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The configuration cannot work.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A topic the topology reads does not exist.
    #[error("source topic `{0}` does not exist")]
    MissingSourceTopic(String),
    /// Topics the topology writes were still unknown to the brokers after
    /// [`EngineConfig::max_block_ms`] (Kafka's producer fails the same way after
    /// `max.block.ms`); the assigned tasks never started.
    #[error("sink topics {} unknown to the brokers after {waited_ms} ms", topics.join(", "))]
    MissingSinkTopics {
        /// The topics.
        topics: Vec<String>,
        /// How long the engine waited for them.
        waited_ms: i64,
    },
    /// A task failed (processing or deserialization error under the `Fail` policy, store error).
    #[error(transparent)]
    Task(#[from] TaskError),
    /// Output of a task could not be delivered.
    #[error("task {task}: delivery to {topic_partition} failed: {error}")]
    Delivery {
        /// The task whose output failed.
        task: TaskId,
        /// Where it was going.
        topic_partition: TopicPartition,
        /// Why.
        error: DeliveryError,
    },
    /// The producer refused output.
    #[error("task {task}: {error}")]
    Producer {
        /// The task.
        task: TaskId,
        /// Why.
        error: ProducerError,
    },
    /// A broker lacks an API (or every version of one) the engine needs.
    #[error("broker {broker} cannot serve kstreams: {error}")]
    UnsupportedBroker {
        /// The broker.
        broker: BrokerId,
        /// What negotiation found.
        error: crate::wire::versions::NegotiationError,
    },
    /// Committed offsets could not be fetched (retried).
    #[error("fetching committed offsets failed: {0}")]
    OffsetFetch(OffsetFetchError),
    /// As group leader, the assignor failed; members got empty assignments.
    #[error("assignment failed: {0}")]
    Assignment(AssignError),
    /// The producer could not use a broker's answer.
    #[error("producer: {0}")]
    ProducerResponse(ProducerError),
    /// Group membership failed.
    #[error(transparent)]
    Group(#[from] GroupError),
    /// A commit was not accepted; the offsets stay uncommitted.
    #[error("commit failed: {0}")]
    Commit(CommitError),
    /// Fetching failed.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// Metadata could not be had.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// An internal (changelog) topic could not be created, or exists with other partitions.
    #[error(transparent)]
    InternalTopic(#[from] InternalTopicsError),
    /// A broker connection broke.
    #[error("broker {broker}: {error}")]
    Connection {
        /// The broker.
        broker: BrokerId,
        /// Why.
        error: ConnectionError,
    },
    /// A broker sent bytes that are not a Kafka frame.
    #[error("broker {broker}: {error}")]
    Frame {
        /// The broker.
        broker: BrokerId,
        /// Why.
        error: FrameError,
    },
    /// A connection closed while requests on it were unanswered (they are retried).
    #[error("broker {broker}: connection lost with {unanswered:?} unanswered")]
    Disconnected {
        /// The broker (node id).
        broker: BrokerId,
        /// The APIs of the unanswered requests.
        unanswered: Vec<ApiKey>,
    },
    /// Opening a connection failed (refused, unreachable, name not resolved, connect timeout);
    /// reported at the 1st, 2nd, 4th, 8th, … failure in a row. The engine keeps retrying.
    #[error("broker {broker}: cannot connect to {host}:{port} ({attempts} attempts in a row)")]
    ConnectFailed {
        /// The broker (node id; negative for a bootstrap server).
        broker: BrokerId,
        /// The host dialled.
        host: String,
        /// The port dialled.
        port: i32,
        /// Failed attempts in a row so far.
        attempts: u32,
    },
    /// A request got no answer within the request timeout.
    #[error("broker {broker}: {api:?} request timed out")]
    RequestTimeout {
        /// The broker.
        broker: BrokerId,
        /// The API.
        api: ApiKey,
    },
}

/// Where the commit cycle is.
#[derive(Debug)]
enum CommitPhase {
    Idle,
    /// Processing paused; waiting until all output is acknowledged.
    Flushing {
        offsets: BTreeMap<TopicPartition, i64>,
    },
    /// Offsets sent to the coordinator.
    Committing {
        id: CommitId,
    },
}

/// Why a commit is wanted now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CommitReason {
    Interval,
    Revoke,
    Close,
}

/// One stream thread: see the [module docs](self).
pub struct Engine {
    config: EngineConfig,
    topology: Arc<Topology>,
    stores: Box<dyn StoreFactory>,
    now: i64,
    state: EngineState,
    connection: ConnectionConfig,
    nodes: BTreeMap<BrokerId, Node>,
    /// Requests waiting for a ready connection, with the time they were queued.
    pending: VecDeque<(Component, Outbound, i64)>,
    metadata: Metadata,
    metadata_generation: u64,
    fetcher: Fetcher,
    group: GroupMember,
    producer: Producer<TaskId>,
    /// Creates the changelog topics of logged stores.
    internal_topics: InternalTopics,
    /// Spreads reconnect delays (seeded by [`EngineConfig::random_seed`]).
    jitter: jitter::Jitter,
    /// Logged stores: (sub-topology, store, changelog topic).
    changelogs: Vec<(usize, String, String)>,
    tasks: BTreeMap<TaskId, Task>,
    /// An assignment waiting for the partition counts of the sink topics (their partitioners
    /// need them when the tasks are created): tasks and partitions.
    pending_assignment: Option<(Vec<TaskId>, Vec<TopicPartition>)>,
    /// Since when the pending assignment waits for sink topics metadata does not know.
    sink_wait_since: Option<i64>,
    /// Task output the producer could not take yet (buffer full, partition count unknown).
    backlog: BTreeMap<TaskId, Vec<ProducerRecord>>,
    /// Source topic → sub-topology.
    subtopology_of: HashMap<String, usize>,
    committed: BTreeMap<TopicPartition, i64>,
    /// Assigned partitions waiting for their committed offset, the start of their fetching.
    /// Only the first answer for each starts it: a later one (an OffsetFetch queued for the
    /// previous assignment and answered after this one, then this assignment's own) must not
    /// move the position of a partition already fetched and processed.
    awaiting_committed: BTreeSet<TopicPartition>,
    commit: CommitPhase,
    commit_reason: Option<CommitReason>,
    last_commit: i64,
    revoking: Option<Vec<TaskId>>,
    closing: bool,
    outputs: VecDeque<Output>,
}

impl Engine {
    /// An engine running `topology` with stores from `stores`. Nothing happens until the first
    /// [`Engine::poll_output`].
    pub fn new(
        topology: Arc<Topology>,
        config: EngineConfig,
        stores: Box<dyn StoreFactory>,
        now: i64,
    ) -> Result<Self, EngineError> {
        let bootstrap = config.bootstrap_addresses().map_err(EngineError::Config)?;
        if bootstrap.is_empty() {
            return Err(EngineError::Config("no bootstrap server".into()));
        }
        if config.application_id.is_empty() {
            return Err(EngineError::Config("the application id is empty".into()));
        }
        let mut metadata = Metadata::new(config.metadata.clone(), bootstrap, now);
        let mut topics: BTreeSet<String> = topology.source_topics().into_iter().collect();
        topics.extend(topology.sink_topics());
        for policy in [&config.deserialization_errors, &config.processing_errors] {
            if let ErrorPolicy::DeadLetter { topic } = policy {
                topics.insert(topic.clone());
            }
        }
        metadata.set_topics(topics);
        let subtopology_of = topology
            .subtopologies()
            .iter()
            .flat_map(|s| s.source_topics.iter().map(move |t| (t.clone(), s.id)))
            .collect();
        let policy = VersionPolicy::new().require([
            ApiKey::Metadata,
            ApiKey::FindCoordinator,
            ApiKey::JoinGroup,
            ApiKey::SyncGroup,
            ApiKey::Heartbeat,
            ApiKey::LeaveGroup,
            ApiKey::OffsetFetch,
            ApiKey::OffsetCommit,
            ApiKey::ListOffsets,
            ApiKey::Fetch,
            ApiKey::Produce,
            ApiKey::InitProducerId,
        ]);
        // Name-based shapes only: later versions address topics by id. Users may cap further
        // (brokers with a broken implementation of some version).
        let mut caps: HashMap<ApiKey, i16> = [
            (ApiKey::Fetch, 12),
            (ApiKey::Produce, 12),
            (ApiKey::Metadata, 12),
        ]
        .into();
        for (&api, &max) in &config.api_version_caps {
            let cap = caps.entry(api).or_insert(max);
            *cap = (*cap).min(max);
        }
        let policy = caps
            .into_iter()
            .fold(policy, |policy, (api, max)| policy.cap(api, max));
        let connection = ConnectionConfig {
            client_id: Some(StrBytes::from_string(config.client_id.clone())),
            policy,
            ..ConnectionConfig::default()
        };
        let group = GroupMember::new(
            config.group_config(),
            topology.subtopologies().to_vec(),
            now,
        );
        let fetcher = Fetcher::new(config.fetch.clone());
        let producer = Producer::new(config.producer.clone(), now);
        let internal_topics = InternalTopics::new(config.internal_topics_config(), now);
        let changelogs = changelogs_of(&topology, &config.application_id);
        let jitter = jitter::Jitter::new(config.random_seed);
        let nodes = metadata
            .brokers()
            .iter()
            .map(|(&id, addr)| (id, Node::new(id, id, addr.host.clone(), addr.port)))
            .collect();
        Ok(Self {
            config,
            topology,
            stores,
            now,
            state: EngineState::Created,
            connection,
            nodes,
            pending: VecDeque::new(),
            metadata,
            metadata_generation: u64::MAX,
            fetcher,
            group,
            producer,
            internal_topics,
            jitter,
            changelogs,
            tasks: BTreeMap::new(),
            pending_assignment: None,
            sink_wait_since: None,
            backlog: BTreeMap::new(),
            subtopology_of,
            committed: BTreeMap::new(),
            awaiting_committed: BTreeSet::new(),
            commit: CommitPhase::Idle,
            commit_reason: None,
            last_commit: now,
            revoking: None,
            closing: false,
            outputs: VecDeque::new(),
        })
    }

    /// The engine's state.
    pub fn state(&self) -> EngineState {
        self.state
    }

    /// The tasks running here.
    pub fn tasks(&self) -> impl Iterator<Item = &Task> {
        self.tasks.values()
    }

    /// Mutable access to a running task (e.g. to read its stores).
    pub fn task_mut(&mut self, id: TaskId) -> Option<&mut Task> {
        self.tasks.get_mut(&id)
    }

    /// The offsets this engine committed, per input partition.
    pub fn committed_offsets(&self) -> &BTreeMap<TopicPartition, i64> {
        &self.committed
    }

    /// The next thing to do. Call until `None`, then wait for I/O or [`Engine::poll_timeout`].
    pub fn poll_output(&mut self, now: i64) -> Option<Output> {
        self.advance_time(now);
        if self.outputs.is_empty() {
            self.drive();
        }
        self.outputs.pop_front()
    }

    /// When [`Engine::handle_timeout`] must be called at the latest (`None`: only on I/O).
    pub fn poll_timeout(&self) -> Option<i64> {
        if matches!(self.state, EngineState::NotRunning | EngineState::Error) {
            return None;
        }
        if !self.outputs.is_empty() || self.has_runnable_work() {
            return Some(self.now);
        }
        let general = || self.nodes.values().filter(|n| n.id == n.broker);
        if general().all(|n| matches!(n.link, Link::Down { .. })) {
            // No general connection: components cannot act before one is open, so the next
            // thing to do is the earliest reconnect (never a busy loop on their due timers).
            return general().map(|n| n.retry_at().max(self.now)).min();
        }
        // Components build requests only once a connection negotiated its versions: before
        // that their due timers are not work (waiting on them would spin).
        let mut deadlines = if self.nodes.values().any(Node::is_ready) {
            vec![
                self.metadata.poll_timeout(),
                self.fetcher.poll_timeout(),
                self.group.poll_timeout(),
                self.producer.poll_timeout(),
                self.internal_topics.poll_timeout(),
            ]
        } else {
            Vec::new()
        };
        if let Some(since) = self.sink_wait_since {
            deadlines.push(Some(since.saturating_add(self.config.max_block_ms)));
        }
        if !self.tasks.is_empty() {
            deadlines.push(Some(
                self.last_commit
                    .saturating_add(self.config.commit_interval_ms),
            ));
        }
        for task in self.tasks.values() {
            deadlines.push(task.next_wall_clock_punctuation());
        }
        for node in self.nodes.values() {
            // Not only the oldest: a later request may have a shorter timeout (a Heartbeat
            // behind a JoinGroup that may take the rebalance timeout).
            if let Some(deadline) = node.sent.iter().map(|&(deadline, _)| deadline).min() {
                deadlines.push(Some(deadline));
            }
            if let Link::Down { retry_at } = node.link
                && retry_at > self.now
                && !self.pending.is_empty()
            {
                deadlines.push(Some(retry_at));
            }
        }
        if let Some((_, _, queued)) = self.pending.front() {
            deadlines.push(Some(queued.saturating_add(self.config.request_timeout_ms)));
        }
        deadlines.into_iter().flatten().min()
    }

    /// Time passed: run timers (heartbeats, linger, retries, request timeouts, commits).
    pub fn handle_timeout(&mut self, now: i64) {
        self.advance_time(now);
        self.expire_requests();
        self.drive();
    }

    /// The socket of `node` is open.
    pub fn handle_connected(&mut self, node: BrokerId, now: i64) {
        self.advance_time(now);
        if let Some(n) = self.nodes.get_mut(&node)
            && n.link == Link::Connecting
        {
            n.failures = 0;
            n.connected(self.connection.clone());
            // The ApiVersions exchange that opens the connection is timed like any request:
            // a broker that accepts the socket but never answers must not hang it.
            let deadline = self.now.saturating_add(self.config.request_timeout_ms);
            n.sent.push_back((deadline, ApiKey::ApiVersions));
        }
        self.drive();
    }

    /// The socket of `node` closed or could not be opened.
    pub fn handle_disconnected(&mut self, node: BrokerId, now: i64) {
        self.advance_time(now);
        self.drop_node(node, false);
        self.drive();
    }

    /// Bytes read from the socket of `node`, in any chunking.
    pub fn handle_received(&mut self, node: BrokerId, bytes: &[u8], now: i64) {
        self.advance_time(now);
        let frames = match self.nodes.get_mut(&node) {
            Some(n) if n.link == Link::Up => n.push_bytes(bytes),
            _ => return,
        };
        let frames = match frames {
            Ok(frames) => frames,
            Err(error) => {
                self.warn(EngineError::Frame {
                    broker: node,
                    error,
                });
                self.drop_node(node, true);
                return;
            }
        };
        for frame in frames {
            if !self.handle_frame(node, frame) {
                break;
            }
        }
        self.drive();
    }

    /// Starts a clean shutdown: commit acknowledged output, close tasks, leave the group. The
    /// engine reaches [`EngineState::NotRunning`] through [`Engine::poll_output`].
    pub fn close(&mut self, now: i64) {
        self.advance_time(now);
        if matches!(self.state, EngineState::NotRunning | EngineState::Error) || self.closing {
            return;
        }
        self.closing = true;
        self.set_state(EngineState::PendingShutdown);
        self.commit_reason = Some(CommitReason::Close);
        // Nothing fetched from now on would be processed: stop fetching, so no long-poll Fetch
        // delays the final commit and the LeaveGroup on a shared connection.
        for tp in self.fetcher.assigned().cloned().collect::<Vec<_>>() {
            self.fetcher.set_paused(&tp, true);
        }
    }

    fn advance_time(&mut self, now: i64) {
        self.now = self.now.max(now);
    }

    fn set_state(&mut self, to: EngineState) {
        if self.state != to {
            let from = self.state;
            self.state = to;
            self.outputs
                .push_back(Output::Event(Event::StateChanged { from, to }));
        }
    }

    fn warn(&mut self, error: EngineError) {
        tracing::warn!(%error, "kstreams engine");
        self.outputs.push_back(Output::Event(Event::Warning(error)));
    }

    fn fail(&mut self, error: EngineError) {
        if self.state == EngineState::Error {
            return;
        }
        tracing::error!(%error, "kstreams engine stopped");
        self.outputs.push_back(Output::Event(Event::Failed(error)));
        self.set_state(EngineState::Error);
        for task in self.tasks.values_mut() {
            task.rollback_stores();
        }
        let ids: Vec<BrokerId> = self.nodes.keys().copied().collect();
        for id in ids {
            self.drop_node(id, true);
        }
    }

    fn stopped(&self) -> bool {
        matches!(self.state, EngineState::NotRunning | EngineState::Error)
    }

    fn has_runnable_work(&self) -> bool {
        matches!(self.commit, CommitPhase::Idle)
            && self.revoking.is_none()
            && self
                .tasks
                .iter()
                .any(|(id, t)| t.queued_total() > 0 && !self.backlog.contains_key(id))
    }

    /// Does every kind of work until none makes progress (bounded, so a busy engine still
    /// returns its outputs).
    fn drive(&mut self) {
        if self.state == EngineState::Created {
            self.set_state(EngineState::Rebalancing);
        }
        for _ in 0..16 {
            if self.stopped() {
                return;
            }
            let mut progress = false;
            progress |= self.poll_components();
            progress |= self.handle_component_events();
            progress |= self.flush_pending();
            if self.feed_tasks() {
                progress = true;
                // Ask for the next records before processing these, so that the fetch round
                // trip overlaps the processing: hand a new request to the adapter first.
                let queued = self.outputs.len();
                self.poll_components();
                self.flush_pending();
                self.transmit();
                if self.outputs.len() > queued {
                    return;
                }
            }
            progress |= self.run_tasks();
            progress |= self.drive_commit();
            progress |= self.release_bootstrap_connections();
            progress |= self.transmit();
            if !progress {
                break;
            }
        }
    }

    // ---- requests and connections ----------------------------------------------------------

    fn poll_components(&mut self) -> bool {
        // Requests other than Fetch need a general connection (not a broker's fetch lane):
        // without one, open one; nothing can be built before a broker told us its versions.
        let general_open = self
            .nodes
            .values()
            .any(|n| n.id == n.broker && !matches!(n.link, Link::Down { .. }));
        let mut progress = false;
        if !general_open {
            progress |= self.connect_any();
        }
        let ready: Vec<&crate::wire::connection::Connection<Token>> = self
            .nodes
            .values()
            .filter(|n| n.is_ready())
            .filter_map(|n| n.conn.as_ref())
            .collect();
        if ready.is_empty() {
            return progress;
        }
        let versions = ClusterVersions {
            conns: &ready,
            policy: &self.connection.policy,
        };
        let now = self.now;
        while let Some(out) = self.metadata.poll_request(now, &versions) {
            self.pending.push_back((Component::Metadata, out, now));
            progress = true;
        }
        while let Some(out) = self.group.poll_request(now, &versions) {
            self.pending.push_back((Component::Group, out, now));
            progress = true;
        }
        while let Some(out) = self.fetcher.poll_request(now, &versions) {
            self.pending.push_back((Component::Fetcher, out, now));
            progress = true;
        }
        while let Some(out) = self.producer.poll_request(now, &versions) {
            self.pending.push_back((Component::Producer, out, now));
            progress = true;
        }
        self.internal_topics
            .set_controller(self.metadata.controller());
        while let Some(out) = self.internal_topics.poll_request(now, &versions) {
            self.pending
                .push_back((Component::InternalTopics, out, now));
            progress = true;
        }
        progress
    }

    /// Closes idle connections to bootstrap servers once a broker known by id is ready: they
    /// duplicate a real broker's connection. They stay known, to fall back on if every broker
    /// becomes unreachable.
    fn release_bootstrap_connections(&mut self) -> bool {
        // Only a general connection to a broker known by id replaces a bootstrap connection
        // (a fetch lane carries nothing else).
        if !self
            .nodes
            .values()
            .any(|n| n.id >= 0 && n.id == n.broker && n.is_ready())
        {
            return false;
        }
        let idle: Vec<BrokerId> = self
            .nodes
            .values()
            .filter(|n| n.id < 0 && n.link == Link::Up && n.sent.is_empty())
            .filter(|n| {
                n.conn
                    .as_ref()
                    .is_some_and(|c| c.is_ready() && c.in_flight_len() == 0)
            })
            .map(|n| n.id)
            .collect();
        for &id in &idle {
            if let Some(node) = self.nodes.get_mut(&id) {
                node.disconnect(self.now);
                self.outputs.push_back(Output::Close { node: id });
            }
        }
        !idle.is_empty()
    }

    /// Starts connecting to some broker that may be tried now.
    fn connect_any(&mut self) -> bool {
        let now = self.now;
        let candidate = self
            .nodes
            .values()
            .filter(|n| {
                n.id == n.broker && matches!(n.link, Link::Down { retry_at } if retry_at <= now)
            })
            // Bootstrap servers (ids -1, -2, …) in the order they were listed.
            .min_by_key(|n| (n.failures, n.id.unsigned_abs()))
            .map(|n| n.id);
        match candidate {
            Some(id) => self.connect(id),
            None => false,
        }
    }

    fn connect(&mut self, id: BrokerId) -> bool {
        let Some(node) = self.nodes.get_mut(&id) else {
            return false;
        };
        if !matches!(node.link, Link::Down { retry_at } if retry_at <= self.now) {
            return false;
        }
        node.link = Link::Connecting;
        self.outputs.push_back(Output::Connect {
            node: id,
            host: node.host.clone(),
            port: node.port,
        });
        true
    }

    /// The broker a request for `target` goes to, creating its node from known addresses.
    /// The node of the separate connection that carries a broker's Fetch requests, so a
    /// long-polling Fetch never holds up Produce or group requests queued behind it on one
    /// connection (brokers answer a connection's requests in order).
    fn resolve_fetch_lane(&mut self, target: Target) -> Option<BrokerId> {
        let broker = self.resolve(target)?;
        if broker < 0 {
            return Some(broker);
        }
        let lane = broker.checked_add(FETCH_LANE)?;
        if !self.nodes.contains_key(&lane) {
            let (host, port) = {
                let node = self.nodes.get(&broker)?;
                (node.host.clone(), node.port)
            };
            self.nodes.insert(lane, Node::new(lane, broker, host, port));
        }
        Some(lane)
    }

    fn resolve(&mut self, target: Target) -> Option<BrokerId> {
        let id = match target {
            Target::AnyBroker => {
                return self
                    .nodes
                    .values()
                    .filter(|n| n.is_ready() && n.id == n.broker)
                    // Real brokers before bootstrap connections, then the least busy.
                    .min_by_key(|n| (n.id < 0, n.sent.len(), n.id))
                    .map(|n| n.id);
            }
            Target::Broker(id) => id,
            Target::Coordinator => self.group.coordinator()?,
        };
        if !self.nodes.contains_key(&id) {
            let (host, port) = self.metadata.broker_address(id)?;
            self.nodes.insert(id, Node::new(id, id, host, port));
        }
        Some(id)
    }

    fn flush_pending(&mut self) -> bool {
        let mut progress = false;
        let request_timeout = self.config.request_timeout_ms;
        // The coordinator holds a JoinGroup until every member rejoined, up to the rebalance
        // timeout: give it that long and some (as Kafka's clients do).
        let join_timeout =
            request_timeout.max(i64::from(self.config.rebalance_timeout_ms).saturating_add(5_000));
        let mut waiting = VecDeque::new();
        while let Some((component, out, queued)) = self.pending.pop_front() {
            let api = api_of(&out.request);
            let resolved = match component {
                Component::Fetcher => self.resolve_fetch_lane(out.target),
                _ => self.resolve(out.target),
            };
            let Some(id) = resolved else {
                if matches!(out.target, Target::Broker(_)) {
                    // No address for that broker: let the component re-plan.
                    self.request_failed(component, out.target, api);
                    progress = true;
                } else {
                    waiting.push_back((component, out, queued));
                }
                continue;
            };
            let now = self.now;
            let Some(node) = self.nodes.get_mut(&id) else {
                waiting.push_back((component, out, queued));
                continue;
            };
            if !node.is_ready() {
                if matches!(node.link, Link::Down { .. }) {
                    progress |= self.connect(id);
                }
                waiting.push_back((component, out, queued));
                continue;
            }
            let token = Token {
                component,
                target: out.target,
                api,
                sent_at: now,
            };
            let answer_timeout = if api == ApiKey::JoinGroup {
                join_timeout
            } else {
                request_timeout
            };
            let Some(conn) = node.conn.as_mut() else {
                waiting.push_back((component, out, queued));
                continue;
            };
            match send_request(conn, &out.request, out.version, token) {
                Ok(_) => {
                    node.sent
                        .push_back((now.saturating_add(answer_timeout), api));
                    progress = true;
                }
                Err(error) => {
                    self.warn(EngineError::Connection { broker: id, error });
                    self.request_failed(component, out.target, api);
                    progress = true;
                }
            }
        }
        self.pending = waiting;
        progress
    }

    fn transmit(&mut self) -> bool {
        let mut progress = false;
        for node in self.nodes.values_mut() {
            if node.link != Link::Up {
                continue;
            }
            if let Some(conn) = node.conn.as_mut() {
                while let Some(bytes) = conn.poll_transmit() {
                    self.outputs.push_back(Output::Transmit {
                        node: node.id,
                        bytes,
                    });
                    progress = true;
                }
            }
        }
        progress
    }

    /// Fails requests that waited too long for a connection or for an answer.
    fn expire_requests(&mut self) {
        let limit = self.config.request_timeout_ms;
        let now = self.now;
        let late: Vec<(BrokerId, ApiKey)> = self
            .nodes
            .values()
            .filter_map(|n| {
                n.sent
                    .iter()
                    .find(|&&(deadline, _)| deadline <= now)
                    .map(|&(_, api)| (n.id, api))
            })
            .collect();
        for (id, api) in late {
            self.warn(EngineError::RequestTimeout { broker: id, api });
            self.drop_node(id, true);
        }
        let mut kept = VecDeque::new();
        while let Some((component, out, queued)) = self.pending.pop_front() {
            if queued.saturating_add(limit) <= now {
                self.request_failed(component, out.target, api_of(&out.request));
            } else {
                kept.push_back((component, out, queued));
            }
        }
        self.pending = kept;
    }

    /// Drops the connection to `id` (emitting `Close` when we close it) and fails its requests.
    fn drop_node(&mut self, id: BrokerId, we_close: bool) {
        let now = self.now;
        let (base, cap) = (
            self.config.reconnect_backoff_ms,
            self.config.reconnect_backoff_max_ms,
        );
        let Some(node) = self.nodes.get_mut(&id) else {
            return;
        };
        let was_open = !matches!(node.link, Link::Down { .. });
        let connect_failed = node.link == Link::Connecting && !we_close;
        node.failures = node.failures.saturating_add(1);
        let failures = node.failures;
        let address = (node.host.clone(), node.port);
        let backoff = base
            .saturating_mul(1_i64 << node.failures.min(20).saturating_sub(1))
            .min(cap);
        // 80–100 % of the backoff, so clients that lost a broker together do not come back
        // together (see `jitter`).
        let delay = self.jitter.scale(backoff);
        tracing::debug!(
            node = id,
            failures = node.failures,
            delay,
            "reconnect scheduled"
        );
        let tokens = node.disconnect(now.saturating_add(delay));
        if we_close && was_open {
            self.outputs.push_back(Output::Close { node: id });
        }
        if connect_failed && failures.is_power_of_two() {
            // Visible without debug logs (a wrong bootstrap address would otherwise look like
            // an instance stuck in rebalancing), but exponentially rarer while it lasts.
            self.warn(EngineError::ConnectFailed {
                broker: id,
                host: address.0,
                port: address.1,
                attempts: failures,
            });
        }
        if !we_close && !tokens.is_empty() {
            // The broker (or the network) dropped requests we were waiting for: worth seeing,
            // e.g. a broker that closes the connection in reply to a request it cannot parse.
            self.warn(EngineError::Disconnected {
                broker: id,
                unanswered: tokens.iter().map(|t| t.api).collect(),
            });
        }
        for token in tokens {
            self.request_failed(token.component, token.target, token.api);
        }
        if self.group.coordinator() == Some(id) || id < 0 {
            self.metadata.request_refresh("broker connection lost");
        }
    }

    fn request_failed(&mut self, component: Component, target: Target, api: ApiKey) {
        let now = self.now;
        match component {
            Component::Metadata => self.metadata.handle_request_failed(target, api, now),
            Component::Fetcher => self.fetcher.handle_request_failed(target, api, now),
            Component::Group => self.group.handle_request_failed(target, api, now),
            Component::Producer => self.producer.handle_request_failed(target, api, now),
            Component::InternalTopics => {
                self.internal_topics.handle_request_failed(target, api, now)
            }
        }
    }

    /// Handles one frame from `node`; `false` when the connection was dropped.
    fn handle_frame(&mut self, node: BrokerId, frame: Bytes) -> bool {
        let Some(n) = self.nodes.get_mut(&node) else {
            return false;
        };
        let Some(conn) = n.conn.as_mut() else {
            return false;
        };
        let received = conn.handle_frame(frame);
        let response = match received {
            Ok(Received::Response(response)) => {
                n.sent.pop_front();
                response
            }
            Ok(Received::Negotiated) => {
                n.sent.clear();
                return true;
            }
            Ok(Received::NegotiationRetry { .. }) => {
                // The retried ApiVersions request gets a fresh deadline.
                let deadline = self.now.saturating_add(self.config.request_timeout_ms);
                n.sent.clear();
                n.sent.push_back((deadline, ApiKey::ApiVersions));
                return true;
            }
            Err(error) => {
                let fatal = error.is_fatal();
                if let ConnectionError::Negotiation(e) = &error {
                    // A broker lacking a required API cannot serve this application.
                    self.fail(EngineError::UnsupportedBroker {
                        broker: node,
                        error: e.clone(),
                    });
                    return false;
                }
                self.warn(EngineError::Connection {
                    broker: node,
                    error,
                });
                if fatal {
                    self.drop_node(node, true);
                    return false;
                }
                return true;
            }
        };
        let token = response.token;
        let kind = match decode_response(&response) {
            Ok(kind) => kind,
            Err(error) => {
                self.fall_back_from_flexible_fetch(&error);
                self.warn(EngineError::Connection {
                    broker: node,
                    error,
                });
                self.request_failed(token.component, token.target, token.api);
                self.drop_node(node, true);
                return false;
            }
        };
        let broker = self.nodes.get(&node).map_or(node, |n| n.broker);
        self.route_response(broker, token, kind);
        true
    }

    /// A Fetch response of a flexible version (v12) that cannot be decoded makes every later
    /// connection negotiate Fetch v11 at most, the last version without tagged fields; v12
    /// adds nothing this client uses. Tansu 0.6.0, for one, answers Fetch v12 with a
    /// top-level tagged field that only v16+ defines, which a strict decoder rejects. The
    /// connection is dropped by the caller, so the next one negotiates the lower version.
    fn fall_back_from_flexible_fetch(&mut self, error: &ConnectionError) {
        let ConnectionError::MalformedBody {
            api: ApiKey::Fetch,
            version,
            ..
        } = error
        else {
            return;
        };
        // Already capped (this response was built before the fallback): nothing new to do.
        let cap = self.connection.policy.our_range(ApiKey::Fetch).max;
        if *version <= FETCH_LAST_NON_FLEXIBLE_VERSION || cap <= FETCH_LAST_NON_FLEXIBLE_VERSION {
            return;
        }
        self.connection.policy = std::mem::take(&mut self.connection.policy)
            .cap(ApiKey::Fetch, FETCH_LAST_NON_FLEXIBLE_VERSION);
        tracing::warn!(
            version,
            fallback = FETCH_LAST_NON_FLEXIBLE_VERSION,
            "a Fetch response could not be decoded; using Fetch v11 from now on"
        );
    }

    fn route_response(&mut self, from: BrokerId, token: Token, kind: ResponseKind) {
        let now = self.now;
        let result = match token.component {
            Component::Metadata => self
                .metadata
                .handle_response(from, kind, now)
                .map_err(EngineError::from),
            Component::Fetcher => self
                .fetcher
                .handle_response(from, kind, now)
                .map_err(EngineError::from),
            Component::Group => self
                .group
                .handle_response(from, kind, now)
                .map_err(EngineError::from),
            Component::Producer => self
                .producer
                .handle_response(from, kind, now)
                .map_err(EngineError::ProducerResponse),
            Component::InternalTopics => self
                .internal_topics
                .handle_response(from, kind, now)
                .map_err(EngineError::from),
        };
        if let Err(error) = result {
            self.warn(error);
        }
    }

    // ---- component events ------------------------------------------------------------------

    fn handle_component_events(&mut self) -> bool {
        let mut progress = self.sync_metadata();
        progress |= self.drive_internal_topics();
        if self.stopped() {
            return true;
        }
        progress |= self.resume_assignment();
        while let Some(event) = self.metadata.poll_event() {
            progress = true;
            match event {
                MetadataEvent::Error(MetadataError::UnknownTopic { topic })
                    if self.subtopology_of.contains_key(&*topic) =>
                {
                    self.fail(EngineError::MissingSourceTopic(topic.to_string()));
                    return true;
                }
                MetadataEvent::Error(MetadataError::UnknownTopic { topic })
                    if self.internal_topics.verifying().any(|t| t == &*topic) =>
                {
                    // Existed when we tried to create it, gone now: create it again.
                    self.internal_topics.topic_missing(&topic, self.now);
                }
                MetadataEvent::Error(MetadataError::UnknownTopic { topic })
                    if self.changelogs.iter().any(|(_, _, t)| *t == *topic) =>
                {
                    // Just created: the broker's metadata cache may lag behind the controller.
                    tracing::debug!(%topic, "new changelog topic not in metadata yet");
                    self.metadata
                        .request_refresh(&format!("new changelog topic {topic}"));
                }
                MetadataEvent::Error(error) => self.warn(error.into()),
                MetadataEvent::PartitionCountChanged {
                    topic,
                    previous,
                    current,
                } => {
                    tracing::info!(%topic, ?previous, current, "partition count changed");
                }
            }
        }
        while let Some(event) = self.fetcher.poll_event() {
            progress = true;
            match event {
                FetchEvent::MetadataRefreshNeeded { reason } => {
                    self.metadata.request_refresh(&reason)
                }
                FetchEvent::PositionReset { partition, offset } => {
                    tracing::debug!(%partition, offset, "position reset");
                }
                FetchEvent::PartitionMaxBytesRaised { partition, .. } => {
                    tracing::debug!(%partition, "raised partition max bytes");
                }
                FetchEvent::Error(error) => match error {
                    FetchError::NoOffset { .. }
                    | FetchError::OffsetOutOfRange { .. }
                    | FetchError::CorruptRecords { .. } => {
                        self.fail(error.into());
                        return true;
                    }
                    other => self.warn(other.into()),
                },
            }
        }
        while let Some(event) = self.producer.poll_event() {
            progress = true;
            match event {
                ProducerEvent::Acked { .. } => {}
                ProducerEvent::Failed {
                    owner,
                    topic_partition,
                    error,
                    ..
                } => {
                    self.fail(EngineError::Delivery {
                        task: owner,
                        topic_partition,
                        error,
                    });
                    return true;
                }
                ProducerEvent::RefreshMetadata { topic } => {
                    self.metadata
                        .request_refresh(&format!("producer: leader of {topic} moved"));
                }
            }
        }
        while let Some(event) = self.group.poll_event() {
            progress = true;
            self.handle_group_event(event);
            if self.stopped() {
                return true;
            }
        }
        progress
    }

    /// Pushes metadata changes to the components that depend on it.
    fn sync_metadata(&mut self) -> bool {
        let generation = self.metadata.generation();
        if generation == self.metadata_generation || !self.metadata.is_initialized() {
            return false;
        }
        self.metadata_generation = generation;
        for (&id, addr) in self.metadata.brokers() {
            self.nodes
                .entry(id)
                .or_insert_with(|| Node::new(id, id, addr.host.clone(), addr.port));
        }
        self.fetcher.update_leaders(&self.metadata);
        let mut counts = Vec::new();
        for topic in self.metadata.topics().cloned().collect::<Vec<_>>() {
            let Some(n) = self.metadata.partition_count(&topic) else {
                continue;
            };
            counts.push((topic.to_string(), n));
            self.producer.set_partition_count(topic.clone(), n);
            for p in 0..n {
                let tp = TopicPartition::new(topic.clone(), p);
                let leader = self.metadata.leader(&tp);
                self.producer.update_leader(tp, leader);
            }
        }
        self.group.set_partition_counts(counts);
        true
    }

    fn handle_group_event(&mut self, event: GroupEvent) {
        let now = self.now;
        match event {
            GroupEvent::CoordinatorFound { id, host, port } => {
                let node = self
                    .nodes
                    .entry(id)
                    .or_insert_with(|| Node::new(id, id, host.clone(), port));
                if node.host != host || node.port != port {
                    node.host = host;
                    node.port = port;
                }
            }
            GroupEvent::PartitionCountsNeeded { topics } => {
                self.metadata
                    .request_refresh(&format!("partition counts of {}", topics.join(", ")));
            }
            GroupEvent::Assigned {
                tasks, partitions, ..
            } => self.assign(tasks, partitions),
            GroupEvent::OffsetsFetched { offsets } => {
                for (tp, offset) in offsets {
                    if !self.awaiting_committed.remove(&tp) {
                        tracing::debug!(partition = %tp, ?offset, "committed offset for a partition not waiting for one ignored");
                        continue;
                    }
                    match offset {
                        Some(o) => {
                            self.fetcher.seek(&tp, o);
                            self.committed.insert(tp, o);
                        }
                        None => {
                            let policy = self.config.fetch.offset_reset;
                            self.fetcher.reset_position(&tp, policy);
                        }
                    }
                }
            }
            GroupEvent::OffsetFetchFailed { partitions, error } => {
                self.warn(EngineError::OffsetFetch(error));
                self.group.fetch_committed(partitions);
            }
            GroupEvent::Revoke { tasks } => {
                self.pending_assignment = None;
                self.sink_wait_since = None;
                if self.closing {
                    // The close commits these tasks and then leaves: no revoke and rejoin.
                    return;
                }
                self.set_state(EngineState::Rebalancing);
                self.revoking = Some(tasks);
                self.commit_reason = Some(CommitReason::Revoke);
            }
            GroupEvent::Lost { tasks } => {
                if !self.closing {
                    self.set_state(EngineState::Rebalancing);
                }
                self.close_tasks(false);
                self.commit = CommitPhase::Idle;
                self.revoking = None;
                self.outputs
                    .push_back(Output::Event(Event::TasksLost(tasks)));
                if self.closing {
                    // Nothing of the lost tasks can be committed: the close ends here, without
                    // rejoining the group it is leaving (the member would, and take tasks).
                    self.commit_reason = None;
                    self.group.leave(now);
                }
            }
            GroupEvent::AssignmentFailed { error } => {
                self.warn(EngineError::Assignment(error));
            }
            GroupEvent::CommitSucceeded { id, offsets } => {
                if matches!(self.commit, CommitPhase::Committing { id: ours } if ours == id) {
                    self.commit = CommitPhase::Idle;
                    self.last_commit = now;
                    self.committed
                        .extend(offsets.iter().map(|(tp, o)| (tp.clone(), *o)));
                    self.outputs
                        .push_back(Output::Event(Event::Committed(offsets)));
                    self.commit_done();
                }
            }
            GroupEvent::CommitFailed { id, error, .. } => {
                if matches!(self.commit, CommitPhase::Committing { id: ours } if ours == id) {
                    self.commit = CommitPhase::Idle;
                    self.last_commit = now;
                    self.warn(EngineError::Commit(error));
                    self.commit_done();
                }
            }
            GroupEvent::Left => {
                let ids: Vec<BrokerId> = self.nodes.keys().copied().collect();
                for id in ids {
                    self.drop_node(id, true);
                }
                self.set_state(EngineState::NotRunning);
            }
            GroupEvent::Failed(error) => self.fail(error.into()),
        }
    }

    fn assign(&mut self, tasks: Vec<TaskId>, partitions: Vec<TopicPartition>) {
        if !self.changelogs_ready() {
            // Tasks restore from and log to their changelogs: start them once those exist.
            self.pending_assignment = Some((tasks, partitions));
            return;
        }
        let missing: Vec<String> = self
            .topology
            .sink_topics()
            .into_iter()
            .filter(|t| self.metadata.partition_count(t).is_none())
            .collect();
        if !missing.is_empty() {
            // Sinks with a partitioner cannot work without the count: start the tasks once
            // metadata knows it, or fail after `max_block_ms`.
            let since = *self.sink_wait_since.get_or_insert(self.now);
            let waited_ms = self.now.saturating_sub(since);
            if waited_ms >= self.config.max_block_ms {
                self.fail(EngineError::MissingSinkTopics {
                    topics: missing,
                    waited_ms,
                });
                return;
            }
            self.metadata.request_refresh(&format!(
                "partition counts of sink topics {}",
                missing.join(", ")
            ));
            self.pending_assignment = Some((tasks, partitions));
            return;
        }
        self.sink_wait_since = None;
        let now = self.now;
        let config = TaskConfig {
            max_batch_records: self.config.max_batch_records,
            deserialization_errors: self.config.deserialization_errors.clone(),
            processing_errors: self.config.processing_errors.clone(),
        };
        let sink_counts: HashMap<String, i32> = self
            .topology
            .sink_topics()
            .into_iter()
            .filter_map(|t| self.metadata.partition_count(&t).map(|n| (t, n)))
            .collect();
        for &id in &tasks {
            if self.tasks.contains_key(&id) {
                continue;
            }
            match Task::new(
                &self.topology,
                id,
                self.stores.as_ref(),
                config.clone(),
                sink_counts.clone(),
                now,
            ) {
                Ok(task) => {
                    self.tasks.insert(id, task);
                }
                Err(error) => {
                    self.fail(error.into());
                    return;
                }
            }
        }
        for tp in &partitions {
            self.fetcher.assign(tp.clone(), None);
            self.awaiting_committed.insert(tp.clone());
        }
        self.fetcher.update_leaders(&self.metadata);
        self.group.fetch_committed(partitions);
        self.last_commit = now;
        self.outputs
            .push_back(Output::Event(Event::TasksAssigned(tasks)));
        if !self.closing {
            self.set_state(EngineState::Running);
        }
    }

    /// Starts the tasks of an assignment that waited for sink partition counts, once known
    /// (or fails it once it waited `max_block_ms` for them).
    fn resume_assignment(&mut self) -> bool {
        let sinks_known = self
            .topology
            .sink_topics()
            .iter()
            .all(|t| self.metadata.partition_count(t).is_some());
        let sinks_overdue = self
            .sink_wait_since
            .is_some_and(|since| self.now.saturating_sub(since) >= self.config.max_block_ms);
        let ready = self.pending_assignment.is_some()
            && self.changelogs_ready()
            && (sinks_known || sinks_overdue);
        match self.pending_assignment.take() {
            Some((tasks, partitions)) if ready => {
                self.assign(tasks, partitions);
                true
            }
            pending => {
                self.pending_assignment = pending;
                false
            }
        }
    }

    /// Closes every task; `committed`: their work was committed (else stores roll back).
    fn close_tasks(&mut self, committed: bool) {
        self.pending_assignment = None;
        self.sink_wait_since = None;
        for tp in self.fetcher.assigned().cloned().collect::<Vec<_>>() {
            self.fetcher.unassign(&tp);
        }
        self.awaiting_committed.clear();
        self.backlog.clear();
        for (_, mut task) in std::mem::take(&mut self.tasks) {
            if !committed {
                task.rollback_stores();
            }
            if let Err(error) = task.close() {
                self.warn(error.into());
            }
        }
    }

    // ---- processing ------------------------------------------------------------------------

    fn feed_tasks(&mut self) -> bool {
        let mut progress = false;
        while let Some(batch) = self.fetcher.poll_records() {
            progress = true;
            let tp = batch.partition;
            let Some(&subtopology) = self.subtopology_of.get(&*tp.topic) else {
                continue;
            };
            let id = TaskId {
                subtopology,
                partition: tp.partition,
            };
            let Some(task) = self.tasks.get_mut(&id) else {
                continue;
            };
            if let Err(error) = task.add_records(&tp, batch.records) {
                self.warn(error.into());
                continue;
            }
            let full = task.queued(&tp) >= self.config.max_queued_records_per_partition;
            self.fetcher.set_paused(&tp, full || self.closing);
        }
        progress
    }

    fn run_tasks(&mut self) -> bool {
        let mut progress = self.deliver_backlog();
        if !matches!(self.commit, CommitPhase::Idle) || self.revoking.is_some() || self.closing {
            return progress;
        }
        let now = self.now;
        let mut budget = self.config.max_batches_per_poll;
        let ids: Vec<TaskId> = self.tasks.keys().copied().collect();
        for id in ids {
            if self.backlog.contains_key(&id) {
                continue;
            }
            let Some(task) = self.tasks.get_mut(&id) else {
                continue;
            };
            if task
                .next_wall_clock_punctuation()
                .is_some_and(|due| due <= now)
                && let Err(error) = task.punctuate_wall_clock(now)
            {
                self.fail(error.into());
                return true;
            }
            while budget > 0 {
                match task.process_next_batch() {
                    Ok(Some(_)) => {
                        budget -= 1;
                        progress = true;
                    }
                    Ok(None) => break,
                    Err(error) => {
                        self.fail(error.into());
                        return true;
                    }
                }
                let output = task.take_output();
                if !output.is_empty() {
                    self.backlog.insert(id, output);
                    break;
                }
            }
            let output = task.take_output();
            if !output.is_empty() {
                self.backlog.entry(id).or_default().extend(output);
            }
            for tp in task.partitions().cloned().collect::<Vec<_>>() {
                let full = task.queued(&tp) >= self.config.max_queued_records_per_partition;
                self.fetcher.set_paused(&tp, full || self.closing);
            }
            progress |= self.deliver_backlog();
        }
        progress
    }

    /// Hands held-back task output to the producer, as far as it takes it.
    fn deliver_backlog(&mut self) -> bool {
        let now = self.now;
        let mut progress = false;
        for id in self.backlog.keys().copied().collect::<Vec<_>>() {
            let Some(records) = self.backlog.remove(&id) else {
                continue;
            };
            match self.producer.send_batch(id, records, now) {
                Ok(_) => progress = true,
                Err(refused) => match refused.error {
                    ProducerError::BufferFull { .. }
                    | ProducerError::UnknownPartitionCount { .. } => {
                        self.backlog.insert(id, refused.records);
                    }
                    error => {
                        self.fail(EngineError::Producer { task: id, error });
                        return true;
                    }
                },
            }
        }
        progress
    }

    // ---- commits ---------------------------------------------------------------------------

    fn drive_commit(&mut self) -> bool {
        let now = self.now;
        match &self.commit {
            CommitPhase::Idle => {
                let reason = self.commit_reason.or_else(|| {
                    (!self.tasks.is_empty()
                        && now
                            >= self
                                .last_commit
                                .saturating_add(self.config.commit_interval_ms))
                    .then_some(CommitReason::Interval)
                });
                let Some(reason) = reason else {
                    return false;
                };
                let offsets: BTreeMap<TopicPartition, i64> = self
                    .tasks
                    .values()
                    .flat_map(|t| t.committable_offsets())
                    .filter(|(tp, o)| self.committed.get(tp) != Some(o))
                    .collect();
                if offsets.is_empty() && self.backlog.is_empty() && self.producer.is_flushed() {
                    self.last_commit = now;
                    if reason != CommitReason::Interval {
                        self.commit_done();
                    }
                    return reason != CommitReason::Interval;
                }
                self.producer.flush();
                self.commit = CommitPhase::Flushing { offsets };
                true
            }
            CommitPhase::Flushing { .. } => {
                if !self.backlog.is_empty() || !self.producer.is_flushed() {
                    return false;
                }
                for task in self.tasks.values_mut() {
                    if let Err(error) = task.commit_stores() {
                        self.fail(error.into());
                        return true;
                    }
                }
                let CommitPhase::Flushing { offsets } =
                    std::mem::replace(&mut self.commit, CommitPhase::Idle)
                else {
                    return false;
                };
                if offsets.is_empty() {
                    self.last_commit = now;
                    self.commit_done();
                } else {
                    let id = self.group.commit(offsets, now);
                    self.commit = CommitPhase::Committing { id };
                }
                true
            }
            CommitPhase::Committing { .. } => false,
        }
    }

    /// A commit cycle ended: finish what was waiting for it.
    fn commit_done(&mut self) {
        let now = self.now;
        match self.commit_reason.take() {
            Some(CommitReason::Revoke) => {
                let revoked = self.revoking.take().unwrap_or_default();
                self.close_tasks(true);
                self.outputs
                    .push_back(Output::Event(Event::TasksRevoked(revoked)));
                self.group.revoke_done(now);
            }
            Some(CommitReason::Close) => {
                self.close_tasks(true);
                self.group.leave(now);
            }
            Some(CommitReason::Interval) | None => {}
        }
    }
}

// ---- internal topics -------------------------------------------------------------------------

/// Each logged store with the sub-topology whose tasks own it and its changelog topic.
fn changelogs_of(topology: &Topology, application_id: &str) -> Vec<(usize, String, String)> {
    topology
        .store_names()
        .into_iter()
        .filter(|store| topology.store_is_logged(store) == Some(true))
        .filter_map(|store| {
            let sub = topology
                .subtopologies()
                .iter()
                .find(|s| s.stores.contains(&store))?;
            let topic = changelog_topic(application_id, &store);
            Some((sub.id, store, topic))
        })
        .collect()
}

impl Engine {
    /// Whether every changelog topic exists with the partitions its sub-topology needs.
    fn changelogs_ready(&self) -> bool {
        self.changelogs
            .iter()
            .all(|(_, _, topic)| self.internal_topics.is_ready(topic))
    }

    /// Asks for the changelog topics whose sub-topology's source partition counts are known,
    /// feeds metadata's partition counts to the topics being verified, and handles the
    /// component's events.
    fn drive_internal_topics(&mut self) -> bool {
        let mut progress = false;
        let mut specs = Vec::new();
        for (sub, store, topic) in &self.changelogs {
            if self.internal_topics.specs().any(|s| &s.name == topic) {
                continue;
            }
            let Some(subtopology) = self.topology.subtopologies().iter().find(|s| s.id == *sub)
            else {
                continue;
            };
            // As many partitions as the sub-topology has tasks.
            let counts: Option<Vec<i32>> = subtopology
                .source_topics
                .iter()
                .map(|t| self.metadata.partition_count(t))
                .collect();
            if let Some(partitions) = counts.and_then(|c| c.into_iter().max()) {
                specs.push(TopicSpec::changelog(
                    &self.config.application_id,
                    store,
                    partitions,
                ));
            }
        }
        if !specs.is_empty() {
            self.internal_topics.ensure(specs);
            progress = true;
        }
        let verifying: Vec<String> = self
            .internal_topics
            .verifying()
            .map(str::to_owned)
            .collect();
        for topic in verifying {
            if let Some(n) = self.metadata.partition_count(&topic) {
                self.internal_topics.partition_count_known(&topic, n);
                progress = true;
            }
        }
        while let Some(event) = self.internal_topics.poll_event() {
            progress = true;
            match event {
                InternalTopicsEvent::Ready { topic, created } => {
                    tracing::info!(%topic, created, "changelog topic ready");
                    self.add_metadata_topic(topic);
                }
                InternalTopicsEvent::VerificationNeeded { topic } => {
                    self.look_up_topic(topic);
                }
                InternalTopicsEvent::MetadataRefreshNeeded { reason } => {
                    self.metadata.request_refresh(&reason);
                }
                InternalTopicsEvent::Error(error) => {
                    self.fail(error.into());
                    return true;
                }
            }
        }
        progress
    }

    /// Has metadata look `topic` up with a new request, so that its answer (partition count, or
    /// `UnknownTopic`) reaches the internal topics component as news: a topic metadata already
    /// holds as failed (e.g. reported missing before) is forgotten and asked again, since a
    /// failure it already reported is not reported again.
    fn look_up_topic(&mut self, topic: String) {
        if self.metadata.topic_error(&topic).is_some() {
            let others: BTreeSet<Arc<str>> = self
                .metadata
                .topics()
                .filter(|t| ***t != *topic)
                .cloned()
                .collect();
            self.metadata.set_topics(others);
        }
        self.metadata
            .request_refresh(&format!("partition count of internal topic {topic}"));
        self.add_metadata_topic(topic);
    }

    /// Adds `topic` to the metadata topics of interest (only once it exists, or to check
    /// whether it exists when it cannot be created: Metadata v1–3 would let a broker
    /// auto-create it with the wrong settings).
    fn add_metadata_topic(&mut self, topic: String) {
        let mut topics: BTreeSet<Arc<str>> = self.metadata.topics().cloned().collect();
        if topics.insert(topic.into()) {
            self.metadata.set_topics(topics);
        }
    }
}

#[cfg(test)]
mod tests;
