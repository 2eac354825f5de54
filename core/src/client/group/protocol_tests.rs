//! Tests of the subscription and assignment bytes.

use super::*;

fn task(s: usize, p: i32) -> TaskId {
    TaskId {
        subtopology: s,
        partition: p,
    }
}

#[test]
fn subscription_round_trip() {
    let sub = Subscription {
        topics: vec!["a".into(), "b".into()],
        owned_tasks: vec![task(0, 1), task(1, 3)],
        owned_partitions: vec![TopicPartition::new("a", 1), TopicPartition::new("b", 3)],
        generation: 7,
        held_tasks: Vec::new(),
        ..Subscription::default()
    };
    let bytes = encode_subscription(&sub).unwrap();
    assert_eq!(&bytes[..2], &SUBSCRIPTION_VERSION.to_be_bytes());
    assert_eq!(decode_subscription(&bytes).unwrap(), sub);
}

#[test]
fn subscription_is_a_standard_consumer_subscription() {
    let sub = Subscription {
        topics: vec!["in".into()],
        owned_tasks: vec![task(2, 0)],
        owned_partitions: vec![TopicPartition::new("in", 0)],
        generation: 3,
        held_tasks: Vec::new(),
        ..Subscription::default()
    };
    let bytes = encode_subscription(&sub).unwrap();
    let mut body = bytes.slice(2..);
    let decoded = ConsumerProtocolSubscription::decode(&mut body, 3).unwrap();
    assert_eq!(decoded.topics, vec![StrBytes::from_static_str("in")]);
    assert_eq!(decoded.generation_id, 3);
    assert_eq!(decoded.owned_partitions.len(), 1);
    assert_eq!(
        decode_task_user_data(decoded.user_data.as_deref().unwrap()).unwrap(),
        vec![task(2, 0)]
    );
}

#[test]
fn assignment_round_trip_and_standard_fields() {
    let a = Assignment {
        tasks: vec![task(0, 0), task(0, 2)],
        partitions: vec![
            TopicPartition::new("x", 0),
            TopicPartition::new("x", 2),
            TopicPartition::new("y", 0),
        ],
        ..Assignment::default()
    };
    let bytes = encode_assignment(&a).unwrap();
    assert_eq!(decode_assignment(&bytes).unwrap(), a);
    let decoded = ConsumerProtocolAssignment::decode(&mut bytes.slice(2..), 3).unwrap();
    assert_eq!(decoded.assigned_partitions.len(), 2);
    assert_eq!(decoded.assigned_partitions[0].partitions, vec![0, 2]);
}

#[test]
fn older_versions_written_by_others_decode() {
    // A v0 subscription (no owned partitions, no generation) with our user data.
    let msg = ConsumerProtocolSubscription::default()
        .with_topics(vec![StrBytes::from_static_str("t")])
        .with_user_data(Some(encode_task_user_data(&[task(1, 1)]).unwrap()));
    let bytes = encode_versioned(&msg, 0).unwrap();
    let sub = decode_subscription(&bytes).unwrap();
    assert_eq!(sub.owned_tasks, vec![task(1, 1)]);
    assert_eq!(sub.generation, -1);
    // A future version is read as the highest we know.
    let mut future = BytesMut::new();
    future.put_i16(9);
    future.extend_from_slice(&encode_subscription(&sub).unwrap()[2..]);
    assert_eq!(
        decode_subscription(&future).unwrap().owned_tasks,
        vec![task(1, 1)]
    );
}

#[test]
fn empty_assignment_bytes_are_an_empty_assignment() {
    assert_eq!(decode_assignment(&[]).unwrap(), Assignment::default());
}

#[test]
fn foreign_and_garbled_user_data_are_typed_errors() {
    // A plain Java consumer's subscription: no user data.
    let msg =
        ConsumerProtocolSubscription::default().with_topics(vec![StrBytes::from_static_str("t")]);
    let bytes = encode_versioned(&msg, 1).unwrap();
    assert_eq!(
        decode_subscription(&bytes),
        Err(ProtocolError::MissingUserData)
    );

    let with = |user_data: &'static [u8]| {
        let msg = ConsumerProtocolSubscription::default()
            .with_user_data(Some(Bytes::from_static(user_data)));
        decode_subscription(&encode_versioned(&msg, 3).unwrap())
    };
    assert_eq!(with(&[9]), Err(ProtocolError::UnknownUserDataVersion(9)));
    assert!(matches!(
        with(&[1, 0, 0]),
        Err(ProtocolError::Truncated { .. })
    ));
    assert!(matches!(
        with(&[1, 0x7f, 0xff, 0xff, 0xff]),
        Err(ProtocolError::InvalidLength { .. })
    ));
    assert!(matches!(
        with(&[1, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]),
        Err(ProtocolError::InvalidTaskId { .. })
    ));
    assert_eq!(
        with(&[1, 0, 0, 0, 0, 42]),
        Err(ProtocolError::TrailingBytes(1))
    );
}

#[test]
fn garbage_never_panics_nor_allocates_by_untrusted_lengths() {
    // Huge array lengths right after the version.
    assert!(matches!(
        decode_subscription(&[0, 3, 0x7f, 0xff, 0xff, 0xff]),
        Err(ProtocolError::InvalidLength { .. })
    ));
    assert!(matches!(
        decode_assignment(&[0, 0, 0x7f, 0xff, 0xff, 0xff]),
        Err(ProtocolError::InvalidLength { .. })
    ));
    assert_eq!(
        decode_subscription(&[0xff, 0xff]),
        Err(ProtocolError::InvalidVersion(-1))
    );
    assert!(matches!(
        decode_subscription(&[1]),
        Err(ProtocolError::Truncated { .. })
    ));
    // Every prefix of a valid message fails cleanly.
    let bytes = encode_subscription(&Subscription {
        topics: vec!["topic".into()],
        owned_tasks: vec![task(0, 0)],
        owned_partitions: vec![TopicPartition::new("topic", 0)],
        generation: 1,
        held_tasks: vec![task(0, 0)],
        ..Subscription::default()
    })
    .unwrap();
    for cut in 0..bytes.len() {
        assert!(decode_subscription(&bytes[..cut]).is_err(), "prefix {cut}");
    }
    let bytes = encode_assignment(&Assignment {
        tasks: vec![task(0, 0)],
        partitions: vec![TopicPartition::new("topic", 0)],
        ..Assignment::default()
    })
    .unwrap();
    for cut in 1..bytes.len() {
        assert!(decode_assignment(&bytes[..cut]).is_err(), "prefix {cut}");
    }
}

#[test]
fn held_tasks_travel_in_user_data_version_2_only_when_there_are_some() {
    let mut sub = Subscription {
        topics: vec!["a".into()],
        owned_tasks: vec![task(0, 1), task(0, 2)],
        owned_partitions: vec![TopicPartition::new("a", 1), TopicPartition::new("a", 2)],
        generation: 4,
        held_tasks: Vec::new(),
        ..Subscription::default()
    };
    let user_data = |sub: &Subscription| {
        let bytes = encode_subscription(sub).unwrap();
        ConsumerProtocolSubscription::decode(&mut bytes.slice(2..), 3)
            .unwrap()
            .user_data
            .unwrap()
    };
    // Nothing held: version 1, as an older kstreams writes and reads it.
    assert_eq!(user_data(&sub)[0], USER_DATA_VERSION);
    assert_eq!(
        decode_task_user_data(&user_data(&sub)).unwrap(),
        sub.owned_tasks
    );
    sub.held_tasks = vec![task(0, 2)];
    let bytes = encode_subscription(&sub).unwrap();
    assert_eq!(decode_subscription(&bytes).unwrap(), sub);
    assert_eq!(user_data(&sub)[0], USER_DATA_VERSION_HELD);
    // A reader of version 1 only refuses it (an older leader: the member owned nothing).
    assert_eq!(
        decode_task_user_data(&user_data(&sub)),
        Err(ProtocolError::UnknownUserDataVersion(
            USER_DATA_VERSION_HELD
        ))
    );
    // Garbled held counts are typed errors.
    let with = |user_data: &'static [u8]| {
        let msg = ConsumerProtocolSubscription::default()
            .with_user_data(Some(Bytes::from_static(user_data)));
        decode_subscription(&encode_versioned(&msg, 3).unwrap())
    };
    assert!(matches!(
        with(&[2, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff]),
        Err(ProtocolError::InvalidLength { offset: 5, .. })
    ));
    assert!(matches!(
        with(&[2, 0, 0, 0, 0]),
        Err(ProtocolError::Truncated { .. })
    ));
}

fn offsets(entries: &[(TaskId, i64)]) -> std::collections::BTreeMap<TaskId, i64> {
    entries.iter().copied().collect()
}

#[test]
fn state_aware_subscriptions_carry_process_and_offsets_in_version_3() {
    let sub = Subscription {
        topics: vec!["a".into()],
        owned_tasks: vec![task(0, 1)],
        owned_partitions: vec![TopicPartition::new("a", 1)],
        generation: 4,
        held_tasks: vec![task(0, 1)],
        process_id: "proc-ü-1".into(),
        task_offsets: offsets(&[(task(0, 1), 1_234), (task(1, 0), 0), (task(2, 7), i64::MAX)]),
        state_aware: true,
    };
    let bytes = encode_subscription(&sub).unwrap();
    assert_eq!(decode_subscription(&bytes).unwrap(), sub);
    let user_data = ConsumerProtocolSubscription::decode(&mut bytes.slice(2..), 3)
        .unwrap()
        .user_data
        .unwrap();
    assert_eq!(user_data[0], USER_DATA_VERSION_STATE);
    // An older kstreams refuses it (and then treats the member as owning nothing).
    assert_eq!(
        decode_task_user_data(&user_data),
        Err(ProtocolError::UnknownUserDataVersion(
            USER_DATA_VERSION_STATE
        ))
    );
    // Nothing held, no process, no offsets: still version 3 (it says "reads standbys").
    let bare = Subscription {
        state_aware: true,
        ..Subscription::default()
    };
    let bytes = encode_subscription(&bare).unwrap();
    assert_eq!(decode_subscription(&bytes).unwrap(), bare);
    // The older layouts cannot carry them.
    let legacy = Subscription {
        process_id: "p".into(),
        ..Subscription::default()
    };
    assert_eq!(
        encode_subscription(&legacy),
        Err(ProtocolError::NotInUserDataVersion(USER_DATA_VERSION))
    );
    let legacy = Subscription {
        held_tasks: vec![task(0, 0)],
        task_offsets: offsets(&[(task(0, 0), 1)]),
        ..Subscription::default()
    };
    assert_eq!(
        encode_subscription(&legacy),
        Err(ProtocolError::NotInUserDataVersion(USER_DATA_VERSION_HELD))
    );
    let negative = Subscription {
        task_offsets: offsets(&[(task(0, 0), -1)]),
        state_aware: true,
        ..Subscription::default()
    };
    assert!(matches!(
        encode_subscription(&negative),
        Err(ProtocolError::InvalidOffsetSum { offset_sum: -1, .. })
    ));
}

#[test]
fn garbled_version_3_user_data_are_typed_errors() {
    let with = |user_data: Vec<u8>| decode_subscription_user_data(&user_data);
    // version, no tasks, no held, then the process string.
    let head = |rest: &[u8]| {
        let mut v = vec![3, 0, 0, 0, 0, 0, 0, 0, 0];
        v.extend_from_slice(rest);
        v
    };
    let entry = |sub: i32, p: i32, sum: i64| {
        let mut v = sub.to_be_bytes().to_vec();
        v.extend_from_slice(&p.to_be_bytes());
        v.extend_from_slice(&sum.to_be_bytes());
        v
    };
    let valid = {
        let mut v = head(&[0, 1, b'p', 0, 0, 0, 1]);
        v.extend(entry(0, 0, 5));
        v
    };
    assert_eq!(
        with(valid.clone()).unwrap(),
        SubscriptionUserData {
            process_id: "p".into(),
            offsets: offsets(&[(task(0, 0), 5)]),
            state_aware: true,
            ..SubscriptionUserData::default()
        }
    );
    for cut in 0..valid.len() {
        assert!(with(valid[..cut].to_vec()).is_err(), "prefix {cut}");
    }
    // Negative and oversized string lengths, invalid UTF-8.
    assert!(matches!(
        with(head(&[0xff, 0xff])),
        Err(ProtocolError::InvalidLength { offset: 9, .. })
    ));
    assert!(matches!(
        with(head(&[0x7f, 0xff, b'p'])),
        Err(ProtocolError::InvalidLength { offset: 9, .. })
    ));
    assert_eq!(
        with(head(&[0, 1, 0xff, 0, 0, 0, 0])),
        Err(ProtocolError::InvalidUtf8 { offset: 9 })
    );
    // Huge offset counts never allocate; negative sums, bad ids and duplicates are refused.
    assert!(matches!(
        with(head(&[0, 0, 0x7f, 0xff, 0xff, 0xff])),
        Err(ProtocolError::InvalidLength { offset: 11, .. })
    ));
    assert!(matches!(
        with(head(&[0, 0, 0xff, 0xff, 0xff, 0xff])),
        Err(ProtocolError::InvalidLength { offset: 11, .. })
    ));
    let mut negative = head(&[0, 0, 0, 0, 0, 1]);
    negative.extend(entry(0, 0, -5));
    assert_eq!(
        with(negative),
        Err(ProtocolError::InvalidOffsetSum {
            task: task(0, 0),
            offset_sum: -5
        })
    );
    let mut bad_id = head(&[0, 0, 0, 0, 0, 1]);
    bad_id.extend(entry(-1, 0, 5));
    assert!(matches!(
        with(bad_id),
        Err(ProtocolError::InvalidTaskId { .. })
    ));
    let mut twice = head(&[0, 0, 0, 0, 0, 2]);
    twice.extend(entry(1, 2, 5));
    twice.extend(entry(1, 2, 6));
    assert_eq!(with(twice), Err(ProtocolError::DuplicateTask(task(1, 2))));
    let mut trailing = valid;
    trailing.push(0);
    assert_eq!(with(trailing), Err(ProtocolError::TrailingBytes(1)));
    assert_eq!(with(vec![4]), Err(ProtocolError::UnknownUserDataVersion(4)));
}

#[test]
fn assignments_with_standbys_or_a_followup_are_version_2_else_version_1() {
    let plain = Assignment {
        tasks: vec![task(0, 0)],
        partitions: vec![TopicPartition::new("x", 0)],
        ..Assignment::default()
    };
    let user_data = |a: &Assignment| {
        let bytes = encode_assignment(a).unwrap();
        ConsumerProtocolAssignment::decode(&mut bytes.slice(2..), 3)
            .unwrap()
            .user_data
            .unwrap()
    };
    // What every kstreams reads.
    assert_eq!(
        decode_task_user_data(&user_data(&plain)).unwrap(),
        plain.tasks
    );
    for (standbys, followup) in [
        (vec![task(1, 0), task(1, 3)], None),
        (Vec::new(), Some(Duration::ZERO)),
        (vec![task(2, 2)], Some(Duration::from_secs(600))),
    ] {
        let a = Assignment {
            standbys,
            followup,
            ..plain.clone()
        };
        let bytes = encode_assignment(&a).unwrap();
        assert_eq!(decode_assignment(&bytes).unwrap(), a);
        assert_eq!(user_data(&a)[0], ASSIGNMENT_USER_DATA_VERSION_STANDBYS);
        for cut in 1..bytes.len() {
            assert!(decode_assignment(&bytes[..cut]).is_err(), "prefix {cut}");
        }
    }
    // A delay past i32::MAX ms saturates.
    let long = Assignment {
        followup: Some(Duration::MAX),
        ..plain
    };
    assert_eq!(
        decode_assignment(&encode_assignment(&long).unwrap())
            .unwrap()
            .followup,
        Some(Duration::from_millis(i32::MAX as u64))
    );
}

#[test]
fn garbled_version_2_assignments_are_typed_errors() {
    let with = |user_data: &[u8]| decode_assignment_user_data(user_data);
    assert_eq!(
        with(&[2, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xfe]),
        Err(ProtocolError::InvalidFollowup(-2))
    );
    assert_eq!(
        with(&[2, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]).unwrap(),
        AssignmentUserData::default()
    );
    assert!(matches!(
        with(&[2, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff]),
        Err(ProtocolError::InvalidLength { offset: 5, .. })
    ));
    assert_eq!(
        with(&[2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 9]),
        Err(ProtocolError::TrailingBytes(1))
    );
    // The subscription's version 3 is no assignment layout.
    assert_eq!(with(&[3]), Err(ProtocolError::UnknownUserDataVersion(3)));
}

proptest::proptest! {
    #[test]
    fn subscriptions_and_assignments_round_trip(
        owned in proptest::collection::vec((0usize..50, 0i32..1000), 0..20),
        held in proptest::collection::vec((0usize..50, 0i32..1000), 0..20),
        process_id in "[a-z0-9-]{0,40}",
        sums in proptest::collection::btree_map((0usize..50, 0i32..1000), 0i64..i64::MAX, 0..20),
        followup in proptest::option::of(0u64..(i32::MAX as u64)),
        garbage in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
    ) {
        let ids = |v: &[(usize, i32)]| v.iter().map(|&(s, p)| task(s, p)).collect::<Vec<_>>();
        let sub = Subscription {
            topics: vec!["t".into()],
            owned_tasks: ids(&owned),
            held_tasks: ids(&held),
            generation: 3,
            process_id,
            task_offsets: sums.iter().map(|(&(s, p), &o)| (task(s, p), o)).collect(),
            state_aware: true,
            ..Subscription::default()
        };
        let bytes = encode_subscription(&sub).unwrap();
        proptest::prop_assert_eq!(decode_subscription(&bytes).unwrap(), sub);
        let a = Assignment {
            tasks: ids(&owned),
            standbys: ids(&held),
            followup: followup.map(Duration::from_millis),
            ..Assignment::default()
        };
        let bytes = encode_assignment(&a).unwrap();
        proptest::prop_assert_eq!(decode_assignment(&bytes).unwrap(), a);
        // Garbage never panics.
        let _ = decode_subscription(&garbage);
        let _ = decode_assignment(&garbage);
        let _ = decode_subscription_user_data(&garbage);
        let _ = decode_assignment_user_data(&garbage);
        for first in 1..=3u8 {
            let mut tagged = garbage.clone();
            tagged.insert(0, first);
            let _ = decode_subscription_user_data(&tagged);
            let _ = decode_assignment_user_data(&tagged);
        }
    }
}
