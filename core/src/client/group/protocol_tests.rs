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
    })
    .unwrap();
    for cut in 0..bytes.len() {
        assert!(decode_subscription(&bytes[..cut]).is_err(), "prefix {cut}");
    }
    let bytes = encode_assignment(&Assignment {
        tasks: vec![task(0, 0)],
        partitions: vec![TopicPartition::new("topic", 0)],
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
