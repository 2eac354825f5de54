//! The application's state ([`StreamsState`]) and how it follows from its stream threads'
//! states ([`aggregate`]); what a stream thread reports of itself ([`ThreadMetadata`]).
//!
//! A leaf module: it imports nothing else of this crate.

use kstreams_core::engine::{EngineState, Event, StandbySuspendReason};
use kstreams_core::record::TopicPartition;
use kstreams_core::task::TaskId;
use kstreams_core::time::Duration;

/// The lifecycle of a `KafkaStreams` instance, as Kafka Streams' `KafkaStreams.State`.
///
/// ```text
/// Created ─start→ Rebalancing ⇄ Running
///    │                 │            │
///    │                 └──close─────┴→ PendingShutdown → NotRunning
///    └──close→ NotRunning
/// any engine failed → PendingError (the other engines close) → Error
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum StreamsState {
    /// Built, not started.
    Created = 0,
    /// Some engine is joining the group or waiting for an assignment.
    Rebalancing = 1,
    /// Every engine processes its tasks.
    Running = 2,
    /// `close()` was called; engines are committing and leaving the group.
    PendingShutdown = 3,
    /// Every engine stopped cleanly (or the instance was closed before it started).
    NotRunning = 4,
    /// An engine failed; the others are shutting down.
    PendingError = 5,
    /// An engine failed and every engine stopped.
    Error = 6,
}

impl StreamsState {
    pub(crate) fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Created,
            1 => Self::Rebalancing,
            2 => Self::Running,
            3 => Self::PendingShutdown,
            4 => Self::NotRunning,
            5 => Self::PendingError,
            _ => Self::Error,
        }
    }

    /// `Running` or `Rebalancing` (Kafka Streams' `isRunningOrRebalancing`).
    pub fn is_running_or_rebalancing(self) -> bool {
        matches!(self, Self::Running | Self::Rebalancing)
    }

    /// `NotRunning` or `Error`: nothing runs and nothing will.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::NotRunning | Self::Error)
    }
}

/// What one stream thread reports, for [`aggregate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadState {
    /// The engine's state.
    pub engine: EngineState,
    /// The thread ended (its engine stopped, or the thread died).
    pub finished: bool,
}

/// The application state from its threads' states, like Kafka Streams derives it:
/// not started → `Created` (`NotRunning` once closed); any failed engine → `PendingError`
/// until every thread ended, then `Error`; every thread ended → `NotRunning`; a close in
/// progress → `PendingShutdown`; any engine rebalancing (or not yet polled) → `Rebalancing`;
/// every engine running → `Running`.
pub fn aggregate(threads: &[ThreadState], started: bool, closing: bool) -> StreamsState {
    if !started {
        return if closing {
            StreamsState::NotRunning
        } else {
            StreamsState::Created
        };
    }
    let all_finished = threads.iter().all(|t| t.finished);
    if threads.iter().any(|t| t.engine == EngineState::Error) {
        return if all_finished {
            StreamsState::Error
        } else {
            StreamsState::PendingError
        };
    }
    if all_finished {
        return StreamsState::NotRunning;
    }
    if closing {
        return StreamsState::PendingShutdown;
    }
    if threads
        .iter()
        .any(|t| matches!(t.engine, EngineState::Created | EngineState::Rebalancing))
    {
        return StreamsState::Rebalancing;
    }
    if threads.iter().all(|t| t.engine == EngineState::Running) {
        return StreamsState::Running;
    }
    StreamsState::PendingShutdown
}

/// What a stream thread is doing, as Kafka Streams' `ThreadMetadata`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadMetadata {
    /// `<client_id>-StreamThread-<n>`.
    pub thread_name: String,
    /// Its engine's state.
    pub state: EngineState,
    /// The tasks assigned to it, sorted (restoring ones included).
    pub active_tasks: Vec<TaskId>,
    /// The assigned tasks whose stores are still being restored from their changelogs (they
    /// process nothing yet), sorted.
    pub restoring_tasks: Vec<TaskId>,
    /// The standby tasks it keeps warm (copies of other instances' task state, following
    /// their changelogs; see `EngineConfig::num_standby_replicas`), sorted.
    pub standby_tasks: Vec<TaskId>,
}

/// A state-change listener: `(new, old)`, as Kafka Streams' `StateListener.onChange`.
pub type StateListener = Box<dyn FnMut(StreamsState, StreamsState) + Send>;

/// An engine-event listener: `(thread_name, event)`; see `KafkaStreams::set_event_listener`.
pub type EventListener = Box<dyn FnMut(&str, &Event) + Send>;

/// Told about state restores, as Kafka Streams' `StateRestoreListener`: see
/// `KafkaStreams::set_restore_listener`. Every method has an empty default.
pub trait StateRestoreListener: Send {
    /// A store of `task` starts restoring from `changelog` at `checkpoint` (`None`: from the
    /// changelog's start).
    fn on_restore_start(
        &mut self,
        task: TaskId,
        store: &str,
        changelog: &TopicPartition,
        checkpoint: Option<i64>,
    ) {
        let _ = (task, store, changelog, checkpoint);
    }

    /// One batch of `records` (`bytes` of keys and values) was written into the store, which
    /// is now restored up to changelog offset `position` (exclusive).
    fn on_batch_restored(
        &mut self,
        task: TaskId,
        store: &str,
        records: usize,
        bytes: usize,
        position: i64,
    ) {
        let _ = (task, store, records, bytes, position);
    }

    /// The store reached its changelog's end, `position` (exclusive; its new checkpoint),
    /// after `records` records (`bytes` bytes of keys and values) in `duration`.
    fn on_restore_end(
        &mut self,
        task: TaskId,
        store: &str,
        records: u64,
        bytes: u64,
        position: i64,
        duration: Duration,
    ) {
        let _ = (task, store, records, bytes, position, duration);
    }
}

/// Told how standby tasks follow their changelogs, as Kafka Streams' `StandbyUpdateListener`
/// (KIP-988): see `KafkaStreams::set_standby_listener`. Every method has an empty default.
pub trait StandbyUpdateListener: Send {
    /// A store of standby `task` starts following `changelog` from `checkpoint` (`None`: from
    /// the changelog's start, the store empty).
    fn on_update_start(
        &mut self,
        task: TaskId,
        store: &str,
        changelog: &TopicPartition,
        checkpoint: Option<i64>,
    ) {
        let _ = (task, store, changelog, checkpoint);
    }

    /// A batch of `records` was written into the standby's store, now up to changelog offset
    /// `position` (exclusive, its checkpoint); `end` is the changelog's end as last fetched.
    fn on_batch_loaded(
        &mut self,
        task: TaskId,
        store: &str,
        changelog: &TopicPartition,
        records: usize,
        position: i64,
        end: Option<i64>,
    ) {
        let _ = (task, store, changelog, records, position, end);
    }

    /// The standby's store stopped following its changelog at `position` (its checkpoint),
    /// for `reason`: promoted to an active task here, moved away, or the instance closed.
    fn on_update_suspended(
        &mut self,
        task: TaskId,
        store: &str,
        changelog: &TopicPartition,
        position: Option<i64>,
        end: Option<i64>,
        reason: StandbySuspendReason,
    ) {
        let _ = (task, store, changelog, position, end, reason);
    }
}

/// Hands a standby event to `listener`; other events are not its business.
pub(crate) fn tell_standby_listener(listener: &mut dyn StandbyUpdateListener, event: &Event) {
    match event {
        Event::StandbyStarted {
            task,
            store,
            changelog,
            checkpoint,
        } => listener.on_update_start(*task, store, changelog, *checkpoint),
        Event::StandbyBatch {
            task,
            store,
            changelog,
            records,
            position,
            end,
            ..
        } => listener.on_batch_loaded(*task, store, changelog, *records, *position, *end),
        Event::StandbySuspended {
            task,
            store,
            changelog,
            position,
            end,
            reason,
        } => listener.on_update_suspended(*task, store, changelog, *position, *end, *reason),
        _ => {}
    }
}

/// Hands a restore event to `listener`; other events are not its business.
pub(crate) fn tell_restore_listener(listener: &mut dyn StateRestoreListener, event: &Event) {
    match event {
        Event::RestoreStarted {
            task,
            store,
            changelog,
            checkpoint,
        } => listener.on_restore_start(*task, store, changelog, *checkpoint),
        Event::RestoreBatch {
            task,
            store,
            records,
            bytes,
            position,
        } => listener.on_batch_restored(*task, store, *records, *bytes, *position),
        Event::RestoreEnded {
            task,
            store,
            records,
            bytes,
            position,
            duration,
        } => listener.on_restore_end(*task, store, *records, *bytes, *position, *duration),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use EngineState as E;
    use StreamsState as S;

    fn t(engine: EngineState, finished: bool) -> ThreadState {
        ThreadState { engine, finished }
    }

    #[test]
    fn aggregate_follows_kafka_streams() {
        assert_eq!(aggregate(&[], false, false), S::Created);
        assert_eq!(aggregate(&[], false, true), S::NotRunning);
        let created = [t(E::Created, false), t(E::Created, false)];
        assert_eq!(aggregate(&created, true, false), S::Rebalancing);
        let mixed = [t(E::Running, false), t(E::Rebalancing, false)];
        assert_eq!(aggregate(&mixed, true, false), S::Rebalancing);
        let running = [t(E::Running, false), t(E::Running, false)];
        assert_eq!(aggregate(&running, true, false), S::Running);
        assert_eq!(aggregate(&running, true, true), S::PendingShutdown);
        let half_closed = [t(E::NotRunning, true), t(E::PendingShutdown, false)];
        assert_eq!(aggregate(&half_closed, true, true), S::PendingShutdown);
        let closed = [t(E::NotRunning, true), t(E::NotRunning, true)];
        assert_eq!(aggregate(&closed, true, true), S::NotRunning);
        let failing = [t(E::Error, true), t(E::Running, false)];
        assert_eq!(aggregate(&failing, true, false), S::PendingError);
        let failed = [t(E::Error, true), t(E::NotRunning, true)];
        assert_eq!(aggregate(&failed, true, true), S::Error);
    }
}
