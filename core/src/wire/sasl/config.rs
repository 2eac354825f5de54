//! What the application configures: [`SaslConfig`], [`SaslMechanism`] and the OAUTHBEARER
//! token provider.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use super::secret::Secret;

/// A SASL mechanism, by its Kafka name (`sasl.mechanism`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SaslMechanism {
    /// `PLAIN` (RFC 4616): username and password in clear; use it over TLS only.
    Plain,
    /// `SCRAM-SHA-256` (RFC 5802, RFC 7677).
    ScramSha256,
    /// `SCRAM-SHA-512` (RFC 5802 with SHA-512).
    ScramSha512,
    /// `OAUTHBEARER` (RFC 7628), with a token from an [`OAuthBearerTokenProvider`].
    OAuthBearer,
}

impl SaslMechanism {
    /// The Kafka name: `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512` or `OAUTHBEARER`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
            Self::OAuthBearer => "OAUTHBEARER",
        }
    }
}

impl fmt::Display for SaslMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A mechanism name that is not one of the four supported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown SASL mechanism `{0}` (supported: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER)"
)]
pub struct UnknownMechanism(pub String);

impl FromStr for SaslMechanism {
    type Err = UnknownMechanism;

    /// Parses a Kafka mechanism name; case-insensitive, as librdkafka's `sasl.mechanism`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Self::Plain,
            Self::ScramSha256,
            Self::ScramSha512,
            Self::OAuthBearer,
        ]
        .into_iter()
        .find(|m| m.as_str().eq_ignore_ascii_case(s.trim()))
        .ok_or_else(|| UnknownMechanism(s.to_owned()))
    }
}

/// An OAuth 2 bearer token for OAUTHBEARER, as an [`OAuthBearerTokenProvider`] hands it out.
#[derive(Debug, Clone)]
pub struct OAuthBearerToken {
    /// The compact token (e.g. a JWT); sent as `auth=Bearer <value>`.
    pub value: Secret,
    /// When the token expires, in milliseconds since the Unix epoch (informational: the
    /// broker's session lifetime, which it bounds by the token's, drives re-authentication).
    pub lifetime_ms: i64,
    /// The principal the token names (for logs; not sent).
    pub principal: String,
    /// SASL extensions sent with the token (RFC 7628 §3.1): keys of ASCII letters other than
    /// `auth`, values of printable ASCII.
    pub extensions: BTreeMap<String, String>,
}

/// Supplies OAUTHBEARER tokens. The engine calls [`token`](Self::token) synchronously, on its
/// own thread, each time a connection authenticates or re-authenticates: return a cached
/// token quickly (refresh it in the background), do not block on the network.
pub trait OAuthBearerTokenProvider: Send + Sync {
    /// The token to authenticate with now, or why there is none (the engine then fails with
    /// an authentication error).
    fn token(&self) -> Result<OAuthBearerToken, String>;
}

/// The credentials of one mechanism.
#[derive(Clone)]
pub(crate) enum Credentials {
    /// PLAIN or SCRAM: a username and a password.
    Password {
        mechanism: SaslMechanism,
        username: String,
        password: Secret,
    },
    /// OAUTHBEARER.
    OAuthBearer(Arc<dyn OAuthBearerTokenProvider>),
}

/// SASL authentication of every broker connection (`sasl.mechanism` with its credentials).
///
/// After its ApiVersions exchange, each connection runs SaslHandshake (v1) and
/// SaslAuthenticate before it carries any request, and re-authenticates before the session
/// lifetime the broker returns ends (KIP-368). Wrong credentials stop the engine with
/// `EngineError::Authentication`; they are never retried. `Debug` never shows the password
/// or token.
#[derive(Clone)]
pub struct SaslConfig {
    pub(crate) credentials: Credentials,
}

impl SaslConfig {
    /// PLAIN with `username` and `password` (sent in clear: use it over TLS).
    pub fn plain(username: impl Into<String>, password: impl Into<Secret>) -> Self {
        Self::password(SaslMechanism::Plain, username, password)
    }

    /// SCRAM-SHA-256 with `username` and `password`.
    pub fn scram_sha256(username: impl Into<String>, password: impl Into<Secret>) -> Self {
        Self::password(SaslMechanism::ScramSha256, username, password)
    }

    /// SCRAM-SHA-512 with `username` and `password`.
    pub fn scram_sha512(username: impl Into<String>, password: impl Into<Secret>) -> Self {
        Self::password(SaslMechanism::ScramSha512, username, password)
    }

    /// OAUTHBEARER with tokens from `provider`.
    pub fn oauthbearer(provider: Arc<dyn OAuthBearerTokenProvider>) -> Self {
        Self {
            credentials: Credentials::OAuthBearer(provider),
        }
    }

    /// A password mechanism (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512) by its value, e.g. parsed
    /// from `sasl.mechanism`; `None` for OAUTHBEARER, which takes a token provider.
    pub fn with_password(
        mechanism: SaslMechanism,
        username: impl Into<String>,
        password: impl Into<Secret>,
    ) -> Option<Self> {
        (mechanism != SaslMechanism::OAuthBearer)
            .then(|| Self::password(mechanism, username, password))
    }

    fn password(
        mechanism: SaslMechanism,
        username: impl Into<String>,
        password: impl Into<Secret>,
    ) -> Self {
        Self {
            credentials: Credentials::Password {
                mechanism,
                username: username.into(),
                password: password.into(),
            },
        }
    }

    /// The mechanism.
    pub fn mechanism(&self) -> SaslMechanism {
        match &self.credentials {
            Credentials::Password { mechanism, .. } => *mechanism,
            Credentials::OAuthBearer(_) => SaslMechanism::OAuthBearer,
        }
    }

    /// The username (`None` for OAUTHBEARER).
    pub fn username(&self) -> Option<&str> {
        match &self.credentials {
            Credentials::Password { username, .. } => Some(username),
            Credentials::OAuthBearer(_) => None,
        }
    }
}

impl fmt::Debug for SaslConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("SaslConfig");
        s.field("mechanism", &self.mechanism());
        match &self.credentials {
            Credentials::Password {
                username, password, ..
            } => s.field("username", username).field("password", password),
            Credentials::OAuthBearer(_) => {
                s.field("token_provider", &"dyn OAuthBearerTokenProvider")
            }
        };
        s.finish()
    }
}
