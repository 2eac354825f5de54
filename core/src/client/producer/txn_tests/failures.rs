//! Transactions that fail or end early: aborts, fencing, a moving coordinator, brokers
//! without transactions, retries.

use super::*;

#[test]
fn abort_fails_unsent_batches_and_waits_for_the_ones_in_flight() {
    let mut producer = ready();
    // Partitions 0 and 2 (broker 1) are in flight; partition 1's batch is not sent.
    producer
        .send_batch(1, vec![at(0, "a"), at(2, "b")], clock(0))
        .unwrap();
    producer.send_batch(2, vec![at(1, "c")], clock(0)).unwrap();
    producer.flush();
    let add = poll(&mut producer, clock(0)).unwrap();
    assert_eq!(added_partitions(&add), vec![0, 1, 2]);
    producer
        .handle_response(
            COORDINATOR,
            add_partitions_response(&[(0, None), (1, None), (2, None)]),
            clock(0),
        )
        .unwrap();
    let first = poll(&mut producer, clock(0)).unwrap();
    assert_eq!(produced(&first).0, 1);
    producer.abort_transaction().unwrap();
    assert_eq!(
        producer.transaction_state(),
        Some(TransactionState::Aborting)
    );
    assert_eq!(
        events(&mut producer),
        vec![ProducerEvent::Failed {
            owner: 2,
            topic_partition: TopicPartition::new(TOPIC, 1),
            count: 1,
            error: DeliveryError::Aborted
        }]
    );
    assert_eq!(
        poll(&mut producer, clock(0)),
        None,
        "no EndTxn while a Produce is in flight"
    );
    producer
        .handle_response(1, produce_response(&[(0, None), (2, None)]), clock(0))
        .unwrap();
    let end = poll(&mut producer, clock(0)).unwrap();
    assert!(!end_txn(&end), "EndTxn(abort)");
    producer
        .handle_response(COORDINATOR, end_txn_response(None), clock(0))
        .unwrap();
    let outcome: Vec<_> = events(&mut producer)
        .into_iter()
        .filter(|e| !matches!(e, ProducerEvent::Acked { .. }))
        .collect();
    assert_eq!(outcome, vec![ProducerEvent::TransactionAborted]);
    assert_eq!(producer.transaction_state(), Some(TransactionState::Ready));
    assert_eq!(
        producer.identity().map(|i| i.producer_epoch),
        Some(0),
        "nothing sequenced was dropped: same epoch"
    );
    // A new transaction adds its partitions again.
    producer.send_batch(3, vec![at(1, "d")], clock(0)).unwrap();
    let add = poll(&mut producer, clock(0)).unwrap();
    assert_eq!(added_partitions(&add), vec![1]);
}

#[test]
fn a_sequenced_batch_dropped_by_an_abort_makes_a_new_epoch() {
    let mut producer = ready();
    let sent = produce_in_transaction(&mut producer, 1, &[0]);
    producer.abort_transaction().unwrap();
    // The broker could not write it; the abort does not send it again.
    producer
        .handle_response(
            1,
            produce_response(&[(0, Some(ResponseError::NotEnoughReplicas))]),
            clock(0),
        )
        .unwrap();
    assert!(matches!(
        events(&mut producer).as_slice(),
        [ProducerEvent::Failed {
            error: DeliveryError::Aborted,
            ..
        }]
    ));
    assert_eq!(produced(&sent[0]).0, 1);
    let end = poll(&mut producer, clock(200)).unwrap();
    assert!(!end_txn(&end));
    producer
        .handle_response(COORDINATOR, end_txn_response(None), clock(200))
        .unwrap();
    assert_eq!(
        events(&mut producer),
        vec![ProducerEvent::TransactionAborted]
    );
    assert_eq!(
        producer.transaction_state(),
        Some(TransactionState::Initializing)
    );
    // KIP-360: the current identity is named so that the coordinator bumps its epoch.
    let init = poll(&mut producer, clock(200)).unwrap();
    assert_eq!(init.target, Target::Broker(COORDINATOR));
    let RequestKind::InitProducerId(request) = &init.request else {
        panic!("expected InitProducerId, got {init:?}");
    };
    assert_eq!((request.producer_id.0, request.producer_epoch), (PID, 0));
    producer
        .handle_response(COORDINATOR, init_response(1, None), clock(200))
        .unwrap();
    let sent = produce_in_transaction(&mut producer, 2, &[0]);
    let (_, parts) = produced(&sent[0]);
    let record = &parts[0].1.records[0];
    assert_eq!(
        (record.producer_epoch, record.sequence),
        (1, 0),
        "sequences restart under the new epoch"
    );
}

#[test]
fn a_failed_batch_fails_the_transaction_until_it_is_aborted() {
    let mut producer = ready();
    produce_in_transaction(&mut producer, 1, &[0]);
    producer
        .handle_response(
            1,
            produce_response(&[(0, Some(ResponseError::MessageTooLarge))]),
            clock(0),
        )
        .unwrap();
    let error = TransactionError::Delivery(DeliveryError::Broker(ResponseError::MessageTooLarge));
    assert_eq!(
        events(&mut producer),
        vec![
            ProducerEvent::Failed {
                owner: 1,
                topic_partition: TopicPartition::new(TOPIC, 0),
                count: 1,
                error: DeliveryError::Broker(ResponseError::MessageTooLarge)
            },
            ProducerEvent::TransactionFailed {
                error: error.clone()
            }
        ]
    );
    assert_eq!(
        producer.transaction_state(),
        Some(TransactionState::AbortableError)
    );
    let refused = producer
        .send_batch(2, vec![at(1, "x")], clock(0))
        .unwrap_err();
    assert_eq!(
        refused.error,
        ProducerError::TransactionAbortable(error.clone())
    );
    assert_eq!(
        producer.commit_transaction(BTreeMap::new(), group()),
        Err(ProducerError::TransactionAbortable(error))
    );
    producer.abort_transaction().unwrap();
    let end = poll(&mut producer, clock(0)).unwrap();
    assert!(!end_txn(&end));
    producer
        .handle_response(COORDINATOR, end_txn_response(None), clock(0))
        .unwrap();
    assert_eq!(
        events(&mut producer),
        vec![ProducerEvent::TransactionAborted]
    );
    assert_eq!(producer.transaction_state(), Some(TransactionState::Ready));
    producer.send_batch(2, vec![at(1, "x")], clock(0)).unwrap();
}

#[test]
fn a_refused_offset_commit_fails_the_transaction() {
    let mut producer = ready();
    let offsets = BTreeMap::from([(TopicPartition::new("in", 0), 3)]);
    producer.commit_transaction(offsets, group()).unwrap();
    let _add_offsets = poll(&mut producer, clock(0)).unwrap();
    producer
        .handle_response(COORDINATOR, add_offsets_response(None), clock(0))
        .unwrap();
    let _commit = poll(&mut producer, clock(0)).unwrap();
    // The member was kicked out of the group: a zombie must not commit.
    producer
        .handle_response(
            1,
            txn_offset_commit_response("in", &[(0, Some(ResponseError::IllegalGeneration))]),
            clock(0),
        )
        .unwrap();
    assert_eq!(
        events(&mut producer),
        vec![ProducerEvent::TransactionFailed {
            error: TransactionError::OffsetCommit {
                topic_partition: TopicPartition::new("in", 0),
                error: ResponseError::IllegalGeneration
            }
        }]
    );
    producer.abort_transaction().unwrap();
    let end = poll(&mut producer, clock(0)).unwrap();
    assert!(
        !end_txn(&end),
        "the offsets partition is in the transaction: EndTxn(abort)"
    );
}

#[test]
fn a_newer_instance_fences_this_one_on_produce() {
    let mut producer = ready();
    let sent = produce_in_transaction(&mut producer, 1, &[0, 1]);
    // A new instance with the same transactional id called InitProducerId: epoch 1.
    let (broker, _) = produced(&sent[0]);
    producer
        .handle_response(
            broker,
            produce_response(&[
                (0, Some(ResponseError::InvalidProducerEpoch)),
                (2, Some(ResponseError::InvalidProducerEpoch)),
            ]),
            clock(0),
        )
        .unwrap();
    let error = TransactionError::Fenced {
        api: ApiKey::Produce,
        error: ResponseError::InvalidProducerEpoch,
    };
    let evs = events(&mut producer);
    assert_eq!(
        evs.last(),
        Some(&ProducerEvent::Fenced {
            error: error.clone()
        })
    );
    assert!(
        evs.iter().any(|e| matches!(
            e,
            ProducerEvent::Failed {
                owner: 1,
                error: DeliveryError::ProducerFailed(_),
                topic_partition,
                ..
            } if topic_partition.partition == 1
        )),
        "the batch of the other broker fails too: {evs:?}"
    );
    assert!(
        !evs.iter()
            .any(|e| matches!(e, ProducerEvent::TransactionFailed { .. })),
        "fatal, not abortable: {evs:?}"
    );
    assert_eq!(producer.transaction_state(), Some(TransactionState::Fatal));
    assert_eq!(poll(&mut producer, clock(0)), None);
    let refused = producer
        .send_batch(2, vec![at(0, "x")], clock(0))
        .unwrap_err();
    assert_eq!(
        refused.error,
        ProducerError::TransactionFatal(error.clone())
    );
    assert_eq!(
        producer.abort_transaction(),
        Err(ProducerError::TransactionFatal(error))
    );
}

#[test]
fn a_newer_instance_fences_this_one_on_end_txn() {
    let mut producer = ready();
    let sent = produce_in_transaction(&mut producer, 1, &[0]);
    ack_all(&mut producer, &sent);
    producer
        .commit_transaction(BTreeMap::new(), group())
        .unwrap();
    let end = poll(&mut producer, clock(0)).unwrap();
    assert!(end_txn(&end));
    producer
        .handle_response(
            COORDINATOR,
            end_txn_response(Some(ResponseError::ProducerFenced)),
            clock(0),
        )
        .unwrap();
    let evs = events(&mut producer);
    assert_eq!(
        evs.last(),
        Some(&ProducerEvent::Fenced {
            error: TransactionError::Fenced {
                api: ApiKey::EndTxn,
                error: ResponseError::ProducerFenced
            }
        })
    );
    assert_eq!(producer.transaction_state(), Some(TransactionState::Fatal));
}

#[test]
fn the_coordinator_moving_mid_transaction_is_followed() {
    let mut producer = ready();
    producer.send_batch(1, vec![at(0, "a")], clock(0)).unwrap();
    let add = poll(&mut producer, clock(0)).unwrap();
    assert_eq!(added_partitions(&add), vec![0]);
    producer
        .handle_response(
            COORDINATOR,
            add_partitions_response(&[(0, Some(ResponseError::NotCoordinator))]),
            clock(0),
        )
        .unwrap();
    assert_eq!(poll(&mut producer, clock(50)), None);
    let find = poll(&mut producer, clock(100)).unwrap();
    assert!(matches!(find.request, RequestKind::FindCoordinator(_)));
    producer
        .handle_response(0, find_coordinator_response(4, None), clock(100))
        .unwrap();
    let add = poll(&mut producer, clock(100)).unwrap();
    assert_eq!(add.target, Target::Broker(4));
    producer
        .handle_response(4, add_partitions_response(&[(0, None)]), clock(100))
        .unwrap();
    let (_, parts) = produced(&poll(&mut producer, clock(100)).unwrap());
    assert_eq!(parts[0].0, 0);
    producer
        .handle_response(1, produce_response(&[(0, None)]), clock(100))
        .unwrap();
    producer
        .commit_transaction(BTreeMap::new(), group())
        .unwrap();
    let end = poll(&mut producer, clock(100)).unwrap();
    assert_eq!(end.target, Target::Broker(4));
    // No answer: the coordinator is looked for again and the EndTxn sent again (the
    // coordinator answers a repeated EndTxn of a completed commit with no error).
    producer.handle_request_failed(Target::Broker(4), ApiKey::EndTxn, clock(100));
    let find = poll(&mut producer, clock(200)).unwrap();
    assert!(matches!(find.request, RequestKind::FindCoordinator(_)));
    producer
        .handle_response(0, find_coordinator_response(4, None), clock(200))
        .unwrap();
    let end = poll(&mut producer, clock(200)).unwrap();
    let RequestKind::EndTxn(request) = &end.request else {
        panic!("expected EndTxn, got {end:?}");
    };
    assert!(request.committed);
    producer
        .handle_response(4, end_txn_response(None), clock(200))
        .unwrap();
    assert!(
        events(&mut producer)
            .iter()
            .any(|e| matches!(e, ProducerEvent::TransactionCommitted { .. }))
    );
}

#[test]
fn an_unanswered_add_partitions_is_resolved_before_the_abort() {
    let mut producer = ready();
    producer.send_batch(1, vec![at(2, "a")], clock(0)).unwrap();
    let _add = poll(&mut producer, clock(0)).unwrap();
    producer.handle_request_failed(
        Target::Broker(COORDINATOR),
        ApiKey::AddPartitionsToTxn,
        clock(0),
    );
    producer.abort_transaction().unwrap();
    assert!(matches!(
        events(&mut producer).as_slice(),
        [ProducerEvent::Failed {
            error: DeliveryError::Aborted,
            ..
        }]
    ));
    // Maybe added: the partition is added again (an idempotent request) so that the abort
    // knows the coordinator holds a transaction.
    let find = poll(&mut producer, clock(100)).unwrap();
    assert!(matches!(find.request, RequestKind::FindCoordinator(_)));
    producer
        .handle_response(0, find_coordinator_response(COORDINATOR, None), clock(100))
        .unwrap();
    let add = poll(&mut producer, clock(100)).unwrap();
    assert_eq!(added_partitions(&add), vec![2]);
    producer
        .handle_response(
            COORDINATOR,
            add_partitions_response(&[(2, None)]),
            clock(100),
        )
        .unwrap();
    let end = poll(&mut producer, clock(100)).unwrap();
    assert!(!end_txn(&end));
    producer
        .handle_response(COORDINATOR, end_txn_response(None), clock(100))
        .unwrap();
    assert!(
        events(&mut producer).contains(&ProducerEvent::TransactionAborted),
        "aborted"
    );
}

#[test]
fn brokers_without_transactions_are_a_typed_fatal_error() {
    for (api, negotiated) in [
        (ApiKey::EndTxn, None),
        (ApiKey::AddPartitionsToTxn, None),
        (ApiKey::TxnOffsetCommit, Some(2)),
    ] {
        let mut producer = fresh();
        producer.send_batch(1, vec![at(0, "a")], clock(0)).unwrap();
        let mut table = versions();
        match negotiated {
            Some(version) => table.insert(api, version),
            None => table.remove(&api),
        };
        assert_eq!(producer.poll_request(clock(0), &table), None);
        let evs = events(&mut producer);
        assert_eq!(
            evs.last(),
            Some(&ProducerEvent::TransactionsUnsupported { missing_api: api })
        );
        assert!(
            matches!(
                evs.first(),
                Some(ProducerEvent::Failed {
                    error: DeliveryError::ProducerFailed(_),
                    ..
                })
            ),
            "{evs:?}"
        );
        assert_eq!(producer.transaction_state(), Some(TransactionState::Fatal));
        let refused = producer
            .send_batch(1, vec![at(0, "b")], clock(0))
            .unwrap_err();
        assert_eq!(
            refused.error,
            ProducerError::TransactionFatal(TransactionError::Unsupported { missing_api: api })
        );
        assert_eq!(producer.poll_request(clock(0), &table), None);
    }
}

#[test]
fn transaction_methods_need_a_transactional_producer() {
    let mut producer: Producer<u32> = Producer::new(ProducerConfig::default(), clock(0));
    assert!(!producer.is_transactional());
    assert_eq!(producer.transaction_state(), None);
    assert_eq!(
        producer.commit_transaction(BTreeMap::new(), group()),
        Err(ProducerError::NotTransactional)
    );
    assert_eq!(
        producer.abort_transaction(),
        Err(ProducerError::NotTransactional)
    );
}

#[test]
fn transactional_batches_carry_the_transactional_attribute() {
    let identity = BatchIdentity {
        producer_id: 1,
        producer_epoch: 2,
        base_sequence: 3,
    };
    let plain = encode_batch(&[at(0, "a")], identity, Compression::None).unwrap();
    let txn = encode_transactional_batch(&[at(0, "a")], identity, Compression::None).unwrap();
    let decode = |bytes: &Bytes| {
        RecordBatchDecoder::decode(&mut bytes.clone())
            .unwrap()
            .records
            .remove(0)
    };
    assert!(!decode(&plain).transactional);
    assert!(decode(&txn).transactional);
    // Only the attribute (and with it the CRC) differs.
    assert_eq!(plain.len(), txn.len());
    assert_eq!(plain[..17], txn[..17]);
    assert_eq!(plain[23..], txn[23..]);
}

#[test]
fn the_first_add_of_a_transaction_retries_concurrent_transactions_sooner() {
    let mut producer = ready();
    producer.send_batch(1, vec![at(0, "a")], clock(0)).unwrap();
    let _add = poll(&mut producer, clock(0)).unwrap();
    producer
        .handle_response(
            COORDINATOR,
            add_partitions_response(&[(0, Some(ResponseError::ConcurrentTransactions))]),
            clock(0),
        )
        .unwrap();
    assert_eq!(producer.poll_timeout(), Some(clock(20)));
    let add = poll(&mut producer, clock(20)).unwrap();
    assert_eq!(added_partitions(&add), vec![0]);
    producer
        .handle_response(
            COORDINATOR,
            add_partitions_response(&[(0, None)]),
            clock(20),
        )
        .unwrap();
    // Later in the transaction: the usual backoff.
    producer.send_batch(1, vec![at(1, "b")], clock(20)).unwrap();
    let add = poll(&mut producer, clock(20))
        .into_iter()
        .chain(std::iter::from_fn(|| poll(&mut producer, clock(20))))
        .find(|out| matches!(out.request, RequestKind::AddPartitionsToTxn(_)))
        .expect("AddPartitionsToTxn of partition 1");
    assert_eq!(added_partitions(&add), vec![1]);
    producer
        .handle_response(
            COORDINATOR,
            add_partitions_response(&[(1, Some(ResponseError::ConcurrentTransactions))]),
            clock(20),
        )
        .unwrap();
    let early: Vec<Outbound> = std::iter::from_fn(|| poll(&mut producer, clock(100))).collect();
    assert!(
        early
            .iter()
            .all(|out| matches!(out.request, RequestKind::Produce(_))),
        "no AddPartitionsToTxn before the backoff: {early:?}"
    );
    let add = poll(&mut producer, clock(120)).unwrap();
    assert_eq!(added_partitions(&add), vec![1]);
}
