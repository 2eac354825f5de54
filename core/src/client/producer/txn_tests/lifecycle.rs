//! Transactions that succeed: initialisation, partitions added, commits, empty and offsets-only
//! transactions.

use super::*;

#[test]
fn init_finds_the_transaction_coordinator_then_asks_for_an_epoch() {
    let mut producer = fresh();
    assert_eq!(
        producer.transaction_state(),
        Some(TransactionState::Initializing)
    );
    initialize(&mut producer, clock(0));
    assert_eq!(
        events(&mut producer),
        vec![ProducerEvent::TransactionCoordinatorFound {
            id: COORDINATOR,
            host: "localhost".to_owned(),
            port: 9092
        }]
    );
    assert_eq!(
        producer.identity(),
        Some(ProducerIdentity {
            producer_id: PID,
            producer_epoch: 0
        })
    );
    assert_eq!(producer.transaction_state(), Some(TransactionState::Ready));
    assert_eq!(producer.transaction_coordinator(), Some(COORDINATOR));
    assert_eq!(poll(&mut producer, clock(0)), None, "nothing to do");
}

#[test]
fn coordinator_errors_are_retried_after_a_backoff() {
    let mut producer = fresh();
    assert!(poll(&mut producer, clock(0)).is_some());
    producer
        .handle_response(
            0,
            find_coordinator_response(-1, Some(ResponseError::CoordinatorNotAvailable)),
            clock(0),
        )
        .unwrap();
    assert_eq!(poll(&mut producer, clock(50)), None);
    assert_eq!(producer.poll_timeout(), Some(clock(100)));
    let find = poll(&mut producer, clock(100)).unwrap();
    assert!(matches!(find.request, RequestKind::FindCoordinator(_)));
    producer
        .handle_response(0, find_coordinator_response(COORDINATOR, None), clock(100))
        .unwrap();
    // The coordinator is still loading the transaction log: InitProducerId again, same
    // coordinator.
    let init = poll(&mut producer, clock(100)).unwrap();
    assert!(matches!(init.request, RequestKind::InitProducerId(_)));
    producer
        .handle_response(
            COORDINATOR,
            init_response(0, Some(ResponseError::CoordinatorLoadInProgress)),
            clock(100),
        )
        .unwrap();
    assert_eq!(poll(&mut producer, clock(150)), None);
    let init = poll(&mut producer, clock(200)).unwrap();
    assert_eq!(init.target, Target::Broker(COORDINATOR));
    // It moved: found again, after the backoff.
    producer
        .handle_response(
            COORDINATOR,
            init_response(0, Some(ResponseError::NotCoordinator)),
            clock(200),
        )
        .unwrap();
    assert_eq!(poll(&mut producer, clock(250)), None);
    let find = poll(&mut producer, clock(300)).unwrap();
    assert!(matches!(find.request, RequestKind::FindCoordinator(_)));
    producer
        .handle_response(0, find_coordinator_response(3, None), clock(300))
        .unwrap();
    let init = poll(&mut producer, clock(300)).unwrap();
    assert_eq!(init.target, Target::Broker(3));
    producer
        .handle_response(3, init_response(0, None), clock(300))
        .unwrap();
    assert_eq!(producer.transaction_state(), Some(TransactionState::Ready));
}

#[test]
fn partitions_are_added_once_per_transaction_before_anything_is_produced() {
    let mut producer = ready();
    producer
        .send_batch(1, vec![at(0, "a"), at(1, "b"), at(2, "c")], clock(0))
        .unwrap();
    assert_eq!(
        producer.transaction_state(),
        Some(TransactionState::InTransaction)
    );
    producer.flush();
    // Batches are ready, but their partitions are not in the transaction yet.
    let add = poll(&mut producer, clock(0)).unwrap();
    assert_eq!(added_partitions(&add), vec![0, 1, 2]);
    assert_eq!(
        poll(&mut producer, clock(0)),
        None,
        "no Produce before the answer"
    );
    producer
        .send_batch(2, vec![at(0, "d"), at(3, "e")], clock(0))
        .unwrap();
    producer.flush();
    assert_eq!(
        poll(&mut producer, clock(0)),
        None,
        "one transactional request at a time"
    );
    producer
        .handle_response(
            COORDINATOR,
            add_partitions_response(&[(0, None), (1, None), (2, None)]),
            clock(0),
        )
        .unwrap();
    // Partition 3 is new: added first; partition 0 is in already.
    let add = poll(&mut producer, clock(0)).unwrap();
    assert_eq!(added_partitions(&add), vec![3]);
    let sent: Vec<_> = std::iter::from_fn(|| poll(&mut producer, clock(0)))
        .map(|out| produced(&out))
        .collect();
    let partitions: Vec<Vec<i32>> = sent
        .iter()
        .map(|(_, parts)| parts.iter().map(|(p, _)| *p).collect())
        .collect();
    // Partition 0's second batch follows its first; not partition 3 yet.
    assert_eq!(partitions, vec![vec![0, 2], vec![1], vec![0]]);
    producer
        .handle_response(COORDINATOR, add_partitions_response(&[(3, None)]), clock(0))
        .unwrap();
    let (broker, parts) = produced(&poll(&mut producer, clock(0)).unwrap());
    assert_eq!(broker, 2);
    assert_eq!(parts.iter().map(|(p, _)| *p).collect::<Vec<_>>(), vec![3]);
    let set = &parts[0].1;
    assert_eq!(
        (set.records[0].producer_id, set.records[0].producer_epoch),
        (PID, 0)
    );
}

#[test]
fn commit_sends_offsets_and_end_txn_only_after_every_ack() {
    let mut producer = ready();
    let in_flight = produce_in_transaction(&mut producer, 1, &[0, 1]);
    assert_eq!(in_flight.len(), 2);
    let offsets = BTreeMap::from([
        (TopicPartition::new("in", 0), 42),
        (TopicPartition::new("in", 3), 7),
    ]);
    producer
        .commit_transaction(offsets.clone(), group())
        .unwrap();
    assert_eq!(
        producer.transaction_state(),
        Some(TransactionState::Committing)
    );
    let refused = producer
        .send_batch(2, vec![at(0, "late")], clock(0))
        .unwrap_err();
    assert_eq!(refused.error, ProducerError::TransactionEnding);
    assert_eq!(
        poll(&mut producer, clock(0)),
        None,
        "records not acknowledged yet"
    );
    ack_all(&mut producer, &in_flight[..1]);
    assert_eq!(
        poll(&mut producer, clock(0)),
        None,
        "one record not acknowledged yet"
    );
    ack_all(&mut producer, &in_flight[1..]);

    let add_offsets = poll(&mut producer, clock(0)).unwrap();
    assert_eq!(add_offsets.target, Target::Broker(COORDINATOR));
    let RequestKind::AddOffsetsToTxn(request) = &add_offsets.request else {
        panic!("expected AddOffsetsToTxn, got {add_offsets:?}");
    };
    assert_eq!(request.group_id.0.as_str(), "app");
    assert_eq!(request.producer_id.0, PID);
    producer
        .handle_response(COORDINATOR, add_offsets_response(None), clock(0))
        .unwrap();

    let commit = poll(&mut producer, clock(0)).unwrap();
    assert_eq!(commit.target, Target::Coordinator, "the group coordinator");
    assert_eq!(
        commit.version, 4,
        "transaction v1 caps TxnOffsetCommit at v4"
    );
    let RequestKind::TxnOffsetCommit(request) = &commit.request else {
        panic!("expected TxnOffsetCommit, got {commit:?}");
    };
    assert_eq!(request.transactional_id.0.as_str(), TXN_ID);
    assert_eq!(request.group_id.0.as_str(), "app");
    assert_eq!(request.generation_id, 5);
    assert_eq!(request.member_id.as_str(), "member-1");
    assert_eq!(
        request.group_instance_id.as_ref().map(|i| i.as_str()),
        Some("instance-1")
    );
    let sent: Vec<(i32, i64)> = request
        .topics
        .iter()
        .flat_map(|t| {
            assert_eq!(t.name.0.as_str(), "in");
            t.partitions
                .iter()
                .map(|p| (p.partition_index, p.committed_offset))
        })
        .collect();
    assert_eq!(sent, vec![(0, 42), (3, 7)]);
    // One partition is retried (the coordinator is loading), the other is stored.
    producer
        .handle_response(
            1,
            txn_offset_commit_response(
                "in",
                &[
                    (0, None),
                    (3, Some(ResponseError::CoordinatorLoadInProgress)),
                ],
            ),
            clock(0),
        )
        .unwrap();
    assert_eq!(poll(&mut producer, clock(50)), None, "backoff");
    let again = poll(&mut producer, clock(100)).unwrap();
    let RequestKind::TxnOffsetCommit(request) = &again.request else {
        panic!("expected TxnOffsetCommit, got {again:?}");
    };
    assert_eq!(request.topics[0].partitions.len(), 1);
    assert_eq!(request.topics[0].partitions[0].partition_index, 3);
    producer
        .handle_response(
            1,
            txn_offset_commit_response("in", &[(3, None)]),
            clock(100),
        )
        .unwrap();
    assert!(
        events(&mut producer)
            .iter()
            .all(|e| matches!(e, ProducerEvent::Acked { .. }))
    );

    let end = poll(&mut producer, clock(100)).unwrap();
    assert!(end_txn(&end), "EndTxn(commit)");
    assert_eq!(
        producer.abort_transaction(),
        Err(ProducerError::InvalidTransactionState {
            operation: "abort_transaction",
            state: TransactionState::Committing
        }),
        "no abort once EndTxn(commit) was sent"
    );
    producer
        .handle_response(COORDINATOR, end_txn_response(None), clock(100))
        .unwrap();
    assert_eq!(
        events(&mut producer),
        vec![ProducerEvent::TransactionCommitted { offsets }]
    );
    assert_eq!(producer.transaction_state(), Some(TransactionState::Ready));
    // The next transaction adds partition 0 again.
    producer
        .send_batch(2, vec![at(0, "next")], clock(100))
        .unwrap();
    let add = poll(&mut producer, clock(100)).unwrap();
    assert_eq!(added_partitions(&add), vec![0]);
}

#[test]
fn an_empty_transaction_commits_without_a_request() {
    let mut producer = ready();
    producer
        .commit_transaction(BTreeMap::new(), group())
        .unwrap();
    assert_eq!(
        events(&mut producer),
        vec![ProducerEvent::TransactionCommitted {
            offsets: BTreeMap::new()
        }]
    );
    assert_eq!(poll(&mut producer, clock(0)), None);
    // Also before the producer is initialized.
    let mut producer = fresh();
    producer
        .commit_transaction(BTreeMap::new(), group())
        .unwrap();
    assert!(matches!(
        events(&mut producer).as_slice(),
        [ProducerEvent::TransactionCommitted { .. }]
    ));
    // And an abort with nothing open.
    let mut producer = ready();
    producer.abort_transaction().unwrap();
    assert_eq!(
        events(&mut producer),
        vec![ProducerEvent::TransactionAborted]
    );
    assert_eq!(poll(&mut producer, clock(0)), None);
}

#[test]
fn offsets_alone_are_committed_in_a_transaction() {
    let mut producer = ready();
    let offsets = BTreeMap::from([(TopicPartition::new("in", 1), 10)]);
    producer
        .commit_transaction(offsets.clone(), group())
        .unwrap();
    let out = poll(&mut producer, clock(0)).unwrap();
    assert!(matches!(out.request, RequestKind::AddOffsetsToTxn(_)));
    producer
        .handle_response(COORDINATOR, add_offsets_response(None), clock(0))
        .unwrap();
    let out = poll(&mut producer, clock(0)).unwrap();
    assert!(matches!(out.request, RequestKind::TxnOffsetCommit(_)));
    producer
        .handle_response(1, txn_offset_commit_response("in", &[(1, None)]), clock(0))
        .unwrap();
    let out = poll(&mut producer, clock(0)).unwrap();
    assert!(end_txn(&out));
    producer
        .handle_response(COORDINATOR, end_txn_response(None), clock(0))
        .unwrap();
    assert_eq!(
        events(&mut producer),
        vec![ProducerEvent::TransactionCommitted { offsets }]
    );
}
