//! Requests and responses as the router moves them: a [`RequestKind`] sent at the version its
//! component built it for, a response body decoded into a [`ResponseKind`], and the API of
//! a request.

use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};

use super::peer::Token;
use crate::wire::connection::{Connection, ConnectionError, Response};

/// The requests the engine sends, listed once: `api_of` and `send_request` agree on them.
macro_rules! engine_requests {
    ($($variant:ident),* $(,)?) => {
        /// Which API a request is; `None` for a request the engine never sends (no component
        /// builds one: a bug, caught by the router).
        pub(crate) fn api_of(request: &RequestKind) -> Option<ApiKey> {
            match request {
                $(RequestKind::$variant(_) => Some(ApiKey::$variant),)*
                _ => None,
            }
        }

        /// Sends a [`RequestKind`] through a connection at `version`.
        pub(crate) fn send_request(
            conn: &mut Connection<Token>,
            request: &RequestKind,
            version: i16,
            token: Token,
        ) -> Result<i32, ConnectionError> {
            match request {
                $(RequestKind::$variant(r) => conn.send_at_version(r, version, token),)*
                _ => Err(ConnectionError::Encode {
                    api: token.api,
                    version,
                    detail: "the engine does not send this request".into(),
                }),
            }
        }
    };
}

engine_requests!(
    Metadata,
    FindCoordinator,
    JoinGroup,
    SyncGroup,
    Heartbeat,
    LeaveGroup,
    OffsetFetch,
    OffsetCommit,
    ListOffsets,
    Fetch,
    Produce,
    InitProducerId,
    CreateTopics,
    AddPartitionsToTxn,
    AddOffsetsToTxn,
    TxnOffsetCommit,
    EndTxn,
);

/// Decodes a response body into a [`ResponseKind`].
pub(crate) fn decode_response(response: &Response<Token>) -> Result<ResponseKind, ConnectionError> {
    let mut body = response.body.clone();
    ResponseKind::decode(response.api_key, &mut body, response.api_version).map_err(|e| {
        ConnectionError::MalformedBody {
            api: response.api_key,
            version: response.api_version,
            detail: format!("{e:#}"),
        }
    })
}

/// The last version of `api` whose request header is not flexible (no tagged fields), if
/// `api` has flexible versions and an older one besides.
pub(crate) fn last_non_flexible_version(api: ApiKey) -> Option<i16> {
    let range = api.valid_versions();
    let first_flexible = (range.min..=range.max).find(|&v| api.request_header_version(v) >= 2)?;
    (first_flexible > range.min).then(|| first_flexible - 1)
}

/// Whether `version` of `api` is a flexible version.
pub(crate) fn is_flexible(api: ApiKey, version: i16) -> bool {
    api.request_header_version(version) >= 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_non_flexible_versions_match_the_kafka_protocol() {
        assert_eq!(last_non_flexible_version(ApiKey::Fetch), Some(11));
        assert_eq!(last_non_flexible_version(ApiKey::JoinGroup), Some(5));
        assert_eq!(last_non_flexible_version(ApiKey::SyncGroup), Some(3));
        assert_eq!(last_non_flexible_version(ApiKey::Produce), Some(8));
        assert_eq!(last_non_flexible_version(ApiKey::Metadata), Some(8));
        assert!(is_flexible(ApiKey::Fetch, 12));
        assert!(!is_flexible(ApiKey::Fetch, 11));
    }
}
