//! Shared by the tests that kill, stop and restart instances: input that keeps flowing
//! while they do, a seeded random sequence for when to do it, waiting until the group let go
//! of a killed member, and the counts' checks that hold across crashes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use super::{Input, Output, WAIT, numbered_input, produce};

/// A small deterministic random sequence (xorshift64*), seeded from `E2E_SEED` or the
/// clock; the seed is printed so a failing run can be repeated.
pub struct Random(u64);

impl Random {
    /// Seeded from `E2E_SEED`, else from the clock; prints the seed for `test`.
    pub fn from_env(test: &str) -> Self {
        let seed = std::env::var("E2E_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        eprintln!("{test}: E2E_SEED={seed}");
        Self(seed.max(1))
    }

    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// Records per chunk of [`produce_continuously`].
pub const CHUNK: usize = 40;
/// The pause between two chunks of [`produce_continuously`].
pub const CHUNK_PAUSE: Duration = Duration::from_millis(100);

/// Produces numbered input (`keys` keys per partition) to `topic` in chunks of [`CHUNK`]
/// every [`CHUNK_PAUSE`] until `stop` is set; returns everything produced (acknowledged), in
/// order.
pub fn produce_continuously(
    bootstrap: String,
    topic: &str,
    keys: usize,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<Input>> {
    let topic = topic.to_owned();
    std::thread::spawn(move || {
        let mut all: Vec<Input> = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let chunk = numbered_input(all.len(), CHUNK, keys);
            produce(&bootstrap, &topic, &chunk);
            all.extend(chunk);
            std::thread::sleep(CHUNK_PAUSE);
        }
        all
    })
}

/// Input records per key.
pub fn expected_counts(input: &[Input]) -> BTreeMap<Vec<u8>, i64> {
    let mut expected = BTreeMap::new();
    for (_, key, _) in input {
        *expected.entry(key.clone()).or_insert(0) += 1;
    }
    expected
}

/// The last count output for each key.
pub fn last_counts(output: &[Output]) -> BTreeMap<Vec<u8>, i64> {
    output
        .iter()
        .map(|o| {
            let count = o.value.as_slice().try_into().map_or(0, i64::from_be_bytes);
            (o.key.clone(), count)
        })
        .collect()
}

/// Whether every key's last count reached its expected count.
pub fn reached(expected: &BTreeMap<Vec<u8>, i64>, last: &BTreeMap<Vec<u8>, i64>) -> bool {
    expected
        .iter()
        .all(|(key, n)| last.get(key).is_some_and(|c| c >= n))
}

/// Checks a count's output under at-least-once across crashes: per key, one output partition,
/// and a last count at least the key's number of input records. The counts may go back (output of an uncommitted interval was
/// written, its changelog writes were not: the restored count is behind) or skip (its
/// changelog writes were, some of its output was not). Returns how often each happened.
pub fn assert_final_counts_at_least(input: &[Input], output: &[Output]) -> CountSteps {
    let mut expected: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
    for (_, key, _) in input {
        *expected.entry(key.clone()).or_insert(0) += 1;
    }
    let mut last: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
    let mut home: BTreeMap<Vec<u8>, i32> = BTreeMap::new();
    let mut steps = CountSteps::default();
    for record in output {
        let count =
            i64::from_be_bytes(record.value.as_slice().try_into().expect("an 8-byte count"));
        let key = String::from_utf8_lossy(&record.key).into_owned();
        assert_eq!(
            *home.entry(record.key.clone()).or_insert(record.partition),
            record.partition,
            "{key}: one output partition"
        );
        assert!(count >= 1, "{key}: count {count} below 1");
        let previous = last.entry(record.key.clone()).or_insert(0);
        match count - *previous {
            1 => {}
            d if d > 1 => steps.skips += 1,
            _ => steps.backs += 1,
        }
        *previous = count;
    }
    for (key, n) in &expected {
        let key_name = String::from_utf8_lossy(key);
        let final_count = last.get(key).copied().unwrap_or(0);
        assert!(
            final_count >= *n,
            "{key_name}: final count {final_count} below the {n} input records"
        );
    }
    assert_eq!(
        last.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "a count for exactly the input keys"
    );
    steps
}

/// How a key's counts moved between consecutive output records, other than up by one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CountSteps {
    /// A count not above the one before (a replay from behind).
    pub backs: usize,
    /// A count more than one above the one before.
    pub skips: usize,
}

/// The members of group `app` as the broker describes them (ListGroups/DescribeGroups through
/// rdkafka), with the group's state.
pub fn group_members(bootstrap: &str, app: &str) -> (String, Vec<String>) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("consumer");
    let list = consumer
        .fetch_group_list(Some(app), Duration::from_secs(10))
        .expect("describe the group");
    list.groups().iter().find(|g| g.name() == app).map_or_else(
        || ("Dead".to_owned(), Vec::new()),
        |g| {
            (
                g.state().to_owned(),
                g.members().iter().map(|m| m.id().to_owned()).collect(),
            )
        },
    )
}

/// Waits until group `app` has no members (fails after [`WAIT`]): a member killed without a
/// LeaveGroup is dropped when its session expires. crabka-broker 0.3.0 drops such a member
/// only while the group is stable and keeps it in any rebalance that completes before — as
/// the leader, the group then waits for its SyncGroup for good — so a test that kills the
/// only member waits for this before it starts the next one.
pub fn wait_group_empty(bootstrap: &str, app: &str) -> Duration {
    let started = Instant::now();
    loop {
        let (state, members) = group_members(bootstrap, app);
        if members.is_empty() {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < WAIT,
            "group {app} still has members after {WAIT:?}: {state} {members:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
