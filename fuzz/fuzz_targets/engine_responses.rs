//! An `Engine` whose first connection completed the ApiVersions handshake, fed arbitrary bytes
//! as the answer to its first Metadata request (framed with the right correlation id, so the
//! fuzzer starts inside the response body), then driven through timeouts.
//!
//! Checks: no panic, no abort; the engine keeps answering `poll_output` / `poll_timeout`.

#![no_main]

use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};
use kafka_protocol::protocol::Encodable;
use kstreams_core::engine::{Engine, EngineConfig, Output};
use kstreams_core::prelude::*;
use kstreams_core::state::MemoryStoreFactory;
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

fn drain(engine: &mut Engine, now: i64) -> Option<i32> {
    let mut connect = None;
    while let Some(out) = engine.poll_output(now) {
        if let Output::Connect { node, .. } = out {
            connect = Some(node);
        }
    }
    connect
}

fuzz_target!(|data: &[u8]| {
    let config = EngineConfig::new("fuzz", ["broker:9092"]);
    let mut engine = Engine::new(topology(), config, Box::new(MemoryStoreFactory), 0).expect("engine");
    let Some(node) = drain(&mut engine, 0) else {
        panic!("the engine must connect to its bootstrap server");
    };
    engine.handle_connected(node, 0);
    drain(&mut engine, 0);
    engine.handle_received(node, &api_versions_response(), 1);
    drain(&mut engine, 1);
    // The Metadata request is correlation id 1.
    engine.handle_received(node, &frame(1, data), 2);
    for now in [2, 1_000, 60_000, 600_000] {
        drain(&mut engine, now);
        engine.handle_timeout(now);
        let _ = engine.poll_timeout();
    }
});
