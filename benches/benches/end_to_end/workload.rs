//! The workload and its checks, as the parent sees them: the input produced once, the
//! contenders' progress (committed offsets), their first output, and the output check.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kstreams_tests::reader;
use rdkafka::Offset;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};

use crate::broker::Broker;
use crate::{INPUT, PARTITIONS, VALUE_BYTES};

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The 16-byte key of key index `k`.
fn key(k: usize) -> Vec<u8> {
    format!("key-{k:012}").into_bytes()
}

/// Records the highest acknowledged offset per partition of the input.
struct InputDeliveries {
    next: std::sync::Mutex<Vec<i64>>,
    acked: AtomicU64,
    failed: AtomicU64,
}

impl ClientContext for InputDeliveries {}

impl ProducerContext for InputDeliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(message) => {
                let mut next = self.next.lock().expect("delivery lock");
                let p = message.partition() as usize;
                next[p] = next[p].max(message.offset() + 1);
                self.acked.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Produces the input; returns the expected final count per key and the end offset of every
/// partition (from the delivery reports).
pub(crate) fn produce_input(
    bootstrap: &str,
    records: usize,
    keys: usize,
) -> (HashMap<Vec<u8>, i64>, Vec<i64>) {
    let producer: BaseProducer<InputDeliveries> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .set("message.timeout.ms", "120000")
        .create_with_context(InputDeliveries {
            next: std::sync::Mutex::new(vec![0; PARTITIONS as usize]),
            acked: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        })
        .expect("input producer");
    let mut expected: HashMap<Vec<u8>, i64> = HashMap::new();
    let mut value = vec![0u8; VALUE_BYTES];
    for i in 0..records {
        let k = (splitmix64(i as u64) % keys as u64) as usize;
        let key = key(k);
        *expected.entry(key.clone()).or_insert(0) += 1;
        let word = splitmix64(i as u64 ^ 0xabcd).to_le_bytes();
        for (j, b) in value.iter_mut().enumerate() {
            *b = word[j % 8].wrapping_add(j as u8);
        }
        let partition = (k % PARTITIONS as usize) as i32;
        let mut record = BaseRecord::to(INPUT)
            .partition(partition)
            .key(&key)
            .payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => panic!("producing the input: {e}"),
            }
        }
        producer.poll(Duration::ZERO);
        if (i + 1) % 100_000 == 0 {
            eprintln!(
                "  input: {} records sent, {} acknowledged",
                i + 1,
                producer.context().acked.load(Ordering::Relaxed)
            );
        }
    }
    producer
        .flush(Duration::from_secs(300))
        .expect("flushing the input");
    let context = producer.context();
    assert_eq!(
        context.failed.load(Ordering::Relaxed),
        0,
        "input deliveries failed"
    );
    let ends = context.next.lock().expect("delivery lock").clone();
    (expected, ends)
}

/// End offsets of `topic`'s partitions.
pub(crate) fn end_offsets(consumer: &BaseConsumer, topic: &str) -> Vec<i64> {
    (0..PARTITIONS)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(30))
                .unwrap_or_else(|e| panic!("watermarks of {topic}-{p}: {e}"))
                .1
        })
        .collect()
}

/// A consumer of group `group` that never joins it (for OffsetFetch and watermarks).
pub(crate) fn observer(bootstrap: &str, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("observer consumer")
}

/// What a transactional contender's output is read with: only committed transactions.
const READ_COMMITTED: (&str, &str) = ("isolation.level", "read_committed");

/// A consumer of all of `topic` from the beginning, to see when the first output appears.
fn first_output_watcher(bootstrap: &str, topic: &str) -> BaseConsumer {
    reader::from_beginning(
        bootstrap,
        "e2e-bench-first-output",
        topic,
        PARTITIONS,
        &[("fetch.wait.max.ms", "10")],
    )
    .expect("first-output consumer")
}

/// Sees when a contender's first output record reaches the broker. Under exactly-once that is
/// before a read_committed reader sees it (at the end of its transaction, up to one commit
/// interval later): the time after it is the contender's processing time in every case.
pub(crate) enum FirstOutputWatch {
    /// A consumer of the whole output topic from its beginning (Tansu, the mock).
    Consumer(BaseConsumer),
    /// The output partitions' end offsets (ListOffsets latest, which crabka-broker 0.3.0
    /// answers with the log end whatever the isolation level), on crabka-broker: it answers a
    /// Fetch of a partition with nothing to return with a null record set, which librdkafka
    /// 2.12 refuses for the whole response (`invalid MessageSetSize -1`), so a consumer of a
    /// still empty topic sees nothing there until every partition has data.
    EndOffsets {
        consumer: BaseConsumer,
        topic: String,
    },
}

impl FirstOutputWatch {
    pub(crate) fn new(broker: &Broker, topic: &str) -> Self {
        if let Broker::Crabka(_) = broker {
            FirstOutputWatch::EndOffsets {
                consumer: observer(&broker.bootstrap(), "e2e-bench-first-output"),
                topic: topic.to_owned(),
            }
        } else {
            FirstOutputWatch::Consumer(first_output_watcher(&broker.bootstrap(), topic))
        }
    }

    /// Whether output records are there now.
    pub(crate) fn output_seen(&self) -> bool {
        match self {
            FirstOutputWatch::Consumer(watcher) => {
                if matches!(watcher.poll(Duration::ZERO), Some(Ok(_))) {
                    // Stop fetching: reading the whole output here would compete with the
                    // contender.
                    watcher.unassign().expect("unassign");
                    return true;
                }
                false
            }
            FirstOutputWatch::EndOffsets { consumer, topic } => (0..PARTITIONS).any(|p| {
                consumer
                    .fetch_watermarks(topic, p, Duration::from_secs(5))
                    .is_ok_and(|(_, high)| high > 0)
            }),
        }
    }
}

/// The sum of `topic`'s end offsets (ListOffsets latest), `None` where a partition did not
/// answer. Not on Tansu 0.6.0, which lists wrong end offsets.
pub(crate) fn end_offset_sum(consumer: &BaseConsumer, topic: &str) -> Option<i64> {
    (0..PARTITIONS)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(5))
                .ok()
                .map(|(_, high)| high)
        })
        .sum()
}

/// The offsets `group` committed on the input partitions (0 where none).
pub(crate) fn committed(consumer: &BaseConsumer) -> Vec<i64> {
    match reader::committed_offsets(consumer, INPUT, PARTITIONS) {
        Ok(offsets) => offsets
            .into_iter()
            .map(|offset| match offset {
                Offset::Offset(o) => o,
                _ => 0,
            })
            .collect(),
        Err(_) => vec![0; PARTITIONS as usize],
    }
}

/// Reads all of `topic` (only committed transactions if `read_committed`) and checks the last
/// count of every key against `expected`; returns the number of output records.
pub(crate) fn check_output(
    bootstrap: &str,
    topic: &str,
    records: usize,
    expected: &HashMap<Vec<u8>, i64>,
    read_committed: bool,
) -> usize {
    let settings: &[(&str, &str)] = if read_committed {
        &[READ_COMMITTED]
    } else {
        &[]
    };
    let consumer =
        reader::from_beginning(bootstrap, "e2e-bench-checker", topic, PARTITIONS, settings)
            .expect("checker consumer");
    // One output record per input record; then nothing more may come for a second (the end
    // offsets are not used: Tansu 0.6.0 lists wrong ones).
    let mut last: HashMap<Vec<u8>, i64> = HashMap::with_capacity(expected.len());
    let mut read = 0usize;
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut quiet_since = Instant::now();
    while read < records || quiet_since.elapsed() < Duration::from_secs(1) {
        assert!(
            Instant::now() < deadline,
            "{topic}: read {read} of {records}"
        );
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        quiet_since = Instant::now();
        let message = message.unwrap_or_else(|e| panic!("reading {topic}: {e}"));
        let count = message
            .payload()
            .and_then(|v| <[u8; 8]>::try_from(v).ok())
            .map(i64::from_be_bytes)
            .unwrap_or_else(|| panic!("{topic}: a value that is not an 8-byte count"));
        let key = message.key().unwrap_or_default();
        match last.get_mut(key) {
            Some(c) => *c = count,
            None => {
                last.insert(key.to_vec(), count);
            }
        }
        read += 1;
    }
    assert_eq!(
        last.len(),
        expected.len(),
        "{topic}: distinct keys in the output"
    );
    let wrong = expected
        .iter()
        .filter(|(k, c)| last.get(*k) != Some(c))
        .count();
    assert_eq!(wrong, 0, "{topic}: keys whose final count is wrong");
    read
}
