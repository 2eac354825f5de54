//! The `driver` bench's click workload (also counted by the `profile_count` example): 20,000
//! records over 1,000 skewed keys and 4 partitions, keyed like Kafka's default partitioner.

use bytes::Bytes;
use kstreams_core::partitioner::default_partition;

/// Records of the workload.
pub const RECORDS: usize = 20_000;
/// Distinct keys (`user-00000` …); every one occurs.
pub const KEYS: u64 = 1_000;
/// Partitions of the input and output topics.
pub const PARTITIONS: i32 = 4;

/// Pre-serialized input: (partition, key, value, timestamp).
pub type Clicks = Vec<(i32, Bytes, Bytes, i64)>;

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The workload, the same on every call.
pub fn clicks() -> Clicks {
    (0..RECORDS as u64)
        .map(|i| {
            let r = splitmix64(i);
            // Product of two uniform draws: hot keys near 0, a long tail; every key occurs.
            let k = if i < KEYS {
                i
            } else {
                (r % KEYS) * ((r >> 32) % KEYS) / KEYS
            };
            let key = Bytes::from(format!("user-{k:05}"));
            let partition = default_partition(&key, PARTITIONS);
            (partition, key, Bytes::from_static(b"click"), i as i64)
        })
        .collect()
}
