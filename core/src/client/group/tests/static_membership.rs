//! Static membership (KIP-345): the instance id in every request at every version that
//! carries it, the versions it needs, fencing, a rejoin after UNKNOWN_MEMBER_ID, the leader
//! told to skip the assignment, and a close without LeaveGroup.

use super::*;
use crate::client::group::member::STATIC_MEMBERSHIP_VERSIONS;

const INSTANCE: &str = "instance-a-1";

/// The lowest versions a static member accepts (the others at our minimum).
fn static_min_versions() -> HashMap<ApiKey, i16> {
    let mut versions = min_versions();
    versions.extend(STATIC_MEMBERSHIP_VERSIONS);
    versions.insert(ApiKey::LeaveGroup, 3);
    versions
}

fn static_harness(versions: HashMap<ApiKey, i16>, leave_on_close: bool) -> Harness {
    Harness::with_config(versions, |c| {
        c.group_instance_id = Some(INSTANCE.to_owned());
        c.static_leave_on_close = leave_on_close;
    })
}

fn stable_static_follower(versions: HashMap<ApiKey, i16>, leave_on_close: bool) -> Harness {
    let mut h = static_harness(versions, leave_on_close);
    h.find_coordinator();
    h.join_as_follower("m-1", 5, &[t(0, 0)]);
    assert!(h.member.is_stable());
    h.events();
    h
}

fn instance() -> Option<StrBytes> {
    Some(s(INSTANCE))
}

#[test]
fn every_request_carries_the_instance_id_at_the_lowest_and_highest_versions() {
    for versions in [static_min_versions(), max_versions()] {
        let mut h = static_harness(versions, true);
        h.find_coordinator();
        // No MEMBER_ID_REQUIRED round trip is needed: the first JoinGroup already names the
        // instance (`join_as_follower` checks it), and so does SyncGroup.
        let RequestKind::JoinGroup(join) = h.expect(ApiKey::JoinGroup) else {
            unreachable!()
        };
        assert_eq!(join.group_instance_id, instance());
        assert_eq!(join.member_id, s(""));
        h.respond(
            ApiKey::JoinGroup,
            JoinGroupResponse::default()
                .with_generation_id(5)
                .with_protocol_name(Some(s("kstreams")))
                .with_leader(s("the-leader"))
                .with_member_id(s("m-1"))
                .into(),
        )
        .unwrap();
        let RequestKind::SyncGroup(sync) = h.expect(ApiKey::SyncGroup) else {
            unreachable!()
        };
        assert_eq!(sync.group_instance_id, instance());
        h.respond(
            ApiKey::SyncGroup,
            SyncGroupResponse::default()
                .with_assignment(protocol::encode_assignment(&assignment_for(&[t(0, 0)])).unwrap())
                .into(),
        )
        .unwrap();
        assert!(h.member.is_stable());

        h.now = at(HEARTBEAT);
        let RequestKind::Heartbeat(heartbeat) = h.expect(ApiKey::Heartbeat) else {
            unreachable!()
        };
        assert_eq!(heartbeat.group_instance_id, instance());
        h.heartbeat_response(None);

        h.member
            .commit(BTreeMap::from([(tp("orders", 0), 10)]), h.now);
        let RequestKind::OffsetCommit(commit) = h.expect(ApiKey::OffsetCommit) else {
            unreachable!()
        };
        assert_eq!(commit.group_instance_id, instance());
        h.respond(ApiKey::OffsetCommit, commit_response(&[("orders", 0, 0)]))
            .unwrap();

        assert_eq!(
            h.member.group_metadata().group_instance_id.as_deref(),
            Some(INSTANCE)
        );

        // With `static_leave_on_close`, LeaveGroup names the instance.
        h.member.leave(h.now);
        let RequestKind::LeaveGroup(leave) = h.expect(ApiKey::LeaveGroup) else {
            unreachable!()
        };
        assert_eq!(leave.members[0].member_id, s("m-1"));
        assert_eq!(leave.members[0].group_instance_id, instance());
        h.respond(ApiKey::LeaveGroup, LeaveGroupResponse::default().into())
            .unwrap();
        assert_eq!(h.events().last(), Some(&GroupEvent::Left));
    }
}

#[test]
fn a_dynamic_member_sends_no_instance_id() {
    let mut h = stable_follower(max_versions(), &[t(0, 0)]);
    h.now = at(HEARTBEAT);
    let RequestKind::Heartbeat(heartbeat) = h.expect(ApiKey::Heartbeat) else {
        unreachable!()
    };
    assert_eq!(heartbeat.group_instance_id, None);
    h.heartbeat_response(None);
    h.member
        .commit(BTreeMap::from([(tp("orders", 0), 10)]), h.now);
    let RequestKind::OffsetCommit(commit) = h.expect(ApiKey::OffsetCommit) else {
        unreachable!()
    };
    assert_eq!(commit.group_instance_id, None);
}

#[test]
fn a_broker_below_the_static_versions_is_refused_before_the_first_join() {
    for (api, needed) in STATIC_MEMBERSHIP_VERSIONS {
        let mut versions = max_versions();
        versions.insert(api, needed - 1);
        let mut h = static_harness(versions, false);
        h.find_coordinator();
        assert!(h.poll().is_none(), "{api:?} v{}", needed - 1);
        assert_eq!(
            h.events(),
            vec![GroupEvent::Failed(
                GroupError::StaticMembershipUnsupported {
                    instance_id: INSTANCE.to_owned(),
                    api,
                    version: Some(needed - 1),
                    needed,
                }
            )]
        );
        assert_eq!(h.member.poll_timeout(), None);
    }
    // Without the API at all.
    let mut versions = max_versions();
    versions.remove(&ApiKey::OffsetCommit);
    let mut h = static_harness(versions, false);
    h.find_coordinator();
    assert!(h.poll().is_none());
    assert!(matches!(
        h.events().as_slice(),
        [GroupEvent::Failed(
            GroupError::StaticMembershipUnsupported {
                api: ApiKey::OffsetCommit,
                version: None,
                ..
            }
        )]
    ));
}

#[test]
fn fenced_on_heartbeat_commit_join_or_sync_is_fatal_and_names_the_instance() {
    let fenced = |api| GroupError::FencedInstance {
        instance_id: INSTANCE.to_owned(),
        api,
    };
    let code = ResponseError::FencedInstanceId.code();

    let mut h = stable_static_follower(max_versions(), false);
    h.now = at(HEARTBEAT);
    h.expect(ApiKey::Heartbeat);
    let err = h
        .respond(
            ApiKey::Heartbeat,
            HeartbeatResponse::default().with_error_code(code).into(),
        )
        .unwrap_err();
    assert_eq!(err, fenced(ApiKey::Heartbeat));
    assert_eq!(
        h.events(),
        vec![GroupEvent::Failed(fenced(ApiKey::Heartbeat))]
    );
    h.now += SESSION;
    assert!(h.poll().is_none());

    let mut h = stable_static_follower(max_versions(), false);
    let id = h
        .member
        .commit(BTreeMap::from([(tp("orders", 0), 10)]), h.now);
    h.expect(ApiKey::OffsetCommit);
    h.respond(
        ApiKey::OffsetCommit,
        commit_response(&[("orders", 0, code)]),
    )
    .unwrap();
    let events = h.events();
    assert!(
        matches!(
            events.as_slice(),
            [
                GroupEvent::CommitFailed { id: i, error: CommitError::Rejected(ResponseError::FencedInstanceId), .. },
                GroupEvent::Failed(e),
            ] if *i == id && *e == fenced(ApiKey::OffsetCommit)
        ),
        "{events:?}"
    );

    let mut h = static_harness(max_versions(), false);
    h.find_coordinator();
    h.expect(ApiKey::JoinGroup);
    let err = h
        .respond(
            ApiKey::JoinGroup,
            JoinGroupResponse::default().with_error_code(code).into(),
        )
        .unwrap_err();
    assert_eq!(err, fenced(ApiKey::JoinGroup));

    let mut h = static_harness(max_versions(), false);
    h.find_coordinator();
    h.expect(ApiKey::JoinGroup);
    h.respond(
        ApiKey::JoinGroup,
        JoinGroupResponse::default()
            .with_generation_id(5)
            .with_protocol_name(Some(s("kstreams")))
            .with_leader(s("the-leader"))
            .with_member_id(s("m-1"))
            .into(),
    )
    .unwrap();
    h.expect(ApiKey::SyncGroup);
    let err = h
        .respond(
            ApiKey::SyncGroup,
            SyncGroupResponse::default().with_error_code(code).into(),
        )
        .unwrap_err();
    assert_eq!(err, fenced(ApiKey::SyncGroup));
}

#[test]
fn unknown_member_rejoins_with_an_empty_member_id_and_the_same_instance_id() {
    let mut h = stable_static_follower(max_versions(), false);
    h.now = at(HEARTBEAT);
    h.expect(ApiKey::Heartbeat);
    h.heartbeat_response(Some(ResponseError::UnknownMemberId));
    assert_eq!(
        h.events(),
        vec![GroupEvent::Lost {
            tasks: vec![t(0, 0)]
        }]
    );
    let RequestKind::JoinGroup(join) = h.expect(ApiKey::JoinGroup) else {
        unreachable!()
    };
    assert_eq!(join.member_id, s(""));
    assert_eq!(join.group_instance_id, instance());
}

/// A restarted static member that led the group: the coordinator (JoinGroup v9+) names it
/// leader with `skip_assignment` and the members; it must not assign (no partition counts
/// asked, no assignor run) and syncs with no assignments, getting back the stored one in the
/// same generation.
#[test]
fn a_leader_told_to_skip_the_assignment_syncs_with_none() {
    let mut h = static_harness(max_versions(), false);
    h.find_coordinator();
    h.expect(ApiKey::JoinGroup);
    let members = ["m-new", "m-other"]
        .into_iter()
        .map(|id| {
            JoinGroupResponseMember::default()
                .with_member_id(s(id))
                .with_metadata(
                    protocol::encode_subscription(&Subscription {
                        topics: vec!["orders".into(), "payments".into()],
                        owned_tasks: Vec::new(),
                        owned_partitions: Vec::new(),
                        generation: -1,
                        held_tasks: Vec::new(),
                        ..Subscription::default()
                    })
                    .unwrap(),
                )
        })
        .collect();
    h.respond(
        ApiKey::JoinGroup,
        JoinGroupResponse::default()
            .with_generation_id(7)
            .with_protocol_name(Some(s("kstreams")))
            .with_leader(s("m-new"))
            .with_member_id(s("m-new"))
            .with_skip_assignment(true)
            .with_members(members)
            .into(),
    )
    .unwrap();
    assert_eq!(h.events(), vec![], "no partition counts asked");
    let RequestKind::SyncGroup(sync) = h.expect(ApiKey::SyncGroup) else {
        unreachable!()
    };
    assert!(sync.assignments.is_empty());
    assert_eq!(sync.generation_id, 7);
    assert_eq!(sync.group_instance_id, instance());
    h.respond(
        ApiKey::SyncGroup,
        SyncGroupResponse::default()
            .with_assignment(protocol::encode_assignment(&assignment_for(&[t(0, 1)])).unwrap())
            .into(),
    )
    .unwrap();
    assert!(matches!(
        h.events().as_slice(),
        [GroupEvent::Assigned { tasks, generation: 7, .. }] if tasks == &[t(0, 1)]
    ));
}

#[test]
fn a_static_member_closes_without_leave_group() {
    let mut h = stable_static_follower(max_versions(), false);
    h.member.leave(h.now);
    assert_eq!(h.events(), vec![GroupEvent::Left]);
    assert!(h.poll().is_none());
    assert_eq!(h.member.poll_timeout(), None);
}
