//! SASL through the router: no request before authentication, a failed authentication is
//! fatal and names the broker, re-authentication (KIP-368) waits for an idle connection,
//! holds new requests and is folded into the deadlines.

use kafka_protocol::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, StrBytes};

use super::*;
use crate::engine::deadline::Deadline;
use crate::wire::sasl::{SaslConfig, SaslError, SaslMechanism};

fn sasl_router() -> Router {
    let mut config = config();
    config.connection.sasl = Some(SaslConfig::plain("alice", "hunter2"));
    Router::new(config, [(-1, "boot".to_owned(), 9092)], at(0))
}

/// The one request transmitted to `id` since the last call.
fn next_request(r: &mut Router, id: ConnectionId) -> (RequestHeader, Bytes) {
    r.transmit();
    let out = transports(r);
    let mut requests = requests_to(&out, id);
    assert_eq!(requests.len(), 1, "{requests:?}");
    requests.remove(0)
}

fn assert_api(header: &RequestHeader, api: ApiKey) {
    assert_eq!(
        ApiKey::try_from(header.request_api_key),
        Ok(api),
        "{header:?}"
    );
}

/// Connects, answers ApiVersions and SaslHandshake; returns the id and the SaslAuthenticate
/// request waiting for its answer.
fn up_to_authenticate(r: &mut Router, now: Instant) -> (ConnectionId, RequestHeader) {
    assert!(r.ensure_general_connection());
    let (id, _) = connects(&transports(r))[0].clone();
    r.handle_connected(id, now);
    let (header, _) = next_request(r, id);
    assert_api(&header, ApiKey::ApiVersions);
    r.handle_received(id, &response(&header, &full_broker()), now);
    (id, handshake(r, id, now))
}

/// Answers the SaslHandshake transmitted to `id`; returns the SaslAuthenticate that follows.
fn handshake(r: &mut Router, id: ConnectionId, now: Instant) -> RequestHeader {
    let (header, mut body) = next_request(r, id);
    assert_api(&header, ApiKey::SaslHandshake);
    assert_eq!(header.request_api_version, 1);
    let request = SaslHandshakeRequest::decode(&mut body, 1).expect("handshake");
    assert_eq!(request.mechanism.as_str(), "PLAIN");
    r.handle_received(
        id,
        &response(&header, &SaslHandshakeResponse::default()),
        now,
    );
    let (header, mut body) = next_request(r, id);
    assert_api(&header, ApiKey::SaslAuthenticate);
    let request = SaslAuthenticateRequest::decode(&mut body, header.request_api_version)
        .expect("authenticate");
    assert_eq!(&request.auth_bytes[..], b"\0alice\0hunter2");
    assert!(!r.any_ready(), "not ready before authentication");
    header
}

fn authenticated(lifetime_ms: i64) -> SaslAuthenticateResponse {
    SaslAuthenticateResponse::default().with_session_lifetime_ms(lifetime_ms)
}

fn earliest(r: &Router) -> Option<Deadline> {
    let mut earliest = Earliest::default();
    r.offer_deadlines(&mut earliest);
    earliest.get()
}

#[test]
fn requests_wait_until_the_connection_authenticated() {
    let mut r = sasl_router();
    r.send(Component::Metadata, metadata_request(), at(0));
    assert!(!r.flush(None));
    let (id, auth) = up_to_authenticate(&mut r, at(0));
    // Authentication requests are timed like any other.
    assert_eq!(
        earliest(&r).map(|d| d.reason),
        Some(TimeoutReason::RequestDeadline)
    );
    assert!(!r.flush(None), "the metadata request still waits");
    r.handle_received(id, &response(&auth, &authenticated(0)), at(1));
    assert!(routed(&mut r).is_empty());
    assert!(r.any_ready());
    assert!(r.flush(None));
    let (header, _) = next_request(&mut r, id);
    assert_api(&header, ApiKey::Metadata);
}

#[test]
fn a_failed_authentication_is_fatal_names_the_broker_and_closes() {
    let mut r = sasl_router();
    let (id, auth) = up_to_authenticate(&mut r, at(0));
    let refused = SaslAuthenticateResponse::default()
        .with_error_code(58)
        .with_error_message(Some(StrBytes::from_static_str("Invalid credentials")));
    r.handle_received(id, &response(&auth, &refused), at(1));
    let routed = routed(&mut r);
    let fatal = routed
        .iter()
        .find_map(|x| match x {
            Routed::Fatal(error) => Some(error),
            _ => None,
        })
        .expect("fatal");
    match fatal {
        EngineError::Authentication {
            broker,
            mechanism: SaslMechanism::Plain,
            reason: SaslError::AuthenticationFailed { message },
        } => {
            assert_eq!(broker, "boot:9092");
            assert_eq!(message, "Invalid credentials");
        }
        other => panic!("{other:?}"),
    }
    assert!(!fatal.to_string().contains("hunter2"));
    assert!(
        transports(&mut r)
            .iter()
            .any(|o| matches!(o, Output::Close { connection } if *connection == id))
    );
}

#[test]
fn reauthentication_waits_for_an_idle_connection_and_holds_new_requests() {
    let mut r = sasl_router();
    let (id, auth) = up_to_authenticate(&mut r, at(0));
    r.handle_received(id, &response(&auth, &authenticated(10_000)), at(0));
    assert_eq!(
        r.connection_metrics().reauthentications,
        0,
        "the first authentication is not a re-authentication"
    );
    let due = earliest(&r).expect("a deadline");
    assert_eq!(due.reason, TimeoutReason::Reauthentication);
    assert!(
        (8_500..=9_500).contains(&due.at.as_millis()),
        "85-95 % of the lifetime: {due:?}"
    );
    // A request in flight when re-authentication comes due.
    r.send(Component::Metadata, metadata_request(), at(1));
    assert!(r.flush(None));
    let (in_flight, _) = next_request(&mut r, id);
    r.handle_timeout(due.at);
    r.transmit();
    assert!(
        requests_to(&transports(&mut r), id).is_empty(),
        "no handshake while a request is in flight"
    );
    // New requests wait.
    r.send(Component::Metadata, metadata_request(), due.at);
    assert!(!r.flush(None));
    r.handle_received(
        id,
        &response(&in_flight, &MetadataResponse::default()),
        due.at,
    );
    assert_eq!(routed(&mut r).len(), 1, "the answer is routed");
    let auth = handshake(&mut r, id, due.at);
    assert!(!r.flush(None), "still waiting during the exchange");
    assert_eq!(r.connection_metrics().reauthentications, 0, "not over yet");
    r.handle_received(id, &response(&auth, &authenticated(10_000)), due.at);
    let counted = r.connection_metrics();
    assert_eq!(counted.reauthentications, 1);
    assert_eq!((counted.created, counted.closed), (1, 0), "{counted:?}");
    assert!(r.flush(None));
    let (header, _) = next_request(&mut r, id);
    assert_api(&header, ApiKey::Metadata);
    let next = earliest(&r).expect("deadlines");
    assert_eq!(
        next.reason,
        TimeoutReason::Reauthentication,
        "scheduled again"
    );
    assert!(
        next.at.as_millis() >= due.at.as_millis() + 8_500,
        "{next:?}"
    );
}

#[test]
fn the_engine_config_debug_output_hides_the_password() {
    let engine = crate::engine::EngineConfig {
        sasl: Some(SaslConfig::scram_sha256("alice", "hunter2")),
        ..crate::engine::EngineConfig::new("app", ["localhost:9092"])
    };
    let debug = format!("{engine:?}");
    assert!(
        debug.contains("alice") && !debug.contains("hunter2"),
        "{debug}"
    );
}

/// A broker without SaslHandshake v1 (Kafka before 1.0) would need the unframed exchange,
/// which is not supported: fatal, with its own error.
#[test]
fn a_broker_without_framed_sasl_is_fatal() {
    let mut r = sasl_router();
    assert!(r.ensure_general_connection());
    let (id, _) = connects(&transports(&mut r))[0].clone();
    r.handle_connected(id, at(0));
    let (header, _) = next_request(&mut r, id);
    let mut old = full_broker();
    for api in &mut old.api_keys {
        if api.api_key == ApiKey::SaslHandshake as i16 {
            api.max_version = 0;
        }
    }
    old.api_keys
        .retain(|api| api.api_key != ApiKey::SaslAuthenticate as i16);
    r.handle_received(id, &response(&header, &old), at(0));
    assert!(
        routed(&mut r).iter().any(|x| matches!(
            x,
            Routed::Fatal(EngineError::Authentication {
                reason: SaslError::UnframedUnsupported,
                ..
            })
        )),
        "fatal"
    );
    assert!(!r.any_ready());
}
