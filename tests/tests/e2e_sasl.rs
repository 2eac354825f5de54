//! SASL against crabka-broker 0.3.0 with a SASL_PLAINTEXT listener
//! (`tests/src/crabka_secured.rs`): kstreams authenticates with SCRAM-SHA-256, SCRAM-SHA-512
//! and OAUTHBEARER (unsecured JWT, with a session lifetime of a few seconds so that
//! re-authentication, KIP-368, happens during the run) and passes records through exactly, on
//! tokio and smol; a wrong password stops the application quickly with the typed
//! `EngineError::Authentication`, on both adapters; PLAIN is refused with that error too
//! (crabka 0.3.0 cannot be given PLAIN users, see the launcher's docs).
//!
//! The independent client (rdkafka, built without OpenSSL: no SCRAM, no OAUTHBEARER) produces
//! and reads through the broker's PLAINTEXT listener, which these brokers advertise; the
//! application bootstraps from the SASL listener and maps the advertised address to it, so
//! every connection of kstreams authenticates. A missing broker fails the tests.

mod e2e_support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e_support::*;
use kstreams_core::engine::EngineError;
use kstreams_core::sasl::{
    OAuthBearerToken, OAuthBearerTokenProvider, SaslConfig, SaslError, SaslMechanism, Secret,
};
use kstreams_io_common::{MetricsSnapshot, Stores, StreamsConfig, StreamsError, StreamsHandle};
use kstreams_tests::crabka_secured::{SecuredCrabka, SecuredListener, SecuredOptions};
use kstreams_tests::e2e_config::fast_engine_config;

const INPUT: &str = "sasl-in";
const OUTPUT: &str = "sasl-out";
const SETTLE: Duration = Duration::from_millis(500);
const USER: &str = "streams-user";
/// With a no-break space, which saslprep would map to a space: Kafka does not saslprep.
const PASSWORD: &str = "p4ss,wörd=\u{00A0}!";
/// A failed authentication must stop the application within this (it is never retried).
const FAIL_FAST: Duration = Duration::from_secs(5);

fn broker(options: SecuredOptions) -> SecuredCrabka {
    let listener = SecuredListener::SaslPlaintext {
        mechanisms: vec![
            SaslMechanism::ScramSha256,
            SaslMechanism::ScramSha512,
            SaslMechanism::Plain,
            SaslMechanism::OAuthBearer,
        ],
    };
    let options = SecuredOptions {
        advertise_admin_listener: true,
        ..options
    };
    SecuredCrabka::start_with(listener, options)
        .unwrap_or_else(|e| panic!("crabka-broker with a SASL listener: {e}"))
}

/// The application's config: bootstraps from the SASL listener, dials it for the advertised
/// (admin) address too.
fn config(
    broker: &SecuredCrabka,
    app: &str,
    sasl: SaslConfig,
    state: &std::path::Path,
) -> StreamsConfig {
    let mut engine = fast_engine_config(app, &broker.bootstrap());
    // crabka-broker 0.3.0 refuses the broker-default replication factor (-1).
    engine.internal_topics.replication_factor = 1;
    engine.sasl = Some(sasl);
    let mut config = StreamsConfig::from_engine_config(engine)
        .map_broker_address(broker.admin_bootstrap(), broker.bootstrap());
    config.state_dir = state.to_owned();
    config
}

fn passthrough(adapter: Adapter, app: &str, sasl: impl FnOnce(&SecuredCrabka) -> SaslConfig) {
    let metrics = passthrough_with(
        adapter,
        app,
        SecuredOptions::default(),
        Duration::ZERO,
        sasl,
        |_| {},
    );
    assert_eq!(
        metrics.reauthentications(),
        0,
        "no session lifetime, no re-authentication"
    );
}

/// A passthrough of 1,000 records; a second batch follows after `pause` (to run across
/// session lifetimes); `tune` adjusts the application's config. Returns the application's
/// metrics just before its close.
fn passthrough_with(
    adapter: Adapter,
    app: &str,
    options: SecuredOptions,
    pause: Duration,
    sasl: impl FnOnce(&SecuredCrabka) -> SaslConfig,
    tune: impl FnOnce(&mut StreamsConfig),
) -> MetricsSnapshot {
    let broker = broker(options);
    broker.create_topic(INPUT, PARTITIONS).expect("input topic");
    broker
        .create_topic(OUTPUT, PARTITIONS)
        .expect("output topic");
    let admin = broker.admin_bootstrap();
    let sasl = sasl(&broker);
    let state = tempfile::tempdir().expect("state dir");
    let mut input = numbered_input(0, 500, 17);
    let mut ends = end_offsets(&input, &produce(&admin, INPUT, &input));
    let mut config = config(&broker, app, sasl, state.path());
    tune(&mut config);
    let handle = adapter.start(passthrough_topology(INPUT, OUTPUT), config, Stores::Memory);
    if !pause.is_zero() {
        read_exactly(&admin, OUTPUT, input.len(), Duration::ZERO);
        std::thread::sleep(pause);
        let more = numbered_input(500, 500, 17);
        ends = end_offsets(&more, &produce(&admin, INPUT, &more));
        input.extend(more);
    }
    let output = read_exactly(&admin, OUTPUT, input.len(), SETTLE);
    assert_passthrough_exact(&input, &output);
    let metrics = handle.metrics();
    close(&handle);
    assert_committed_at_end(&admin, app, INPUT, &ends);
    metrics
}

fn scram(mechanism: SaslMechanism) -> impl FnOnce(&SecuredCrabka) -> SaslConfig {
    move |broker| {
        broker
            .create_scram_user(mechanism, USER, PASSWORD)
            .unwrap_or_else(|e| panic!("creating the SCRAM user: {e}\n{}", broker.log_tail()));
        SaslConfig::with_password(mechanism, USER, PASSWORD).expect("a password mechanism")
    }
}

#[test]
fn crabka_sasl_scram_sha256_passthrough_tokio() {
    bounded(|| {
        passthrough(
            Adapter::Tokio,
            "sasl-256-tokio",
            scram(SaslMechanism::ScramSha256),
        )
    });
}

#[test]
fn crabka_sasl_scram_sha512_passthrough_tokio() {
    bounded(|| {
        passthrough(
            Adapter::Tokio,
            "sasl-512-tokio",
            scram(SaslMechanism::ScramSha512),
        )
    });
}

#[test]
fn crabka_sasl_scram_sha512_passthrough_smol() {
    bounded(|| {
        passthrough(
            Adapter::Smol,
            "sasl-512-smol",
            scram(SaslMechanism::ScramSha512),
        )
    });
}

#[test]
fn crabka_sasl_scram_sha256_passthrough_smol() {
    bounded(|| {
        passthrough(
            Adapter::Smol,
            "sasl-256-smol",
            scram(SaslMechanism::ScramSha256),
        )
    });
}

/// Unsecured JWTs (`alg: none`), which crabka's default validator takes, valid for an hour.
struct UnsecuredJwt;

impl OAuthBearerTokenProvider for UnsecuredJwt {
    fn token(&self) -> Result<OAuthBearerToken, String> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_secs();
        let header = b64.encode(r#"{"alg":"none"}"#);
        let claims = b64.encode(format!(
            r#"{{"sub":"{USER}","iat":{now},"exp":{}}}"#,
            now + 3_600
        ));
        Ok(OAuthBearerToken {
            value: Secret::new(format!("{header}.{claims}.")),
            lifetime_ms: i64::try_from((now + 3_600) * 1_000).map_err(|e| e.to_string())?,
            principal: USER.into(),
            extensions: BTreeMap::new(),
        })
    }
}

/// The broker caps OAUTHBEARER sessions at 4 s: the application re-authenticates each
/// connection (at 85–95 % of the lifetime, once its requests in flight are answered) while it
/// waits and passes the second batch. crabka closes a connection whose session expired, and
/// the engine would silently reconnect: so the metrics must show re-authentications and no
/// connection the broker closed. (Fetches wait at most 100 ms here, well inside the 200 ms
/// or more a session has left when its re-authentication comes due: a fetch still held by the
/// broker at the expiry would lose its connection to the race, not to a broken
/// re-authentication.)
#[test]
fn crabka_sasl_oauthbearer_reauthenticates_passthrough_tokio() {
    bounded(|| {
        let metrics = passthrough_with(
            Adapter::Tokio,
            "sasl-oauth-tokio",
            SecuredOptions {
                oauthbearer_max_session_lifetime_seconds: Some(4),
                ..SecuredOptions::default()
            },
            Duration::from_secs(7),
            |_| SaslConfig::oauthbearer(Arc::new(UnsecuredJwt)),
            |config| config.engine.fetch.max_wait = Duration::from_millis(100).into(),
        );
        let connections: Vec<_> = metrics
            .threads
            .iter()
            .map(|t| t.engine.connections)
            .collect();
        // Over 7 s and more of 4 s sessions, each connection open throughout re-authenticates
        // at least once.
        assert!(
            metrics.reauthentications() >= 2,
            "re-authentications: {connections:?}"
        );
        assert!(
            connections.iter().all(|c| c.lost == 0),
            "a connection was closed by the broker (an expired session?): {connections:?}"
        );
    });
}

/// Starts an application with `sasl` and returns how long it took to stop and why.
fn failing_start(
    adapter: Adapter,
    app: &str,
    sasl: impl FnOnce(&SecuredCrabka) -> SaslConfig,
) -> (Duration, StreamsError, String) {
    let broker = broker(SecuredOptions::default());
    broker.create_topic(INPUT, PARTITIONS).expect("input topic");
    broker
        .create_topic(OUTPUT, PARTITIONS)
        .expect("output topic");
    let sasl = sasl(&broker);
    let state = tempfile::tempdir().expect("state dir");
    let started = Instant::now();
    let handle: StreamsHandle = adapter.start(
        passthrough_topology(INPUT, OUTPUT),
        config(&broker, app, sasl, state.path()),
        Stores::Memory,
    );
    let waiting = handle.clone();
    let result = kstreams_tests::bounded::bounded("the failing application", WAIT, move || {
        block_on(waiting.wait())
    });
    let error = result.expect_err("authentication must fail");
    (started.elapsed(), error, broker.log_tail())
}

fn assert_authentication_error(
    (elapsed, error, log): (Duration, StreamsError, String),
    mechanism: SaslMechanism,
    broker_side: impl Fn(&SaslError) -> bool,
) {
    assert!(
        elapsed < FAIL_FAST,
        "stopped after {elapsed:?}, not within {FAIL_FAST:?}: {error}"
    );
    let StreamsError::Engine { error: engine, .. } = &error else {
        panic!("not an engine error: {error:?}");
    };
    match engine.as_ref() {
        EngineError::Authentication {
            broker,
            mechanism: m,
            reason,
        } => {
            assert_eq!(*m, mechanism);
            assert!(broker.starts_with("127.0.0.1:"), "{broker}");
            assert!(broker_side(reason), "{reason:?}");
        }
        other => panic!("not an authentication error: {other:?}\n{log}"),
    }
    let text = format!("{error} {error:?}");
    assert!(
        !text.contains(PASSWORD) && !text.contains("wrong-password"),
        "{text}"
    );
    eprintln!("failed in {elapsed:?}: {error}");
}

fn wrong_password(mechanism: SaslMechanism) -> impl FnOnce(&SecuredCrabka) -> SaslConfig {
    move |broker| {
        broker
            .create_scram_user(mechanism, USER, PASSWORD)
            .unwrap_or_else(|e| panic!("creating the SCRAM user: {e}"));
        SaslConfig::with_password(mechanism, USER, "wrong-password").expect("password")
    }
}

#[test]
fn crabka_sasl_wrong_password_fails_fast_tokio() {
    bounded(|| {
        assert_authentication_error(
            failing_start(
                Adapter::Tokio,
                "sasl-wrong-tokio",
                wrong_password(SaslMechanism::ScramSha256),
            ),
            SaslMechanism::ScramSha256,
            |r| matches!(r, SaslError::AuthenticationFailed { .. }),
        )
    });
}

#[test]
fn crabka_sasl_wrong_password_fails_fast_smol() {
    bounded(|| {
        assert_authentication_error(
            failing_start(
                Adapter::Smol,
                "sasl-wrong-smol",
                wrong_password(SaslMechanism::ScramSha512),
            ),
            SaslMechanism::ScramSha512,
            |r| matches!(r, SaslError::AuthenticationFailed { .. }),
        )
    });
}

/// crabka 0.3.0 takes PLAIN but has no way to be given PLAIN users: the login is refused,
/// with the typed error (the broker parsed our PLAIN message: a malformed one is refused with
/// another message).
#[test]
fn crabka_sasl_plain_login_is_refused_with_the_typed_error() {
    bounded(|| {
        assert_authentication_error(
            failing_start(Adapter::Tokio, "sasl-plain", |_| {
                SaslConfig::plain(USER, PASSWORD)
            }),
            SaslMechanism::Plain,
            |r| matches!(r, SaslError::AuthenticationFailed { message } if message == "authentication failed"),
        )
    });
}
