//! The loop of one stream thread: moves bytes and time between one [`Engine`] and its
//! connection tasks. No protocol logic lives here: the engine decides what to connect to,
//! when to reconnect (its backoff), what to send and when it is done.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_lite::future;
use kstreams_core::client::BrokerId;
use kstreams_core::engine::{Engine, EngineState, Output};

use crate::clock::Clock;
use crate::config::AddressMap;
use crate::connection::{self, ConnectionReports, ConnectionSpec};
use crate::message::{ConnectionEvent, LoopMessage};
use crate::runtime::Runtime;
use crate::status::InstanceStatus;

/// The loop's side of one connection task.
pub(crate) struct Connection<R: Runtime> {
    generation: u64,
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
    pub(crate) reports: async_channel::Receiver<LoopMessage>,
    pub(crate) reports_tx: async_channel::Sender<LoopMessage>,
    /// Commands from handles (unbounded, so a close is never lost to a full channel).
    pub(crate) commands: async_channel::Receiver<LoopMessage>,
    pub(crate) status: Arc<InstanceStatus>,
    pub(crate) addresses: AddressMap,
    pub(crate) connect_timeout: Duration,
    pub(crate) connections: BTreeMap<BrokerId, Connection<R>>,
    pub(crate) next_generation: u64,
}

/// Why the loop woke up.
enum Wake {
    Message(LoopMessage),
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
                Some(deadline) if deadline <= now => {
                    // Work is due now: let the connection tasks run once first, so reads
                    // keep flowing while the engine is busy.
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
                            Some(t) => {
                                let ms = u64::try_from(t.saturating_sub(now)).unwrap_or(0);
                                R::sleep(Duration::from_millis(ms)).await;
                            }
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
        // Sockets close as the connection tasks are dropped.
        self.connections.clear();
    }

    fn drain_outputs(&mut self) {
        while let Some(output) = self.engine.poll_output(self.clock.now()) {
            match output {
                Output::Connect { node, host, port } => self.connect(node, &host, port),
                Output::Transmit { node, bytes } => {
                    let sent = self
                        .connections
                        .get(&node)
                        .is_some_and(|c| c.outgoing.try_send(bytes).is_ok());
                    if !sent {
                        // The engine believes the socket is open, but its task ended.
                        self.connections.remove(&node);
                        self.engine.handle_disconnected(node, self.clock.now());
                    }
                }
                Output::Close { node } => {
                    self.connections.remove(&node);
                }
                Output::Event(event) => self.status.on_event(self.index, event),
            }
        }
    }

    fn connect(&mut self, node: BrokerId, host: &str, port: i32) {
        self.connections.remove(&node);
        let (host, port) = match self.addresses.resolve(host, port) {
            Ok(address) => address,
            Err(error) => {
                tracing::warn!(node, %error, "cannot dial broker");
                self.engine.handle_disconnected(node, self.clock.now());
                return;
            }
        };
        tracing::debug!(node, %host, port, "connecting");
        let generation = self.next_generation;
        self.next_generation += 1;
        let (outgoing, outgoing_rx) = async_channel::unbounded();
        let task = R::spawn_local(connection::run::<R>(ConnectionSpec {
            host,
            port,
            connect_timeout: self.connect_timeout,
            outgoing: outgoing_rx,
            reports: ConnectionReports {
                node,
                generation,
                sender: self.reports_tx.clone(),
            },
        }));
        self.connections.insert(
            node,
            Connection {
                generation,
                outgoing,
                _task: task,
            },
        );
    }

    fn handle(&mut self, message: LoopMessage) {
        let now = self.clock.now();
        match message {
            LoopMessage::Close => self.engine.close(now),
            LoopMessage::Connection {
                node,
                generation,
                event,
            } => {
                if self
                    .connections
                    .get(&node)
                    .is_none_or(|c| c.generation != generation)
                {
                    return; // a report of a socket the engine already closed or replaced
                }
                match event {
                    ConnectionEvent::Connected => self.engine.handle_connected(node, now),
                    ConnectionEvent::Received(bytes) => {
                        self.engine.handle_received(node, &bytes, now)
                    }
                    ConnectionEvent::Closed => {
                        self.connections.remove(&node);
                        self.engine.handle_disconnected(node, now);
                    }
                }
            }
        }
    }
}
