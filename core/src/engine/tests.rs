use std::sync::Arc;

use super::*;
use crate::prelude::*;
use crate::state::MemoryStoreFactory;
use crate::time::Instant;

fn engine() -> Engine {
    engine_with(EngineConfig::new("app", ["broker:9092"]))
}

fn engine_with(config: EngineConfig) -> Engine {
    let mut b = TopologyBuilder::new();
    let src = b
        .add_source("src", &["in"], BytesSerde, BytesSerde)
        .unwrap();
    b.add_sink("sink", "out", &[&src], BytesSerde, BytesSerde)
        .unwrap();
    Engine::new(
        Arc::new(b.build().unwrap()),
        config,
        Box::new(MemoryStoreFactory),
        Instant::EPOCH,
    )
    .unwrap()
}

fn at(ms: i64) -> Instant {
    Instant::from_millis(ms)
}

fn drain(engine: &mut Engine, now: Instant) -> Vec<Output> {
    std::iter::from_fn(|| engine.poll_output(now)).collect()
}

/// The id of the first `Connect` in `outputs`.
fn connect_of(outputs: Vec<Output>) -> Option<ConnectionId> {
    outputs.into_iter().find_map(|o| match o {
        Output::Connect { connection, .. } => Some(connection),
        _ => None,
    })
}

#[test]
fn a_broker_that_never_answers_the_handshake_is_dropped_after_the_request_timeout() {
    let mut e = engine();
    let node = drain(&mut e, at(0))
        .into_iter()
        .find_map(|o| match o {
            Output::Connect {
                connection,
                host,
                port,
            } => {
                assert_eq!((host.as_str(), port), ("broker", 9092));
                Some(connection)
            }
            _ => None,
        })
        .expect("connects to the bootstrap server");
    e.handle_connected(node, at(0));
    let sent = drain(&mut e, at(0));
    assert!(
        sent.iter()
            .any(|o| matches!(o, Output::Transmit { connection, .. } if *connection == node)),
        "ApiVersions sent"
    );
    let timeout = e.poll_timeout().expect("the handshake has a deadline");
    assert_eq!(timeout, at(30_000));
    assert_eq!(
        e.last_timeout_reason(),
        Some(TimeoutReason::RequestDeadline)
    );
    e.handle_timeout(timeout);
    let after = drain(&mut e, timeout);
    assert!(
        after
            .iter()
            .any(|o| matches!(o, Output::Close { connection } if *connection == node)),
        "{after:?}"
    );
    // It reconnects after the backoff.
    let retry = e.poll_timeout().expect("a reconnect is scheduled");
    assert!(retry > timeout);
    assert_eq!(e.last_timeout_reason(), Some(TimeoutReason::Reconnect));
    e.handle_timeout(retry);
    assert!(
        drain(&mut e, retry)
            .iter()
            .any(|o| matches!(o, Output::Connect { .. }))
    );
}

#[test]
fn invalid_group_instance_ids_are_a_config_error() {
    let mut tb = TopologyBuilder::new();
    let src = tb
        .add_source("src", &["in"], BytesSerde, BytesSerde)
        .unwrap();
    tb.add_sink("sink", "out", &[&src], BytesSerde, BytesSerde)
        .unwrap();
    let topology = Arc::new(tb.build().unwrap());
    let long = "x".repeat(250);
    for (id, ok) in [
        ("app-a_1.x", true),
        ("", false),
        ("has space", false),
        ("a/b", false),
        (long.as_str(), false),
    ] {
        let mut config = EngineConfig::new("app", ["localhost:9092"]);
        config.group_instance_id = Some(id.to_owned());
        let result = Engine::new(
            topology.clone(),
            config,
            Box::new(MemoryStoreFactory),
            Instant::EPOCH,
        );
        match result {
            Ok(_) => assert!(ok, "{id:?} accepted"),
            Err(EngineError::Config(m)) => assert!(!ok && m.contains("group.instance.id"), "{m}"),
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn invalid_bootstrap_servers_are_a_config_error() {
    let mut tb = TopologyBuilder::new();
    let src = tb
        .add_source("src", &["in"], BytesSerde, BytesSerde)
        .unwrap();
    tb.add_sink("sink", "out", &[&src], BytesSerde, BytesSerde)
        .unwrap();
    let topology = Arc::new(tb.build().unwrap());
    for bad in ["no-port", "host:notaport"] {
        let config = EngineConfig::new("app", [bad]);
        let err = Engine::new(
            topology.clone(),
            config,
            Box::new(MemoryStoreFactory),
            Instant::EPOCH,
        )
        .err()
        .expect("rejected");
        assert!(
            matches!(err, EngineError::Config(ref m) if m.contains(bad)),
            "{err}"
        );
    }
    let none: [&str; 0] = [];
    let err = Engine::new(
        topology,
        EngineConfig::new("app", none),
        Box::new(MemoryStoreFactory),
        Instant::EPOCH,
    )
    .err()
    .expect("rejected");
    assert!(matches!(err, EngineError::Config(_)));
}

/// The reconnect delays of an engine seeded with `seed` whose only broker refuses `attempts`
/// connections in a row: the time from each refusal to the next `Connect`.
fn reconnect_delays(seed: u64, attempts: usize) -> Vec<u64> {
    let mut config = EngineConfig::new("app", ["broker:9092"]);
    config.random_seed = seed;
    let mut e = engine_with(config);
    let mut now = at(0);
    let mut node = connect_of(drain(&mut e, now)).expect("connects to the bootstrap server");
    let mut delays = Vec::new();
    for _ in 0..attempts {
        e.handle_disconnected(node, now);
        assert!(
            !drain(&mut e, now)
                .iter()
                .any(|o| matches!(o, Output::Connect { .. })),
            "no reconnect before the backoff"
        );
        let retry = e.poll_timeout().expect("a reconnect is scheduled");
        assert!(retry > now, "reconnect at {retry}, refused at {now}");
        delays.push((retry - now).as_millis());
        now = retry;
        e.handle_timeout(now);
        node = connect_of(drain(&mut e, now)).expect("reconnects once the backoff expired");
    }
    delays
}

#[test]
fn reconnect_delays_are_jittered_below_the_backoff_by_the_seed() {
    // EngineConfig::new: 50 ms doubling up to 1 000 ms.
    let backoffs = [50, 100, 200, 400, 800, 1_000, 1_000, 1_000, 1_000, 1_000];
    let first = reconnect_delays(1, backoffs.len());
    let second = reconnect_delays(2, backoffs.len());
    for delays in [&first, &second] {
        for (delay, backoff) in delays.iter().zip(backoffs) {
            assert!(
                *delay <= backoff && *delay * 5 >= backoff * 4,
                "delay {delay} outside [0.8 * {backoff}, {backoff}]: {delays:?}"
            );
        }
    }
    assert_ne!(first, second, "different seeds, different delays");
    assert_eq!(
        first,
        reconnect_delays(1, backoffs.len()),
        "same seed, same delays"
    );
    assert!(
        first.iter().zip(backoffs).any(|(d, b)| *d < b),
        "some delay is shortened: {first:?}"
    );
}

#[test]
fn a_comma_separated_bootstrap_entry_is_split_like_bootstrap_servers() {
    let config = EngineConfig::new("app", ["a:1, b:2", "c:3"]);
    assert_eq!(
        config.bootstrap_addresses().unwrap(),
        vec![
            ("a".to_owned(), 1),
            ("b".to_owned(), 2),
            ("c".to_owned(), 3)
        ]
    );
}

#[test]
fn failed_connects_are_warnings_at_exponentially_rarer_attempts() {
    let mut e = engine();
    let mut now = at(0);
    let mut warned_at = Vec::new();
    for attempt in 1..=9_u32 {
        let node = connect_of(drain(&mut e, now)).expect("a connect");
        e.handle_disconnected(node, now);
        for output in drain(&mut e, now) {
            if let Output::Event(Event::Warning(EngineError::ConnectFailed {
                host,
                port,
                attempts,
                ..
            })) = output
            {
                assert_eq!((host.as_str(), port), ("broker", 9092));
                assert_eq!(attempts, attempt);
                warned_at.push(attempts);
            }
        }
        now = e.poll_timeout().expect("a reconnect is scheduled");
        e.handle_timeout(now);
    }
    assert_eq!(warned_at, [1, 2, 4, 8]);
}

mod sasl;
