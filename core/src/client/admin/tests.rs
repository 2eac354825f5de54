//! Unit tests of the internal topics component, with requests and responses encoded and decoded
//! by `kafka-protocol` at the version used.

use std::collections::HashMap;

use bytes::BytesMut;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::{HeartbeatResponse, RequestKind};
use kafka_protocol::protocol::{Decodable, Encodable};

use super::*;

const T0: Instant = Instant::from_millis(1_700_000_000_000);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn versions(version: i16) -> HashMap<ApiKey, i16> {
    HashMap::from([(ApiKey::CreateTopics, version)])
}

fn component(topics: &[(&str, i32)]) -> InternalTopics {
    let mut c = InternalTopics::new(InternalTopicsConfig::default(), T0);
    c.ensure(
        topics
            .iter()
            .map(|&(store, n)| TopicSpec::changelog("app", store, n)),
    );
    c
}

/// The request of `out`, encoded at its version and decoded back.
fn sent(out: &Outbound) -> CreateTopicsRequest {
    let RequestKind::CreateTopics(request) = &out.request else {
        panic!("not a CreateTopics request: {:?}", out.request);
    };
    let mut buf = BytesMut::new();
    request.encode(&mut buf, out.version).unwrap();
    CreateTopicsRequest::decode(&mut buf.freeze(), out.version).unwrap()
}

/// A response with `(topic, error code, message)` results, encoded and decoded at `version`.
fn response(version: i16, throttle_ms: i32, results: &[(&str, i16, Option<&str>)]) -> ResponseKind {
    let topics = results
        .iter()
        .map(|&(name, code, message)| {
            let mut r = CreatableTopicResult::default()
                .with_name(TopicName(StrBytes::from_string(name.to_owned())))
                .with_error_code(code)
                .with_error_message(message.map(|m| StrBytes::from_string(m.to_owned())));
            if version >= 5 {
                r = r.with_num_partitions(-1).with_replication_factor(-1);
            }
            r
        })
        .collect();
    let response = CreateTopicsResponse::default()
        .with_throttle_time_ms(throttle_ms)
        .with_topics(topics);
    let mut buf = BytesMut::new();
    ResponseKind::CreateTopics(response)
        .encode(&mut buf, version)
        .unwrap();
    ResponseKind::decode(ApiKey::CreateTopics, &mut buf.freeze(), version).unwrap()
}

/// Name, partitions, replication factor and configs of a requested topic.
type SentTopic = (String, i32, i16, Vec<(String, Option<String>)>);

fn events(c: &mut InternalTopics) -> Vec<InternalTopicsEvent> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

fn ready(topic: &str, created: bool) -> InternalTopicsEvent {
    InternalTopicsEvent::Ready {
        topic: topic.to_owned(),
        created,
    }
}

#[test]
fn requests_at_min_and_max_version_carry_partitions_compaction_and_replication() {
    for (version, replication) in [
        (CREATE_TOPICS_MIN_VERSION, 1),
        (3, 1),
        (BROKER_DEFAULT_REPLICATION_MIN_VERSION, -1),
        (CREATE_TOPICS_MAX_VERSION, -1),
    ] {
        let mut c = component(&[("counts", 4), ("sums", 2)]);
        let out = c.poll_request(T0, &versions(version)).expect("a request");
        assert_eq!(out.version, version);
        assert_eq!(out.target, Target::AnyBroker);
        let request = sent(&out);
        assert_eq!(request.timeout_ms, 10_000);
        assert!(!request.validate_only);
        let topics: Vec<SentTopic> = request
            .topics
            .iter()
            .map(|t| {
                (
                    t.name.0.to_string(),
                    t.num_partitions,
                    t.replication_factor,
                    t.configs
                        .iter()
                        .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
                        .collect(),
                )
            })
            .collect();
        let compact = vec![("cleanup.policy".to_owned(), Some("compact".to_owned()))];
        assert_eq!(
            topics,
            [
                (
                    "app-counts-changelog".into(),
                    4,
                    replication,
                    compact.clone()
                ),
                ("app-sums-changelog".into(), 2, replication, compact),
            ],
            "version {version}"
        );
        assert!(
            request.topics.iter().all(|t| t.assignments.is_empty()),
            "no manual assignment"
        );
        assert_eq!(
            c.poll_request(T0, &versions(version)),
            None,
            "one request in flight"
        );
        assert_eq!(c.poll_timeout(), None);
    }
}

#[test]
fn explicit_replication_factor_is_sent_at_every_version() {
    for version in [CREATE_TOPICS_MIN_VERSION, CREATE_TOPICS_MAX_VERSION] {
        let config = InternalTopicsConfig {
            replication_factor: 3,
            ..InternalTopicsConfig::default()
        };
        let mut c = InternalTopics::new(config, T0);
        c.ensure([TopicSpec::changelog("app", "s", 1)]);
        let out = c.poll_request(T0, &versions(version)).unwrap();
        assert_eq!(sent(&out).topics[0].replication_factor, 3);
    }
}

#[test]
fn nothing_wanted_sends_nothing() {
    let mut c = component(&[]);
    assert_eq!(c.poll_timeout(), None);
    assert_eq!(c.poll_request(T0, &versions(7)), None);
}

#[test]
fn created_topic_is_ready_and_not_asked_again() {
    for version in [CREATE_TOPICS_MIN_VERSION, CREATE_TOPICS_MAX_VERSION] {
        let mut c = component(&[("counts", 4)]);
        c.poll_request(T0, &versions(version)).unwrap();
        c.handle_response(
            1,
            response(version, 0, &[("app-counts-changelog", 0, None)]),
            T0,
        )
        .unwrap();
        assert_eq!(events(&mut c), [ready("app-counts-changelog", true)]);
        assert!(c.is_ready("app-counts-changelog"));
        assert_eq!(c.poll_timeout(), None);
        assert_eq!(c.poll_request(T0 + ms(10_000), &versions(version)), None);
        // Ensuring it again changes nothing.
        c.ensure([TopicSpec::changelog("app", "counts", 4)]);
        assert_eq!(c.poll_request(T0 + ms(10_000), &versions(version)), None);
    }
}

#[test]
fn topic_already_exists_is_verified_against_metadata() {
    let mut c = component(&[("a", 4), ("b", 4)]);
    c.poll_request(T0, &versions(7)).unwrap();
    let exists = ResponseError::TopicAlreadyExists.code();
    c.handle_response(
        1,
        response(
            7,
            0,
            &[
                (
                    "app-a-changelog",
                    exists,
                    Some("Topic 'app-a-changelog' already exists."),
                ),
                ("app-b-changelog", exists, None),
            ],
        ),
        T0,
    )
    .unwrap();
    assert_eq!(
        events(&mut c),
        [
            InternalTopicsEvent::VerificationNeeded {
                topic: "app-a-changelog".into()
            },
            InternalTopicsEvent::VerificationNeeded {
                topic: "app-b-changelog".into()
            },
        ]
    );
    assert_eq!(
        c.verifying().collect::<Vec<_>>(),
        ["app-a-changelog", "app-b-changelog"]
    );
    assert!(!c.is_ready("app-a-changelog"));
    assert_eq!(
        c.poll_request(T0 + ms(10_000), &versions(7)),
        None,
        "no retry"
    );

    c.partition_count_known("app-a-changelog", 4);
    c.partition_count_known("app-b-changelog", 8);
    assert_eq!(
        events(&mut c),
        [
            ready("app-a-changelog", false),
            InternalTopicsEvent::Error(InternalTopicsError::PartitionCountMismatch {
                topic: "app-b-changelog".into(),
                expected: 4,
                actual: 8,
            }),
        ]
    );
    assert!(c.is_ready("app-a-changelog"));
    assert!(!c.is_ready("app-b-changelog"));
    // Counts for topics not being verified are ignored.
    c.partition_count_known("app-a-changelog", 1);
    c.partition_count_known("other", 1);
    assert_eq!(events(&mut c), []);
}

#[test]
fn topic_deleted_while_verifying_is_created_again_after_a_backoff() {
    let mut c = component(&[("a", 2)]);
    c.poll_request(T0, &versions(7)).unwrap();
    let exists = ResponseError::TopicAlreadyExists.code();
    c.handle_response(1, response(7, 0, &[("app-a-changelog", exists, None)]), T0)
        .unwrap();
    c.topic_missing("app-a-changelog", T0 + ms(5));
    assert_eq!(c.poll_timeout(), Some(T0 + ms(105)));
    assert_eq!(c.poll_request(T0 + ms(104), &versions(7)), None);
    let out = c.poll_request(T0 + ms(105), &versions(7)).unwrap();
    assert_eq!(sent(&out).topics[0].num_partitions, 2);
}

#[test]
fn retriable_error_is_retried_after_a_backoff_then_succeeds() {
    let mut c = component(&[("a", 3), ("b", 3)]);
    c.poll_request(T0, &versions(7)).unwrap();
    c.handle_response(
        2,
        response(
            7,
            0,
            &[
                ("app-a-changelog", 0, None),
                ("app-b-changelog", ResponseError::NotController.code(), None),
            ],
        ),
        T0,
    )
    .unwrap();
    assert_eq!(
        events(&mut c),
        [
            ready("app-a-changelog", true),
            InternalTopicsEvent::MetadataRefreshNeeded {
                reason: "CreateTopics: broker 2 is not the controller".into()
            },
        ]
    );
    assert_eq!(c.poll_timeout(), Some(T0 + ms(100)));
    assert_eq!(
        c.poll_request(T0 + ms(99), &versions(7)),
        None,
        "backing off"
    );
    c.set_controller(Some(3));
    let out = c.poll_request(T0 + ms(100), &versions(7)).unwrap();
    assert_eq!(out.target, Target::Broker(3), "to the controller");
    let names: Vec<String> = sent(&out)
        .topics
        .iter()
        .map(|t| t.name.0.to_string())
        .collect();
    assert_eq!(names, ["app-b-changelog"], "only the failed topic again");

    // A timeout next: retried after a doubled backoff.
    c.handle_response(
        3,
        response(
            7,
            0,
            &[(
                "app-b-changelog",
                ResponseError::RequestTimedOut.code(),
                None,
            )],
        ),
        T0 + ms(100),
    )
    .unwrap();
    assert_eq!(events(&mut c), []);
    assert_eq!(c.poll_timeout(), Some(T0 + ms(300)));
    c.poll_request(T0 + ms(300), &versions(7)).unwrap();
    c.handle_response(
        3,
        response(7, 0, &[("app-b-changelog", 0, None)]),
        T0 + ms(300),
    )
    .unwrap();
    assert_eq!(events(&mut c), [ready("app-b-changelog", true)]);
    assert!(c.is_ready("app-a-changelog") && c.is_ready("app-b-changelog"));
}

#[test]
fn throttling_waits_at_least_the_throttle_time() {
    let mut c = component(&[("a", 1)]);
    c.poll_request(T0, &versions(7)).unwrap();
    let code = ResponseError::ThrottlingQuotaExceeded.code();
    c.handle_response(
        1,
        response(7, 2_500, &[("app-a-changelog", code, None)]),
        T0,
    )
    .unwrap();
    assert_eq!(c.poll_timeout(), Some(T0 + ms(2_500)));
}

#[test]
fn fatal_error_is_a_typed_event_and_not_retried() {
    for (error, message) in [
        (ResponseError::PolicyViolation, Some("no compaction here")),
        (ResponseError::TopicAuthorizationFailed, None),
        (
            ResponseError::InvalidReplicationFactor,
            Some("only 1 broker"),
        ),
    ] {
        let mut c = component(&[("a", 1)]);
        c.poll_request(T0, &versions(7)).unwrap();
        c.handle_response(
            1,
            response(7, 0, &[("app-a-changelog", error.code(), message)]),
            T0,
        )
        .unwrap();
        assert_eq!(
            events(&mut c),
            [InternalTopicsEvent::Error(InternalTopicsError::Topic {
                topic: "app-a-changelog".into(),
                error,
                message: message.map(str::to_owned),
            })]
        );
        assert!(!c.is_ready("app-a-changelog"));
        assert_eq!(c.poll_timeout(), None);
        assert_eq!(c.poll_request(T0 + ms(60_000), &versions(7)), None);
    }
}

#[test]
fn unanswered_request_is_retried_and_a_lost_controller_refreshes_metadata() {
    let mut c = component(&[("a", 1)]);
    c.set_controller(Some(1));
    let out = c.poll_request(T0, &versions(7)).unwrap();
    assert_eq!(out.target, Target::Broker(1));
    // Another API's failure is not ours.
    c.handle_request_failed(out.target, ApiKey::Metadata, T0);
    assert_eq!(c.poll_timeout(), None);
    c.handle_request_failed(out.target, ApiKey::CreateTopics, T0 + ms(10));
    assert!(matches!(
        events(&mut c).as_slice(),
        [InternalTopicsEvent::MetadataRefreshNeeded { .. }]
    ));
    assert_eq!(c.poll_timeout(), Some(T0 + ms(110)));
    c.set_controller(None);
    let out = c.poll_request(T0 + ms(110), &versions(7)).unwrap();
    assert_eq!(out.target, Target::AnyBroker);
    assert_eq!(sent(&out).topics.len(), 1);
}

#[test]
fn topic_left_out_of_the_response_is_asked_again() {
    let mut c = component(&[("a", 1), ("b", 1)]);
    c.poll_request(T0, &versions(7)).unwrap();
    c.handle_response(1, response(7, 0, &[("app-a-changelog", 0, None)]), T0)
        .unwrap();
    assert_eq!(events(&mut c), [ready("app-a-changelog", true)]);
    let out = c.poll_request(T0 + ms(100), &versions(7)).unwrap();
    let names: Vec<String> = sent(&out)
        .topics
        .iter()
        .map(|t| t.name.0.to_string())
        .collect();
    assert_eq!(names, ["app-b-changelog"]);
}

/// The version tables that offer no usable CreateTopics: none at all, one below and one above
/// the built range.
fn unusable_tables() -> Vec<(Option<i16>, HashMap<ApiKey, i16>)> {
    let mut tables = vec![(None, HashMap::from([(ApiKey::Metadata, 12)]))];
    for v in [CREATE_TOPICS_MIN_VERSION - 1, CREATE_TOPICS_MAX_VERSION + 1] {
        tables.push((Some(v), versions(v)));
    }
    tables
}

fn verification_needed(topic: &str) -> InternalTopicsEvent {
    InternalTopicsEvent::VerificationNeeded {
        topic: topic.to_owned(),
    }
}

#[test]
fn without_usable_create_topics_every_topic_is_verified_and_nothing_sent() {
    for (_, table) in unusable_tables() {
        let mut c = component(&[("a", 1), ("b", 3)]);
        assert_eq!(c.poll_request(T0, &table), None);
        assert_eq!(
            events(&mut c),
            [
                verification_needed("app-a-changelog"),
                verification_needed("app-b-changelog")
            ]
        );
        assert_eq!(
            c.verifying().collect::<Vec<_>>(),
            ["app-a-changelog", "app-b-changelog"]
        );
        assert_eq!(c.poll_timeout(), None, "nothing left to send");
        assert_eq!(c.poll_request(T0 + ms(1_000), &table), None);
        assert_eq!(events(&mut c), [], "asked once");
    }
}

#[test]
fn without_create_topics_an_existing_topic_with_the_right_count_is_ready() {
    for (_, table) in unusable_tables() {
        let mut c = component(&[("a", 4)]);
        c.poll_request(T0, &table);
        events(&mut c);
        c.partition_count_known("app-a-changelog", 4);
        assert_eq!(events(&mut c), [ready("app-a-changelog", false)]);
        assert!(c.is_ready("app-a-changelog"));
        assert_eq!(c.poll_request(T0 + ms(1_000), &table), None);
    }
}

#[test]
fn without_create_topics_an_existing_topic_with_another_count_is_a_mismatch() {
    let (_, table) = &unusable_tables()[0];
    let mut c = component(&[("a", 4)]);
    c.poll_request(T0, table);
    events(&mut c);
    c.partition_count_known("app-a-changelog", 3);
    assert_eq!(
        events(&mut c),
        [InternalTopicsEvent::Error(
            InternalTopicsError::PartitionCountMismatch {
                topic: "app-a-changelog".into(),
                expected: 4,
                actual: 3,
            }
        )]
    );
    assert!(!c.is_ready("app-a-changelog"));
}

#[test]
fn without_create_topics_a_topic_missing_twice_fails_with_how_to_create_it() {
    for (offered, table) in unusable_tables() {
        let mut c = component(&[("a", 4)]);
        c.poll_request(T0, &table);
        events(&mut c);
        // The first report may come from a stale metadata cache: look again.
        c.topic_missing("app-a-changelog", T0 + ms(10));
        assert_eq!(events(&mut c), [verification_needed("app-a-changelog")]);
        assert_eq!(c.poll_request(T0 + ms(10), &table), None);
        c.topic_missing("app-a-changelog", T0 + ms(20));
        let error = InternalTopicsError::UnsupportedVersion {
            topic: "app-a-changelog".into(),
            partitions: 4,
            configs: BTreeMap::from([("cleanup.policy".into(), "compact".into())]),
            version: offered,
        };
        assert_eq!(events(&mut c), [InternalTopicsEvent::Error(error.clone())]);
        assert_eq!(c.verifying().count(), 0);
        assert_eq!(
            c.poll_request(T0 + ms(10_000), &versions(7)),
            None,
            "failed for good"
        );
        // Reported once.
        c.topic_missing("app-a-changelog", T0 + ms(30));
        assert_eq!(events(&mut c), []);
        let offered = match offered {
            None => "the brokers do not offer CreateTopics".to_owned(),
            Some(v) => format!("the brokers offer only CreateTopics v{v}"),
        };
        assert_eq!(
            error.to_string(),
            format!(
                "internal topic `app-a-changelog` does not exist and cannot be created: \
                 {offered} (this client builds CreateTopics v2 to v7); create topic \
                 `app-a-changelog` with 4 partitions (cleanup.policy=compact) yourself"
            )
        );
    }
}

#[test]
fn without_create_topics_a_topic_found_at_the_second_look_is_ready() {
    let (_, table) = &unusable_tables()[0];
    let mut c = component(&[("a", 2)]);
    c.poll_request(T0, table);
    events(&mut c);
    c.topic_missing("app-a-changelog", T0 + ms(10));
    events(&mut c);
    c.partition_count_known("app-a-changelog", 2);
    assert_eq!(events(&mut c), [ready("app-a-changelog", false)]);
}

#[test]
fn a_topic_deleted_after_creation_is_verified_when_create_topics_is_gone() {
    let mut c = component(&[("a", 2)]);
    c.poll_request(T0, &versions(7)).unwrap();
    let exists = ResponseError::TopicAlreadyExists.code();
    c.handle_response(1, response(7, 0, &[("app-a-changelog", exists, None)]), T0)
        .unwrap();
    events(&mut c);
    c.topic_missing("app-a-changelog", T0 + ms(5));
    // The brokers now offer no CreateTopics: the topic is looked up instead of created.
    let (_, table) = &unusable_tables()[0];
    assert_eq!(c.poll_request(T0 + ms(1_000), table), None);
    assert_eq!(events(&mut c), [verification_needed("app-a-changelog")]);
    c.topic_missing("app-a-changelog", T0 + ms(1_010));
    c.topic_missing("app-a-changelog", T0 + ms(1_020));
    assert!(matches!(
        events(&mut c).as_slice(),
        [
            InternalTopicsEvent::VerificationNeeded { .. },
            InternalTopicsEvent::Error(InternalTopicsError::UnsupportedVersion {
                version: None,
                ..
            })
        ]
    ));
}

#[test]
fn unexpected_or_unasked_responses_are_errors() {
    let mut c = component(&[("a", 1)]);
    assert_eq!(
        c.handle_response(1, response(7, 0, &[("app-a-changelog", 0, None)]), T0),
        Err(InternalTopicsError::NotInFlight)
    );
    assert_eq!(
        c.handle_response(1, ResponseKind::Heartbeat(HeartbeatResponse::default()), T0),
        Err(InternalTopicsError::UnexpectedResponse {
            api: Some(ApiKey::Heartbeat)
        })
    );
    assert_eq!(events(&mut c), []);
}

#[test]
fn changelog_names_follow_kafka_streams() {
    assert_eq!(changelog_topic("app", "counts"), "app-counts-changelog");
    let spec = TopicSpec::changelog("my-app", "store", 6);
    assert_eq!(spec.name, "my-app-store-changelog");
    assert_eq!(spec.partitions, 6);
    assert_eq!(
        spec.configs.get("cleanup.policy").map(String::as_str),
        Some("compact")
    );
}
