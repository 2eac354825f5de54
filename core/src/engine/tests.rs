use std::sync::Arc;

use super::*;
use crate::prelude::*;
use crate::state::MemoryStoreFactory;

fn engine() -> Engine {
    let mut b = TopologyBuilder::new();
    let src = b
        .add_source("src", &["in"], BytesSerde, BytesSerde)
        .unwrap();
    b.add_sink("sink", "out", &[&src], BytesSerde, BytesSerde)
        .unwrap();
    let config = EngineConfig::new("app", ["broker:9092"]);
    Engine::new(
        Arc::new(b.build().unwrap()),
        config,
        Box::new(MemoryStoreFactory),
        0,
    )
    .unwrap()
}

fn drain(engine: &mut Engine, now: i64) -> Vec<Output> {
    std::iter::from_fn(|| engine.poll_output(now)).collect()
}

#[test]
fn a_broker_that_never_answers_the_handshake_is_dropped_after_the_request_timeout() {
    let mut e = engine();
    let node = drain(&mut e, 0)
        .into_iter()
        .find_map(|o| match o {
            Output::Connect { node, host, port } => {
                assert_eq!((host.as_str(), port), ("broker", 9092));
                Some(node)
            }
            _ => None,
        })
        .expect("connects to the bootstrap server");
    e.handle_connected(node, 0);
    let sent = drain(&mut e, 0);
    assert!(
        sent.iter()
            .any(|o| matches!(o, Output::Transmit { node: n, .. } if *n == node)),
        "ApiVersions sent"
    );
    let timeout = e.poll_timeout().expect("the handshake has a deadline");
    assert_eq!(timeout, 30_000);
    e.handle_timeout(timeout);
    let after = drain(&mut e, timeout);
    assert!(
        after
            .iter()
            .any(|o| matches!(o, Output::Close { node: n } if *n == node)),
        "{after:?}"
    );
    // It reconnects after the backoff.
    let retry = e.poll_timeout().expect("a reconnect is scheduled");
    assert!(retry > timeout);
    e.handle_timeout(retry);
    assert!(
        drain(&mut e, retry)
            .iter()
            .any(|o| matches!(o, Output::Connect { .. }))
    );
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
        let err = Engine::new(topology.clone(), config, Box::new(MemoryStoreFactory), 0)
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
        0,
    )
    .err()
    .expect("rejected");
    assert!(matches!(err, EngineError::Config(_)));
}
