//! [`SaslError`]: why a connection could not authenticate. Never carries a secret.

/// Why SASL authentication failed. All of these are fatal for the engine: retrying with the
/// same credentials cannot succeed, and a loop would lock accounts on some brokers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// The broker does not enable the mechanism (UNSUPPORTED_SASL_MECHANISM, 33).
    #[error("mechanism not enabled by the broker, which enables [{}]", enabled.join(", "))]
    UnsupportedMechanism {
        /// The mechanisms the broker enables.
        enabled: Vec<String>,
    },
    /// The broker refused the credentials (SASL_AUTHENTICATION_FAILED, 58).
    #[error("the broker refused the credentials ({message})")]
    AuthenticationFailed {
        /// The broker's message.
        message: String,
    },
    /// The broker found the exchange out of order (ILLEGAL_SASL_STATE, 34).
    #[error("illegal SASL state: {message}")]
    IllegalState {
        /// The broker's message.
        message: String,
    },
    /// Another error code in a SaslHandshake or SaslAuthenticate response.
    #[error("broker error code {code}: {message}")]
    Broker {
        /// The Kafka error code.
        code: i16,
        /// The broker's message, if any.
        message: String,
    },
    /// The SCRAM server signature did not match: the broker does not hold our password's
    /// verifier (or is not the broker it claims to be).
    #[error("the broker's SCRAM server signature does not match")]
    BadServerSignature,
    /// The SCRAM server answered with `e=<error>`.
    #[error("SCRAM error from the broker: {0}")]
    ServerError(String),
    /// A server message does not follow the mechanism's grammar.
    #[error("malformed server message: {0}")]
    Malformed(String),
    /// The broker answered OAUTHBEARER with an error challenge (RFC 7628 §3.2.2).
    #[error("OAUTHBEARER token refused: {0}")]
    TokenRefused(String),
    /// The credentials cannot be sent (a NUL in a PLAIN username or password).
    #[error("invalid credentials: {0}")]
    InvalidCredentials(String),
    /// The OAUTHBEARER token provider failed.
    #[error("OAUTHBEARER token provider: {0}")]
    TokenProvider(String),
    /// The broker lacks SaslHandshake v1 or SaslAuthenticate (Kafka before 1.0): the unframed
    /// v0 exchange is not supported.
    #[error(
        "the broker lacks SaslHandshake v1 or SaslAuthenticate; the unframed (pre-Kafka-1.0) \
         exchange is not supported"
    )]
    UnframedUnsupported,
}

/// Kafka error code `UNSUPPORTED_SASL_MECHANISM`.
pub(crate) const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
/// Kafka error code `ILLEGAL_SASL_STATE`.
pub(crate) const ILLEGAL_SASL_STATE: i16 = 34;
/// Kafka error code `SASL_AUTHENTICATION_FAILED`.
pub(crate) const SASL_AUTHENTICATION_FAILED: i16 = 58;

impl SaslError {
    /// The error for a SaslHandshake/SaslAuthenticate error code (not 0).
    pub(crate) fn from_code(code: i16, message: Option<&str>, enabled: &[String]) -> Self {
        let message = message.unwrap_or("").to_owned();
        match code {
            UNSUPPORTED_SASL_MECHANISM => Self::UnsupportedMechanism {
                enabled: enabled.to_vec(),
            },
            ILLEGAL_SASL_STATE => Self::IllegalState { message },
            SASL_AUTHENTICATION_FAILED => Self::AuthenticationFailed { message },
            code => Self::Broker { code, message },
        }
    }
}
