//! The loop of one stream thread: moves bytes and time between one [`Engine`] and its
//! connection tasks. No protocol logic lives here: the engine decides what to connect to,
//! when to reconnect (its backoff), what to send and when it is done.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_lite::future;
use kstreams_core::engine::ConnectionId;
use kstreams_core::engine::{Engine, EngineState, Output};

use crate::clock::Clock;
use crate::config::AddressMap;
use crate::connection::{self, ConnectionReports, ConnectionSpec};
use crate::message::Input;
use crate::metrics::MetricsPublisher;
use crate::runtime::Runtime;
use crate::status::InstanceStatus;

/// The loop's side of one connection task.
pub(crate) struct Connection<R: Runtime> {
    outgoing: async_channel::Sender<Bytes>,
    /// Dropping it stops the task and closes the socket.
    _task: R::Spawned,
}

/// One engine and its sockets, run by [`StreamThread::run`] on a dedicated thread.
pub(crate) struct StreamThread<R: Runtime> {
    pub(crate) index: usize,
    pub(crate) engine: Engine,
    pub(crate) clock: Arc<Clock>,
    /// Connection reports (bounded: back-pressure on readers).
    pub(crate) reports: async_channel::Receiver<Input>,
    pub(crate) reports_tx: async_channel::Sender<Input>,
    /// Commands from handles (unbounded, so a close is never lost to a full channel).
    pub(crate) commands: async_channel::Receiver<Input>,
    pub(crate) status: Arc<InstanceStatus>,
    pub(crate) addresses: AddressMap,
    pub(crate) connect_timeout: Duration,
    /// The sockets the engine asked for and has not closed (ids are never reused, so a
    /// report about one that is gone finds nothing).
    pub(crate) connections: BTreeMap<ConnectionId, Connection<R>>,
    /// Publishes the engine's metrics (to the status and the `metrics` facade).
    pub(crate) metrics: MetricsPublisher,
}

/// Why the loop woke up.
enum Wake {
    Message(Input),
    Timer,
}

impl<R: Runtime> StreamThread<R> {
    /// Runs the engine until it stops (`NotRunning` or `Error`).
    pub(crate) async fn run(mut self) {
        loop {
            self.drain_outputs();
            if matches!(
                self.engine.state(),
                EngineState::NotRunning | EngineState::Error
            ) {
                break;
            }
            let now = self.clock.now();
            let wake = match self.engine.poll_timeout() {
                _ if self.engine.has_pending_work() => {
                    // Work is left: let the connection tasks run once first, so reads keep
                    // flowing while the engine is busy.
                    R::yield_now().await;
                    match self
                        .commands
                        .try_recv()
                        .or_else(|_| self.reports.try_recv())
                    {
                        Ok(message) => Wake::Message(message),
                        Err(_) => Wake::Timer,
                    }
                }
                deadline => {
                    let timer = async {
                        match deadline {
                            Some(t) => R::sleep((t - now).to_std()).await,
                            None => future::pending::<()>().await,
                        }
                        Wake::Timer
                    };
                    let report = async {
                        match self.reports.recv().await {
                            Ok(message) => Wake::Message(message),
                            // Unreachable while `reports_tx` lives; treat as a timer tick.
                            Err(_) => Wake::Timer,
                        }
                    };
                    let command = async {
                        match self.commands.recv().await {
                            Ok(command) => Wake::Message(command),
                            // Every handle is gone: nobody can close; wait for the rest.
                            Err(_) => future::pending().await,
                        }
                    };
                    future::or(command, future::or(report, timer)).await
                }
            };
            match wake {
                Wake::Message(message) => {
                    self.handle(message);
                    // Take whatever else is ready before polling the engine again.
                    while let Ok(message) = self
                        .commands
                        .try_recv()
                        .or_else(|_| self.reports.try_recv())
                    {
                        self.handle(message);
                    }
                }
                Wake::Timer => self.engine.handle_timeout(self.clock.now()),
            }
        }
        self.publish_metrics(true);
        // Sockets close as the connection tasks are dropped.
        self.connections.clear();
    }

    /// Publishes the engine's metrics when due (or `now`).
    fn publish_metrics(&mut self, now: bool) {
        let at = std::time::Instant::now();
        if now || self.metrics.due(at) {
            let snapshot = self.metrics.publish(&self.engine, at);
            self.status.set_metrics(self.index, snapshot);
        }
    }

    /// The engine's next output; the time of a poll that ran batches is the processing
    /// latency (see `metrics`).
    fn poll_output(&mut self) -> Option<Output> {
        let batches = self.engine.metrics().batch_sizes.count;
        let started = std::time::Instant::now();
        let output = self.engine.poll_output(self.clock.now());
        if self.engine.metrics().batch_sizes.count > batches {
            self.metrics.processed(started.elapsed());
        }
        output
    }

    fn drain_outputs(&mut self) {
        while let Some(output) = self.poll_output() {
            match output {
                Output::Connect {
                    connection,
                    host,
                    port,
                } => self.connect(connection, &host, port),
                Output::Transmit { connection, bytes } => {
                    let sent = self
                        .connections
                        .get(&connection)
                        .is_some_and(|c| c.outgoing.try_send(bytes).is_ok());
                    if !sent {
                        // The engine believes the socket is open, but its task ended.
                        self.connections.remove(&connection);
                        self.engine
                            .handle_disconnected(connection, self.clock.now());
                    }
                }
                Output::Close { connection } => {
                    self.connections.remove(&connection);
                }
                Output::Event(event) => self.status.on_event(self.index, event),
            }
        }
        self.publish_metrics(false);
    }

    fn connect(&mut self, connection: ConnectionId, host: &str, port: i32) {
        let (host, port) = match self.addresses.resolve(host, port) {
            Ok(address) => address,
            Err(error) => {
                tracing::warn!(%connection, %error, "cannot dial broker");
                self.engine
                    .handle_disconnected(connection, self.clock.now());
                return;
            }
        };
        tracing::debug!(%connection, %host, port, "connecting");
        let (outgoing, outgoing_rx) = async_channel::unbounded();
        let task = R::spawn_local(connection::run::<R>(ConnectionSpec {
            host,
            port,
            connect_timeout: self.connect_timeout,
            outgoing: outgoing_rx,
            reports: ConnectionReports {
                connection,
                sender: self.reports_tx.clone(),
            },
        }));
        let replaced = self.connections.insert(
            connection,
            Connection {
                outgoing,
                _task: task,
            },
        );
        debug_assert!(
            replaced.is_none(),
            "the engine never reuses a connection id"
        );
    }

    /// Hands a report or command to the engine; a report about a socket that is gone (the
    /// engine closed it) is dropped here, as the engine would ignore it.
    fn handle(&mut self, input: Input) {
        let connection = match &input {
            Input::Connected { connection }
            | Input::Received { connection, .. }
            | Input::Disconnected { connection } => Some(*connection),
            Input::Timeout | Input::Close => None,
        };
        if let Some(connection) = connection {
            if !self.connections.contains_key(&connection) {
                return;
            }
            if matches!(input, Input::Disconnected { .. }) {
                self.connections.remove(&connection);
            }
        }
        self.engine.handle_input(input, self.clock.now());
    }
}
