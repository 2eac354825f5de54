//! The loop of one stream thread: moves bytes and time between one [`Engine`] and its
//! connection tasks. No protocol logic lives here: the engine decides what to connect to,
//! when to reconnect (its backoff), what to send and when it is done.
//!
//! The one decision taken here is about TLS, which the engine knows nothing of: a TLS failure
//! caused by the configuration (an untrusted or expired certificate, a name mismatch, a
//! refused client certificate, a plaintext listener: a failure with a [`TlsErrorKind`]) does
//! not heal by reconnecting, so the loop stops its engine at once (no clean close: its
//! connections would fail the same way) and the stream thread ends with
//! [`StreamsError::Tls`], which stops the instance like an engine failure. A TLS failure
//! without a kind (an `internal_error` alert, a decrypt error: a middlebox, a broker shutting
//! down) is a disconnect, logged as a warning naming the broker.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_lite::future;
use futures_rustls::TlsConnector;
use kstreams_core::engine::ConnectionId;
use kstreams_core::engine::{Engine, EngineState, Output};
use rustls::pki_types::ServerName;

use crate::clock::Clock;
use crate::config::AddressMap;
use crate::connection::{self, ConnectionReports, ConnectionSpec, TlsSetup};
use crate::error::StreamsError;
use crate::message::{Input, Report};
use crate::metrics::MetricsPublisher;
use crate::runtime::Runtime;
use crate::status::InstanceStatus;
use crate::tls::{TlsErrorKind, TlsFailure};

/// The loop's side of one connection task.
pub(crate) struct Connection<R: Runtime> {
    outgoing: async_channel::Sender<Bytes>,
    /// The broker as the engine named it (`host:port`, before the address map).
    broker: String,
    /// The address dialled (`host:port`, after the address map).
    address: String,
    /// Dropping it stops the task and closes the socket.
    _task: R::Spawned,
}

/// One engine and its sockets, run by [`StreamThread::run`] on a dedicated thread.
pub(crate) struct StreamThread<R: Runtime> {
    pub(crate) index: usize,
    /// The thread's name (`<client_id>-StreamThread-<n>`), for errors.
    pub(crate) name: String,
    pub(crate) engine: Engine,
    pub(crate) clock: Arc<Clock>,
    /// Connection reports (bounded: back-pressure on readers).
    pub(crate) reports: async_channel::Receiver<Report>,
    pub(crate) reports_tx: async_channel::Sender<Report>,
    /// Commands from handles (unbounded, so a close is never lost to a full channel).
    pub(crate) commands: async_channel::Receiver<Input>,
    pub(crate) status: Arc<InstanceStatus>,
    pub(crate) addresses: AddressMap,
    pub(crate) connect_timeout: Duration,
    /// TLS over every socket (the instance's shared rustls configuration), or plaintext.
    pub(crate) tls: Option<TlsConnector>,
    /// The sockets the engine asked for and has not closed (ids are never reused, so a
    /// report about one that is gone finds nothing).
    pub(crate) connections: BTreeMap<ConnectionId, Connection<R>>,
    /// Publishes the engine's metrics (to the status and the `metrics` facade).
    pub(crate) metrics: MetricsPublisher,
}

/// Why the loop woke up.
enum Wake {
    Command(Input),
    Report(Report),
    Timer,
}

impl<R: Runtime> StreamThread<R> {
    /// Runs the engine until it stops (`NotRunning` or `Error`); `Err` if the loop stopped it
    /// (a TLS failure, see the module documentation).
    pub(crate) async fn run(mut self) -> Result<(), StreamsError> {
        let result = self.run_engine().await;
        self.publish_metrics(true);
        // Sockets close as the connection tasks are dropped.
        self.connections.clear();
        result
    }

    async fn run_engine(&mut self) -> Result<(), StreamsError> {
        loop {
            self.drain_outputs()?;
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
                    self.try_recv().unwrap_or(Wake::Timer)
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
                            Ok(report) => Wake::Report(report),
                            // Unreachable while `reports_tx` lives; treat as a timer tick.
                            Err(_) => Wake::Timer,
                        }
                    };
                    let command = async {
                        match self.commands.recv().await {
                            Ok(command) => Wake::Command(command),
                            // Every handle is gone: nobody can close; wait for the rest.
                            Err(_) => future::pending().await,
                        }
                    };
                    future::or(command, future::or(report, timer)).await
                }
            };
            let mut next = Some(wake);
            // After a message, take whatever else is ready before polling the engine again.
            while let Some(wake) = next.take() {
                let more = !matches!(wake, Wake::Timer);
                self.handle(wake)?;
                if more {
                    next = self.try_recv();
                }
            }
        }
        Ok(())
    }

    /// Hands what woke the loop to the engine; `Err` if it stops the thread.
    fn handle(&mut self, wake: Wake) -> Result<(), StreamsError> {
        match wake {
            Wake::Command(command) => self.engine.handle_input(command, self.clock.now()),
            Wake::Report(report) => self.handle_report(report)?,
            Wake::Timer => self.engine.handle_timeout(self.clock.now()),
        }
        Ok(())
    }

    /// A command, else a report, if one is ready.
    fn try_recv(&self) -> Option<Wake> {
        self.commands
            .try_recv()
            .map(Wake::Command)
            .or_else(|_| self.reports.try_recv().map(Wake::Report))
            .ok()
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

    /// Carries out every output the engine has; `Err` if one stops the thread.
    fn drain_outputs(&mut self) -> Result<(), StreamsError> {
        while let Some(output) = self.poll_output() {
            match output {
                Output::Connect {
                    connection,
                    host,
                    port,
                } => self.connect(connection, &host, port)?,
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
        Ok(())
    }

    /// Starts a connection task; `Err` if TLS cannot name the broker.
    fn connect(
        &mut self,
        connection: ConnectionId,
        broker_host: &str,
        broker_port: i32,
    ) -> Result<(), StreamsError> {
        let broker = format!("{broker_host}:{broker_port}");
        let (host, port) = match self.addresses.resolve(broker_host, broker_port) {
            Ok(address) => address,
            Err(error) => {
                tracing::warn!(%connection, %error, "cannot dial broker");
                self.engine
                    .handle_disconnected(connection, self.clock.now());
                return Ok(());
            }
        };
        let tls = match &self.tls {
            None => None,
            // The certificate must name the broker as the engine knows it, not as dialled.
            Some(connector) => match ServerName::try_from(broker_host.to_owned()) {
                Ok(server_name) => Some(TlsSetup {
                    connector: connector.clone(),
                    server_name,
                }),
                Err(error) => {
                    return Err(StreamsError::Tls {
                        thread: self.name.clone(),
                        broker,
                        kind: TlsErrorKind::Other,
                        detail: format!("`{broker_host}` is not a valid TLS server name: {error}"),
                    });
                }
            },
        };
        tracing::debug!(%connection, %host, port, tls = tls.is_some(), "connecting");
        let address = format!("{host}:{port}");
        let (outgoing, outgoing_rx) = async_channel::unbounded();
        let task = R::spawn_local(connection::run::<R>(ConnectionSpec {
            host,
            port,
            connect_timeout: self.connect_timeout,
            tls,
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
                broker,
                address,
                _task: task,
            },
        );
        debug_assert!(
            replaced.is_none(),
            "the engine never reuses a connection id"
        );
        Ok(())
    }

    /// Hands a connection report to the engine; a report about a socket that is gone (the
    /// engine closed it) is dropped here, as the engine would ignore it. `Err` when a TLS
    /// failure stops the thread.
    fn handle_report(&mut self, report: Report) -> Result<(), StreamsError> {
        let Some(connection) = report.connection() else {
            unreachable!("connection tasks report only about their socket: {report:?}")
        };
        let Some(socket) = self.connections.get(&connection) else {
            return Ok(());
        };
        let input = match report {
            Report::Engine(input) => {
                if matches!(input, Input::Disconnected { .. }) {
                    self.connections.remove(&connection);
                }
                input
            }
            Report::TlsFailed {
                failure:
                    TlsFailure {
                        kind: Some(kind),
                        detail,
                    },
                ..
            } => return Err(self.tls_failed(connection, kind, detail)),
            Report::TlsFailed {
                failure: TlsFailure { kind: None, detail },
                ..
            } => {
                tracing::warn!(
                    thread = %self.name,
                    broker = %socket.broker,
                    address = %socket.address,
                    error = %detail,
                    "TLS with the broker failed (not a configuration problem); reconnecting"
                );
                self.connections.remove(&connection);
                Input::Disconnected { connection }
            }
        };
        self.engine.handle_input(input, self.clock.now());
        Ok(())
    }

    /// The error that stops this thread after TLS with `connection`'s broker failed because
    /// of the configuration.
    fn tls_failed(
        &mut self,
        connection: ConnectionId,
        kind: TlsErrorKind,
        detail: String,
    ) -> StreamsError {
        let broker = self
            .connections
            .remove(&connection)
            .map(|c| c.broker)
            .expect("a TLS failure is handled only for a live connection");
        tracing::error!(
            thread = %self.name,
            %broker,
            %kind,
            %detail,
            "TLS with the broker failed; stopping the stream thread"
        );
        StreamsError::Tls {
            thread: self.name.clone(),
            broker,
            kind,
            detail,
        }
    }
}
