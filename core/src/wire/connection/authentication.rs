//! The SASL part of a [`Connection`]: the exchange after ApiVersions, and re-authentication
//! (see the [parent module](super) and [`sasl`](crate::wire::sasl)).

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeResponse,
};

use super::codec::decode_body;
use super::{Connection, ConnectionError, Purpose, Received, State};
use crate::wire::sasl::SaslError;
use crate::wire::sasl::exchange::{Authenticator, Next};
use crate::wire::versions::NegotiatedVersions;

impl<T> Connection<T> {
    /// Starts re-authenticating a ready connection with no request in flight (KIP-368: the
    /// exchange must not interleave with other requests). Requests are refused until
    /// [`Received::Authenticated`].
    pub fn start_reauthentication(&mut self) -> Result<(), ConnectionError> {
        if self.config.sasl.is_none()
            || !self.in_flight.is_empty()
            || !matches!(self.state, State::Ready(_))
        {
            return Err(ConnectionError::CannotReauthenticate);
        }
        let State::Ready(versions) = std::mem::replace(&mut self.state, State::Failed) else {
            unreachable!("checked just above");
        };
        self.start_sasl(versions, true).map(|_| ())
    }

    pub(super) fn start_sasl(
        &mut self,
        versions: NegotiatedVersions,
        reauthenticating: bool,
    ) -> Result<Received<T>, ConnectionError> {
        let config = self
            .config
            .sasl
            .as_ref()
            .expect("start_sasl is called only with SASL configured");
        let authenticator = Authenticator::new(config, self.nonces.nonce());
        let mechanism = authenticator.mechanism();
        let framed = versions
            .get(ApiKey::SaslHandshake)
            .is_some_and(|h| h.usable.max >= 1)
            && versions.get(ApiKey::SaslAuthenticate).is_some();
        if !framed {
            return Err(ConnectionError::Authentication {
                mechanism,
                error: SaslError::UnframedUnsupported,
            });
        }
        let request = authenticator.handshake_request();
        self.sasl = Some(authenticator);
        self.state = State::Authenticating {
            versions,
            reauthenticating,
        };
        self.send_inner(&request, 1, Some(Purpose::Sasl))?;
        Ok(Received::Authenticating {
            api: ApiKey::SaslHandshake,
        })
    }

    pub(super) fn continue_sasl(
        &mut self,
        body: &Bytes,
        api: ApiKey,
        version: i16,
    ) -> Result<Received<T>, ConnectionError> {
        let Some(authenticator) = self.sasl.as_mut() else {
            return Err(ConnectionError::Closed);
        };
        let mechanism = authenticator.mechanism();
        let failed = |error| ConnectionError::Authentication { mechanism, error };
        // An undecodable SASL answer ends the exchange (fatal): nothing else could go on.
        let malformed = |error: ConnectionError| failed(SaslError::Malformed(error.to_string()));
        let next = if api == ApiKey::SaslHandshake {
            let response =
                decode_body::<SaslHandshakeResponse>(body, api, version).map_err(malformed)?;
            Next::Authenticate(authenticator.handle_handshake(&response).map_err(failed)?)
        } else {
            let response =
                decode_body::<SaslAuthenticateResponse>(body, api, version).map_err(malformed)?;
            authenticator
                .handle_authenticate(&response)
                .map_err(failed)?
        };
        match next {
            Next::Authenticate(request) => {
                self.send_sasl_authenticate(&request)?;
                Ok(Received::Authenticating {
                    api: ApiKey::SaslAuthenticate,
                })
            }
            Next::Done {
                session_lifetime_ms,
            } => {
                self.sasl = None;
                let state = std::mem::replace(&mut self.state, State::Failed);
                let State::Authenticating { versions, .. } = state else {
                    unreachable!("SASL requests are in flight only while authenticating");
                };
                self.state = State::Ready(versions);
                Ok(Received::Authenticated {
                    session_lifetime_ms,
                })
            }
        }
    }

    fn send_sasl_authenticate(
        &mut self,
        request: &SaslAuthenticateRequest,
    ) -> Result<(), ConnectionError> {
        let State::Authenticating { versions, .. } = &self.state else {
            unreachable!("SASL requests are sent only while authenticating");
        };
        let version = versions
            .get(ApiKey::SaslAuthenticate)
            .map(|v| {
                v.usable
                    .intersect(&ApiKey::SaslAuthenticate.valid_versions())
                    .max
            })
            .ok_or(ConnectionError::UnsupportedApi {
                api: ApiKey::SaslAuthenticate,
            })?;
        self.send_inner(request, version, Some(Purpose::Sasl))
            .map(|_| ())
    }
}
