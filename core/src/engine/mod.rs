//! The [`Engine`]: one stream thread of a kstreams application as a pure state machine.
//!
//! It owns the client components (metadata, group membership, fetcher, producer, internal
//! topics), a `Router` (the private `router` module) for the broker connections, and the
//! tasks the group assigned to it. Bytes and time go in; frames to write, connections to open or close, and events come
//! out. The engine never reads a clock: `now` is passed in (see [`crate::time`]).
//!
//! # Methods, by kind
//! - **Getters**: [`state`](Engine::state), [`tasks`](Engine::tasks),
//!   [`rebalance_protocol`](Engine::rebalance_protocol),
//!   [`restoring`](Engine::restoring),
//!   [`committed_offsets`](Engine::committed_offsets),
//!   [`last_timeout_reason`](Engine::last_timeout_reason),
//!   [`has_pending_work`](Engine::has_pending_work); metrics:
//!   [`metrics`](Engine::metrics), [`partition_lags`](Engine::partition_lags),
//!   [`restore_progress`](Engine::restore_progress); standbys:
//!   [`standby_tasks`](Engine::standby_tasks), [`standby_progress`](Engine::standby_progress).
//! - **Inputs**: [`handle_input`](Engine::handle_input) with an [`Input`], or its thin
//!   wrappers [`handle_connected`](Engine::handle_connected),
//!   [`handle_received`](Engine::handle_received),
//!   [`handle_disconnected`](Engine::handle_disconnected),
//!   [`handle_timeout`](Engine::handle_timeout); [`close`](Engine::close) starts a clean
//!   shutdown.
//! - **Mutators**: [`task_mut`](Engine::task_mut) (read a task's stores).
//! - **Polls**: [`poll_output`](Engine::poll_output) (does the work and returns what to do),
//!   [`poll_timeout`](Engine::poll_timeout) (when to come back without I/O).
//!
//! # Driving it
//! ```text
//! loop {
//!     while let Some(out) = engine.poll_output(now) {
//!         match out {
//!             Output::Connect { connection, host, port } => /* open TCP, then Input::Connected */,
//!             Output::Transmit { connection, bytes }     => /* write all of `bytes`, in order */,
//!             Output::Close { connection }               => /* drop the socket */,
//!             Output::Event(event)                       => /* state changes, commits, errors */,
//!         }
//!     }
//!     if engine.has_pending_work() {
//!         // the batch budget ran out: let I/O in (without waiting), then poll again
//!     } else {
//!         // wait for socket data, a connect result, or engine.poll_timeout()
//!     }
//!     engine.handle_input(Input::Received { connection, bytes }, now); // or Connected, ...
//! }
//! ```
//! Call [`poll_output`](Engine::poll_output) until it returns `None` after every input:
//! inputs only record what happened, the work happens in `poll_output`. `poll_timeout`'s
//! answer changes after any input and any `poll_output`: ask it again each time round.
//!
//! # Delivery
//! At-least-once: on the commit interval the engine snapshots the tasks' committable offsets,
//! freezes their stores' writes and marks the output so far, and **goes on processing** while
//! it waits until every marked record is acknowledged; then it commits the frozen store writes
//! and only then the snapshot's offsets (a *pipelined* commit; the next one starts only after
//! it ended). Before tasks are revoked and on close it stops processing for the commit.
//!
//! Exactly-once: an interval commit is one transaction with the same snapshot; the output
//! produced while it ends is held back (bounded by the producer's buffer size) for the next
//! transaction. An offset is reported in [`Event::Committed`] only after the coordinator
//! accepted it.
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
//!
//! # Layout
//! `router/` (connections), `components.rs` (requests out, responses and events in),
//! `assignment.rs` (group events, tasks in and out), `processing.rs` (records through tasks),
//! `commit.rs` (the commit cycle), `standby.rs` (standby tasks), `task_offsets.rs` (the local
//! state's offsets for the assignor), `transaction.rs`/`fencing.rs` (exactly-once's transactions
//! and fenced producers), `internal_topics.rs` (changelogs), `deadline.rs`
//! (`poll_timeout`'s fold), `metrics.rs` (the counters and their getters), `output.rs`/`error.rs`/`shared.rs` (the types).

mod assignment;
mod commit;
mod components;
mod config;
mod deadline;
mod error;
mod fencing;
mod internal_topics;
mod metrics;
mod output;
mod processing;
mod restore;
mod router;
mod shared;
mod standby;
mod task_offsets;
#[cfg(test)]
mod tests;
mod transaction;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::StrBytes;

pub use crate::client::group::RebalanceProtocol;
pub use config::{EngineConfig, ProcessingGuarantee};
pub use deadline::TimeoutReason;
pub use error::EngineError;
pub use metrics::{
    BATCH_SIZE_BOUNDS, BatchSizes, ConnectionMetrics, EngineMetrics, LatencyStats, PartitionLag,
    ProducedRecords, RestoreProgress,
};
pub use output::{EngineState, Event, Input, Output, StandbySuspendReason};
pub use shared::ConnectionId;
pub use standby::StandbyProgress;

use self::commit::{CommitPhase, CommitReason, OutputOwner};
use self::router::{Router, RouterConfig};
use crate::client::admin::InternalTopics;
use crate::client::fetcher::Fetcher;
use crate::client::group::GroupMember;
use crate::client::metadata::Metadata;
use crate::client::producer::Producer;
use crate::record::{ProducerRecord, TopicPartition};
use crate::state::StoreFactory;
use crate::task::{ErrorPolicy, Task, TaskId};
use crate::time::{Duration, Instant};
use crate::topology::Topology;
use crate::wire::connection::ConnectionConfig;
use crate::wire::records::IsolationLevel;
use crate::wire::versions::VersionPolicy;

/// The longest transaction timeout under exactly-once (Kafka Streams' default there).
pub const EXACTLY_ONCE_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(10);

/// One stream thread: see the [module docs](self).
pub struct Engine {
    config: EngineConfig,
    topology: Arc<Topology>,
    stores: Box<dyn StoreFactory>,
    now: Instant,
    state: EngineState,
    router: Router,
    metadata: Metadata,
    metadata_generation: u64,
    fetcher: Fetcher,
    group: GroupMember,
    /// Output is tagged with its task and the commit it belongs to (see `commit`).
    producer: Producer<OutputOwner>,
    /// Creates the changelog topics of logged stores.
    internal_topics: InternalTopics,
    /// Logged stores: (sub-topology, store, changelog topic).
    changelogs: Vec<(usize, String, String)>,
    tasks: BTreeMap<TaskId, Task>,
    /// Assigned tasks whose logged stores are being restored (they join `tasks` after).
    restoring: BTreeMap<TaskId, restore::Restoring>,
    /// Standby tasks: other members' task state kept warm here (see `standby`).
    standbys: standby::Standbys,
    /// The local task offsets may have changed since the member was told (see `task_offsets`).
    task_offsets_dirty: bool,
    /// The store factory's local checkpoints (state of tasks not here, see `task_offsets`).
    local_checkpoints: task_offsets::LocalCheckpoints,
    /// Per changelog partition, the offset after the last changelog write the broker
    /// acknowledged: the checkpoint of the store's next commit.
    changelog_acked: HashMap<TopicPartition, i64>,
    /// The current assignment (tasks and input partitions): what an aborted transaction's
    /// tasks start again from.
    assignment: Option<(Vec<TaskId>, Vec<TopicPartition>)>,
    /// Exactly-once: the error that stops the engine once the open transaction is aborted.
    failing: Option<EngineError>,
    /// Exactly-once: the recent recoveries from a fenced producer.
    fencings: fencing::FencingHistory,
    /// An assignment waiting for its changelogs, or for the partition counts of the sink
    /// topics (their partitioners need them when the tasks are created): tasks and partitions.
    pending_assignment: Option<(Vec<TaskId>, Vec<TopicPartition>)>,
    /// Since when the pending assignment waits for sink topics metadata does not know.
    sink_wait_since: Option<Instant>,
    /// Task output the producer could not take yet (buffer full, partition count unknown).
    backlog: BTreeMap<TaskId, Vec<ProducerRecord>>,
    /// While a pipelined commit is under way: per task, how many records at the front of its
    /// backlog belong to that commit (they were there, or were its changelog writes, when it
    /// started).
    backlog_marked: BTreeMap<TaskId, usize>,
    /// The number of the commit the output produced now belongs to (the next commit to
    /// start): a pipelined commit N waits for the records tagged N or less only.
    output_commit: u64,
    /// Per task whose backlog the producer refused for want of room: its buffered bytes then
    /// (the backlog is not offered again before they dropped).
    backlog_full_at: BTreeMap<TaskId, usize>,
    /// Exactly-once, a pipelined commit under way: bytes (by the producer's size bound) of
    /// output held in the backlog for the next transaction since it started; processing
    /// pauses when they reach the producer's buffer size.
    held_bytes: usize,
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
    last_commit: Instant,
    /// When the commit under way started (for its latency).
    commit_started: Option<Instant>,
    revoking: Option<Vec<TaskId>>,
    /// A commit was refused because a cooperative rebalance moved the generation on: commit
    /// again as soon as the member is stable in the new one.
    commit_after_rebalance: bool,
    closing: bool,
    /// Closing, the tasks were lost while a transaction was open or ending (exactly-once):
    /// the engine leaves the group once the producer ended it, so no transaction of ours
    /// holds the last stable offsets back until the coordinator's timeout.
    leave_after_transaction: bool,
    /// Events for the adapter (transport outputs wait in the router).
    outputs: VecDeque<Output>,
    last_timeout_reason: Option<TimeoutReason>,
    /// The counters (see [`Engine::metrics`]).
    metrics: EngineMetrics,
}

impl Engine {
    /// An engine running `topology` with stores from `stores`. Nothing happens until the first
    /// [`Engine::poll_output`].
    pub fn new(
        topology: Arc<Topology>,
        mut config: EngineConfig,
        stores: Box<dyn StoreFactory>,
        now: Instant,
    ) -> Result<Self, EngineError> {
        let bootstrap = config.bootstrap_addresses().map_err(EngineError::Config)?;
        if bootstrap.is_empty() {
            return Err(EngineError::Config("no bootstrap server".into()));
        }
        if config.application_id.is_empty() {
            return Err(EngineError::Config("the application id is empty".into()));
        }
        config
            .check_group_instance_id()
            .map_err(EngineError::Config)?;
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
        let router = Router::new(
            RouterConfig {
                connection: ConnectionConfig {
                    client_id: Some(StrBytes::from_string(config.client_id.clone())),
                    policy: version_policy(&config),
                    sasl: config.sasl.clone(),
                    ..ConnectionConfig::default()
                },
                request_timeout: config.request_timeout,
                // The coordinator holds a JoinGroup until every member rejoined, up to the
                // rebalance timeout: give it that long and some (as Kafka's clients do).
                join_timeout: config
                    .request_timeout
                    .max(config.rebalance_timeout + Duration::from_secs(5)),
                reconnect_backoff: config.reconnect_backoff,
                reconnect_backoff_max: config.reconnect_backoff_max,
                random_seed: config.random_seed,
            },
            metadata
                .brokers()
                .iter()
                .map(|(&id, addr)| (id, addr.host.clone(), addr.port)),
            now,
        );
        let changelogs = internal_topics::changelogs_of(&topology, &config.application_id);
        let stateful: BTreeSet<usize> = changelogs.iter().map(|(sub, _, _)| *sub).collect();
        let group = GroupMember::new(
            config.group_config(stateful.into_iter().collect()),
            topology.subtopologies().to_vec(),
            now,
        );
        let mut fetch = config.fetch.clone();
        let mut producer_config = config.producer.clone();
        if config.processing_guarantee == ProcessingGuarantee::ExactlyOnce {
            // Aborted input and changelog records are never processed or restored.
            fetch.isolation = IsolationLevel::ReadCommitted;
            // As Kafka Streams does under exactly-once: a transaction a crashed instance
            // left open holds read_committed readers (and the restores of its changelogs)
            // only this long, unless its successor aborts it sooner.
            producer_config.transaction_timeout = producer_config
                .transaction_timeout
                .min(EXACTLY_ONCE_TRANSACTION_TIMEOUT);
            // A transaction lives one commit interval: one longer than the timeout would be
            // aborted by the coordinator (and this producer fenced) every time.
            let longest =
                Duration::from_millis(producer_config.transaction_timeout.as_millis() / 2);
            if config.commit_interval > longest {
                tracing::info!(commit_interval = %config.commit_interval, %longest, "exactly-once: commit interval capped at half the transaction timeout");
                config.commit_interval = longest;
            }
            // Without one from the caller (io-common keeps one per state directory, stable
            // across restarts): stable for this engine's life, distinct between threads and
            // instances (the seed differs). Fencing of a zombie comes from the group
            // generation its TxnOffsetCommit carries (KIP-447), not from the id.
            producer_config.transactional_id.get_or_insert_with(|| {
                format!(
                    "{}-{}-{:016x}",
                    config.application_id, config.client_id, config.random_seed
                )
            });
        }
        let fetcher = Fetcher::new(fetch);
        let producer = Producer::new(producer_config, now);
        let internal_topics = InternalTopics::new(config.internal_topics_config(), now);
        let mut engine = Self {
            config,
            topology,
            stores,
            now,
            state: EngineState::Created,
            router,
            metadata,
            metadata_generation: u64::MAX,
            fetcher,
            group,
            producer,
            internal_topics,
            changelogs,
            tasks: BTreeMap::new(),
            restoring: BTreeMap::new(),
            standbys: standby::Standbys::default(),
            task_offsets_dirty: true,
            local_checkpoints: task_offsets::LocalCheckpoints::default(),
            changelog_acked: HashMap::new(),
            assignment: None,
            failing: None,
            fencings: fencing::FencingHistory::default(),
            pending_assignment: None,
            sink_wait_since: None,
            backlog: BTreeMap::new(),
            backlog_marked: BTreeMap::new(),
            output_commit: 0,
            backlog_full_at: BTreeMap::new(),
            held_bytes: 0,
            subtopology_of,
            committed: BTreeMap::new(),
            awaiting_committed: BTreeSet::new(),
            commit: CommitPhase::Idle,
            commit_reason: None,
            last_commit: now,
            commit_started: None,
            revoking: None,
            commit_after_rebalance: false,
            closing: false,
            leave_after_transaction: false,
            outputs: VecDeque::new(),
            last_timeout_reason: None,
            metrics: EngineMetrics::default(),
        };
        // The state the store factory holds goes into the member's first subscription.
        engine.report_task_offsets();
        Ok(engine)
    }

    // ---- getters ---------------------------------------------------------------------------

    /// The engine's state.
    pub fn state(&self) -> EngineState {
        self.state
    }

    /// The tasks running here.
    pub fn tasks(&self) -> impl Iterator<Item = &Task> {
        self.tasks.values()
    }

    /// The assigned tasks whose logged stores are still being restored from their changelogs
    /// (they are not in [`Engine::tasks`] until restored).
    pub fn restoring(&self) -> impl Iterator<Item = TaskId> + '_ {
        self.restoring_tasks()
    }

    /// The rebalance protocol the group coordinator selected for the current (or last)
    /// generation: cooperative only when every member offers it (see
    /// [`EngineConfig::rebalance_protocol`]).
    pub fn rebalance_protocol(&self) -> RebalanceProtocol {
        self.group.rebalance_protocol()
    }

    /// The offsets this engine committed, per input partition.
    pub fn committed_offsets(&self) -> &BTreeMap<TopicPartition, i64> {
        &self.committed
    }

    /// Why the last [`Engine::poll_timeout`] answered what it did (`None` when it answered
    /// `None`).
    pub fn last_timeout_reason(&self) -> Option<TimeoutReason> {
        self.last_timeout_reason
    }

    /// Whether [`Engine::poll_output`] stopped with work left (its batch budget,
    /// [`EngineConfig::max_batches_per_poll`], ran out, so I/O gets a turn): the adapter takes
    /// whatever input is ready, without waiting, and polls again.
    pub fn has_pending_work(&self) -> bool {
        // Exactly when `run_tasks` would process: otherwise an adapter would spin.
        self.may_process()
            && self
                .tasks
                .iter()
                .any(|(id, t)| t.queued_total() > 0 && self.task_may_run(*id))
    }

    // ---- inputs ----------------------------------------------------------------------------

    /// Hands the engine one input (see [`Input`]); the work it causes happens in
    /// [`Engine::poll_output`].
    pub fn handle_input(&mut self, input: Input, now: Instant) {
        self.advance_time(now);
        match input {
            Input::Connected { connection } => self.router.handle_connected(connection, now),
            Input::Received { connection, bytes } => {
                self.router.handle_received_chunk(connection, bytes, now)
            }
            Input::Disconnected { connection } => self.router.handle_disconnected(connection, now),
            Input::Timeout => self.router.handle_timeout(now),
            Input::Close => self.start_close(),
        }
    }

    /// [`Input::Timeout`]: time passed (run timers: heartbeats, linger, retries, request
    /// timeouts, commits).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.handle_input(Input::Timeout, now);
    }

    /// [`Input::Connected`]: the socket `connection` is open.
    pub fn handle_connected(&mut self, connection: ConnectionId, now: Instant) {
        self.handle_input(Input::Connected { connection }, now);
    }

    /// [`Input::Disconnected`]: the socket closed or could not be opened.
    pub fn handle_disconnected(&mut self, connection: ConnectionId, now: Instant) {
        self.handle_input(Input::Disconnected { connection }, now);
    }

    /// [`Input::Received`] without copying: bytes read from the socket, in any chunking.
    pub fn handle_received(&mut self, connection: ConnectionId, bytes: &[u8], now: Instant) {
        self.advance_time(now);
        self.router.handle_received(connection, bytes, now);
    }

    /// [`Input::Close`]: starts a clean shutdown: commit acknowledged output, close tasks,
    /// leave the group (a static member sends no LeaveGroup, see
    /// [`EngineConfig::group_instance_id`]). The engine reaches [`EngineState::NotRunning`] through
    /// [`Engine::poll_output`].
    pub fn close(&mut self, now: Instant) {
        self.handle_input(Input::Close, now);
    }

    // ---- mutators --------------------------------------------------------------------------

    /// Mutable access to a running task (e.g. to read its stores).
    pub fn task_mut(&mut self, id: TaskId) -> Option<&mut Task> {
        self.tasks.get_mut(&id)
    }

    // ---- polls -----------------------------------------------------------------------------

    /// The next thing to do. Call until `None`, then wait for I/O or [`Engine::poll_timeout`]
    /// (or, when [`Engine::has_pending_work`], only let ready I/O in).
    pub fn poll_output(&mut self, now: Instant) -> Option<Output> {
        self.advance_time(now);
        if self.outputs.is_empty() && self.router.transport_len() == 0 {
            self.drive();
            self.sync_component_metrics();
        }
        self.outputs
            .pop_front()
            .or_else(|| self.router.poll_transport())
    }

    /// When [`Engine::handle_timeout`] must be called at the latest (`None`: only on I/O).
    /// The earliest deadline of the sub-systems; [`Engine::last_timeout_reason`] says whose.
    /// It does not say whether work is pending now: see [`Engine::has_pending_work`].
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        let deadline = self.next_deadline();
        self.last_timeout_reason = deadline.map(|d| d.reason);
        deadline.map(|d| d.at)
    }

    // ---- internals -------------------------------------------------------------------------

    fn advance_time(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }

    fn start_close(&mut self) {
        if self.stopped() || self.closing {
            return;
        }
        self.closing = true;
        self.set_state(EngineState::PendingShutdown);
        self.commit_reason = Some(CommitReason::Close);
        if let Err(error) = self.close_standbys() {
            self.fail(error);
            return;
        }
        // Nothing fetched from now on would be processed: stop fetching, so no long-poll Fetch
        // delays the final commit and the LeaveGroup on a shared connection.
        for tp in self.fetcher.assigned().cloned().collect::<Vec<_>>() {
            self.fetcher.set_paused(&tp, true);
        }
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
        self.metrics.warnings_total += 1;
        self.outputs.push_back(Output::Event(Event::Warning(error)));
    }

    fn fail(&mut self, error: EngineError) {
        if self.state == EngineState::Error {
            return;
        }
        let Err(error) = self.abort_before_failing(error) else {
            return;
        };
        tracing::error!(%error, "kstreams engine stopped");
        self.outputs.push_back(Output::Event(Event::Failed(error)));
        self.set_state(EngineState::Error);
        for task in self.tasks.values_mut() {
            task.rollback_stores();
        }
        self.router.close_all();
    }

    fn stopped(&self) -> bool {
        matches!(self.state, EngineState::NotRunning | EngineState::Error)
    }

    /// Whether tasks may run batches now: not while a stop-and-wait commit, a revocation or
    /// the close waits for the output so far, nor while a failure waits for its transaction's
    /// abort. A pipelined interval commit lets them run (see `commit`).
    fn may_process(&self) -> bool {
        !self.stopped()
            && self.failing.is_none()
            && !self.closing
            && (matches!(self.commit, CommitPhase::Idle) || self.commit.is_pipelined())
            && self.revoking.is_none()
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
            let mut progress = self.dispatch_routed();
            if self.stopped() {
                return;
            }
            progress |= self.poll_components();
            progress |= self.handle_component_events();
            progress |= self.router.flush(self.group.coordinator());
            if self.feed_tasks() {
                progress = true;
                // Ask for the next records before processing these, so that the fetch round
                // trip overlaps the processing: hand a new request to the adapter first.
                let queued = self.router.transport_len();
                self.poll_components();
                self.router.flush(self.group.coordinator());
                self.router.transmit();
                if self.router.transport_len() > queued {
                    return;
                }
            }
            let state_work = self
                .drive_restore()
                .and_then(|restored| Ok(self.drive_standbys()? || restored));
            match state_work {
                Ok(worked) => progress |= worked,
                Err(error) => {
                    self.fail(error);
                    return;
                }
            }
            progress |= self.run_tasks();
            progress |= self.drive_commit();
            self.report_task_offsets();
            progress |= self.router.release_bootstrap_connections();
            progress |= self.router.transmit();
            if !progress {
                break;
            }
        }
    }
}

/// The versions every connection negotiates with: the APIs the engine needs, capped at the
/// name-based shapes (later Fetch, Produce and Metadata versions address topics by id) and
/// at the user's caps.
fn version_policy(config: &EngineConfig) -> VersionPolicy {
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
    let mut caps: Vec<(ApiKey, i16)> = vec![
        (ApiKey::Fetch, 12),
        (ApiKey::Produce, 12),
        (ApiKey::Metadata, 12),
        // OffsetFetch and OffsetCommit v10 address topics by id (KIP-848); InitProducerId
        // v6 (KIP-939) is newer than kafka-protocol 0.18 knows. crabka-broker 0.3.0
        // advertises all three.
        (ApiKey::OffsetFetch, 9),
        (ApiKey::OffsetCommit, 9),
        (ApiKey::InitProducerId, 5),
    ];
    caps.extend(
        config
            .api_version_caps
            .iter()
            .map(|(&api, &max)| (api, max)),
    );
    // Applying a cap twice keeps the lower one.
    caps.into_iter()
        .fold(policy, |policy, (api, max)| policy.cap(api, max))
}
