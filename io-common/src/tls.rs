//! [`TlsConfig`]: TLS to the brokers (Kafka's `security.protocol=SSL`) with rustls, and the
//! rustls client configuration it builds once per instance.
//!
//! What is verified, and how, is on [`TlsConfig`] (this module is private; its docs are the
//! users'). The rustls configuration is built once per instance and shared by every
//! connection.
//!
//! A leaf module, like `config`; its submodule `error` holds the errors and how a rustls error
//! is classified (configuration, fatal, or transient).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ClientConfig;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

mod error;

pub use error::{PemSource, TlsConfigError, TlsErrorKind};
pub(crate) use error::{TlsFailure, failure_of_io};

/// TLS settings of a `KafkaStreams` instance (Kafka's `security.protocol=SSL`;
/// `StreamsConfig::tls`, where `None` means plaintext).
///
/// - **Roots**: the system's root certificates by default (read with `rustls-native-certs`
///   from the files the OS keeps them in, honouring `SSL_CERT_FILE` / `SSL_CERT_DIR`; no
///   OpenSSL library is involved), or the certificates of one PEM file
///   ([`TlsConfig::with_ca_file`], librdkafka's `ssl.ca.location`) or PEM text, which then
///   replace the system roots.
/// - **Client certificate** (mutual TLS): [`TlsConfig::with_client_certificate`] (librdkafka's
///   `ssl.certificate.location` and `ssl.key.location`); the key may be PKCS#8, PKCS#1 (RSA) or
///   SEC1 (EC) PEM.
/// - **Server name**: always verified, against the broker host the engine asked for (as
///   written in `bootstrap_servers` or advertised in Metadata) *before* the broker address
///   map, the way Kafka clients verify the advertised host name
///   (`ssl.endpoint.identification.algorithm=https`). An address map is a "DNS": it changes
///   where a broker is dialled, not which broker it must prove to be.
/// - **Crypto**: rustls with the `ring` provider only, TLS 1.2 and 1.3 (its safe defaults).
/// - **Plaintext listeners**: a broker that answers the TLS hello with something that is not
///   TLS does not speak TLS ([`TlsErrorKind::NotTls`]). One that closes the handshake without
///   a byte is asked, over a fresh connection (within the connect timeout), a plaintext Kafka
///   ApiVersions request: if it answers, the port speaks plaintext Kafka (`NotTls`);
///   otherwise (refused, closed, no answer) the broker is taken to be going away (restarting
///   behind a proxy or load balancer, over its connection quota) and the connection is
///   retried on the engine's backoff.
///
/// Files are read and checked when the instance is built (`KafkaStreams::new`), with a
/// [`TlsConfigError`] naming the file. A handshake failure caused by the configuration of
/// either side stops the instance with `StreamsError::Tls` and a [`TlsErrorKind`]; other TLS
/// failures (an `internal_error` alert, a record that fails to decrypt, a peer breaking the
/// protocol) are disconnects, logged as warnings naming the broker, and retried.
///
/// ```
/// use kstreams_io_common::{StreamsConfig, TlsConfig};
/// let config = StreamsConfig::new("app", ["broker-1.example.com:9093"]).with_tls(
///     TlsConfig::new()
///         .with_ca_file("/etc/kafka/ca.pem")
///         .with_client_certificate("/etc/kafka/client.pem", "/etc/kafka/client.key"),
/// );
/// # let _ = config;
/// ```
#[derive(Clone, Default)]
pub struct TlsConfig {
    roots: Roots,
    client: Option<ClientIdentity>,
}

/// Where the trusted root certificates come from.
#[derive(Clone, Default)]
enum Roots {
    #[default]
    System,
    Pem(PemInput),
}

/// A client certificate chain and its private key.
#[derive(Clone)]
struct ClientIdentity {
    certificates: PemInput,
    key: PemInput,
}

/// PEM text to read: a file (read when the instance is built) or text in memory.
#[derive(Clone)]
enum PemInput {
    File(PathBuf),
    Text(Arc<str>),
}

impl TlsConfig {
    /// TLS with the system's root certificates, no client certificate.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts exactly the certificates in the PEM file at `path` (one or more CA
    /// certificates), instead of the system roots. Like librdkafka's `ssl.ca.location`.
    pub fn with_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.roots = Roots::Pem(PemInput::File(path.into()));
        self
    }

    /// Trusts exactly the certificates in `pem` (PEM text), instead of the system roots.
    pub fn with_ca_pem(mut self, pem: impl Into<String>) -> Self {
        self.roots = Roots::Pem(PemInput::Text(pem.into().into()));
        self
    }

    /// Presents a client certificate (mutual TLS): the chain in the PEM file `certificate`
    /// (the client's certificate first) and its private key in the PEM file `key` (PKCS#8,
    /// PKCS#1 or SEC1). Like librdkafka's `ssl.certificate.location` and `ssl.key.location`.
    pub fn with_client_certificate(
        mut self,
        certificate: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Self {
        self.client = Some(ClientIdentity {
            certificates: PemInput::File(certificate.into()),
            key: PemInput::File(key.into()),
        });
        self
    }

    /// [`with_client_certificate`](Self::with_client_certificate) from PEM text in memory.
    /// The key never appears in `Debug` output.
    pub fn with_client_certificate_pem(
        mut self,
        certificate: impl Into<String>,
        key: impl Into<String>,
    ) -> Self {
        self.client = Some(ClientIdentity {
            certificates: PemInput::Text(certificate.into().into()),
            key: PemInput::Text(key.into().into()),
        });
        self
    }

    /// Reads the files, checks every certificate and the key, and builds the rustls client
    /// configuration the instance's connections share.
    pub(crate) fn client_config(&self) -> Result<Arc<ClientConfig>, TlsConfigError> {
        let roots = match &self.roots {
            Roots::System => system_roots()?,
            Roots::Pem(input) => {
                let mut store = RootCertStore::empty();
                for certificate in certificates(input)? {
                    store
                        .add(certificate)
                        .map_err(|e| TlsConfigError::InvalidCertificate {
                            origin: input.origin(),
                            detail: e.to_string(),
                        })?;
                }
                store
            }
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsConfigError::Rustls(e.to_string()))?
            .with_root_certificates(roots);
        let config = match &self.client {
            None => builder.with_no_client_auth(),
            Some(identity) => {
                let chain = certificates(&identity.certificates)?;
                let key = private_key(&identity.key)?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    TlsConfigError::ClientKey {
                        certificate: identity.certificates.origin(),
                        key: identity.key.origin(),
                        detail: e.to_string(),
                    }
                })?
            }
        };
        Ok(Arc::new(config))
    }
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let roots = match &self.roots {
            Roots::System => "system".to_owned(),
            Roots::Pem(input) => input.origin().to_string(),
        };
        let client = self.client.as_ref().map(|identity| {
            format!(
                "certificate: {}, key: {}",
                identity.certificates.origin(),
                identity.key.origin()
            )
        });
        f.debug_struct("TlsConfig")
            .field("roots", &roots)
            .field("client", &client)
            .finish()
    }
}

impl PemInput {
    fn origin(&self) -> PemSource {
        match self {
            Self::File(path) => PemSource::File(path.clone()),
            Self::Text(_) => PemSource::Memory,
        }
    }

    fn read(&self) -> Result<Vec<u8>, TlsConfigError> {
        match self {
            Self::File(path) => read_file(path),
            Self::Text(text) => Ok(text.as_bytes().to_vec()),
        }
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsConfigError> {
    std::fs::read(path).map_err(|error| TlsConfigError::Read {
        path: path.to_owned(),
        error: Arc::new(error),
    })
}

/// Every certificate of `input`; at least one.
fn certificates(input: &PemInput) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let pem = input.read()?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsConfigError::InvalidPem {
            origin: input.origin(),
            detail: e.to_string(),
        })?;
    if certificates.is_empty() {
        return Err(TlsConfigError::NoCertificate {
            origin: input.origin(),
        });
    }
    Ok(certificates)
}

/// The first private key of `input` (PKCS#8, PKCS#1 or SEC1).
fn private_key(input: &PemInput) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
    let pem = input.read()?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsConfigError::NoPrivateKey {
            origin: input.origin(),
        },
        other => TlsConfigError::InvalidPem {
            origin: input.origin(),
            detail: other.to_string(),
        },
    })
}

/// The system's root certificates; an error if none could be loaded.
fn system_roots() -> Result<RootCertStore, TlsConfigError> {
    let loaded = rustls_native_certs::load_native_certs();
    for error in &loaded.errors {
        tracing::warn!(%error, "cannot load some system root certificates");
    }
    let mut store = RootCertStore::empty();
    let (added, ignored) = store.add_parsable_certificates(loaded.certs);
    if ignored > 0 {
        tracing::debug!(ignored, "system root certificates rustls cannot use");
    }
    if added == 0 {
        let detail = loaded
            .errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        return Err(TlsConfigError::NoSystemRoots { detail });
    }
    Ok(store)
}

#[cfg(test)]
mod tests;
