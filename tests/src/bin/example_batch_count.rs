//! The `batch_count` example (tests/examples/batch_count.rs) as a binary of this package, so
//! that tests can run it as a process of its own and signal it
//! (`tests/tests/example_signals.rs`; `CARGO_BIN_EXE_example_batch_count`). Same code,
//! same command line.

#[path = "../../examples/batch_count.rs"]
#[allow(dead_code)]
mod batch_count;

fn main() {
    batch_count::support::main("batch_count", "batch-count", &batch_count::BATCH_COUNT);
}
