//! Exactly-once end to end. Tansu 0.6.0 has no transactions: an exactly-once application
//! fails at startup there with a typed error. The transactional flows run on crabka-broker
//! (see `tests/src/crabka.rs`), the only broker here that filters aborted transactions for
//! read_committed readers.

mod e2e_support;

use e2e_support::*;
use kstreams_core::client::producer::TransactionError;
use kstreams_core::engine::{EngineError, ProcessingGuarantee};
use kstreams_io_common::{Stores, StreamsError, StreamsState};

const INPUT: &str = "input";
const OUTPUT: &str = "output";
const SETTLE: std::time::Duration = std::time::Duration::from_secs(1);

/// An exactly-once application on a broker without the transaction APIs stops before it
/// processes anything, saying which API is missing; it never runs at-least-once instead.
fn fails_at_startup_without_transactions(broker: Broker) {
    broker.create_topic(INPUT, PARTITIONS);
    broker.create_topic(OUTPUT, PARTITIONS);
    let input = numbered_input(0, 100, 9);
    produce(&broker.bootstrap(), INPUT, &input);
    let app = "e2e-eos-unsupported";
    let state_dir = tempfile::tempdir().unwrap();
    let mut config = streams_config(&broker, app, state_dir.path());
    config.engine.processing_guarantee = ProcessingGuarantee::ExactlyOnce;
    let handle = Adapter::Tokio.start(passthrough_topology(INPUT, OUTPUT), config, Stores::Memory);
    let waiting = handle.clone();
    let error = kstreams_tests::bounded::bounded("the engine's failure", WAIT, move || {
        block_on(waiting.wait())
    })
    .unwrap_err();
    assert!(
        matches!(
            &error,
            StreamsError::Engine { error, .. } if matches!(
                &**error,
                EngineError::Transaction(TransactionError::Unsupported { .. })
            )
        ),
        "{error}"
    );
    assert_eq!(handle.state(), StreamsState::Error);
    let output = read_until(
        &broker.bootstrap(),
        OUTPUT,
        std::time::Duration::from_secs(2),
        |_| true,
    );
    assert!(output.is_empty(), "nothing was written: {output:?}");
}

/// An exactly-once LMDB count on a broker with transactions: a read_committed reader sees
/// every key's counts 1, 2, 3, … exactly once, across a clean restart on the same state.
fn counts_exactly_once(broker: Broker, adapter: Adapter) {
    broker.create_topic(INPUT, PARTITIONS);
    broker.create_topic(OUTPUT, PARTITIONS);
    let app = "e2e-eos-count";
    let state_dir = tempfile::tempdir().unwrap();
    let start = || {
        let mut config = streams_config(&broker, app, state_dir.path());
        config.engine.processing_guarantee = ProcessingGuarantee::ExactlyOnce;
        adapter.start(
            count_topology_logged(INPUT, OUTPUT, true),
            config,
            Stores::Lmdb,
        )
    };
    let first = numbered_input(0, 400, 9);
    produce(&broker.bootstrap(), INPUT, &first);
    let handle = start();
    let output = read_committed_until(&broker.bootstrap(), OUTPUT, SETTLE, |o| {
        o.len() >= first.len()
    });
    assert_counts_exact(&first, &output);
    close(&handle);
    let second = numbered_input(first.len(), 300, 9);
    produce(&broker.bootstrap(), INPUT, &second);
    let handle = start();
    let all: Vec<Input> = first.iter().chain(&second).cloned().collect();
    let output = read_committed_until(&broker.bootstrap(), OUTPUT, SETTLE, |o| {
        o.len() >= all.len()
    });
    assert_counts_exact(&all, &output);
    close(&handle);
}

#[test]
fn crabka_counts_exactly_once_tokio() {
    bounded(|| counts_exactly_once(Broker::crabka(), Adapter::Tokio));
}

#[test]
fn crabka_counts_exactly_once_smol() {
    bounded(|| counts_exactly_once(Broker::crabka(), Adapter::Smol));
}

#[test]
fn tansu_exactly_once_fails_at_startup_without_transactions() {
    bounded(|| fails_at_startup_without_transactions(Broker::tansu()));
}
