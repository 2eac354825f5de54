//! One handler per API: a decoded request in, a response (or a parked request) out.
//!
//! Every response sets only the fields its version carries (`kafka-protocol` refuses to encode
//! a non-default value in a field the version lacks).

use bytes::{Buf, Bytes};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, LeaderIdAndEpoch, PartitionData,
};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiVersionsResponse, BrokerId, CreateTopicsRequest, CreateTopicsResponse, FetchRequest,
    FetchResponse, FindCoordinatorRequest, FindCoordinatorResponse, HeartbeatRequest,
    HeartbeatResponse, InitProducerIdResponse, JoinGroupRequest, JoinGroupResponse,
    LeaveGroupRequest, LeaveGroupResponse, ListOffsetsRequest, ListOffsetsResponse,
    MetadataRequest, MetadataResponse, OffsetCommitRequest, OffsetCommitResponse,
    OffsetFetchRequest, OffsetFetchResponse, ProduceRequest, ProduceResponse, ProducerId,
    RequestKind, ResponseKind, SyncGroupRequest, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;

use super::group::CommittedOffset;
use super::log::{AppendOutcome, IncomingBatch, PartitionLog, SimRecord};
use super::versions::ApiVersionTable;
use super::{CLUSTER_ID, DuplicateReply, ParkedFetch, Reply, RequestCtx, SimCluster};

/// Size of a record batch v2 header (base offset through record count).
const BATCH_HEADER_LEN: usize = 61;
/// Upper bound on the record count of a compressed produced batch (the decoder reserves
/// memory for the announced count before reading records).
const MAX_COMPRESSED_RECORDS: i32 = 1_000_000;

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

fn topic_name(s: &str) -> TopicName {
    TopicName(str_bytes(s))
}

/// The ApiVersions response advertising `table`, at `version`, with `error_code`.
pub(super) fn api_versions_response(
    table: &ApiVersionTable,
    version: i16,
    error_code: i16,
) -> ResponseKind {
    let _ = version;
    let api_keys = table
        .iter()
        .map(|(key, min, max)| {
            ApiVersion::default()
                .with_api_key(key)
                .with_min_version(min)
                .with_max_version(max)
        })
        .collect();
    ResponseKind::ApiVersions(
        ApiVersionsResponse::default()
            .with_error_code(error_code)
            .with_api_keys(api_keys),
    )
}

/// The response to `request` when every part of it fails with `code` (fault injection).
/// `None` for APIs the simulator does not serve.
pub(super) fn error_response(
    request: &RequestKind,
    version: i16,
    code: i16,
) -> Option<ResponseKind> {
    Some(match request {
        RequestKind::ApiVersions(_) => {
            ResponseKind::ApiVersions(ApiVersionsResponse::default().with_error_code(code))
        }
        RequestKind::Metadata(r) => {
            let topics = r
                .topics
                .iter()
                .flatten()
                .map(|t| {
                    MetadataResponseTopic::default()
                        .with_error_code(code)
                        .with_name(t.name.clone())
                })
                .collect();
            ResponseKind::Metadata(MetadataResponse::default().with_topics(topics))
        }
        RequestKind::FindCoordinator(r) => {
            let mut response = FindCoordinatorResponse::default();
            if version >= 4 {
                response.coordinators = r
                    .coordinator_keys
                    .iter()
                    .map(|k| {
                        Coordinator::default()
                            .with_key(k.clone())
                            .with_error_code(code)
                            .with_node_id(BrokerId(-1))
                            .with_port(-1)
                    })
                    .collect();
            } else {
                response.error_code = code;
                response.node_id = BrokerId(-1);
                response.port = -1;
            }
            ResponseKind::FindCoordinator(response)
        }
        RequestKind::JoinGroup(r) => {
            let mut response = JoinGroupResponse::default()
                .with_error_code(code)
                .with_generation_id(-1)
                .with_member_id(r.member_id.clone());
            response.protocol_name = if version >= 7 {
                None
            } else {
                Some(StrBytes::default())
            };
            ResponseKind::JoinGroup(response)
        }
        RequestKind::SyncGroup(_) => {
            ResponseKind::SyncGroup(SyncGroupResponse::default().with_error_code(code))
        }
        RequestKind::Heartbeat(_) => {
            ResponseKind::Heartbeat(HeartbeatResponse::default().with_error_code(code))
        }
        RequestKind::LeaveGroup(_) => {
            ResponseKind::LeaveGroup(LeaveGroupResponse::default().with_error_code(code))
        }
        RequestKind::OffsetCommit(r) => ResponseKind::OffsetCommit(
            OffsetCommitResponse::default().with_topics(
                r.topics
                    .iter()
                    .map(|t| {
                        OffsetCommitResponseTopic::default()
                            .with_name(t.name.clone())
                            .with_partitions(
                                t.partitions
                                    .iter()
                                    .map(|p| {
                                        OffsetCommitResponsePartition::default()
                                            .with_partition_index(p.partition_index)
                                            .with_error_code(code)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            ),
        ),
        RequestKind::OffsetFetch(r) => {
            let mut response = OffsetFetchResponse::default();
            if version >= 2 {
                response.error_code = code;
            } else {
                response.topics = r
                    .topics
                    .iter()
                    .flatten()
                    .map(|t| {
                        OffsetFetchResponseTopic::default()
                            .with_name(t.name.clone())
                            .with_partitions(
                                t.partition_indexes
                                    .iter()
                                    .map(|&p| {
                                        OffsetFetchResponsePartition::default()
                                            .with_partition_index(p)
                                            .with_committed_offset(-1)
                                            .with_error_code(code)
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
            }
            ResponseKind::OffsetFetch(response)
        }
        RequestKind::ListOffsets(r) => ResponseKind::ListOffsets(
            ListOffsetsResponse::default().with_topics(
                r.topics
                    .iter()
                    .map(|t| {
                        ListOffsetsTopicResponse::default()
                            .with_name(t.name.clone())
                            .with_partitions(
                                t.partitions
                                    .iter()
                                    .map(|p| {
                                        ListOffsetsPartitionResponse::default()
                                            .with_partition_index(p.partition_index)
                                            .with_error_code(code)
                                            .with_timestamp(-1)
                                            .with_offset(-1)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            ),
        ),
        RequestKind::Fetch(r) => ResponseKind::Fetch(
            FetchResponse::default().with_responses(
                r.topics
                    .iter()
                    .map(|t| {
                        FetchableTopicResponse::default()
                            .with_topic(t.topic.clone())
                            .with_partitions(
                                t.partitions
                                    .iter()
                                    .map(|p| {
                                        PartitionData::default()
                                            .with_partition_index(p.partition)
                                            .with_error_code(code)
                                            .with_high_watermark(-1)
                                            .with_records(Some(Bytes::new()))
                                            .with_aborted_transactions(None)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            ),
        ),
        RequestKind::Produce(r) => {
            if r.acks == 0 {
                return None;
            }
            ResponseKind::Produce(
                ProduceResponse::default().with_responses(
                    r.topic_data
                        .iter()
                        .map(|t| {
                            TopicProduceResponse::default()
                                .with_name(t.name.clone())
                                .with_partition_responses(
                                    t.partition_data
                                        .iter()
                                        .map(|p| {
                                            PartitionProduceResponse::default()
                                                .with_index(p.index)
                                                .with_error_code(code)
                                                .with_base_offset(-1)
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                ),
            )
        }
        RequestKind::InitProducerId(_) => ResponseKind::InitProducerId(
            InitProducerIdResponse::default()
                .with_error_code(code)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        ),
        RequestKind::CreateTopics(r) => ResponseKind::CreateTopics(
            CreateTopicsResponse::default().with_topics(
                r.topics
                    .iter()
                    .map(|t| create_topic_result(version, &t.name, code, None))
                    .collect(),
            ),
        ),
        other => return super::txn_handlers::error_response(other, version, code),
    })
}

fn create_topic_result(
    version: i16,
    name: &TopicName,
    code: i16,
    created: Option<(uuid::Uuid, i32, i16)>,
) -> CreatableTopicResult {
    let mut result = CreatableTopicResult::default()
        .with_name(name.clone())
        .with_error_code(code)
        .with_error_message(None);
    if version >= 5 {
        if let Some((_, partitions, replication)) = created {
            result.num_partitions = partitions;
            result.replication_factor = replication;
        }
    } else {
        result.configs = None;
    }
    if version >= 7
        && let Some((id, _, _)) = created
    {
        result.topic_id = id;
    }
    result
}

fn valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// Why a produced partition's bytes are refused.
fn decode_produced(records: Option<&Bytes>) -> Result<IncomingBatch, ResponseError> {
    let bytes = records.ok_or(ResponseError::CorruptMessage)?;
    let header = bytes
        .get(..BATCH_HEADER_LEN)
        .ok_or(ResponseError::CorruptMessage)?;
    let mut h = header;
    let _base_offset = h.get_i64();
    let batch_len = h.get_i32();
    let _leader_epoch = h.get_i32();
    let magic = h.get_i8();
    let _crc = h.get_u32();
    let attributes = h.get_i16();
    let _last_offset_delta = h.get_i32();
    let _first_timestamp = h.get_i64();
    let _max_timestamp = h.get_i64();
    let producer_id = h.get_i64();
    let producer_epoch = h.get_i16();
    let base_sequence = h.get_i32();
    let record_count = h.get_i32();
    if magic != 2 {
        return Err(ResponseError::UnsupportedForMessageFormat);
    }
    // Exactly one batch per partition (Kafka requires it for v2 produce requests).
    if usize::try_from(batch_len).ok().map(|l| l + 12) != Some(bytes.len()) {
        return Err(ResponseError::InvalidRecord);
    }
    if attributes & (1 << 5) != 0 {
        return Err(ResponseError::InvalidRecord);
    }
    let transactional = attributes & (1 << 4) != 0;
    let section = bytes.len() - BATCH_HEADER_LEN;
    let max_records = if attributes & 0x7 == 0 {
        i32::try_from(section).unwrap_or(i32::MAX)
    } else {
        MAX_COMPRESSED_RECORDS
    };
    if !(1..=max_records).contains(&record_count) {
        return Err(ResponseError::InvalidRecord);
    }
    let mut buf = bytes.clone();
    let set = RecordBatchDecoder::decode(&mut buf).map_err(|_| ResponseError::CorruptMessage)?;
    let records = set
        .records
        .into_iter()
        .map(|r| SimRecord {
            key: r.key,
            value: r.value,
            headers: r
                .headers
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            timestamp: r.timestamp,
        })
        .collect();
    Ok(IncomingBatch {
        producer_id,
        producer_epoch,
        base_sequence,
        transactional,
        compression: set.compression,
        records,
    })
}

/// Checks a request's `current_leader_epoch` against the partition's (-1: not checked).
fn check_leader_epoch(log: &PartitionLog, current_leader_epoch: i32) -> Result<(), ResponseError> {
    if current_leader_epoch < 0 || current_leader_epoch == log.leader_epoch {
        Ok(())
    } else if current_leader_epoch < log.leader_epoch {
        Err(ResponseError::FencedLeaderEpoch)
    } else {
        Err(ResponseError::UnknownLeaderEpoch)
    }
}

impl SimCluster {
    fn lookup(&self, topic: &str, partition: i32) -> Option<&PartitionLog> {
        self.partition(topic, partition).ok()
    }

    /// A partition served by `broker` as leader, or the partition-level error.
    fn led_partition(
        &self,
        topic: &str,
        partition: i32,
        broker: i32,
    ) -> Result<&PartitionLog, ResponseError> {
        let log = self
            .lookup(topic, partition)
            .ok_or(ResponseError::UnknownTopicOrPartition)?;
        if log.leader != broker {
            return Err(ResponseError::NotLeaderOrFollower);
        }
        Ok(log)
    }

    fn broker_entry(&self, id: i32) -> MetadataResponseBroker {
        let (host, port) = self.broker_address(id).unwrap_or_default();
        MetadataResponseBroker::default()
            .with_node_id(BrokerId(id))
            .with_host(StrBytes::from_string(host))
            .with_port(port)
    }

    pub(super) fn handle_metadata(&mut self, ctx: &RequestCtx, r: &MetadataRequest) -> Reply {
        let v = ctx.version;
        let all = match &r.topics {
            None => true,
            Some(topics) => v == 0 && topics.is_empty(),
        };
        let names: Vec<Option<String>> = if all {
            self.topics.keys().cloned().map(Some).collect()
        } else {
            r.topics
                .iter()
                .flatten()
                .map(|t| t.name.as_ref().map(|n| n.0.to_string()))
                .collect()
        };
        let allow_create = self.config.auto_create_topics && (v < 4 || r.allow_auto_topic_creation);
        let mut topics = Vec::new();
        for name in names {
            let Some(name) = name else {
                topics.push(
                    MetadataResponseTopic::default()
                        .with_error_code(ResponseError::UnknownTopicId.code()),
                );
                continue;
            };
            if !self.topics.contains_key(&name) && allow_create && valid_topic_name(&name) {
                let partitions = self.config.default_partitions.max(1);
                let _ = self.create_topic(&name, partitions);
            }
            let Some(topic) = self.topics.get(&name) else {
                topics.push(
                    MetadataResponseTopic::default()
                        .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                        .with_name(Some(topic_name(&name))),
                );
                continue;
            };
            let partitions = topic
                .partitions
                .iter()
                .enumerate()
                .map(|(index, log)| {
                    let up = self.is_up(log.leader);
                    let mut p = MetadataResponsePartition::default()
                        .with_partition_index(index as i32)
                        .with_leader_id(BrokerId(if up { log.leader } else { -1 }))
                        .with_replica_nodes(vec![BrokerId(log.leader)])
                        .with_isr_nodes(if up {
                            vec![BrokerId(log.leader)]
                        } else {
                            vec![]
                        });
                    if !up {
                        p.error_code = ResponseError::LeaderNotAvailable.code();
                    }
                    if v >= 7 {
                        p.leader_epoch = log.leader_epoch;
                    }
                    if v >= 5 && !up {
                        p.offline_replicas = vec![BrokerId(log.leader)];
                    }
                    p
                })
                .collect();
            let mut t = MetadataResponseTopic::default()
                .with_name(Some(topic_name(&name)))
                .with_partitions(partitions);
            if v >= 10 {
                t.topic_id = topic.id;
            }
            topics.push(t);
        }
        let up = self.up_brokers();
        let mut response = MetadataResponse::default()
            .with_brokers(up.iter().map(|&id| self.broker_entry(id)).collect())
            .with_topics(topics);
        if v >= 1 {
            response.controller_id = BrokerId(up.first().copied().unwrap_or(-1));
        }
        if v >= 2 {
            response.cluster_id = Some(str_bytes(CLUSTER_ID));
        }
        Reply::respond(ResponseKind::Metadata(response))
    }

    pub(super) fn handle_find_coordinator(
        &mut self,
        ctx: &RequestCtx,
        r: &FindCoordinatorRequest,
    ) -> Reply {
        let resolve = |key: &str| -> (i16, i32, String, i32) {
            match self
                .coordinator_of(key)
                .and_then(|id| self.broker_address(id).map(|(h, p)| (id, h, p)))
            {
                Some((id, host, port)) => (0, id, host, port),
                None => (
                    ResponseError::CoordinatorNotAvailable.code(),
                    -1,
                    String::new(),
                    -1,
                ),
            }
        };
        let unsupported_type = !(0..=1).contains(&r.key_type);
        let mut response = FindCoordinatorResponse::default();
        if ctx.version >= 4 {
            response.coordinators = r
                .coordinator_keys
                .iter()
                .map(|key| {
                    let (code, id, host, port) = if unsupported_type {
                        (ResponseError::InvalidRequest.code(), -1, String::new(), -1)
                    } else {
                        resolve(key.as_str())
                    };
                    Coordinator::default()
                        .with_key(key.clone())
                        .with_error_code(code)
                        .with_node_id(BrokerId(id))
                        .with_host(StrBytes::from_string(host))
                        .with_port(port)
                })
                .collect();
        } else {
            let (code, id, host, port) = if unsupported_type {
                (ResponseError::InvalidRequest.code(), -1, String::new(), -1)
            } else {
                resolve(r.key.as_str())
            };
            response.error_code = code;
            response.node_id = BrokerId(id);
            response.host = StrBytes::from_string(host);
            response.port = port;
        }
        Reply::respond(ResponseKind::FindCoordinator(response))
    }

    fn is_coordinator(&self, ctx: &RequestCtx, key: &str) -> bool {
        self.coordinator_of(key) == Some(ctx.broker)
    }

    pub(super) fn handle_join_group(&mut self, ctx: &RequestCtx, r: &JoinGroupRequest) -> Reply {
        let group_id = r.group_id.0.to_string();
        if !self.is_coordinator(ctx, &group_id) {
            let request = RequestKind::JoinGroup(r.clone());
            return match error_response(&request, ctx.version, ResponseError::NotCoordinator.code())
            {
                Some(response) => Reply::respond(response),
                None => Reply::Silent,
            };
        }
        let new_id = if r.member_id.is_empty() {
            let client = if ctx.client_id.is_empty() {
                "member"
            } else {
                ctx.client_id.as_str()
            };
            Some(self.next_member_id(client))
        } else {
            None
        };
        let config = self.config.group;
        let now = self.now;
        let group = self.groups.entry(group_id).or_default();
        match group.join(
            r,
            ctx.origin(),
            &ctx.client_id,
            || new_id.unwrap_or_default(),
            &config,
            now,
            &mut self.deliveries,
        ) {
            Some(response) => Reply::respond(response),
            None => Reply::ParkGroup,
        }
    }

    pub(super) fn handle_sync_group(&mut self, ctx: &RequestCtx, r: &SyncGroupRequest) -> Reply {
        let group_id = r.group_id.0.to_string();
        let error = |e: ResponseError| {
            Reply::respond(ResponseKind::SyncGroup(
                SyncGroupResponse::default().with_error_code(e.code()),
            ))
        };
        if !self.is_coordinator(ctx, &group_id) {
            return error(ResponseError::NotCoordinator);
        }
        let now = self.now;
        let Some(group) = self.groups.get_mut(&group_id) else {
            return error(ResponseError::UnknownMemberId);
        };
        if let Err(e) = group.check_instance(r.group_instance_id.as_ref(), r.member_id.as_str()) {
            return error(e);
        }
        match group.sync(r, ctx.origin(), now, &mut self.deliveries) {
            Some(response) => Reply::respond(response),
            None => Reply::ParkGroup,
        }
    }

    pub(super) fn handle_heartbeat(&mut self, ctx: &RequestCtx, r: &HeartbeatRequest) -> Reply {
        let group_id = r.group_id.0.to_string();
        let code = if !self.is_coordinator(ctx, &group_id) {
            ResponseError::NotCoordinator.code()
        } else {
            let now = self.now;
            match self.groups.get_mut(&group_id) {
                Some(group) => {
                    match group.check_instance(r.group_instance_id.as_ref(), r.member_id.as_str()) {
                        Err(e) => e.code(),
                        Ok(()) => group.heartbeat(r.member_id.as_str(), r.generation_id, now),
                    }
                }
                None => ResponseError::UnknownMemberId.code(),
            }
        };
        Reply::respond(ResponseKind::Heartbeat(
            HeartbeatResponse::default().with_error_code(code),
        ))
    }

    pub(super) fn handle_leave_group(&mut self, ctx: &RequestCtx, r: &LeaveGroupRequest) -> Reply {
        let group_id = r.group_id.0.to_string();
        let mut response = LeaveGroupResponse::default();
        if !self.is_coordinator(ctx, &group_id) {
            response.error_code = ResponseError::NotCoordinator.code();
            return Reply::respond(ResponseKind::LeaveGroup(response));
        }
        let config = self.config.group;
        let now = self.now;
        let mut leave = |member_id: &str, deliveries: &mut Vec<_>| -> i16 {
            let left = self
                .groups
                .get_mut(&group_id)
                .is_some_and(|group| group.leave(member_id, &config, now, deliveries));
            if left {
                0
            } else {
                ResponseError::UnknownMemberId.code()
            }
        };
        let mut deliveries = Vec::new();
        if ctx.version >= 3 {
            response.members = r
                .members
                .iter()
                .map(|m| {
                    MemberResponse::default()
                        .with_member_id(m.member_id.clone())
                        .with_group_instance_id(m.group_instance_id.clone())
                        .with_error_code(leave(m.member_id.as_str(), &mut deliveries))
                })
                .collect();
        } else {
            response.error_code = leave(r.member_id.as_str(), &mut deliveries);
        }
        self.deliveries.extend(deliveries);
        Reply::respond(ResponseKind::LeaveGroup(response))
    }

    pub(super) fn handle_offset_commit(
        &mut self,
        ctx: &RequestCtx,
        r: &OffsetCommitRequest,
    ) -> Reply {
        let group_id = r.group_id.0.to_string();
        let request_error = if !self.is_coordinator(ctx, &group_id) {
            Some(ResponseError::NotCoordinator)
        } else {
            match self.groups.get(&group_id) {
                Some(group) => group
                    .check_instance(r.group_instance_id.as_ref(), r.member_id.as_str())
                    .and_then(|()| {
                        group.check_commit(r.generation_id_or_member_epoch, r.member_id.as_str())
                    })
                    .err(),
                None if r.generation_id_or_member_epoch < 0 => None,
                None => Some(ResponseError::IllegalGeneration),
            }
        };
        if let Some(error) = request_error {
            let request = RequestKind::OffsetCommit(r.clone());
            return match error_response(&request, ctx.version, error.code()) {
                Some(response) => Reply::respond(response),
                None => Reply::Silent,
            };
        }
        let now = self.now;
        let mut topics = Vec::new();
        for t in &r.topics {
            let name = t.name.0.to_string();
            let mut partitions = Vec::new();
            for p in &t.partitions {
                let known = self.lookup(&name, p.partition_index).is_some();
                let code = if known {
                    let group = self.groups.entry(group_id.clone()).or_default();
                    group.offsets.insert(
                        (name.clone(), p.partition_index),
                        CommittedOffset {
                            offset: p.committed_offset,
                            leader_epoch: if ctx.version >= 6 {
                                p.committed_leader_epoch
                            } else {
                                -1
                            },
                            metadata: p.committed_metadata.clone(),
                        },
                    );
                    0
                } else {
                    ResponseError::UnknownTopicOrPartition.code()
                };
                partitions.push(
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code),
                );
            }
            topics.push(
                OffsetCommitResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(partitions),
            );
        }
        if let Some(group) = self.groups.get_mut(&group_id) {
            group.touch(r.member_id.as_str(), now);
        }
        Reply::respond(ResponseKind::OffsetCommit(
            OffsetCommitResponse::default().with_topics(topics),
        ))
    }

    pub(super) fn handle_offset_fetch(
        &mut self,
        ctx: &RequestCtx,
        r: &OffsetFetchRequest,
    ) -> Reply {
        let group_id = r.group_id.0.to_string();
        if !self.is_coordinator(ctx, &group_id) {
            let request = RequestKind::OffsetFetch(r.clone());
            return match error_response(&request, ctx.version, ResponseError::NotCoordinator.code())
            {
                Some(response) => Reply::respond(response),
                None => Reply::Silent,
            };
        }
        let group = self.groups.get(&group_id);
        let requested: Vec<(TopicName, Vec<i32>)> = match &r.topics {
            Some(topics) => topics
                .iter()
                .map(|t| (t.name.clone(), t.partition_indexes.clone()))
                .collect(),
            None => {
                let mut all: Vec<(TopicName, Vec<i32>)> = Vec::new();
                for (topic, partition) in group.iter().flat_map(|g| g.offsets.keys()) {
                    match all.last_mut() {
                        Some((name, parts)) if name.0.as_str() == topic.as_str() => {
                            parts.push(*partition)
                        }
                        _ => all.push((topic_name(topic), vec![*partition])),
                    }
                }
                all
            }
        };
        let topics = requested
            .into_iter()
            .map(|(name, partitions)| {
                let partitions = partitions
                    .into_iter()
                    .map(|p| {
                        let committed = group.and_then(|g| g.offsets.get(&(name.0.to_string(), p)));
                        let mut entry = OffsetFetchResponsePartition::default()
                            .with_partition_index(p)
                            .with_committed_offset(committed.map_or(-1, |c| c.offset))
                            .with_metadata(Some(
                                committed
                                    .and_then(|c| c.metadata.clone())
                                    .unwrap_or_default(),
                            ));
                        if ctx.version >= 5 {
                            entry.committed_leader_epoch = committed.map_or(-1, |c| c.leader_epoch);
                        }
                        // KIP-447: a consumer that asks for stable offsets waits while a
                        // transaction holds one.
                        if ctx.version >= 7
                            && r.require_stable
                            && self.has_pending_txn_offset(&group_id, name.0.as_str(), p)
                        {
                            entry.committed_offset = -1;
                            entry.error_code = ResponseError::UnstableOffsetCommit.code();
                        }
                        entry
                    })
                    .collect();
                OffsetFetchResponseTopic::default()
                    .with_name(name)
                    .with_partitions(partitions)
            })
            .collect();
        Reply::respond(ResponseKind::OffsetFetch(
            OffsetFetchResponse::default().with_topics(topics),
        ))
    }

    pub(super) fn handle_list_offsets(
        &mut self,
        ctx: &RequestCtx,
        r: &ListOffsetsRequest,
    ) -> Reply {
        let v = ctx.version;
        let read_committed = v >= 2 && r.isolation_level == 1;
        let topics = r
            .topics
            .iter()
            .map(|t| {
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let mut entry = ListOffsetsPartitionResponse::default()
                            .with_partition_index(p.partition_index)
                            .with_timestamp(-1)
                            .with_offset(-1);
                        let result = self
                            .led_partition(t.name.0.as_str(), p.partition_index, ctx.broker)
                            .and_then(|log| {
                                if v >= 4 {
                                    check_leader_epoch(log, p.current_leader_epoch)?;
                                }
                                let found = match p.timestamp {
                                    -2 | -4 => Some((log.log_start_offset(), -1)),
                                    -1 if read_committed => Some((log.last_stable_offset(), -1)),
                                    -1 => Some((log.high_watermark(), -1)),
                                    -3 => log.max_timestamp(),
                                    ts if ts >= 0 => log.offset_for_timestamp(ts),
                                    _ => return Err(ResponseError::InvalidRequest),
                                };
                                Ok((found, log.leader_epoch))
                            });
                        match result {
                            Ok((found, epoch)) => {
                                if let Some((offset, ts)) = found {
                                    entry.offset = offset;
                                    entry.timestamp = ts;
                                }
                                if v >= 4 {
                                    entry.leader_epoch = epoch;
                                }
                            }
                            Err(error) => entry.error_code = error.code(),
                        }
                        entry
                    })
                    .collect();
                ListOffsetsTopicResponse::default()
                    .with_name(t.name.clone())
                    .with_partitions(partitions)
            })
            .collect();
        Reply::respond(ResponseKind::ListOffsets(
            ListOffsetsResponse::default().with_topics(topics),
        ))
    }

    pub(super) fn handle_fetch(&mut self, ctx: &RequestCtx, r: FetchRequest) -> Reply {
        if ctx.version >= 7 && r.session_id != 0 {
            let response = FetchResponse::default()
                .with_error_code(ResponseError::FetchSessionIdNotFound.code());
            return Reply::respond(ResponseKind::Fetch(response));
        }
        let (response, satisfied) = self.fetch_response(&r, ctx.version, ctx.broker);
        if satisfied || r.max_wait_ms <= 0 {
            return Reply::respond(response);
        }
        Reply::ParkFetch(Box::new(ParkedFetch {
            correlation_id: ctx.correlation_id,
            version: ctx.version,
            deadline: self.now.saturating_add(i64::from(r.max_wait_ms)),
            request: r,
        }))
    }

    /// Builds a Fetch response from the logs; `true` if it satisfies `min_bytes` (or carries
    /// an error, which is answered at once).
    pub(super) fn fetch_response(
        &self,
        r: &FetchRequest,
        version: i16,
        broker: i32,
    ) -> (ResponseKind, bool) {
        let read_committed = r.isolation_level == 1;
        let mut remaining = usize::try_from(r.max_bytes).unwrap_or(0);
        let mut total = 0usize;
        let mut any_error = false;
        let mut first_data = true;
        let mut responses = Vec::new();
        for t in &r.topics {
            let mut partitions = Vec::new();
            for p in &t.partitions {
                let mut entry = PartitionData::default()
                    .with_partition_index(p.partition)
                    .with_high_watermark(-1)
                    .with_records(Some(Bytes::new()))
                    .with_aborted_transactions(read_committed.then(Vec::new));
                let result = self
                    .led_partition(t.topic.0.as_str(), p.partition, broker)
                    .and_then(|log| {
                        if version >= 9 {
                            check_leader_epoch(log, p.current_leader_epoch)?;
                        }
                        if p.fetch_offset < log.log_start_offset()
                            || p.fetch_offset > log.high_watermark()
                        {
                            return Err(ResponseError::OffsetOutOfRange);
                        }
                        Ok(log)
                    });
                match result {
                    Ok(log) => {
                        let limit = usize::try_from(p.partition_max_bytes)
                            .unwrap_or(0)
                            .min(remaining);
                        let stable = log.last_stable_offset();
                        let end = if read_committed {
                            stable
                        } else {
                            log.high_watermark()
                        };
                        let bytes = log.read(p.fetch_offset, limit, first_data, end);
                        if !bytes.is_empty() {
                            first_data = false;
                        }
                        remaining = remaining.saturating_sub(bytes.len());
                        total += bytes.len();
                        entry.high_watermark = log.high_watermark();
                        entry.last_stable_offset = stable;
                        if read_committed {
                            entry.aborted_transactions = Some(
                                log.aborted_between(p.fetch_offset, stable)
                                    .into_iter()
                                    .map(|a| {
                                        AbortedTransaction::default()
                                            .with_producer_id(ProducerId(a.producer_id))
                                            .with_first_offset(a.first_offset)
                                    })
                                    .collect(),
                            );
                        }
                        if version >= 5 {
                            entry.log_start_offset = log.log_start_offset();
                        }
                        entry.records = Some(bytes);
                    }
                    Err(error) => {
                        any_error = true;
                        entry.error_code = error.code();
                        if version >= 12
                            && error == ResponseError::NotLeaderOrFollower
                            && let Some(log) = self.lookup(t.topic.0.as_str(), p.partition)
                            && self.is_up(log.leader)
                        {
                            entry.current_leader = LeaderIdAndEpoch::default()
                                .with_leader_id(BrokerId(log.leader))
                                .with_leader_epoch(log.leader_epoch);
                        }
                    }
                }
                partitions.push(entry);
            }
            responses.push(
                FetchableTopicResponse::default()
                    .with_topic(t.topic.clone())
                    .with_partitions(partitions),
            );
        }
        let min_bytes = usize::try_from(r.min_bytes).unwrap_or(0);
        let satisfied = any_error || total >= min_bytes.max(1) || r.topics.is_empty();
        let mut response = FetchResponse::default().with_responses(responses);
        if self.config.fetch_tag_zero_at_every_flexible_version && version >= 12 {
            // An empty compact array: what a broker writes for "no node endpoints".
            response
                .unknown_tagged_fields
                .insert(0, bytes::Bytes::from_static(&[1]));
        }
        (ResponseKind::Fetch(response), satisfied)
    }

    pub(super) fn handle_produce(&mut self, ctx: &RequestCtx, r: &ProduceRequest) -> Reply {
        let storage = self.config.storage_compression;
        let duplicate_reply = self.config.duplicate_reply;
        let transactional_id = r.transactional_id.as_ref().map(|t| t.0.to_string());
        let mut responses = Vec::new();
        for t in &r.topic_data {
            let name = t.name.0.to_string();
            let mut partitions = Vec::new();
            for p in &t.partition_data {
                let mut entry = PartitionProduceResponse::default()
                    .with_index(p.index)
                    .with_base_offset(-1);
                if ctx.version >= 5 {
                    entry.log_start_offset = 0;
                }
                let outcome = self
                    .led_partition(&name, p.index, ctx.broker)
                    .map(|_| ())
                    .and_then(|()| decode_produced(p.records.as_ref()))
                    .and_then(|batch| {
                        self.check_transactional_batch(
                            transactional_id.as_deref(),
                            &batch,
                            &name,
                            p.index,
                        )
                        .map(|()| batch)
                    })
                    .map(|mut batch| {
                        if let Some(codec) = storage {
                            batch.compression = codec;
                        }
                        match self.partition_mut(&name, p.index) {
                            Ok(log) => log.append(batch),
                            Err(_) => {
                                AppendOutcome::Rejected(ResponseError::UnknownTopicOrPartition)
                            }
                        }
                    });
                match outcome {
                    Ok(AppendOutcome::Appended { base_offset }) => entry.base_offset = base_offset,
                    Ok(AppendOutcome::Duplicate { base_offset }) => {
                        entry.base_offset = base_offset;
                        if duplicate_reply == DuplicateReply::ErrorCode {
                            entry.error_code = ResponseError::DuplicateSequenceNumber.code();
                        }
                    }
                    Ok(AppendOutcome::Rejected(error)) | Err(error) => {
                        entry.error_code = error.code()
                    }
                }
                partitions.push(entry);
            }
            responses.push(
                TopicProduceResponse::default()
                    .with_name(t.name.clone())
                    .with_partition_responses(partitions),
            );
        }
        self.wake_fetches();
        if r.acks == 0 {
            return Reply::Silent;
        }
        Reply::respond(ResponseKind::Produce(
            ProduceResponse::default().with_responses(responses),
        ))
    }

    pub(super) fn handle_create_topics(
        &mut self,
        ctx: &RequestCtx,
        r: &CreateTopicsRequest,
    ) -> Reply {
        let v = ctx.version;
        let brokers = self.broker_count() as i16;
        let mut results = Vec::new();
        for t in &r.topics {
            let name = t.name.0.to_string();
            let leaders: Option<Vec<i32>> = (!t.assignments.is_empty()).then(|| {
                let mut sorted = t.assignments.clone();
                sorted.sort_by_key(|a| a.partition_index);
                sorted
                    .iter()
                    .map(|a| a.broker_ids.first().map_or(-1, |b| b.0))
                    .collect()
            });
            let partitions = match &leaders {
                Some(l) => l.len() as i32,
                None if t.num_partitions == -1 => self.config.default_partitions.max(1),
                None => t.num_partitions,
            };
            let error = if self.topics.contains_key(&name) {
                Some(ResponseError::TopicAlreadyExists)
            } else if !valid_topic_name(&name) {
                Some(ResponseError::InvalidTopicException)
            } else if partitions < 1 || (leaders.is_some() && t.num_partitions != -1) {
                Some(ResponseError::InvalidPartitions)
            } else if t.replication_factor == 0
                || t.replication_factor < -1
                || t.replication_factor > brokers
            {
                Some(ResponseError::InvalidReplicationFactor)
            } else if leaders
                .as_ref()
                .is_some_and(|l| l.iter().any(|&b| self.broker_index(b).is_none()))
            {
                Some(ResponseError::InvalidReplicaAssignment)
            } else {
                None
            };
            let result = match error {
                Some(error) => create_topic_result(v, &t.name, error.code(), None),
                None => {
                    let replication = if t.replication_factor == -1 {
                        1
                    } else {
                        t.replication_factor
                    };
                    if r.validate_only {
                        create_topic_result(
                            v,
                            &t.name,
                            0,
                            Some((uuid::Uuid::nil(), partitions, replication)),
                        )
                    } else {
                        match self.create_topic_with_leaders(&name, partitions, leaders) {
                            Ok(()) => {
                                let id = self.topics.get(&name).map(|t| t.id).unwrap_or_default();
                                create_topic_result(
                                    v,
                                    &t.name,
                                    0,
                                    Some((id, partitions, replication)),
                                )
                            }
                            Err(_) => create_topic_result(
                                v,
                                &t.name,
                                ResponseError::InvalidRequest.code(),
                                None,
                            ),
                        }
                    }
                }
            };
            results.push(result);
        }
        Reply::respond(ResponseKind::CreateTopics(
            CreateTopicsResponse::default().with_topics(results),
        ))
    }
}
