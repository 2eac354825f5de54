//! tokio adapter for kstreams.
//!
//! [`KafkaStreams`] runs a kstreams application with tokio sockets and timers:
//!
//! ```no_run
//! use kstreams_tokio::{KafkaStreams, Stores, StreamsConfig};
//! # async fn demo(topology: kstreams_tokio::core::topology::Topology)
//! # -> Result<(), kstreams_tokio::StreamsError> {
//! let config = StreamsConfig::new("word-count", ["localhost:9092"]);
//! let handle = KafkaStreams::new(topology, config, Stores::Lmdb)?.start()?;
//! // ...
//! handle.close().await?; // commit, leave the group, wait for NotRunning
//! # Ok(()) }
//! ```
//!
//! Each stream thread is an OS thread running a current-thread tokio runtime (with a
//! `LocalSet`) that owns its engine loop and one task per broker socket; see
//! [`kstreams_io_common`] for why. The handle's futures (`close`, `wait`) need no particular
//! runtime, so the application's own runtime may be multi- or current-threaded.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use kstreams_io_common::{ConnectionEvents, ConnectionSpec, Outgoing, Runtime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::task::JoinHandle;

pub use kstreams_core as core;
pub use kstreams_io_common::{
    Clock, Stores, StreamsConfig, StreamsError, StreamsHandle, StreamsState, ThreadMetadata,
};

/// A kstreams application on tokio: [`kstreams_io_common::KafkaStreams`] with [`Tokio`].
pub type KafkaStreams = kstreams_io_common::KafkaStreams<Tokio>;

/// The tokio [`Runtime`].
#[derive(Debug, Clone, Copy)]
pub struct Tokio;

/// A spawned connection task; aborted (its socket closed) when dropped.
#[derive(Debug)]
pub struct ConnectionTask(JoinHandle<()>);

impl Drop for ConnectionTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Size of one socket read.
const READ_CHUNK: usize = 64 * 1024;

impl Runtime for Tokio {
    type Task = ConnectionTask;

    fn block_on<F: Future + 'static>(future: F) -> std::io::Result<F::Output> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let local = tokio::task::LocalSet::new();
        Ok(local.block_on(&runtime, future))
    }

    fn spawn_connection(spec: ConnectionSpec) -> ConnectionTask {
        ConnectionTask(tokio::task::spawn_local(connection(spec)))
    }

    fn sleep(duration: Duration) -> impl Future<Output = ()> {
        tokio::time::sleep(duration)
    }

    fn yield_now() -> impl Future<Output = ()> {
        tokio::task::yield_now()
    }
}

async fn connection(spec: ConnectionSpec) {
    let ConnectionSpec {
        host,
        port,
        connect_timeout,
        outgoing,
        events,
    } = spec;
    let stream = match tokio::time::timeout(
        connect_timeout,
        TcpStream::connect((host.as_str(), port)),
    )
    .await
    {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            tracing::debug!(%host, port, %error, "connect failed");
            events.closed().await;
            return;
        }
        Err(_) => {
            tracing::debug!(%host, port, "connect timed out");
            events.closed().await;
            return;
        }
    };
    // Requests are whole frames written at once; do not hold them back (Kafka clients do
    // the same).
    let _ = stream.set_nodelay(true);
    if !events.connected().await {
        return;
    }
    let (reader, writer) = stream.into_split();
    let broken = tokio::select! {
        broken = read_loop(reader, &events) => broken,
        broken = write_loop(writer, &outgoing) => broken,
    };
    if broken {
        events.closed().await;
    }
}

/// Forwards reads until the socket ends (`true`) or the engine loop is gone (`false`).
async fn read_loop(mut reader: OwnedReadHalf, events: &ConnectionEvents) -> bool {
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) => return true,
            Ok(n) => {
                if !events
                    .received(Bytes::copy_from_slice(buf.get(..n).unwrap_or_default()))
                    .await
                {
                    return false;
                }
            }
            Err(error) => {
                tracing::debug!(%error, "read failed");
                return true;
            }
        }
    }
}

/// Writes frames in order until a write fails (`true`) or the engine closed the connection
/// (`false`).
async fn write_loop(mut writer: OwnedWriteHalf, outgoing: &Outgoing) -> bool {
    while let Some(bytes) = outgoing.next().await {
        if let Err(error) = writer.write_all(&bytes).await {
            tracing::debug!(%error, "write failed");
            return true;
        }
    }
    false
}
