//! A snapshot of the count aggregation's output records for the fixed input of the
//! `count_aggregation` example (the same text, 3 partitions): every record's output partition,
//! offset, timestamp, key and running count. Both counters, any batch size and both stores must
//! produce exactly this.

mod common;

use common::*;
use kstreams_core::prelude::*;

/// The input text of `core/examples/count_aggregation.rs`.
const TEXT: &str = "the quick brown fox jumps over the lazy dog \
                    the dog sleeps and the fox runs \
                    a quick dog and a lazy fox meet the brown cat \
                    the cat jumps over the fox";
const PARTITIONS: i32 = 3;

fn output<S>(counter: S, stores: &Stores, batch_size: usize) -> String
where
    S: ProcessorSupplier<String, String, String, i64>,
{
    let mut driver = stores.driver(count_topology(counter), PARTITIONS, batch_size);
    let input = driver.input_topic(WORDS, StringSerde, StringSerde);
    for (i, word) in TEXT.split_whitespace().enumerate() {
        input
            .pipe(
                &mut driver,
                word.to_owned(),
                format!("word {i}"),
                1000 * i as i64,
            )
            .unwrap();
    }
    driver
        .output_topic(COUNTS, StringSerde, I64Serde)
        .read_records(&mut driver)
        .unwrap()
        .iter()
        .map(|r| {
            let m = r.metadata.as_ref().unwrap();
            format!(
                "{}-{}@{:<2} ts={:<5} {} = {}\n",
                m.topic, m.partition, m.offset, r.timestamp, r.key, r.value
            )
        })
        .collect()
}

#[test]
fn count_aggregation_output() {
    let batch = output(BatchCountAggregator::supplier(STORE), &Stores::memory(), 8);
    insta::assert_snapshot!(batch);

    for batch_size in [1, 8, 1000] {
        // Fresh stores for every run: an LMDB directory keeps the counts of the previous one.
        for stores in [Stores::memory as fn() -> Stores, Stores::lmdb] {
            let ctx = format!("batch size {batch_size}, {} stores", stores().name());
            assert_eq!(
                output(BatchCountAggregator::supplier(STORE), &stores(), batch_size),
                batch,
                "BatchCountAggregator, {ctx}"
            );
            assert_eq!(
                output(
                    RecordCountAggregator::supplier(STORE),
                    &stores(),
                    batch_size
                ),
                batch,
                "RecordCountAggregator, {ctx}"
            );
        }
    }
}
