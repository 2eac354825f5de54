//! Word count: input values are lines of text; the output key is a word and the value its
//! running count as an 8-byte big-endian i64 (Kafka's `LongSerializer` format).
//!
//! ```text
//! cargo run --release --example wordcount -- \
//!     --bootstrap HOST:PORT --input TOPIC --output TOPIC --application-id ID --state-dir DIR \
//!     [--store lmdb|memory] [--mode batch|record] [--runtime tokio|smol] [--exit-when-idle SECS] \
//!     [--logging on|off] [--processing-guarantee at-least-once|exactly-once] [--metrics-addr HOST:PORT]
//! ```
//!
//! Two sub-topologies joined by a repartition topic, as Kafka Streams' `groupBy` makes one:
//!
//! - lines → split into lower-case words (`flat_map`, the word becomes the key) → the topic
//!   `<ID>-words-repartition`, partitioned by word, so that every occurrence of a word reaches
//!   the same task;
//! - `<ID>-words-repartition` → count per word (`--mode batch`: `BatchCountAggregator`,
//!   `record`: `RecordCountAggregator`; store "counts", logged to `<ID>-counts-changelog`
//!   unless `--logging off`) → `output`.
//!
//! The example creates the repartition topic (CreateTopics, as many partitions as the input)
//! when it does not exist. The options are those of `batch_count`; without `--bootstrap` it
//! runs on an in-process mock cluster with a few sample lines and prints the final counts.
//!
//! The final counts go to stdout as `key<TAB>count` lines. On stderr it tells what it does:
//! log records (warnings and errors; `RUST_LOG` selects more, e.g. `RUST_LOG=debug`), the
//! application's state changes and each stream thread's task assignments as they happen, and
//! every 5 s a summary (state, tasks, committed offsets summed per topic and their growth),
//! so a slow run can be told from a stuck one.

#[path = "support/mod.rs"]
pub mod support;

use bytes::Bytes;
use kstreams_core::prelude::*;
use support::{Args, Example, Mode};

/// The sample text of the no-bootstrap mode, produced line by line, [`SAMPLE_ROUNDS`] times.
pub const SAMPLE_LINES: [&str; 4] = [
    "the quick brown fox jumps over the lazy dog",
    "The dog sleeps, and the fox runs.",
    "a quick dog and a lazy fox meet the brown cat",
    "the cat jumps over the fox",
];
/// How often the sample lines are produced.
pub const SAMPLE_ROUNDS: usize = 25;

/// The example for [`support::run`].
pub const WORDCOUNT: Example = Example {
    topology,
    own_topics: |args| vec![repartition_topic(args)],
    sample,
    stores: &["counts"],
};

/// `<application id>-words-repartition`.
pub fn repartition_topic(args: &Args) -> String {
    format!("{}-words-repartition", args.application_id)
}

/// The words of a line: runs of letters, digits and apostrophes, lower-cased.
pub fn words(line: &str) -> impl Iterator<Item = String> + '_ {
    line.split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

/// lines → words → repartition topic → count per word → `output`.
pub fn topology(args: &Args) -> Result<Topology, TopologyError> {
    let repartition = repartition_topic(args);
    let mut b = TopologyBuilder::new();
    let lines = b.add_source("lines", &[args.input.as_str()], BytesSerde, StringSerde)?;
    let split = b.flat_map("split", &lines, |_key: &Bytes, line: &String| {
        words(line).map(|word| (word, ())).collect::<Vec<_>>()
    })?;
    b.add_sink(
        "to-repartition",
        &repartition,
        &[&split],
        StringSerde,
        UnitSerde,
    )?;
    let words = b.add_source("words", &[repartition.as_str()], StringSerde, UnitSerde)?;
    let count = match args.mode {
        Mode::Batch => {
            b.add_processor("count", &[&words], BatchCountAggregator::supplier("counts"))?
        }
        Mode::Record => b.add_processor(
            "count",
            &[&words],
            RecordCountAggregator::supplier("counts"),
        )?,
    };
    b.add_store(
        StoreBuilder::key_value("counts", StringSerde, I64Serde).with_logging(args.logging),
        &["count"],
    )?;
    b.add_sink("sink", &args.output, &[&count], StringSerde, I64Serde)?;
    b.build()
}

/// [`SAMPLE_LINES`] [`SAMPLE_ROUNDS`] times, keyless.
pub fn sample() -> support::KeyValues {
    (0..SAMPLE_ROUNDS)
        .flat_map(|_| SAMPLE_LINES)
        .map(|line| (Vec::new(), line.as_bytes().to_vec()))
        .collect()
}

#[allow(dead_code)] // Not called where a test includes this file as a module.
fn main() {
    support::main("wordcount", "wordcount", &WORDCOUNT);
}
