//! The bytes of one request or response: a request frame encoded whole (length prefix,
//! header, body), a response header split from its body, a body decoded at its version.
//! Failures are [`ConnectionError`]s, never panics.

use bytes::{Buf, Bytes};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};

use super::ConnectionError;
use crate::wire::framing::FrameBuilder;

/// Decodes a response body of `api` at `version` (trailing bytes are logged, not refused).
pub(super) fn decode_body<M: Decodable>(
    body: &Bytes,
    api: ApiKey,
    version: i16,
) -> Result<M, ConnectionError> {
    let mut buf = body.clone();
    let message = M::decode(&mut buf, version).map_err(|err| ConnectionError::MalformedBody {
        api,
        version,
        detail: format!("{err:#}"),
    })?;
    if buf.has_remaining() {
        tracing::debug!(
            ?api,
            version,
            trailing = buf.remaining(),
            "response body has trailing bytes"
        );
    }
    Ok(message)
}

pub(super) fn api_key_of<R: Request>() -> Result<ApiKey, ConnectionError> {
    ApiKey::try_from(R::KEY).map_err(|()| ConnectionError::UnknownApiKey { key: R::KEY })
}

/// The response header version for `api` at `version`. ApiVersions responses always use header
/// v0, even for flexible versions, so that a client can read a broker's answer to a version it
/// does not speak.
pub fn response_header_version(api: ApiKey, version: i16) -> i16 {
    if api == ApiKey::ApiVersions {
        0
    } else {
        api.response_header_version(version)
    }
}

/// Encodes a complete request frame: length prefix, request header at the header version
/// `api` requires at `version`, then the body.
pub fn encode_request<R: Encodable>(
    request: &R,
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    client_id: &Option<StrBytes>,
) -> Result<Bytes, ConnectionError> {
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(client_id.clone());
    // Sized up front: a Produce request carries whole record batches, and growing the
    // buffer while encoding would copy them again at every doubling.
    let header_version = api.request_header_version(version);
    let size = header
        .compute_size(header_version)
        .and_then(|header| Ok(header + request.compute_size(version)?))
        .map_err(|err| encode_failure(api, version, err))?;
    let mut builder = FrameBuilder::with_capacity(size);
    header
        .encode(builder.payload_mut(), api.request_header_version(version))
        .map_err(|err| encode_failure(api, version, err))?;
    request
        .encode(builder.payload_mut(), version)
        .map_err(|err| encode_failure(api, version, err))?;
    Ok(builder.finish()?)
}

fn encode_failure(api: ApiKey, version: i16, err: impl std::fmt::Display) -> ConnectionError {
    ConnectionError::Encode {
        api,
        version,
        detail: format!("{err:#}"),
    }
}

/// Splits a response frame into its decoded header and the body that follows.
pub(super) fn decode_response_header(
    frame: Bytes,
    api: ApiKey,
    version: i16,
) -> Result<(ResponseHeader, Bytes), ConnectionError> {
    let mut buf = frame;
    let header =
        ResponseHeader::decode(&mut buf, response_header_version(api, version)).map_err(|err| {
            ConnectionError::MalformedHeader {
                api,
                version,
                detail: format!("{err:#}"),
            }
        })?;
    Ok((header, buf))
}
