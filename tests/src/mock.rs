//! librdkafka's in-process mock cluster (through `rdkafka::mocking`), set up the way kstreams
//! can talk to it.
//!
//! librdkafka 2.12's mock misparses the flexible versions of the classic group APIs it
//! advertises (librdkafka's own client never sends them): JoinGroup v6 and SyncGroup v4 read
//! their protocol/assignment array counts as a fixed INT32 instead of a compact-array varint
//! (JoinGroup then sees a huge count and closes the connection; SyncGroup reads member ids out
//! of bounds and crashes the process), and LeaveGroup reads the v0–v2 layout (`member_id`) at
//! every version. [`mock_cluster`] caps those APIs at the highest versions the mock parses.
//!
//! The engine copes with the uncapped mock too ([`mock_cluster_as_shipped`]): after JoinGroup
//! v6 drops the connection twice it falls back to the non-flexible group APIs for that broker
//! by itself (`engine::router` `fallback`). The tests still use the capped mock because the
//! failed JoinGroup v6 requests leave the mock's group in a state where, with two members,
//! its SyncGroup answers carry a null assignment that the protocol does not allow; one
//! instance runs fine (the `example_batch_count` test of the uncapped mock).

use rdkafka::error::KafkaError;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::types::RDKafkaApiKey;

/// The mock cluster type.
pub type Mock = MockCluster<'static, DefaultProducerContext>;

/// Highest versions of the group APIs librdkafka 2.12's mock parses correctly.
pub const MOCK_GROUP_API_CAPS: [(RDKafkaApiKey, i16); 3] = [
    (RDKafkaApiKey::JoinGroup, 5),
    (RDKafkaApiKey::SyncGroup, 3),
    (RDKafkaApiKey::LeaveGroup, 2),
];

/// A mock cluster of `brokers` brokers on loopback ports, with [`MOCK_GROUP_API_CAPS`].
pub fn mock_cluster(brokers: i32) -> Result<Mock, KafkaError> {
    let mock = MockCluster::new(brokers)?;
    for (api, max) in MOCK_GROUP_API_CAPS {
        mock.apiversion(api, Some(0), Some(max))?;
    }
    Ok(mock)
}

/// A mock cluster of `brokers` brokers as librdkafka ships it: no version caps.
pub fn mock_cluster_as_shipped(brokers: i32) -> Result<Mock, KafkaError> {
    MockCluster::new(brokers)
}
