//! [`probe`]: is the listener that closed a TLS handshake without a byte a plaintext Kafka
//! listener?
//!
//! A Kafka broker never speaks first, so a plaintext listener that receives a TLS hello does
//! not answer it: it reads the hello's first bytes as a request size (about 369 MB), refuses
//! it and closes the socket. A TLS broker that is restarting behind docker-proxy,
//! `kubectl port-forward` or a load balancer with no healthy backend, or one over its
//! `max.connections` quota, accepts the TCP connection and closes it the same way. Counting
//! such closes cannot tell the two apart; asking can: the connection task opens a fresh TCP
//! connection to the same address and sends a plaintext Kafka ApiVersions v0 request
//! ([`REQUEST`]). A plaintext Kafka listener answers it (a supported version, or an
//! `UNSUPPORTED_VERSION` error: either way a response frame with our correlation id); a TLS
//! listener answers with an alert or closes, and a listener with no broker behind it closes.
//! Only an answer proves a plaintext Kafka listener (`TlsErrorKind::NotTls`, fatal); anything
//! else (refused, closed, timed out, other bytes) is an ordinary disconnect.
//!
//! Written once for every [`Runtime`] (its connect and sleep, futures-lite's I/O).

use std::io;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt, future};

use crate::runtime::{Runtime, TcpSocket};

/// The correlation id of [`REQUEST`] ("kstp"): arbitrary, but unlikely to appear by chance
/// in bytes 4..8 of a reply that is not a Kafka response to it.
const CORRELATION_ID: i32 = 0x6b73_7470;

/// The plaintext Kafka request the probe sends: ApiVersions v0, framed. Every Kafka broker
/// answers ApiVersions at any version (with `UNSUPPORTED_VERSION` and v0's layout if it does
/// not serve v0), and v0 has the simplest header (no tagged fields) and an empty body:
///
/// | bytes | field                       | value            |
/// |-------|-----------------------------|------------------|
/// | 0..4  | frame size (i32)            | 10               |
/// | 4..6  | api_key (i16)               | 18 (ApiVersions) |
/// | 6..8  | api_version (i16)           | 0                |
/// | 8..12 | correlation_id (i32)        | [`CORRELATION_ID`] |
/// | 12..14| client_id length (i16)      | -1 (null)        |
pub(crate) const REQUEST: [u8; 14] = {
    let c = CORRELATION_ID.to_be_bytes();
    [0, 0, 0, 10, 0, 18, 0, 0, c[0], c[1], c[2], c[3], 0xff, 0xff]
};

/// The largest response size taken as plausible: an ApiVersions v0 response is 6 bytes
/// plus 6 per API (well under 1 KiB); a TLS alert read as a size is about 352 MB.
const MAX_REPLY_SIZE: i32 = 1 << 20;

/// What the probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The listener answered the plaintext request like a Kafka broker.
    PlaintextKafka,
    /// Anything else, and why (for the log).
    Inconclusive(String),
}

/// Sends [`REQUEST`] over a fresh connection to `host:port` and reads the reply's first 8
/// bytes, all within `timeout`.
pub(crate) async fn probe<R: Runtime>(host: &str, port: u16, timeout: Duration) -> Verdict {
    let ask = async {
        let tcp = R::connect_tcp(host, port).await?;
        ask(tcp.into_io()).await
    };
    let timed_out = async {
        R::sleep(timeout).await;
        Err(io::Error::new(io::ErrorKind::TimedOut, "no answer in time"))
    };
    match future::or(ask, timed_out).await {
        Ok(head) if is_kafka_reply(head) => Verdict::PlaintextKafka,
        Ok(head) => Verdict::Inconclusive(format!("answered {head:02x?}, not a Kafka response")),
        Err(error) => Verdict::Inconclusive(error.to_string()),
    }
}

/// Writes [`REQUEST`] to `io` and reads the first 8 bytes of the reply.
async fn ask(
    mut io: impl futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin,
) -> io::Result<[u8; 8]> {
    io.write_all(&REQUEST).await?;
    io.flush().await?;
    let mut head = [0u8; 8];
    io.read_exact(&mut head).await?;
    Ok(head)
}

/// A Kafka response to [`REQUEST`] starts with a plausible size and our correlation id.
fn is_kafka_reply(head: [u8; 8]) -> bool {
    let [s0, s1, s2, s3, c0, c1, c2, c3] = head;
    let size = i32::from_be_bytes([s0, s1, s2, s3]);
    let correlation_id = i32::from_be_bytes([c0, c1, c2, c3]);
    (4..=MAX_REPLY_SIZE).contains(&size) && correlation_id == CORRELATION_ID
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_an_api_versions_v0_frame_with_a_null_client_id() {
        let size = i32::from_be_bytes(REQUEST[0..4].try_into().unwrap());
        assert_eq!(size as usize, REQUEST.len() - 4);
        assert_eq!(i16::from_be_bytes([REQUEST[4], REQUEST[5]]), 18);
        assert_eq!(i16::from_be_bytes([REQUEST[6], REQUEST[7]]), 0);
        assert_eq!(
            i32::from_be_bytes(REQUEST[8..12].try_into().unwrap()),
            CORRELATION_ID
        );
        assert_eq!(i16::from_be_bytes([REQUEST[12], REQUEST[13]]), -1);
    }

    #[test]
    fn only_a_plausible_size_and_our_correlation_id_make_a_kafka_reply() {
        let reply = |size: i32, correlation_id: i32| {
            let mut head = [0u8; 8];
            head[..4].copy_from_slice(&size.to_be_bytes());
            head[4..].copy_from_slice(&correlation_id.to_be_bytes());
            head
        };
        assert!(is_kafka_reply(reply(400, CORRELATION_ID)));
        assert!(
            is_kafka_reply(reply(6, CORRELATION_ID)),
            "an error response"
        );
        assert!(!is_kafka_reply(reply(400, 1)), "another correlation id");
        assert!(!is_kafka_reply(reply(0, CORRELATION_ID)));
        assert!(!is_kafka_reply(reply(-1, CORRELATION_ID)));
        assert!(!is_kafka_reply(reply(MAX_REPLY_SIZE + 1, CORRELATION_ID)));
        // A TLS alert record (a TLS listener refusing the plaintext bytes).
        assert!(!is_kafka_reply([
            0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32, 0x00
        ]));
        // The request echoed back.
        assert!(!is_kafka_reply(REQUEST[..8].try_into().unwrap()));
    }

    /// The exchange itself, over an in-memory duplex: what was written, what was read.
    #[test]
    fn ask_writes_the_request_and_reads_the_replys_head() {
        let mut reply = Vec::new();
        reply.extend_from_slice(&10i32.to_be_bytes());
        reply.extend_from_slice(&CORRELATION_ID.to_be_bytes());
        reply.extend_from_slice(&[0, 35, 0, 0, 0, 0]);
        let mut stream = Duplex {
            incoming: futures_lite::io::Cursor::new(reply),
            written: Vec::new(),
        };
        let head = future::block_on(ask(&mut stream)).unwrap();
        assert!(is_kafka_reply(head));
        assert_eq!(stream.written, REQUEST);

        let mut closed = Duplex {
            incoming: futures_lite::io::Cursor::new(Vec::new()),
            written: Vec::new(),
        };
        let error = future::block_on(ask(&mut closed)).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
    }

    /// Reads from `incoming`, records writes.
    struct Duplex {
        incoming: futures_lite::io::Cursor<Vec<u8>>,
        written: Vec<u8>,
    }

    impl futures_lite::AsyncRead for Duplex {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut [u8],
        ) -> std::task::Poll<io::Result<usize>> {
            std::pin::Pin::new(&mut self.incoming).poll_read(cx, buf)
        }
    }

    impl futures_lite::AsyncWrite for Duplex {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<io::Result<usize>> {
            self.written.extend_from_slice(buf);
            std::task::Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn poll_close(
            self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }
}
