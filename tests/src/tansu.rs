//! A [Tansu](https://github.com/tansu-io/tansu) 0.6.0 broker for end-to-end tests: a standalone,
//! independently written Kafka-compatible broker, started as a child process on a free
//! loopback port with in-memory storage, and killed when the [`Tansu`] value is dropped.
//!
//! The binary is installed by `scripts/install-tansu.sh` (`.ci/run` calls it). It is looked up
//! in this order: `$KSTREAMS_TANSU`, `$KSTREAMS_TOOLS_DIR/bin/tansu`,
//! `$HOME/.cache/kstreams-tools/bin/tansu`, then `tansu` on `PATH`. A broker that cannot be
//! found or does not become ready is a [`TansuError`] naming what failed — tests turn it into a
//! failure, never a skip.
//!
//! The broker's output goes to a temporary file (its end is in [`TansuError::NotReady`] and
//! [`Tansu::log_tail`]); `KSTREAMS_TANSU_LOG=PATH` keeps it at PATH instead, and `TANSU_LOG`
//! sets its `RUST_LOG` (default `warn`).

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kafka_protocol::messages::ApiVersionsRequest;

use crate::raw_request::round_trip;
use crate::tools::{find_tool, log_tail};

/// How long a starting broker may take to answer ApiVersions.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a Tansu broker is not available.
#[derive(Debug, thiserror::Error)]
pub enum TansuError {
    /// No binary at any of the places looked at.
    #[error(
        "no tansu binary found (looked at: {looked_at}); install it with scripts/install-tansu.sh \
         (`.ci/run` does) or set KSTREAMS_TANSU to its path"
    )]
    NotInstalled {
        /// The paths tried, comma-separated.
        looked_at: String,
    },
    /// Spawning the process failed.
    #[error("starting {binary}: {source}")]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The broker exited or did not answer ApiVersions in time.
    #[error("tansu on {address} not ready after {waited:?}: {reason}; its log ends with:\n{log}")]
    NotReady {
        /// Where it should listen.
        address: SocketAddr,
        /// How long we waited.
        waited: Duration,
        /// The last problem seen.
        reason: String,
        /// The end of the broker's output.
        log: String,
    },
    /// No free loopback port.
    #[error("no free loopback port: {0}")]
    NoPort(std::io::Error),
}

/// A running Tansu broker; killed (and waited for) on drop.
#[derive(Debug)]
pub struct Tansu {
    child: Child,
    address: SocketAddr,
    log_path: PathBuf,
    _log_dir: tempfile::TempDir,
}

impl Tansu {
    /// Starts a broker on a free loopback port with `memory://` storage and waits until it
    /// answers an ApiVersions request.
    pub fn start() -> Result<Self, TansuError> {
        let binary = find_binary()?;
        let address = free_port()?;
        let log_dir = tempfile::tempdir().map_err(|source| TansuError::Spawn {
            binary: binary.clone(),
            source,
        })?;
        // KSTREAMS_TANSU_LOG keeps the broker's output at that path (for debugging a test).
        let log_path = std::env::var_os("KSTREAMS_TANSU_LOG")
            .map(PathBuf::from)
            .unwrap_or_else(|| log_dir.path().join("tansu.log"));
        let log = std::fs::File::create(&log_path).map_err(|source| TansuError::Spawn {
            binary: binary.clone(),
            source,
        })?;
        let log_err = log.try_clone().map_err(|source| TansuError::Spawn {
            binary: binary.clone(),
            source,
        })?;
        let url = format!("tcp://{address}");
        let child = Command::new(&binary)
            .arg("broker")
            .args(["--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .env(
                "RUST_LOG",
                std::env::var("TANSU_LOG").unwrap_or("warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()
            .map_err(|source| TansuError::Spawn {
                binary: binary.clone(),
                source,
            })?;
        let mut tansu = Self {
            child,
            address,
            log_path,
            _log_dir: log_dir,
        };
        tansu.wait_ready()?;
        Ok(tansu)
    }

    /// `host:port` to bootstrap from.
    pub fn bootstrap(&self) -> String {
        self.address.to_string()
    }

    /// The end of the broker's output so far (for failure messages).
    pub fn log_tail(&self) -> String {
        log_tail(&self.log_path)
    }

    fn wait_ready(&mut self) -> Result<(), TansuError> {
        let started = Instant::now();
        let mut reason = String::from("not tried");
        while started.elapsed() < READY_TIMEOUT {
            if let Ok(Some(status)) = self.child.try_wait() {
                reason = format!("the process exited ({status})");
                break;
            }
            match api_versions(self.address) {
                Ok(()) => return Ok(()),
                Err(e) => reason = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(TansuError::NotReady {
            address: self.address,
            waited: started.elapsed(),
            reason,
            log: self.log_tail(),
        })
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_binary() -> Result<PathBuf, TansuError> {
    find_tool("KSTREAMS_TANSU", "tansu").map_err(|looked_at| TansuError::NotInstalled { looked_at })
}

/// A loopback port nobody listens on right now (the OS hands out a fresh ephemeral port).
fn free_port() -> Result<SocketAddr, TansuError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(TansuError::NoPort)?;
    listener.local_addr().map_err(TansuError::NoPort)
}

/// One ApiVersions v0 round trip; `Ok` when the broker answers without an error code.
fn api_versions(address: SocketAddr) -> Result<(), String> {
    let answer = round_trip(
        address,
        &ApiVersionsRequest::default(),
        0,
        Duration::from_secs(2),
    )?;
    match answer.error_code {
        0 => Ok(()),
        code => Err(format!("ApiVersions error code {code}")),
    }
}
