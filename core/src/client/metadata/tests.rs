//! Metadata tests. Responses are built as `kafka-protocol` structs, encoded at the version the
//! request was sent with and decoded again, so only fields that exist at that version arrive.

use std::collections::HashMap;

use bytes::BytesMut;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId as WireBrokerId, RequestKind};

use super::*;

const T0: Instant = Instant::from_millis(1_700_000_000_000);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn versions(version: i16) -> HashMap<ApiKey, i16> {
    HashMap::from([(ApiKey::Metadata, version)])
}

fn metadata(topics: &[&str]) -> Metadata {
    let mut metadata = Metadata::new(
        MetadataConfig::default(),
        [("bootstrap".to_owned(), 9092)],
        T0,
    );
    metadata.set_topics(topics.iter().copied());
    metadata
}

struct Part {
    index: i32,
    leader: i32,
    epoch: i32,
    error: i16,
}

fn part(index: i32, leader: i32, epoch: i32) -> Part {
    Part {
        index,
        leader,
        epoch,
        error: 0,
    }
}

fn topic(name: &str, error: i16, partitions: &[Part]) -> MetadataResponseTopic {
    let mut topic = MetadataResponseTopic::default();
    topic.name = Some(TopicName(StrBytes::from_string(name.to_owned())));
    topic.error_code = error;
    topic.partitions = partitions
        .iter()
        .map(|p| {
            let mut partition = MetadataResponsePartition::default();
            partition.partition_index = p.index;
            partition.leader_id = WireBrokerId(p.leader);
            partition.leader_epoch = p.epoch;
            partition.error_code = p.error;
            partition.replica_nodes = vec![WireBrokerId(p.leader)];
            partition.isr_nodes = vec![WireBrokerId(p.leader)];
            partition
        })
        .collect();
    topic
}

/// A response with brokers 1 and 2, encoded and decoded at `version`.
fn response(version: i16, topics: Vec<MetadataResponseTopic>) -> ResponseKind {
    let mut response = MetadataResponse::default();
    response.brokers = [(1, "kafka-1"), (2, "kafka-2")]
        .into_iter()
        .map(|(id, host)| {
            let mut broker = MetadataResponseBroker::default();
            broker.node_id = WireBrokerId(id);
            broker.host = StrBytes::from_string(host.to_owned());
            broker.port = 9092;
            broker
        })
        .collect();
    response.controller_id = WireBrokerId(2);
    response.topics = topics;
    let mut buf = BytesMut::new();
    ResponseKind::Metadata(response)
        .encode(&mut buf, version)
        .unwrap();
    ResponseKind::decode(ApiKey::Metadata, &mut buf.freeze(), version).unwrap()
}

/// Sends the due request at `version` and answers it with `topics`.
fn round_trip(
    metadata: &mut Metadata,
    now: Instant,
    version: i16,
    topics: Vec<MetadataResponseTopic>,
) {
    let out = metadata
        .poll_request(now, &versions(version))
        .expect("a request is due");
    assert_eq!(out.version, version);
    metadata
        .handle_response(1, response(version, topics), now)
        .unwrap();
}

fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

fn requested_topics(request: &RequestKind, version: i16) -> (Vec<String>, bool) {
    let mut buf = BytesMut::new();
    request.encode(&mut buf, version).unwrap();
    let RequestKind::Metadata(decoded) =
        RequestKind::decode(ApiKey::Metadata, &mut buf.freeze(), version).unwrap()
    else {
        panic!("not a Metadata request");
    };
    let names = decoded
        .topics
        .expect("never all topics")
        .into_iter()
        .map(|t| t.name.unwrap().0.to_string())
        .collect();
    (names, decoded.allow_auto_topic_creation)
}

#[test]
fn requests_encode_at_min_and_max_version_with_the_topics_of_interest_only() {
    for version in [METADATA_MIN_VERSION, 4, 9, 10, METADATA_MAX_VERSION] {
        let mut metadata = metadata(&["b", "a"]);
        let out = metadata.poll_request(T0, &versions(version)).unwrap();
        assert_eq!(out.target, Target::AnyBroker);
        assert_eq!(out.version, version);
        let (names, auto_create) = requested_topics(&out.request, version);
        assert_eq!(names, ["a", "b"], "version {version}");
        assert_eq!(auto_create, version < 4, "version {version}");
    }
}

#[test]
fn no_topic_of_interest_asks_for_none_not_all() {
    let mut metadata = metadata(&[]);
    let out = metadata.poll_request(T0, &versions(1)).unwrap();
    let (names, _) = requested_topics(&out.request, 1);
    assert!(names.is_empty());
}

#[test]
fn unusable_version_is_an_event_and_no_request() {
    for offered in [None, Some(0), Some(13)] {
        let mut metadata = metadata(&["a"]);
        let lookup: HashMap<ApiKey, i16> = offered
            .map(|v| HashMap::from([(ApiKey::Metadata, v)]))
            .unwrap_or_default();
        assert!(metadata.poll_request(T0, &lookup).is_none());
        assert_eq!(
            metadata.poll_event(),
            Some(MetadataEvent::Error(MetadataError::UnsupportedVersion {
                version: offered
            }))
        );
        // Reported once, retried after a backoff.
        assert!(metadata.poll_request(T0 + ms(1_000), &lookup).is_none());
        assert_eq!(metadata.poll_event(), None);
        assert!(
            metadata
                .poll_request(T0 + ms(2_000), &versions(12))
                .is_some()
        );
    }
}

#[test]
fn bootstrap_brokers_are_replaced_by_the_response() {
    let mut metadata = metadata(&["a"]);
    assert_eq!(
        metadata.broker_address(-1),
        Some(("bootstrap".into(), 9092))
    );
    assert!(!metadata.is_initialized());
    round_trip(&mut metadata, T0, 12, vec![topic("a", 0, &[part(0, 1, 5)])]);
    assert_eq!(metadata.broker_address(-1), None);
    assert_eq!(metadata.broker_address(2), Some(("kafka-2".into(), 9092)));
    assert_eq!(
        metadata.brokers().keys().copied().collect::<Vec<_>>(),
        [1, 2]
    );
    assert!(metadata.is_initialized());
}

#[test]
fn controller_is_the_known_broker_the_response_names() {
    let mut metadata = metadata(&["a"]);
    assert_eq!(metadata.controller(), None);
    round_trip(&mut metadata, T0, 1, vec![]);
    assert_eq!(metadata.controller(), Some(2));
}

#[test]
fn leaders_epochs_and_counts_and_generation() {
    let mut metadata = metadata(&["a", "b"]);
    let g0 = metadata.generation();
    round_trip(
        &mut metadata,
        T0,
        12,
        vec![
            topic("a", 0, &[part(0, 1, 5), part(1, 2, 7)]),
            topic("b", 0, &[part(0, 2, 3)]),
        ],
    );
    let g1 = metadata.generation();
    assert!(g1 > g0);
    assert_eq!(metadata.leader(&tp("a", 0)), Some(1));
    assert_eq!(metadata.leader(&tp("a", 1)), Some(2));
    assert_eq!(metadata.leader_epoch(&tp("a", 1)), Some(7));
    assert_eq!(metadata.leader(&tp("a", 2)), None);
    assert_eq!(metadata.partition_count("a"), Some(2));
    assert_eq!(metadata.partition_count("b"), Some(1));
    assert_eq!(metadata.partition_count("c"), None);

    // The same answer again changes nothing.
    metadata.request_refresh("test");
    round_trip(
        &mut metadata,
        T0 + ms(200),
        12,
        vec![
            topic("a", 0, &[part(0, 1, 5), part(1, 2, 7)]),
            topic("b", 0, &[part(0, 2, 3)]),
        ],
    );
    assert_eq!(metadata.generation(), g1);

    // A leader move does.
    metadata.request_refresh("test");
    round_trip(
        &mut metadata,
        T0 + ms(400),
        12,
        vec![
            topic("a", 0, &[part(0, 2, 6), part(1, 2, 7)]),
            topic("b", 0, &[part(0, 2, 3)]),
        ],
    );
    assert!(metadata.generation() > g1);
    assert_eq!(metadata.leader(&tp("a", 0)), Some(2));
    assert_eq!(metadata.leader_epoch(&tp("a", 0)), Some(6));
    assert_eq!(metadata.poll_event(), None);
}

#[test]
fn leader_epoch_is_unknown_before_v7() {
    let mut metadata = metadata(&["a"]);
    round_trip(&mut metadata, T0, 6, vec![topic("a", 0, &[part(0, 1, 5)])]);
    assert_eq!(metadata.leader(&tp("a", 0)), Some(1));
    assert_eq!(metadata.leader_epoch(&tp("a", 0)), None);
}

#[test]
fn one_request_in_flight_and_refresh_requested_meanwhile_follows_after_backoff() {
    let mut metadata = metadata(&["a"]);
    assert!(metadata.poll_request(T0, &versions(12)).is_some());
    assert!(metadata.is_in_flight());
    metadata.request_refresh("leader moved");
    assert!(metadata.poll_request(T0 + ms(10), &versions(12)).is_none());
    assert_eq!(metadata.poll_timeout(), None);
    metadata
        .handle_response(
            1,
            response(12, vec![topic("a", 0, &[part(0, 1, 0)])]),
            T0 + ms(20),
        )
        .unwrap();
    // The refresh asked for during the flight is due after the refresh backoff.
    assert_eq!(metadata.poll_timeout(), Some(T0 + ms(120)));
    assert!(metadata.poll_request(T0 + ms(119), &versions(12)).is_none());
    assert!(metadata.poll_request(T0 + ms(120), &versions(12)).is_some());
}

#[test]
fn response_without_request_is_an_error() {
    let mut metadata = metadata(&["a"]);
    assert_eq!(
        metadata.handle_response(1, response(12, vec![]), T0),
        Err(MetadataError::NotInFlight)
    );
}

#[test]
fn refresh_after_max_age() {
    let mut metadata = metadata(&["a"]);
    round_trip(&mut metadata, T0, 12, vec![topic("a", 0, &[part(0, 1, 0)])]);
    let max_age = MetadataConfig::default().max_age;
    assert_eq!(metadata.poll_timeout(), Some(T0 + max_age));
    assert!(
        metadata
            .poll_request(T0 + max_age - ms(1), &versions(12))
            .is_none()
    );
    assert!(metadata.poll_request(T0 + max_age, &versions(12)).is_some());
}

#[test]
fn failures_back_off_exponentially_up_to_the_cap() {
    let mut metadata = metadata(&["a"]);
    let mut now = T0;
    for expected in [100, 200, 400, 800, 1_000, 1_000].map(ms) {
        assert!(metadata.poll_request(now, &versions(12)).is_some());
        metadata.handle_request_failed(Target::AnyBroker, ApiKey::Metadata, now);
        assert!(!metadata.is_in_flight());
        assert_eq!(metadata.poll_timeout(), Some(now + expected));
        assert!(
            metadata
                .poll_request(now + expected - ms(1), &versions(12))
                .is_none()
        );
        now += expected;
    }
    // A success resets the backoff.
    round_trip(
        &mut metadata,
        now,
        12,
        vec![topic("a", 0, &[part(0, 1, 0)])],
    );
    metadata.request_refresh("test");
    assert!(
        metadata
            .poll_request(now + ms(100), &versions(12))
            .is_some()
    );
    metadata.handle_request_failed(Target::AnyBroker, ApiKey::Metadata, now + ms(100));
    assert_eq!(metadata.poll_timeout(), Some(now + ms(200)));
}

#[test]
fn unknown_topic_is_an_event_once_naming_the_topic() {
    let mut metadata = metadata(&["orders", "a"]);
    round_trip(
        &mut metadata,
        T0,
        12,
        vec![
            topic("orders", ResponseError::UnknownTopicOrPartition.code(), &[]),
            topic("a", 0, &[part(0, 1, 0)]),
        ],
    );
    let expected = MetadataError::UnknownTopic {
        topic: "orders".into(),
    };
    assert_eq!(
        metadata.poll_event(),
        Some(MetadataEvent::Error(expected.clone()))
    );
    assert!(expected.to_string().contains("`orders`"));
    assert_eq!(metadata.topic_error("orders"), Some(&expected));
    assert_eq!(metadata.partition_count("orders"), None);
    assert_eq!(metadata.poll_event(), None);

    // Still missing on the next refresh: no second event.
    metadata.request_refresh("test");
    round_trip(
        &mut metadata,
        T0 + ms(200),
        12,
        vec![topic(
            "orders",
            ResponseError::UnknownTopicOrPartition.code(),
            &[],
        )],
    );
    assert_eq!(metadata.poll_event(), None);

    // Created later: known, no error.
    metadata.request_refresh("test");
    round_trip(
        &mut metadata,
        T0 + ms(400),
        12,
        vec![topic("orders", 0, &[part(0, 2, 0)])],
    );
    assert_eq!(metadata.topic_error("orders"), None);
    assert_eq!(metadata.partition_count("orders"), Some(1));
}

#[test]
fn other_topic_errors_are_typed_events() {
    let mut metadata = metadata(&["secret"]);
    round_trip(
        &mut metadata,
        T0,
        12,
        vec![topic(
            "secret",
            ResponseError::TopicAuthorizationFailed.code(),
            &[],
        )],
    );
    assert_eq!(
        metadata.poll_event(),
        Some(MetadataEvent::Error(MetadataError::Topic {
            topic: "secret".into(),
            error: ResponseError::TopicAuthorizationFailed,
        }))
    );
}

#[test]
fn leaderless_partition_schedules_a_quick_refresh() {
    let mut metadata = metadata(&["a"]);
    let mut leaderless = part(1, -1, 3);
    leaderless.error = ResponseError::LeaderNotAvailable.code();
    round_trip(
        &mut metadata,
        T0,
        12,
        vec![topic("a", 0, &[part(0, 1, 0), leaderless])],
    );
    assert_eq!(metadata.leader(&tp("a", 1)), None);
    assert_eq!(metadata.partition_count("a"), Some(2));
    assert_eq!(metadata.poll_event(), None);
    // Quick refresh: after the refresh backoff, not after max age.
    assert_eq!(metadata.poll_timeout(), Some(T0 + ms(100)));
    round_trip(
        &mut metadata,
        T0 + ms(100),
        12,
        vec![topic("a", 0, &[part(0, 1, 0), part(1, 2, 4)])],
    );
    assert_eq!(metadata.leader(&tp("a", 1)), Some(2));
    assert_eq!(
        metadata.poll_timeout(),
        Some(T0 + ms(100) + MetadataConfig::default().max_age)
    );
}

#[test]
fn leader_not_available_topic_keeps_state_and_refreshes_soon() {
    let mut metadata = metadata(&["a"]);
    round_trip(
        &mut metadata,
        T0,
        12,
        vec![topic("a", ResponseError::LeaderNotAvailable.code(), &[])],
    );
    assert_eq!(metadata.poll_event(), None);
    assert_eq!(metadata.topic_error("a"), None);
    assert_eq!(metadata.poll_timeout(), Some(T0 + ms(100)));
}

#[test]
fn partition_count_change_is_an_event() {
    let mut metadata = metadata(&["a"]);
    round_trip(&mut metadata, T0, 12, vec![topic("a", 0, &[part(0, 1, 0)])]);
    assert_eq!(metadata.poll_event(), None);
    metadata.request_refresh("test");
    round_trip(
        &mut metadata,
        T0 + ms(200),
        12,
        vec![topic(
            "a",
            0,
            &[part(0, 1, 0), part(1, 2, 0), part(2, 1, 0)],
        )],
    );
    assert_eq!(
        metadata.poll_event(),
        Some(MetadataEvent::PartitionCountChanged {
            topic: "a".into(),
            previous: 1,
            current: 3
        })
    );
}

#[test]
fn new_topic_of_interest_triggers_refresh_and_removed_topic_is_forgotten() {
    let mut metadata = metadata(&["a"]);
    round_trip(&mut metadata, T0, 12, vec![topic("a", 0, &[part(0, 1, 0)])]);
    let generation = metadata.generation();
    metadata.set_topics(["a", "b"]);
    assert_eq!(metadata.poll_timeout(), Some(T0 + ms(100)));
    let out = metadata.poll_request(T0 + ms(100), &versions(12)).unwrap();
    assert_eq!(requested_topics(&out.request, 12).0, ["a", "b"]);
    metadata
        .handle_response(
            1,
            response(12, vec![topic("b", 0, &[part(0, 2, 0)])]),
            T0 + ms(100),
        )
        .unwrap();
    metadata.set_topics(["b"]);
    assert!(metadata.generation() > generation);
    assert_eq!(metadata.partition_count("a"), None);
    assert_eq!(metadata.leader(&tp("b", 0)), Some(2));
    // Removing a topic needs no request.
    assert_eq!(
        metadata.poll_timeout(),
        Some(T0 + ms(100) + MetadataConfig::default().max_age)
    );
}

#[test]
fn unexpected_response_kind_is_an_error() {
    let mut metadata = metadata(&["a"]);
    metadata.poll_request(T0, &versions(12)).unwrap();
    let fetch = ResponseKind::Fetch(Default::default());
    assert_eq!(
        metadata.handle_response(1, fetch, T0),
        Err(MetadataError::UnexpectedResponse {
            api: Some(ApiKey::Fetch)
        })
    );
    assert!(metadata.is_in_flight());
}
