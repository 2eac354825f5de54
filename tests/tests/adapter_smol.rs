//! `kstreams-smol` against the simulated cluster over real loopback TCP
//! (see `adapter_support`), under smol and under async-std.

mod adapter_support;

use std::future::Future;

use adapter_support::{
    StoreKind, TEST_TIMEOUT, bootstrap_outage_flow, count_flow, failure_flow, two_threads_flow,
};
use kstreams_smol::Smol;

/// Runs `body` under smol; panics (never hangs) past [`TEST_TIMEOUT`].
fn smol_bounded(body: impl Future<Output = ()>) {
    smol::block_on(futures_lite::future::or(body, async {
        smol::Timer::after(TEST_TIMEOUT).await;
        panic!("test timed out");
    }));
}

/// Runs `body` under async-std's runtime; panics (never hangs) past [`TEST_TIMEOUT`].
fn async_std_bounded(body: impl Future<Output = ()>) {
    async_std::task::block_on(async {
        async_std::future::timeout(TEST_TIMEOUT, body)
            .await
            .expect("test timed out");
    });
}

#[test]
fn smol_counts_end_to_end_and_close_leaves_the_group() {
    smol_bounded(count_flow::<Smol>(21, "smol-count"));
}

#[test]
fn smol_two_stream_threads_split_the_partitions_with_lmdb() {
    smol_bounded(two_threads_flow::<Smol>(22, "smol-two", StoreKind::Lmdb));
}

#[test]
fn async_std_counts_end_to_end_and_close_leaves_the_group() {
    async_std_bounded(count_flow::<Smol>(23, "async-std-count"));
}

#[test]
fn async_std_two_stream_threads_split_the_partitions() {
    async_std_bounded(two_threads_flow::<Smol>(
        24,
        "async-std-two",
        StoreKind::Memory,
    ));
}

#[test]
fn smol_a_refused_bootstrap_is_retried_by_the_engine() {
    smol_bounded(bootstrap_outage_flow::<Smol>(25, "smol-outage"));
}

#[test]
fn async_std_a_failed_engine_ends_the_instance_in_error() {
    async_std_bounded(failure_flow::<Smol>(26, "async-std-fail"));
}
