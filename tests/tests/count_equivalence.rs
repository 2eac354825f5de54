//! `BatchCountAggregator` and `RecordCountAggregator` give identical output records and store
//! contents on the same input, with memory and with LMDB stores, and both match a model of
//! counting.

mod common;

use std::collections::HashMap;

use common::*;
use kstreams_core::prelude::*;

const PARTITIONS: i32 = 3;

/// 600 keyed records over 37 keys with a skewed distribution, deterministic.
fn input() -> Vec<Input> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    (0..600)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Squaring skews towards small key numbers: a few hot keys, many cold ones.
            let k = (x % 37) * (x % 37) / 37;
            Input::new(format!("key-{k}"), format!("v{i}"), 1_000 + (i as i64) * 10)
        })
        .collect()
}

struct Outcome {
    output: Vec<Record<String, i64>>,
    stores: Vec<Vec<(String, i64)>>,
    all: Vec<(String, i64)>,
    committed: Vec<Option<i64>>,
}

/// Runs the count topology with `counter` on the input, piped and processed in three rounds (so
/// later rounds read counts committed by earlier ones).
fn run<S>(stores: &Stores, counter: S, batch_size: usize) -> (Outcome, Vec<Piped>)
where
    S: ProcessorSupplier<String, String, String, i64>,
{
    let mut driver = stores.driver(count_topology(counter), PARTITIONS, batch_size);
    let input = input();
    let mut next = HashMap::new();
    let mut piped = Vec::new();
    for round in input.chunks(250) {
        piped.extend(pipe(&mut driver, PARTITIONS, round, &mut next));
        driver.process().unwrap();
    }
    let output = driver
        .output_topic(COUNTS, StringSerde, I64Serde)
        .read_records(&mut driver)
        .unwrap();
    let outcome = Outcome {
        output,
        stores: store_by_partition(&mut driver, PARTITIONS).unwrap(),
        all: driver.store_entries(STORE).unwrap(),
        committed: (0..PARTITIONS)
            .map(|p| driver.committed_offset(WORDS, p))
            .collect(),
    };
    (outcome, piped)
}

fn check(stores_of: fn() -> Stores) {
    for batch_size in [1, 2, 7, 64, 1000] {
        let (batch, piped) = run(
            &stores_of(),
            BatchCountAggregator::supplier(STORE),
            batch_size,
        );
        let (record, _) = run(
            &stores_of(),
            RecordCountAggregator::supplier(STORE),
            batch_size,
        );
        let ctx = format!("{} stores, batch size {batch_size}", stores_of().name());

        // Same records (key, count, timestamp, headers, output partition and offset), same order.
        assert_eq!(batch.output, record.output, "{ctx}: outputs differ");
        assert_eq!(batch.stores, record.stores, "{ctx}: stores differ");
        assert_eq!(batch.all, record.all, "{ctx}: store_entries differ");
        assert_eq!(batch.committed, record.committed, "{ctx}");

        // And both are right.
        check_against_model(&batch.output, &expected_counts(&piped, |_| true));
        let expected = expected_store(&piped, |_| true);
        for p in 0..PARTITIONS {
            assert_eq!(
                batch.stores[p as usize],
                expected.get(&p).cloned().unwrap_or_default(),
                "{ctx}: store of partition {p}"
            );
            let piped_here = piped.iter().filter(|x| x.partition == p).count() as i64;
            assert_eq!(
                batch.committed[p as usize],
                (piped_here > 0).then_some(piped_here),
                "{ctx}: committed offset of partition {p}"
            );
        }
        // Output timestamps are the input records' timestamps.
        let ts: HashMap<(i32, i64), i64> = piped
            .iter()
            .zip(input())
            .map(|(p, i)| ((p.partition, p.offset), i.timestamp))
            .collect();
        for r in &batch.output {
            assert_eq!(r.timestamp, ts[&source_of(r)], "{ctx}: timestamp kept");
        }
    }
}

#[test]
fn batch_and_record_counters_agree_with_memory_stores() {
    check(Stores::memory);
}

#[test]
fn batch_and_record_counters_agree_with_lmdb_stores() {
    check(Stores::lmdb);
}

/// The sample input really spreads over every partition and repeats keys, so the comparison
/// above is not vacuous.
#[test]
fn sample_input_covers_every_partition_with_repeated_keys() {
    let (outcome, piped) = run(&Stores::memory(), BatchCountAggregator::supplier(STORE), 64);
    for p in 0..PARTITIONS {
        assert!(piped.iter().filter(|x| x.partition == p).count() > 50);
    }
    assert!(outcome.output.iter().any(|r| r.value > 20), "hot keys");
    assert!(outcome.all.len() > 20, "many keys");
}
