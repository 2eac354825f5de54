//! [`Authenticator`]: one SASL exchange over SaslHandshake v1 and SaslAuthenticate, as
//! request and response values (the [`Connection`](crate::wire::connection::Connection)
//! frames and correlates them).

use bytes::Bytes;
use kafka_protocol::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::config::{Credentials, SaslConfig, SaslMechanism};
use super::error::SaslError;
use super::scram::{ScramClient, ScramHash};
use super::secret::SecretBytes;
use super::{oauthbearer, plain};

/// What to do after a SaslAuthenticate response.
#[derive(Debug)]
pub(crate) enum Next {
    /// Send this SaslAuthenticate request (its bytes may be secret: never log it).
    Authenticate(SaslAuthenticateRequest),
    /// Authenticated. `session_lifetime_ms` is the broker's (0: the session does not expire).
    Done { session_lifetime_ms: i64 },
}

#[derive(Debug)]
enum Mechanism {
    Plain,
    Scram(ScramClient),
    /// `refused`: the broker's error challenge, once one came.
    OAuthBearer {
        refused: Option<String>,
    },
}

/// One SASL exchange: see the [module docs](self).
#[derive(Debug)]
pub(crate) struct Authenticator {
    config: SaslConfig,
    mechanism: Mechanism,
}

impl Authenticator {
    /// An exchange with `config`'s credentials; `nonce` is the SCRAM client nonce.
    pub(crate) fn new(config: &SaslConfig, nonce: String) -> Self {
        let mechanism = match &config.credentials {
            Credentials::Password {
                mechanism: SaslMechanism::ScramSha256,
                username,
                password,
            } => Mechanism::Scram(ScramClient::new(
                ScramHash::Sha256,
                username,
                password.clone(),
                nonce,
            )),
            Credentials::Password {
                mechanism: SaslMechanism::ScramSha512,
                username,
                password,
            } => Mechanism::Scram(ScramClient::new(
                ScramHash::Sha512,
                username,
                password.clone(),
                nonce,
            )),
            Credentials::Password { .. } => Mechanism::Plain,
            Credentials::OAuthBearer(_) => Mechanism::OAuthBearer { refused: None },
        };
        Self {
            config: config.clone(),
            mechanism,
        }
    }

    /// The mechanism.
    pub(crate) fn mechanism(&self) -> SaslMechanism {
        self.config.mechanism()
    }

    /// The SaslHandshake request (sent at v1).
    pub(crate) fn handshake_request(&self) -> SaslHandshakeRequest {
        SaslHandshakeRequest::default()
            .with_mechanism(StrBytes::from_static_str(self.mechanism().as_str()))
    }

    /// The handshake's answer: the first SaslAuthenticate request, or why not.
    pub(crate) fn handle_handshake(
        &mut self,
        response: &SaslHandshakeResponse,
    ) -> Result<SaslAuthenticateRequest, SaslError> {
        if response.error_code != 0 {
            let enabled: Vec<String> = response.mechanisms.iter().map(|m| m.to_string()).collect();
            return Err(SaslError::from_code(response.error_code, None, &enabled));
        }
        let first = match (&mut self.mechanism, &self.config.credentials) {
            (Mechanism::Scram(scram), _) => SecretBytes(scram.first_message()?),
            (
                Mechanism::Plain,
                Credentials::Password {
                    username, password, ..
                },
            ) => plain::message(username, password)?,
            (Mechanism::OAuthBearer { .. }, Credentials::OAuthBearer(provider)) => {
                let token = provider.token().map_err(SaslError::TokenProvider)?;
                tracing::debug!(principal = %token.principal, "OAUTHBEARER token obtained");
                oauthbearer::first_message(&token)?
            }
            (mechanism, _) => unreachable!(
                "Authenticator::new derives the mechanism from the credentials: {mechanism:?}"
            ),
        };
        Ok(authenticate(first))
    }

    /// A SaslAuthenticate answer: the next request, done, or why not.
    pub(crate) fn handle_authenticate(
        &mut self,
        response: &SaslAuthenticateResponse,
    ) -> Result<Next, SaslError> {
        if response.error_code != 0 {
            if let Mechanism::OAuthBearer {
                refused: Some(challenge),
            } = &self.mechanism
            {
                return Err(SaslError::TokenRefused(challenge.clone()));
            }
            let message = response.error_message.as_ref().map(|m| m.as_str());
            return Err(SaslError::from_code(response.error_code, message, &[]));
        }
        let done = Next::Done {
            session_lifetime_ms: response.session_lifetime_ms,
        };
        match &mut self.mechanism {
            Mechanism::Plain => Ok(done),
            Mechanism::Scram(scram) => Ok(match scram.handle(&response.auth_bytes)? {
                Some(last) => Next::Authenticate(authenticate(last)),
                None => done,
            }),
            Mechanism::OAuthBearer { refused } => match refused {
                Some(challenge) => Err(SaslError::TokenRefused(challenge.clone())),
                None if response.auth_bytes.is_empty() => Ok(done),
                None => {
                    *refused = Some(String::from_utf8_lossy(&response.auth_bytes).into_owned());
                    Ok(Next::Authenticate(authenticate(
                        oauthbearer::error_acknowledgement(),
                    )))
                }
            },
        }
    }
}

fn authenticate(bytes: SecretBytes) -> SaslAuthenticateRequest {
    SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(bytes.0))
}
