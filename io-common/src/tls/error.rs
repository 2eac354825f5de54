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

/// Why TLS with a broker failed (`StreamsError::Tls`). Every kind is a configuration problem
/// that reconnecting does not heal, so the instance stops with it. TLS failures that a
/// configuration does not cause (an `internal_error` or `decrypt_error` alert, a record that
/// fails to decrypt, a peer breaking the protocol: a middlebox, a broker shutting down) have
/// no kind: they are disconnects like any other, logged as a warning and retried on the
/// engine's backoff.
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
    /// The broker does not speak TLS: it answered the TLS hello with something that is not
    /// TLS, or it closed the handshake without a byte and then answered a plaintext Kafka
    /// request (a plaintext listener; see `StreamsConfig::tls`).
    NotTls,
    /// The broker refused the client certificate, or required one and none is configured.
    ClientCertificateRefused,
    /// Any other handshake failure caused by the configuration of either side (no common
    /// protocol version, cipher suite or key exchange group, a broker certificate unusable for
    /// another reason, an invalid host name, …); the detail says which.
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
    /// `Some`: caused by the configuration, stops the instance. `None`: transient (see
    /// [`TlsErrorKind`]), a disconnect.
    pub(crate) kind: Option<TlsErrorKind>,
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

/// The kind of a rustls error caused by the configuration; `None` for a transient one.
///
/// Fatal: every certificate the client refuses (ours to trust or not), a non-TLS answer, the
/// broker refusing our certificate, the two sides having no protocol version, cipher suite,
/// group or signature scheme in common (`PeerIncompatible`, or the broker saying so with a
/// `handshake_failure`, `protocol_version` or `insufficient_security` alert), a broker
/// without a certificate, a host name the verifier cannot check. Everything else is
/// transient: alerts such as `internal_error`, `decrypt_error`, `bad_record_mac`,
/// `decode_error`, `unexpected_message` or `close_notify`, local decrypt failures, peers
/// breaking the protocol (`PeerMisbehaved`, inappropriate messages), and errors rustls does
/// not attribute (`General`, `Other`); a new rustls variant is transient too, so an
/// unknown error never stops the instance.
fn kind_of(error: &rustls::Error) -> Option<TlsErrorKind> {
    use AlertDescription as A;
    use CertificateError as C;
    use TlsErrorKind as K;
    use rustls::Error as E;
    Some(match error {
        E::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => K::UntrustedCertificate,
        E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            K::NameMismatch
        }
        E::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => K::Expired,
        E::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => K::NotYetValid,
        // Revoked, wrong purpose, unsupported signature algorithm, bad encoding, …
        E::InvalidCertificate(_) | E::NoCertificatesPresented | E::UnsupportedNameType => K::Other,
        // A record that is not TLS: the port speaks something else.
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
        E::PeerIncompatible(_)
        | E::AlertReceived(
            A::HandshakeFailure
            | A::ProtocolVersion
            | A::InsufficientSecurity
            | A::UnrecognisedName,
        ) => K::Other,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use AlertDescription as A;
    use CertificateError as C;

    #[test]
    fn configuration_errors_map_to_their_kinds() {
        use TlsErrorKind as K;
        use rustls::{Error as E, PeerIncompatible as P};
        let cases = [
            (
                E::InvalidCertificate(C::UnknownIssuer),
                K::UntrustedCertificate,
            ),
            (
                E::InvalidCertificate(C::BadSignature),
                K::UntrustedCertificate,
            ),
            (E::InvalidCertificate(C::NotValidForName), K::NameMismatch),
            (E::InvalidCertificate(C::Expired), K::Expired),
            (E::InvalidCertificate(C::NotValidYet), K::NotYetValid),
            (E::InvalidCertificate(C::Revoked), K::Other),
            (E::InvalidCertificate(C::InvalidPurpose), K::Other),
            (E::NoCertificatesPresented, K::Other),
            (
                E::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
                K::NotTls,
            ),
            (E::PeerSentOversizedRecord, K::NotTls),
            (
                E::AlertReceived(A::CertificateRequired),
                K::ClientCertificateRefused,
            ),
            (
                E::AlertReceived(A::BadCertificate),
                K::ClientCertificateRefused,
            ),
            (E::AlertReceived(A::UnknownCA), K::ClientCertificateRefused),
            (E::AlertReceived(A::HandshakeFailure), K::Other),
            (E::AlertReceived(A::ProtocolVersion), K::Other),
            (E::AlertReceived(A::InsufficientSecurity), K::Other),
            (E::PeerIncompatible(P::NoCipherSuitesInCommon), K::Other),
            (
                E::PeerIncompatible(P::ServerDoesNotSupportTls12Or13),
                K::Other,
            ),
            (E::PeerIncompatible(P::NoKxGroupsInCommon), K::Other),
        ];
        for (error, kind) in cases {
            assert_eq!(kind_of(&error), Some(kind), "{error}");
        }
    }

    /// What a middlebox, a broker shutting down or a broken network can cause is a
    /// disconnect, not a configuration error.
    #[test]
    fn transient_errors_have_no_kind() {
        use rustls::{Error as E, PeerMisbehaved};
        let cases = [
            E::AlertReceived(A::InternalError),
            E::AlertReceived(A::DecryptError),
            E::AlertReceived(A::BadRecordMac),
            E::AlertReceived(A::DecodeError),
            E::AlertReceived(A::UnexpectedMessage),
            E::AlertReceived(A::CloseNotify),
            E::AlertReceived(A::UserCanceled),
            E::DecryptError,
            E::PeerMisbehaved(PeerMisbehaved::DuplicateServerHelloExtensions),
            E::InappropriateMessage {
                expect_types: vec![rustls::ContentType::Handshake],
                got_type: rustls::ContentType::ApplicationData,
            },
            E::General("who knows".to_owned()),
            E::FailedToGetRandomBytes,
        ];
        for error in cases {
            assert_eq!(kind_of(&error), None, "{error}");
            assert_eq!(TlsFailure::of(&error).detail, error.to_string());
        }
    }

    #[test]
    fn only_io_errors_wrapping_a_rustls_error_are_tls_failures() {
        let wrapped = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        let failure = failure_of_io(&wrapped).expect("a TLS failure");
        assert_eq!(failure.kind, Some(TlsErrorKind::UntrustedCertificate));
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
