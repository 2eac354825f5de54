//! Word counts, twice: once with `BatchCountAggregator` (one `get_batch`, one `put_batch` and
//! one `forward_batch` per batch) and once with the record-at-a-time `RecordCountAggregator`
//! (a get, a put and a forward per record). Both run the same input through a
//! `TopologyTestDriver`; the program prints the final count of every word for each and checks
//! that the two runs produced the same output records and the same store contents.
//!
//! ```text
//! cargo run --example count_aggregation -- [--store memory|lmdb] [--batch-size N]
//! ```

use std::collections::BTreeMap;
use std::error::Error;

use kstreams_core::prelude::*;
use kstreams_store_lmdb::{LmdbConfig, LmdbEnvironment};

const TEXT: &str = "the quick brown fox jumps over the lazy dog \
                    the dog sleeps and the fox runs \
                    a quick dog and a lazy fox meet the brown cat \
                    the cat jumps over the fox";
const PARTITIONS: i32 = 3;

struct Args {
    lmdb: bool,
    batch_size: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        lmdb: false,
        batch_size: 8,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match (flag.as_str(), value.as_str()) {
            ("--store", "memory") => args.lmdb = false,
            ("--store", "lmdb") => args.lmdb = true,
            ("--batch-size", n) => {
                args.batch_size = n.parse().map_err(|_| format!("bad batch size {n:?}"))?;
            }
            _ => return Err(format!("unexpected argument {flag} {value}")),
        }
    }
    Ok(args)
}

/// `words` (word → line) → count → `word-counts` (word → running count), store `counts`.
fn count_topology<S>(counter: S) -> Result<Topology, TopologyError>
where
    S: ProcessorSupplier<String, String, String, i64>,
{
    let mut b = TopologyBuilder::new();
    let words = b.add_source("words", &["words"], StringSerde, StringSerde)?;
    let count = b.add_processor("count", &[&words], counter)?;
    b.add_store(
        StoreBuilder::key_value("counts", StringSerde, I64Serde),
        &["count"],
    )?;
    b.add_sink("sink", "word-counts", &[&count], StringSerde, I64Serde)?;
    b.build()
}

/// What one run produced.
struct Run {
    batches: u64,
    output: Vec<Record<String, i64>>,
    store: Vec<(String, i64)>,
}

fn run(topology: Topology, args: &Args) -> Result<Run, Box<dyn Error>> {
    let builder = TopologyTestDriver::builder(topology)
        .topic("words", PARTITIONS)
        .topic("word-counts", PARTITIONS)
        .batch_size(args.batch_size);
    // The LMDB environment lives in a temporary directory, removed when `dir` drops (after the driver).
    let dir = tempfile::tempdir()?;
    let builder = if args.lmdb {
        builder.store_factory(LmdbEnvironment::open(LmdbConfig::new(dir.path()))?)
    } else {
        builder
    };
    let mut driver = builder.build()?;

    let input = driver.input_topic("words", StringSerde, StringSerde);
    for (i, word) in TEXT.split_whitespace().enumerate() {
        // Keyed by word: Kafka's default partitioner sends each word to one of 3 partitions.
        input.pipe(
            &mut driver,
            word.to_owned(),
            format!("word {i}"),
            1000 * i as i64,
        )?;
    }
    let output = driver
        .output_topic("word-counts", StringSerde, I64Serde)
        .read_records(&mut driver)?;
    let store = driver.store_entries::<String, i64>("counts")?;
    let batches = driver.tasks().map(|t| t.metrics().batches).sum();
    Ok(Run {
        batches,
        output,
        store,
    })
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = parse_args().map_err(|e| {
        format!("{e}\nusage: count_aggregation [--store memory|lmdb] [--batch-size N]")
    })?;
    let batch = run(
        count_topology(BatchCountAggregator::supplier("counts"))?,
        &args,
    )?;
    let record = run(
        count_topology(RecordCountAggregator::supplier("counts"))?,
        &args,
    )?;

    println!(
        "{} records over {PARTITIONS} partitions, {} store, batch size {}",
        TEXT.split_whitespace().count(),
        if args.lmdb { "LMDB" } else { "memory" },
        args.batch_size,
    );
    println!(
        "batches run: {} (BatchCountAggregator), {} (RecordCountAggregator)\n",
        batch.batches, record.batches
    );
    // The last output record of a word carries its final count (and, in its metadata, the
    // output partition: the same as the input partition, both chosen by murmur2 of the word).
    let finals = |run: &Run| -> BTreeMap<String, (i32, i64)> {
        run.output
            .iter()
            .map(|r| {
                (
                    r.key.clone(),
                    (r.metadata.as_ref().map_or(-1, |m| m.partition), r.value),
                )
            })
            .collect()
    };
    let (batch_counts, record_counts) = (finals(&batch), finals(&record));
    println!(
        "{:<8} {:>9} {:>5} {:>6}",
        "word", "partition", "batch", "record"
    );
    for (word, (partition, count)) in &batch_counts {
        let other = record_counts.get(word).map_or(0, |&(_, c)| c);
        println!("{word:<8} {partition:>9} {count:>5} {other:>6}");
    }

    let same_output = batch.output == record.output;
    let same_store = batch.store == record.store;
    println!(
        "\noutput records identical: {} ({} each); store contents identical: {}",
        yes_no(same_output),
        batch.output.len(),
        yes_no(same_store),
    );
    if !(same_output && same_store && batch_counts == record_counts) {
        return Err("the batch and record-at-a-time counts disagree".into());
    }
    Ok(())
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}
