//! A fenced producer starting over ([`Producer::restart_after_fencing`]): a plain
//! InitProducerId for a new epoch, a new transaction, and the fenced incarnation's answers
//! dropped.

use super::*;

/// The InitProducerId a restart sends: no identity named (the fenced one is not ours).
fn plain_init(producer: &mut Producer<u32>) {
    let init = poll(producer, clock(0)).expect("InitProducerId");
    assert_eq!(init.target, Target::Broker(COORDINATOR), "coordinator kept");
    let RequestKind::InitProducerId(request) = &init.request else {
        panic!("expected InitProducerId, got {init:?}");
    };
    assert_eq!(
        (request.producer_id.0, request.producer_epoch),
        (-1, -1),
        "a fresh initialisation, as a new instance's"
    );
}

#[test]
fn a_producer_fenced_on_produce_starts_over_with_a_new_epoch() {
    let mut producer = ready();
    // Partition 0 at broker 1, partition 1 at broker 2.
    let sent = produce_in_transaction(&mut producer, 1, &[0, 1]);
    // The coordinator timed the transaction out and bumped the epoch.
    let (broker, _) = produced(&sent[0]);
    producer
        .handle_response(
            broker,
            produce_response(&[(0, Some(ResponseError::InvalidProducerEpoch))]),
            clock(0),
        )
        .unwrap();
    assert_eq!(producer.transaction_state(), Some(TransactionState::Fatal));
    events(&mut producer);

    producer.restart_after_fencing().unwrap();
    assert_eq!(
        producer.transaction_state(),
        Some(TransactionState::Initializing)
    );
    assert!(producer.is_flushed(), "every batch failed with the fencing");
    assert_eq!(producer.unacked(&1), 0);
    plain_init(&mut producer);
    producer
        .handle_response(COORDINATOR, init_response(1, None), clock(0))
        .unwrap();
    assert_eq!(producer.transaction_state(), Some(TransactionState::Ready));

    // The other broker answers the fenced incarnation's batch: nothing of it remains.
    let (other, _) = produced(&sent[1]);
    producer
        .handle_response(
            other,
            produce_response(&[(1, Some(ResponseError::InvalidProducerEpoch))]),
            clock(0),
        )
        .unwrap();
    assert_eq!(events(&mut producer), vec![]);
    assert_eq!(producer.transaction_state(), Some(TransactionState::Ready));

    // A new transaction: its partitions added again, its batches under the new epoch from
    // sequence 0.
    let sent = produce_in_transaction(&mut producer, 2, &[0]);
    let (_, parts) = produced(&sent[0]);
    let record = &parts[0].1.records[0];
    assert_eq!(
        (record.producer_id, record.producer_epoch, record.sequence),
        (PID, 1, 0)
    );
    ack_all(&mut producer, &sent);
    producer
        .commit_transaction(BTreeMap::new(), group())
        .unwrap();
    let end = poll(&mut producer, clock(0)).expect("EndTxn");
    assert!(end_txn(&end));
    producer
        .handle_response(COORDINATOR, end_txn_response(None), clock(0))
        .unwrap();
    assert!(
        events(&mut producer).contains(&ProducerEvent::TransactionCommitted {
            offsets: BTreeMap::new()
        })
    );
}

#[test]
fn the_fenced_incarnations_request_in_flight_is_answered_before_a_new_epoch() {
    let mut producer = ready();
    let sent = produce_in_transaction(&mut producer, 1, &[0]);
    // Partition 2 joins the transaction: its AddPartitionsToTxn is in flight.
    producer.send_batch(1, vec![at(2, "w")], clock(0)).unwrap();
    let add = poll(&mut producer, clock(0)).expect("AddPartitionsToTxn");
    assert_eq!(added_partitions(&add), vec![2]);
    let (broker, _) = produced(&sent[0]);
    producer
        .handle_response(
            broker,
            produce_response(&[(0, Some(ResponseError::InvalidProducerEpoch))]),
            clock(0),
        )
        .unwrap();
    events(&mut producer);
    producer.restart_after_fencing().unwrap();
    assert_eq!(poll(&mut producer, clock(0)), None, "one request at a time");
    // Its answer (fenced too) is dropped: it fences nothing.
    producer
        .handle_response(
            COORDINATOR,
            add_partitions_response(&[(2, Some(ResponseError::ProducerFenced))]),
            clock(0),
        )
        .unwrap();
    assert_eq!(events(&mut producer), vec![]);
    plain_init(&mut producer);

    // The same with an answer that never comes.
    let mut producer = ready();
    let sent = produce_in_transaction(&mut producer, 1, &[0]);
    producer.send_batch(1, vec![at(2, "w")], clock(0)).unwrap();
    poll(&mut producer, clock(0)).expect("AddPartitionsToTxn");
    let (broker, _) = produced(&sent[0]);
    producer
        .handle_response(
            broker,
            produce_response(&[(0, Some(ResponseError::ProducerFenced))]),
            clock(0),
        )
        .unwrap();
    producer.restart_after_fencing().unwrap();
    producer.handle_request_failed(
        Target::Broker(COORDINATOR),
        ApiKey::AddPartitionsToTxn,
        clock(0),
    );
    plain_init(&mut producer);
}

#[test]
fn only_a_fencing_is_restarted() {
    let mut producer = ready();
    assert!(matches!(
        producer.restart_after_fencing(),
        Err(ProducerError::InvalidTransactionState {
            state: TransactionState::Ready,
            ..
        })
    ));
    let sent = produce_in_transaction(&mut producer, 1, &[0]);
    let (broker, _) = produced(&sent[0]);
    producer
        .handle_response(
            broker,
            produce_response(&[(0, Some(ResponseError::TransactionalIdAuthorizationFailed))]),
            clock(0),
        )
        .unwrap();
    let error = TransactionError::Broker {
        api: ApiKey::Produce,
        error: ResponseError::TransactionalIdAuthorizationFailed,
    };
    assert!(!error.is_fencing());
    assert_eq!(
        producer.restart_after_fencing(),
        Err(ProducerError::TransactionFatal(error))
    );
    assert_eq!(producer.transaction_state(), Some(TransactionState::Fatal));
}
