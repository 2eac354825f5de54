//! Building Fetch and ListOffsets requests for one broker, valid at the version given.

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    BrokerId as WireBrokerId, FetchRequest, ListOffsetsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::{FetcherConfig, ResetTarget};
use crate::record::TopicPartition;
use crate::wire::records::IsolationLevel;

/// One partition of a Fetch request.
#[derive(Debug, Clone)]
pub(super) struct FetchEntry {
    pub(super) partition: TopicPartition,
    pub(super) offset: i64,
    pub(super) leader_epoch: Option<i32>,
    pub(super) max_bytes: i32,
}

/// One partition of a ListOffsets request.
#[derive(Debug, Clone)]
pub(super) struct ListOffsetsEntry {
    pub(super) partition: TopicPartition,
    pub(super) target: ResetTarget,
    pub(super) leader_epoch: Option<i32>,
}

fn topic_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_owned()))
}

fn isolation_byte(isolation: IsolationLevel) -> i8 {
    match isolation {
        IsolationLevel::ReadUncommitted => 0,
        IsolationLevel::ReadCommitted => 1,
    }
}

/// A full, sessionless Fetch (session id 0, epoch -1) for `entries`, grouped by topic in order
/// of first appearance. Valid for versions 4 to 12 (fields of later versions keep their
/// defaults; `current_leader_epoch` is written from v9 on only).
pub(super) fn fetch_request(config: &FetcherConfig, entries: &[FetchEntry]) -> FetchRequest {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for entry in entries {
        let mut partition = FetchPartition::default();
        partition.partition = entry.partition.partition;
        partition.fetch_offset = entry.offset;
        partition.current_leader_epoch = entry.leader_epoch.unwrap_or(-1);
        partition.partition_max_bytes = entry.max_bytes;
        match topics
            .iter_mut()
            .find(|topic| topic.topic.0.as_str() == &*entry.partition.topic)
        {
            Some(topic) => topic.partitions.push(partition),
            None => {
                let mut topic = FetchTopic::default();
                topic.topic = topic_name(&entry.partition.topic);
                topic.partitions.push(partition);
                topics.push(topic);
            }
        }
    }
    let mut request = FetchRequest::default();
    request.replica_id = WireBrokerId(-1);
    request.max_wait_ms = config.max_wait_ms;
    request.min_bytes = config.min_bytes;
    request.max_bytes = config.max_bytes;
    request.isolation_level = isolation_byte(config.isolation);
    request.session_id = 0;
    request.session_epoch = -1;
    request.topics = topics;
    request
}

/// A ListOffsets request for `entries`, valid for versions 1 to 10: the isolation level exists
/// from v2 on (v1 always reads up to the high watermark).
pub(super) fn list_offsets_request(
    config: &FetcherConfig,
    version: i16,
    entries: &[ListOffsetsEntry],
) -> ListOffsetsRequest {
    let mut topics: Vec<ListOffsetsTopic> = Vec::new();
    for entry in entries {
        let mut partition = ListOffsetsPartition::default();
        partition.partition_index = entry.partition.partition;
        partition.current_leader_epoch = entry.leader_epoch.unwrap_or(-1);
        partition.timestamp = entry.target.timestamp();
        match topics
            .iter_mut()
            .find(|topic| topic.name.0.as_str() == &*entry.partition.topic)
        {
            Some(topic) => topic.partitions.push(partition),
            None => {
                let mut topic = ListOffsetsTopic::default();
                topic.name = topic_name(&entry.partition.topic);
                topic.partitions.push(partition);
                topics.push(topic);
            }
        }
    }
    let mut request = ListOffsetsRequest::default();
    // The struct's default is 0 (a follower); consumers send -1.
    request.replica_id = WireBrokerId(-1);
    if version >= 2 {
        request.isolation_level = isolation_byte(config.isolation);
    }
    request.timeout_ms = config.request_timeout_ms;
    request.topics = topics;
    request
}
