//! smol adapter for kstreams (async-io / async-net; works under smol and async-std).
//!
//! [`KafkaStreams`] runs a kstreams application with async-net sockets and async-io timers:
//!
//! ```no_run
//! use kstreams_smol::{KafkaStreams, Stores, StreamsConfig};
//! # async fn demo(topology: kstreams_smol::core::topology::Topology)
//! # -> Result<(), kstreams_smol::StreamsError> {
//! let config = StreamsConfig::new("word-count", ["localhost:9092"]);
//! let handle = KafkaStreams::new(topology, config, Stores::Lmdb)?.start()?;
//! // ...
//! handle.close().await?; // commit, leave the group, wait for NotRunning
//! # Ok(()) }
//! ```
//!
//! Each stream thread is an OS thread running `async_io::block_on` over a thread-local
//! `async_executor::LocalExecutor` that holds its engine loop and one task per broker socket;
//! I/O readiness comes from async-io's global reactor, which smol and async-std share. The
//! handle's futures (`close`, `wait`) need no particular executor.

use std::future::Future;
use std::time::Duration;

use async_executor::{LocalExecutor, Task};
use async_net::TcpStream;
use bytes::Bytes;
use futures_lite::{AsyncReadExt, AsyncWriteExt, future};
use kstreams_io_common::{ConnectionEvents, ConnectionSpec, Outgoing, Runtime};

pub use kstreams_core as core;
pub use kstreams_io_common::{
    Clock, Stores, StreamsConfig, StreamsError, StreamsHandle, StreamsState, ThreadMetadata,
};

/// A kstreams application on async-io: [`kstreams_io_common::KafkaStreams`] with [`Smol`].
pub type KafkaStreams = kstreams_io_common::KafkaStreams<Smol>;

/// The async-io [`Runtime`] (smol, async-std).
#[derive(Debug, Clone, Copy)]
pub struct Smol;

thread_local! {
    /// The executor of this stream thread (used only on stream threads).
    static EXECUTOR: LocalExecutor<'static> = const { LocalExecutor::new() };
}

/// Size of one socket read.
const READ_CHUNK: usize = 64 * 1024;

impl Runtime for Smol {
    /// Dropping an `async_executor::Task` cancels it.
    type Task = Task<()>;

    fn block_on<F: Future + 'static>(future: F) -> std::io::Result<F::Output> {
        Ok(EXECUTOR.with(|executor| async_io::block_on(executor.run(future))))
    }

    fn spawn_connection(spec: ConnectionSpec) -> Task<()> {
        EXECUTOR.with(|executor| executor.spawn(connection(spec)))
    }

    async fn sleep(duration: Duration) {
        async_io::Timer::after(duration).await;
    }

    fn yield_now() -> impl Future<Output = ()> {
        future::yield_now()
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
    let connect = async { Some(TcpStream::connect((host.as_str(), port)).await) };
    let timeout = async {
        async_io::Timer::after(connect_timeout).await;
        None
    };
    let stream = match future::or(connect, timeout).await {
        Some(Ok(stream)) => stream,
        Some(Err(error)) => {
            tracing::debug!(%host, port, %error, "connect failed");
            events.closed().await;
            return;
        }
        None => {
            tracing::debug!(%host, port, "connect timed out");
            events.closed().await;
            return;
        }
    };
    // Requests are whole frames written at once; do not hold them back.
    let _ = stream.set_nodelay(true);
    if !events.connected().await {
        return;
    }
    let broken = future::or(
        read_loop(stream.clone(), &events),
        write_loop(stream, &outgoing),
    )
    .await;
    if broken {
        events.closed().await;
    }
}

/// Forwards reads until the socket ends (`true`) or the engine loop is gone (`false`).
async fn read_loop(mut reader: TcpStream, events: &ConnectionEvents) -> bool {
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
async fn write_loop(mut writer: TcpStream, outgoing: &Outgoing) -> bool {
    while let Some(bytes) = outgoing.next().await {
        if let Err(error) = writer.write_all(&bytes).await {
            tracing::debug!(%error, "write failed");
            return true;
        }
    }
    false
}
