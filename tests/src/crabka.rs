//! A crabka-broker 0.3.0 for end-to-end tests: a single-node Kafka-compatible broker written in
//! Rust that serves transactions (EndTxn, TxnOffsetCommit, read_committed fetches with
//! aborted-transaction lists, fencing), classic groups and CreateTopics — the broker the
//! exactly-once tests run on (Tansu 0.6.0 has no transactions; librdkafka's mock cluster lists
//! no aborted transactions). Started as a child process with a fresh data directory and killed
//! when the [`Crabka`] value is dropped.
//!
//! The binary is installed by `scripts/install-crabka.sh` (`.ci/run` calls it) and looked up
//! like Tansu's ([`crate::tools::find_tool`]): `$KSTREAMS_CRABKA`,
//! `$KSTREAMS_TOOLS_DIR/bin/crabka-broker`, `$HOME/.cache/kstreams-tools/bin/crabka-broker`,
//! then `PATH`. A broker that cannot be found or does not become ready is a [`CrabkaError`]
//! naming what failed, with the end of its log — tests turn it into a failure, never a skip.
//!
//! Quirks of 0.3.0 this launcher deals with (docs/decisions.md §9):
//! - Its KRaft controller binds `HOST:9093` whatever the client port is, so every broker gets
//!   its own loopback address (`127.A.B.C`, picked per process and start, checked free) and
//!   parallel tests do not collide.
//! - A fresh broker runs transaction version 2 but bumps the producer epoch at every EndTxn
//!   even below EndTxn v5, which fences a client's second transaction. The launcher sets
//!   `transaction.version` to 0 with an UpdateFeatures request before handing the broker out;
//!   commit, abort, TxnOffsetCommit, fencing and read_committed then behave as in Kafka.
//! - Restarting on a data directory with transactional offset commits can fail to load: every
//!   start gets a fresh data directory.
//! - Topics are not auto-created: [`Crabka::create_topic`].
//!
//! `KSTREAMS_CRABKA_LOG=PATH` keeps the broker's output at PATH (default: inside its
//! temporary directory); `CRABKA_LOG` sets its `RUST_LOG` (default `warn`).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::update_features_request::FeatureUpdateKey;
use kafka_protocol::messages::{
    ApiVersionsRequest, CreateTopicsRequest, MetadataRequest, TopicName, UpdateFeaturesRequest,
};
use kafka_protocol::protocol::StrBytes;

use crate::raw_request::round_trip;
use crate::tools::{find_tool, log_tail};

/// How long a starting broker may take to answer and accept the feature update.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a created topic may take to have a leader for every partition.
const TOPIC_TIMEOUT: Duration = Duration::from_secs(15);
/// Reads of one request wait at most this long.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// The port crabka-broker 0.3.0's controller binds on the broker's address.
pub const CONTROLLER_PORT: u16 = 9093;
/// Loopback addresses tried per start before giving up (one may be taken by another process).
const ADDRESS_ATTEMPTS: u32 = 5;
/// The feature the launcher turns down.
const TRANSACTION_VERSION: &str = "transaction.version";

/// Why a crabka broker is not available.
#[derive(Debug, thiserror::Error)]
pub enum CrabkaError {
    /// No binary at any of the places looked at.
    #[error(
        "no crabka-broker binary found (looked at: {looked_at}); install it with \
         scripts/install-crabka.sh (`.ci/run` does) or set KSTREAMS_CRABKA to its path"
    )]
    NotInstalled {
        /// The paths tried, comma-separated.
        looked_at: String,
    },
    /// Creating the data directory or log file, or spawning the process, failed.
    #[error("starting {binary}: {source}")]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// No loopback address with the controller port and a client port free.
    #[error("no free loopback address for a broker: {0}")]
    NoAddress(String),
    /// The broker exited, did not answer, or refused the feature update in time.
    #[error(
        "crabka-broker on {address} not ready after {waited:?}: {reason}; its log ends with:\n{log}"
    )]
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
    /// CreateTopics failed, or the topic got no leaders in time.
    #[error(
        "creating topic {topic} on crabka-broker {address}: {reason}; its log ends with:\n{log}"
    )]
    CreateTopic {
        /// The topic.
        topic: String,
        /// The broker.
        address: SocketAddr,
        /// What went wrong.
        reason: String,
        /// The end of the broker's output.
        log: String,
    },
}

/// A running crabka-broker with `transaction.version` 0; killed (and waited for) on drop.
#[derive(Debug)]
pub struct Crabka {
    child: Child,
    address: SocketAddr,
    log_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Crabka {
    /// Starts a broker on a loopback address of its own with a fresh data directory, waits
    /// until it answers, and sets `transaction.version` to 0.
    pub fn start() -> Result<Self, CrabkaError> {
        let binary = find_tool("KSTREAMS_CRABKA", "crabka-broker")
            .map_err(|looked_at| CrabkaError::NotInstalled { looked_at })?;
        let mut last = None;
        for _ in 0..ADDRESS_ATTEMPTS {
            let address = free_address()?;
            let mut broker = Self::spawn(&binary, address)?;
            match broker.wait_ready() {
                Ok(()) => return Ok(broker),
                // Another process may have taken the address between our check and the bind:
                // a broker that exited at once gets another address.
                Err(error) if broker.exited() && broker.started_and_died_binding() => {
                    tracing::warn!(%address, "crabka-broker could not bind; trying another address");
                    last = Some(error);
                }
                Err(error) => return Err(error),
            }
        }
        Err(last.unwrap_or_else(|| CrabkaError::NoAddress("no attempt made".into())))
    }

    fn spawn(binary: &PathBuf, address: SocketAddr) -> Result<Self, CrabkaError> {
        let spawn_error = |source| CrabkaError::Spawn {
            binary: binary.clone(),
            source,
        };
        let dir = tempfile::tempdir().map_err(spawn_error)?;
        let data = dir.path().join("data");
        std::fs::create_dir(&data).map_err(spawn_error)?;
        std::fs::write(data.join("meta.properties.json"), meta_properties())
            .map_err(spawn_error)?;
        let log_path = std::env::var_os("KSTREAMS_CRABKA_LOG")
            .map(PathBuf::from)
            .unwrap_or_else(|| dir.path().join("crabka.log"));
        let log = std::fs::File::create(&log_path).map_err(spawn_error)?;
        let log_err = log.try_clone().map_err(spawn_error)?;
        let child = Command::new(binary)
            .arg("--listen-addr")
            .arg(address.to_string())
            .arg("--log-dir")
            .arg(&data)
            .args(["--metrics-listen-addr", "none"])
            .args(["--partition-disk-scan-interval-secs", "0"])
            .env(
                "RUST_LOG",
                std::env::var("CRABKA_LOG").unwrap_or("warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()
            .map_err(spawn_error)?;
        Ok(Self {
            child,
            address,
            log_path,
            _dir: dir,
        })
    }

    /// A started broker process whose admin (PLAINTEXT) listener is `address`, for the secured
    /// launcher ([`crate::crabka_secured`]): it shares readiness, topics, log and drop.
    pub(crate) fn adopt(
        child: Child,
        address: SocketAddr,
        log_path: PathBuf,
        dir: tempfile::TempDir,
    ) -> Self {
        Self {
            child,
            address,
            log_path,
            _dir: dir,
        }
    }

    /// `host:port` to bootstrap from.
    pub fn bootstrap(&self) -> String {
        self.address.to_string()
    }

    /// The end of the broker's output so far (for failure messages).
    pub fn log_tail(&self) -> String {
        log_tail(&self.log_path)
    }

    /// Creates `topic` with `partitions` partitions (replication 1) and waits until every
    /// partition has a leader.
    pub fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), CrabkaError> {
        let error = |reason: String| CrabkaError::CreateTopic {
            topic: topic.to_owned(),
            address: self.address,
            reason,
            log: self.log_tail(),
        };
        let name = TopicName(StrBytes::from_string(topic.to_owned()));
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(10_000)
            .with_topics(vec![
                CreatableTopic::default()
                    .with_name(name.clone())
                    .with_num_partitions(partitions)
                    .with_replication_factor(1),
            ]);
        let response = round_trip(self.address, &request, 5, READ_TIMEOUT).map_err(error)?;
        for result in &response.topics {
            if result.error_code != 0 {
                return Err(error(format!(
                    "error code {} ({:?})",
                    result.error_code,
                    result.error_message.as_ref().map(|m| m.as_str())
                )));
            }
        }
        let started = Instant::now();
        let mut last = String::from("not asked");
        while started.elapsed() < TOPIC_TIMEOUT {
            let request = MetadataRequest::default().with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(name.clone())),
            ]));
            match round_trip(self.address, &request, 9, READ_TIMEOUT) {
                Ok(metadata) => {
                    let ready = metadata.topics.first().is_some_and(|t| {
                        t.error_code == 0
                            && t.partitions.len() == usize::try_from(partitions).unwrap_or(0)
                            && t.partitions.iter().all(|p| p.leader_id.0 >= 0)
                    });
                    if ready {
                        return Ok(());
                    }
                    last = format!("metadata: {:?}", metadata.topics.first());
                }
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(error(format!(
            "no leader for every partition after {TOPIC_TIMEOUT:?}: {last}"
        )))
    }

    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    fn started_and_died_binding(&self) -> bool {
        let log = self.log_tail();
        log.contains("Address already in use") || log.contains("AddrInUse")
    }

    /// Waits until the broker answers, lowers `transaction.version` to 0 (a fresh broker
    /// finalizes it at 2 before it answers), and checks that ApiVersions no longer reports it.
    pub(crate) fn wait_ready(&mut self) -> Result<(), CrabkaError> {
        let started = Instant::now();
        let mut reason = String::from("not tried");
        let mut lowered = false;
        while started.elapsed() < READY_TIMEOUT {
            if let Ok(Some(status)) = self.child.try_wait() {
                reason = format!("the process exited ({status})");
                break;
            }
            match self.transaction_version() {
                Ok(None | Some(0)) if lowered => return Ok(()),
                Ok(level) => {
                    if lowered {
                        reason = format!("{TRANSACTION_VERSION} still {level:?} after the update");
                    }
                    match self.lower_transaction_version() {
                        Ok(()) => lowered = true,
                        Err(e) => {
                            reason = format!("{TRANSACTION_VERSION} {level:?}: UpdateFeatures: {e}")
                        }
                    }
                }
                Err(e) => reason = e,
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(CrabkaError::NotReady {
            address: self.address,
            waited: started.elapsed(),
            reason,
            log: self.log_tail(),
        })
    }

    /// The finalized `transaction.version` from ApiVersions v3 (`None`: not finalized, i.e. 0).
    fn transaction_version(&self) -> Result<Option<i16>, String> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("kstreams-tests"))
            .with_client_software_version(StrBytes::from_static_str("0"));
        let answer = round_trip(self.address, &request, 3, READ_TIMEOUT)?;
        if answer.error_code != 0 {
            return Err(format!("ApiVersions error code {}", answer.error_code));
        }
        Ok(answer
            .finalized_features
            .iter()
            .find(|f| f.name.as_str() == TRANSACTION_VERSION)
            .map(|f| f.max_version_level))
    }

    /// UpdateFeatures v1: `transaction.version` to 0 (an unsafe downgrade, which deletes the
    /// finalized feature).
    fn lower_transaction_version(&self) -> Result<(), String> {
        let request = UpdateFeaturesRequest::default()
            .with_timeout_ms(30_000)
            .with_feature_updates(vec![
                FeatureUpdateKey::default()
                    .with_feature(StrBytes::from_static_str(TRANSACTION_VERSION))
                    .with_max_version_level(0)
                    .with_upgrade_type(3),
            ]);
        let answer = round_trip(self.address, &request, 1, READ_TIMEOUT)?;
        let failed: Vec<String> = answer
            .results
            .iter()
            .filter(|r| r.error_code != 0)
            .map(|r| {
                format!(
                    "{}: {} {:?}",
                    r.feature.as_str(),
                    r.error_code,
                    r.error_message
                )
            })
            .collect();
        if answer.error_code != 0 || !failed.is_empty() {
            return Err(format!(
                "error code {} {:?} {failed:?}",
                answer.error_code, answer.error_message
            ));
        }
        Ok(())
    }
}

impl Drop for Crabka {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What `kafka-storage format` would write: a fresh cluster id and directory id.
pub(crate) fn meta_properties() -> String {
    let cluster = uuid::Uuid::from_u64_pair(seed_from_time(), u64::from(std::process::id()));
    let directory =
        uuid::Uuid::from_u64_pair(seed_from_time().rotate_left(17), next_index().into());
    format!(r#"{{"cluster_id": "{cluster}", "directory_id": "{directory}", "version": 1}}"#)
}

fn seed_from_time() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Starts handed out by this process so far.
static STARTS: AtomicU32 = AtomicU32::new(0);

fn next_index() -> u32 {
    STARTS.fetch_add(1, Ordering::Relaxed)
}

/// A loopback address `127.A.B.C` (A from 10 to 209, B and C from 1 to 254) on which the
/// controller port and a client port are free right now. The sequence starts at a place
/// derived from the process id, so two test processes rarely try the same addresses.
fn free_address() -> Result<SocketAddr, CrabkaError> {
    let base = std::process::id().wrapping_mul(7_919);
    let mut last = String::from("no address tried");
    for _ in 0..64 {
        let n = base.wrapping_add(next_index().wrapping_mul(13)) % (200 * 254 * 254);
        let ip = Ipv4Addr::new(
            127,
            10 + (n / (254 * 254)) as u8,
            1 + ((n / 254) % 254) as u8,
            1 + (n % 254) as u8,
        );
        match TcpListener::bind(SocketAddrV4::new(ip, CONTROLLER_PORT)) {
            Ok(controller) => {
                let client = TcpListener::bind(SocketAddrV4::new(ip, 0))
                    .and_then(|l| l.local_addr())
                    .map_err(|e| CrabkaError::NoAddress(format!("{ip}: {e}")))?;
                drop(controller);
                return Ok(client);
            }
            Err(e) => last = format!("{ip}:{CONTROLLER_PORT}: {e}"),
        }
    }
    Err(CrabkaError::NoAddress(last))
}
