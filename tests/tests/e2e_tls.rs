//! TLS and SASL over TLS against crabka-broker 0.3.0 (`tests/src/crabka_secured.rs`), with
//! certificates made by the test (rcgen, `tls_support`): a passthrough over an SSL listener
//! and a batch count over a SASL_SSL listener (SCRAM-SHA-512, configured from Kafka-style
//! properties) are exact, on tokio and smol; an untrusted broker certificate, one for
//! another name, and TLS dialled at the broker's PLAINTEXT listener stop the application
//! quickly with their typed `StreamsError::Tls`.
//!
//! The independent client (rdkafka, built without OpenSSL) produces and reads through the
//! broker's PLAINTEXT admin listener, which these brokers advertise; the application
//! bootstraps from the secured listener and maps the advertised address to it, so every
//! connection of kstreams goes through TLS. Its certificates are checked against the
//! advertised host (`127.0.0.1`), as Kafka clients check them. A missing broker fails the
//! tests.

mod adapter_support;
mod e2e_support;
mod tls_support;

use std::path::Path;
use std::time::{Duration, Instant};

use e2e_support::*;
use kstreams_core::sasl::SaslMechanism;
use kstreams_io_common::{Stores, StreamsConfig, StreamsError, TlsConfig, TlsErrorKind};
use kstreams_tests::crabka_secured::{SecuredCrabka, SecuredListener, SecuredOptions, TlsFiles};
use kstreams_tests::e2e_config::fast_engine_config;
use tls_support::{Authority, Validity, write_pem};

const INPUT: &str = "tls-in";
const OUTPUT: &str = "tls-out";
const SETTLE: Duration = Duration::from_millis(500);
const USER: &str = "tls-user";
const PASSWORD: &str = "tls-p4ssword";
/// A handshake failure must stop the application within this (it is never retried).
const FAIL_FAST: Duration = Duration::from_secs(5);

/// A broker whose secured listener (`SSL`, or `SASL_SSL` with SCRAM-SHA-512 when `sasl`)
/// presents a certificate for `names` signed by `ca`; the files live in `dir`.
fn broker(ca: &Authority, names: &[&str], sasl: bool, dir: &Path) -> SecuredCrabka {
    let identity = ca.server(names, Validity::Now);
    let tls = TlsFiles {
        cert_path: write_pem(dir, "server.crt", &identity.certificate),
        key_path: write_pem(dir, "server.key", &identity.key),
        client_ca_path: None,
        require_client_certificate: false,
    };
    let listener = if sasl {
        SecuredListener::SaslSsl {
            tls,
            mechanisms: vec![SaslMechanism::ScramSha512],
        }
    } else {
        SecuredListener::Ssl(tls)
    };
    let options = SecuredOptions {
        advertise_admin_listener: true,
        ..SecuredOptions::default()
    };
    let broker = SecuredCrabka::start_with(listener, options)
        .unwrap_or_else(|e| panic!("crabka-broker with a TLS listener: {e}"));
    broker.create_topic(INPUT, PARTITIONS).expect("input topic");
    broker
        .create_topic(OUTPUT, PARTITIONS)
        .expect("output topic");
    broker
}

/// The application's config over the SSL listener, trusting `ca_file`.
fn ssl_config(broker: &SecuredCrabka, app: &str, ca_file: &Path, state: &Path) -> StreamsConfig {
    let mut engine = fast_engine_config(app, &broker.bootstrap());
    // crabka-broker 0.3.0 refuses the broker-default replication factor (-1).
    engine.internal_topics.replication_factor = 1;
    let mut config = StreamsConfig::from_engine_config(engine)
        .map_broker_address(broker.admin_bootstrap(), broker.bootstrap())
        .with_tls(TlsConfig::new().with_ca_file(ca_file));
    config.state_dir = state.to_owned();
    config
}

fn ssl_passthrough(adapter: Adapter, app: &str) {
    let dir = tempfile::tempdir().expect("certificate dir");
    let ca = Authority::new("kstreams e2e CA");
    let ca_file = write_pem(dir.path(), "ca.pem", ca.pem());
    let broker = broker(&ca, &["localhost", "127.0.0.1"], false, dir.path());
    let admin = broker.admin_bootstrap();
    let state = tempfile::tempdir().expect("state dir");
    let input = numbered_input(0, 1_000, 17);
    let ends = end_offsets(&input, &produce(&admin, INPUT, &input));
    let handle = adapter.start(
        passthrough_topology(INPUT, OUTPUT),
        ssl_config(&broker, app, &ca_file, state.path()),
        Stores::Memory,
    );
    let output = read_exactly(&admin, OUTPUT, input.len(), SETTLE);
    assert_passthrough_exact(&input, &output);
    close(&handle);
    assert_committed_at_end(&admin, app, INPUT, &ends);
}

#[test]
fn crabka_ssl_passthrough_tokio() {
    bounded(|| ssl_passthrough(Adapter::Tokio, "tls-pass-tokio"));
}

#[test]
fn crabka_ssl_passthrough_smol() {
    bounded(|| ssl_passthrough(Adapter::Smol, "tls-pass-smol"));
}

/// A logged batch count over SASL_SSL (SCRAM-SHA-512), the whole configuration from
/// Kafka-style properties as a user of a managed cluster writes them.
fn sasl_ssl_count(adapter: Adapter, app: &str) {
    let dir = tempfile::tempdir().expect("certificate dir");
    let ca = Authority::new("kstreams e2e CA");
    let ca_file = write_pem(dir.path(), "ca.pem", ca.pem());
    let broker = broker(&ca, &["localhost", "127.0.0.1"], true, dir.path());
    broker
        .create_scram_user(SaslMechanism::ScramSha512, USER, PASSWORD)
        .unwrap_or_else(|e| panic!("creating the SCRAM user: {e}\n{}", broker.log_tail()));
    let admin = broker.admin_bootstrap();
    let state = tempfile::tempdir().expect("state dir");
    let bootstrap = broker.bootstrap();
    let ca_location = ca_file.display().to_string();
    let state_dir = state.path().display().to_string();
    let config = StreamsConfig::from_properties([
        ("application.id", app),
        ("bootstrap.servers", bootstrap.as_str()),
        ("security.protocol", "SASL_SSL"),
        ("sasl.mechanism", "SCRAM-SHA-512"),
        ("sasl.username", USER),
        ("sasl.password", PASSWORD),
        ("ssl.ca.location", ca_location.as_str()),
        ("state.dir", state_dir.as_str()),
        ("commit.interval.ms", "100"),
        ("replication.factor", "1"),
        ("session.timeout.ms", "6000"),
        ("heartbeat.interval.ms", "500"),
    ])
    .expect("valid properties")
    .map_broker_address(broker.admin_bootstrap(), broker.bootstrap());
    let input = numbered_input(0, 1_000, 17);
    let ends = end_offsets(&input, &produce(&admin, INPUT, &input));
    let handle = adapter.start(count_topology(INPUT, OUTPUT), config, Stores::Lmdb);
    let output = read_exactly(&admin, OUTPUT, input.len(), SETTLE);
    assert_counts_exact(&input, &output);
    close(&handle);
    assert_committed_at_end(&admin, app, INPUT, &ends);
}

#[test]
fn crabka_sasl_ssl_count_from_properties_tokio() {
    bounded(|| sasl_ssl_count(Adapter::Tokio, "tls-sasl-tokio"));
}

#[test]
fn crabka_sasl_ssl_count_from_properties_smol() {
    bounded(|| sasl_ssl_count(Adapter::Smol, "tls-sasl-smol"));
}

/// Starts an application against a broker whose certificate names `names`, trusting the
/// broker's CA (`signer_is_trusted`) or another one; checks it stops quickly with the
/// typed error (a name mismatch, or an untrusted certificate).
fn failing_handshake(adapter: Adapter, app: &str, signer_is_trusted: bool, names: &[&str]) {
    let dir = tempfile::tempdir().expect("certificate dir");
    let signer = Authority::new("broker CA");
    let trusted = if signer_is_trusted {
        None
    } else {
        Some(Authority::new("another CA"))
    };
    let ca_file = write_pem(
        dir.path(),
        "ca.pem",
        trusted.as_ref().unwrap_or(&signer).pem(),
    );
    let broker = broker(&signer, names, false, dir.path());
    let state = tempfile::tempdir().expect("state dir");
    let started = Instant::now();
    let handle = adapter.start(
        passthrough_topology(INPUT, OUTPUT),
        ssl_config(&broker, app, &ca_file, state.path()),
        Stores::Memory,
    );
    let waiting = handle.clone();
    let result = kstreams_tests::bounded::bounded("the failing application", WAIT, move || {
        block_on(waiting.wait())
    });
    let error = result.expect_err("the handshake must fail");
    let elapsed = started.elapsed();
    assert!(
        elapsed < FAIL_FAST,
        "stopped after {elapsed:?}, not within {FAIL_FAST:?}: {error}"
    );
    let StreamsError::Tls {
        kind, broker: peer, ..
    } = &error
    else {
        panic!("not a TLS error: {error:?}\n{}", broker.log_tail());
    };
    let expected = if signer_is_trusted {
        TlsErrorKind::NameMismatch
    } else {
        TlsErrorKind::UntrustedCertificate
    };
    assert_eq!(*kind, expected, "{error}");
    assert!(peer.starts_with("127.0.0.1:"), "{peer}");
    eprintln!("failed in {elapsed:?}: {error}");
}

#[test]
fn crabka_ssl_untrusted_certificate_fails_fast_tokio() {
    bounded(|| {
        failing_handshake(
            Adapter::Tokio,
            "tls-untrusted-tokio",
            false,
            &["localhost", "127.0.0.1"],
        )
    });
}

#[test]
fn crabka_ssl_untrusted_certificate_fails_fast_smol() {
    bounded(|| {
        failing_handshake(
            Adapter::Smol,
            "tls-untrusted-smol",
            false,
            &["localhost", "127.0.0.1"],
        )
    });
}

#[test]
fn crabka_ssl_name_mismatch_fails_fast_tokio() {
    bounded(|| failing_handshake(Adapter::Tokio, "tls-name-tokio", true, &["kafka.example"]));
}

#[test]
fn crabka_ssl_name_mismatch_fails_fast_smol() {
    bounded(|| failing_handshake(Adapter::Smol, "tls-name-smol", true, &["kafka.example"]));
}

/// Dials the broker's PLAINTEXT listener with TLS: the broker closes the hello unanswered,
/// answers the plaintext-listener probe (ApiVersions v0), and the application stops quickly
/// with `NotTls`, saying the port speaks plaintext Kafka.
fn tls_to_a_plaintext_port(adapter: Adapter, app: &str) {
    let dir = tempfile::tempdir().expect("certificate dir");
    let ca = Authority::new("broker CA");
    let ca_file = write_pem(dir.path(), "ca.pem", ca.pem());
    let broker = broker(&ca, &["localhost", "127.0.0.1"], false, dir.path());
    let mut engine = fast_engine_config(app, &broker.admin_bootstrap());
    engine.internal_topics.replication_factor = 1;
    let mut config =
        StreamsConfig::from_engine_config(engine).with_tls(TlsConfig::new().with_ca_file(ca_file));
    let state = tempfile::tempdir().expect("state dir");
    config.state_dir = state.path().to_owned();
    let started = Instant::now();
    let handle = adapter.start(passthrough_topology(INPUT, OUTPUT), config, Stores::Memory);
    let waiting = handle.clone();
    let result = kstreams_tests::bounded::bounded("the failing application", WAIT, move || {
        block_on(waiting.wait())
    });
    let error = result.expect_err("TLS to a plaintext port must fail");
    let elapsed = started.elapsed();
    assert!(
        elapsed < FAIL_FAST,
        "stopped after {elapsed:?}, not within {FAIL_FAST:?}: {error}"
    );
    let StreamsError::Tls {
        kind,
        broker: peer,
        detail,
        ..
    } = &error
    else {
        panic!("not a TLS error: {error:?}\n{}", broker.log_tail());
    };
    assert_eq!(*kind, TlsErrorKind::NotTls, "{error}");
    assert_eq!(*peer, broker.admin_bootstrap());
    assert!(detail.contains("speaks plaintext Kafka"), "{error}");
    eprintln!("failed in {elapsed:?}: {error}");
}

#[test]
fn crabka_tls_to_a_plaintext_port_fails_fast_tokio() {
    bounded(|| tls_to_a_plaintext_port(Adapter::Tokio, "tls-plaintext-tokio"));
}

#[test]
fn crabka_tls_to_a_plaintext_port_fails_fast_smol() {
    bounded(|| tls_to_a_plaintext_port(Adapter::Smol, "tls-plaintext-smol"));
}
