//! What goes into and comes out of an [`Engine`](super::Engine): [`Input`], [`Output`],
//! [`Event`] and the [`EngineState`] lifecycle.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::error::EngineError;
use super::shared::ConnectionId;
use crate::record::TopicPartition;
use crate::task::TaskId;
use crate::time::Duration;

/// Something the adapter reports to the engine: see
/// [`Engine::handle_input`](super::Engine::handle_input). A run of inputs with the times they
/// were handed in replays exactly: the engine is deterministic in them (connection ids are
/// issued in order, and randomness comes from the configured seed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The socket of [`Output::Connect`] opened.
    Connected {
        /// The socket.
        connection: ConnectionId,
    },
    /// Bytes were read from a socket, in any chunking.
    Received {
        /// The socket.
        connection: ConnectionId,
        /// What was read.
        bytes: Bytes,
    },
    /// A socket closed, or could not be opened.
    Disconnected {
        /// The socket.
        connection: ConnectionId,
    },
    /// Time passed: the deadline [`Engine::poll_timeout`](super::Engine::poll_timeout) gave,
    /// or any time.
    Timeout,
    /// Start a clean shutdown: commit acknowledged output, close tasks, leave the group (a
    /// static member stays in it until its session times out).
    Close,
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
    /// Open a TCP connection to `host:port`, then report [`Input::Connected`] (or
    /// [`Input::Disconnected`] if it fails) for `connection`.
    Connect {
        /// The new socket's id (never used before).
        connection: ConnectionId,
        /// Host name.
        host: String,
        /// Port.
        port: i32,
    },
    /// Write all of `bytes` (whole frames) to the socket, in order.
    Transmit {
        /// The socket.
        connection: ConnectionId,
        /// Frames to write.
        bytes: Bytes,
    },
    /// Close the socket; report nothing more about it (reports that cross are ignored).
    Close {
        /// The socket.
        connection: ConnectionId,
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
    /// The member synced generation `generation` of the group (the assignment follows as
    /// [`TasksAssigned`](Self::TasksAssigned) once its tasks can start). A static member
    /// restarted within the session timeout syncs the generation it left: no rebalance.
    GroupSynced {
        /// The group generation.
        generation: i32,
        /// The member id the coordinator gave this member.
        member_id: String,
    },
    /// These tasks now run here.
    TasksAssigned(Vec<TaskId>),
    /// These tasks were committed and closed for a rebalance.
    TasksRevoked(Vec<TaskId>),
    /// These tasks were closed without a commit (membership lost).
    TasksLost(Vec<TaskId>),
    /// The coordinator accepted these offsets; their output was acknowledged before.
    Committed(BTreeMap<TopicPartition, i64>),
    /// A store of an assigned task starts restoring from its changelog (the task processes
    /// nothing until all its logged stores are restored).
    RestoreStarted {
        /// The task.
        task: TaskId,
        /// The store.
        store: String,
        /// Its changelog partition.
        changelog: TopicPartition,
        /// The checkpoint restore starts from (`None`: from the changelog's start).
        checkpoint: Option<i64>,
    },
    /// One batch of a changelog was written into the store (or, when the store started empty,
    /// staged as a sorted run that the end of the restore merges in: a bulk restore).
    RestoreBatch {
        /// The task.
        task: TaskId,
        /// The store.
        store: String,
        /// Records in this batch.
        records: usize,
        /// Key and value bytes in this batch.
        bytes: usize,
        /// The changelog offset the store is restored (or staged) up to (exclusive).
        position: i64,
    },
    /// A store reached its changelog's end.
    RestoreEnded {
        /// The task.
        task: TaskId,
        /// The store.
        store: String,
        /// Records restored in all.
        records: u64,
        /// Key and value bytes restored in all.
        bytes: u64,
        /// The changelog offset reached (exclusive): the store's new checkpoint.
        position: i64,
        /// How long it took.
        duration: Duration,
    },
    /// A store of a standby task starts following its changelog (Kafka Streams'
    /// `StandbyUpdateListener.onUpdateStart`, KIP-988): the task's state is kept warm here for
    /// a faster failover; it processes nothing.
    StandbyStarted {
        /// The task.
        task: TaskId,
        /// The store.
        store: String,
        /// Its changelog partition.
        changelog: TopicPartition,
        /// The checkpoint it starts from (`None`: from the changelog's start, the store
        /// empty).
        checkpoint: Option<i64>,
    },
    /// A batch of a changelog was written into a standby's store with its checkpoint
    /// (`onBatchLoaded`).
    StandbyBatch {
        /// The task.
        task: TaskId,
        /// The store.
        store: String,
        /// Its changelog partition.
        changelog: TopicPartition,
        /// Records in this batch.
        records: usize,
        /// Key and value bytes in this batch.
        bytes: usize,
        /// The changelog offset the store is now up to (exclusive): its checkpoint.
        position: i64,
        /// The changelog's end as last fetched (the high watermark; the last stable offset
        /// under exactly-once): `end - position` is the standby's lag.
        end: Option<i64>,
    },
    /// A standby's store stopped following its changelog (`onUpdateSuspended`).
    StandbySuspended {
        /// The task.
        task: TaskId,
        /// The store.
        store: String,
        /// Its changelog partition.
        changelog: TopicPartition,
        /// The store's checkpoint then (`None`: it has none).
        position: Option<i64>,
        /// The changelog's end as last fetched.
        end: Option<i64>,
        /// Why.
        reason: StandbySuspendReason,
    },
    /// A problem the engine recovers from (retries, rejoins); for logs and metrics.
    Warning(EngineError),
    /// The engine stopped: [`EngineState::Error`].
    Failed(EngineError),
}

/// Why a standby task stopped following its changelogs ([`Event::StandbySuspended`], as
/// Kafka Streams' `StandbyUpdateListener.SuspendReason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StandbySuspendReason {
    /// It became an active task here: its stores, open, restore only the changelog's tail
    /// after their checkpoint.
    Promoted,
    /// The assignment no longer gives it to this engine.
    Migrated,
    /// The engine closes (or stopped).
    Closed,
}
