//! `--metrics-addr HOST:PORT`: the application's metrics (see `kstreams_io_common::metrics`)
//! over HTTP in Prometheus' text format, at `http://HOST:PORT/metrics` (any path answers).
//!
//! `metrics-exporter-prometheus` is the recorder the stream threads publish into (installed
//! once per process; a later server shares it); its own HTTP listener would bring hyper and a
//! tokio server, so a small std responder serves its rendering instead: one thread, one
//! request per connection, `Connection: close`. A client cannot hold it: the request head is
//! read within [`READ_TIMEOUT`] and up to [`MAX_REQUEST`] bytes, the answer written within
//! [`WRITE_TIMEOUT`], and dropping the server waits at most [`STOP_WAIT`] for its thread (a
//! thread still busy with a client then ends on its own, within those timeouts).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// The process's Prometheus recorder (the `metrics` facade takes one global recorder).
static RECORDER: Mutex<Option<PrometheusHandle>> = Mutex::new(None);

/// How long a client may take to send its request.
pub const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// How long writing the answer may block on a client that does not read it.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// The most bytes of a request read (its line and headers); a longer one gets `431`.
pub const MAX_REQUEST: u64 = 8 * 1024;

/// The longest a drop of the server waits for its thread.
pub const STOP_WAIT: Duration = Duration::from_secs(1);

/// Serves the metrics until dropped.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Installs the recorder (once per process) and serves it on `addr` (`HOST:PORT`; port
    /// 0 picks a free one: see [`MetricsServer::addr`]).
    pub fn start(addr: &str) -> Result<Self, String> {
        let handle = recorder()?;
        let listener =
            TcpListener::bind(addr).map_err(|e| format!("--metrics-addr {addr}: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("--metrics-addr: {e}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("metrics-http".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if stopped.load(Ordering::Acquire) {
                        return;
                    }
                    match stream {
                        Ok(stream) => {
                            if let Err(error) = respond(stream, &handle) {
                                tracing::debug!(%error, "metrics request");
                            }
                        }
                        Err(error) => tracing::warn!(%error, "metrics listener"),
                    }
                }
            })
            .map_err(|e| format!("metrics thread: {e}"))?;
        eprintln!("metrics: Prometheus text format at http://{addr}/metrics");
        Ok(Self {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        let deadline = Instant::now() + STOP_WAIT;
        self.stop.store(true, Ordering::Release);
        // Wakes the blocking accept, which then sees the flag (queued in the listener's
        // backlog if the thread is busy with a client: it stops after that one).
        let _ = TcpStream::connect_timeout(&self.addr, STOP_WAIT / 2);
        let Some(thread) = self.thread.take() else {
            return;
        };
        while !thread.is_finished() {
            if Instant::now() >= deadline {
                // Detached: it ends once its client's read or write times out.
                tracing::debug!("metrics server still busy with a client; not waited for");
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = thread.join();
    }
}

/// The process's recorder, installed on first use, with the batch size buckets as the
/// engine's (so its histogram is exact).
fn recorder() -> Result<PrometheusHandle, String> {
    let mut recorder = RECORDER.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(handle) = &*recorder {
        return Ok(handle.clone());
    }
    let bounds: Vec<f64> = kstreams_core::engine::BATCH_SIZE_BOUNDS
        .iter()
        .map(|&b| b as f64)
        .collect();
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(kstreams_io_common::metrics::facade::BATCH_SIZE.into()),
            &bounds,
        )
        .map_err(|e| format!("metrics buckets: {e}"))?
        .install_recorder()
        .map_err(|e| format!("metrics recorder: {e}"))?;
    Ok(recorder.insert(handle).clone())
}

/// Reads one request's head and answers it with the rendered metrics.
fn respond(stream: TcpStream, handle: &PrometheusHandle) -> std::io::Result<()> {
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let mut reader = BufReader::new((&stream).take(MAX_REQUEST));
    let mut line = String::new();
    let mut complete = false;
    // The request line and headers, up to the blank line, in at most MAX_REQUEST bytes.
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        if line == "\r\n" || line == "\n" {
            complete = true;
            break;
        }
    }
    let mut stream = &stream;
    if !complete && reader.into_inner().limit() == 0 {
        return write!(
            stream,
            "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    }
    let body = handle.render();
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}
