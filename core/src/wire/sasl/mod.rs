//! SASL authentication of broker connections, sans-IO: PLAIN, SCRAM-SHA-256/512 and
//! OAUTHBEARER over SaslHandshake v1 + SaslAuthenticate.
//!
//! - [`config`](SaslConfig): what the application configures.
//! - `exchange`: one exchange as request/response values; the
//!   [`Connection`](super::connection::Connection) runs it after ApiVersions and again to
//!   re-authenticate (KIP-368).
//! - `plain`, `scram`, `oauthbearer`: the mechanisms' messages.
//! - [`Secret`]: passwords and tokens, redacted in `Debug`.
//!
//! **Decision:** the unframed exchange of SaslHandshake v0 (raw SASL tokens on the socket,
//! Kafka 0.10.x) is not supported: every broker since Kafka 1.0 (2017) has SaslHandshake v1
//! and SaslAuthenticate, and supporting raw tokens would put a second framing mode into the
//! connection for brokers long out of support. A broker without them fails the engine with
//! [`SaslError::UnframedUnsupported`].

mod config;
mod error;
pub(crate) mod exchange;
mod nonce;
mod oauthbearer;
mod plain;
mod scram;
mod secret;

pub use config::{
    OAuthBearerToken, OAuthBearerTokenProvider, SaslConfig, SaslMechanism, UnknownMechanism,
};
pub use error::SaslError;
pub(crate) use nonce::NonceSource;
pub use secret::Secret;

/// The salted password a broker stores for `password` under a SCRAM `mechanism`, with
/// `salt` and `iterations` (what AlterUserScramCredentials upserts): Hi(password, salt,
/// iterations) over the password's UTF-8 bytes, as Kafka computes it. `None` for PLAIN and
/// OAUTHBEARER.
pub fn scram_salted_password(
    mechanism: SaslMechanism,
    password: &Secret,
    salt: &[u8],
    iterations: u32,
) -> Option<Vec<u8>> {
    let hash = match mechanism {
        SaslMechanism::ScramSha256 => scram::ScramHash::Sha256,
        SaslMechanism::ScramSha512 => scram::ScramHash::Sha512,
        SaslMechanism::Plain | SaslMechanism::OAuthBearer => return None,
    };
    Some(scram::salted_password(hash, password, salt, iterations))
}

#[cfg(test)]
mod tests;
