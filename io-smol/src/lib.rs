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
//! TLS: `StreamsConfig::new(..).with_tls(TlsConfig::new().with_ca_file("ca.pem"))` (see
//! [`TlsConfig`]; rustls with the ring provider, the same code under every adapter).
//!
//! Each stream thread is an OS thread running `async_io::block_on` over a thread-local
//! `async_executor::LocalExecutor` that holds its engine loop and one task per broker socket;
//! I/O readiness comes from async-io's global reactor, which smol and async-std share. The
//! handle's futures (`close`, `wait`) need no particular executor.

use std::future::Future;
use std::io;
use std::time::Duration;

use async_executor::{LocalExecutor, Task};
use async_net::TcpStream;
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, future};
use kstreams_io_common::{ReadHalf, Runtime, SplitStream, TcpSocket, WriteHalf};

pub use kstreams_core as core;
pub use kstreams_io_common::{
    Clock, PemSource, Stores, StreamsConfig, StreamsError, StreamsHandle, StreamsState,
    ThreadMetadata, TlsConfig, TlsConfigError, TlsErrorKind,
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

/// A futures-io object as a kstreams stream or stream half: `SmolIo<TcpStream>` is a TCP
/// connection and, cloned, both of its halves. Any `AsyncRead`/`AsyncWrite` reads and writes
/// through it. (TLS is `kstreams-io-common`'s, over the TCP stream itself:
/// [`TcpSocket::into_io`].)
#[derive(Debug)]
pub struct SmolIo<T>(T);

impl Runtime for Smol {
    /// Dropping an `async_executor::Task` cancels it.
    type Spawned = Task<()>;
    type Tcp = SmolIo<TcpStream>;

    fn block_on<F: Future + 'static>(future: F) -> io::Result<F::Output> {
        Ok(EXECUTOR.with(|executor| async_io::block_on(executor.run(future))))
    }

    fn spawn_local(future: impl Future<Output = ()> + 'static) -> Task<()> {
        EXECUTOR.with(|executor| executor.spawn(future))
    }

    async fn connect_tcp(host: &str, port: u16) -> io::Result<Self::Tcp> {
        TcpStream::connect((host, port)).await.map(SmolIo)
    }

    async fn sleep(duration: Duration) {
        async_io::Timer::after(duration).await;
    }

    fn yield_now() -> impl Future<Output = ()> {
        future::yield_now()
    }
}

impl TcpSocket for SmolIo<TcpStream> {
    fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.0.set_nodelay(nodelay)
    }

    /// async-net's stream is a futures-io stream already.
    type Io = TcpStream;

    fn into_io(self) -> TcpStream {
        self.0
    }
}

impl SplitStream for SmolIo<TcpStream> {
    type Reader = Self;
    type Writer = Self;

    /// async-net streams are handles to one socket: a clone reads while the other writes.
    fn split(self) -> (Self, Self) {
        (SmolIo(self.0.clone()), self)
    }
}

impl<T: AsyncRead + Unpin + 'static> ReadHalf for SmolIo<T> {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).await
    }
}

impl<T: AsyncWrite + Unpin + 'static> WriteHalf for SmolIo<T> {
    async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.0.write_all(bytes).await
    }
}
