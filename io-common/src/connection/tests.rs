//! The connection task against a scripted runtime: what it reports and writes for a refused,
//! a hanging and a working connection.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::rc::Rc;
use std::time::Duration;

use super::*;

/// How the scripted runtime's next connect goes.
enum Connect {
    Refuse,
    Hang,
    Accept(ScriptedTcp),
}

thread_local! {
    static NEXT_CONNECT: RefCell<Option<Connect>> = const { RefCell::new(None) };
    static SLEPT: RefCell<Vec<Duration>> = const { RefCell::new(Vec::new()) };
}

/// A runtime whose connect does what [`NEXT_CONNECT`] says and whose sleeps end after the
/// executor ran its other futures three times (recorded in [`SLEPT`]).
struct Scripted;

impl Runtime for Scripted {
    type Spawned = ();
    type Tcp = ScriptedTcp;

    fn block_on<F: Future + 'static>(future: F) -> io::Result<F::Output> {
        Ok(future::block_on(future))
    }

    fn spawn_local(_future: impl Future<Output = ()> + 'static) {
        unreachable!("the connection task spawns nothing")
    }

    async fn connect_tcp(_host: &str, _port: u16) -> io::Result<ScriptedTcp> {
        let next = NEXT_CONNECT.with(|c| c.borrow_mut().take());
        match next.expect("a scripted connect") {
            Connect::Refuse => Err(io::ErrorKind::ConnectionRefused.into()),
            Connect::Hang => future::pending().await,
            Connect::Accept(tcp) => Ok(tcp),
        }
    }

    async fn sleep(duration: Duration) {
        SLEPT.with(|s| s.borrow_mut().push(duration));
        for _ in 0..3 {
            future::yield_now().await;
        }
    }

    fn yield_now() -> impl Future<Output = ()> {
        future::yield_now()
    }
}

/// A stream whose reads come from `incoming` (closed: end of stream) and whose writes land
/// in `written` (or fail).
struct ScriptedTcp {
    incoming: async_channel::Receiver<io::Result<Vec<u8>>>,
    written: Rc<RefCell<Vec<Vec<u8>>>>,
    nodelay: Rc<RefCell<bool>>,
    fail_writes: bool,
}

struct ScriptedReader(async_channel::Receiver<io::Result<Vec<u8>>>);

struct ScriptedWriter {
    written: Rc<RefCell<Vec<Vec<u8>>>>,
    fail: bool,
}

impl TcpSocket for ScriptedTcp {
    fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        *self.nodelay.borrow_mut() = nodelay;
        Ok(())
    }

    type Io = futures_lite::io::Cursor<Vec<u8>>;

    fn into_io(self) -> Self::Io {
        unreachable!("these tests run without TLS")
    }
}

impl SplitStream for ScriptedTcp {
    type Reader = ScriptedReader;
    type Writer = ScriptedWriter;

    fn split(self) -> (ScriptedReader, ScriptedWriter) {
        let writer = ScriptedWriter {
            written: self.written,
            fail: self.fail_writes,
        };
        (ScriptedReader(self.incoming), writer)
    }
}

impl ReadHalf for ScriptedReader {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.0.recv().await {
            Ok(Ok(chunk)) => {
                buf[..chunk.len()].copy_from_slice(&chunk);
                Ok(chunk.len())
            }
            Ok(Err(error)) => Err(error),
            Err(_) => Ok(0),
        }
    }
}

impl WriteHalf for ScriptedWriter {
    async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.fail {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        self.written.borrow_mut().push(bytes.to_vec());
        Ok(())
    }
}

/// What a test holds of one connection: the peer's side of the scripted stream, the engine's
/// sender of frames and the loop's receiver of reports.
struct Harness {
    spec: ConnectionSpec,
    peer: async_channel::Sender<io::Result<Vec<u8>>>,
    written: Rc<RefCell<Vec<Vec<u8>>>>,
    nodelay: Rc<RefCell<bool>>,
    frames: async_channel::Sender<Bytes>,
    reports: async_channel::Receiver<Report>,
}

const TIMEOUT: Duration = Duration::from_millis(1234);

fn harness(connect: impl FnOnce(ScriptedTcp) -> Connect, fail_writes: bool) -> Harness {
    let (peer, incoming) = async_channel::unbounded();
    let written = Rc::new(RefCell::new(Vec::new()));
    let nodelay = Rc::new(RefCell::new(false));
    let tcp = ScriptedTcp {
        incoming,
        written: written.clone(),
        nodelay: nodelay.clone(),
        fail_writes,
    };
    NEXT_CONNECT.with(|c| *c.borrow_mut() = Some(connect(tcp)));
    SLEPT.with(|s| s.borrow_mut().clear());
    let (frames, outgoing) = async_channel::unbounded();
    let (sender, reports) = async_channel::bounded(16);
    let spec = ConnectionSpec {
        host: "broker".into(),
        port: 9092,
        connect_timeout: TIMEOUT,
        tls: None,
        outgoing,
        reports: ConnectionReports {
            connection: ConnectionId::from_raw(7),
            sender,
        },
    };
    Harness {
        spec,
        peer,
        written,
        nodelay,
        frames,
        reports,
    }
}

/// The reports received so far, as short names (`received:<bytes>` for reads).
fn reports(receiver: &async_channel::Receiver<Report>) -> Vec<String> {
    let ours = ConnectionId::from_raw(7);
    let mut seen = Vec::new();
    while let Ok(report) = receiver.try_recv() {
        seen.push(match report {
            Report::Engine(Input::Connected { connection }) if connection == ours => {
                "connected".to_owned()
            }
            Report::Engine(Input::Received { connection, bytes }) if connection == ours => {
                format!("received:{}", String::from_utf8_lossy(&bytes))
            }
            Report::Engine(Input::Disconnected { connection }) if connection == ours => {
                "closed".to_owned()
            }
            Report::TlsFailed {
                connection,
                failure,
            } if connection == ours => match failure.kind {
                Some(kind) => format!("tls:{kind:?}"),
                None => format!("tls-transient:{}", failure.detail),
            },
            other => panic!("not a report of this connection: {other:?}"),
        });
    }
    seen
}

#[test]
fn a_refused_connect_reports_closed_only() {
    let h = harness(|_| Connect::Refuse, false);
    future::block_on(run::<Scripted>(h.spec));
    assert_eq!(reports(&h.reports), ["closed"]);
}

#[test]
fn a_hanging_connect_gives_up_after_the_connect_timeout() {
    let h = harness(|_| Connect::Hang, false);
    future::block_on(run::<Scripted>(h.spec));
    assert_eq!(reports(&h.reports), ["closed"]);
    assert_eq!(SLEPT.with(|s| s.borrow().clone()), [TIMEOUT]);
}

#[test]
fn frames_are_written_whole_in_order_and_a_closed_outgoing_ends_quietly() {
    let h = harness(Connect::Accept, false);
    for frame in ["first frame", "second"] {
        h.frames.try_send(Bytes::from(frame)).unwrap();
    }
    drop(h.frames); // the engine closed the connection
    future::block_on(run::<Scripted>(h.spec));
    assert!(*h.nodelay.borrow());
    assert_eq!(
        *h.written.borrow(),
        [b"first frame".to_vec(), b"second".to_vec()]
    );
    assert_eq!(reports(&h.reports), ["connected"]);
    drop(h.peer);
}

#[test]
fn reads_are_forwarded_as_whole_frames_and_the_end_of_the_stream_reports_closed() {
    let h = harness(Connect::Accept, false);
    // Frames "abc" and "de" (4-byte length prefixes) cut across three reads, and a partial
    // frame the stream ends in.
    let reads: [&[u8]; 4] = [b"\0\0\0\x03a", b"bc\0\0\0\x02d", b"e", b"\0\0\0\x09xy"];
    for read in reads {
        h.peer.try_send(Ok(read.to_vec())).unwrap();
    }
    drop(h.peer); // the broker closed the socket
    future::block_on(run::<Scripted>(h.spec));
    assert_eq!(
        reports(&h.reports),
        [
            "connected",
            "received:\0\0\0\x03abc",
            "received:\0\0\0\x02de",
            "closed"
        ]
    );
    drop(h.frames);
}

#[test]
fn a_failed_read_or_write_reports_closed() {
    let h = harness(Connect::Accept, false);
    h.peer
        .try_send(Err(io::ErrorKind::ConnectionReset.into()))
        .unwrap();
    future::block_on(run::<Scripted>(h.spec));
    assert_eq!(reports(&h.reports), ["connected", "closed"]);
    drop(h.frames);

    let h = harness(Connect::Accept, true);
    h.frames.try_send(Bytes::from_static(b"frame")).unwrap();
    future::block_on(run::<Scripted>(h.spec));
    assert_eq!(reports(&h.reports), ["connected", "closed"]);
    drop(h.peer);
}

#[test]
fn a_gone_loop_ends_the_task_without_waiting() {
    let h = harness(Connect::Accept, false);
    drop(h.reports);
    // Would wait for reads and frames forever if it did not notice the loop is gone.
    future::block_on(run::<Scripted>(h.spec));
    drop((h.peer, h.frames));
}

/// A TLS error wrapped in an I/O error, as the rustls streams return it.
fn refused_certificate() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired),
    )
}

#[test]
fn a_tls_error_before_the_first_answer_is_a_tls_failure_and_after_it_a_disconnect() {
    let h = harness(Connect::Accept, false);
    h.peer.try_send(Err(refused_certificate())).unwrap();
    future::block_on(run::<Scripted>(h.spec));
    assert_eq!(
        reports(&h.reports),
        ["connected", "tls:ClientCertificateRefused"]
    );
    drop(h.frames);

    let h = harness(Connect::Accept, false);
    h.peer.try_send(Ok(b"answer".to_vec())).unwrap();
    h.peer.try_send(Err(refused_certificate())).unwrap();
    future::block_on(run::<Scripted>(h.spec));
    assert_eq!(
        reports(&h.reports),
        ["connected", "received:answer", "closed"]
    );
    drop(h.frames);
}

/// The broker's alert arrives after the engine's first write hit the closed socket: the
/// alert is still read and reported.
#[test]
fn after_a_failed_write_the_reader_still_reports_why() {
    let h = harness(Connect::Accept, true);
    h.frames.try_send(Bytes::from_static(b"request")).unwrap();
    let peer = h.peer.clone();
    let alert_later = async move {
        future::yield_now().await;
        peer.send(Err(refused_certificate())).await.unwrap();
    };
    future::block_on(future::zip(run::<Scripted>(h.spec), alert_later));
    assert_eq!(
        reports(&h.reports),
        ["connected", "tls:ClientCertificateRefused"]
    );
    assert_eq!(
        SLEPT.with(|s| s.borrow().clone()),
        [READ_AFTER_WRITE_FAILURE],
        "the reader's grace after the failed write (the connect was ready at once)"
    );
    drop((h.peer, h.frames));
}

/// A TLS error the configuration does not cause (here an `internal_error` alert) is reported
/// without a kind: the loop takes it for a disconnect.
#[test]
fn a_transient_tls_error_is_reported_without_a_kind() {
    let h = harness(Connect::Accept, false);
    h.peer
        .try_send(Err(io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::InternalError),
        )))
        .unwrap();
    future::block_on(run::<Scripted>(h.spec));
    assert_eq!(
        reports(&h.reports),
        [
            "connected",
            "tls-transient:received fatal alert: InternalError"
        ]
    );
    drop(h.frames);
}
