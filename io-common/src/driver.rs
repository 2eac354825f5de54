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
use crate::runtime::{ConnectionEvent, ConnectionEvents, ConnectionSpec, Outgoing, Runtime};
use crate::state::Shared;

/// What wakes a stream thread's loop.
#[derive(Debug)]
pub(crate) enum Input {
    /// A connection task's report. `generation` tells reports of an old socket of the same
    /// node (closed by the engine, or replaced) from the current one.
    Connection {
        node: ConnectionId,
        generation: u64,
        event: ConnectionEvent,
    },
    /// Close the engine cleanly (commit, leave the group).
    Close,
}

/// Reads are forwarded through a bounded channel, so a slow engine slows its readers down
/// (TCP back-pressure) instead of buffering without limit.
pub(crate) const INPUT_CAPACITY: usize = 256;

pub(crate) struct Connection<R: Runtime> {
    generation: u64,
    outgoing: async_channel::Sender<Bytes>,
    _task: R::Task,
}

/// One engine and its sockets, run by [`StreamThread::run`] on a dedicated thread.
pub(crate) struct StreamThread<R: Runtime> {
    pub(crate) index: usize,
    pub(crate) engine: Engine,
    pub(crate) clock: Arc<Clock>,
    /// Connection reports (bounded: back-pressure on readers).
    pub(crate) inputs: async_channel::Receiver<Input>,
    pub(crate) inputs_tx: async_channel::Sender<Input>,
    /// Commands from handles (unbounded, so a close is never lost to a full channel).
    pub(crate) commands: async_channel::Receiver<Input>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) addresses: AddressMap,
    pub(crate) connect_timeout: Duration,
    pub(crate) connections: BTreeMap<ConnectionId, Connection<R>>,
    pub(crate) next_generation: u64,
}

enum Wake {
    Input(Input),
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
                    match self.commands.try_recv().or_else(|_| self.inputs.try_recv()) {
                        Ok(input) => Wake::Input(input),
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
                    let input = async {
                        match self.inputs.recv().await {
                            Ok(input) => Wake::Input(input),
                            // Unreachable while `inputs_tx` lives; treat as a timer tick.
                            Err(_) => Wake::Timer,
                        }
                    };
                    let command = async {
                        match self.commands.recv().await {
                            Ok(command) => Wake::Input(command),
                            // Every handle is gone: nobody can close; wait for the rest.
                            Err(_) => future::pending().await,
                        }
                    };
                    future::or(command, future::or(input, timer)).await
                }
            };
            match wake {
                Wake::Input(input) => {
                    self.handle(input);
                    // Take whatever else is ready before polling the engine again.
                    while let Ok(input) =
                        self.commands.try_recv().or_else(|_| self.inputs.try_recv())
                    {
                        self.handle(input);
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
                Output::Connect {
                    connection: node,
                    host,
                    port,
                } => self.connect(node, &host, port),
                Output::Transmit {
                    connection: node,
                    bytes,
                } => {
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
                Output::Close { connection: node } => {
                    self.connections.remove(&node);
                }
                Output::Event(event) => self.shared.on_event(self.index, event),
            }
        }
    }

    fn connect(&mut self, node: ConnectionId, host: &str, port: i32) {
        self.connections.remove(&node);
        let (host, port) = match self.addresses.resolve(host, port) {
            Ok(address) => address,
            Err(error) => {
                tracing::warn!(%node, %error, "cannot dial broker");
                self.engine.handle_disconnected(node, self.clock.now());
                return;
            }
        };
        tracing::debug!(%node, %host, port, "connecting");
        let generation = self.next_generation;
        self.next_generation += 1;
        let (outgoing, outgoing_rx) = async_channel::unbounded();
        let task = R::spawn_connection(ConnectionSpec {
            host,
            port,
            connect_timeout: self.connect_timeout,
            outgoing: Outgoing(outgoing_rx),
            events: ConnectionEvents {
                node,
                generation,
                sender: self.inputs_tx.clone(),
            },
        });
        self.connections.insert(
            node,
            Connection {
                generation,
                outgoing,
                _task: task,
            },
        );
    }

    fn handle(&mut self, input: Input) {
        let now = self.clock.now();
        match input {
            Input::Close => self.engine.close(now),
            Input::Connection {
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
