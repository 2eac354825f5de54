//! Arbitrary bytes as a partition's fetched `records` into the record-batch decoder.
//!
//! Input: byte 0 flags (bit 0: read_committed; bit 1: recompute each batch's CRC so the fuzzer
//! gets past the checksum to the decompressors and record decoder; bits 2-3: how many aborted
//! transactions to list), bytes 1..9 the fetch offset; the rest is the records buffer. Aborted
//! transactions are taken from the producer ids / base offsets of the batches themselves.
#![no_main]

use bytes::Bytes;
use kstreams_core::wire::records::{
    AbortedTransaction, DecodeLimits, FetchedPartition, IsolationLevel, decode_fetched_records,
};
use libfuzzer_sys::fuzz_target;

/// Rewrites the CRC of every complete batch (magic 2 layout) in place; returns
/// (producer id, base offset) of each.
fn fix_crcs(buf: &mut [u8]) -> Vec<(i64, i64)> {
    let mut found = Vec::new();
    let mut pos = 0usize;
    while let Some(prefix) = buf.get(pos..pos + 12) {
        let length = i32::from_be_bytes(prefix[8..12].try_into().unwrap());
        let Ok(length) = usize::try_from(length) else {
            break;
        };
        let end = pos + 12 + length;
        if length < 49 || end > buf.len() {
            break;
        }
        let batch = &mut buf[pos..end];
        let crc = crc32c::crc32c(&batch[21..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        let base_offset = i64::from_be_bytes(batch[0..8].try_into().unwrap());
        let producer_id = i64::from_be_bytes(batch[43..51].try_into().unwrap());
        found.push((producer_id, base_offset));
        pos = end;
    }
    found
}

fuzz_target!(|data: &[u8]| {
    let Some((header, rest)) = data.split_first_chunk::<9>() else {
        return;
    };
    let flags = header[0];
    let fetch_offset = i64::from_be_bytes(header[1..9].try_into().unwrap());
    let mut records = rest.to_vec();
    let batches = if flags & 2 != 0 {
        fix_crcs(&mut records)
    } else {
        Vec::new()
    };
    let aborted: Vec<AbortedTransaction> = batches
        .iter()
        .take(usize::from((flags >> 2) & 3))
        .map(|&(producer_id, first_offset)| AbortedTransaction {
            producer_id,
            first_offset,
        })
        .collect();
    let records = Bytes::from(records);
    let isolation = if flags & 1 != 0 {
        IsolationLevel::ReadCommitted
    } else {
        IsolationLevel::ReadUncommitted
    };
    let result = decode_fetched_records(
        &FetchedPartition {
            partition: 0,
            fetch_offset,
            records: &records,
            isolation,
            aborted_transactions: &aborted,
        },
        &DecodeLimits {
            max_decompressed_batch_bytes: 1 << 20,
            ..DecodeLimits::default()
        },
    );
    if let Ok(fetched) = result {
        assert!(fetched.next_offset >= fetch_offset);
        assert!(fetched.complete_bytes <= records.len());
        assert!(fetched.records.iter().all(|r| r.offset >= fetch_offset));
        if let Some(truncated) = fetched.truncated {
            assert_eq!(truncated.position, fetched.complete_bytes);
            assert_eq!(truncated.position + truncated.available, records.len());
        }
    }
});
