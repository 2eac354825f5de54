//! crabka-broker 0.3.0 (`tests/src/crabka.rs`), the broker of the exactly-once tests, proved
//! with an independent client: rdkafka's transactional producer commits and aborts, a
//! read_committed consumer sees exactly the committed records (a read_uncommitted one sees the
//! aborted ones too, so they were really written), a second producer with the same
//! transactional id fences the first, and offsets sent with a transaction become the group's
//! committed offsets only when it commits. Then kstreams itself (at-least-once) runs a
//! passthrough and an LMDB count on it, as shipped (no version caps). Each test's
//! name starts with its broker, `crabka_`; a test selects the broker with `Broker::crabka()`.

mod e2e_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use e2e_support::*;
use kstreams_io_common::Stores;
use kstreams_tests::reader;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

const TOPIC: &str = "txn";
const TXN_TIMEOUT: Duration = Duration::from_secs(30);

/// A producer that polls its delivery reports on its own thread (rdkafka's abort needs them).
type TxnProducer = ThreadedProducer<DefaultProducerContext>;

fn transactional_producer(bootstrap: &str, transactional_id: &str) -> TxnProducer {
    let producer: TxnProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("transactional.id", transactional_id)
        .set("transaction.timeout.ms", "60000")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("transactional producer");
    producer
        .init_transactions(TXN_TIMEOUT)
        .expect("InitProducerId (init_transactions)");
    producer
}

/// One transaction writing `values` round-robin over partitions 0 and 1, ended with a commit
/// or an abort.
fn transaction(producer: &TxnProducer, values: &[&str], commit: bool) {
    producer.begin_transaction().expect("begin_transaction");
    send(producer, values);
    // Written before the transaction ends, so an aborted transaction really leaves records.
    producer.flush(TXN_TIMEOUT).expect("flush");
    if commit {
        producer
            .commit_transaction(TXN_TIMEOUT)
            .expect("commit_transaction");
    } else {
        producer
            .abort_transaction(TXN_TIMEOUT)
            .expect("abort_transaction");
    }
}

fn send(producer: &TxnProducer, values: &[&str]) {
    for (i, value) in values.iter().enumerate() {
        producer
            .send(
                BaseRecord::to(TOPIC)
                    .partition((i % 2) as i32)
                    .key(*value)
                    .payload(*value),
            )
            .unwrap_or_else(|(e, _)| panic!("enqueue {value}: {e}"));
    }
}

/// The values of `TOPIC` (2 partitions) read from the beginning with `isolation_level`, per
/// partition in offset order: `expected` records, then none more for a second. (librdkafka
/// 2.12 never reported the partitions' end here, with the position at the high watermark, so
/// the read stops at a count.)
fn read_all(bootstrap: &str, isolation_level: &str, expected: usize) -> BTreeMap<i32, Vec<String>> {
    let consumer = reader::from_beginning(
        bootstrap,
        &format!("smoke-reader-{isolation_level}"),
        TOPIC,
        2,
        &[("isolation.level", isolation_level)],
    )
    .expect("reader");
    let mut values: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    let mut read = 0;
    let deadline = Instant::now() + WAIT;
    let mut settle_until = None;
    loop {
        let now = Instant::now();
        if read >= expected && settle_until.is_none() {
            settle_until = Some(now + Duration::from_secs(1));
        }
        if settle_until.is_some_and(|until| now >= until) {
            return values;
        }
        assert!(
            now < deadline,
            "reading {TOPIC} ({isolation_level}): {read} of {expected} records after {WAIT:?}: {values:?}"
        );
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(e)) => panic!("consume: {e}"),
            Some(Ok(message)) => {
                read += 1;
                values.entry(message.partition()).or_default().push(
                    String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned(),
                );
            }
        }
    }
}

fn by_partition(values: &[&str]) -> BTreeMap<i32, Vec<String>> {
    let mut map: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for (i, v) in values.iter().enumerate() {
        map.entry((i % 2) as i32).or_default().push((*v).to_owned());
    }
    map
}

#[test]
fn crabka_read_committed_sees_committed_transactions_only() {
    bounded(|| {
        let broker = Broker::crabka();
        broker.create_topic(TOPIC, 2);
        let bootstrap = broker.bootstrap();
        let producer = transactional_producer(&bootstrap, "smoke-tx");
        transaction(&producer, &["c0", "c1", "c2", "c3"], true);
        transaction(&producer, &["a0", "a1", "a2", "a3"], false);
        transaction(&producer, &["c4", "c5"], true);

        let committed = read_all(&bootstrap, "read_committed", 6);
        let expected = by_partition(&["c0", "c1", "c2", "c3", "c4", "c5"]);
        assert_eq!(
            committed,
            expected,
            "read_committed: the committed records only{}",
            broker.log_tail()
        );
        let everything = read_all(&bootstrap, "read_uncommitted", 10);
        let written = ["c0", "c1", "c2", "c3", "a0", "a1", "a2", "a3", "c4", "c5"];
        assert_eq!(
            everything,
            by_partition(&written),
            "read_uncommitted: the aborted records were written"
        );
    });
}

#[test]
fn crabka_a_second_producer_fences_the_first_and_offsets_commit_with_the_transaction() {
    bounded(|| {
        let broker = Broker::crabka();
        broker.create_topic(TOPIC, 2);
        let bootstrap = broker.bootstrap();
        let first = transactional_producer(&bootstrap, "fenced-tx");
        transaction(&first, &["first-0", "first-1"], true);

        // The successor's InitProducerId bumps the epoch: the first can no longer commit.
        let second = transactional_producer(&bootstrap, "fenced-tx");
        first.begin_transaction().expect("begin is local");
        send(&first, &["zombie-0", "zombie-1"]);
        let zombie = first.commit_transaction(TXN_TIMEOUT);
        let error = zombie.expect_err("the fenced producer's commit fails");
        assert!(
            error.to_string().to_lowercase().contains("fenced"),
            "fenced, not: {error}"
        );

        // Offsets sent with a transaction: committed with it, dropped with an abort.
        let group: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", "smoke-group")
            .create()
            .expect("group consumer");
        let metadata = group.group_metadata().expect("group metadata");
        let offsets = |offset: i64| {
            let mut list = TopicPartitionList::new();
            list.add_partition_offset(TOPIC, 0, Offset::Offset(offset))
                .expect("offset");
            list
        };
        second.begin_transaction().expect("begin");
        send(&second, &["second-0", "second-1"]);
        second
            .send_offsets_to_transaction(&offsets(3), &metadata, TXN_TIMEOUT)
            .expect("AddOffsetsToTxn + TxnOffsetCommit");
        second.commit_transaction(TXN_TIMEOUT).expect("commit");
        let committed = || reader::committed_offsets(&group, TOPIC, 1).expect("OffsetFetch");
        assert_eq!(committed(), vec![Offset::Offset(3)]);
        second.begin_transaction().expect("begin");
        second
            .send_offsets_to_transaction(&offsets(9), &metadata, TXN_TIMEOUT)
            .expect("TxnOffsetCommit");
        second.abort_transaction(TXN_TIMEOUT).expect("abort");
        assert_eq!(
            committed(),
            vec![Offset::Offset(3)],
            "an aborted transaction's offsets"
        );

        let visible = read_all(&bootstrap, "read_committed", 4);
        assert_eq!(
            visible,
            by_partition(&["first-0", "first-1", "second-0", "second-1"]),
            "nothing of the fenced producer's last transaction{}",
            broker.log_tail()
        );
    });
}

const INPUT: &str = "input";
const OUTPUT: &str = "output";
const SETTLE: Duration = Duration::from_millis(500);

#[test]
fn crabka_kstreams_passthrough_tokio() {
    bounded(|| {
        let broker = Broker::crabka();
        broker.create_topic(INPUT, PARTITIONS);
        broker.create_topic(OUTPUT, PARTITIONS);
        let bootstrap = broker.bootstrap();
        let app = "crabka-passthrough";
        let input = numbered_input(0, 1_000, 17);
        let ends = end_offsets(&input, &produce(&bootstrap, INPUT, &input));
        let state_dir = tempfile::tempdir().unwrap();
        let handle = Adapter::Tokio.start(
            passthrough_topology(INPUT, OUTPUT),
            streams_config(&broker, app, state_dir.path()),
            Stores::Memory,
        );
        let output = read_exactly(&bootstrap, OUTPUT, input.len(), SETTLE);
        assert_passthrough_exact(&input, &output);
        close(&handle);
        assert_committed_at_end(&bootstrap, app, INPUT, &ends);
    });
}

#[test]
fn crabka_kstreams_count_on_lmdb_smol() {
    bounded(|| {
        let broker = Broker::crabka();
        broker.create_topic(INPUT, PARTITIONS);
        broker.create_topic(OUTPUT, PARTITIONS);
        let bootstrap = broker.bootstrap();
        let app = "crabka-count";
        let input = numbered_input(0, 600, 9);
        let ends = end_offsets(&input, &produce(&bootstrap, INPUT, &input));
        let state_dir = tempfile::tempdir().unwrap();
        let handle = Adapter::Smol.start(
            count_topology(INPUT, OUTPUT),
            streams_config(&broker, app, state_dir.path()),
            Stores::Lmdb,
        );
        let output = read_exactly(&bootstrap, OUTPUT, input.len(), SETTLE);
        assert_counts_exact(&input, &output);
        close(&handle);
        assert_committed_at_end(&bootstrap, app, INPUT, &ends);
    });
}
