//! The errors of TLS: [`TlsConfigError`] (a configuration that cannot be used, found when the
//! instance is built) and [`TlsErrorKind`] (why a handshake with a broker failed), with the
//! classification of rustls' errors into those kinds.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::{AlertDescription, CertificateError};

/// Where PEM text came from, as named by a [`TlsConfigError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PemSource {
    /// A file.
    File(PathBuf),
    /// Text given in memory (`TlsConfig::with_ca_pem`, `with_client_certificate_pem`).
    Memory,
}

impl fmt::Display for PemSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "file {}", path.display()),
            Self::Memory => f.write_str("in-memory PEM"),
        }
    }
}

/// Why a `TlsConfig` cannot be used; found when the instance is built (`KafkaStreams::new`).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// A file could not be read.
    #[error("cannot read {}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: Arc<io::Error>,
    },
    /// PEM text that does not parse.
    #[error("{origin}: invalid PEM: {detail}")]
    InvalidPem {
        /// Where it came from.
        origin: PemSource,
        /// What is wrong.
        detail: String,
    },
    /// PEM text with no certificate where one was expected.
    #[error("{origin} holds no PEM certificate")]
    NoCertificate {
        /// Where it came from.
        origin: PemSource,
    },
    /// A CA certificate rustls refuses as a trust anchor.
    #[error("{origin}: unusable CA certificate: {detail}")]
    InvalidCertificate {
        /// Where it came from.
        origin: PemSource,
        /// What is wrong.
        detail: String,
    },
    /// PEM text with no private key where one was expected.
    #[error("{origin} holds no private key (PKCS#8, PKCS#1 or SEC1 PEM)")]
    NoPrivateKey {
        /// Where it came from.
        origin: PemSource,
    },
    /// The client certificate and key cannot be used together (e.g. the key is not the
    /// certificate's, or its algorithm is not supported).
    #[error("client certificate ({certificate}) with key ({key}): {detail}")]
    ClientKey {
        /// Where the certificate came from.
        certificate: PemSource,
        /// Where the key came from.
        key: PemSource,
        /// What is wrong.
        detail: String,
    },
    /// No system root certificate could be loaded; give a CA file instead.
    #[error("no system root certificates found (give a CA file: TlsConfig::with_ca_file){}",
        if detail.is_empty() { String::new() } else { format!(": {detail}") })]
    NoSystemRoots {
        /// What went wrong loading them, if anything did.
        detail: String,
    },
    /// rustls refused the configuration.
    #[error("rustls: {0}")]
    Rustls(String),
}

/// Why a TLS handshake with a broker failed (`StreamsError::Tls`). Every kind is a
/// configuration problem that reconnecting does not heal, so the instance stops with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsErrorKind {
    /// The broker's certificate is not signed by a trusted root (unknown CA, self-signed, bad
    /// signature).
    UntrustedCertificate,
    /// The broker's certificate is not valid for the broker's host name.
    NameMismatch,
    /// The broker's certificate has expired.
    Expired,
    /// The broker's certificate is not valid yet.
    NotYetValid,
    /// The broker does not speak TLS (a plaintext listener): it answered the TLS hello with
    /// something that is not TLS, or closed every connection in answer to it (see
    /// `StreamsConfig::tls`).
    NotTls,
    /// The broker refused the client certificate, or required one and none is configured.
    ClientCertificateRefused,
    /// Any other handshake failure (no common protocol version or cipher suite, a broker
    /// certificate unusable for another reason, an invalid host name, …); the detail says
    /// which.
    Other,
}

impl fmt::Display for TlsErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::UntrustedCertificate => "untrusted broker certificate",
            Self::NameMismatch => "broker certificate not valid for the broker's name",
            Self::Expired => "broker certificate expired",
            Self::NotYetValid => "broker certificate not valid yet",
            Self::NotTls => "the broker does not speak TLS",
            Self::ClientCertificateRefused => "client certificate refused",
            Self::Other => "handshake failed",
        })
    }
}

/// A TLS failure of one connection: its kind and rustls' words for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsFailure {
    pub(crate) kind: TlsErrorKind,
    pub(crate) detail: String,
}

impl TlsFailure {
    pub(crate) fn of(error: &rustls::Error) -> Self {
        Self {
            kind: kind_of(error),
            detail: error.to_string(),
        }
    }
}

/// The TLS failure inside an I/O error of a TLS stream (the rustls streams wrap rustls'
/// errors in `io::Error`s); `None` for a plain I/O error (reset, end of stream, …).
pub(crate) fn failure_of_io(error: &io::Error) -> Option<TlsFailure> {
    let inner = error.get_ref()?.downcast_ref::<rustls::Error>()?;
    Some(TlsFailure::of(inner))
}

/// The kind of a rustls error.
fn kind_of(error: &rustls::Error) -> TlsErrorKind {
    use AlertDescription as A;
    use CertificateError as C;
    use TlsErrorKind as K;
    use rustls::Error as E;
    match error {
        E::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => K::UntrustedCertificate,
        E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            K::NameMismatch
        }
        E::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => K::Expired,
        E::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => K::NotYetValid,
        // A record that is not TLS: a plaintext broker answering the hello.
        E::InvalidMessage(_) | E::PeerSentOversizedRecord => K::NotTls,
        E::AlertReceived(
            A::CertificateRequired
            | A::BadCertificate
            | A::UnsupportedCertificate
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::CertificateUnknown
            | A::UnknownCA
            | A::AccessDenied,
        ) => K::ClientCertificateRefused,
        _ => K::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rustls_errors_map_to_their_kinds() {
        use TlsErrorKind as K;
        let cases = [
            (
                rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
                K::UntrustedCertificate,
            ),
            (
                rustls::Error::InvalidCertificate(CertificateError::NotValidForName),
                K::NameMismatch,
            ),
            (
                rustls::Error::InvalidCertificate(CertificateError::Expired),
                K::Expired,
            ),
            (
                rustls::Error::InvalidCertificate(CertificateError::NotValidYet),
                K::NotYetValid,
            ),
            (
                rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
                K::NotTls,
            ),
            (
                rustls::Error::AlertReceived(AlertDescription::CertificateRequired),
                K::ClientCertificateRefused,
            ),
            (
                rustls::Error::AlertReceived(AlertDescription::ProtocolVersion),
                K::Other,
            ),
        ];
        for (error, kind) in cases {
            assert_eq!(kind_of(&error), kind, "{error}");
        }
    }

    #[test]
    fn only_io_errors_wrapping_a_rustls_error_are_tls_failures() {
        let wrapped = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        let failure = failure_of_io(&wrapped).expect("a TLS failure");
        assert_eq!(failure.kind, TlsErrorKind::UntrustedCertificate);
        assert!(
            failure.detail.contains("UnknownIssuer"),
            "{}",
            failure.detail
        );
        assert_eq!(
            failure_of_io(&io::ErrorKind::UnexpectedEof.into()),
            None,
            "a closed socket is not a TLS failure"
        );
    }
}
