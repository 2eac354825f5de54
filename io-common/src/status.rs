//! [`InstanceStatus`]: what the stream threads of an instance report into and its handles
//! read: each thread's engine state and tasks, the aggregated [`StreamsState`] with its
//! listener and waiters, the first failure, and the command channels to close the threads.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};

use event_listener::Event as Notify;
use kstreams_core::engine::{EngineState, Event};
use kstreams_core::task::TaskId;

use crate::error::StreamsError;
use crate::message::Input;
use crate::metrics::{MetricsSnapshot, ThreadMetrics};
use crate::state::{
    EventListener, StandbyUpdateListener, StateListener, StateRestoreListener, StreamsState,
    ThreadMetadata, ThreadState, aggregate, tell_restore_listener, tell_standby_listener,
};

struct Thread {
    name: String,
    state: EngineState,
    finished: bool,
    tasks: BTreeSet<TaskId>,
    /// Tasks restoring, with how many of their stores are not restored yet.
    restoring: BTreeMap<TaskId, usize>,
    /// Standby tasks, with how many of their stores follow their changelogs.
    standbys: BTreeMap<TaskId, usize>,
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
pub(crate) struct InstanceStatus {
    inner: Mutex<Inner>,
    /// `Inner::state` as published: set after the listener saw the change (see `deliver`);
    /// read without a lock (e.g. from the listener).
    state: AtomicU8,
    changed: Notify,
    /// Called outside `inner`'s lock (so it may call `close()` or read the state); whoever
    /// holds this lock delivers every undelivered change in order.
    listener: Mutex<Option<StateListener>>,
    /// Called with every engine event, outside `inner`'s lock; its lock serializes the calls
    /// of different stream threads.
    event_listener: Mutex<Option<EventListener>>,
    /// Called with every restore event, like the event listener.
    restore_listener: Mutex<Option<Box<dyn StateRestoreListener>>>,
    /// Called with every standby event, like the event listener.
    standby_listener: Mutex<Option<Box<dyn StandbyUpdateListener>>>,
    /// Each thread's last published metrics, by thread index.
    metrics: Mutex<Vec<Option<ThreadMetrics>>>,
}

impl InstanceStatus {
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
            event_listener: Mutex::new(None),
            restore_listener: Mutex::new(None),
            standby_listener: Mutex::new(None),
            metrics: Mutex::new(Vec::new()),
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

    pub(crate) fn set_event_listener(&self, listener: EventListener) {
        *self
            .event_listener
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(listener);
    }

    pub(crate) fn set_restore_listener(&self, listener: Box<dyn StateRestoreListener>) {
        *self
            .restore_listener
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(listener);
    }

    pub(crate) fn set_standby_listener(&self, listener: Box<dyn StandbyUpdateListener>) {
        *self
            .standby_listener
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(listener);
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
                restoring: BTreeMap::new(),
                standbys: BTreeMap::new(),
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
        self.tell_event_listener(index, &event);
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
                        t.restoring.remove(&id);
                    }
                }
            }
            Event::RestoreStarted { task, .. } => {
                if let Some(t) = inner.threads.get_mut(index) {
                    *t.restoring.entry(task).or_default() += 1;
                }
            }
            Event::RestoreEnded { task, .. } => {
                if let Some(t) = inner.threads.get_mut(index)
                    && let Some(stores) = t.restoring.get_mut(&task)
                {
                    *stores -= 1;
                    if *stores == 0 {
                        t.restoring.remove(&task);
                    }
                }
            }
            Event::StandbyStarted { task, .. } => {
                if let Some(t) = inner.threads.get_mut(index) {
                    *t.standbys.entry(task).or_default() += 1;
                }
            }
            Event::StandbySuspended { task, .. } => {
                if let Some(t) = inner.threads.get_mut(index)
                    && let Some(stores) = t.standbys.get_mut(&task)
                {
                    *stores -= 1;
                    if *stores == 0 {
                        t.standbys.remove(&task);
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
            Event::Committed(_)
            | Event::Warning(_)
            | Event::RestoreBatch { .. }
            | Event::StandbyBatch { .. }
            | Event::GroupSynced { .. } => {}
        }
        self.update(&mut inner);
        drop(inner);
        self.deliver();
    }

    /// Hands `event` of thread `index` to the event listener, if there is one.
    fn tell_event_listener(&self, index: usize, event: &Event) {
        if let Some(listener) = self
            .restore_listener
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
        {
            tell_restore_listener(listener.as_mut(), event);
        }
        if let Some(listener) = self
            .standby_listener
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
        {
            tell_standby_listener(listener.as_mut(), event);
        }
        let mut listener = self
            .event_listener
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(listener) = listener.as_mut() {
            let thread = thread_name(&self.lock(), index);
            listener(&thread, event);
        }
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
            t.restoring.clear();
            t.standbys.clear();
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
                restoring_tasks: t.restoring.keys().copied().collect(),
                standby_tasks: t.standbys.keys().copied().collect(),
            })
            .collect()
    }

    /// Thread `index` published `metrics`.
    pub(crate) fn set_metrics(&self, index: usize, metrics: ThreadMetrics) {
        let mut all = self.metrics.lock().unwrap_or_else(PoisonError::into_inner);
        if all.len() <= index {
            all.resize(index + 1, None);
        }
        all[index] = Some(metrics);
    }

    /// The threads' last published metrics.
    pub(crate) fn metrics(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            threads: self
                .metrics
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .flatten()
                .cloned()
                .collect(),
        }
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
mod tests;
