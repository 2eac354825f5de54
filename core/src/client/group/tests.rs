//! Flow tests of the group member, with responses encoded and decoded by `kafka-protocol` at
//! the version of the request they answer.

use std::collections::{BTreeMap, HashMap};

use bytes::{Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    ApiKey, FindCoordinatorResponse, HeartbeatResponse, JoinGroupResponse, LeaveGroupResponse,
    OffsetCommitResponse, OffsetFetchResponse, RequestKind, ResponseKind, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::member::{
    FIND_COORDINATOR_VERSIONS, HEARTBEAT_VERSIONS, JOIN_GROUP_VERSIONS, LEAVE_GROUP_VERSIONS,
    SYNC_GROUP_VERSIONS,
};
use super::offsets::{OFFSET_COMMIT_VERSIONS, OFFSET_FETCH_VERSIONS};
use super::protocol::{self, Assignment, Subscription};
use super::*;
use crate::client::{Outbound, Target};
use crate::time::Instant;
use crate::topology::Subtopology;

#[path = "tests_cooperative.rs"]
mod cooperative;

const HEARTBEAT: Duration = Duration::from_millis(3_000);
const SESSION: Duration = Duration::from_millis(10_000);

/// The harness's clock starts at the epoch: the instant `elapsed` after its start.
fn at(elapsed: Duration) -> Instant {
    Instant::EPOCH + elapsed
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn t(s: usize, p: i32) -> TaskId {
    TaskId {
        subtopology: s,
        partition: p,
    }
}

fn tp(topic: &str, p: i32) -> TopicPartition {
    TopicPartition::new(topic, p)
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

fn subtopologies() -> Vec<Subtopology> {
    vec![Subtopology {
        id: 0,
        nodes: Vec::new(),
        source_topics: vec!["orders".into(), "payments".into()],
        sink_topics: Vec::new(),
        stores: Vec::new(),
    }]
}

fn api_of(request: &RequestKind) -> ApiKey {
    match request {
        RequestKind::FindCoordinator(_) => ApiKey::FindCoordinator,
        RequestKind::JoinGroup(_) => ApiKey::JoinGroup,
        RequestKind::SyncGroup(_) => ApiKey::SyncGroup,
        RequestKind::Heartbeat(_) => ApiKey::Heartbeat,
        RequestKind::LeaveGroup(_) => ApiKey::LeaveGroup,
        RequestKind::OffsetFetch(_) => ApiKey::OffsetFetch,
        RequestKind::OffsetCommit(_) => ApiKey::OffsetCommit,
        other => panic!("unexpected request {other:?}"),
    }
}

fn table(pick: fn(std::ops::RangeInclusive<i16>) -> i16) -> HashMap<ApiKey, i16> {
    HashMap::from([
        (ApiKey::FindCoordinator, pick(FIND_COORDINATOR_VERSIONS)),
        (ApiKey::JoinGroup, pick(JOIN_GROUP_VERSIONS)),
        (ApiKey::SyncGroup, pick(SYNC_GROUP_VERSIONS)),
        (ApiKey::Heartbeat, pick(HEARTBEAT_VERSIONS)),
        (ApiKey::LeaveGroup, pick(LEAVE_GROUP_VERSIONS)),
        (ApiKey::OffsetFetch, pick(OFFSET_FETCH_VERSIONS)),
        (ApiKey::OffsetCommit, pick(OFFSET_COMMIT_VERSIONS)),
    ])
}

fn max_versions() -> HashMap<ApiKey, i16> {
    table(|r| *r.end())
}

fn min_versions() -> HashMap<ApiKey, i16> {
    table(|r| *r.start())
}

struct Harness {
    member: GroupMember,
    versions: HashMap<ApiKey, i16>,
    now: Instant,
    last_version: HashMap<ApiKey, i16>,
}

impl Harness {
    fn new(versions: HashMap<ApiKey, i16>) -> Self {
        Self::with_config(versions, |_| {})
    }

    fn with_protocol(versions: HashMap<ApiKey, i16>, protocol: RebalanceProtocol) -> Self {
        Self::with_config(versions, |config| config.rebalance_protocol = protocol)
    }

    /// A harness whose member's config is the default one changed by `adjust`.
    fn with_config(versions: HashMap<ApiKey, i16>, adjust: impl FnOnce(&mut GroupConfig)) -> Self {
        let mut config = GroupConfig::new("app");
        config.heartbeat_interval = HEARTBEAT;
        config.session_timeout = SESSION;
        adjust(&mut config);
        Self {
            member: GroupMember::new(config, subtopologies(), Instant::EPOCH),
            versions,
            now: Instant::EPOCH,
            last_version: HashMap::new(),
        }
    }

    /// The next request; it must encode at its version.
    fn poll(&mut self) -> Option<Outbound> {
        let out = self.member.poll_request(self.now, &self.versions)?;
        let api = api_of(&out.request);
        assert_eq!(Some(out.version), self.versions.get(&api).copied());
        let mut buf = BytesMut::new();
        out.request
            .encode(&mut buf, out.version)
            .unwrap_or_else(|e| panic!("{api:?} v{} does not encode: {e}", out.version));
        self.last_version.insert(api, out.version);
        Some(out)
    }

    fn expect(&mut self, api: ApiKey) -> RequestKind {
        let out = self
            .poll()
            .unwrap_or_else(|| panic!("expected {api:?}, got nothing"));
        assert_eq!(api_of(&out.request), api, "{out:?}");
        let target = if api == ApiKey::FindCoordinator {
            Target::AnyBroker
        } else {
            Target::Coordinator
        };
        assert_eq!(out.target, target);
        out.request
    }

    fn respond(&mut self, api: ApiKey, response: ResponseKind) -> Result<(), GroupError> {
        let version = self.last_version[&api];
        let mut buf = BytesMut::new();
        response.encode(&mut buf, version).unwrap();
        let decoded = ResponseKind::decode(api, &mut buf.freeze(), version).unwrap();
        self.member.handle_response(1, decoded, self.now)
    }

    fn events(&mut self) -> Vec<GroupEvent> {
        std::iter::from_fn(|| self.member.poll_event()).collect()
    }

    fn find_coordinator(&mut self) {
        let RequestKind::FindCoordinator(req) = self.expect(ApiKey::FindCoordinator) else {
            unreachable!()
        };
        let version = self.last_version[&ApiKey::FindCoordinator];
        let response = if version >= 4 {
            assert_eq!(req.coordinator_keys, vec![s("app")]);
            FindCoordinatorResponse::default().with_coordinators(vec![
                Coordinator::default()
                    .with_key(s("app"))
                    .with_node_id(1.into())
                    .with_host(s("broker-1"))
                    .with_port(9092),
            ])
        } else {
            assert_eq!(req.key, s("app"));
            FindCoordinatorResponse::default()
                .with_node_id(1.into())
                .with_host(s("broker-1"))
                .with_port(9092)
        };
        self.respond(ApiKey::FindCoordinator, response.into())
            .unwrap();
        assert!(self.events().contains(&GroupEvent::CoordinatorFound {
            id: 1,
            host: "broker-1".into(),
            port: 9092
        }));
    }

    /// Joins as a follower and gets `tasks` (partitions of both co-partitioned topics).
    fn join_as_follower(&mut self, member_id: &str, generation: i32, tasks: &[TaskId]) {
        let RequestKind::JoinGroup(join) = self.expect(ApiKey::JoinGroup) else {
            unreachable!()
        };
        assert_eq!(join.protocol_type, s("consumer"));
        assert_eq!(join.protocols[0].name, s("kstreams"));
        assert_eq!(join.session_timeout_ms, SESSION.as_millis_i32());
        assert_eq!(
            join.group_instance_id.as_ref().map(|i| i.as_str()),
            self.member.group_instance_id()
        );
        self.respond(
            ApiKey::JoinGroup,
            JoinGroupResponse::default()
                .with_generation_id(generation)
                .with_protocol_name(Some(s("kstreams")))
                .with_leader(s("the-leader"))
                .with_member_id(s(member_id))
                .into(),
        )
        .unwrap();
        let RequestKind::SyncGroup(sync) = self.expect(ApiKey::SyncGroup) else {
            unreachable!()
        };
        assert!(sync.assignments.is_empty());
        assert_eq!(sync.generation_id, generation);
        assert_eq!(sync.member_id.as_str(), member_id);
        let assignment = assignment_for(tasks);
        self.respond(
            ApiKey::SyncGroup,
            SyncGroupResponse::default()
                .with_assignment(protocol::encode_assignment(&assignment).unwrap())
                .into(),
        )
        .unwrap();
    }

    fn heartbeat_response(&mut self, error: Option<ResponseError>) {
        let code = error.map_or(0, |e| e.code());
        self.respond(
            ApiKey::Heartbeat,
            HeartbeatResponse::default().with_error_code(code).into(),
        )
        .unwrap();
    }
}

fn assignment_for(tasks: &[TaskId]) -> Assignment {
    Assignment {
        tasks: tasks.to_vec(),
        partitions: tasks
            .iter()
            .flat_map(|task| [tp("orders", task.partition), tp("payments", task.partition)])
            .collect(),
        ..Assignment::default()
    }
}

fn stable_follower(versions: HashMap<ApiKey, i16>, tasks: &[TaskId]) -> Harness {
    let mut h = Harness::new(versions);
    h.find_coordinator();
    h.join_as_follower("m-1", 5, tasks);
    let events = h.events();
    assert!(
        matches!(
            events.last(),
            Some(GroupEvent::Assigned { generation: 5, .. })
        ),
        "{events:?}"
    );
    h
}

#[test]
fn join_as_leader_with_two_members_computes_and_sends_the_assignment() {
    let mut h = Harness::new(max_versions());
    h.find_coordinator();
    let RequestKind::JoinGroup(join) = h.expect(ApiKey::JoinGroup) else {
        unreachable!()
    };
    let own_metadata = join.protocols[0].metadata.clone();
    let own = protocol::decode_subscription(&own_metadata).unwrap();
    assert_eq!(own.topics, vec!["orders".to_owned(), "payments".to_owned()]);
    // The other member owned task 0_3 in generation 1.
    let other = protocol::encode_subscription(&Subscription {
        topics: own.topics.clone(),
        owned_tasks: vec![t(0, 3)],
        owned_partitions: Vec::new(),
        generation: 1,
        held_tasks: Vec::new(),
        ..Subscription::default()
    })
    .unwrap();
    h.respond(
        ApiKey::JoinGroup,
        JoinGroupResponse::default()
            .with_generation_id(2)
            .with_protocol_name(Some(s("kstreams")))
            .with_leader(s("m-a"))
            .with_member_id(s("m-a"))
            .with_members(vec![
                JoinGroupResponseMember::default()
                    .with_member_id(s("m-a"))
                    .with_metadata(own_metadata),
                JoinGroupResponseMember::default()
                    .with_member_id(s("m-b"))
                    .with_metadata(other),
            ])
            .into(),
    )
    .unwrap();
    // No partition counts yet: the leader asks for them and waits.
    assert_eq!(
        h.events(),
        vec![GroupEvent::PartitionCountsNeeded {
            topics: vec!["orders".into(), "payments".into()]
        }]
    );
    assert!(h.poll().is_none());
    h.member
        .set_partition_counts([("orders".to_owned(), 4), ("payments".to_owned(), 4)]);
    let RequestKind::SyncGroup(sync) = h.expect(ApiKey::SyncGroup) else {
        unreachable!()
    };
    assert_eq!(sync.generation_id, 2);
    assert_eq!(sync.protocol_type, Some(s("consumer")));
    let decoded: BTreeMap<String, Assignment> = sync
        .assignments
        .iter()
        .map(|a| {
            (
                a.member_id.to_string(),
                protocol::decode_assignment(&a.assignment).unwrap(),
            )
        })
        .collect();
    assert_eq!(decoded.len(), 2);
    // Balanced, sticky (m-b keeps 0_3), co-partitioned.
    assert_eq!(decoded["m-a"].tasks, vec![t(0, 0), t(0, 1)]);
    assert_eq!(decoded["m-b"].tasks, vec![t(0, 2), t(0, 3)]);
    assert_eq!(
        decoded["m-b"].partitions,
        vec![
            tp("orders", 2),
            tp("orders", 3),
            tp("payments", 2),
            tp("payments", 3)
        ]
    );
    let mine = sync
        .assignments
        .iter()
        .find(|a| a.member_id.as_str() == "m-a")
        .unwrap()
        .assignment
        .clone();
    h.respond(
        ApiKey::SyncGroup,
        SyncGroupResponse::default().with_assignment(mine).into(),
    )
    .unwrap();
    assert_eq!(
        h.events(),
        vec![GroupEvent::Assigned {
            tasks: vec![t(0, 0), t(0, 1)],
            partitions: vec![
                tp("orders", 0),
                tp("orders", 1),
                tp("payments", 0),
                tp("payments", 1)
            ],
            generation: 2,
            revoked: Vec::new(),
            protocol: RebalanceProtocol::Eager,
            standbys: Vec::new(),
        }]
    );
    assert!(h.member.is_stable());
}

#[test]
fn leader_survives_a_member_with_garbled_metadata() {
    let mut h = Harness::new(max_versions());
    h.member
        .set_partition_counts([("orders".to_owned(), 2), ("payments".to_owned(), 2)]);
    h.find_coordinator();
    h.expect(ApiKey::JoinGroup);
    h.respond(
        ApiKey::JoinGroup,
        JoinGroupResponse::default()
            .with_generation_id(1)
            .with_leader(s("m-a"))
            .with_member_id(s("m-a"))
            .with_members(vec![
                JoinGroupResponseMember::default()
                    .with_member_id(s("m-a"))
                    .with_metadata(Bytes::from_static(b"\x00\x03\x7f\xff\xff\xffjunk")),
                JoinGroupResponseMember::default()
                    .with_member_id(s("m-b"))
                    .with_metadata(Bytes::new()),
            ])
            .into(),
    )
    .unwrap();
    let RequestKind::SyncGroup(sync) = h.expect(ApiKey::SyncGroup) else {
        unreachable!()
    };
    let counts: Vec<usize> = sync
        .assignments
        .iter()
        .map(|a| {
            protocol::decode_assignment(&a.assignment)
                .unwrap()
                .tasks
                .len()
        })
        .collect();
    assert_eq!(counts, vec![1, 1]);
}

#[test]
fn join_as_follower() {
    let h = stable_follower(max_versions(), &[t(0, 1)]);
    assert_eq!(h.member.tasks(), &[t(0, 1)]);
    assert_eq!(h.member.member_id(), "m-1");
    assert_eq!(h.member.generation(), 5);
}

#[test]
fn member_id_required_retries_at_once_with_the_returned_id() {
    let mut h = Harness::new(max_versions());
    h.find_coordinator();
    let RequestKind::JoinGroup(first) = h.expect(ApiKey::JoinGroup) else {
        unreachable!()
    };
    assert_eq!(first.member_id, s(""));
    h.respond(
        ApiKey::JoinGroup,
        JoinGroupResponse::default()
            .with_error_code(ResponseError::MemberIdRequired.code())
            .with_member_id(s("assigned-id"))
            .into(),
    )
    .unwrap();
    let RequestKind::JoinGroup(second) = h.expect(ApiKey::JoinGroup) else {
        unreachable!()
    };
    assert_eq!(second.member_id, s("assigned-id"));
}

#[test]
fn heartbeats_follow_the_interval() {
    let mut h = stable_follower(max_versions(), &[t(0, 0)]);
    assert_eq!(h.member.poll_timeout(), Some(at(HEARTBEAT)));
    h.now = at(HEARTBEAT) - ms(1);
    assert!(h.poll().is_none());
    h.now = at(HEARTBEAT);
    let RequestKind::Heartbeat(hb) = h.expect(ApiKey::Heartbeat) else {
        unreachable!()
    };
    assert_eq!(hb.generation_id, 5);
    assert_eq!(hb.member_id, s("m-1"));
    // One at a time.
    h.now = at(HEARTBEAT.saturating_mul(2));
    assert!(h.poll().is_none());
    h.heartbeat_response(None);
    h.expect(ApiKey::Heartbeat);
    h.heartbeat_response(None);
    assert_eq!(
        h.member.poll_timeout(),
        Some(at(HEARTBEAT.saturating_mul(3)))
    );
    // A smaller `now` counts as the largest seen.
    h.now = Instant::EPOCH;
    assert!(h.poll().is_none());
}

#[test]
fn rebalance_revokes_commits_then_rejoins_only_after_revoke_done() {
    let mut h = stable_follower(max_versions(), &[t(0, 0), t(0, 1)]);
    h.now = at(HEARTBEAT);
    h.expect(ApiKey::Heartbeat);
    h.heartbeat_response(Some(ResponseError::RebalanceInProgress));
    assert_eq!(
        h.events(),
        vec![GroupEvent::Revoke {
            tasks: vec![t(0, 0), t(0, 1)]
        }]
    );
    // No JoinGroup, no heartbeat while the engine revokes.
    h.now += HEARTBEAT.saturating_mul(10);
    assert!(h.poll().is_none());
    // The engine commits the revoked tasks under the old generation.
    let id = h
        .member
        .commit(BTreeMap::from([(tp("orders", 0), 42)]), h.now);
    let RequestKind::OffsetCommit(commit) = h.expect(ApiKey::OffsetCommit) else {
        unreachable!()
    };
    assert_eq!(commit.generation_id_or_member_epoch, 5);
    h.member.revoke_done(h.now);
    // Still waiting for the commit's answer.
    assert!(h.poll().is_none());
    h.respond(
        ApiKey::OffsetCommit,
        OffsetCommitResponse::default()
            .with_topics(vec![
                OffsetCommitResponseTopic::default()
                    .with_name(s("orders").into())
                    .with_partitions(vec![
                        OffsetCommitResponsePartition::default().with_partition_index(0),
                    ]),
            ])
            .into(),
    )
    .unwrap();
    assert_eq!(
        h.events(),
        vec![GroupEvent::CommitSucceeded {
            id,
            offsets: BTreeMap::from([(tp("orders", 0), 42)])
        }]
    );
    let RequestKind::JoinGroup(join) = h.expect(ApiKey::JoinGroup) else {
        unreachable!()
    };
    assert_eq!(join.member_id, s("m-1"));
    let sub = protocol::decode_subscription(&join.protocols[0].metadata).unwrap();
    assert_eq!(sub.owned_tasks, vec![t(0, 0), t(0, 1)]);
    assert_eq!(sub.generation, 5);
}

#[test]
fn unknown_member_on_heartbeat_loses_the_tasks_and_rejoins_fresh() {
    let mut h = stable_follower(max_versions(), &[t(0, 2)]);
    h.now = at(HEARTBEAT);
    h.expect(ApiKey::Heartbeat);
    h.heartbeat_response(Some(ResponseError::UnknownMemberId));
    assert_eq!(
        h.events(),
        vec![GroupEvent::Lost {
            tasks: vec![t(0, 2)]
        }]
    );
    assert_eq!(h.member.generation(), -1);
    let RequestKind::JoinGroup(join) = h.expect(ApiKey::JoinGroup) else {
        unreachable!()
    };
    assert_eq!(join.member_id, s(""));
    // A commit now is refused, truthfully.
    let id = h
        .member
        .commit(BTreeMap::from([(tp("orders", 2), 1)]), h.now);
    assert!(matches!(
        h.events().as_slice(),
        [GroupEvent::CommitFailed { id: i, error: CommitError::NotMember, .. }] if *i == id
    ));
}

#[test]
fn session_timeout_without_heartbeat_answers_loses_membership() {
    let mut h = stable_follower(max_versions(), &[t(0, 0)]);
    h.now = at(HEARTBEAT);
    h.expect(ApiKey::Heartbeat);
    // The answer never comes; the session deadline is in the timeout.
    assert_eq!(h.member.poll_timeout(), Some(at(SESSION)));
    h.now = at(SESSION);
    h.member.handle_timeout(h.now);
    assert_eq!(
        h.events(),
        vec![GroupEvent::Lost {
            tasks: vec![t(0, 0)]
        }]
    );
    assert!(!h.member.is_stable());
    assert_eq!(h.member.coordinator(), None);
}

#[test]
fn coordinator_moved_is_rediscovered_with_backoff() {
    let mut h = stable_follower(max_versions(), &[t(0, 0)]);
    h.now = at(HEARTBEAT);
    h.expect(ApiKey::Heartbeat);
    h.heartbeat_response(Some(ResponseError::NotCoordinator));
    assert_eq!(h.member.coordinator(), None);
    // Backoff before FindCoordinator (100 ms first).
    assert_eq!(h.member.poll_timeout(), Some(at(HEARTBEAT + ms(100))));
    assert!(h.poll().is_none());
    h.now += ms(100);
    h.find_coordinator();
    assert_eq!(h.member.coordinator(), Some(1));
    assert!(h.member.is_stable());
    // A disconnect from the coordinator does the same; the backoff grew... and reset on success.
    h.now = at(HEARTBEAT.saturating_mul(2));
    h.expect(ApiKey::Heartbeat);
    h.member
        .handle_request_failed(Target::Coordinator, ApiKey::Heartbeat, h.now);
    assert_eq!(h.member.coordinator(), None);
    assert!(h.poll().is_none());
    h.now += ms(100);
    h.find_coordinator();
    h.expect(ApiKey::Heartbeat);
}

#[test]
fn join_group_coordinator_error_rediscovers_then_rejoins() {
    let mut h = Harness::new(max_versions());
    h.find_coordinator();
    h.expect(ApiKey::JoinGroup);
    h.respond(
        ApiKey::JoinGroup,
        JoinGroupResponse::default()
            .with_error_code(ResponseError::CoordinatorLoadInProgress.code())
            .into(),
    )
    .unwrap();
    assert_eq!(h.member.coordinator(), None);
    h.now += ms(100);
    h.find_coordinator();
    h.expect(ApiKey::JoinGroup);
}

#[test]
fn fatal_join_error_stops_the_member() {
    let mut h = Harness::new(max_versions());
    h.find_coordinator();
    h.expect(ApiKey::JoinGroup);
    let err = h
        .respond(
            ApiKey::JoinGroup,
            JoinGroupResponse::default()
                .with_error_code(ResponseError::InconsistentGroupProtocol.code())
                .into(),
        )
        .unwrap_err();
    assert!(matches!(
        err,
        GroupError::Fatal {
            api: ApiKey::JoinGroup,
            ..
        }
    ));
    assert!(matches!(h.events().last(), Some(GroupEvent::Failed(_))));
    assert!(h.poll().is_none());
}

#[test]
fn join_group_below_v4_is_refused() {
    let mut versions = max_versions();
    versions.insert(ApiKey::JoinGroup, 3);
    let mut h = Harness::new(versions);
    h.find_coordinator();
    assert!(h.poll().is_none());
    assert_eq!(
        h.events(),
        vec![GroupEvent::Failed(GroupError::UnsupportedVersion {
            api: ApiKey::JoinGroup,
            version: Some(3)
        })]
    );
}

#[test]
fn heartbeat_and_leave_at_min_and_max_versions() {
    for versions in [min_versions(), max_versions()] {
        let mut h = stable_follower(versions, &[t(0, 0)]);
        // Heartbeat at this version too.
        h.now = at(HEARTBEAT);
        h.expect(ApiKey::Heartbeat);
        h.heartbeat_response(None);
        h.member.leave(h.now);
        let RequestKind::LeaveGroup(leave) = h.expect(ApiKey::LeaveGroup) else {
            unreachable!()
        };
        if h.last_version[&ApiKey::LeaveGroup] >= 3 {
            assert_eq!(leave.members[0].member_id, s("m-1"));
        } else {
            assert_eq!(leave.member_id, s("m-1"));
        }
        h.respond(ApiKey::LeaveGroup, LeaveGroupResponse::default().into())
            .unwrap();
        assert_eq!(h.events(), vec![GroupEvent::Left]);
        h.now += HEARTBEAT.saturating_mul(100);
        assert!(h.poll().is_none());
        assert_eq!(h.member.poll_timeout(), None);
    }
}

fn fetch_response(version: i16, entries: &[(&str, i32, i64)], error: i16) -> OffsetFetchResponse {
    if version >= 8 {
        OffsetFetchResponse::default().with_groups(vec![
            OffsetFetchResponseGroup::default()
                .with_group_id(s("app").into())
                .with_error_code(error)
                .with_topics(
                    entries
                        .iter()
                        .map(|&(topic, p, o)| {
                            OffsetFetchResponseTopics::default()
                                .with_name(s(topic).into())
                                .with_partitions(vec![
                                    OffsetFetchResponsePartitions::default()
                                        .with_partition_index(p)
                                        .with_committed_offset(o),
                                ])
                        })
                        .collect(),
                ),
        ])
    } else {
        let r = OffsetFetchResponse::default().with_topics(
            entries
                .iter()
                .map(|&(topic, p, o)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(s(topic).into())
                        .with_partitions(vec![
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(o)
                                .with_error_code(if version < 2 { error } else { 0 }),
                        ])
                })
                .collect(),
        );
        if version >= 2 {
            r.with_error_code(error)
        } else {
            r
        }
    }
}

#[test]
fn offset_fetch_reports_committed_offsets_at_min_and_max_versions() {
    for versions in [min_versions(), max_versions()] {
        let mut h = stable_follower(versions, &[t(0, 0)]);
        h.member
            .fetch_committed([tp("orders", 0), tp("payments", 0)]);
        let RequestKind::OffsetFetch(req) = h.expect(ApiKey::OffsetFetch) else {
            unreachable!()
        };
        let version = h.last_version[&ApiKey::OffsetFetch];
        if version >= 8 {
            assert_eq!(req.groups[0].topics.as_ref().unwrap().len(), 2);
        } else {
            assert_eq!(req.topics.as_ref().unwrap().len(), 2);
        }
        // Loading: retried after backoff.
        h.respond(
            ApiKey::OffsetFetch,
            fetch_response(
                version,
                &[("orders", 0, -1)],
                ResponseError::CoordinatorLoadInProgress.code(),
            )
            .into(),
        )
        .unwrap();
        assert!(h.poll().is_none());
        h.now += ms(100);
        h.expect(ApiKey::OffsetFetch);
        h.respond(
            ApiKey::OffsetFetch,
            fetch_response(version, &[("orders", 0, 17), ("payments", 0, -1)], 0).into(),
        )
        .unwrap();
        assert_eq!(
            h.events(),
            vec![GroupEvent::OffsetsFetched {
                offsets: BTreeMap::from([(tp("orders", 0), Some(17)), (tp("payments", 0), None)])
            }]
        );
    }
}

fn commit_response(entries: &[(&str, i32, i16)]) -> ResponseKind {
    OffsetCommitResponse::default()
        .with_topics(
            entries
                .iter()
                .map(|&(topic, p, code)| {
                    OffsetCommitResponseTopic::default()
                        .with_name(s(topic).into())
                        .with_partitions(vec![
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(p)
                                .with_error_code(code),
                        ])
                })
                .collect(),
        )
        .into()
}

#[test]
fn commit_succeeds_at_min_and_max_versions() {
    for versions in [min_versions(), max_versions()] {
        let mut h = stable_follower(versions, &[t(0, 0)]);
        let offsets = BTreeMap::from([(tp("orders", 0), 10), (tp("payments", 0), 20)]);
        let id = h.member.commit(offsets.clone(), h.now);
        let RequestKind::OffsetCommit(req) = h.expect(ApiKey::OffsetCommit) else {
            unreachable!()
        };
        assert_eq!(req.member_id, s("m-1"));
        assert_eq!(req.generation_id_or_member_epoch, 5);
        assert_eq!(req.topics.len(), 2);
        h.respond(
            ApiKey::OffsetCommit,
            commit_response(&[("orders", 0, 0), ("payments", 0, 0)]),
        )
        .unwrap();
        assert_eq!(
            h.events(),
            vec![GroupEvent::CommitSucceeded { id, offsets }]
        );
    }
}

#[test]
fn commit_rejected_by_a_rebalance_fails_and_starts_the_revoke() {
    let mut h = stable_follower(max_versions(), &[t(0, 0)]);
    let id = h
        .member
        .commit(BTreeMap::from([(tp("orders", 0), 10)]), h.now);
    h.expect(ApiKey::OffsetCommit);
    h.respond(
        ApiKey::OffsetCommit,
        commit_response(&[("orders", 0, ResponseError::RebalanceInProgress.code())]),
    )
    .unwrap();
    let events = h.events();
    assert!(
        matches!(
            events.as_slice(),
            [
                GroupEvent::CommitFailed {
                    id: i,
                    error: CommitError::Rejected(ResponseError::RebalanceInProgress),
                    ..
                },
                GroupEvent::Revoke { tasks },
            ] if *i == id && tasks == &[t(0, 0)]
        ),
        "{events:?}"
    );
}

#[test]
fn commit_with_illegal_generation_fails_and_loses_membership() {
    let mut h = stable_follower(max_versions(), &[t(0, 0)]);
    h.member
        .commit(BTreeMap::from([(tp("orders", 0), 10)]), h.now);
    h.expect(ApiKey::OffsetCommit);
    h.respond(
        ApiKey::OffsetCommit,
        commit_response(&[("orders", 0, ResponseError::IllegalGeneration.code())]),
    )
    .unwrap();
    let events = h.events();
    assert!(matches!(
        events.as_slice(),
        [GroupEvent::CommitFailed { .. }, GroupEvent::Lost { .. }]
    ));
    // ILLEGAL_GENERATION keeps the member id.
    let RequestKind::JoinGroup(join) = h.expect(ApiKey::JoinGroup) else {
        unreachable!()
    };
    assert_eq!(join.member_id, s("m-1"));
}

#[test]
fn commit_to_a_moved_coordinator_is_retried_after_rediscovery_in_order() {
    let mut h = stable_follower(max_versions(), &[t(0, 0)]);
    let first = h
        .member
        .commit(BTreeMap::from([(tp("orders", 0), 10)]), h.now);
    let second = h
        .member
        .commit(BTreeMap::from([(tp("orders", 0), 20)]), h.now);
    h.expect(ApiKey::OffsetCommit);
    // Only one commit in flight.
    assert!(h.poll().is_none());
    h.respond(
        ApiKey::OffsetCommit,
        commit_response(&[("orders", 0, ResponseError::NotCoordinator.code())]),
    )
    .unwrap();
    assert!(h.events().is_empty(), "not reported either way yet");
    h.now += ms(100);
    h.find_coordinator();
    // Membership is checked first, then the commit goes again.
    h.expect(ApiKey::Heartbeat);
    let RequestKind::OffsetCommit(retry) = h.expect(ApiKey::OffsetCommit) else {
        unreachable!()
    };
    assert_eq!(retry.topics[0].partitions[0].committed_offset, 10);
    h.respond(ApiKey::OffsetCommit, commit_response(&[("orders", 0, 0)]))
        .unwrap();
    let RequestKind::OffsetCommit(next) = h.expect(ApiKey::OffsetCommit) else {
        unreachable!()
    };
    assert_eq!(next.topics[0].partitions[0].committed_offset, 20);
    // A response that leaves out a partition is not a success.
    h.respond(ApiKey::OffsetCommit, commit_response(&[]))
        .unwrap();
    let events = h.events();
    assert!(
        matches!(
            events.as_slice(),
            [
                GroupEvent::CommitSucceeded { id: a, .. },
                GroupEvent::CommitFailed { id: b, error: CommitError::IncompleteResponse(1), .. },
            ] if *a == first && *b == second
        ),
        "{events:?}"
    );
}

#[test]
fn responses_nobody_asked_for_are_rejected_without_effect() {
    let mut h = stable_follower(max_versions(), &[t(0, 0)]);
    assert_eq!(
        h.member.handle_response(
            1,
            ResponseKind::Heartbeat(HeartbeatResponse::default()),
            h.now
        ),
        Err(GroupError::UnexpectedResponse {
            api: ApiKey::Heartbeat
        })
    );
    assert!(h.member.is_stable());
}

#[test]
fn group_metadata_names_the_current_generation_and_member() {
    let h = stable_follower(max_versions(), &[t(0, 0)]);
    assert_eq!(
        h.member.group_metadata(),
        crate::client::producer::GroupMetadata {
            group_id: "app".to_owned(),
            generation_id: 5,
            member_id: "m-1".to_owned(),
            group_instance_id: None,
        }
    );
}

mod static_membership;

mod standbys;
