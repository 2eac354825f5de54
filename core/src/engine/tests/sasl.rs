//! SASL through the whole engine: nothing but the SASL exchange goes out before the
//! connection authenticated, and a refused login fails the engine (no reconnect loop).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, RequestHeader, ResponseHeader, SaslAuthenticateResponse,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Encodable, StrBytes, decode_request_header_from_buffer};

use super::*;
use crate::wire::sasl::{SaslConfig, SaslError, SaslMechanism};

/// The request headers transmitted to `id` among `outputs`.
fn requests(outputs: &[Output], id: ConnectionId) -> Vec<RequestHeader> {
    let mut headers = Vec::new();
    for o in outputs {
        if let Output::Transmit { connection, bytes } = o
            && *connection == id
        {
            let mut bytes = bytes.clone();
            while bytes.has_remaining() {
                let len = usize::try_from(bytes.get_i32()).expect("length");
                let mut frame = bytes.split_to(len);
                headers.push(decode_request_header_from_buffer(&mut frame).expect("header"));
            }
        }
    }
    headers
}

fn response<M: Encodable>(header: &RequestHeader, body: &M) -> Bytes {
    let api = ApiKey::try_from(header.request_api_key).expect("key");
    let header_version = if api == ApiKey::ApiVersions {
        0
    } else {
        api.response_header_version(header.request_api_version)
    };
    let mut payload = BytesMut::new();
    ResponseHeader::default()
        .with_correlation_id(header.correlation_id)
        .encode(&mut payload, header_version)
        .expect("header");
    body.encode(&mut payload, header.request_api_version)
        .expect("body");
    let mut frame = BytesMut::new();
    frame.put_i32(i32::try_from(payload.len()).expect("size"));
    frame.extend_from_slice(&payload);
    frame.freeze()
}

fn full_broker() -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(
        ApiKey::iter()
            .map(|api| {
                let range = api.valid_versions();
                ApiVersion::default()
                    .with_api_key(api as i16)
                    .with_min_version(range.min)
                    .with_max_version(range.max)
            })
            .collect(),
    )
}

/// Sends `reply` to the one request on `id` and returns that request's API and the outputs.
fn answer_only_request<M: Encodable>(
    e: &mut Engine,
    id: ConnectionId,
    outputs: &[Output],
    expected: ApiKey,
    reply: &M,
) -> Vec<Output> {
    let sent = requests(outputs, id);
    assert_eq!(sent.len(), 1, "one request at a time: {sent:?}");
    assert_eq!(ApiKey::try_from(sent[0].request_api_key), Ok(expected));
    e.handle_received(id, &response(&sent[0], reply), at(1));
    drain(e, at(1))
}

#[test]
fn only_sasl_goes_out_before_authentication_and_a_refused_login_fails_the_engine() {
    let mut config = EngineConfig::new("app", ["broker:9092"]);
    config.sasl = Some(SaslConfig::scram_sha512("alice", "hunter2"));
    let mut e = engine_with(config);
    let id = connect_of(drain(&mut e, at(0))).expect("connects");
    e.handle_connected(id, at(0));
    let out = drain(&mut e, at(0));
    let out = answer_only_request(&mut e, id, &out, ApiKey::ApiVersions, &full_broker());
    let out = answer_only_request(
        &mut e,
        id,
        &out,
        ApiKey::SaslHandshake,
        &SaslHandshakeResponse::default(),
    );
    let refused = SaslAuthenticateResponse::default()
        .with_error_code(58)
        .with_error_message(Some(StrBytes::from_static_str("Authentication failed")));
    let out = answer_only_request(&mut e, id, &out, ApiKey::SaslAuthenticate, &refused);
    let failed = out
        .iter()
        .find_map(|o| match o {
            Output::Event(Event::Failed(error)) => Some(error),
            _ => None,
        })
        .unwrap_or_else(|| panic!("the engine fails: {out:?}"));
    assert!(
        matches!(
            failed,
            EngineError::Authentication {
                broker,
                mechanism: SaslMechanism::ScramSha512,
                reason: SaslError::AuthenticationFailed { .. },
            } if broker == "broker:9092"
        ),
        "{failed:?}"
    );
    assert!(!format!("{failed} {failed:?}").contains("hunter2"));
    assert_eq!(e.state(), EngineState::Error);
    // No reconnect: nothing more to do, ever.
    e.handle_timeout(at(60_000));
    let later = drain(&mut e, at(60_000));
    assert!(
        !later.iter().any(|o| matches!(o, Output::Connect { .. })),
        "{later:?}"
    );
}
