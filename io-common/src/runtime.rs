//! [`Runtime`]: the few things an adapter crate provides (sockets, timers, a thread-local
//! executor); everything else is shared.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use kstreams_core::engine::ConnectionId;

use crate::driver::Input;

/// What an async runtime must provide to drive engines. Implemented by `kstreams-tokio` and
/// `kstreams-smol`; users never call it.
///
/// Each stream thread is a dedicated OS thread that runs its engine's loop with
/// [`Runtime::block_on`]; connection tasks are spawned onto that same thread's executor, so
/// one engine and its sockets never leave their thread.
pub trait Runtime: 'static {
    /// A running connection task. Dropping it stops the task and closes its socket.
    type Task;

    /// Runs `future` to completion on the current thread with an executor on which
    /// [`Runtime::spawn_connection`] can spawn. `Err` if the executor cannot be built.
    fn block_on<F: Future + 'static>(future: F) -> std::io::Result<F::Output>;

    /// Spawns the task of one broker connection (on the executor of [`Runtime::block_on`]):
    /// connect within `spec.connect_timeout`, then forward reads to `spec.events` and write
    /// every frame of `spec.outgoing` in order. See [`ConnectionSpec`].
    fn spawn_connection(spec: ConnectionSpec) -> Self::Task;

    /// Completes after `duration`.
    fn sleep(duration: Duration) -> impl Future<Output = ()>;

    /// Lets the executor's other tasks (the connections) run once.
    fn yield_now() -> impl Future<Output = ()>;
}

/// One connection task's job: see [`Runtime::spawn_connection`].
///
/// The task must:
/// 1. connect to `host:port`; on failure or after `connect_timeout`, call
///    [`ConnectionEvents::closed`] and end;
/// 2. call [`ConnectionEvents::connected`];
/// 3. concurrently: read into a buffer and pass each non-empty read to
///    [`ConnectionEvents::received`] (end of stream or an error → `closed`), and write each
///    `Bytes` from `outgoing` whole, in order (an error → `closed`; `outgoing` closed → end
///    quietly: the engine closed the connection).
pub struct ConnectionSpec {
    /// Host to dial (after the address map).
    pub host: String,
    /// Port to dial.
    pub port: u16,
    /// Longest time connecting may take.
    pub connect_timeout: Duration,
    /// Frames to write, in order.
    pub outgoing: Outgoing,
    /// Where to report what happened.
    pub events: ConnectionEvents,
}

/// The frames the engine wants written to one socket, in order.
#[derive(Debug)]
pub struct Outgoing(pub(crate) async_channel::Receiver<Bytes>);

impl Outgoing {
    /// The next bytes to write whole; `None` once the engine closed the connection.
    pub async fn next(&self) -> Option<Bytes> {
        self.0.recv().await.ok()
    }
}

/// Reports of one connection to its engine loop. Each report returns `false` when the engine
/// loop is gone; the task should end then.
#[derive(Debug, Clone)]
pub struct ConnectionEvents {
    pub(crate) node: ConnectionId,
    pub(crate) generation: u64,
    pub(crate) sender: async_channel::Sender<Input>,
}

impl ConnectionEvents {
    /// The socket is open.
    pub async fn connected(&self) -> bool {
        self.send(ConnectionEvent::Connected).await
    }

    /// Bytes were read (any chunking).
    pub async fn received(&self, bytes: Bytes) -> bool {
        self.send(ConnectionEvent::Received(bytes)).await
    }

    /// The connection failed or closed.
    pub async fn closed(&self) -> bool {
        self.send(ConnectionEvent::Closed).await
    }

    async fn send(&self, event: ConnectionEvent) -> bool {
        self.sender
            .send(Input::Connection {
                node: self.node,
                generation: self.generation,
                event,
            })
            .await
            .is_ok()
    }
}

/// What a connection task reports.
#[derive(Debug)]
pub(crate) enum ConnectionEvent {
    Connected,
    Received(Bytes),
    Closed,
}
