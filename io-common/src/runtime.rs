//! [`Runtime`]: what really differs between async runtimes (a thread-local executor, a TCP
//! connect, a sleep, a yield) and the stream types it connects ([`TcpSocket`],
//! [`SplitStream`], [`ReadHalf`], [`WriteHalf`]). Everything else, the connection task and
//! its TLS included, is written once in this crate.
//!
//! A leaf module: it imports nothing else of this crate.

use std::future::Future;
use std::io;
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncWrite};

/// What an async runtime must provide to drive engines. Implemented by `kstreams-tokio` and
/// `kstreams-smol`; users never call it.
///
/// Each stream thread is a dedicated OS thread that runs its engine's loop with
/// [`Runtime::block_on`]; the connection tasks are spawned onto that same thread's executor
/// ([`Runtime::spawn_local`]), so one engine and its sockets never leave their thread. The
/// connection task itself (connect within the timeout, `TCP_NODELAY`, the read and write
/// loops) is this crate's: an adapter only supplies [`Runtime::connect_tcp`] and the stream
/// types.
///
/// ## TLS
///
/// TLS is this crate's too (`futures-rustls`, written once): the connection task hands the
/// connected socket over as a futures-io stream ([`TcpSocket::into_io`]), runs the rustls
/// handshake over it within the connect timeout, and splits the TLS stream into halves for
/// the same read and write loops as a plain socket. An adapter only converts its TCP stream.
pub trait Runtime: 'static {
    /// A spawned task. Dropping it stops the task (a connection task's socket closes then).
    type Spawned;

    /// A connected TCP stream.
    type Tcp: TcpSocket;

    /// Runs `future` to completion on the current thread with an executor on which
    /// [`Runtime::spawn_local`] can spawn. `Err` if the executor cannot be built.
    fn block_on<F: Future + 'static>(future: F) -> io::Result<F::Output>;

    /// Spawns `future` on the current thread's executor (the one of [`Runtime::block_on`]).
    fn spawn_local(future: impl Future<Output = ()> + 'static) -> Self::Spawned;

    /// Opens a TCP connection to `host:port` (resolving `host`). Unbounded in time: the
    /// caller applies the connect timeout.
    fn connect_tcp(host: &str, port: u16) -> impl Future<Output = io::Result<Self::Tcp>>;

    /// Completes after `duration`.
    fn sleep(duration: Duration) -> impl Future<Output = ()>;

    /// Lets the executor's other tasks (the connections) run once.
    fn yield_now() -> impl Future<Output = ()>;
}

/// A connected TCP stream of a [`Runtime`].
pub trait TcpSocket: SplitStream {
    /// Sets `TCP_NODELAY` (requests are whole frames written at once; Kafka clients do not
    /// hold them back either).
    fn set_nodelay(&self, nodelay: bool) -> io::Result<()>;

    /// The same socket as a futures-io stream, for the TLS handshake and stream
    /// (`futures-rustls`) that run over it.
    type Io: AsyncRead + AsyncWrite + Unpin + 'static;

    /// This socket as [`TcpSocket::Io`].
    fn into_io(self) -> Self::Io;
}

/// A connected byte stream that splits into a half to read and a half to write, used
/// concurrently by the connection task's read and write loops.
pub trait SplitStream: 'static {
    /// The half to read.
    type Reader: ReadHalf;
    /// The half to write.
    type Writer: WriteHalf;

    /// The two halves; dropping both closes the stream.
    fn split(self) -> (Self::Reader, Self::Writer);
}

/// The reading half of a stream.
pub trait ReadHalf: 'static {
    /// Reads some bytes into `buf`; `Ok(0)` at the end of the stream.
    fn read(&mut self, buf: &mut [u8]) -> impl Future<Output = io::Result<usize>>;
}

/// The writing half of a stream.
pub trait WriteHalf: 'static {
    /// Writes all of `bytes` (or fails).
    fn write_all(&mut self, bytes: &[u8]) -> impl Future<Output = io::Result<()>>;
}
