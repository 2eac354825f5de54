//! The engine creates the changelog topics of logged stores (`<app>-<store>-changelog`) on the
//! simulated cluster with CreateTopics before it starts tasks; on a cluster that does not offer
//! CreateTopics it uses changelogs that exist already and stops with a typed error naming a
//! missing one.
//!
//! The simulator does not keep topic configs, so the compaction setting (and the replication
//! factor) are checked on the CreateTopics requests the engine sent, decoded from the recorded
//! wire; the partition count is checked on the cluster itself.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{ApiKey, CreateTopicsRequest, RequestHeader, RequestKind};
use kafka_protocol::protocol::Decodable;
use kstreams_core::client::admin::InternalTopicsError;
use kstreams_core::engine::{Engine, EngineError, EngineState, Event};
use kstreams_core::prelude::*;
use kstreams_core::state::MemoryStoreFactory;
use kstreams_core::time::Instant;
use kstreams_tests::harness::tagged::*;
use kstreams_tests::harness::{Harness, WireEvent};
use kstreams_tests::sim::SimCluster;

/// Second input topic, read by a second sub-topology.
const OTHER: &str = "other-input";

/// `src(INPUT) → count("counts") → OUTPUT` and `src2(OTHER) → count("totals") → OUTPUT`;
/// `logged` says whether the stores have changelogs.
fn topology(logged: bool) -> Arc<Topology> {
    let mut b = TopologyBuilder::new();
    for (source, topic, counter, store) in [
        ("src", INPUT, "count", "counts"),
        ("src2", OTHER, "count2", "totals"),
    ] {
        let src = b
            .add_source(source, &[topic], StringSerde, StringSerde)
            .unwrap();
        let count = b
            .add_processor(counter, &[&src], BatchCountAggregator::supplier(store))
            .unwrap();
        b.add_store(
            StoreBuilder::key_value(store, StringSerde, I64Serde).with_logging(logged),
            &[counter],
        )
        .unwrap();
        b.add_sink(
            &format!("sink-{store}"),
            OUTPUT,
            &[&count],
            StringSerde,
            I64Serde,
        )
        .unwrap();
    }
    Arc::new(b.build().unwrap())
}

fn changelog(store: &str) -> String {
    format!("{APP}-{store}-changelog")
}

/// INPUT with 4 partitions, OTHER with 2, OUTPUT with 4, on 3 brokers.
fn sim() -> SimCluster {
    let mut sim = cluster(3, 4);
    sim.create_topic(OTHER, 2).unwrap();
    sim
}

/// A harness with one engine running `topology(logged)`, its wire recorded.
fn start(sim: SimCluster, logged: bool) -> Harness {
    let mut h = Harness::new(sim, T0);
    let engine = Engine::new(
        topology(logged),
        flow_config(),
        Box::new(MemoryStoreFactory),
        Instant::from_millis(h.now),
    )
    .unwrap();
    let i = h.add(engine);
    h.record_wire(i);
    h
}

/// Runs until the engine has tasks (or stopped); asserts at every step that no task exists
/// before every changelog of `stores` exists on the cluster.
fn run_until_tasks(h: &mut Harness, stores: &[&str]) -> bool {
    let topics: Vec<String> = stores.iter().map(|s| changelog(s)).collect();
    h.run_until(30_000, |h| {
        let slot = &h.engines[0];
        let has_tasks = slot.engine.tasks().next().is_some();
        if has_tasks {
            for t in &topics {
                assert!(
                    h.sim.partition_count(t).is_some(),
                    "a task runs before changelog {t} exists"
                );
            }
        }
        has_tasks || !slot.is_live()
    })
}

/// Every request the engine sent, with its version, decoded from the wire.
fn sent_requests(h: &Harness) -> Vec<(i16, RequestKind)> {
    let wire = h.engines[0].wire.as_deref().unwrap_or_default();
    let mut out = Vec::new();
    for event in wire {
        let WireEvent::Sent { bytes, .. } = event else {
            continue;
        };
        let mut bytes: Bytes = bytes.clone();
        while bytes.remaining() >= 4 {
            let len = usize::try_from(bytes.get_i32()).unwrap();
            let mut frame = bytes.split_to(len);
            let mut peek = frame.clone();
            let api = ApiKey::try_from(peek.get_i16()).unwrap();
            let version = peek.get_i16();
            RequestHeader::decode(&mut frame, api.request_header_version(version)).unwrap();
            out.push((
                version,
                RequestKind::decode(api, &mut frame, version).unwrap(),
            ));
        }
    }
    out
}

/// The CreateTopics requests the engine sent, with their versions, decoded from the wire.
fn create_topics_requests(h: &Harness) -> Vec<(i16, CreateTopicsRequest)> {
    sent_requests(h)
        .into_iter()
        .filter_map(|(version, request)| match request {
            RequestKind::CreateTopics(r) => Some((version, r)),
            _ => None,
        })
        .collect()
}

/// Every topic entry of the sent CreateTopics requests: (name, partitions, replication factor,
/// configs as `name=value`).
fn requested_topics(h: &Harness) -> Vec<(String, i32, i16, Vec<String>)> {
    create_topics_requests(h)
        .into_iter()
        .flat_map(|(_, r)| r.topics)
        .map(|t| {
            (
                t.name.0.to_string(),
                t.num_partitions,
                t.replication_factor,
                t.configs
                    .iter()
                    .map(|c| {
                        format!(
                            "{}={}",
                            c.name,
                            c.value.as_ref().map(|v| v.to_string()).unwrap_or_default()
                        )
                    })
                    .collect(),
            )
        })
        .collect()
}

fn failure(h: &Harness) -> Option<&EngineError> {
    h.engines[0].failure().and_then(|e| match e {
        Event::Failed(error) => Some(error),
        _ => None,
    })
}

#[test]
fn logged_stores_get_compacted_changelogs_with_their_subtopology_partitions_before_tasks() {
    let mut h = start(sim(), true);
    assert!(run_until_tasks(&mut h, &["counts", "totals"]), "no tasks");
    assert_eq!(failure(&h).map(ToString::to_string), None);
    assert_eq!(h.sim.partition_count(&changelog("counts")), Some(4));
    assert_eq!(h.sim.partition_count(&changelog("totals")), Some(2));
    let compact = vec!["cleanup.policy=compact".to_owned()];
    let mut topics = requested_topics(&h);
    topics.sort();
    assert_eq!(
        topics,
        [
            (changelog("counts"), 4, -1, compact.clone()),
            (changelog("totals"), 2, -1, compact),
        ],
        "one creation per changelog, broker-default replication"
    );
    assert!(
        create_topics_requests(&h).iter().all(|(v, _)| *v == 7),
        "the simulator's highest CreateTopics version"
    );
    assert_eq!(h.engines[0].task_ids().len(), 6, "4 + 2 tasks");
}

#[test]
fn stores_without_logging_create_nothing() {
    let mut h = start(sim(), false);
    assert!(run_until_tasks(&mut h, &[]), "no tasks");
    assert_eq!(failure(&h).map(ToString::to_string), None);
    assert!(create_topics_requests(&h).is_empty());
    assert_eq!(h.sim.partition_count(&changelog("counts")), None);
    assert_eq!(h.sim.partition_count(&changelog("totals")), None);
    assert_eq!(h.engines[0].task_ids().len(), 6);
}

#[test]
fn topology_without_stores_creates_nothing() {
    let mut h = Harness::new(cluster(3, 4), T0);
    let i = h.add(engine(flow_config(), h.now));
    h.record_wire(i);
    assert!(run_until_tasks(&mut h, &[]));
    assert!(create_topics_requests(&h).is_empty());
    assert_eq!(h.engines[0].task_ids().len(), 4);
}

#[test]
fn existing_changelog_with_the_right_count_is_used() {
    let mut sim = sim();
    sim.create_topic(&changelog("counts"), 4).unwrap();
    let mut h = start(sim, true);
    assert!(run_until_tasks(&mut h, &["counts", "totals"]));
    assert_eq!(failure(&h).map(ToString::to_string), None);
    assert_eq!(h.sim.partition_count(&changelog("totals")), Some(2));
    assert_eq!(h.engines[0].task_ids().len(), 6);
}

#[test]
fn existing_changelog_with_another_count_stops_the_engine() {
    let mut sim = sim();
    sim.create_topic(&changelog("totals"), 5).unwrap();
    let mut h = start(sim, true);
    run_until_tasks(&mut h, &["counts", "totals"]);
    assert_eq!(h.engines[0].engine.state(), EngineState::Error);
    assert!(
        matches!(
            failure(&h),
            Some(EngineError::InternalTopic(InternalTopicsError::PartitionCountMismatch {
                topic,
                expected: 2,
                actual: 5,
            })) if *topic == changelog("totals")
        ),
        "{:?}",
        failure(&h)
    );
    assert_eq!(h.engines[0].task_ids(), []);
}

#[test]
fn retriable_create_errors_are_retried() {
    let mut sim = sim();
    sim.inject_error(ApiKey::CreateTopics, ResponseError::NotController.code(), 1);
    sim.inject_error(
        ApiKey::CreateTopics,
        ResponseError::RequestTimedOut.code(),
        1,
    );
    let mut h = start(sim, true);
    assert!(run_until_tasks(&mut h, &["counts", "totals"]));
    assert_eq!(failure(&h).map(ToString::to_string), None);
    assert_eq!(h.sim.pending_faults(ApiKey::CreateTopics), 0);
    assert!(
        create_topics_requests(&h).len() >= 3,
        "two failed attempts, then success"
    );
    assert_eq!(h.sim.partition_count(&changelog("counts")), Some(4));
    assert_eq!(h.sim.partition_count(&changelog("totals")), Some(2));
}

#[test]
fn refused_creation_stops_the_engine_with_the_broker_error() {
    let mut sim = sim();
    sim.inject_error(
        ApiKey::CreateTopics,
        ResponseError::PolicyViolation.code(),
        1,
    );
    let mut h = start(sim, true);
    run_until_tasks(&mut h, &["counts", "totals"]);
    assert_eq!(h.engines[0].engine.state(), EngineState::Error);
    assert!(
        matches!(
            failure(&h),
            Some(EngineError::InternalTopic(InternalTopicsError::Topic {
                error: ResponseError::PolicyViolation,
                ..
            }))
        ),
        "{:?}",
        failure(&h)
    );
    assert_eq!(h.engines[0].task_ids(), []);
}

#[test]
fn brokers_before_kafka_2_4_get_the_legacy_replication_factor() {
    let mut sim = sim();
    sim.config_mut()
        .api_versions
        .set(ApiKey::CreateTopics, 2, 3);
    let mut h = start(sim, true);
    assert!(run_until_tasks(&mut h, &["counts", "totals"]));
    let requests = create_topics_requests(&h);
    assert!(!requests.is_empty());
    for (version, request) in requests {
        assert_eq!(version, 3);
        assert!(request.topics.iter().all(|t| t.replication_factor == 1));
    }
    assert_eq!(h.sim.partition_count(&changelog("counts")), Some(4));
}

/// The simulated cluster without CreateTopics in its ApiVersions (like librdkafka's mock
/// cluster).
fn sim_without_create_topics() -> SimCluster {
    let mut sim = sim();
    sim.config_mut().api_versions.remove(ApiKey::CreateTopics);
    sim
}

/// How many Metadata requests the engine sent that ask for `topic`.
fn metadata_requests_for(h: &Harness, topic: &str) -> usize {
    sent_requests(h)
        .into_iter()
        .filter(|(_, request)| {
            matches!(request, RequestKind::Metadata(r) if r.topics.iter().flatten().any(|t| {
                t.name.as_ref().is_some_and(|n| n.0.as_str() == topic)
            }))
        })
        .count()
}

#[test]
fn without_create_topics_existing_changelogs_are_used_and_records_counted() {
    let mut sim = sim_without_create_topics();
    sim.create_topic(&changelog("counts"), 4).unwrap();
    sim.create_topic(&changelog("totals"), 2).unwrap();
    // Keys k0, k1, k2 in turn: per input partition k0 four times, k1 and k2 three times.
    produce_all(&mut sim, 4, 10);
    let mut h = start(sim, true);
    assert!(run_until_tasks(&mut h, &["counts", "totals"]), "no tasks");
    assert!(
        h.run_until(30_000, |h| all_committed(&h.sim, &[10; 4])),
        "input not processed"
    );
    assert_eq!(failure(&h).map(ToString::to_string), None);
    assert!(
        create_topics_requests(&h).is_empty(),
        "nothing to create with"
    );
    assert_eq!(h.engines[0].task_ids().len(), 6);
    // Each input partition's task counts its own keys: the highest count of a key is its
    // count in one partition, and every task reached it.
    let mut finals: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for q in 0..4 {
        for r in h.sim.read_log(OUTPUT, q).unwrap() {
            let key = String::from_utf8(r.key.unwrap().to_vec()).unwrap();
            let value = i64::from_be_bytes(r.value.unwrap().as_ref().try_into().unwrap());
            finals.entry(key).or_default().push(value);
        }
    }
    let highest: BTreeMap<&str, (i64, usize)> = finals
        .iter()
        .map(|(k, v)| {
            let max = v.iter().copied().max().unwrap_or(0);
            (k.as_str(), (max, v.iter().filter(|&&c| c == max).count()))
        })
        .collect();
    assert_eq!(
        highest,
        BTreeMap::from([("k0", (4, 4)), ("k1", (3, 4)), ("k2", (3, 4))]),
        "{finals:?}"
    );
}

#[test]
fn without_create_topics_a_missing_changelog_stops_the_engine_saying_how_to_create_it() {
    let mut sim = sim_without_create_topics();
    sim.create_topic(&changelog("counts"), 4).unwrap();
    let mut h = start(sim, true);
    run_until_tasks(&mut h, &["counts", "totals"]);
    assert_eq!(h.engines[0].engine.state(), EngineState::Error);
    let expected = InternalTopicsError::UnsupportedVersion {
        topic: changelog("totals"),
        partitions: 2,
        configs: BTreeMap::from([("cleanup.policy".to_owned(), "compact".to_owned())]),
        version: None,
    };
    assert!(
        matches!(failure(&h), Some(EngineError::InternalTopic(e)) if *e == expected),
        "{:?}",
        failure(&h)
    );
    assert!(
        failure(&h).unwrap().to_string().contains(&format!(
            "create topic `{}` with 2 partitions (cleanup.policy=compact) yourself",
            changelog("totals")
        )),
        "{}",
        failure(&h).unwrap()
    );
    assert_eq!(h.engines[0].task_ids(), []);
    assert!(create_topics_requests(&h).is_empty());
    assert_eq!(h.sim.partition_count(&changelog("totals")), None);
    // Missing at the first look, looked up once more before failing.
    assert_eq!(metadata_requests_for(&h, &changelog("totals")), 2);
}

#[test]
fn without_create_topics_an_existing_changelog_with_another_count_stops_the_engine() {
    let mut sim = sim_without_create_topics();
    sim.create_topic(&changelog("counts"), 4).unwrap();
    sim.create_topic(&changelog("totals"), 3).unwrap();
    let mut h = start(sim, true);
    run_until_tasks(&mut h, &["counts", "totals"]);
    assert!(
        matches!(
            failure(&h),
            Some(EngineError::InternalTopic(InternalTopicsError::PartitionCountMismatch {
                topic,
                expected: 2,
                actual: 3,
            })) if *topic == changelog("totals")
        ),
        "{:?}",
        failure(&h)
    );
    assert_eq!(h.engines[0].task_ids(), []);
}
