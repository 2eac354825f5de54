//! A crabka-broker 0.3.0 with one secured listener (SASL_PLAINTEXT, SSL or SASL_SSL) beside a
//! PLAINTEXT one for administration, started from a TOML config (`--config-file`; see
//! `/work/shared/tools/crabka/listeners.example.toml`). SCRAM users are created through the
//! PLAINTEXT listener with AlterUserScramCredentials ([`SecuredCrabka::create_scram_user`]).
//!
//! Quirks of 0.3.0 with a config file, which shape this launcher:
//! - Metadata advertises only the inter-broker listener, so the secured listener is made the
//!   inter-broker one: clients bootstrapping from it are sent back to it.
//! - With `--config-file` the binary takes no `--listen-addr`; its KRaft controller then always
//!   binds `127.0.0.1:9093`. Two such brokers cannot run at once on one machine, so every
//!   start takes an exclusive lock on a file in the temporary directory
//!   (`kstreams-crabka-secured.lock`, held until the broker is dropped): secured brokers of
//!   parallel tests and test processes run one after another. (Plain [`Crabka`] brokers use
//!   `127.A.B.C` with A ≥ 10 and do not collide.)
//! - PLAIN users cannot be configured (0.3.0 reads its static PLAIN credentials from neither
//!   the CLI nor the TOML file): with PLAIN enabled, every PLAIN login fails with
//!   SASL_AUTHENTICATION_FAILED.
//!
//! Admin requests (readiness, CreateTopics, AlterUserScramCredentials) go to the PLAINTEXT
//! listener; [`SecuredCrabka::bootstrap`] is the secured one, for the client under test.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kafka_protocol::messages::AlterUserScramCredentialsRequest;
use kafka_protocol::messages::alter_user_scram_credentials_request::ScramCredentialUpsertion;
use kafka_protocol::protocol::StrBytes;
use kstreams_core::sasl::SaslMechanism;
use sha2::{Sha256, Sha512};

use crate::crabka::{Crabka, CrabkaError, meta_properties};
use crate::raw_request::round_trip;
use crate::tools::find_tool;

/// SCRAM iterations of the users created (Kafka's minimum for both mechanisms).
pub const SCRAM_ITERATIONS: u32 = 4096;
/// How long a start may wait for the lock held by another secured broker.
const LOCK_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a SCRAM user may take to become usable on the broker.
const USER_TIMEOUT: Duration = Duration::from_secs(10);

/// The certificate and key of a TLS listener (PEM files the caller wrote).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The server certificate chain.
    pub cert_path: PathBuf,
    /// The server's private key.
    pub key_path: PathBuf,
    /// CA bundle to verify client certificates with (mTLS); `None`: no client certificates.
    pub client_ca_path: Option<PathBuf>,
    /// Whether client certificates are required (only with `client_ca_path`).
    pub require_client_certificate: bool,
}

/// The secured listener of a [`SecuredCrabka`].
#[derive(Debug, Clone)]
pub enum SecuredListener {
    /// SASL over plain TCP, with these mechanisms enabled.
    SaslPlaintext {
        /// Enabled mechanisms.
        mechanisms: Vec<SaslMechanism>,
    },
    /// TLS.
    Ssl(TlsFiles),
    /// SASL over TLS.
    SaslSsl {
        /// Certificate and key.
        tls: TlsFiles,
        /// Enabled mechanisms.
        mechanisms: Vec<SaslMechanism>,
    },
}

impl SecuredListener {
    /// The Kafka listener name (also the inter-broker listener).
    pub fn name(&self) -> &'static str {
        match self {
            Self::SaslPlaintext { .. } => "SASL_PLAINTEXT",
            Self::Ssl(_) => "SSL",
            Self::SaslSsl { .. } => "SASL_SSL",
        }
    }

    fn protocol(&self) -> &'static str {
        match self {
            Self::SaslPlaintext { .. } => "SaslPlaintext",
            Self::Ssl(_) => "Ssl",
            Self::SaslSsl { .. } => "SaslSsl",
        }
    }

    fn tls(&self) -> Option<&TlsFiles> {
        match self {
            Self::Ssl(tls) | Self::SaslSsl { tls, .. } => Some(tls),
            Self::SaslPlaintext { .. } => None,
        }
    }

    fn mechanisms(&self) -> Option<&[SaslMechanism]> {
        match self {
            Self::SaslPlaintext { mechanisms } | Self::SaslSsl { mechanisms, .. } => {
                Some(mechanisms)
            }
            Self::Ssl(_) => None,
        }
    }
}

/// Extra broker settings.
#[derive(Debug, Clone, Default)]
pub struct SecuredOptions {
    /// `[oauthbearer] max_session_lifetime_seconds`: the session lifetime the broker returns
    /// to OAUTHBEARER clients (KIP-368 re-authentication); crabka validates unsecured JWTs
    /// (`alg: none`) unless a JWKS endpoint is configured.
    pub oauthbearer_max_session_lifetime_seconds: Option<u32>,
    /// Make the PLAINTEXT admin listener the inter-broker (advertised) one instead of the
    /// secured listener. For tests whose independent client cannot speak the secured protocol
    /// (rdkafka is built without OpenSSL, so without SCRAM and OAUTHBEARER): it produces and
    /// reads through the admin listener, and the client under test bootstraps from
    /// [`SecuredCrabka::bootstrap`] and maps the advertised admin address to the secured one
    /// (`StreamsConfig::map_broker_address(admin_bootstrap(), bootstrap())`), so every one of
    /// its connections still goes through the secured listener. Off by default: a client
    /// following Metadata must land on the secured listener.
    pub advertise_admin_listener: bool,
}

/// A running crabka-broker with a PLAINTEXT admin listener and one secured listener; killed
/// on drop, which also releases the machine-wide lock.
#[derive(Debug)]
pub struct SecuredCrabka {
    /// Declared first: dropped (killed) before the lock is released.
    broker: Crabka,
    secured: SocketAddr,
    listener: SecuredListener,
    _lock: File,
}

impl SecuredCrabka {
    /// Starts a broker with `listener` (see the [module docs](self)).
    pub fn start(listener: SecuredListener) -> Result<Self, CrabkaError> {
        Self::start_with(listener, SecuredOptions::default())
    }

    /// Starts a broker with `listener` and `options`.
    pub fn start_with(
        listener: SecuredListener,
        options: SecuredOptions,
    ) -> Result<Self, CrabkaError> {
        let binary = find_tool("KSTREAMS_CRABKA", "crabka-broker")
            .map_err(|looked_at| CrabkaError::NotInstalled { looked_at })?;
        let spawn_error = |source| CrabkaError::Spawn {
            binary: binary.clone(),
            source,
        };
        let lock = take_lock().map_err(spawn_error)?;
        let admin = free_port().map_err(spawn_error)?;
        let secured = free_port().map_err(spawn_error)?;
        let dir = tempfile::tempdir().map_err(spawn_error)?;
        let data = dir.path().join("data");
        std::fs::create_dir(&data).map_err(spawn_error)?;
        std::fs::write(data.join("meta.properties.json"), meta_properties())
            .map_err(spawn_error)?;
        let config_path = dir.path().join("broker.toml");
        std::fs::write(
            &config_path,
            config_toml(&data, admin, secured, &listener, &options),
        )
        .map_err(spawn_error)?;
        let log_path = std::env::var_os("KSTREAMS_CRABKA_LOG")
            .map(PathBuf::from)
            .unwrap_or_else(|| dir.path().join("crabka.log"));
        let log = File::create(&log_path).map_err(spawn_error)?;
        let log_err = log.try_clone().map_err(spawn_error)?;
        let child = Command::new(&binary)
            .arg("--config-file")
            .arg(&config_path)
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
        let mut broker = Crabka::adopt(child, admin, log_path, dir);
        broker.wait_ready()?;
        Ok(Self {
            broker,
            secured,
            listener,
            _lock: lock,
        })
    }

    /// `host:port` of the secured listener, to bootstrap the client under test from.
    pub fn bootstrap(&self) -> String {
        self.secured.to_string()
    }

    /// `host:port` of the PLAINTEXT admin listener.
    pub fn admin_bootstrap(&self) -> String {
        self.broker.bootstrap()
    }

    /// The secured listener.
    pub fn listener(&self) -> &SecuredListener {
        &self.listener
    }

    /// The end of the broker's output so far.
    pub fn log_tail(&self) -> String {
        self.broker.log_tail()
    }

    /// Creates `topic` through the admin listener (see [`Crabka::create_topic`]).
    pub fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), CrabkaError> {
        self.broker.create_topic(topic, partitions)
    }

    /// Creates (or replaces) the SCRAM credential of `user` for `mechanism` with
    /// AlterUserScramCredentials through the admin listener, and waits until the secured
    /// listener accepts the user (the credential reaches the broker's metadata image
    /// asynchronously).
    pub fn create_scram_user(
        &self,
        mechanism: SaslMechanism,
        user: &str,
        password: &str,
    ) -> Result<(), String> {
        let mechanism_byte = match mechanism {
            SaslMechanism::ScramSha256 => 1,
            SaslMechanism::ScramSha512 => 2,
            other => return Err(format!("{other} has no SCRAM credentials")),
        };
        let salt: Vec<u8> = format!("{user}-{}-salt", std::process::id()).into_bytes();
        // What Kafka's tools store: Hi() over the password's UTF-8 bytes, computed here with
        // pbkdf2 directly rather than with kstreams' own SCRAM code, so that a derivation
        // both sides got wrong the same way (e.g. saslprep) cannot pass unnoticed.
        let salted: Vec<u8> = match mechanism {
            SaslMechanism::ScramSha256 => pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(
                password.as_bytes(),
                &salt,
                SCRAM_ITERATIONS,
            )
            .to_vec(),
            _ => pbkdf2::pbkdf2_hmac_array::<Sha512, 64>(
                password.as_bytes(),
                &salt,
                SCRAM_ITERATIONS,
            )
            .to_vec(),
        };
        let request = AlterUserScramCredentialsRequest::default().with_upsertions(vec![
            ScramCredentialUpsertion::default()
                .with_name(StrBytes::from_string(user.to_owned()))
                .with_mechanism(mechanism_byte)
                .with_iterations(SCRAM_ITERATIONS as i32)
                .with_salt(salt.into())
                .with_salted_password(salted.into()),
        ]);
        let admin: SocketAddr = self
            .broker
            .bootstrap()
            .parse()
            .map_err(|e| format!("admin address: {e}"))?;
        let response = round_trip(admin, &request, 0, Duration::from_secs(10))?;
        for result in &response.results {
            if result.error_code != 0 {
                return Err(format!(
                    "AlterUserScramCredentials for {user}: error code {} ({:?})",
                    result.error_code,
                    result.error_message.as_ref().map(|m| m.as_str())
                ));
            }
        }
        // Applied through the controller: give the broker's image a moment.
        let started = Instant::now();
        while started.elapsed() < USER_TIMEOUT {
            if self.scram_user_known(user, mechanism_byte, admin)? {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "SCRAM user {user} not visible after {USER_TIMEOUT:?}"
        ))
    }

    fn scram_user_known(
        &self,
        user: &str,
        mechanism: i8,
        admin: SocketAddr,
    ) -> Result<bool, String> {
        use kafka_protocol::messages::DescribeUserScramCredentialsRequest;
        use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
        let request = DescribeUserScramCredentialsRequest::default().with_users(Some(vec![
            UserName::default().with_name(StrBytes::from_string(user.to_owned())),
        ]));
        let response = round_trip(admin, &request, 0, Duration::from_secs(5))?;
        Ok(response.results.iter().any(|r| {
            r.error_code == 0 && r.credential_infos.iter().any(|c| c.mechanism == mechanism)
        }))
    }
}

/// The broker's TOML config.
fn config_toml(
    data: &Path,
    admin: SocketAddr,
    secured: SocketAddr,
    listener: &SecuredListener,
    options: &SecuredOptions,
) -> String {
    let name = listener.name();
    let inter_broker = if options.advertise_admin_listener {
        "PLAINTEXT"
    } else {
        name
    };
    let mut toml = format!(
        "broker_id = 1\nlog_dir = {data:?}\ninter_broker_listener_name = \"{inter_broker}\"\n\n\
         [[listeners]]\nname = \"PLAINTEXT\"\nbind_addr = \"{admin}\"\nadvertised = \"{admin}\"\n\
         protocol = \"Plaintext\"\n\n\
         [[listeners]]\nname = \"{name}\"\nbind_addr = \"{secured}\"\nadvertised = \"{secured}\"\n\
         protocol = \"{}\"\n",
        listener.protocol()
    );
    if let Some(tls) = listener.tls() {
        let client_auth = match (&tls.client_ca_path, tls.require_client_certificate) {
            (None, _) => "Disabled",
            (Some(_), false) => "Optional",
            (Some(_), true) => "Required",
        };
        toml.push_str(&format!(
            "tls_config = {{ cert_path = {:?}, key_path = {:?}, client_auth = \"{client_auth}\"{} }}\n",
            tls.cert_path,
            tls.key_path,
            tls.client_ca_path
                .as_ref()
                .map(|ca| format!(", client_ca_path = {ca:?}"))
                .unwrap_or_default(),
        ));
    }
    if let Some(mechanisms) = listener.mechanisms() {
        let names: Vec<String> = mechanisms.iter().map(|m| format!("\"{m}\"")).collect();
        toml.push_str(&format!(
            "sasl_config = {{ enabled_mechanisms = [{}] }}\n",
            names.join(", ")
        ));
    }
    if let Some(seconds) = options.oauthbearer_max_session_lifetime_seconds {
        toml.push_str(&format!(
            "\n[oauthbearer]\nmax_session_lifetime_seconds = {seconds}\n"
        ));
    }
    toml
}

/// A free port on 127.0.0.1 (the controller's address with a config file, see the module
/// docs).
fn free_port() -> std::io::Result<SocketAddr> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()
}

/// The machine-wide lock of secured brokers (see the module docs).
fn take_lock() -> std::io::Result<File> {
    let path = std::env::temp_dir().join("kstreams-crabka-secured.lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    let started = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if started.elapsed() < LOCK_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(std::io::Error::other(format!(
                    "{} held by another secured broker for {LOCK_TIMEOUT:?}",
                    path.display()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
    }
}
