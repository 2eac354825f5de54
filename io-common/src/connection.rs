//! The task of one broker connection, written once for every [`Runtime`]: connect within
//! the timeout, set `TCP_NODELAY`, then forward every read to the stream thread's loop and
//! write every frame the engine sends, whole and in order.

use std::time::Duration;

use bytes::Bytes;
use futures_lite::future;
use kstreams_core::engine::ConnectionId;

use crate::message::Input;
use crate::runtime::{ReadHalf, Runtime, SplitStream, TcpSocket, WriteHalf};

/// Size of one socket read.
const READ_CHUNK: usize = 64 * 1024;

/// One connection task's job (see [`run`]).
pub(crate) struct ConnectionSpec {
    /// Host to dial (after the address map).
    pub(crate) host: String,
    /// Port to dial.
    pub(crate) port: u16,
    /// Longest time connecting may take.
    pub(crate) connect_timeout: Duration,
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
    pub(crate) sender: async_channel::Sender<Input>,
}

impl ConnectionReports {
    async fn connected(&self) -> bool {
        self.send(Input::Connected {
            connection: self.connection,
        })
        .await
    }

    async fn received(&self, bytes: Bytes) -> bool {
        self.send(Input::Received {
            connection: self.connection,
            bytes,
        })
        .await
    }

    async fn closed(&self) -> bool {
        self.send(Input::Disconnected {
            connection: self.connection,
        })
        .await
    }

    async fn send(&self, input: Input) -> bool {
        self.sender.send(input).await.is_ok()
    }
}

/// The connection task:
/// 1. connect to `host:port`; on failure or after `connect_timeout`, report `Disconnected` and
///    end;
/// 2. set `TCP_NODELAY` and report `Connected`;
/// 3. concurrently: pass each non-empty read on as `Received` (end of stream or an error →
///    `Disconnected`), and write each frame of `outgoing` whole, in order (an error →
///    `Disconnected`;
///    `outgoing` closed → end quietly: the engine closed the connection).
///
/// Dropping the task (the loop does when the engine closes or replaces the connection)
/// closes the socket.
pub(crate) async fn run<R: Runtime>(spec: ConnectionSpec) {
    let ConnectionSpec {
        host,
        port,
        connect_timeout,
        outgoing,
        reports,
    } = spec;
    let connect = async { Some(R::connect_tcp(&host, port).await) };
    let timeout = async {
        R::sleep(connect_timeout).await;
        None
    };
    let stream = match future::or(connect, timeout).await {
        Some(Ok(stream)) => stream,
        Some(Err(error)) => {
            tracing::debug!(%host, port, %error, "connect failed");
            reports.closed().await;
            return;
        }
        None => {
            tracing::debug!(%host, port, "connect timed out");
            reports.closed().await;
            return;
        }
    };
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%host, port, %error, "cannot set TCP_NODELAY");
    }
    if !reports.connected().await {
        return;
    }
    exchange(stream, &outgoing, &reports).await;
}

/// Runs the read and write loops over the halves of `stream` until one ends; reports
/// `Disconnected` if the stream broke (not if the engine closed the connection or the loop is
/// gone). Generic over the stream type: a TLS stream goes through the same loops.
async fn exchange(
    stream: impl SplitStream,
    outgoing: &async_channel::Receiver<Bytes>,
    reports: &ConnectionReports,
) {
    let (reader, writer) = stream.split();
    let broken = future::or(read_loop(reader, reports), write_loop(writer, outgoing)).await;
    if broken {
        reports.closed().await;
    }
}

/// Forwards reads until the stream ends (`true`) or the loop is gone (`false`).
async fn read_loop(mut reader: impl ReadHalf, reports: &ConnectionReports) -> bool {
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) => return true,
            Ok(n) => {
                let read = buf
                    .get(..n)
                    .expect("ReadHalf::read reports no more bytes than the buffer holds");
                if !reports.received(Bytes::copy_from_slice(read)).await {
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
