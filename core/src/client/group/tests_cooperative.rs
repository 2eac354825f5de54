//! Flow tests of the group member under the cooperative protocol (KIP-429): protocol
//! selection, rejoining without revoking, revoking only the moved tasks, the follow-up
//! rebalance, and the fallback to eager.

use super::*;

const COOPERATIVE: &str = protocol::COOPERATIVE_PROTOCOL_NAME;

/// A JoinGroup answer making the member a follower of generation `generation` under
/// `selected`.
fn joined(member_id: &str, generation: i32, selected: &str) -> ResponseKind {
    JoinGroupResponse::default()
        .with_generation_id(generation)
        .with_protocol_name(Some(s(selected)))
        .with_leader(s("the-leader"))
        .with_member_id(s(member_id))
        .into()
}

fn synced(tasks: &[TaskId]) -> ResponseKind {
    SyncGroupResponse::default()
        .with_assignment(protocol::encode_assignment(&assignment_for(tasks)).unwrap())
        .into()
}

fn subscription(join: &kafka_protocol::messages::JoinGroupRequest) -> Subscription {
    protocol::decode_subscription(&join.protocols[0].metadata).unwrap()
}

/// A cooperative member, stable in generation 5 under `selected` with `tasks`.
fn stable(selected: &str, tasks: &[TaskId]) -> Harness {
    let mut h = Harness::with_protocol(max_versions(), RebalanceProtocol::Cooperative);
    h.find_coordinator();
    let RequestKind::JoinGroup(join) = h.expect(ApiKey::JoinGroup) else {
        unreachable!()
    };
    // Cooperative first, eager second, with the same subscription.
    let names: Vec<&str> = join.protocols.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, vec![COOPERATIVE, "kstreams"]);
    assert_eq!(join.protocols[0].metadata, join.protocols[1].metadata);
    h.respond(ApiKey::JoinGroup, joined("m-1", 5, selected))
        .unwrap();
    let RequestKind::SyncGroup(sync) = h.expect(ApiKey::SyncGroup) else {
        unreachable!()
    };
    // SyncGroup v5 names the protocol the coordinator selected.
    assert_eq!(sync.protocol_name, Some(s(selected)));
    h.respond(ApiKey::SyncGroup, synced(tasks)).unwrap();
    let events = h.events();
    assert!(
        matches!(events.as_slice(), [GroupEvent::Assigned { generation: 5, revoked, .. }] if revoked.is_empty()),
        "{events:?}"
    );
    h
}

fn commit_ok(h: &mut Harness) {
    h.respond(ApiKey::OffsetCommit, commit_response(&[("orders", 0, 0)]))
        .unwrap();
}

#[test]
fn an_eager_member_offers_only_the_eager_protocol() {
    let mut h = Harness::new(max_versions());
    h.find_coordinator();
    let RequestKind::JoinGroup(join) = h.expect(ApiKey::JoinGroup) else {
        unreachable!()
    };
    let names: Vec<&str> = join.protocols.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, vec!["kstreams"]);
}

#[test]
fn cooperative_rebalance_keeps_the_tasks_and_revokes_only_the_moved_ones() {
    let mut h = stable(COOPERATIVE, &[t(0, 0), t(0, 1), t(0, 2)]);
    assert_eq!(
        h.member.rebalance_protocol(),
        RebalanceProtocol::Cooperative
    );
    h.now = at(HEARTBEAT);
    h.expect(ApiKey::Heartbeat);
    h.heartbeat_response(Some(ResponseError::RebalanceInProgress));
    // No revoke: the member rejoins at once, holding its tasks.
    assert_eq!(h.events(), vec![]);
    assert_eq!(h.member.tasks(), &[t(0, 0), t(0, 1), t(0, 2)]);
    assert!(h.member.is_rebalancing_cooperatively());
    let RequestKind::JoinGroup(join) = h.expect(ApiKey::JoinGroup) else {
        unreachable!()
    };
    let sub = subscription(&join);
    assert_eq!(sub.held_tasks, vec![t(0, 0), t(0, 1), t(0, 2)]);
    assert_eq!(sub.owned_tasks, sub.held_tasks);
    assert_eq!(sub.generation, 5);
    // The tasks go on committing under generation 5 while the JoinGroup waits.
    assert!(h.member.may_commit());
    let id = h
        .member
        .commit(BTreeMap::from([(tp("orders", 0), 7)]), h.now);
    let RequestKind::OffsetCommit(commit) = h.expect(ApiKey::OffsetCommit) else {
        unreachable!()
    };
    assert_eq!(commit.generation_id_or_member_epoch, 5);
    commit_ok(&mut h);
    assert!(
        matches!(h.events().as_slice(), [GroupEvent::CommitSucceeded { id: i, .. }] if *i == id)
    );
    // Generation 6: between the JoinGroup and SyncGroup answers no commit can be accepted.
    h.respond(ApiKey::JoinGroup, joined("m-1", 6, COOPERATIVE))
        .unwrap();
    assert!(!h.member.may_commit());
    h.expect(ApiKey::SyncGroup);
    h.respond(ApiKey::SyncGroup, synced(&[t(0, 0), t(0, 1)]))
        .unwrap();
    let events = h.events();
    assert_eq!(
        events,
        vec![GroupEvent::Assigned {
            tasks: vec![t(0, 0), t(0, 1)],
            partitions: vec![
                tp("orders", 0),
                tp("orders", 1),
                tp("payments", 0),
                tp("payments", 1)
            ],
            generation: 6,
            revoked: vec![t(0, 2)],
            protocol: RebalanceProtocol::Cooperative,
            standbys: Vec::new(),
        }]
    );
    assert!(h.member.is_stable() && h.member.may_commit());
    // Stable and heartbeating while the engine commits and closes 0_2; a rebalance
    // announced meanwhile waits for that.
    h.now += HEARTBEAT;
    h.expect(ApiKey::Heartbeat);
    h.heartbeat_response(Some(ResponseError::RebalanceInProgress));
    assert!(h.member.is_stable());
    assert!(h.poll().is_none());
    h.member.revoke_done(h.now);
    // The follow-up rebalance: held are the tasks kept.
    let RequestKind::JoinGroup(join) = h.expect(ApiKey::JoinGroup) else {
        unreachable!()
    };
    let sub = subscription(&join);
    assert_eq!(sub.held_tasks, vec![t(0, 0), t(0, 1)]);
    assert_eq!(sub.generation, 6);
    h.respond(ApiKey::JoinGroup, joined("m-1", 7, COOPERATIVE))
        .unwrap();
    h.expect(ApiKey::SyncGroup);
    h.respond(ApiKey::SyncGroup, synced(&[t(0, 0), t(0, 1)]))
        .unwrap();
    let events = h.events();
    assert!(
        matches!(events.as_slice(), [GroupEvent::Assigned { generation: 7, revoked, .. }] if revoked.is_empty()),
        "{events:?}"
    );
    // Nothing revoked: no further rebalance.
    assert!(h.poll().is_none());
}

#[test]
fn a_group_that_selects_eager_rebalances_eagerly() {
    let mut h = stable("kstreams", &[t(0, 0), t(0, 1)]);
    assert_eq!(h.member.rebalance_protocol(), RebalanceProtocol::Eager);
    h.now = at(HEARTBEAT);
    h.expect(ApiKey::Heartbeat);
    h.heartbeat_response(Some(ResponseError::RebalanceInProgress));
    assert_eq!(
        h.events(),
        vec![GroupEvent::Revoke {
            tasks: vec![t(0, 0), t(0, 1)]
        }]
    );
    assert!(h.poll().is_none(), "no JoinGroup before the revoke is done");
    h.member.revoke_done(h.now);
    let RequestKind::JoinGroup(join) = h.expect(ApiKey::JoinGroup) else {
        unreachable!()
    };
    // Nothing held after an eager revoke: version 1 user data, as an older member writes.
    let sub = subscription(&join);
    assert!(sub.held_tasks.is_empty());
    assert_eq!(sub.owned_tasks, vec![t(0, 0), t(0, 1)]);
}

#[test]
fn falling_back_to_eager_mid_rebalance_revokes_the_moved_tasks_then_the_rest() {
    let mut h = stable(COOPERATIVE, &[t(0, 0), t(0, 1)]);
    h.now = at(HEARTBEAT);
    h.expect(ApiKey::Heartbeat);
    h.heartbeat_response(Some(ResponseError::RebalanceInProgress));
    h.expect(ApiKey::JoinGroup);
    // A member offering only eager joined: generation 6 is eager, and the leader withheld
    // 0_1 that this member still holds.
    h.respond(ApiKey::JoinGroup, joined("m-1", 6, "kstreams"))
        .unwrap();
    let RequestKind::SyncGroup(sync) = h.expect(ApiKey::SyncGroup) else {
        unreachable!()
    };
    assert_eq!(sync.protocol_name, Some(s("kstreams")));
    h.respond(ApiKey::SyncGroup, synced(&[t(0, 0)])).unwrap();
    let events = h.events();
    assert!(
        matches!(events.as_slice(), [GroupEvent::Assigned { revoked, protocol: RebalanceProtocol::Eager, .. }] if revoked == &[t(0, 1)]),
        "{events:?}"
    );
    h.member.revoke_done(h.now);
    // The follow-up rebalance of an eager generation revokes everything first.
    assert!(h.poll().is_none());
    assert_eq!(
        h.events(),
        vec![GroupEvent::Revoke {
            tasks: vec![t(0, 0)]
        }]
    );
}

#[test]
fn unknown_member_while_rejoining_cooperatively_loses_the_held_tasks() {
    let mut h = stable(COOPERATIVE, &[t(0, 0), t(0, 1)]);
    h.now = at(HEARTBEAT);
    h.expect(ApiKey::Heartbeat);
    h.heartbeat_response(Some(ResponseError::RebalanceInProgress));
    h.expect(ApiKey::JoinGroup);
    h.respond(
        ApiKey::JoinGroup,
        JoinGroupResponse::default()
            .with_error_code(ResponseError::UnknownMemberId.code())
            .with_generation_id(-1)
            .with_member_id(s("m-1"))
            .into(),
    )
    .unwrap();
    assert_eq!(
        h.events(),
        vec![GroupEvent::Lost {
            tasks: vec![t(0, 0), t(0, 1)]
        }]
    );
    assert!(h.member.tasks().is_empty());
    assert!(!h.member.may_commit());
    let RequestKind::JoinGroup(join) = h.expect(ApiKey::JoinGroup) else {
        unreachable!()
    };
    assert_eq!(join.member_id, s(""));
    let sub = subscription(&join);
    assert!(sub.held_tasks.is_empty());
    assert_eq!(sub.generation, -1);
}

#[test]
fn the_leader_withholds_tasks_another_member_still_holds() {
    let mut h = Harness::with_protocol(max_versions(), RebalanceProtocol::Cooperative);
    h.member
        .set_partition_counts([("orders".to_owned(), 4), ("payments".to_owned(), 4)]);
    h.find_coordinator();
    let RequestKind::JoinGroup(join) = h.expect(ApiKey::JoinGroup) else {
        unreachable!()
    };
    let own = join.protocols[0].metadata.clone();
    let all: Vec<TaskId> = (0..4).map(|p| t(0, p)).collect();
    let holder = protocol::encode_subscription(&Subscription {
        topics: vec!["orders".into(), "payments".into()],
        owned_tasks: all.clone(),
        owned_partitions: Vec::new(),
        generation: 3,
        held_tasks: all,
        ..Subscription::default()
    })
    .unwrap();
    h.respond(
        ApiKey::JoinGroup,
        JoinGroupResponse::default()
            .with_generation_id(4)
            .with_protocol_name(Some(s(COOPERATIVE)))
            .with_leader(s("m-a"))
            .with_member_id(s("m-a"))
            .with_members(vec![
                JoinGroupResponseMember::default()
                    .with_member_id(s("m-a"))
                    .with_metadata(own),
                JoinGroupResponseMember::default()
                    .with_member_id(s("m-b"))
                    .with_metadata(holder),
            ])
            .into(),
    )
    .unwrap();
    let RequestKind::SyncGroup(sync) = h.expect(ApiKey::SyncGroup) else {
        unreachable!()
    };
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
    // The target gives m-a two of m-b's tasks: withheld until m-b revoked them.
    assert!(decoded["m-a"].tasks.is_empty(), "{decoded:?}");
    assert_eq!(decoded["m-b"].tasks.len(), 2);
}

/// A JoinGroup answer below v7 names no selected protocol: SyncGroup v5+ then names none
/// either (a guessed name could be refused as INCONSISTENT_GROUP_PROTOCOL), and the member
/// behaves eagerly, which is safe whatever was selected.
#[test]
fn sync_group_echoes_no_protocol_when_join_group_named_none() {
    let mut versions = max_versions();
    versions.insert(ApiKey::JoinGroup, 6);
    let mut h = Harness::with_protocol(versions, RebalanceProtocol::Cooperative);
    h.find_coordinator();
    h.expect(ApiKey::JoinGroup);
    let answer = JoinGroupResponse::default()
        .with_generation_id(3)
        .with_protocol_name(None)
        .with_leader(s("the-leader"))
        .with_member_id(s("m-1"));
    h.respond(ApiKey::JoinGroup, answer.into()).unwrap();
    let RequestKind::SyncGroup(sync) = h.expect(ApiKey::SyncGroup) else {
        unreachable!()
    };
    assert_eq!(sync.protocol_name, None);
    assert_eq!(sync.protocol_type, Some(s(protocol::PROTOCOL_TYPE)));
}
