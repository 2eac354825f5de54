//! The application's state ([`StreamsState`]), aggregated from its engines' states, and the
//! status every stream thread reports into ([`Shared`]).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};

use event_listener::Event as Notify;
use kstreams_core::engine::{EngineState, Event};
use kstreams_core::task::TaskId;

use crate::driver::Input;
use crate::streams::StreamsError;

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
    fn from_u8(v: u8) -> Self {
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
    /// The tasks assigned to it, sorted.
    pub active_tasks: Vec<TaskId>,
}

/// A state-change listener: `(new, old)`, as Kafka Streams' `StateListener.onChange`.
pub type StateListener = Box<dyn FnMut(StreamsState, StreamsState) + Send>;

struct Thread {
    name: String,
    state: EngineState,
    finished: bool,
    tasks: BTreeSet<TaskId>,
}

struct Inner {
    threads: Vec<Thread>,
    started: bool,
    closing: bool,
    state: StreamsState,
    failure: Option<StreamsError>,
    commands: Vec<async_channel::Sender<Input>>,
    /// State changes not yet delivered to the listener, oldest first: `(new, old)`.
    undelivered: Vec<(StreamsState, StreamsState)>,
}

/// The status of an instance, shared by its handles and stream threads.
pub(crate) struct Shared {
    inner: Mutex<Inner>,
    /// `Inner::state` as published: set after the listener saw the change (see `deliver`);
    /// read without a lock (e.g. from the listener).
    state: AtomicU8,
    changed: Notify,
    /// Called outside `inner`'s lock (so it may call `close()` or read the state); whoever
    /// holds this lock delivers every undelivered change in order.
    listener: Mutex<Option<StateListener>>,
}

impl Shared {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner {
                threads: Vec::new(),
                started: false,
                closing: false,
                state: StreamsState::Created,
                failure: None,
                commands: Vec::new(),
                undelivered: Vec::new(),
            }),
            state: AtomicU8::new(StreamsState::Created as u8),
            changed: Notify::new(),
            listener: Mutex::new(None),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn state(&self) -> StreamsState {
        StreamsState::from_u8(self.state.load(Ordering::Acquire))
    }

    pub(crate) fn set_listener(&self, listener: StateListener) {
        *self.listener.lock().unwrap_or_else(PoisonError::into_inner) = Some(listener);
    }

    /// Records the threads about to start; `false` if the instance was closed or started.
    pub(crate) fn start(
        &self,
        threads: Vec<(String, async_channel::Sender<Input>)>,
    ) -> Result<(), StreamsState> {
        let mut inner = self.lock();
        if inner.started || inner.closing {
            return Err(inner.state);
        }
        inner.started = true;
        for (name, commands) in threads {
            inner.threads.push(Thread {
                name,
                state: EngineState::Created,
                finished: false,
                tasks: BTreeSet::new(),
            });
            inner.commands.push(commands);
        }
        self.update(&mut inner);
        drop(inner);
        self.deliver();
        Ok(())
    }

    /// Asks every engine to close (commit, leave the group).
    pub(crate) fn request_close(&self) {
        let mut inner = self.lock();
        if !inner.closing {
            inner.closing = true;
            for commands in &inner.commands {
                // A thread that already ended dropped its receiver: nothing to close.
                let _ = commands.try_send(Input::Close);
            }
            self.update(&mut inner);
        }
        drop(inner);
        self.deliver();
    }

    /// An engine event of thread `index`.
    pub(crate) fn on_event(&self, index: usize, event: Event) {
        let mut inner = self.lock();
        match event {
            Event::StateChanged { to, .. } => {
                if let Some(t) = inner.threads.get_mut(index) {
                    t.state = to;
                }
            }
            Event::TasksAssigned(ids) => {
                if let Some(t) = inner.threads.get_mut(index) {
                    t.tasks.extend(ids);
                }
            }
            Event::TasksRevoked(ids) | Event::TasksLost(ids) => {
                if let Some(t) = inner.threads.get_mut(index) {
                    for id in ids {
                        t.tasks.remove(&id);
                    }
                }
            }
            Event::Failed(error) => {
                let thread = thread_name(&inner, index);
                tracing::error!(%thread, %error, "stream thread failed; closing the others");
                if inner.failure.is_none() {
                    inner.failure = Some(StreamsError::Engine {
                        thread,
                        error: Arc::new(error),
                    });
                }
                // Like Kafka Streams' default SHUTDOWN_CLIENT: one failed thread stops all.
                for commands in &inner.commands {
                    let _ = commands.try_send(Input::Close);
                }
            }
            Event::Committed(_) | Event::Warning(_) => {}
        }
        self.update(&mut inner);
        drop(inner);
        self.deliver();
    }

    /// Thread `index` ended, with `failure` if it could not run or died.
    pub(crate) fn finish(&self, index: usize, failure: Option<StreamsError>) {
        let mut inner = self.lock();
        if let Some(failure) = failure {
            if let Some(t) = inner.threads.get_mut(index) {
                t.state = EngineState::Error;
            }
            if inner.failure.is_none() {
                inner.failure = Some(failure);
            }
            for commands in &inner.commands {
                let _ = commands.try_send(Input::Close);
            }
        }
        if let Some(t) = inner.threads.get_mut(index) {
            t.finished = true;
            t.tasks.clear();
        }
        self.update(&mut inner);
        drop(inner);
        self.deliver();
    }

    fn update(&self, inner: &mut Inner) {
        let threads: Vec<ThreadState> = inner
            .threads
            .iter()
            .map(|t| ThreadState {
                engine: t.state,
                finished: t.finished,
            })
            .collect();
        let new = aggregate(&threads, inner.started, inner.closing);
        let old = inner.state;
        if new != old {
            inner.state = new;
            tracing::info!(?old, ?new, "kstreams state changed");
            inner.undelivered.push((new, old));
        }
    }

    /// Delivers undelivered state changes to the listener, in order, without holding `inner`.
    /// If another caller (or this thread, re-entering from the listener) is delivering, it
    /// picks the new changes up: it re-checks after releasing the listener lock.
    fn deliver(&self) {
        loop {
            let mut listener = match self.listener.try_lock() {
                Ok(guard) => guard,
                // A listener that panicked once still gets later changes.
                Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => return,
            };
            loop {
                let batch = std::mem::take(&mut self.lock().undelivered);
                if batch.is_empty() {
                    break;
                }
                for (new, old) in batch {
                    if let Some(listener) = listener.as_mut() {
                        listener(new, old);
                    }
                    // Published (to `state()` and waiters) only after the listener saw it, so
                    // whoever awaits a state also finds the listener's record complete.
                    self.state.store(new as u8, Ordering::Release);
                }
                self.changed.notify(usize::MAX);
            }
            drop(listener);
            if self.lock().undelivered.is_empty() {
                return;
            }
        }
    }

    pub(crate) fn threads(&self) -> Vec<ThreadMetadata> {
        self.lock()
            .threads
            .iter()
            .map(|t| ThreadMetadata {
                thread_name: t.name.clone(),
                state: t.state,
                active_tasks: t.tasks.iter().copied().collect(),
            })
            .collect()
    }

    /// Waits until `done(state)` holds; returns that state.
    pub(crate) async fn wait_for(
        &self,
        mut done: impl FnMut(StreamsState) -> bool,
    ) -> StreamsState {
        loop {
            let listener = self.changed.listen();
            let state = self.state();
            if done(state) {
                return state;
            }
            listener.await;
        }
    }

    /// The outcome once terminal: the first failure, if any.
    pub(crate) fn outcome(&self) -> Result<(), StreamsError> {
        match &self.lock().failure {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }
}

fn thread_name(inner: &Inner, index: usize) -> String {
    inner
        .threads
        .get(index)
        .map(|t| t.name.clone())
        .unwrap_or_else(|| format!("StreamThread-{}", index + 1))
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
    fn a_listener_may_close_the_instance_it_listens_to() {
        let shared = Shared::new();
        let weak = Arc::downgrade(&shared);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        shared.set_listener(Box::new(move |new, old| {
            log.lock().unwrap().push((old, new));
            if new == S::Running
                && let Some(shared) = weak.upgrade()
            {
                shared.request_close(); // re-enters: delivered after this call returns
            }
        }));
        let (tx, _rx) = async_channel::unbounded();
        shared.start(vec![("t-1".into(), tx)]).unwrap();
        shared.on_event(
            0,
            Event::StateChanged {
                from: E::Created,
                to: E::Running,
            },
        );
        assert_eq!(shared.state(), S::PendingShutdown);
        assert_eq!(
            *seen.lock().unwrap(),
            vec![
                (S::Created, S::Rebalancing),
                (S::Rebalancing, S::Running),
                (S::Running, S::PendingShutdown),
            ]
        );
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

    #[test]
    fn listener_sees_every_change_and_waiters_wake() {
        let shared = Shared::new();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        shared.set_listener(Box::new(move |new, old| {
            log.lock().unwrap().push((old, new))
        }));
        let (tx, rx) = async_channel::unbounded();
        shared.start(vec![("t-1".into(), tx)]).unwrap();
        shared.on_event(
            0,
            Event::StateChanged {
                from: E::Created,
                to: E::Rebalancing,
            },
        );
        shared.on_event(
            0,
            Event::TasksAssigned(vec![TaskId {
                subtopology: 0,
                partition: 1,
            }]),
        );
        shared.on_event(
            0,
            Event::StateChanged {
                from: E::Rebalancing,
                to: E::Running,
            },
        );
        assert_eq!(shared.state(), S::Running);
        assert_eq!(shared.threads()[0].active_tasks.len(), 1);
        shared.request_close();
        assert!(matches!(rx.try_recv(), Ok(Input::Close)));
        shared.on_event(
            0,
            Event::StateChanged {
                from: E::Running,
                to: E::NotRunning,
            },
        );
        shared.finish(0, None);
        let state = futures_lite::future::block_on(shared.wait_for(S::is_terminal));
        assert_eq!(state, S::NotRunning);
        assert!(shared.outcome().is_ok());
        assert_eq!(
            *seen.lock().unwrap(),
            vec![
                (S::Created, S::Rebalancing),
                (S::Rebalancing, S::Running),
                (S::Running, S::PendingShutdown),
                (S::PendingShutdown, S::NotRunning),
            ]
        );
    }
}
