//! One Kafka request over a fresh blocking TCP connection, encoded and decoded with
//! `kafka-protocol`: what the broker launchers ([`crate::tansu`], [`crate::crabka`]) use to
//! see whether a broker is ready and to set it up, without a client library.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};

/// How long a connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// Sends `request` at `version` to `address` on a new connection and returns the decoded
/// response, or why there is none (as text, for the launchers' error messages). Reads wait at
/// most `read_timeout`.
pub fn round_trip<R: Request>(
    address: SocketAddr,
    request: &R,
    version: i16,
    read_timeout: Duration,
) -> Result<R::Response, String> {
    let api = ApiKey::try_from(R::KEY).map_err(|()| format!("unknown API key {}", R::KEY))?;
    let mut stream = TcpStream::connect_timeout(&address, CONNECT_TIMEOUT)
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(read_timeout))
        .map_err(|e| e.to_string())?;
    let correlation_id = 1;
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("kstreams-tests")));
    let mut body = BytesMut::new();
    header
        .encode(&mut body, api.request_header_version(version))
        .map_err(|e| format!("{api:?} v{version} header: {e}"))?;
    request
        .encode(&mut body, version)
        .map_err(|e| format!("{api:?} v{version}: {e}"))?;
    let mut frame = BytesMut::new();
    frame.put_i32(i32::try_from(body.len()).map_err(|_| "request too large".to_owned())?);
    frame.extend_from_slice(&body);
    stream
        .write_all(&frame)
        .map_err(|e| format!("write: {e}"))?;
    let mut size = [0u8; 4];
    stream
        .read_exact(&mut size)
        .map_err(|e| format!("read: {e}"))?;
    let size = i32::from_be_bytes(size);
    let size = usize::try_from(size).map_err(|_| format!("negative frame size {size}"))?;
    let mut response = vec![0u8; size];
    stream
        .read_exact(&mut response)
        .map_err(|e| format!("read: {e}"))?;
    let mut response = bytes::Bytes::from(response);
    // ApiVersions answers with header v0 whatever the request's version (KIP-511).
    let header_version = if api == ApiKey::ApiVersions {
        0
    } else {
        api.response_header_version(version)
    };
    let header = kafka_protocol::messages::ResponseHeader::decode(&mut response, header_version)
        .map_err(|e| format!("{api:?} v{version} response header: {e}"))?;
    if header.correlation_id != correlation_id {
        return Err(format!(
            "correlation id {}, expected {correlation_id}",
            header.correlation_id
        ));
    }
    let decoded = R::Response::decode(&mut response, version)
        .map_err(|e| format!("{api:?} v{version} response: {e}"))?;
    if response.has_remaining() {
        return Err(format!(
            "{api:?} v{version} response: {} trailing bytes",
            response.remaining()
        ));
    }
    Ok(decoded)
}
