//! The workload as an independent client (rdkafka) makes and checks it: the state (every key
//! once) produced before the instances start, the continuous input during the measurement,
//! the instances' progress (committed offsets) and the final counts.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kstreams_tests::reader;
use rdkafka::Offset;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::BaseConsumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};

/// The continuous input writes one record to every partition this often.
pub(crate) const INPUT_EVERY: Duration = Duration::from_millis(10);

/// The 16-byte key of key index `k`; key `k` lives in partition `k % partitions`.
fn key(k: usize) -> Vec<u8> {
    format!("key-{k:012}").into_bytes()
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Counts acknowledged and failed deliveries, and the end offset of each partition.
struct Deliveries {
    ends: std::sync::Mutex<Vec<i64>>,
    acked: AtomicU64,
    failed: AtomicU64,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(message) => {
                let mut ends = self.ends.lock().expect("delivery lock");
                let p = message.partition() as usize;
                ends[p] = ends[p].max(message.offset() + 1);
                self.acked.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                if self.failed.fetch_add(1, Ordering::Relaxed) == 0 {
                    eprintln!("  input delivery failed: {e}");
                }
            }
        }
    }
}

fn producer(bootstrap: &str, partitions: i32) -> BaseProducer<Deliveries> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "120000")
        .create_with_context(Deliveries {
            ends: std::sync::Mutex::new(vec![0; partitions as usize]),
            acked: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        })
        .expect("input producer")
}

fn send(
    producer: &BaseProducer<Deliveries>,
    topic: &str,
    partition: i32,
    key: &[u8],
    value: &[u8],
) {
    let mut record = BaseRecord::to(topic)
        .partition(partition)
        .key(key)
        .payload(value);
    loop {
        match producer.send(record) {
            Ok(()) => break,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                producer.poll(Duration::from_millis(5));
            }
            Err((e, _)) => panic!("producing the input: {e}"),
        }
    }
    producer.poll(Duration::ZERO);
}

fn flush(producer: &BaseProducer<Deliveries>) -> Vec<i64> {
    producer
        .flush(Duration::from_secs(300))
        .expect("flushing the input");
    let context = producer.context();
    assert_eq!(
        context.failed.load(Ordering::Relaxed),
        0,
        "input deliveries failed"
    );
    context.ends.lock().expect("delivery lock").clone()
}

/// Produces every one of `keys` keys once (8-byte values); returns the end offsets.
pub(crate) fn produce_state(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    keys: usize,
) -> Vec<i64> {
    let producer = producer(bootstrap, partitions);
    for k in 0..keys {
        let partition = (k % partitions as usize) as i32;
        send(
            &producer,
            topic,
            partition,
            &key(k),
            &(k as u64).to_be_bytes(),
        );
    }
    flush(&producer)
}

/// The continuous input: one record to every partition every [`INPUT_EVERY`], keys drawn from
/// the state's keys, until stopped.
pub(crate) struct Feed {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<HashMap<usize, i64>>,
}

impl Feed {
    pub(crate) fn start(bootstrap: &str, topic: &str, partitions: i32, keys: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (bootstrap, topic, stop) = (bootstrap.to_owned(), topic.to_owned(), stop.clone());
            std::thread::spawn(move || {
                let producer = producer(&bootstrap, partitions);
                let per_partition = keys.div_ceil(partitions as usize);
                let mut sent: HashMap<usize, i64> = HashMap::new();
                let mut next = Instant::now();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for p in 0..partitions {
                        n += 1;
                        let slot = (splitmix64(n) % per_partition as u64) as usize;
                        let k = (slot * partitions as usize + p as usize).min(keys - 1);
                        // The last slot may fall outside the keys: then it is the last key, of
                        // whatever partition that is.
                        let p = (k % partitions as usize) as i32;
                        send(&producer, &topic, p, &key(k), &n.to_be_bytes());
                        *sent.entry(k).or_insert(0) += 1;
                    }
                    next += INPUT_EVERY;
                    std::thread::sleep(next.saturating_duration_since(Instant::now()));
                }
                flush(&producer);
                sent
            })
        };
        Self { stop, thread }
    }

    /// Fails the bench if the producer stopped on its own (it panicked).
    pub(crate) fn check(&self) {
        assert!(
            !self.thread.is_finished() || self.stop.load(Ordering::Relaxed),
            "the input producer stopped (see its panic above)"
        );
    }

    /// Stops the input; returns how many records each key got (all acknowledged).
    pub(crate) fn stop(self) -> HashMap<usize, i64> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the input producer")
    }
}

/// Waits until group `app` committed at least `ends` on `topic` (fails after `timeout`).
pub(crate) fn wait_committed(
    bootstrap: &str,
    app: &str,
    topic: &str,
    ends: &[i64],
    timeout: Duration,
    mut check: impl FnMut(),
) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", app)
        .set("enable.auto.commit", "false")
        .create()
        .expect("observer consumer");
    let started = Instant::now();
    loop {
        let committed: Vec<i64> = reader::committed_offsets(&consumer, topic, ends.len() as i32)
            .map(|offsets| {
                offsets
                    .into_iter()
                    .map(|o| match o {
                        Offset::Offset(o) => o,
                        _ => 0,
                    })
                    .collect()
            })
            .unwrap_or_else(|_| vec![0; ends.len()]);
        if committed.iter().zip(ends).all(|(c, e)| c >= e) {
            return;
        }
        assert!(
            started.elapsed() < timeout,
            "{app}: committed {committed:?} of {ends:?} after {timeout:?}"
        );
        check();
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// How the final counts must relate to the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    /// Each key's last count equals its input records (nothing processed twice).
    Exact,
    /// At least (a crash: at-least-once may count an uncommitted interval again).
    AtLeast,
}

/// Reads all of `topic` and checks each key's last count against the state (1 per key) plus
/// `sent`; returns the output records read.
pub(crate) fn check_counts(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    keys: usize,
    sent: &HashMap<usize, i64>,
    expect: Expect,
) -> usize {
    let expected = |k: usize| 1 + sent.get(&k).copied().unwrap_or(0);
    let consumer = reader::from_beginning(bootstrap, "rebalance-checker", topic, partitions, &[])
        .expect("checker consumer");
    let mut last: Vec<i64> = vec![0; keys];
    let mut behind = keys;
    let mut read = 0usize;
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut quiet_since = Instant::now();
    while behind > 0 || quiet_since.elapsed() < Duration::from_secs(1) {
        assert!(
            Instant::now() < deadline,
            "{topic}: {behind} keys short of their count after reading {read} records"
        );
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        quiet_since = Instant::now();
        let message = message.unwrap_or_else(|e| panic!("reading {topic}: {e}"));
        let k: usize = message
            .key()
            .and_then(|k| std::str::from_utf8(k).ok())
            .and_then(|k| k.strip_prefix("key-"))
            .and_then(|k| k.parse().ok())
            .unwrap_or_else(|| panic!("{topic}: a key that is not key-<n>"));
        let count = message
            .payload()
            .and_then(|v| <[u8; 8]>::try_from(v).ok())
            .map(i64::from_be_bytes)
            .unwrap_or_else(|| panic!("{topic}: a value that is not an 8-byte count"));
        let before = last[k];
        last[k] = count;
        let reached = |c: i64| c >= expected(k);
        match (reached(before), reached(count)) {
            (false, true) => behind -= 1,
            // A replay from a restored count behind the output (after a crash).
            (true, false) => behind += 1,
            _ => {}
        }
        read += 1;
    }
    let wrong: Vec<(usize, i64, i64)> = (0..keys)
        .filter(|k| match expect {
            Expect::Exact => last[*k] != expected(*k),
            Expect::AtLeast => last[*k] < expected(*k),
        })
        .take(5)
        .map(|k| (k, last[k], expected(k)))
        .collect();
    assert!(
        wrong.is_empty(),
        "{topic}: keys whose last count is wrong ({expect:?}; key, count, input records): {wrong:?}"
    );
    read
}
