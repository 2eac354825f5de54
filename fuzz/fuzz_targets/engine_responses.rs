//! An `Engine` whose first connection completed the ApiVersions handshake, fed arbitrary bytes
//! as the answer to its first Metadata request (framed with the right correlation id, so the
//! fuzzer starts inside the response body), then driven through timeouts.
//!
//! Every step is an `engine::Input`, so a crashing run is a recorded input sequence.
//!
//! Checks: no panic, no abort; the engine keeps answering `poll_output` / `poll_timeout`.

#![no_main]

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};
use kafka_protocol::protocol::Encodable;
use kstreams_core::engine::{ConnectionId, Engine, EngineConfig, Input, Output};
use kstreams_core::prelude::*;
use kstreams_core::state::MemoryStoreFactory;
use kstreams_core::time::Instant;
use libfuzzer_sys::fuzz_target;

fn topology() -> Arc<Topology> {
    let mut b = TopologyBuilder::new();
    let src = b.add_source("src", &["in"], BytesSerde, BytesSerde).expect("source");
    b.add_sink("sink", "out", &[&src], BytesSerde, BytesSerde).expect("sink");
    Arc::new(b.build().expect("topology"))
}

fn frame(correlation_id: i32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 8);
    out.put_i32((body.len() + 4) as i32);
    out.put_i32(correlation_id);
    out.extend_from_slice(body);
    out
}

fn api_versions_response() -> Vec<u8> {
    let apis = [
        ApiKey::ApiVersions,
        ApiKey::Metadata,
        ApiKey::FindCoordinator,
        ApiKey::JoinGroup,
        ApiKey::SyncGroup,
        ApiKey::Heartbeat,
        ApiKey::LeaveGroup,
        ApiKey::OffsetFetch,
        ApiKey::OffsetCommit,
        ApiKey::ListOffsets,
        ApiKey::Fetch,
        ApiKey::Produce,
        ApiKey::InitProducerId,
    ];
    let keys = apis
        .iter()
        .map(|&k| {
            let range = k.valid_versions();
            ApiVersion::default().with_api_key(k as i16).with_min_version(range.min).with_max_version(range.max)
        })
        .collect();
    let response = ApiVersionsResponse::default().with_api_keys(keys);
    let mut body = BytesMut::new();
    response.encode(&mut body, 3).expect("encode ApiVersions");
    frame(0, &body)
}

fn at(ms: i64) -> Instant {
    Instant::from_millis(ms)
}

fn drain(engine: &mut Engine, now: Instant) -> Option<ConnectionId> {
    let mut connect = None;
    while let Some(out) = engine.poll_output(now) {
        if let Output::Connect { connection, .. } = out {
            connect = Some(connection);
        }
    }
    connect
}

fuzz_target!(|data: &[u8]| {
    let config = EngineConfig::new("fuzz", ["broker:9092"]);
    let mut engine =
        Engine::new(topology(), config, Box::new(MemoryStoreFactory), at(0)).expect("engine");
    let Some(connection) = drain(&mut engine, at(0)) else {
        panic!("the engine must connect to its bootstrap server");
    };
    let received = |bytes: Vec<u8>| Input::Received { connection, bytes: Bytes::from(bytes) };
    let inputs = [
        (at(0), Input::Connected { connection }),
        (at(1), received(api_versions_response())),
        // The Metadata request is correlation id 1.
        (at(2), received(frame(1, data))),
        (at(1_000), Input::Timeout),
        (at(60_000), Input::Timeout),
        (at(600_000), Input::Timeout),
    ];
    for (now, input) in inputs {
        engine.handle_input(input, now);
        drain(&mut engine, now);
        let _ = engine.poll_timeout();
    }
});
