//! TLS under `kstreams-tokio` and `kstreams-smol`, for real (rustls on both ends, certificates
//! made by the test): the count topology runs exactly over TLS and over mutual TLS through a
//! TLS-terminating proxy in front of the simulated cluster (see `tls_support`), and each
//! misconfiguration (untrusted CA, name mismatch, expired or not yet valid certificate,
//! plaintext listener, missing or untrusted client certificate) stops the instance quickly
//! with its typed `StreamsError::Tls`, the same on both adapters; a listener that closes
//! connections without a byte (a broker restarting behind a proxy) is retried, not taken for a
//! plaintext listener.

mod adapter_support;
mod tls_support;

use std::future::Future;

use adapter_support::TEST_TIMEOUT;
use kstreams_smol::Smol;
use kstreams_tokio::Tokio;
use tls_support::{
    Misconfiguration as M, Refusal, count_over_tls, count_through_refusals, misconfigured,
    missing_ca_file,
};

/// Runs `body` under smol; panics (never hangs) past [`TEST_TIMEOUT`].
fn smol_bounded(body: impl Future<Output = ()>) {
    smol::block_on(futures_lite::future::or(body, async {
        smol::Timer::after(TEST_TIMEOUT).await;
        panic!("test timed out");
    }));
}

/// Runs `body` under tokio; panics (never hangs) past [`TEST_TIMEOUT`].
fn tokio_bounded(body: impl Future<Output = ()>) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(async {
            tokio::time::timeout(TEST_TIMEOUT, body)
                .await
                .expect("test timed out");
        });
}

#[test]
fn tokio_counts_exactly_over_tls() {
    tokio_bounded(count_over_tls::<Tokio>(31, "tokio-tls", false));
}

#[test]
fn smol_counts_exactly_over_tls() {
    smol_bounded(count_over_tls::<Smol>(32, "smol-tls", false));
}

#[test]
fn tokio_counts_exactly_over_mutual_tls() {
    tokio_bounded(count_over_tls::<Tokio>(33, "tokio-mtls", true));
}

#[test]
fn smol_counts_exactly_over_mutual_tls() {
    smol_bounded(count_over_tls::<Smol>(34, "smol-mtls", true));
}

/// Connections the proxy turns away before it serves TLS: more than the 3 unanswered
/// handshakes after which kstreams used to take the broker for a plaintext listener.
const REFUSED_FIRST: usize = 10;

/// Handshakes the proxy answers with an `internal_error` alert before it serves TLS (one
/// used to stop the instance).
const ALERTED_FIRST: usize = 3;

#[test]
fn tokio_retries_a_listener_that_closes_until_it_serves_tls() {
    tokio_bounded(count_through_refusals::<Tokio>(
        35,
        "tokio-tls-closes",
        false,
        REFUSED_FIRST,
        Refusal::Close,
    ));
}

#[test]
fn smol_retries_a_listener_that_closes_until_it_serves_tls() {
    smol_bounded(count_through_refusals::<Smol>(
        36,
        "smol-tls-closes",
        true,
        REFUSED_FIRST,
        Refusal::Close,
    ));
}

#[test]
fn tokio_retries_internal_error_alerts() {
    tokio_bounded(count_through_refusals::<Tokio>(
        37,
        "tokio-tls-alerts",
        false,
        ALERTED_FIRST,
        Refusal::InternalError,
    ));
}

#[test]
fn smol_retries_internal_error_alerts() {
    smol_bounded(count_through_refusals::<Smol>(
        38,
        "smol-tls-alerts",
        true,
        ALERTED_FIRST,
        Refusal::InternalError,
    ));
}

const CASES: [M; 7] = [
    M::UntrustedCa,
    M::NameMismatch,
    M::Expired,
    M::NotYetValid,
    M::PlaintextListener,
    M::NoClientCertificate,
    M::UntrustedClientCertificate,
];

#[test]
fn tokio_every_misconfiguration_fails_fast_with_its_kind() {
    for case in CASES {
        tokio_bounded(misconfigured::<Tokio>(case, "tokio-tls-fail"));
    }
}

#[test]
fn smol_every_misconfiguration_fails_fast_with_its_kind() {
    for case in CASES {
        smol_bounded(misconfigured::<Smol>(case, "smol-tls-fail"));
    }
}

#[test]
fn a_missing_ca_file_fails_when_the_instance_is_built() {
    missing_ca_file::<Tokio>();
    missing_ca_file::<Smol>();
}
