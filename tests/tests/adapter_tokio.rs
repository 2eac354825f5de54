//! `kstreams-tokio` against the simulated cluster over real loopback TCP
//! (see `adapter_support`): count aggregation end to end, clean close, two stream threads.

mod adapter_support;

use adapter_support::{
    StoreKind, TEST_TIMEOUT, bootstrap_outage_flow, count_flow, failure_flow, two_threads_flow,
};
use kstreams_tokio::{KafkaStreams, Stores, StreamsState, Tokio};

#[tokio::test]
async fn counts_end_to_end_and_close_leaves_the_group() {
    tokio::time::timeout(TEST_TIMEOUT, count_flow::<Tokio>(11, "tokio-count"))
        .await
        .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stream_threads_split_the_partitions_with_lmdb() {
    tokio::time::timeout(
        TEST_TIMEOUT,
        two_threads_flow::<Tokio>(12, "tokio-two", StoreKind::Lmdb),
    )
    .await
    .expect("test timed out");
}

/// `run()` drives the instance until another handle closes it; `close()` before `start()`
/// is a direct `NotRunning`, and a closed instance cannot start.
#[tokio::test]
async fn run_until_closed_and_close_before_start() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let (sim, expected) = adapter_support::cluster_with_input(13);
        let server = adapter_support::SimServer::start(sim);
        let app = "tokio-run";
        let streams = KafkaStreams::new(
            adapter_support::count_topology(),
            adapter_support::streams_config(&server, app, 1),
            Stores::Memory,
        )
        .unwrap();
        let handle = streams.handle();
        let run = tokio::spawn(streams.run());
        handle.wait_for_state(|s| s == StreamsState::Running).await;
        adapter_support::eventually("every input offset committed", || {
            adapter_support::all_committed(&server, app)
        });
        adapter_support::assert_exact_output(&server, &expected);
        handle.close().await.unwrap();
        run.await.unwrap().unwrap();
        assert!(adapter_support::group_is_empty(&server, app));

        let idle = KafkaStreams::new(
            adapter_support::count_topology(),
            adapter_support::streams_config(&server, "never", 1),
            Stores::Memory,
        )
        .unwrap();
        idle.handle().close().await.unwrap();
        assert_eq!(idle.state(), StreamsState::NotRunning);
        assert!(idle.start().is_err());
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn a_refused_bootstrap_is_retried_by_the_engine() {
    tokio::time::timeout(
        TEST_TIMEOUT,
        bootstrap_outage_flow::<Tokio>(14, "tokio-outage"),
    )
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn a_failed_engine_ends_the_instance_in_error() {
    tokio::time::timeout(TEST_TIMEOUT, failure_flow::<Tokio>(15, "tokio-fail"))
        .await
        .expect("test timed out");
}
