//! One broker connection as a state machine: request encoding, correlation of responses, and the
//! ApiVersions negotiation that opens every connection.
//!
//! The connection does no I/O. Frames to write come out of [`Connection::poll_transmit`] (length
//! prefix included); complete frames read from the socket (length prefix stripped, see
//! [`framing`](super::framing)) go into [`Connection::handle_frame`].
//!
//! # Lifecycle
//!
//! [`Connection::new`] queues an ApiVersions request (version
//! [`ConnectionConfig::api_versions_version`], v3 by default). The broker's answer yields the
//! per-API version table ([`NegotiatedVersions`]). A broker too old for our ApiVersions version
//! answers `UNSUPPORTED_VERSION` with a v0 body that lists its own ApiVersions range; we then
//! retry once, at the highest version of that range below the one refused, or at v0 when it
//! lists none (as the Java client and librdkafka do).
//!
//! **Decision:** until negotiation finishes, [`Connection::send`] *refuses* requests with
//! [`ConnectionError::NotReady`] rather than queueing them: the version of a request decides
//! which fields it may carry, so a caller cannot build a correct request before knowing the
//! version. Callers wait for [`Received::Negotiated`] (or [`Connection::is_ready`]).
//!
//! # Authentication
//!
//! With [`ConnectionConfig::sasl`] set, the negotiation goes on with SaslHandshake v1 and
//! SaslAuthenticate (see [`sasl`](super::sasl)) before the connection is ready; each SASL
//! request queued is reported as [`Received::Authenticating`], the end as
//! [`Received::Authenticated`] with the broker's session lifetime. The caller re-authenticates
//! a ready, idle connection before that lifetime ends with
//! [`Connection::start_reauthentication`] (KIP-368); requests are refused meanwhile. A failed
//! exchange is [`ConnectionError::Authentication`], fatal.
//!
//! # Correlation
//!
//! Kafka answers the requests of one connection in order, so a response must carry the
//! correlation id of the *oldest* request in flight. Anything else (no request in flight, an id
//! never sent, an id out of order) means the stream can no longer be trusted: the error is
//! fatal ([`ConnectionError::is_fatal`]) and the connection refuses all further use.
//! Requests that get no response (Produce with `acks = 0`) must be sent with
//! [`Connection::send_without_response`] so they do not wait in the in-flight queue.

use std::collections::VecDeque;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, ResponseHeader};
use kafka_protocol::protocol::{Request, StrBytes, VersionRange};

use self::codec::{api_key_of, decode_body, decode_response_header};
pub use self::codec::{encode_request, response_header_version};
use super::framing::FrameError;
use super::sasl::exchange::Authenticator;
use super::sasl::{NonceSource, SaslConfig, SaslError, SaslMechanism};
use super::versions::{NegotiatedVersions, NegotiationError, VersionPolicy};

/// Kafka error code `UNSUPPORTED_VERSION`.
const UNSUPPORTED_VERSION: i16 = 35;

/// How a connection introduces itself and what it negotiates.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// `client.id` sent in every request header (header v1 and later).
    pub client_id: Option<StrBytes>,
    /// Client software name sent in ApiVersions v3+ (`[a-zA-Z0-9.-]`, alphanumeric at both ends).
    pub software_name: StrBytes,
    /// Client software version sent in ApiVersions v3+ (same character rules).
    pub software_version: StrBytes,
    /// ApiVersions version to open with; clamped to what `kafka-protocol` supports.
    pub api_versions_version: i16,
    /// Required APIs and per-API version caps.
    pub policy: VersionPolicy,
    /// SASL credentials: when set, the connection authenticates after ApiVersions.
    pub sasl: Option<SaslConfig>,
    /// Seeds this connection's SCRAM client nonces (the caller draws a fresh seed per
    /// connection from its seeded randomness; see [`sasl`](super::sasl)).
    pub nonce_seed: u64,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            client_id: Some(StrBytes::from_static_str("kstreams")),
            software_name: StrBytes::from_static_str("kstreams"),
            software_version: StrBytes::from_static_str(env!("CARGO_PKG_VERSION")),
            api_versions_version: 3,
            policy: VersionPolicy::default(),
            sasl: None,
            nonce_seed: 0,
        }
    }
}

/// Where a connection is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// The ApiVersions exchange is under way; requests are refused.
    Negotiating,
    /// The SASL exchange (first or re-authentication) is under way; requests are refused.
    Authenticating,
    /// Versions are negotiated; requests may be sent.
    Ready,
    /// A fatal error happened or [`Connection::close`] was called; nothing more is accepted.
    Failed,
}

/// Errors of the connection state machine. Never a panic: malformed input from the network
/// always ends here.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConnectionError {
    /// A request was attempted before the ApiVersions exchange completed.
    #[error("connection is still negotiating API versions; cannot send {api:?}")]
    NotReady {
        /// The API of the refused request.
        api: ApiKey,
    },
    /// The connection failed earlier or was closed.
    #[error("connection has failed or was closed")]
    Closed,
    /// The broker shares no version of this API with us.
    #[error("broker does not support {api:?}")]
    UnsupportedApi {
        /// The API.
        api: ApiKey,
    },
    /// A specific version was requested outside the negotiated range.
    #[error("{api:?} v{version} is outside the negotiated range {usable}")]
    UnsupportedVersion {
        /// The API.
        api: ApiKey,
        /// The version asked for.
        version: i16,
        /// The negotiated range.
        usable: VersionRange,
    },
    /// The request type is not an API key `kafka-protocol` knows.
    #[error("unknown API key {key}")]
    UnknownApiKey {
        /// The raw key.
        key: i16,
    },
    /// The request could not be encoded at this version (for example a field set that the
    /// version lacks).
    #[error("cannot encode {api:?} v{version}: {detail}")]
    Encode {
        /// The API.
        api: ApiKey,
        /// The version.
        version: i16,
        /// The encoder's message.
        detail: String,
    },
    /// The encoded request does not fit a frame.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A response frame is shorter than a correlation id.
    #[error("response frame of {len} bytes is too short for a correlation id")]
    TruncatedHeader {
        /// The frame length.
        len: usize,
    },
    /// A response arrived while no request was in flight.
    #[error("response with correlation id {correlation_id} but no request is in flight")]
    UnexpectedResponse {
        /// The correlation id received.
        correlation_id: i32,
    },
    /// A response carried a correlation id this connection never has in flight.
    #[error("unknown correlation id {correlation_id} (expected {expected})")]
    UnknownCorrelationId {
        /// The correlation id received.
        correlation_id: i32,
        /// The oldest in-flight correlation id.
        expected: i32,
    },
    /// A response answered an in-flight request that is not the oldest: responses arrived out
    /// of order, which Kafka never does on one connection.
    #[error("response {correlation_id} arrived before {expected}")]
    OutOfOrderResponse {
        /// The correlation id received.
        correlation_id: i32,
        /// The oldest in-flight correlation id.
        expected: i32,
    },
    /// The response header could not be decoded.
    #[error("malformed response header for {api:?} v{version}: {detail}")]
    MalformedHeader {
        /// The API of the matched request.
        api: ApiKey,
        /// The version of the matched request.
        version: i16,
        /// The decoder's message.
        detail: String,
    },
    /// The response body could not be decoded (truncated or malformed).
    #[error("malformed {api:?} v{version} response body: {detail}")]
    MalformedBody {
        /// The API.
        api: ApiKey,
        /// The version.
        version: i16,
        /// The decoder's message.
        detail: String,
    },
    /// A response body was decoded as a type of another API than the request's.
    #[error("response is for {actual:?}, not API key {expected}")]
    UnexpectedApi {
        /// The API key of the type asked for.
        expected: i16,
        /// The API of the request the response answers.
        actual: ApiKey,
    },
    /// ApiVersions negotiation failed.
    #[error(transparent)]
    Negotiation(#[from] NegotiationError),
    /// SASL authentication failed.
    #[error("SASL {mechanism} authentication: {error}")]
    Authentication {
        /// The mechanism.
        mechanism: SaslMechanism,
        /// Why.
        error: SaslError,
    },
    /// [`Connection::start_reauthentication`] on a connection that is not ready, has
    /// requests in flight, or has no SASL configured.
    #[error("cannot re-authenticate: connection not ready, busy, or without SASL")]
    CannotReauthenticate,
}

impl ConnectionError {
    /// Whether the connection is unusable after this error (it then refuses everything). Errors
    /// about one request (encoding, versions, not ready) or one response body leave it usable.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            Self::Closed
                | Self::TruncatedHeader { .. }
                | Self::UnexpectedResponse { .. }
                | Self::UnknownCorrelationId { .. }
                | Self::OutOfOrderResponse { .. }
                | Self::MalformedHeader { .. }
                | Self::Negotiation(_)
                | Self::Authentication { .. }
        )
    }
}

/// What a received frame amounted to.
#[derive(Debug)]
pub enum Received<T> {
    /// The ApiVersions exchange finished; the connection is ready (without SASL).
    Negotiated,
    /// A SASL request (`api`) was queued for [`Connection::poll_transmit`]: the exchange
    /// goes on, the connection is not ready yet.
    Authenticating {
        /// SaslHandshake or SaslAuthenticate.
        api: ApiKey,
    },
    /// The SASL exchange finished; the connection is ready.
    Authenticated {
        /// The broker's session lifetime in milliseconds (SaslAuthenticate v1+; 0: none):
        /// re-authenticate before it ends.
        session_lifetime_ms: i64,
    },
    /// The broker refused our ApiVersions version; a retry at `version` is queued for
    /// [`Connection::poll_transmit`].
    NegotiationRetry {
        /// The ApiVersions version of the retry.
        version: i16,
    },
    /// The response to a caller's request.
    Response(Response<T>),
}

/// A response matched to its request, body not yet decoded.
#[derive(Debug, Clone)]
pub struct Response<T> {
    /// The token given with the request.
    pub token: T,
    /// The correlation id shared by request and response.
    pub correlation_id: i32,
    /// The API of the request.
    pub api_key: ApiKey,
    /// The version the request was sent at (and the body is encoded at).
    pub api_version: i16,
    /// The decoded response header (v0 or v1 depending on API and version).
    pub header: ResponseHeader,
    /// The undecoded body: a zero-copy view of the frame.
    pub body: Bytes,
}

impl<T> Response<T> {
    /// Decodes the body as the response type of request type `R`. Fails with
    /// [`ConnectionError::UnexpectedApi`] if the request was of another API, and with
    /// [`ConnectionError::MalformedBody`] if the body is truncated or malformed. Bytes left
    /// after a complete body are tolerated (logged at debug level).
    pub fn decode<R: Request>(&self) -> Result<R::Response, ConnectionError> {
        if R::KEY != self.api_key as i16 {
            return Err(ConnectionError::UnexpectedApi {
                expected: R::KEY,
                actual: self.api_key,
            });
        }
        decode_body::<R::Response>(&self.body, self.api_key, self.api_version)
    }
}

#[derive(Debug)]
enum Purpose<T> {
    Negotiation,
    Sasl,
    Caller(T),
}

#[derive(Debug)]
struct InFlight<T> {
    correlation_id: i32,
    api_key: ApiKey,
    api_version: i16,
    purpose: Purpose<T>,
}

#[derive(Debug)]
enum State {
    Negotiating {
        retried: bool,
    },
    /// `reauthenticating`: the connection was ready before (its versions stay usable).
    Authenticating {
        versions: NegotiatedVersions,
        reauthenticating: bool,
    },
    Ready(NegotiatedVersions),
    Failed,
}

/// One broker connection: encodes requests, matches responses, negotiates versions.
///
/// `T` is a caller token stored with each request and handed back with its response (for
/// example which partition a Fetch was for).
#[derive(Debug)]
pub struct Connection<T> {
    config: ConnectionConfig,
    state: State,
    next_correlation_id: i32,
    in_flight: VecDeque<InFlight<T>>,
    transmit: VecDeque<Bytes>,
    /// The SASL exchange under way.
    sasl: Option<Authenticator>,
    nonces: NonceSource,
}

impl<T> Connection<T> {
    /// Creates the connection and queues its ApiVersions request.
    pub fn new(config: ConnectionConfig) -> Self {
        let ours = ApiKey::ApiVersions.valid_versions();
        let version = config.api_versions_version.clamp(ours.min, ours.max);
        let nonces = NonceSource::new(config.nonce_seed);
        let mut connection = Self {
            config,
            sasl: None,
            nonces,
            state: State::Negotiating { retried: false },
            next_correlation_id: 0,
            in_flight: VecDeque::new(),
            transmit: VecDeque::new(),
        };
        connection.queue_api_versions(version);
        connection
    }

    /// The lifecycle state.
    pub fn state(&self) -> ConnectionState {
        match self.state {
            State::Negotiating { .. } => ConnectionState::Negotiating,
            State::Authenticating { .. } => ConnectionState::Authenticating,
            State::Ready(_) => ConnectionState::Ready,
            State::Failed => ConnectionState::Failed,
        }
    }

    /// Whether requests may be sent.
    pub fn is_ready(&self) -> bool {
        matches!(self.state, State::Ready(_))
    }

    /// The negotiated version table, once ready (and while re-authenticating).
    pub fn versions(&self) -> Option<&NegotiatedVersions> {
        match &self.state {
            State::Ready(versions)
            | State::Authenticating {
                versions,
                reauthenticating: true,
            } => Some(versions),
            _ => None,
        }
    }

    /// The next frame to write to the socket (length prefix included), in order.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.transmit.pop_front()
    }

    /// Number of requests waiting for their response.
    pub fn in_flight_len(&self) -> usize {
        self.in_flight.len()
    }

    /// Sends `request` at the highest negotiated version of its API and returns its correlation
    /// id. The frame is queued for [`poll_transmit`](Self::poll_transmit).
    pub fn send<R: Request>(&mut self, request: &R, token: T) -> Result<i32, ConnectionError> {
        let version = self.usable_range::<R>()?.max;
        self.send_at_version(request, version, token)
    }

    /// Sends `request` at `version`, which must lie in the negotiated range of its API.
    pub fn send_at_version<R: Request>(
        &mut self,
        request: &R,
        version: i16,
        token: T,
    ) -> Result<i32, ConnectionError> {
        self.send_inner(request, version, Some(Purpose::Caller(token)))
    }

    /// Sends a request the broker will not answer (Produce with `acks = 0`) at the highest
    /// negotiated version; it is not tracked in flight.
    pub fn send_without_response<R: Request>(
        &mut self,
        request: &R,
    ) -> Result<i32, ConnectionError> {
        let version = self.usable_range::<R>()?.max;
        self.send_inner(request, version, None)
    }

    /// Marks the connection failed (socket gone) and returns the tokens of the requests that
    /// will never be answered, oldest first, so the caller can retry them elsewhere.
    pub fn close(&mut self) -> Vec<T> {
        self.state = State::Failed;
        self.transmit.clear();
        self.in_flight
            .drain(..)
            .filter_map(|entry| match entry.purpose {
                Purpose::Caller(token) => Some(token),
                Purpose::Negotiation | Purpose::Sasl => None,
            })
            .collect()
    }

    /// Handles one complete response frame (length prefix stripped).
    pub fn handle_frame(&mut self, frame: Bytes) -> Result<Received<T>, ConnectionError> {
        if matches!(self.state, State::Failed) {
            return Err(ConnectionError::Closed);
        }
        let result = self.handle_frame_inner(frame);
        if let Err(error) = &result
            && error.is_fatal()
        {
            self.state = State::Failed;
        }
        result
    }

    fn handle_frame_inner(&mut self, frame: Bytes) -> Result<Received<T>, ConnectionError> {
        let Some(id_bytes) = frame.get(..4) else {
            return Err(ConnectionError::TruncatedHeader { len: frame.len() });
        };
        let correlation_id =
            i32::from_be_bytes([id_bytes[0], id_bytes[1], id_bytes[2], id_bytes[3]]);
        let Some(oldest) = self.in_flight.front() else {
            return Err(ConnectionError::UnexpectedResponse { correlation_id });
        };
        if oldest.correlation_id != correlation_id {
            let expected = oldest.correlation_id;
            return Err(
                if self
                    .in_flight
                    .iter()
                    .any(|e| e.correlation_id == correlation_id)
                {
                    ConnectionError::OutOfOrderResponse {
                        correlation_id,
                        expected,
                    }
                } else {
                    ConnectionError::UnknownCorrelationId {
                        correlation_id,
                        expected,
                    }
                },
            );
        }
        let Some(request) = self.in_flight.pop_front() else {
            return Err(ConnectionError::UnexpectedResponse { correlation_id });
        };
        let (header, body) = decode_response_header(frame, request.api_key, request.api_version)?;
        match request.purpose {
            Purpose::Negotiation => self.complete_negotiation(&body, request.api_version),
            Purpose::Sasl => self.continue_sasl(&body, request.api_key, request.api_version),
            Purpose::Caller(token) => Ok(Received::Response(Response {
                token,
                correlation_id,
                api_key: request.api_key,
                api_version: request.api_version,
                header,
                body,
            })),
        }
    }

    fn complete_negotiation(
        &mut self,
        body: &Bytes,
        version: i16,
    ) -> Result<Received<T>, ConnectionError> {
        let State::Negotiating { retried } = self.state else {
            // An ApiVersions response for the internal request can only arrive while negotiating.
            return Err(ConnectionError::Closed);
        };
        let error_code = match body.get(..2) {
            Some(code) => i16::from_be_bytes([code[0], code[1]]),
            None => {
                return Err(NegotiationError::MalformedResponse {
                    version,
                    detail: format!("body of {} bytes has no error code", body.len()),
                }
                .into());
            }
        };
        if error_code == UNSUPPORTED_VERSION {
            if retried {
                return Err(NegotiationError::ApiVersionsUnsupported { version }.into());
            }
            // A broker answers an ApiVersions version it does not know with a v0 body; accept
            // one encoded at the version we sent too.
            let advertised_max = decode_body::<ApiVersionsResponse>(body, ApiKey::ApiVersions, 0)
                .or_else(|_| decode_body::<ApiVersionsResponse>(body, ApiKey::ApiVersions, version))
                .ok()
                .and_then(|response| {
                    response
                        .api_keys
                        .iter()
                        .find(|entry| entry.api_key == ApiKey::ApiVersions as i16)
                        .map(|entry| entry.max_version)
                });
            let ours = ApiKey::ApiVersions.valid_versions();
            let retry_version = match advertised_max {
                Some(max) if max < version && max >= ours.min => max.min(ours.max),
                _ => 0,
            };
            self.state = State::Negotiating { retried: true };
            self.queue_api_versions(retry_version);
            return Ok(Received::NegotiationRetry {
                version: retry_version,
            });
        }
        let response = decode_body::<ApiVersionsResponse>(body, ApiKey::ApiVersions, version)
            .map_err(|err| match err {
                ConnectionError::MalformedBody { detail, .. } => {
                    NegotiationError::MalformedResponse { version, detail }.into()
                }
                other => other,
            })?;
        let versions = NegotiatedVersions::negotiate(&response, &self.config.policy)?;
        if self.config.sasl.is_some() {
            return self.start_sasl(versions, false);
        }
        self.state = State::Ready(versions);
        Ok(Received::Negotiated)
    }

    fn queue_api_versions(&mut self, version: i16) {
        let mut request = ApiVersionsRequest::default();
        if version >= 3 {
            request.client_software_name = self.config.software_name.clone();
            request.client_software_version = self.config.software_version.clone();
        }
        if let Err(error) = self.send_inner(&request, version, Some(Purpose::Negotiation)) {
            // Only possible with a software name/version the encoder refuses; report it at
            // the first handle_frame/send by failing the connection now.
            tracing::warn!(%error, "cannot encode ApiVersions request");
            self.state = State::Failed;
        }
    }

    fn usable_range<R: Request>(&self) -> Result<VersionRange, ConnectionError> {
        let api = api_key_of::<R>()?;
        let versions = match &self.state {
            State::Ready(versions) => versions,
            State::Negotiating { .. } | State::Authenticating { .. } => {
                return Err(ConnectionError::NotReady { api });
            }
            State::Failed => return Err(ConnectionError::Closed),
        };
        let negotiated = versions
            .get(api)
            .ok_or(ConnectionError::UnsupportedApi { api })?;
        let usable = negotiated.usable.intersect(&R::VERSIONS);
        if usable.is_empty() {
            return Err(ConnectionError::UnsupportedApi { api });
        }
        Ok(usable)
    }

    /// `purpose == None`: fire-and-forget. Negotiation and SASL requests bypass the readiness
    /// check.
    fn send_inner<R: Request>(
        &mut self,
        request: &R,
        version: i16,
        purpose: Option<Purpose<T>>,
    ) -> Result<i32, ConnectionError> {
        let api = api_key_of::<R>()?;
        if !matches!(purpose, Some(Purpose::Negotiation | Purpose::Sasl)) {
            let usable = self.usable_range::<R>()?;
            if version < usable.min || version > usable.max {
                return Err(ConnectionError::UnsupportedVersion {
                    api,
                    version,
                    usable,
                });
            }
        }
        let correlation_id = self.next_correlation_id;
        let frame = encode_request(
            request,
            api,
            version,
            correlation_id,
            &self.config.client_id,
        )?;
        self.next_correlation_id = correlation_id.checked_add(1).unwrap_or(0);
        self.transmit.push_back(frame);
        if let Some(purpose) = purpose {
            self.in_flight.push_back(InFlight {
                correlation_id,
                api_key: api,
                api_version: version,
                purpose,
            });
        }
        Ok(correlation_id)
    }
}

mod authentication;
mod codec;
#[cfg(test)]
mod tests;
