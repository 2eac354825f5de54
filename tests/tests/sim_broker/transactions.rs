//! The simulated broker's transactions, driven with raw frames like the rest of `sim_broker`:
//! commit and abort under read_committed (the Fetch's last stable offset and aborted list,
//! checked by decoding with kstreams' own record decoder), fencing by a new InitProducerId,
//! transactional offsets, the last stable offset held by the oldest open transaction, the
//! transaction timeout, and a broker without the transaction APIs.

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kstreams_core::wire::records::AbortedTransaction as CoreAborted;
use kstreams_tests::sim::{ApiVersionTable, TRANSACTION_APIS, TxnState};

use super::*;

const TXN: &str = "app-0_0";
const TIMEOUT_MS: i32 = 60_000;

/// A transactional producer speaking to its coordinator and to partition leaders.
struct TxnProducer {
    coordinator: Client,
    id: String,
    producer_id: i64,
    epoch: i16,
    /// Next sequence per (topic, partition).
    sequences: std::collections::BTreeMap<(String, i32), i32>,
}

/// The transaction coordinator of `id` from FindCoordinator (key type 1, v4's batched form),
/// and the v3 single-key form agreeing with it.
fn txn_coordinator(sim: &mut SimCluster, id: &str) -> i32 {
    let mut probe = Client::connect(sim, 0);
    let batched = probe.call(
        sim,
        &FindCoordinatorRequest::default()
            .with_key_type(1)
            .with_coordinator_keys(vec![s(id)]),
        4,
        T0,
    );
    let coordinator = &batched.coordinators[0];
    assert_eq!((coordinator.error_code, coordinator.key.as_str()), (0, id));
    let single = probe.call(
        sim,
        &FindCoordinatorRequest::default()
            .with_key_type(1)
            .with_key(s(id)),
        3,
        T0,
    );
    assert_eq!(
        (single.error_code, single.node_id),
        (0, coordinator.node_id)
    );
    assert_eq!(Some(coordinator.node_id.0), sim.coordinator_of(id));
    coordinator.node_id.0
}

fn init_producer_id(
    client: &mut Client,
    sim: &mut SimCluster,
    id: &str,
    timeout_ms: i32,
    now: i64,
) -> InitProducerIdResponse {
    client.call(
        sim,
        &InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(s(id))))
            .with_transaction_timeout_ms(timeout_ms),
        4,
        now,
    )
}

impl TxnProducer {
    fn init(sim: &mut SimCluster, id: &str, timeout_ms: i32, now: i64) -> Self {
        let broker = txn_coordinator(sim, id);
        let mut coordinator = Client::connect(sim, broker);
        let response = init_producer_id(&mut coordinator, sim, id, timeout_ms, now);
        assert_eq!(response.error_code, 0, "InitProducerId");
        Self {
            coordinator,
            id: id.to_owned(),
            producer_id: response.producer_id.0,
            epoch: response.producer_epoch,
            sequences: Default::default(),
        }
    }

    fn add_partitions(
        &mut self,
        sim: &mut SimCluster,
        parts: &[(&str, i32)],
        now: i64,
    ) -> Vec<i16> {
        let topics = parts
            .iter()
            .map(|(t, p)| {
                AddPartitionsToTxnTopic::default()
                    .with_name(topic(t))
                    .with_partitions(vec![*p])
            })
            .collect();
        let response = self.coordinator.call(
            sim,
            &AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(TransactionalId(s(&self.id)))
                .with_v3_and_below_producer_id(ProducerId(self.producer_id))
                .with_v3_and_below_producer_epoch(self.epoch)
                .with_v3_and_below_topics(topics),
            3,
            now,
        );
        response
            .results_by_topic_v3_and_below
            .iter()
            .flat_map(|t| {
                t.results_by_partition
                    .iter()
                    .map(|p| p.partition_error_code)
            })
            .collect()
    }

    fn add_offsets(&mut self, sim: &mut SimCluster, group: &str, now: i64) -> i16 {
        self.coordinator
            .call(
                sim,
                &AddOffsetsToTxnRequest::default()
                    .with_transactional_id(TransactionalId(s(&self.id)))
                    .with_producer_id(ProducerId(self.producer_id))
                    .with_producer_epoch(self.epoch)
                    .with_group_id(GroupId(s(group))),
                3,
                now,
            )
            .error_code
    }

    /// Produces `values` transactionally to `t`-`partition` through its leader; returns the
    /// error code and base offset.
    fn produce(
        &mut self,
        sim: &mut SimCluster,
        t: &str,
        partition: i32,
        values: &[(&str, &str)],
        now: i64,
    ) -> (i16, i64) {
        let sequence = self.sequences.entry((t.to_owned(), partition)).or_insert(0);
        let records: Vec<(&str, &str, i64)> = values.iter().map(|(k, v)| (*k, *v, now)).collect();
        let mut wire = wire_records(self.producer_id, self.epoch, *sequence, &records);
        for record in &mut wire {
            record.transactional = true;
        }
        let mut request = produce_request(t, partition, batch_bytes(&wire, Compression::None));
        request.transactional_id = Some(TransactionalId(s(&self.id)));
        let mut leader = leader_client(sim, t, partition);
        let result = produce_result(&leader.call(sim, &request, 9, now));
        if result.0 == 0 {
            *sequence += values.len() as i32;
        }
        result
    }

    fn end(&mut self, sim: &mut SimCluster, commit: bool, now: i64) -> i16 {
        self.coordinator
            .call(
                sim,
                &EndTxnRequest::default()
                    .with_transactional_id(TransactionalId(s(&self.id)))
                    .with_producer_id(ProducerId(self.producer_id))
                    .with_producer_epoch(self.epoch)
                    .with_committed(commit),
                3,
                now,
            )
            .error_code
    }

    fn txn_offset_commit(
        &mut self,
        sim: &mut SimCluster,
        member: &str,
        generation: i32,
        offset: i64,
        now: i64,
    ) -> i16 {
        let request = TxnOffsetCommitRequest::default()
            .with_transactional_id(TransactionalId(s(&self.id)))
            .with_group_id(GroupId(s(GROUP)))
            .with_producer_id(ProducerId(self.producer_id))
            .with_producer_epoch(self.epoch)
            .with_generation_id(generation)
            .with_member_id(s(member))
            .with_topics(vec![
                TxnOffsetCommitRequestTopic::default()
                    .with_name(topic("in"))
                    .with_partitions(vec![
                        TxnOffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(offset),
                    ]),
            ]);
        let mut group_coordinator = Client::connect(sim, sim.coordinator_of(GROUP).expect("up"));
        group_coordinator.call(sim, &request, 3, now).topics[0].partitions[0].error_code
    }
}

/// A read_committed (or read_uncommitted) Fetch of `t`-0 from `offset`, decoded by kstreams'
/// own decoder with the response's aborted list: the user records' (offset, value), the
/// response's last stable offset and high watermark, and the aborted list.
struct Fetched {
    values: Vec<(i64, String)>,
    last_stable_offset: i64,
    high_watermark: i64,
    aborted: Vec<(i64, i64)>,
    control_batches: usize,
}

fn fetch(sim: &mut SimCluster, t: &str, offset: i64, read_committed: bool, now: i64) -> Fetched {
    let mut leader = leader_client(sim, t, 0);
    let request = fetch_request(t, 0, offset, 1 << 20, 1 << 20)
        .with_isolation_level(i8::from(read_committed));
    let response = leader.call(sim, &request, 11, now);
    let p = &response.responses[0].partitions[0];
    assert_eq!(p.error_code, 0, "fetch");
    let aborted: Vec<CoreAborted> = p
        .aborted_transactions
        .iter()
        .flatten()
        .map(CoreAborted::from)
        .collect();
    assert_eq!(
        p.aborted_transactions.is_some(),
        read_committed,
        "an aborted list only for read_committed"
    );
    let records = p.records.clone().unwrap_or_default();
    let decoded = decode_fetched_records(
        &FetchedPartition {
            partition: 0,
            fetch_offset: offset,
            records: &records,
            isolation: if read_committed {
                IsolationLevel::ReadCommitted
            } else {
                IsolationLevel::ReadUncommitted
            },
            aborted_transactions: &aborted,
        },
        &DecodeLimits::default(),
    )
    .expect("kstreams decodes the simulator's transactional fetch");
    Fetched {
        values: decoded
            .records
            .iter()
            .map(|r| {
                (
                    r.offset,
                    String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned(),
                )
            })
            .collect(),
        last_stable_offset: p.last_stable_offset,
        high_watermark: p.high_watermark,
        aborted: aborted
            .iter()
            .map(|a| (a.producer_id, a.first_offset))
            .collect(),
        control_batches: decoded.control_batches,
    }
}

fn list_latest(sim: &mut SimCluster, t: &str, read_committed: bool, now: i64) -> i64 {
    let mut leader = leader_client(sim, t, 0);
    let response = leader.call(
        sim,
        &ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_isolation_level(i8::from(read_committed))
            .with_topics(vec![
                ListOffsetsTopic::default()
                    .with_name(topic(t))
                    .with_partitions(vec![
                        ListOffsetsPartition::default()
                            .with_partition_index(0)
                            .with_timestamp(-1),
                    ]),
            ]),
        5,
        now,
    );
    let p = &response.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.offset
}

fn values(pairs: &[(i64, &str)]) -> Vec<(i64, String)> {
    pairs.iter().map(|(o, v)| (*o, (*v).to_owned())).collect()
}

#[test]
fn committed_records_are_visible_and_aborted_ones_filtered_under_read_committed() {
    let mut sim = SimCluster::new(21, 3);
    sim.create_topic("t", 1).expect("created");
    let mut producer = TxnProducer::init(&mut sim, TXN, TIMEOUT_MS, T0);
    assert_eq!(producer.epoch, 0);

    // An open transaction: its records are above the last stable offset.
    assert_eq!(producer.add_partitions(&mut sim, &[("t", 0)], T0), vec![0]);
    assert_eq!(
        producer.produce(&mut sim, "t", 0, &[("a", "1"), ("b", "2")], T0),
        (0, 0)
    );
    let open = fetch(&mut sim, "t", 0, true, T0);
    assert_eq!(
        (
            open.values.len(),
            open.last_stable_offset,
            open.high_watermark
        ),
        (0, 0, 2)
    );
    assert_eq!(
        fetch(&mut sim, "t", 0, false, T0).values,
        values(&[(0, "1"), (1, "2")])
    );
    assert_eq!(list_latest(&mut sim, "t", true, T0), 0);
    assert_eq!(list_latest(&mut sim, "t", false, T0), 2);
    assert_eq!(
        sim.transaction(TXN).expect("known").state,
        TxnState::Ongoing
    );

    // Commit: a marker at offset 2, and everything before it is stable.
    assert_eq!(producer.end(&mut sim, true, T0 + 10), 0);
    assert_eq!(
        producer.end(&mut sim, true, T0 + 11),
        0,
        "a retried EndTxn succeeds"
    );
    assert_eq!(
        producer.end(&mut sim, false, T0 + 11),
        err_code(ResponseError::InvalidTxnState)
    );
    let committed = fetch(&mut sim, "t", 0, true, T0 + 20);
    assert_eq!(committed.values, values(&[(0, "1"), (1, "2")]));
    assert_eq!(
        (committed.last_stable_offset, committed.high_watermark),
        (3, 3)
    );
    assert_eq!(committed.control_batches, 1);
    assert!(committed.aborted.is_empty());

    // Abort: the records stay in the log (read_uncommitted sees them) but read_committed
    // drops them, told by the aborted list (producer id, first offset).
    assert_eq!(
        producer.add_partitions(&mut sim, &[("t", 0)], T0 + 30),
        vec![0]
    );
    assert_eq!(
        producer.produce(&mut sim, "t", 0, &[("c", "3"), ("d", "4")], T0 + 30),
        (0, 3)
    );
    assert_eq!(producer.end(&mut sim, false, T0 + 40), 0);
    sim.produce_direct("t", 0, vec![SimRecord::new("e", "5", T0 + 50)])
        .expect("appended");
    let after_abort = fetch(&mut sim, "t", 0, true, T0 + 60);
    assert_eq!(after_abort.values, values(&[(0, "1"), (1, "2"), (6, "5")]));
    assert_eq!(after_abort.aborted, vec![(producer.producer_id, 3)]);
    assert_eq!(
        (after_abort.last_stable_offset, after_abort.high_watermark),
        (7, 7)
    );
    assert_eq!(after_abort.control_batches, 2);
    // A fetch after the aborted transaction ended does not need it listed.
    assert!(fetch(&mut sim, "t", 6, true, T0 + 60).aborted.is_empty());
    let uncommitted = fetch(&mut sim, "t", 0, false, T0 + 60);
    assert_eq!(
        uncommitted.values,
        values(&[(0, "1"), (1, "2"), (3, "3"), (4, "4"), (6, "5")])
    );

    // The direct helpers agree with the wire.
    let visible: Vec<i64> = sim
        .read_committed("t", 0)
        .unwrap()
        .iter()
        .map(|r| r.offset)
        .collect();
    assert_eq!(visible, vec![0, 1, 6]);
    let all: Vec<i64> = sim
        .read_log("t", 0)
        .unwrap()
        .iter()
        .map(|r| r.offset)
        .collect();
    assert_eq!(all, vec![0, 1, 3, 4, 6], "markers are not records");
    assert!(sim.read_log("t", 0).unwrap()[0].transactional);
    assert_eq!(sim.last_stable_offset("t", 0), Ok(7));
}

fn err_code(error: ResponseError) -> i16 {
    error.code()
}

#[test]
fn the_oldest_open_transaction_holds_the_last_stable_offset_and_its_end_wakes_fetches() {
    let mut sim = SimCluster::new(22, 1);
    sim.create_topic("t", 1).expect("created");
    let mut first = TxnProducer::init(&mut sim, "first", TIMEOUT_MS, T0);
    let mut second = TxnProducer::init(&mut sim, "second", TIMEOUT_MS, T0);
    assert_ne!(first.producer_id, second.producer_id);
    first.add_partitions(&mut sim, &[("t", 0)], T0);
    second.add_partitions(&mut sim, &[("t", 0)], T0);
    assert_eq!(first.produce(&mut sim, "t", 0, &[("a", "first")], T0).0, 0);
    assert_eq!(
        second.produce(&mut sim, "t", 0, &[("b", "second")], T0).0,
        0
    );
    assert_eq!(second.end(&mut sim, true, T0 + 1), 0);
    // The second committed, but the first is still open at offset 0.
    assert_eq!(sim.last_stable_offset("t", 0), Ok(0));
    assert!(fetch(&mut sim, "t", 0, true, T0 + 2).values.is_empty());

    // A long-polling read_committed fetch waits, and the first's commit answers it.
    let mut leader = leader_client(&mut sim, "t", 0);
    let mut request = fetch_request("t", 0, 0, 1 << 20, 1 << 20).with_isolation_level(1);
    request.max_wait_ms = 5_000;
    let corr = leader.send(&mut sim, &request, 11, T0 + 3);
    assert!(
        leader
            .try_recv::<FetchRequest>(&mut sim, 11, corr)
            .is_none(),
        "nothing stable yet"
    );
    assert_eq!(first.end(&mut sim, true, T0 + 4), 0);
    let woken = leader
        .try_recv::<FetchRequest>(&mut sim, 11, corr)
        .expect("woken by the commit");
    assert_eq!(woken.responses[0].partitions[0].last_stable_offset, 4);
    assert_eq!(
        fetch(&mut sim, "t", 0, true, T0 + 5).values,
        values(&[(0, "first"), (1, "second")])
    );
}

#[test]
fn a_new_init_producer_id_fences_the_old_epoch_and_aborts_its_transaction() {
    let mut sim = SimCluster::new(23, 3);
    sim.create_topic("t", 1).expect("created");
    sim.create_topic("in", 1).expect("created");
    let mut zombie = TxnProducer::init(&mut sim, TXN, TIMEOUT_MS, T0);
    zombie.add_partitions(&mut sim, &[("t", 0)], T0);
    assert_eq!(zombie.add_offsets(&mut sim, GROUP, T0), 0);
    assert_eq!(
        zombie.produce(&mut sim, "t", 0, &[("z", "zombie")], T0).0,
        0
    );

    // The successor's InitProducerId: same producer id, epoch + 1; the open transaction is
    // aborted with the new epoch.
    let successor = TxnProducer::init(&mut sim, TXN, TIMEOUT_MS, T0 + 10);
    assert_eq!(
        (successor.producer_id, successor.epoch),
        (zombie.producer_id, 1)
    );
    let info = sim.transaction(TXN).expect("known");
    assert_eq!(
        (info.producer_epoch, info.state),
        (1, TxnState::CompleteAbort)
    );
    let fetched = fetch(&mut sim, "t", 0, true, T0 + 20);
    assert!(fetched.values.is_empty(), "the zombie's record is aborted");
    assert_eq!(fetched.aborted, vec![(zombie.producer_id, 0)]);

    // Every request of the old epoch is fenced.
    let fenced = err_code(ResponseError::ProducerFenced);
    assert_eq!(
        zombie.add_partitions(&mut sim, &[("t", 0)], T0 + 30),
        vec![fenced]
    );
    assert_eq!(zombie.add_offsets(&mut sim, GROUP, T0 + 30), fenced);
    assert_eq!(zombie.end(&mut sim, true, T0 + 30), fenced);
    assert_eq!(
        zombie.txn_offset_commit(&mut sim, "", -1, 5, T0 + 30),
        fenced
    );
    assert_eq!(
        zombie
            .produce(&mut sim, "t", 0, &[("z", "again")], T0 + 30)
            .0,
        err_code(ResponseError::InvalidProducerEpoch)
    );
    // Another producer id for the transactional id is not a mapping the coordinator knows.
    zombie.producer_id += 1;
    zombie.epoch = 1;
    assert_eq!(
        zombie.end(&mut sim, true, T0 + 30),
        err_code(ResponseError::InvalidProducerIdMapping)
    );

    // A transactional id nobody initialised, and a coordinator that is not this broker.
    let home = sim.coordinator_of("nobody").expect("up");
    let mut stranger = TxnProducer {
        id: "nobody".into(),
        coordinator: Client::connect(&mut sim, home),
        ..successor
    };
    assert_eq!(
        stranger.end(&mut sim, true, T0 + 40),
        err_code(ResponseError::InvalidProducerIdMapping)
    );
    let other = (0..3).find(|b| *b != home).expect("another broker");
    stranger.coordinator = Client::connect(&mut sim, other);
    assert_eq!(
        stranger.end(&mut sim, true, T0 + 40),
        err_code(ResponseError::NotCoordinator)
    );
}

#[test]
fn the_new_epoch_produces_from_sequence_zero_after_fencing() {
    let mut sim = SimCluster::new(24, 1);
    sim.create_topic("t", 1).expect("created");
    let mut old = TxnProducer::init(&mut sim, TXN, TIMEOUT_MS, T0);
    old.add_partitions(&mut sim, &[("t", 0)], T0);
    assert_eq!(old.produce(&mut sim, "t", 0, &[("a", "old")], T0).0, 0);
    let mut new = TxnProducer::init(&mut sim, TXN, TIMEOUT_MS, T0 + 1);
    new.add_partitions(&mut sim, &[("t", 0)], T0 + 2);
    assert_eq!(
        new.produce(&mut sim, "t", 0, &[("b", "new")], T0 + 2),
        (0, 2)
    );
    // A partition the transaction did not add is refused.
    sim.create_topic("other", 1).expect("created");
    assert_eq!(
        new.produce(&mut sim, "other", 0, &[("c", "x")], T0 + 2).0,
        err_code(ResponseError::InvalidTxnState)
    );
    assert_eq!(new.end(&mut sim, true, T0 + 3), 0);
    assert_eq!(
        fetch(&mut sim, "t", 0, true, T0 + 4).values,
        values(&[(2, "new")])
    );
    // An unknown partition is refused and nothing else of the request is added.
    let codes = new.add_partitions(&mut sim, &[("t", 0), ("missing", 0)], T0 + 5);
    assert_eq!(
        codes,
        vec![
            err_code(ResponseError::OperationNotAttempted),
            err_code(ResponseError::UnknownTopicOrPartition)
        ]
    );
    assert_eq!(
        sim.transaction(TXN).expect("known").state,
        TxnState::CompleteCommit
    );
}

#[test]
fn transactional_offsets_are_checked_like_commits_and_visible_only_after_commit() {
    let mut sim = SimCluster::new(25, 3);
    sim.create_topic("in", 1).expect("created");
    sim.create_topic("t", 1).expect("created");
    let g = two_member_group(&mut sim);
    let mut producer = TxnProducer::init(&mut sim, TXN, TIMEOUT_MS, T0);
    let tp = TopicPartition::new("in", 0);

    // Without AddOffsetsToTxn the group is not part of the transaction.
    assert_eq!(
        producer.txn_offset_commit(&mut sim, &g.a_id, g.generation, 5, T0 + 1_000),
        err_code(ResponseError::InvalidTxnState)
    );
    assert_eq!(producer.add_offsets(&mut sim, GROUP, T0 + 1_000), 0);
    // The member and generation are checked like an OffsetCommit's.
    assert_eq!(
        producer.txn_offset_commit(&mut sim, &g.a_id, g.generation - 1, 5, T0 + 1_000),
        err_code(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        producer.txn_offset_commit(&mut sim, "ghost", g.generation, 5, T0 + 1_000),
        err_code(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        producer.txn_offset_commit(&mut sim, &g.a_id, g.generation, 5, T0 + 1_000),
        0
    );

    // Pending: OffsetFetch sees nothing yet, and a consumer asking for stable offsets is told
    // to wait.
    assert_eq!(sim.committed_offset(GROUP, &tp), None);
    let offset_fetch = |sim: &mut SimCluster, require_stable: bool| {
        let mut coordinator = Client::connect(sim, sim.coordinator_of(GROUP).expect("up"));
        let response = coordinator.call(
            sim,
            &OffsetFetchRequest::default()
                .with_group_id(GroupId(s(GROUP)))
                .with_require_stable(require_stable)
                .with_topics(Some(vec![
                    OffsetFetchRequestTopic::default()
                        .with_name(topic("in"))
                        .with_partition_indexes(vec![0]),
                ])),
            7,
            T0 + 1_000,
        );
        let p = &response.topics[0].partitions[0];
        (p.error_code, p.committed_offset)
    };
    assert_eq!(offset_fetch(&mut sim, false), (0, -1));
    assert_eq!(
        offset_fetch(&mut sim, true),
        (err_code(ResponseError::UnstableOffsetCommit), -1)
    );

    // Commit: the offset becomes visible.
    assert_eq!(producer.end(&mut sim, true, T0 + 1_100), 0);
    assert_eq!(sim.committed_offset(GROUP, &tp), Some(5));
    assert_eq!(offset_fetch(&mut sim, true), (0, 5));

    // An aborted transaction's offset never does.
    assert_eq!(producer.add_offsets(&mut sim, GROUP, T0 + 1_200), 0);
    assert_eq!(
        producer.txn_offset_commit(&mut sim, &g.b_id, g.generation, 9, T0 + 1_200),
        0
    );
    assert_eq!(producer.end(&mut sim, false, T0 + 1_300), 0);
    assert_eq!(offset_fetch(&mut sim, true), (0, 5));
    // A producer outside group management (no member, no generation) is not checked
    // against the group.
    assert_eq!(producer.add_offsets(&mut sim, GROUP, T0 + 1_400), 0);
    assert_eq!(
        producer.txn_offset_commit(&mut sim, "", -1, 11, T0 + 1_400),
        0
    );
    assert_eq!(producer.end(&mut sim, true, T0 + 1_500), 0);
    assert_eq!(sim.committed_offset(GROUP, &tp), Some(11));
}

#[test]
fn the_transaction_timeout_aborts_a_silent_producer_and_fences_it() {
    let mut sim = SimCluster::new(26, 1);
    sim.create_topic("t", 1).expect("created");
    let mut producer = TxnProducer::init(&mut sim, TXN, 10_000, T0);
    let broker = sim.coordinator_of(TXN).expect("up");
    let mut coordinator = Client::connect(&mut sim, broker);
    assert_eq!(
        init_producer_id(&mut coordinator, &mut sim, "too-long", 900_001, T0).error_code,
        err_code(ResponseError::InvalidTransactionTimeout)
    );
    assert_eq!(sim.next_timer(), None, "no open transaction, no timer");
    producer.add_partitions(&mut sim, &[("t", 0)], T0 + 100);
    assert_eq!(
        producer
            .produce(&mut sim, "t", 0, &[("a", "1")], T0 + 100)
            .0,
        0
    );
    assert_eq!(sim.next_timer(), Some(T0 + 10_100));
    sim.advance(T0 + 10_099);
    assert_eq!(sim.last_stable_offset("t", 0), Ok(0));
    sim.advance(T0 + 10_100);
    assert_eq!(
        sim.last_stable_offset("t", 0),
        Ok(2),
        "aborted: the marker follows the record"
    );
    assert!(sim.read_committed("t", 0).unwrap().is_empty());
    let info = sim.transaction(TXN).expect("known");
    assert_eq!(
        (info.producer_epoch, info.state),
        (1, TxnState::CompleteAbort)
    );
    assert_eq!(
        producer.end(&mut sim, true, T0 + 10_200),
        err_code(ResponseError::ProducerFenced)
    );
    assert_eq!(sim.next_timer(), None);
}

#[test]
fn a_broker_without_transactions_advertises_none_and_closes_on_them() {
    let mut sim = SimCluster::with_config(
        27,
        1,
        SimConfig {
            api_versions: ApiVersionTable::without_transactions(),
            ..SimConfig::default()
        },
    );
    let mut client = Client::connect(&mut sim, 0);
    let response = client.call(&mut sim, &ApiVersionsRequest::default(), 3, T0);
    for api in TRANSACTION_APIS {
        assert!(
            !response.api_keys.iter().any(|k| k.api_key == api as i16),
            "{api:?} not advertised"
        );
    }
    assert!(
        response
            .api_keys
            .iter()
            .any(|k| k.api_key == ApiKey::InitProducerId as i16)
    );
    // The default table serves them at the classic (transaction version 0) versions.
    let full = ApiVersionTable::default();
    assert_eq!(full.range(ApiKey::AddPartitionsToTxn), Some((0, 3)));
    assert_eq!(full.range(ApiKey::EndTxn), Some((0, 4)));
    let frame = request_frame(
        &EndTxnRequest::default().with_transactional_id(TransactionalId(s(TXN))),
        3,
        7,
    );
    assert!(sim.receive(client.conn, &frame, T0).is_err());
    assert!(matches!(
        sim.close_reason(client.conn),
        Some(CloseReason::Malformed(_))
    ));
}

#[test]
fn injected_coordinator_errors_leave_the_transaction_untouched() {
    let mut sim = SimCluster::new(28, 1);
    sim.create_topic("t", 1).expect("created");
    sim.create_topic("in", 1).expect("created");
    let mut producer = TxnProducer::init(&mut sim, TXN, TIMEOUT_MS, T0);
    let busy = err_code(ResponseError::ConcurrentTransactions);
    let moved = err_code(ResponseError::NotCoordinator);
    sim.inject_error(ApiKey::AddPartitionsToTxn, busy, 1);
    assert_eq!(
        producer.add_partitions(&mut sim, &[("t", 0)], T0),
        vec![busy]
    );
    assert_eq!(sim.transaction(TXN).expect("known").state, TxnState::Empty);
    assert_eq!(producer.add_partitions(&mut sim, &[("t", 0)], T0), vec![0]);
    sim.inject_error(ApiKey::AddOffsetsToTxn, busy, 1);
    assert_eq!(producer.add_offsets(&mut sim, GROUP, T0), busy);
    assert_eq!(producer.add_offsets(&mut sim, GROUP, T0), 0);
    sim.inject_error(ApiKey::TxnOffsetCommit, moved, 1);
    assert_eq!(producer.txn_offset_commit(&mut sim, "", -1, 3, T0), moved);
    assert_eq!(producer.txn_offset_commit(&mut sim, "", -1, 3, T0), 0);
    assert_eq!(producer.produce(&mut sim, "t", 0, &[("a", "1")], T0).0, 0);
    sim.inject_error(ApiKey::EndTxn, busy, 1);
    assert_eq!(producer.end(&mut sim, true, T0), busy);
    assert_eq!(
        sim.last_stable_offset("t", 0),
        Ok(0),
        "not ended by the failed EndTxn"
    );
    assert_eq!(producer.end(&mut sim, true, T0), 0);
    assert_eq!(sim.read_committed("t", 0).unwrap().len(), 1);
    assert_eq!(
        sim.committed_offset(GROUP, &TopicPartition::new("in", 0)),
        Some(3)
    );
}
