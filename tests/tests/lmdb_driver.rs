//! The test driver on LMDB stores: what `process` commits is in the LMDB environment when it is
//! reopened (read here through `kstreams_store_lmdb`'s own API, bytes and all), what a failed
//! run wrote is not, and a new driver on the reopened environment counts on from the committed
//! state.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::path::Path;

use bytes::Bytes;
use common::*;
use kstreams_core::error::TaskError;
use kstreams_core::prelude::*;
use kstreams_core::testing::DriverError;
use kstreams_store_api::KvBackend;
use kstreams_store_lmdb::{LmdbConfig, LmdbEnvironment};

const PARTITIONS: i32 = 2;

fn driver(env: &LmdbEnvironment, batch_size: usize) -> TopologyTestDriver {
    TopologyTestDriver::builder(count_topology(BatchCountAggregator::supplier(STORE)))
        .topic(WORDS, PARTITIONS)
        .topic(COUNTS, PARTITIONS)
        .batch_size(batch_size)
        .store_factory(env.clone())
        .build()
        .unwrap()
}

fn words(text: &str) -> Vec<Input> {
    text.split_whitespace()
        .enumerate()
        .map(|(i, w)| Input::new(w, "", i as i64))
        .collect()
}

/// Every committed entry of `counts` in each partition, decoded, read straight from LMDB
/// through a freshly opened environment (which fails if anything still holds the directory).
fn committed_counts(dir: &Path) -> Vec<BTreeMap<String, i64>> {
    let env = LmdbEnvironment::open(LmdbConfig::new(dir)).expect("the driver released the env");
    (0..PARTITIONS)
        .map(|p| {
            let store = env.open_store(STORE, p).unwrap();
            assert_eq!(store.uncommitted_len(), 0);
            let entries = store.range(Bound::Unbounded, Bound::Unbounded).unwrap();
            assert_eq!(store.committed_len().unwrap(), entries.len() as u64);
            entries
                .into_iter()
                .map(|(k, v)| {
                    let v: [u8; 8] = v.as_ref().try_into().expect("I64Serde writes 8 bytes");
                    (
                        String::from_utf8(k.to_vec()).unwrap(),
                        i64::from_be_bytes(v),
                    )
                })
                .collect()
        })
        .collect()
}

fn expected(piped: &[Piped]) -> Vec<BTreeMap<String, i64>> {
    let by_partition = expected_store(piped, |_| true);
    (0..PARTITIONS)
        .map(|p| {
            by_partition
                .get(&p)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .collect()
        })
        .collect()
}

#[test]
fn committed_counts_survive_reopening_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let mut next = HashMap::new();
    let first = words("the cat saw the dog and the dog saw the cat run");
    let piped = {
        let env = LmdbEnvironment::open(LmdbConfig::new(dir.path())).unwrap();
        let mut driver = driver(&env, 4);
        let piped = pipe(&mut driver, PARTITIONS, &first, &mut next);
        driver.process().unwrap();
        for p in 0..PARTITIONS {
            let n = piped.iter().filter(|x| x.partition == p).count() as i64;
            assert_eq!(driver.committed_offset(WORDS, p), Some(n));
        }
        piped
    }; // driver and environment dropped: LMDB closed
    let committed = committed_counts(dir.path());
    assert_eq!(committed, expected(&piped));
    assert_eq!(
        committed.iter().filter_map(|m| m.get("the")).sum::<i64>(),
        4
    );
    assert!(
        committed.iter().all(|m| !m.is_empty()),
        "both partitions used"
    );

    // A new driver on the reopened environment counts on from the committed counts.
    let env = LmdbEnvironment::open(LmdbConfig::new(dir.path())).unwrap();
    let mut driver = driver(&env, 1000);
    let second = words("the end of the cat");
    let mut next_again = HashMap::new();
    let more = pipe(&mut driver, PARTITIONS, &second, &mut next_again);
    let output = driver
        .output_topic(COUNTS, StringSerde, I64Serde)
        .read_records(&mut driver)
        .unwrap();
    // (The second driver numbers offsets from 0 again; the provenance headers say so too.)
    let mut running = committed.clone();
    let expected_output: HashMap<(i32, i64), (String, i64)> = more
        .iter()
        .map(|m| {
            let c = running[m.partition as usize]
                .entry(m.key.clone())
                .or_insert(0);
            *c += 1;
            ((m.partition, m.offset), (m.key.clone(), *c))
        })
        .collect();
    check_against_model(&output, &expected_output);
    let the: Vec<i64> = output
        .iter()
        .filter(|r| r.key == "the")
        .map(|r| r.value)
        .collect();
    assert_eq!(the, [5, 6]);
    drop(driver);
    drop(env);
    let all: Vec<Piped> = piped.into_iter().chain(more).collect();
    assert_eq!(committed_counts(dir.path()), expected(&all));
}

#[test]
fn a_failed_run_leaves_only_the_committed_counts_in_lmdb() {
    let dir = tempfile::tempdir().unwrap();
    let env = LmdbEnvironment::open(LmdbConfig::new(dir.path())).unwrap();
    let mut driver = driver(&env, 3);
    let mut next = HashMap::new();
    let piped = pipe(&mut driver, PARTITIONS, &words("a b c a b a"), &mut next);
    driver.process().unwrap();

    // More good records on every partition, then an undeserializable one on partition 0: the
    // run fails and rolls back everything since the last commit, on every task.
    pipe(&mut driver, PARTITIONS, &words("a b c d e f g"), &mut next);
    let bad_offset = driver
        .pipe_raw(
            WORDS,
            Some(0),
            Some(Bytes::from_static(b"k")),
            Some(Bytes::from_static(&[0xc3, 0x28])),
            99,
            Headers::new(),
        )
        .unwrap();
    next.insert(0, bad_offset + 1);
    pipe(&mut driver, PARTITIONS, &words("a a a"), &mut next);
    let err = driver.process().unwrap_err();
    assert!(
        matches!(
            &err,
            DriverError::Task(TaskError::Deserialization { source, .. })
                if source.offset == bad_offset && source.partition == 0
        ),
        "{err}"
    );
    // Batches of partition 0 before the bad record did run (the task's committable offset moved
    // past the last commit) — so their writes reached the store and had to be rolled back.
    let committed = driver.committed_offset(WORDS, 0).unwrap();
    let progressed = driver
        .tasks()
        .flat_map(|t| t.committable_offsets())
        .find(|(tp, _)| tp.partition == 0)
        .map(|(_, o)| o)
        .unwrap();
    assert!(
        committed < progressed && progressed <= bad_offset,
        "committed {committed}, processed up to {progressed}, bad record at {bad_offset}"
    );
    drop(driver);
    drop(env);
    assert_eq!(committed_counts(dir.path()), expected(&piped));
}
