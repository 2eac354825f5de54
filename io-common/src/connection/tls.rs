//! The TLS side of the connection task: the rustls handshake (`futures-rustls`) over the
//! adapter's TCP stream as a futures-io stream ([`TcpSocket::into_io`]), and the TLS stream's
//! halves for the same read and write loops as a plain stream. Written once for every runtime.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::io::{ReadHalf as IoReadHalf, WriteHalf as IoWriteHalf};
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use futures_rustls::TlsConnector;
use futures_rustls::client::TlsStream;
use rustls::pki_types::ServerName;

#[cfg(doc)]
use crate::runtime::TcpSocket;
use crate::runtime::{ReadHalf, SplitStream, WriteHalf};
use crate::tls::{TlsFailure, failure_of_io};

/// How one connection does TLS: the instance's shared rustls configuration and the name the
/// broker's certificate must carry.
#[derive(Clone)]
pub(crate) struct TlsSetup {
    pub(crate) connector: TlsConnector,
    pub(crate) server_name: ServerName<'static>,
}

impl std::fmt::Debug for TlsSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSetup")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// Why a handshake did not complete.
#[derive(Debug)]
pub(crate) enum HandshakeError {
    /// TLS itself failed (a certificate, an alert, a non-TLS answer); its kind says whether
    /// reconnecting can help.
    Tls(TlsFailure),
    /// The broker closed the socket without sending a byte: a plaintext listener, or a
    /// broker going away (see `plaintext_probe`).
    ClosedUnanswered,
    /// Any other I/O failure: a broken connection like any other.
    Io(io::Error),
}

/// Runs the TLS handshake over `io`.
pub(crate) async fn handshake<S>(io: S, setup: &TlsSetup) -> Result<TlsSocket<S>, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let watched = Watched {
        inner: io,
        answered: false,
    };
    match setup
        .connector
        .connect(setup.server_name.clone(), watched)
        .into_fallible()
        .await
    {
        Ok(stream) => Ok(TlsSocket(stream)),
        Err((error, watched)) => Err(if let Some(failure) = failure_of_io(&error) {
            HandshakeError::Tls(failure)
        } else if !watched.answered && is_closed(&error) {
            HandshakeError::ClosedUnanswered
        } else {
            HandshakeError::Io(error)
        }),
    }
}

/// The peer closed (or reset) the socket.
fn is_closed(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// A stream that remembers whether the peer sent anything.
struct Watched<S> {
    inner: S,
    answered: bool,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let read = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(read, Poll::Ready(Ok(n)) if n > 0) {
            self.answered = true;
        }
        read
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

type Tls<S> = TlsStream<Watched<S>>;

/// An established TLS connection.
pub(crate) struct TlsSocket<S>(Tls<S>);

/// The reading half of a [`TlsSocket`].
pub(crate) struct TlsReader<S>(IoReadHalf<Tls<S>>);

/// The writing half of a [`TlsSocket`].
pub(crate) struct TlsWriter<S>(IoWriteHalf<Tls<S>>);

impl<S: AsyncRead + AsyncWrite + Unpin + 'static> SplitStream for TlsSocket<S> {
    type Reader = TlsReader<S>;
    type Writer = TlsWriter<S>;

    /// The halves share the stream behind a lock held only while one of them is polled;
    /// the connection task polls both from one task, so they never wait for each other.
    fn split(self) -> (TlsReader<S>, TlsWriter<S>) {
        let (reader, writer) = futures_lite::io::split(self.0);
        (TlsReader(reader), TlsWriter(writer))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + 'static> ReadHalf for TlsReader<S> {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + 'static> WriteHalf for TlsWriter<S> {
    /// Writes the frame and flushes it: rustls may hold encrypted records back otherwise.
    async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.0.write_all(bytes).await?;
        self.0.flush().await
    }
}
