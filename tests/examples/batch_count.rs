//! Counts records per key: `input` → count per key → `output`, where the output key is the
//! input key's bytes and the value the key's running count as an 8-byte big-endian i64
//! (Kafka's `LongSerializer` format).
//!
//! ```text
//! cargo run --release --example batch_count -- \
//!     --bootstrap HOST:PORT --input TOPIC --output TOPIC --application-id ID --state-dir DIR \
//!     [--store lmdb|memory] [--mode batch|record] [--runtime tokio|smol] [--exit-when-idle SECS] \
//!     [--logging on|off] [--processing-guarantee at-least-once|exactly-once] [--metrics-addr HOST:PORT]
//! ```
//!
//! - `--mode batch` counts with `BatchCountAggregator` (one store access per distinct key and
//!   batch), `record` with `RecordCountAggregator` (one per record). Default `batch`.
//! - `--store`: LMDB under `DIR/ID/` (default) or memory.
//! - `--logging`: the store `counts` writes its changes to the compacted changelog topic
//!   `<ID>-counts-changelog` (default `on`; the application creates it, or it must exist on
//!   brokers without CreateTopics) and restores from it wherever its tasks move; `off`: the
//!   counts live only in the state directory.
//! - `--processing-guarantee`: `at-least-once` (default) or `exactly-once` (Kafka
//!   transactions; the brokers must support them). See the README's guarantees section.
//! - `--metrics-addr HOST:PORT`: serve the metrics at `http://HOST:PORT/metrics` in
//!   Prometheus' text format (port 0: a free one, printed on stderr).
//! - `--exit-when-idle SECS`: close cleanly once no output has appeared for SECS seconds;
//!   without it the application runs until it fails (or the process is killed).
//! - Without `--bootstrap`, it starts librdkafka's in-process mock cluster, creates the
//!   topics (4 partitions), produces sample input, runs until idle (3 s unless
//!   `--exit-when-idle` says otherwise), prints the final count per key and exits. The other
//!   options then have defaults (`input`, `output`, `batch-count`, a temporary state dir).
//!
//! The final counts go to stdout as `key<TAB>count` lines. On stderr it tells what it does:
//! log records (warnings and errors; `RUST_LOG` selects more, e.g. `RUST_LOG=debug`), the
//! application's state changes and each stream thread's task assignments as they happen, and
//! every 5 s a summary (state, tasks, committed offsets summed per topic and their growth),
//! so a slow run can be told from a stuck one.

#[path = "support/mod.rs"]
pub mod support;

use kstreams_core::prelude::*;
use support::{Args, Example, Mode};

/// Records the no-bootstrap mode produces.
pub const SAMPLE_RECORDS: usize = 400;

/// The example for [`support::run`].
pub const BATCH_COUNT: Example = Example {
    topology,
    own_topics: |_| Vec::new(),
    sample,
    stores: &["counts"],
};

/// `input` → count per key (store "counts", logged unless `--logging off`) → `output`.
pub fn topology(args: &Args) -> Result<Topology, TopologyError> {
    let mut b = TopologyBuilder::new();
    let src = b.add_source("src", &[args.input.as_str()], BytesSerde, BytesSerde)?;
    let count = match args.mode {
        Mode::Batch => {
            b.add_processor("count", &[&src], BatchCountAggregator::supplier("counts"))?
        }
        Mode::Record => {
            b.add_processor("count", &[&src], RecordCountAggregator::supplier("counts"))?
        }
    };
    b.add_store(
        StoreBuilder::key_value("counts", BytesSerde, I64Serde).with_logging(args.logging),
        &["count"],
    )?;
    b.add_sink("sink", &args.output, &[&count], BytesSerde, I64Serde)?;
    b.build()
}

/// [`SAMPLE_RECORDS`] records with 13 distinct keys `word-N`.
pub fn sample() -> support::KeyValues {
    (0..SAMPLE_RECORDS)
        .map(|i| {
            (
                format!("word-{}", (i * 7) % 13).into_bytes(),
                i.to_string().into_bytes(),
            )
        })
        .collect()
}

#[allow(dead_code)] // Not called where a test includes this file as a module.
fn main() {
    support::main("batch_count", "batch-count", &BATCH_COUNT);
}
