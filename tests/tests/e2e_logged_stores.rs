//! Logged stores end to end. librdkafka 2.12's mock cluster serves no CreateTopics (it serves
//! Produce, Fetch, ListOffsets, OffsetFetch, OffsetCommit, ApiVersions ≤ 2, Metadata,
//! FindCoordinator, InitProducerId, the classic group APIs, the transaction APIs,
//! OffsetForLeaderEpoch and ConsumerGroupHeartbeat): there a logged store works with a
//! changelog topic made beforehand and fails with a typed error saying how to make it when it
//! is missing. Tansu serves CreateTopics: there the engine creates the changelog itself.
//! The other end-to-end flows are in `e2e_flows.rs` and `e2e_failover.rs`.

mod e2e_support;

use std::time::Duration;

use e2e_support::*;
use kstreams_core::client::admin::InternalTopicsError;
use kstreams_core::engine::EngineError;
use kstreams_io_common::{Stores, StreamsError, StreamsState};

const INPUT: &str = "input";
const OUTPUT: &str = "output";

fn topics(broker: &Broker) {
    broker.create_topic(INPUT, PARTITIONS);
    broker.create_topic(OUTPUT, PARTITIONS);
}

/// Counts 400 records with a logged store on `broker`; exact counts, commits at the end.
fn count_with_logged_store(broker: &Broker, app: &str) {
    let bootstrap = broker.bootstrap();
    let input = numbered_input(0, 400, 9);
    let ends = end_offsets(&input, &produce(&bootstrap, INPUT, &input));
    let state_dir = tempfile::tempdir().unwrap();
    let handle = Adapter::Tokio.start(
        count_topology_logged(INPUT, OUTPUT, true),
        streams_config(broker, app, state_dir.path()),
        Stores::Memory,
    );
    let output = read_exactly(&bootstrap, OUTPUT, input.len(), Duration::from_millis(500));
    assert_counts_exact(&input, &output);
    close(&handle);
    assert_committed_at_end(&bootstrap, app, INPUT, &ends);
}

#[test]
fn mock_a_logged_store_uses_a_changelog_made_beforehand() {
    bounded(|| {
        let broker = Broker::mock();
        topics(&broker);
        let app = "e2e-logged";
        broker.create_topic(&format!("{app}-counts-changelog"), PARTITIONS);
        count_with_logged_store(&broker, app);
    });
}

#[test]
fn tansu_a_logged_store_creates_its_changelog() {
    bounded(|| {
        let broker = Broker::tansu();
        topics(&broker);
        let app = "e2e-logged";
        let changelog = format!("{app}-counts-changelog");
        assert_eq!(broker.partition_count(&changelog), None, "no changelog yet");
        count_with_logged_store(&broker, app);
        assert_eq!(
            broker.partition_count(&changelog),
            Some(PARTITIONS as usize),
            "the engine created {changelog} with the input's partition count"
        );
    });
}

/// Without CreateTopics and without its changelog topic, a logged store stops the engine with
/// a typed error that names the topic and says how to create it.
#[test]
fn mock_a_logged_store_without_its_changelog_fails_saying_how_to_create_it() {
    bounded(|| {
        let broker = Broker::mock();
        topics(&broker);
        let app = "e2e-unlogged-cluster";
        let state_dir = tempfile::tempdir().unwrap();
        let handle = Adapter::Tokio.start(
            count_topology_logged(INPUT, OUTPUT, true),
            streams_config(&broker, app, state_dir.path()),
            Stores::Memory,
        );
        let waiting = handle.clone();
        let error = kstreams_tests::bounded::bounded("the engine's failure", WAIT, move || {
            block_on(waiting.wait())
        })
        .unwrap_err();
        let topic = format!("{app}-counts-changelog");
        assert!(
            matches!(
                &error,
                StreamsError::Engine { error, .. } if matches!(
                    &**error,
                    EngineError::InternalTopic(InternalTopicsError::UnsupportedVersion {
                        topic: t,
                        partitions: PARTITIONS,
                        version: None,
                        ..
                    }) if *t == topic
                )
            ),
            "{error}"
        );
        assert!(
            error.to_string().contains(&format!(
                "create topic `{topic}` with {PARTITIONS} partitions (cleanup.policy=compact) yourself"
            )),
            "{error}"
        );
        assert_eq!(handle.state(), StreamsState::Error);
    });
}
