//! The router on its own: a scripted broker reads the frames it transmits and answers them.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{
    ApiVersionsResponse, FetchRequest, FetchResponse, HeartbeatRequest, JoinGroupRequest,
    JoinGroupResponse, MetadataRequest, MetadataResponse, OffsetCommitRequest, RequestHeader,
    RequestKind, ResponseHeader, ResponseKind,
};
use kafka_protocol::protocol::{Encodable, decode_request_header_from_buffer};

use super::*;
use crate::wire::versions::VersionPolicy;

fn at(ms: i64) -> Instant {
    Instant::from_millis(ms)
}

fn config() -> RouterConfig {
    RouterConfig {
        connection: ConnectionConfig {
            policy: VersionPolicy::new(),
            ..ConnectionConfig::default()
        },
        request_timeout: Duration::from_secs(30),
        join_timeout: Duration::from_secs(305),
        reconnect_backoff: Duration::from_millis(50),
        reconnect_backoff_max: Duration::from_secs(1),
        random_seed: 0,
    }
}

/// A router that knows bootstrap server -1 and broker 0.
fn router() -> Router {
    Router::new(
        config(),
        [(-1, "boot".to_owned(), 9092), (0, "b0".to_owned(), 9092)],
        at(0),
    )
}

fn transports(r: &mut Router) -> Vec<Output> {
    std::iter::from_fn(|| r.poll_transport()).collect()
}

fn routed(r: &mut Router) -> Vec<Routed> {
    std::iter::from_fn(|| r.poll_routed()).collect()
}

/// The `Connect`s among `outputs`, as (id, host).
fn connects(outputs: &[Output]) -> Vec<(ConnectionId, String)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Connect {
                connection, host, ..
            } => Some((*connection, host.clone())),
            _ => None,
        })
        .collect()
}

/// The requests written to `id` among `outputs`: header and body of each frame.
fn requests_to(outputs: &[Output], id: ConnectionId) -> Vec<(RequestHeader, Bytes)> {
    let mut out = Vec::new();
    for o in outputs {
        if let Output::Transmit { connection, bytes } = o
            && *connection == id
        {
            let mut bytes = bytes.clone();
            while bytes.has_remaining() {
                let len = usize::try_from(bytes.get_i32()).unwrap();
                let mut frame = bytes.split_to(len);
                let header = decode_request_header_from_buffer(&mut frame).unwrap();
                out.push((header, frame));
            }
        }
    }
    out
}

/// A length-prefixed response frame.
fn response<M: Encodable>(header: &RequestHeader, body: &M) -> Bytes {
    let api = ApiKey::try_from(header.request_api_key).unwrap();
    let header_version = if api == ApiKey::ApiVersions {
        0
    } else {
        api.response_header_version(header.request_api_version)
    };
    let mut payload = BytesMut::new();
    ResponseHeader::default()
        .with_correlation_id(header.correlation_id)
        .encode(&mut payload, header_version)
        .unwrap();
    body.encode(&mut payload, header.request_api_version)
        .unwrap();
    let mut frame = BytesMut::new();
    frame.put_i32(i32::try_from(payload.len()).unwrap());
    frame.extend_from_slice(&payload);
    frame.freeze()
}

/// A broker that speaks every version the crate knows.
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

/// Opens `id` and answers its ApiVersions request: the socket is ready.
fn open(r: &mut Router, id: ConnectionId, now: Instant) {
    r.handle_connected(id, now);
    r.transmit();
    let out = transports(r);
    let requests = requests_to(&out, id);
    let (header, _) = requests.first().expect("ApiVersions is the first request");
    assert_eq!(header.request_api_key, ApiKey::ApiVersions as i16);
    r.handle_received(id, &response(header, &full_broker()), now);
    assert!(routed(r).is_empty(), "negotiation is not routed");
}

fn metadata_request() -> Outbound {
    Outbound {
        target: Target::AnyBroker,
        request: RequestKind::Metadata(MetadataRequest::default()),
        version: 12,
    }
}

/// A router that knows bootstrap server -1 only.
fn bootstrap_only() -> Router {
    Router::new(config(), [(-1, "boot".to_owned(), 9092)], at(0))
}

/// A router with a ready general connection to bootstrap server -1; returns its id.
fn ready_bootstrap() -> (Router, ConnectionId) {
    let mut r = bootstrap_only();
    assert!(r.ensure_general_connection());
    let (id, _) = connects(&transports(&mut r))[0].clone();
    open(&mut r, id, at(0));
    (r, id)
}

#[test]
fn connection_ids_are_never_reused_and_late_reports_are_ignored() {
    let mut r = bootstrap_only();
    assert!(r.ensure_general_connection());
    let first = connects(&transports(&mut r));
    assert_eq!(first.len(), 1);
    let (old, _) = first[0].clone();
    r.handle_disconnected(old, at(0));
    assert!(!r.ensure_general_connection(), "not before the backoff");
    r.handle_timeout(at(1_000));
    assert!(r.ensure_general_connection());
    let (new, _) = connects(&transports(&mut r))[0].clone();
    assert_ne!(old, new);
    routed(&mut r);
    // Reports about the old socket change nothing.
    r.handle_disconnected(old, at(1_000));
    r.handle_received(old, b"garbage", at(1_000));
    assert!(routed(&mut r).is_empty());
    open(&mut r, new, at(1_000));
    assert!(r.any_ready());
}

#[test]
fn a_request_waits_for_a_ready_connection_and_its_answer_is_routed_with_the_broker() {
    let mut r = router();
    r.send(Component::Metadata, metadata_request(), at(0));
    // Nothing is ready: the request waits (AnyBroker needs a ready connection).
    assert!(!r.flush(None));
    assert!(r.ensure_general_connection());
    let (id, host) = connects(&transports(&mut r))[0].clone();
    assert_eq!(
        host, "b0",
        "known brokers before bootstrap servers on a tie"
    );
    open(&mut r, id, at(0));
    assert!(r.flush(None));
    r.transmit();
    let out = transports(&mut r);
    let requests = requests_to(&out, id);
    assert_eq!(requests.len(), 1);
    let (header, _) = &requests[0];
    assert_eq!(header.request_api_key, ApiKey::Metadata as i16);
    assert_eq!(header.request_api_version, 12);
    r.handle_received(id, &response(header, &MetadataResponse::default()), at(5));
    match routed(&mut r).as_slice() {
        [
            Routed::Response {
                component: Component::Metadata,
                broker: 0,
                response: ResponseKind::Metadata(_),
            },
        ] => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn fetch_requests_get_a_connection_of_their_own() {
    let mut r = router();
    assert!(r.ensure_general_connection());
    let (general, _) = connects(&transports(&mut r))[0].clone();
    open(&mut r, general, at(0));
    r.send(
        Component::Fetcher,
        Outbound {
            target: Target::Broker(0),
            request: RequestKind::Fetch(FetchRequest::default()),
            version: 12,
        },
        at(0),
    );
    assert!(r.flush(None));
    let out = transports(&mut r);
    let lanes = connects(&out);
    assert_eq!(lanes.len(), 1, "{out:?}");
    let (fetch_lane, host) = lanes[0].clone();
    assert_ne!(fetch_lane, general);
    assert_eq!(host, "b0");
    open(&mut r, fetch_lane, at(0));
    r.flush(None);
    r.transmit();
    let out = transports(&mut r);
    assert_eq!(requests_to(&out, general).len(), 0);
    let fetches = requests_to(&out, fetch_lane);
    assert_eq!(fetches.len(), 1);
    assert_eq!(fetches[0].0.request_api_key, ApiKey::Fetch as i16);
}

#[test]
fn join_and_sync_group_get_a_connection_of_their_own_and_commits_do_not_wait_behind_them() {
    let mut r = router();
    assert!(r.ensure_general_connection());
    let (general, _) = connects(&transports(&mut r))[0].clone();
    open(&mut r, general, at(0));
    let to_coordinator = |request| Outbound {
        target: Target::Coordinator,
        request,
        version: 5,
    };
    r.send(
        Component::Group,
        to_coordinator(RequestKind::JoinGroup(JoinGroupRequest::default())),
        at(0),
    );
    r.send(
        Component::Group,
        to_coordinator(RequestKind::OffsetCommit(OffsetCommitRequest::default())),
        at(0),
    );
    assert!(r.flush(Some(0)));
    r.transmit();
    let out = transports(&mut r);
    // The commit goes out at once on the general connection; the JoinGroup waits for its own.
    let general_requests = requests_to(&out, general);
    assert_eq!(general_requests.len(), 1);
    assert_eq!(
        general_requests[0].0.request_api_key,
        ApiKey::OffsetCommit as i16
    );
    let lanes = connects(&out);
    assert_eq!(lanes.len(), 1, "{out:?}");
    let (group_lane, host) = lanes[0].clone();
    assert_ne!(group_lane, general);
    assert_eq!(host, "b0");
    open(&mut r, group_lane, at(0));
    r.flush(Some(0));
    r.transmit();
    let out = transports(&mut r);
    assert_eq!(requests_to(&out, general).len(), 0);
    let joins = requests_to(&out, group_lane);
    assert_eq!(joins.len(), 1);
    assert_eq!(joins[0].0.request_api_key, ApiKey::JoinGroup as i16);
}

#[test]
fn a_later_request_with_a_shorter_timeout_is_timed_out_too() {
    let (mut r, id) = ready_bootstrap();
    // A JoinGroup that may take the rebalance timeout, then a request due much earlier.
    for (api, request) in [
        (
            ApiKey::JoinGroup,
            RequestKind::JoinGroup(JoinGroupRequest::default()),
        ),
        (
            ApiKey::Heartbeat,
            RequestKind::Heartbeat(HeartbeatRequest::default()),
        ),
    ] {
        r.send(
            Component::Group,
            Outbound {
                target: Target::AnyBroker,
                request,
                version: r.versions().version(api).unwrap(),
            },
            at(0),
        );
    }
    r.flush(None);
    let mut earliest = Earliest::default();
    r.offer_deadlines(&mut earliest);
    let deadline = earliest.get().unwrap();
    assert_eq!(
        deadline.at,
        at(30_000),
        "the Heartbeat's, not the JoinGroup's"
    );
    assert_eq!(deadline.reason, TimeoutReason::RequestDeadline);
    r.handle_timeout(at(30_000));
    let out = transports(&mut r);
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Close { connection } if *connection == id)),
        "{out:?}"
    );
    let failed: Vec<ApiKey> = routed(&mut r)
        .into_iter()
        .filter_map(|x| match x {
            Routed::Failed { api, .. } => Some(api),
            _ => None,
        })
        .collect();
    assert_eq!(failed, [ApiKey::JoinGroup, ApiKey::Heartbeat]);
}

#[test]
fn each_unanswered_request_fails_exactly_once_when_the_broker_drops_the_connection() {
    let (mut r, id) = ready_bootstrap();
    for _ in 0..3 {
        r.send(Component::Metadata, metadata_request(), at(0));
    }
    r.flush(None);
    // Answered one, then the connection drops long after (no version fallback).
    r.transmit();
    let out = transports(&mut r);
    let requests = requests_to(&out, id);
    r.handle_received(
        id,
        &response(&requests[0].0, &MetadataResponse::default()),
        at(1),
    );
    r.handle_disconnected(id, at(10_000));
    let routed = routed(&mut r);
    let responses = routed
        .iter()
        .filter(|x| matches!(x, Routed::Response { .. }))
        .count();
    let failed = routed
        .iter()
        .filter(|x| matches!(x, Routed::Failed { .. }))
        .count();
    assert_eq!((responses, failed), (1, 2), "{routed:?}");
    assert!(
        routed
            .iter()
            .any(|x| matches!(x, Routed::Lost { broker: -1 }))
    );
    assert!(
        !routed
            .iter()
            .any(|x| matches!(x, Routed::Warning(EngineError::VersionFallback { .. })))
    );
    assert!(
        !transports(&mut r)
            .iter()
            .any(|o| matches!(o, Output::Close { .. })),
        "the adapter closed it: no Close back"
    );
}

#[test]
fn a_queued_request_fails_after_the_request_timeout_without_a_connection() {
    let mut r = router();
    r.send(Component::Metadata, metadata_request(), at(0));
    let mut earliest = Earliest::default();
    r.offer_deadlines(&mut earliest);
    assert_eq!(
        earliest.get().map(|d| (d.at, d.reason)),
        Some((at(30_000), TimeoutReason::QueuedRequestDeadline))
    );
    r.handle_timeout(at(29_999));
    assert!(routed(&mut r).is_empty());
    r.handle_timeout(at(30_000));
    assert!(matches!(
        routed(&mut r).as_slice(),
        [Routed::Failed {
            component: Component::Metadata,
            api: ApiKey::Metadata,
            ..
        }]
    ));
}

#[test]
fn an_undecodable_flexible_response_lowers_that_api_for_that_broker_only() {
    let (mut r, id) = ready_bootstrap();
    r.send(
        Component::Fetcher,
        Outbound {
            target: Target::Broker(-1),
            request: RequestKind::Fetch(FetchRequest::default()),
            version: 12,
        },
        at(0),
    );
    r.flush(None);
    r.transmit();
    let out = transports(&mut r);
    let (header, _) = requests_to(&out, id).remove(0);
    // A v12 body cut short (its tagged fields are missing).
    let mut frame = BytesMut::from(&response(&header, &FetchResponse::default())[..]);
    frame.truncate(frame.len() - 1);
    let len = i32::try_from(frame.len() - 4).unwrap();
    frame[..4].copy_from_slice(&len.to_be_bytes());
    r.handle_received(id, &frame, at(1));
    let routed = routed(&mut r);
    assert!(
        routed.iter().any(|x| matches!(
            x,
            Routed::Warning(EngineError::VersionFallback {
                broker: -1,
                api: ApiKey::Fetch,
                version: 12,
                caps,
            }) if caps == &[(ApiKey::Fetch, 11)]
        )),
        "{routed:?}"
    );
    assert!(routed.iter().any(|x| matches!(
        x,
        Routed::Failed {
            api: ApiKey::Fetch,
            ..
        }
    )));
    assert!(
        transports(&mut r)
            .iter()
            .any(|o| matches!(o, Output::Close { connection } if *connection == id)),
        "the connection is closed so the next one negotiates the cap"
    );
    assert_eq!(r.fallback.cap(-1, ApiKey::Fetch), Some(11));
    assert_eq!(r.fallback.cap(0, ApiKey::Fetch), None);
    assert_eq!(
        r.connection_config(-1).policy.our_range(ApiKey::Fetch).max,
        11
    );
}

/// Sends a JoinGroup at the current version on a fresh connection to bootstrap server -1
/// and has the broker drop the connection right after it; returns the version sent and what
/// was routed.
fn join_dropped(r: &mut Router, now: Instant) -> (i16, Vec<Routed>) {
    r.handle_timeout(now);
    assert!(r.ensure_general_connection() || r.any_ready());
    let out = transports(r);
    let id = connects(&out)
        .first()
        .map(|(id, _)| *id)
        .expect("a new connection");
    open(r, id, now);
    let version = r.versions().version(ApiKey::JoinGroup).unwrap();
    r.send(
        Component::Group,
        Outbound {
            target: Target::AnyBroker,
            request: RequestKind::JoinGroup(JoinGroupRequest::default()),
            version,
        },
        now,
    );
    r.flush(None);
    r.transmit();
    let out = transports(r);
    assert_eq!(requests_to(&out, id)[0].0.request_api_version, version);
    r.handle_disconnected(id, now + Duration::from_millis(10));
    (version, routed(r))
}

/// Like [`join_dropped`], but the broker answers the JoinGroup with a body cut short.
fn join_undecodable(r: &mut Router, now: Instant) -> (i16, Vec<Routed>) {
    r.handle_timeout(now);
    assert!(r.ensure_general_connection() || r.any_ready());
    let out = transports(r);
    let id = connects(&out)
        .first()
        .map(|(id, _)| *id)
        .expect("a new connection");
    open(r, id, now);
    let version = r.versions().version(ApiKey::JoinGroup).unwrap();
    r.send(
        Component::Group,
        Outbound {
            target: Target::AnyBroker,
            request: RequestKind::JoinGroup(JoinGroupRequest::default()),
            version,
        },
        now,
    );
    r.flush(None);
    r.transmit();
    let out = transports(r);
    let (header, _) = requests_to(&out, id).remove(0);
    let mut frame = BytesMut::from(&response(&header, &JoinGroupResponse::default())[..]);
    frame.truncate(frame.len() - 1);
    let len = i32::try_from(frame.len() - 4).unwrap();
    frame[..4].copy_from_slice(&len.to_be_bytes());
    r.handle_received(id, &frame, now);
    (version, routed(r))
}

fn gave_up(routed: &[Routed]) -> bool {
    routed.iter().any(|x| {
        matches!(
            x,
            Routed::Fatal(EngineError::BrokerApiUnusable {
                api: ApiKey::JoinGroup,
                version: 5,
                ..
            })
        )
    })
}

#[test]
fn repeated_drops_after_a_flexible_group_request_lower_the_group_apis_and_undecodable_answers_give_up()
 {
    let mut r = bootstrap_only();
    let mut now = at(0);
    let (v, first) = join_dropped(&mut r, now);
    assert_eq!(v, 9, "the crate's newest JoinGroup");
    assert!(
        !first
            .iter()
            .any(|x| matches!(x, Routed::Warning(EngineError::VersionFallback { .. })))
    );
    now += Duration::from_secs(2);
    let (_, second) = join_dropped(&mut r, now);
    assert!(
        second.iter().any(|x| matches!(
            x,
            Routed::Warning(EngineError::VersionFallback {
                api: ApiKey::JoinGroup,
                ..
            })
        )),
        "{second:?}"
    );
    assert_eq!(r.fallback.cap(-1, ApiKey::SyncGroup), Some(3));
    // Drops alone never give up: a flaky network drops connections too.
    for _ in 0..2 * fallback::GIVE_UP_AFTER {
        now += Duration::from_secs(2);
        let (v, routed) = join_dropped(&mut r, now);
        assert_eq!(v, 5, "the last non-flexible JoinGroup");
        assert!(!gave_up(&routed), "{routed:?}");
    }
    // Answers that cannot be decoded, again and again for a while, do.
    for attempt in 1..=fallback::GIVE_UP_AFTER {
        now += Duration::from_secs(80);
        let (v, routed) = join_undecodable(&mut r, now);
        assert_eq!(v, 5);
        assert_eq!(
            gave_up(&routed),
            attempt == fallback::GIVE_UP_AFTER,
            "{routed:?}"
        );
    }
}

#[test]
fn idle_bootstrap_connections_close_once_a_known_broker_is_ready() {
    let (mut r, boot) = ready_bootstrap();
    r.set_address(0, "b0".to_owned(), 9092);
    assert!(
        !r.release_bootstrap_connections(),
        "no broker known by id is ready yet"
    );
    r.send(
        Component::Metadata,
        Outbound {
            target: Target::Broker(0),
            ..metadata_request()
        },
        at(0),
    );
    r.flush(None);
    let (broker, _) = connects(&transports(&mut r))[0].clone();
    open(&mut r, broker, at(0));
    assert!(r.release_bootstrap_connections());
    assert!(
        transports(&mut r)
            .iter()
            .any(|o| matches!(o, Output::Close { connection } if *connection == boot))
    );
    assert!(!r.all_general_down());
}

#[test]
fn frames_of_a_socket_that_dropped_are_never_handed_to_the_adapter() {
    let (mut r, id) = ready_bootstrap();
    r.send(Component::Metadata, metadata_request(), at(0));
    r.flush(None);
    r.transmit();
    // The Transmit waits in the queue when the adapter reports the socket gone.
    r.handle_disconnected(id, at(1));
    let out = transports(&mut r);
    assert!(
        !out.iter()
            .any(|o| matches!(o, Output::Transmit { connection, .. } if *connection == id)),
        "{out:?}"
    );
}

#[test]
fn a_socket_dropped_before_the_adapter_saw_its_connect_is_neither_dialled_nor_closed() {
    let mut r = bootstrap_only();
    assert!(r.ensure_general_connection());
    r.close_all();
    assert!(transports(&mut r).is_empty());
}

#[test]
fn a_request_that_cannot_be_sent_fails_after_the_older_ones_of_its_socket() {
    let (mut r, id) = ready_bootstrap();
    r.send(Component::Producer, metadata_request(), at(0));
    r.flush(None);
    // Built for a version the connection does not speak.
    r.send(
        Component::Producer,
        Outbound {
            version: 99,
            ..metadata_request()
        },
        at(1),
    );
    r.flush(None);
    let failed: Vec<(Component, ApiKey)> = routed(&mut r)
        .into_iter()
        .filter_map(|x| match x {
            Routed::Failed { component, api, .. } => Some((component, api)),
            _ => None,
        })
        .collect();
    assert_eq!(
        failed,
        [
            (Component::Producer, ApiKey::Metadata),
            (Component::Producer, ApiKey::Metadata)
        ],
        "the one on the wire first, then the unsendable one"
    );
    assert!(
        transports(&mut r)
            .iter()
            .any(|o| matches!(o, Output::Close { connection } if *connection == id))
    );
}

#[test]
fn a_fallback_cap_lowers_the_version_components_build_for_every_broker() {
    let (mut r, _) = ready_bootstrap();
    assert_eq!(
        r.versions().version(ApiKey::Produce),
        Some(ApiKey::Produce.valid_versions().max)
    );
    r.fallback.failed(
        7,
        ApiKey::Produce,
        12,
        fallback::VersionFailure::Undecodable,
        Instant::EPOCH,
    );
    // Broker 7 is not even connected: a request for it may be built now and sent later.
    assert_eq!(r.versions().version(ApiKey::Produce), Some(8));
}

mod sasl;

#[test]
fn connections_are_counted_when_opened_closed_and_lost() {
    let mut r = bootstrap_only();
    assert!(r.ensure_general_connection());
    let (failed, _) = connects(&transports(&mut r))[0].clone();
    r.handle_disconnected(failed, at(0));
    assert_eq!(
        r.connection_metrics(),
        ConnectionMetrics::default(),
        "a connect that failed opened and closed nothing"
    );
    r.handle_timeout(at(1_000));
    assert!(r.ensure_general_connection());
    let (id, _) = connects(&transports(&mut r))[0].clone();
    routed(&mut r);
    open(&mut r, id, at(1_000));
    let opened = r.connection_metrics();
    assert_eq!((opened.created, opened.closed, opened.lost), (1, 0, 0));
    // The broker closes it: closed and lost.
    r.handle_disconnected(id, at(1_001));
    let dropped = r.connection_metrics();
    assert_eq!((dropped.created, dropped.closed, dropped.lost), (1, 1, 1));
    r.handle_timeout(at(2_000));
    assert!(r.ensure_general_connection());
    let (id, _) = connects(&transports(&mut r))[0].clone();
    routed(&mut r);
    open(&mut r, id, at(2_000));
    // The engine closes it: closed, not lost.
    r.close_all();
    let closed = r.connection_metrics();
    assert_eq!(
        closed,
        ConnectionMetrics {
            created: 2,
            closed: 2,
            lost: 1,
            reauthentications: 0,
        }
    );
}
