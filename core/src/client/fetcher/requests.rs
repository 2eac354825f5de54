//! The fetcher's outgoing requests: which partitions go into the next ListOffsets or Fetch, to
//! which leader and at which version, and building that request.

use std::collections::BTreeMap;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    ApiKey, BrokerId as WireBrokerId, FetchRequest, ListOffsetsRequest, RequestKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::{
    FETCH_MAX_VERSION, FETCH_MIN_VERSION, FetchError, FetchEvent, Fetcher, FetcherConfig,
    InFlightFetch, InFlightListOffsets, LIST_OFFSETS_MAX_VERSION, LIST_OFFSETS_MIN_VERSION,
    ResetTarget,
};
use crate::client::{ApiVersionLookup, BrokerId, Outbound, Target};
use crate::record::TopicPartition;
use crate::time::Instant;
use crate::wire::records::IsolationLevel;

/// One partition of a Fetch request.
#[derive(Debug, Clone)]
struct FetchEntry {
    partition: TopicPartition,
    offset: i64,
    leader_epoch: Option<i32>,
    max_bytes: i32,
    /// See `PartitionState::eager`.
    eager: bool,
}

/// One partition of a ListOffsets request.
#[derive(Debug, Clone)]
struct ListOffsetsEntry {
    partition: TopicPartition,
    target: ResetTarget,
    leader_epoch: Option<i32>,
}

impl Fetcher {
    /// The next request to send: a ListOffsets for pending resets first, then a Fetch, each to
    /// a partition leader with no request of that API in flight. Call until `None`.
    pub fn poll_request(
        &mut self,
        now: Instant,
        versions: &dyn ApiVersionLookup,
    ) -> Option<Outbound> {
        self.observe(now);
        if let Some(out) = self.poll_list_offsets(versions) {
            return Some(out);
        }
        self.poll_fetch(versions)
    }

    /// The version to build `api` at, or `None` (reported once as an event).
    fn usable_version(
        &mut self,
        api: ApiKey,
        versions: &dyn ApiVersionLookup,
        min: i16,
        max: i16,
    ) -> Option<i16> {
        let offered = versions.version(api);
        match offered {
            Some(v) if (min..=max).contains(&v) => Some(v),
            _ => {
                if self.reported_versions.insert((api as i16, offered)) {
                    self.events
                        .push_back(FetchEvent::Error(FetchError::UnsupportedVersion {
                            api,
                            version: offered,
                            min,
                            max,
                        }));
                }
                None
            }
        }
    }

    fn broker_ready(&self, broker: BrokerId) -> bool {
        self.broker_retry_at
            .get(&broker)
            .is_none_or(|&at| at <= self.now)
    }

    fn in_any_fetch(&self, tp: &TopicPartition) -> bool {
        self.fetches
            .values()
            .any(|fetch| fetch.offsets.contains_key(tp))
    }

    fn in_any_list_offsets(&self, tp: &TopicPartition) -> bool {
        self.list_offsets
            .values()
            .any(|list| list.targets.contains_key(tp))
    }

    fn poll_list_offsets(&mut self, versions: &dyn ApiVersionLookup) -> Option<Outbound> {
        let mut by_broker: BTreeMap<BrokerId, Vec<ListOffsetsEntry>> = BTreeMap::new();
        for (tp, state) in &self.partitions {
            // No reset asked for, or no leader known yet: nothing to send for it.
            let (Some(target), Some(leader)) = (state.reset, state.leader) else {
                continue;
            };
            if state.halted
                || state.retry_at > self.now
                || self.list_offsets.contains_key(&leader)
                || !self.broker_ready(leader)
                || self.in_any_list_offsets(tp)
            {
                continue;
            }
            by_broker.entry(leader).or_default().push(ListOffsetsEntry {
                partition: tp.clone(),
                target,
                leader_epoch: state.leader_epoch,
            });
        }
        let (broker, entries) = by_broker.into_iter().next()?;
        let version = self.usable_version(
            ApiKey::ListOffsets,
            versions,
            LIST_OFFSETS_MIN_VERSION,
            LIST_OFFSETS_MAX_VERSION,
        )?;
        let request = list_offsets_request(&self.config, version, &entries);
        tracing::debug!(
            broker,
            version,
            partitions = entries.len(),
            "sending ListOffsets"
        );
        self.list_offsets.insert(
            broker,
            InFlightListOffsets {
                targets: entries
                    .into_iter()
                    .map(|entry| (entry.partition, entry.target))
                    .collect(),
            },
        );
        Some(Outbound {
            target: Target::Broker(broker),
            request: RequestKind::ListOffsets(request),
            version,
        })
    }

    fn poll_fetch(&mut self, versions: &dyn ApiVersionLookup) -> Option<Outbound> {
        let mut by_broker: BTreeMap<BrokerId, Vec<FetchEntry>> = BTreeMap::new();
        for (tp, state) in &self.partitions {
            // No position yet (a reset is pending) or no leader known: nothing to fetch.
            let (Some(position), Some(leader)) = (state.position, state.leader) else {
                continue;
            };
            if state.reset.is_some()
                || state.halted
                || state.paused
                || state.buffered
                || state.retry_at > self.now
                || self.fetches.contains_key(&leader)
                || !self.broker_ready(leader)
                || self.in_any_fetch(tp)
            {
                continue;
            }
            by_broker.entry(leader).or_default().push(FetchEntry {
                partition: tp.clone(),
                offset: position,
                leader_epoch: state.leader_epoch,
                max_bytes: state.max_bytes,
                eager: state.eager,
            });
        }
        let (broker, mut entries) = by_broker.into_iter().next()?;
        let version = self.usable_version(
            ApiKey::Fetch,
            versions,
            FETCH_MIN_VERSION,
            FETCH_MAX_VERSION,
        )?;
        let shift = self.rotation % entries.len();
        entries.rotate_left(shift);
        self.rotation = self.rotation.wrapping_add(1);
        let request = fetch_request(&self.config, &entries);
        tracing::trace!(broker, version, partitions = entries.len(), "sending Fetch");
        self.fetches.insert(
            broker,
            InFlightFetch {
                offsets: entries
                    .into_iter()
                    .map(|entry| (entry.partition, entry.offset))
                    .collect(),
            },
        );
        Some(Outbound {
            target: Target::Broker(broker),
            request: RequestKind::Fetch(request),
            version,
        })
    }
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
fn fetch_request(config: &FetcherConfig, entries: &[FetchEntry]) -> FetchRequest {
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
    // A partition read to its end (a restore) must not wait for data that may never come.
    request.max_wait_ms = if entries.iter().any(|entry| entry.eager) {
        0
    } else {
        config.max_wait.as_millis_i32()
    };
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
fn list_offsets_request(
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
    request.timeout_ms = config.request_timeout.as_millis_i32();
    request.topics = topics;
    request
}
