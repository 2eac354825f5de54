//! One kstreams instance in a process of its own, for end-to-end tests that kill it without a
//! close (`tests/tests/e2e_failover.rs`): `input` → `output` unchanged, under tokio, with the
//! settings of `kstreams_tests::e2e_config::fast_engine_config`.
//!
//! ```text
//! e2e_passthrough_instance BOOTSTRAP INPUT OUTPUT APPLICATION_ID STATE_DIR
//! ```
//!
//! Prints `running` on stdout once the instance is Running; runs until killed or failed.

use kstreams_core::prelude::*;
use kstreams_tokio::{KafkaStreams, Stores, StreamsConfig, StreamsState};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [bootstrap, input, output, app, state_dir] = args.as_slice() else {
        eprintln!(
            "usage: e2e_passthrough_instance BOOTSTRAP INPUT OUTPUT APPLICATION_ID STATE_DIR"
        );
        std::process::exit(2);
    };
    if let Err(error) = run(bootstrap, input, output, app, state_dir) {
        eprintln!("e2e_passthrough_instance: {error}");
        std::process::exit(1);
    }
}

fn run(
    bootstrap: &str,
    input: &str,
    output: &str,
    app: &str,
    state_dir: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut b = TopologyBuilder::new();
    let src = b.add_source("src", &[input], BytesSerde, BytesSerde)?;
    b.add_sink("sink", output, &[&src], BytesSerde, BytesSerde)?;
    let topology = b.build()?;

    let engine = kstreams_tests::e2e_config::fast_engine_config(app, bootstrap);
    let mut config = StreamsConfig::from_engine_config(engine);
    config.state_dir = state_dir.into();
    let handle = KafkaStreams::new(topology, config, Stores::Memory)?.start()?;
    let state = futures_lite::future::block_on(
        handle.wait_for_state(|s| s == StreamsState::Running || s.is_terminal()),
    );
    if state == StreamsState::Running {
        println!("running");
    }
    // Runs until killed (the tests' case) or failed (exits non-zero with the error).
    futures_lite::future::block_on(handle.wait())?;
    Ok(())
}
