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
//! TLS: `StreamsConfig::new(..).with_tls(TlsConfig::new().with_ca_file("ca.pem"))` (see
//! [`TlsConfig`]; rustls with the ring provider, the same code under every adapter).
//!
//! Each stream thread is an OS thread running a current-thread tokio runtime (with a
//! `LocalSet`) that owns its engine loop and one task per broker socket; see
//! [`kstreams_io_common`] for why. The handle's futures (`close`, `wait`) need no particular
//! runtime, so the application's own runtime may be multi- or current-threaded.

use std::future::Future;
use std::io;
use std::time::Duration;

use kstreams_io_common::{ReadHalf, Runtime, SplitStream, TcpSocket, WriteHalf};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::task::JoinHandle;
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};

pub use kstreams_core as core;
pub use kstreams_io_common::{
    Clock, PemSource, Stores, StreamsConfig, StreamsError, StreamsHandle, StreamsState,
    ThreadMetadata, TlsConfig, TlsConfigError, TlsErrorKind,
};

/// A kstreams application on tokio: [`kstreams_io_common::KafkaStreams`] with [`Tokio`].
pub type KafkaStreams = kstreams_io_common::KafkaStreams<Tokio>;

/// The tokio [`Runtime`].
#[derive(Debug, Clone, Copy)]
pub struct Tokio;

/// A spawned task (a connection task); aborted, its socket closed, when dropped.
#[derive(Debug)]
pub struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A tokio I/O object as a kstreams stream or stream half: `TokioIo<TcpStream>` is a TCP
/// connection, `TokioIo<OwnedReadHalf>` and `TokioIo<OwnedWriteHalf>` its halves. Any
/// tokio `AsyncRead`/`AsyncWrite` reads and writes through it. (TLS is
/// `kstreams-io-common`'s, over the TCP stream as a futures-io stream: [`TcpSocket::into_io`].)
#[derive(Debug)]
pub struct TokioIo<T>(T);

impl Runtime for Tokio {
    type Spawned = AbortOnDrop;
    type Tcp = TokioIo<TcpStream>;

    fn block_on<F: Future + 'static>(future: F) -> io::Result<F::Output> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let local = tokio::task::LocalSet::new();
        Ok(local.block_on(&runtime, future))
    }

    fn spawn_local(future: impl Future<Output = ()> + 'static) -> AbortOnDrop {
        AbortOnDrop(tokio::task::spawn_local(future))
    }

    async fn connect_tcp(host: &str, port: u16) -> io::Result<Self::Tcp> {
        TcpStream::connect((host, port)).await.map(TokioIo)
    }

    fn sleep(duration: Duration) -> impl Future<Output = ()> {
        tokio::time::sleep(duration)
    }

    fn yield_now() -> impl Future<Output = ()> {
        tokio::task::yield_now()
    }
}

impl TcpSocket for TokioIo<TcpStream> {
    fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.0.set_nodelay(nodelay)
    }

    /// tokio-util's adapter from tokio's I/O traits to futures-io's.
    type Io = Compat<TcpStream>;

    fn into_io(self) -> Compat<TcpStream> {
        self.0.compat()
    }
}

impl SplitStream for TokioIo<TcpStream> {
    type Reader = TokioIo<OwnedReadHalf>;
    type Writer = TokioIo<OwnedWriteHalf>;

    fn split(self) -> (Self::Reader, Self::Writer) {
        let (reader, writer) = self.0.into_split();
        (TokioIo(reader), TokioIo(writer))
    }
}

impl<T: AsyncRead + Unpin + 'static> ReadHalf for TokioIo<T> {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).await
    }
}

impl<T: AsyncWrite + Unpin + 'static> WriteHalf for TokioIo<T> {
    async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.0.write_all(bytes).await
    }
}
