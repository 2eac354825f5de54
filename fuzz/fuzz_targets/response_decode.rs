//! A connection that completed ApiVersions, with one request of some API in flight, fed an
//! arbitrary response frame; a matched response body is then decoded as that API's response
//! (and a Fetch response's record sets go through the record decoder).
//!
//! Input: byte 0 picks the API, byte 1 the version inside the negotiated range, byte 2 flags
//! (bit 0: stamp the right correlation id on the frame so the fuzzer reaches the body
//! decoders quickly); the rest is the response frame (length prefix stripped).
#![no_main]

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, Request};
use kstreams_core::wire::connection::{Connection, ConnectionConfig, Received, Response};
use kstreams_core::wire::records::{
    AbortedTransaction, DecodeLimits, FetchedPartition, IsolationLevel, decode_fetched_records,
};
use libfuzzer_sys::fuzz_target;

fn ready_connection() -> Connection<()> {
    let mut conn = Connection::new(ConnectionConfig::default());
    let request = conn.poll_transmit().expect("ApiVersions queued");
    let correlation_id = i32::from_be_bytes(request[8..12].try_into().unwrap());
    let versions = ApiVersionsResponse::default().with_api_keys(
        ApiKey::iter()
            .map(|api| {
                let range = api.valid_versions();
                ApiVersion::default()
                    .with_api_key(api as i16)
                    .with_min_version(range.min)
                    .with_max_version(range.max)
            })
            .collect(),
    );
    let mut frame = BytesMut::new();
    frame.put_i32(correlation_id);
    versions.encode(&mut frame, 3).unwrap();
    assert!(matches!(
        conn.handle_frame(frame.freeze()),
        Ok(Received::Negotiated)
    ));
    conn
}

/// Sends a default `R` at the chosen version and decodes the fuzzed response as `R::Response`.
fn exercise<R: Request + Default>(version_pick: u8, flags: u8, frame: &[u8]) {
    let mut conn = ready_connection();
    let api = ApiKey::try_from(R::KEY).unwrap();
    let range = conn.versions().unwrap().get(api).unwrap().usable;
    let span = (range.max - range.min + 1) as u8;
    let version = range.min + i16::from(version_pick % span);
    let Ok(correlation_id) = conn.send_at_version(&R::default(), version, ()) else {
        return; // some versions need fields a default request lacks
    };
    let mut frame = frame.to_vec();
    if flags & 1 == 1 && frame.len() >= 4 {
        frame[..4].copy_from_slice(&correlation_id.to_be_bytes());
    }
    match conn.handle_frame(Bytes::from(frame)) {
        Ok(Received::Response(response)) => decode::<R>(&response),
        Ok(_) => unreachable!("negotiation is over"),
        Err(_) => {}
    }
}

fn decode<R: Request>(response: &Response<()>) {
    let decoded = response.decode::<R>();
    if R::KEY != ApiKey::Fetch as i16 {
        return;
    }
    // Only Fetch reaches here; re-decode with the concrete type to walk its record sets.
    drop(decoded);
    let Ok(fetch) = response.decode::<FetchRequest>() else {
        return;
    };
    for topic in &fetch.responses {
        for partition in &topic.partitions {
            let Some(records) = &partition.records else {
                continue;
            };
            let aborted: Vec<AbortedTransaction> = partition
                .aborted_transactions
                .iter()
                .flatten()
                .map(AbortedTransaction::from)
                .collect();
            let _ = decode_fetched_records(
                &FetchedPartition {
                    partition: partition.partition_index,
                    fetch_offset: 0,
                    records,
                    isolation: IsolationLevel::ReadCommitted,
                    aborted_transactions: &aborted,
                },
                &DecodeLimits {
                    max_decompressed_batch_bytes: 1 << 20,
                    ..DecodeLimits::default()
                },
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [api, version, flags, frame @ ..] = data else {
        return;
    };
    let (v, f) = (*version, *flags);
    match api % 20 {
        0 => exercise::<ApiVersionsRequest>(v, f, frame),
        1 => exercise::<MetadataRequest>(v, f, frame),
        2 => exercise::<FetchRequest>(v, f, frame),
        3 => exercise::<ListOffsetsRequest>(v, f, frame),
        4 => exercise::<FindCoordinatorRequest>(v, f, frame),
        5 => exercise::<JoinGroupRequest>(v, f, frame),
        6 => exercise::<SyncGroupRequest>(v, f, frame),
        7 => exercise::<HeartbeatRequest>(v, f, frame),
        8 => exercise::<LeaveGroupRequest>(v, f, frame),
        9 => exercise::<OffsetCommitRequest>(v, f, frame),
        10 => exercise::<OffsetFetchRequest>(v, f, frame),
        11 => exercise::<ProduceRequest>(v, f, frame),
        12 => exercise::<InitProducerIdRequest>(v, f, frame),
        13 => exercise::<AddPartitionsToTxnRequest>(v, f, frame),
        14 => exercise::<AddOffsetsToTxnRequest>(v, f, frame),
        15 => exercise::<TxnOffsetCommitRequest>(v, f, frame),
        16 => exercise::<EndTxnRequest>(v, f, frame),
        17 => exercise::<CreateTopicsRequest>(v, f, frame),
        18 => exercise::<DescribeGroupsRequest>(v, f, frame),
        _ => exercise::<DeleteTopicsRequest>(v, f, frame),
    }
});
