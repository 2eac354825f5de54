//! The task of one broker connection, written once for every [`Runtime`]: connect (and, with
//! TLS, complete the handshake) within the timeout, set `TCP_NODELAY`, then forward every read
//! to the stream thread's loop and write every frame the engine sends, whole and in order.

use std::time::Duration;

use bytes::Bytes;
use futures_lite::future;
use kstreams_core::engine::ConnectionId;

use crate::message::{Input, Report};
use crate::runtime::{ReadHalf, Runtime, SplitStream, TcpSocket, WriteHalf};
use crate::tls::{TlsErrorKind, TlsFailure, failure_of_io};
use frame_reads::FrameReads;
use plaintext_probe::Verdict;

mod frame_reads;
mod plaintext_probe;
mod tls;

pub(crate) use tls::TlsSetup;
use tls::{HandshakeError, TlsSocket};

/// One connection task's job (see [`run`]).
pub(crate) struct ConnectionSpec {
    /// Host to dial (after the address map).
    pub(crate) host: String,
    /// Port to dial.
    pub(crate) port: u16,
    /// Longest time connecting (and the TLS handshake) may take.
    pub(crate) connect_timeout: Duration,
    /// TLS over the socket, if the instance has it.
    pub(crate) tls: Option<TlsSetup>,
    /// Frames to write, in order; closed when the engine closed the connection.
    pub(crate) outgoing: async_channel::Receiver<Bytes>,
    /// Where to report what happened.
    pub(crate) reports: ConnectionReports,
}

/// Reports of one connection to its stream thread's loop, through the loop's bounded
/// channel (a full channel holds the reader back). Each report returns `false` when the loop
/// is gone; the task ends then.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionReports {
    pub(crate) connection: ConnectionId,
    pub(crate) sender: async_channel::Sender<Report>,
}

impl ConnectionReports {
    async fn connected(&self) -> bool {
        self.send(Report::Engine(Input::Connected {
            connection: self.connection,
        }))
        .await
    }

    async fn received(&self, bytes: Bytes) -> bool {
        self.send(Report::Engine(Input::Received {
            connection: self.connection,
            bytes,
        }))
        .await
    }

    async fn closed(&self) -> bool {
        self.send(Report::Engine(Input::Disconnected {
            connection: self.connection,
        }))
        .await
    }

    async fn tls_failed(&self, failure: TlsFailure) -> bool {
        self.send(Report::TlsFailed {
            connection: self.connection,
            failure,
        })
        .await
    }

    async fn send(&self, report: Report) -> bool {
        self.sender.send(report).await.is_ok()
    }
}

/// The connection task:
/// 1. connect to `host:port`, set `TCP_NODELAY` and, with TLS, complete the handshake; on
///    failure or after `connect_timeout`, report `Disconnected` (or, for a TLS failure,
///    `TlsFailed`) and end. When the broker closed the handshake without a byte, first
///    [`plaintext_probe::probe`] the address (within another `connect_timeout`): a plaintext
///    Kafka listener is `TlsFailed` with `NotTls`, anything else `Disconnected`;
/// 2. report `Connected`;
/// 3. concurrently: pass each non-empty read on as `Received` (end of stream or an error →
///    `Disconnected`; a TLS error before the broker's first answer → `TlsFailed`), and write
///    each frame of `outgoing` whole, in order (an error → `Disconnected`; `outgoing` closed →
///    end quietly: the engine closed the connection).
///
/// Dropping the task (the loop does when the engine closes or replaces the connection)
/// closes the socket.
pub(crate) async fn run<R: Runtime>(spec: ConnectionSpec) {
    let ConnectionSpec {
        host,
        port,
        connect_timeout,
        tls,
        outgoing,
        reports,
    } = spec;
    let establish = async { Some(establish::<R>(&host, port, tls.as_ref()).await) };
    let timeout = async {
        R::sleep(connect_timeout).await;
        None
    };
    let socket = match future::or(establish, timeout).await {
        Some(Ok(socket)) => socket,
        Some(Err(failure)) => {
            match failure {
                Failure::Io(error) => {
                    tracing::debug!(%host, port, %error, "connect failed");
                    reports.closed().await;
                }
                Failure::Handshake(HandshakeError::Io(error)) => {
                    tracing::debug!(%host, port, %error, "TLS handshake broken off");
                    reports.closed().await;
                }
                Failure::Handshake(HandshakeError::ClosedUnanswered) => {
                    match plaintext_probe::probe::<R>(&host, port, connect_timeout).await {
                        Verdict::PlaintextKafka => {
                            tracing::debug!(%host, port, "a plaintext Kafka listener");
                            reports.tls_failed(plaintext_listener(&host, port)).await;
                        }
                        Verdict::Inconclusive(probe) => {
                            tracing::debug!(
                                %host,
                                port,
                                %probe,
                                "the broker closed the TLS handshake without a byte and is \
                                 not a plaintext Kafka listener (going away?)"
                            );
                            reports.closed().await;
                        }
                    }
                }
                Failure::Handshake(HandshakeError::Tls(failure)) => {
                    tracing::debug!(%host, port, ?failure, "TLS handshake failed");
                    reports.tls_failed(failure).await;
                }
            }
            return;
        }
        None => {
            tracing::debug!(%host, port, tls = tls.is_some(), "connect (or TLS handshake) timed out");
            reports.closed().await;
            return;
        }
    };
    if !reports.connected().await {
        return;
    }
    match socket {
        Socket::Plain(tcp) => exchange::<R>(tcp, &outgoing, &reports).await,
        Socket::Tls(tls) => exchange::<R>(*tls, &outgoing, &reports).await,
    }
}

/// The failure of a TLS connection to `host:port` that turned out to be a plaintext Kafka
/// listener.
fn plaintext_listener(host: &str, port: u16) -> TlsFailure {
    TlsFailure {
        kind: Some(TlsErrorKind::NotTls),
        detail: format!(
            "{host}:{port} closed the TLS handshake without a byte and answered a plaintext \
             Kafka ApiVersions request: the port speaks plaintext Kafka, not TLS \
             (security.protocol should be PLAINTEXT/SASL_PLAINTEXT, or the port is wrong)"
        ),
    }
}

/// A connected socket.
enum Socket<T: TcpSocket> {
    Plain(T),
    /// Boxed: a rustls connection is large.
    Tls(Box<TlsSocket<T::Io>>),
}

/// Why connecting failed.
enum Failure {
    Io(std::io::Error),
    Handshake(HandshakeError),
}

/// Connects, sets `TCP_NODELAY` and, with `tls`, runs the handshake. Unbounded in time.
async fn establish<R: Runtime>(
    host: &str,
    port: u16,
    tls: Option<&TlsSetup>,
) -> Result<Socket<R::Tcp>, Failure> {
    let tcp = R::connect_tcp(host, port).await.map_err(Failure::Io)?;
    if let Err(error) = tcp.set_nodelay(true) {
        tracing::debug!(%host, port, %error, "cannot set TCP_NODELAY");
    }
    match tls {
        None => Ok(Socket::Plain(tcp)),
        Some(setup) => tls::handshake(tcp.into_io(), setup)
            .await
            .map(|tls| Socket::Tls(Box::new(tls)))
            .map_err(Failure::Handshake),
    }
}

/// How the read or write loop ended.
enum Ended {
    /// The stream ended or broke.
    Broken,
    /// A TLS error before the broker's first answer (TLS 1.3 completes the client's side of
    /// the handshake before the broker checks the client certificate; a refusal arrives as
    /// the first read).
    Tls(TlsFailure),
    /// The engine closed the connection or the loop is gone: nothing to report.
    Quietly,
}

/// How long the read loop may still run after a write failed, to learn why (see
/// [`exchange`]).
const READ_AFTER_WRITE_FAILURE: Duration = Duration::from_secs(1);

/// Runs the read and write loops over the halves of `stream` until one ends; reports
/// `Disconnected` if the stream broke, `TlsFailed` if TLS failed (nothing if the engine closed
/// the connection or the loop is gone). Generic over the stream type: a TLS stream goes
/// through the same loops.
///
/// When a write fails, the read loop runs on for up to [`READ_AFTER_WRITE_FAILURE`] (a
/// broken socket ends it at once): a broker refusing the client certificate under TLS 1.3
/// sends its alert and closes after the client's side of the handshake completed, and the
/// engine's first request may hit the closed socket before the alert is read. The alert, not
/// the failed write, says what went wrong.
async fn exchange<R: Runtime>(
    stream: impl SplitStream,
    outgoing: &async_channel::Receiver<Bytes>,
    reports: &ConnectionReports,
) {
    let (reader, writer) = stream.split();
    let read = read_loop(reader, reports);
    futures_lite::pin!(read);
    let write = async {
        if write_loop(writer, outgoing).await {
            None
        } else {
            Some(Ended::Quietly)
        }
    };
    let ended = match future::or(async { Some(read.as_mut().await) }, write).await {
        Some(ended) => ended,
        None => {
            let grace = async {
                R::sleep(READ_AFTER_WRITE_FAILURE).await;
                Ended::Broken
            };
            future::or(read, grace).await
        }
    };
    match ended {
        Ended::Broken => {
            reports.closed().await;
        }
        Ended::Tls(failure) => {
            reports.tls_failed(failure).await;
        }
        Ended::Quietly => {}
    }
}

/// Forwards reads until the stream ends or breaks, or the loop is gone.
async fn read_loop(mut reader: impl ReadHalf, reports: &ConnectionReports) -> Ended {
    let mut reads = FrameReads::default();
    let mut answered = false;
    loop {
        match reader.read(reads.room()).await {
            Ok(0) => return Ended::Broken,
            Ok(n) => {
                answered = true;
                // Whole frames only, so the engine slices them without copying.
                if let Some(chunk) = reads.filled(n)
                    && !reports.received(chunk).await
                {
                    return Ended::Quietly;
                }
            }
            Err(error) => {
                tracing::debug!(%error, "read failed");
                return match failure_of_io(&error) {
                    Some(failure) if !answered => Ended::Tls(failure),
                    _ => Ended::Broken,
                };
            }
        }
    }
}

/// Writes frames in order until a write fails (`true`) or the engine closed the connection
/// (`false`).
async fn write_loop(mut writer: impl WriteHalf, outgoing: &async_channel::Receiver<Bytes>) -> bool {
    while let Ok(frame) = outgoing.recv().await {
        if let Err(error) = writer.write_all(&frame).await {
            tracing::debug!(%error, "write failed");
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests;
