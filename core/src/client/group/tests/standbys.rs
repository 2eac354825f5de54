//! Standbys and state-aware assignment at the member: the process id and task offsets in
//! every subscription, the standbys of an assignment, and the follow-up rejoin an assignment
//! asks for.

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
