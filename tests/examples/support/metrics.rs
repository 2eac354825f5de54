//! `--metrics-addr HOST:PORT`: the application's metrics (see `kstreams_io_common::metrics`)
//! over HTTP in Prometheus' text format, at `http://HOST:PORT/metrics` (any path answers).
//!
//! `metrics-exporter-prometheus` is the recorder the stream threads publish into (installed
//! once per process; a later server shares it); its own HTTP listener would bring hyper and a
//! tokio server, so a small std responder serves its rendering instead: one thread, one
//! request per connection, `Connection: close`.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// The process's Prometheus recorder (the `metrics` facade takes one global recorder).
static RECORDER: Mutex<Option<PrometheusHandle>> = Mutex::new(None);

/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

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
        self.stop.store(true, Ordering::Release);
        // Wakes the blocking accept, which then sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
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
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    // The request line and headers, up to the blank line (bounded).
    for _ in 0..100 {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    let body = handle.render();
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}
