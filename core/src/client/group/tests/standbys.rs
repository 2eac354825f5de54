//! Standbys and state-aware assignment at the member: the process id and task offsets in
//! every subscription, the standbys of an assignment, and the follow-up rejoin an assignment
//! asks for.

use kafka_protocol::protocol::Decodable;

use super::*;

fn joined(member_id: &str, generation: i32) -> ResponseKind {
    JoinGroupResponse::default()
        .with_generation_id(generation)
        .with_protocol_name(Some(s("kstreams")))
        .with_leader(s("the-leader"))
        .with_member_id(s(member_id))
        .into()
}

fn synced_with(tasks: &[TaskId], standbys: &[TaskId], followup: Option<Duration>) -> ResponseKind {
    let assignment = Assignment {
        standbys: standbys.to_vec(),
        followup,
        ..assignment_for(tasks)
    };
    SyncGroupResponse::default()
        .with_assignment(protocol::encode_assignment(&assignment).unwrap())
        .into()
}

fn state_harness() -> Harness {
    Harness::with_config(max_versions(), |c| c.process_id = "proc-1".into())
}

#[test]
fn subscriptions_carry_the_process_id_and_the_latest_task_offsets() {
    let mut h = state_harness();
    h.find_coordinator();
    let RequestKind::JoinGroup(join) = h.expect(ApiKey::JoinGroup) else {
        unreachable!()
    };
    let sub = protocol::decode_subscription(&join.protocols[0].metadata).unwrap();
    assert!(sub.state_aware);
    assert_eq!(sub.process_id, "proc-1");
    assert!(sub.task_offsets.is_empty());
    h.respond(ApiKey::JoinGroup, joined("m-1", 5)).unwrap();
    h.expect(ApiKey::SyncGroup);
    h.respond(ApiKey::SyncGroup, synced_with(&[t(0, 0)], &[t(0, 1)], None))
        .unwrap();
    h.events();
    // The engine reports twice; the latest map goes out (negative sums never do).
    h.member
        .set_task_offsets(BTreeMap::from([(t(0, 0), 5), (t(0, 1), 7)]));
    h.member
        .set_task_offsets(BTreeMap::from([(t(0, 0), 10), (t(0, 1), 9), (t(0, 2), -1)]));
    h.heartbeat_at_interval_then_rebalance();
    let RequestKind::JoinGroup(join) = h.expect(ApiKey::JoinGroup) else {
        unreachable!()
    };
    let sub = protocol::decode_subscription(&join.protocols[0].metadata).unwrap();
    assert_eq!(sub.process_id, "proc-1");
    assert_eq!(
        sub.task_offsets,
        BTreeMap::from([(t(0, 0), 10), (t(0, 1), 9)])
    );
}

impl Harness {
    /// Stable member: the next heartbeat answers REBALANCE_IN_PROGRESS; under eager the
    /// revoke is acknowledged at once.
    fn heartbeat_at_interval_then_rebalance(&mut self) {
        self.now += HEARTBEAT;
        self.expect(ApiKey::Heartbeat);
        self.heartbeat_response(Some(ResponseError::RebalanceInProgress));
        if self
            .events()
            .iter()
            .any(|e| matches!(e, GroupEvent::Revoke { .. }))
        {
            self.member.revoke_done(self.now);
        }
    }
}

#[test]
fn standbys_come_with_the_assignment_sorted_and_never_active() {
    let mut h = state_harness();
    h.find_coordinator();
    h.expect(ApiKey::JoinGroup);
    h.respond(ApiKey::JoinGroup, joined("m-1", 5)).unwrap();
    h.expect(ApiKey::SyncGroup);
    // A garbled leader names 0_0 both active and standby, and 0_3 twice.
    h.respond(
        ApiKey::SyncGroup,
        synced_with(&[t(0, 0)], &[t(0, 3), t(0, 0), t(0, 1), t(0, 3)], None),
    )
    .unwrap();
    let events = h.events();
    assert!(
        matches!(events.as_slice(), [GroupEvent::Assigned { tasks, standbys, .. }]
            if tasks == &[t(0, 0)] && standbys == &[t(0, 1), t(0, 3)]),
        "{events:?}"
    );
    assert_eq!(h.member.standbys(), &[t(0, 1), t(0, 3)]);
    assert_eq!(h.member.followup_at(), None);
}

/// A member stable in generation 5 under `protocol` with `tasks`, whose assignment asked for
/// a follow-up after `followup`.
fn stable_with_followup(
    protocol: RebalanceProtocol,
    tasks: &[TaskId],
    followup: Option<Duration>,
) -> Harness {
    let mut h = Harness::with_config(max_versions(), |c| {
        c.process_id = "proc-1".into();
        c.rebalance_protocol = protocol;
    });
    h.find_coordinator();
    h.expect(ApiKey::JoinGroup);
    h.respond(
        ApiKey::JoinGroup,
        JoinGroupResponse::default()
            .with_generation_id(5)
            .with_protocol_name(Some(s(protocol.name())))
            .with_leader(s("the-leader"))
            .with_member_id(s("m-1"))
            .into(),
    )
    .unwrap();
    h.expect(ApiKey::SyncGroup);
    h.respond(ApiKey::SyncGroup, synced_with(tasks, &[], followup))
        .unwrap();
    h.events();
    h
}

#[test]
fn a_followup_rejoins_by_itself_once_its_delay_passed() {
    for protocol in [RebalanceProtocol::Cooperative, RebalanceProtocol::Eager] {
        let mut h = stable_with_followup(protocol, &[t(0, 0)], Some(ms(5_000)));
        assert_eq!(h.member.followup_at(), Some(at(ms(5_000))));
        // Heartbeats meanwhile; the deadline is part of the timeout.
        h.now = at(HEARTBEAT);
        h.expect(ApiKey::Heartbeat);
        assert_eq!(
            h.member.poll_timeout(),
            Some(at(SESSION)),
            "heartbeat in flight"
        );
        h.heartbeat_response(None);
        assert_eq!(h.member.poll_timeout(), Some(at(ms(5_000))));
        h.now = at(ms(4_999));
        assert!(h.poll().is_none());
        h.now = at(ms(5_000));
        match protocol {
            RebalanceProtocol::Cooperative => {
                // Rejoins at once, keeping (holding) its task.
                let RequestKind::JoinGroup(join) = h.expect(ApiKey::JoinGroup) else {
                    unreachable!()
                };
                let sub = protocol::decode_subscription(&join.protocols[0].metadata).unwrap();
                assert_eq!(sub.held_tasks, vec![t(0, 0)]);
                assert_eq!(sub.generation, 5);
                assert_eq!(h.events(), vec![]);
            }
            RebalanceProtocol::Eager => {
                // As at any eager rebalance: revoke first, then rejoin.
                assert!(h.poll().is_none());
                assert_eq!(
                    h.events(),
                    vec![GroupEvent::Revoke {
                        tasks: vec![t(0, 0)]
                    }]
                );
                h.member.revoke_done(h.now);
                h.expect(ApiKey::JoinGroup);
            }
        }
        assert_eq!(h.member.followup_at(), None);
    }
}

#[test]
fn a_new_generation_cancels_the_followup() {
    let mut h = stable_with_followup(RebalanceProtocol::Cooperative, &[t(0, 0)], Some(ms(5_000)));
    // Another member starts a rebalance first.
    h.now = at(HEARTBEAT);
    h.expect(ApiKey::Heartbeat);
    h.heartbeat_response(Some(ResponseError::RebalanceInProgress));
    h.expect(ApiKey::JoinGroup);
    h.respond(
        ApiKey::JoinGroup,
        JoinGroupResponse::default()
            .with_generation_id(6)
            .with_protocol_name(Some(s(protocol::COOPERATIVE_PROTOCOL_NAME)))
            .with_leader(s("the-leader"))
            .with_member_id(s("m-1"))
            .into(),
    )
    .unwrap();
    assert_eq!(
        h.member.followup_at(),
        None,
        "cancelled by the JoinGroup answer"
    );
    h.expect(ApiKey::SyncGroup);
    h.respond(ApiKey::SyncGroup, synced_with(&[t(0, 0)], &[], None))
        .unwrap();
    h.events();
    // Past the old deadline: only heartbeats.
    h.now = at(ms(6_000));
    h.expect(ApiKey::Heartbeat);
    h.heartbeat_response(None);
    h.now = at(ms(9_000));
    h.expect(ApiKey::Heartbeat);
    assert_eq!(h.member.followup_at(), None);
}

#[test]
fn no_followup_while_a_revoke_is_pending_the_revoke_rejoins_instead() {
    let mut h = stable_with_followup(RebalanceProtocol::Cooperative, &[t(0, 0), t(0, 1)], None);
    // Generation 6 revokes 0_1 and asks for a follow-up after 1 s.
    h.now = at(HEARTBEAT);
    h.expect(ApiKey::Heartbeat);
    h.heartbeat_response(Some(ResponseError::RebalanceInProgress));
    h.expect(ApiKey::JoinGroup);
    h.respond(
        ApiKey::JoinGroup,
        JoinGroupResponse::default()
            .with_generation_id(6)
            .with_protocol_name(Some(s(protocol::COOPERATIVE_PROTOCOL_NAME)))
            .with_leader(s("the-leader"))
            .with_member_id(s("m-1"))
            .into(),
    )
    .unwrap();
    h.expect(ApiKey::SyncGroup);
    h.respond(
        ApiKey::SyncGroup,
        synced_with(&[t(0, 0)], &[t(0, 1)], Some(ms(1_000))),
    )
    .unwrap();
    let events = h.events();
    assert!(
        matches!(events.as_slice(), [GroupEvent::Assigned { revoked, standbys, .. }]
            if revoked == &[t(0, 1)] && standbys == &[t(0, 1)]),
        "{events:?}"
    );
    // The engine is still revoking when the follow-up is due: nothing, no timeout for it.
    h.now += ms(2_000);
    assert!(h.poll().is_none());
    assert!(h.member.poll_timeout().is_some_and(|t| t > h.now));
    // Revoked: one JoinGroup, the revoke's follow-up rebalance.
    h.member.revoke_done(h.now);
    let RequestKind::JoinGroup(join) = h.expect(ApiKey::JoinGroup) else {
        unreachable!()
    };
    let sub = protocol::decode_subscription(&join.protocols[0].metadata).unwrap();
    assert_eq!(sub.held_tasks, vec![t(0, 0)]);
    assert!(h.poll().is_none());
}

#[test]
fn a_lost_membership_drops_standbys_and_the_followup() {
    let mut h = stable_with_followup(RebalanceProtocol::Cooperative, &[t(0, 0)], Some(ms(5_000)));
    h.now = at(HEARTBEAT);
    h.expect(ApiKey::Heartbeat);
    h.heartbeat_response(Some(ResponseError::UnknownMemberId));
    assert!(matches!(h.events().as_slice(), [GroupEvent::Lost { .. }]));
    assert_eq!(h.member.followup_at(), None);
    assert!(h.member.standbys().is_empty());
}

#[test]
fn the_leader_places_standbys_probes_and_writes_old_layouts_for_older_members() {
    let mut h = Harness::with_config(max_versions(), |c| {
        c.process_id = "p1".into();
        c.num_standby_replicas = 1;
        c.stateful_subtopologies = vec![0];
    });
    // The leader has all four tasks' state and held nothing (a restart).
    h.member
        .set_task_offsets((0..4).map(|p| (t(0, p), 1_000)).collect());
    h.find_coordinator();
    let RequestKind::JoinGroup(join) = h.expect(ApiKey::JoinGroup) else {
        unreachable!()
    };
    let own = join.protocols[0].metadata.clone();
    let aware = protocol::encode_subscription(&Subscription {
        topics: vec!["orders".into(), "payments".into()],
        process_id: "p2".into(),
        state_aware: true,
        ..Subscription::default()
    })
    .unwrap();
    let older = protocol::encode_subscription(&Subscription {
        topics: vec!["orders".into(), "payments".into()],
        generation: -1,
        ..Subscription::default()
    })
    .unwrap();
    let members = [("m-a", own), ("m-b", aware), ("m-c", older)]
        .into_iter()
        .map(|(id, metadata)| {
            JoinGroupResponseMember::default()
                .with_member_id(s(id))
                .with_metadata(metadata)
        })
        .collect();
    h.respond(
        ApiKey::JoinGroup,
        JoinGroupResponse::default()
            .with_generation_id(2)
            .with_protocol_name(Some(s("kstreams")))
            .with_leader(s("m-a"))
            .with_member_id(s("m-a"))
            .with_members(members)
            .into(),
    )
    .unwrap();
    h.events();
    h.member
        .set_partition_counts([("orders".to_owned(), 4), ("payments".to_owned(), 4)]);
    let RequestKind::SyncGroup(sync) = h.expect(ApiKey::SyncGroup) else {
        unreachable!()
    };
    let bytes: BTreeMap<String, Bytes> = sync
        .assignments
        .iter()
        .map(|a| (a.member_id.to_string(), a.assignment.clone()))
        .collect();
    let decoded = |id: &str| protocol::decode_assignment(&bytes[id]).unwrap();
    // Balanced target: m-a 0_0 0_3, m-b 0_1, m-c 0_2. m-b has no state: 0_1 stays on m-a,
    // m-b warms it up and has the other standbys of m-a's tasks; m-c (older, no offsets)
    // gets 0_2 as the target says, and m-a its standby.
    assert_eq!(decoded("m-a").tasks, vec![t(0, 0), t(0, 1), t(0, 3)]);
    assert_eq!(decoded("m-b").tasks, Vec::<TaskId>::new());
    assert_eq!(decoded("m-b").standbys, vec![t(0, 0), t(0, 1), t(0, 3)]);
    assert_eq!(decoded("m-c").tasks, vec![t(0, 2)]);
    // m-a probes; m-c's assignment is the version 1 every kstreams reads.
    assert_eq!(decoded("m-a").followup, Some(Duration::from_secs(600)));
    assert_eq!(decoded("m-a").standbys, vec![t(0, 2)]);
    let user_data = |id: &str| {
        kafka_protocol::messages::ConsumerProtocolAssignment::decode(&mut bytes[id].slice(2..), 3)
            .unwrap()
            .user_data
            .unwrap()
    };
    assert_eq!(
        protocol::decode_task_user_data(&user_data("m-c")).unwrap(),
        vec![t(0, 2)]
    );
    // Its own assignment: standbys, and the probing rebalance scheduled.
    let mine = bytes["m-a"].clone();
    h.respond(
        ApiKey::SyncGroup,
        SyncGroupResponse::default().with_assignment(mine).into(),
    )
    .unwrap();
    assert!(
        matches!(h.events().as_slice(), [GroupEvent::Assigned { standbys, .. }] if standbys == &[t(0, 2)])
    );
    assert_eq!(
        h.member.followup_at(),
        Some(h.now + Duration::from_secs(600))
    );
}

#[test]
fn a_followup_answered_without_a_rebalance_does_not_loop() {
    let mut h = stable_with_followup(RebalanceProtocol::Cooperative, &[t(0, 0)], Some(ms(500)));
    h.now = at(ms(500));
    h.expect(ApiKey::JoinGroup);
    // The coordinator answers with the same generation and the stored assignment.
    h.respond(
        ApiKey::JoinGroup,
        JoinGroupResponse::default()
            .with_generation_id(5)
            .with_protocol_name(Some(s(protocol::COOPERATIVE_PROTOCOL_NAME)))
            .with_leader(s("the-leader"))
            .with_member_id(s("m-1"))
            .into(),
    )
    .unwrap();
    h.expect(ApiKey::SyncGroup);
    h.respond(
        ApiKey::SyncGroup,
        synced_with(&[t(0, 0)], &[], Some(ms(500))),
    )
    .unwrap();
    assert_eq!(h.member.followup_at(), None);
    h.now = at(ms(1_500));
    assert!(h.poll().is_none());
    h.now = at(ms(500)) + HEARTBEAT;
    h.expect(ApiKey::Heartbeat);
}
