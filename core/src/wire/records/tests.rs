//! Record decoding tests. Batches are written with `kafka-protocol`'s `RecordBatchEncoder`
//! (what a producer sends and a broker stores); a few fields the encoder cannot express (last
//! offset delta after compaction, LogAppendTime, hostile counts) are patched in with the CRC
//! recomputed.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, Record};

use super::fixtures::{batch_with, marker, record, transactional};
use super::*;

const PARTITION: i32 = 3;

fn batch(records: &[Record]) -> Bytes {
    batch_with(records, Compression::None)
}

fn concat(batches: &[Bytes]) -> Bytes {
    batches
        .iter()
        .flat_map(|b| b.to_vec())
        .collect::<Vec<u8>>()
        .into()
}

/// Rewrites header bytes of an encoded batch and recomputes its CRC.
fn patch(batch: &Bytes, edit: impl FnOnce(&mut [u8])) -> Bytes {
    let mut bytes = batch.to_vec();
    edit(&mut bytes);
    let crc = crc32c::crc32c(&bytes[21..]);
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    bytes.into()
}

/// A batch written field by field around a raw record section (CRC computed).
fn raw_batch(base_offset: i64, last_offset_delta: i32, record_count: i32, records: &[u8]) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i64(base_offset);
    buf.put_i32((49 + records.len()) as i32);
    buf.put_i32(-1); // leader epoch
    buf.put_i8(2);
    buf.put_u32(0); // crc, patched below
    buf.put_i16(0); // attributes
    buf.put_i32(last_offset_delta);
    buf.put_i64(1000); // base timestamp
    buf.put_i64(1000); // max timestamp
    buf.put_i64(-1);
    buf.put_i16(-1);
    buf.put_i32(-1);
    buf.put_i32(record_count);
    buf.put_slice(records);
    patch(&buf.freeze(), |_| {})
}

fn decode(records: &Bytes, fetch_offset: i64) -> Result<FetchedRecords, RecordsError> {
    decode_fetched_records(
        &FetchedPartition {
            partition: PARTITION,
            fetch_offset,
            records,
            isolation: IsolationLevel::ReadUncommitted,
            aborted_transactions: &[],
        },
        &DecodeLimits::default(),
    )
}

fn decode_committed(
    records: &Bytes,
    aborted: &[AbortedTransaction],
    isolation: IsolationLevel,
) -> FetchedRecords {
    decode_fetched_records(
        &FetchedPartition {
            partition: PARTITION,
            fetch_offset: 0,
            records,
            isolation,
            aborted_transactions: aborted,
        },
        &DecodeLimits::default(),
    )
    .unwrap()
}

fn offsets(fetched: &FetchedRecords) -> Vec<i64> {
    fetched.records.iter().map(|r| r.offset).collect()
}

fn values(fetched: &FetchedRecords) -> Vec<String> {
    fetched
        .records
        .iter()
        .map(|r| String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap())
        .collect()
}

#[test]
fn uncompressed_batch_decodes_every_field_zero_copy() {
    let mut with_header = record(11, "b");
    with_header.headers.insert(
        StrBytes::from_static_str("trace"),
        Some(Bytes::from_static(b"t1")),
    );
    with_header
        .headers
        .insert(StrBytes::from_static_str("empty"), None);
    let mut tombstone = record(12, "");
    tombstone.value = None;
    let buffer = batch(&[record(10, "a"), with_header, tombstone]);
    let fetched = decode(&buffer, 10).unwrap();

    assert_eq!(offsets(&fetched), vec![10, 11, 12]);
    assert_eq!(fetched.next_offset, 13);
    assert_eq!(fetched.complete_bytes, buffer.len());
    assert_eq!(fetched.truncated, None);
    let first = &fetched.records[0];
    assert_eq!(first.timestamp, 1_700_000_000_010);
    assert_eq!(first.timestamp_type, TimestampType::CreateTime);
    assert_eq!(first.leader_epoch, Some(5));
    assert_eq!(first.key.as_deref(), Some(&b"k10"[..]));
    assert_eq!(first.value.as_deref(), Some(&b"a"[..]));
    assert_eq!(
        fetched.records[1].headers,
        vec![
            RecordHeader {
                key: StrBytes::from_static_str("trace"),
                value: Some(Bytes::from_static(b"t1"))
            },
            RecordHeader {
                key: StrBytes::from_static_str("empty"),
                value: None
            },
        ]
    );
    assert_eq!(fetched.records[2].value, None);

    // Key and value point into the fetched buffer: no copy for uncompressed batches.
    let range = buffer.as_ptr_range();
    for r in &fetched.records {
        assert!(range.contains(&r.key.as_ref().unwrap().as_ptr()));
    }
    assert!(range.contains(&first.value.as_ref().unwrap().as_ptr()));
}

#[test]
fn every_compression_codec_decodes_to_the_same_records() {
    let records: Vec<Record> = (0..50).map(|i| record(i, &"payload ".repeat(20))).collect();
    for compression in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let buffer = batch_with(&records, compression);
        assert_eq!(
            buffer[22] & 0x7,
            compression as u8,
            "codec bits for {compression:?}"
        );
        let fetched = decode(&buffer, 0).unwrap();
        assert_eq!(
            offsets(&fetched),
            (0..50).collect::<Vec<_>>(),
            "{compression:?}"
        );
        assert!(values(&fetched).iter().all(|v| v == &"payload ".repeat(20)));
        assert_eq!(fetched.next_offset, 50);
    }
}

#[test]
fn batches_of_different_codecs_follow_each_other() {
    let buffer = concat(&[
        batch_with(&[record(0, "a"), record(1, "b")], Compression::Gzip),
        batch_with(&[record(2, "c")], Compression::Snappy),
        batch_with(&[record(3, "d")], Compression::Lz4),
        batch_with(&[record(4, "e")], Compression::Zstd),
        batch(&[record(5, "f")]),
    ]);
    let fetched = decode(&buffer, 0).unwrap();
    assert_eq!(values(&fetched), vec!["a", "b", "c", "d", "e", "f"]);
    assert_eq!(fetched.next_offset, 6);
}

#[test]
fn raw_snappy_without_xerial_framing_is_accepted() {
    // librdkafka-style: one raw snappy block, no xerial header.
    let plain = batch(&[record(0, "raw"), record(1, "snappy")]);
    let section = &plain[61..];
    let compressed = snap::raw::Encoder::new().compress_vec(section).unwrap();
    let mut bytes = plain[..61].to_vec();
    bytes.extend_from_slice(&compressed);
    let length = (bytes.len() - 12) as i32;
    let buffer = patch(&bytes.into(), |b| {
        b[8..12].copy_from_slice(&length.to_be_bytes());
        b[22] |= 2;
    });
    assert_eq!(values(&decode(&buffer, 0).unwrap()), vec!["raw", "snappy"]);
}

#[test]
fn truncated_trailing_batch_is_reported_not_an_error() {
    let first = batch(&[record(0, "a"), record(1, "b")]);
    let second = batch(&[record(2, "c"), record(3, "d")]);
    let full = concat(&[first.clone(), second.clone()]);
    // Cut anywhere inside the second batch, including inside its 12-byte prefix.
    for cut in first.len() + 1..full.len() {
        let buffer = full.slice(..cut);
        let fetched = decode(&buffer, 0).unwrap();
        assert_eq!(offsets(&fetched), vec![0, 1], "cut at {cut}");
        assert_eq!(fetched.next_offset, 2);
        assert_eq!(fetched.complete_bytes, first.len());
        let truncated = fetched.truncated.unwrap();
        assert_eq!(truncated.position, first.len());
        assert_eq!(truncated.available, cut - first.len());
        let have_length = cut - first.len() >= 12;
        assert_eq!(truncated.batch_len, have_length.then_some(second.len()));
        assert_eq!(truncated.base_offset, (cut - first.len() >= 8).then_some(2));
        assert!(!fetched.is_stalled());
    }
}

#[test]
fn lone_partial_batch_is_a_stall_not_a_loop() {
    let only = batch(&[record(7, "big")]);
    let fetched = decode(&only.slice(..only.len() - 1), 7).unwrap();
    assert!(fetched.records.is_empty());
    assert_eq!(fetched.next_offset, 7);
    assert!(fetched.is_stalled());
}

#[test]
fn next_offset_comes_from_last_offset_delta_after_compaction() {
    // Compaction removed offsets 11, 12 and the batch's last record 14; the header still
    // says last_offset_delta = 4, so the next fetch starts at 15, not 14.
    let compacted = batch(&[record(10, "a"), record(13, "b")]);
    assert_eq!(i32::from_be_bytes(compacted[23..27].try_into().unwrap()), 3);
    let compacted = patch(&compacted, |b| {
        b[23..27].copy_from_slice(&4i32.to_be_bytes())
    });
    let fetched = decode(&compacted, 10).unwrap();
    assert_eq!(offsets(&fetched), vec![10, 13]);
    assert_eq!(fetched.next_offset, 15);
}

#[test]
fn batch_emptied_by_compaction_still_advances() {
    let empty = raw_batch(20, 5, 0, &[]);
    let fetched = decode(&empty, 20).unwrap();
    assert!(fetched.records.is_empty());
    assert_eq!(fetched.next_offset, 26);
}

#[test]
fn control_batch_is_skipped_and_advances_the_offset() {
    let buffer = concat(&[
        batch(&[transactional(record(0, "a"), 9)]),
        batch(&[marker(1, 9, true)]),
    ]);
    let fetched = decode(&buffer, 0).unwrap();
    assert_eq!(offsets(&fetched), vec![0]);
    assert_eq!(fetched.control_batches, 1);
    assert_eq!(fetched.next_offset, 2);
}

#[test]
fn records_before_the_fetch_offset_are_dropped() {
    let buffer = concat(&[
        batch_with(&[record(0, "a"), record(1, "b")], Compression::Gzip),
        batch_with(
            &[record(2, "c"), record(3, "d"), record(4, "e")],
            Compression::Lz4,
        ),
    ]);
    let fetched = decode(&buffer, 3).unwrap();
    assert_eq!(offsets(&fetched), vec![3, 4]);
    assert_eq!(fetched.next_offset, 5);
    // A fetch offset past everything returned keeps the fetch offset.
    assert_eq!(decode(&buffer, 9).unwrap().next_offset, 9);
}

/// Producer 1 aborts a transaction (offsets 0-1, marker 4) interleaved with producer 2's
/// committed one (2-3, marker 5); then a plain record (6) and producer 1's next transaction,
/// committed (7, marker 8).
fn interleaved_transactions() -> Bytes {
    concat(&[
        batch(&[
            transactional(record(0, "p1-aborted"), 1),
            transactional(record(1, "p1-aborted"), 1),
        ]),
        batch_with(
            &[
                transactional(record(2, "p2-committed"), 2),
                transactional(record(3, "p2-committed"), 2),
            ],
            Compression::Zstd,
        ),
        batch(&[marker(4, 1, false)]),
        batch(&[marker(5, 2, true)]),
        batch(&[record(6, "plain")]),
        batch(&[transactional(record(7, "p1-committed"), 1)]),
        batch(&[marker(8, 1, true)]),
    ])
}

#[test]
fn read_committed_drops_the_aborted_transaction_only() {
    let buffer = interleaved_transactions();
    let aborted = [AbortedTransaction {
        producer_id: 1,
        first_offset: 0,
    }];
    let committed = decode_committed(&buffer, &aborted, IsolationLevel::ReadCommitted);
    assert_eq!(offsets(&committed), vec![2, 3, 6, 7]);
    assert_eq!(
        values(&committed),
        vec!["p2-committed", "p2-committed", "plain", "p1-committed"]
    );
    assert_eq!(committed.aborted_batches, 1);
    assert_eq!(committed.control_batches, 3);
    assert_eq!(committed.next_offset, 9);

    let uncommitted = decode_committed(&buffer, &aborted, IsolationLevel::ReadUncommitted);
    assert_eq!(offsets(&uncommitted), vec![0, 1, 2, 3, 6, 7]);
    assert_eq!(uncommitted.aborted_batches, 0);
}

#[test]
fn read_committed_without_aborted_list_keeps_everything_but_markers() {
    let committed = decode_committed(
        &interleaved_transactions(),
        &[],
        IsolationLevel::ReadCommitted,
    );
    assert_eq!(offsets(&committed), vec![0, 1, 2, 3, 6, 7]);
}

#[test]
fn aborted_transaction_starting_mid_response_only_drops_from_its_first_offset() {
    // Producer 1 commits at 0-1 (marker 2), then aborts 3 (marker 4).
    let buffer = concat(&[
        batch(&[
            transactional(record(0, "ok"), 1),
            transactional(record(1, "ok"), 1),
        ]),
        batch(&[marker(2, 1, true)]),
        batch(&[transactional(record(3, "bad"), 1)]),
        batch(&[marker(4, 1, false)]),
    ]);
    let aborted = [AbortedTransaction {
        producer_id: 1,
        first_offset: 3,
    }];
    let committed = decode_committed(&buffer, &aborted, IsolationLevel::ReadCommitted);
    assert_eq!(offsets(&committed), vec![0, 1]);
    assert_eq!(committed.next_offset, 5);
}

#[test]
fn log_append_time_uses_the_batch_max_timestamp() {
    let buffer = patch(&batch(&[record(0, "a"), record(1, "b")]), |b| {
        b[22] |= 1 << 3;
        b[35..43].copy_from_slice(&42i64.to_be_bytes());
    });
    let fetched = decode(&buffer, 0).unwrap();
    for r in &fetched.records {
        assert_eq!(r.timestamp_type, TimestampType::LogAppendTime);
        assert_eq!(r.timestamp, 42);
    }
}

#[test]
fn duplicate_header_keys_are_all_kept_in_order() {
    // One record: no key, value "v", headers h=1, h=2 (legal in Kafka).
    let body = [
        0x00, 0x00, 0x00, 0x01, 0x02, b'v', 0x04, 0x02, b'h', 0x02, b'1', 0x02, b'h', 0x02, b'2',
    ];
    let mut section = vec![(body.len() as u8) << 1];
    section.extend_from_slice(&body);
    let fetched = decode(&raw_batch(0, 0, 1, &section), 0).unwrap();
    assert_eq!(
        fetched.records[0].headers,
        vec![
            RecordHeader {
                key: StrBytes::from_static_str("h"),
                value: Some(Bytes::from_static(b"1")),
            },
            RecordHeader {
                key: StrBytes::from_static_str("h"),
                value: Some(Bytes::from_static(b"2")),
            },
        ]
    );
}

#[test]
fn crc_mismatch_names_partition_and_offset() {
    let first = batch(&[record(40, "x")]);
    let buffer = concat(&[first.clone(), batch(&[record(41, "y")])]);
    assert!(decode(&buffer, 40).is_ok());
    let mut corrupt = buffer.to_vec();
    let end = corrupt.len() - 1;
    corrupt[end] ^= 0xFF;
    let err = decode(&corrupt.into(), 40).unwrap_err();
    assert_eq!(err.partition, PARTITION);
    assert_eq!(err.base_offset, Some(41));
    assert_eq!(err.position, first.len());
    assert!(
        matches!(err.kind, RecordsErrorKind::CrcMismatch { .. }),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains("partition 3") && message.contains("base offset 41"),
        "{message}"
    );
}

#[test]
fn legacy_magic_is_rejected() {
    let buffer = patch(&batch(&[record(0, "a")]), |b| b[16] = 1);
    let err = decode(&buffer, 0).unwrap_err();
    assert_eq!(err.kind, RecordsErrorKind::UnsupportedMagic { magic: 1 });
}

#[test]
fn impossible_batch_lengths_are_rejected() {
    for length in [-1, 0, 48] {
        let mut bytes = batch(&[record(0, "a")]).to_vec();
        bytes[8..12].copy_from_slice(&i32::to_be_bytes(length));
        let err = decode(&bytes.into(), 0).unwrap_err();
        assert_eq!(err.kind, RecordsErrorKind::InvalidBatchLength { length });
        assert_eq!(err.base_offset, Some(0));
    }
}

#[test]
fn unknown_codec_is_rejected() {
    let buffer = patch(&batch(&[record(0, "a")]), |b| b[22] |= 7);
    assert_eq!(
        decode(&buffer, 0).unwrap_err().kind,
        RecordsErrorKind::UnknownCompression { id: 7 }
    );
}

#[test]
fn decompressed_size_is_bounded() {
    let records: Vec<Record> = (0..20).map(|i| record(i, &"z".repeat(1000))).collect();
    let buffer = batch_with(&records, Compression::Gzip);
    for compression in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let buffer = batch_with(&records, compression);
        let err = decode_fetched_records(
            &FetchedPartition {
                partition: PARTITION,
                fetch_offset: 0,
                records: &buffer,
                isolation: IsolationLevel::ReadUncommitted,
                aborted_transactions: &[],
            },
            &DecodeLimits {
                max_decompressed_batch_bytes: 10_000,
                ..DecodeLimits::default()
            },
        )
        .unwrap_err();
        assert_eq!(
            err.kind,
            RecordsErrorKind::DecompressedTooLarge { limit: 10_000 },
            "{compression:?}"
        );
    }
    assert!(decode(&buffer, 0).is_ok());
}

#[test]
fn hostile_record_count_is_an_error_not_an_allocation() {
    let err = decode(&raw_batch(0, 0, i32::MAX, &[0x00]), 0).unwrap_err();
    assert!(
        matches!(err.kind, RecordsErrorKind::InvalidRecords { .. }),
        "{err}"
    );
    let err = decode(&raw_batch(0, 0, -5, &[]), 0).unwrap_err();
    assert_eq!(
        err.kind,
        RecordsErrorKind::NegativeRecordCount { count: -5 }
    );
}

#[test]
fn negative_last_offset_delta_is_rejected() {
    let err = decode(&raw_batch(0, -1, 0, &[]), 0).unwrap_err();
    assert_eq!(
        err.kind,
        RecordsErrorKind::InvalidLastOffsetDelta { delta: -1 }
    );
    let err = decode(&raw_batch(i64::MAX, 0, 0, &[]), 0).unwrap_err();
    assert_eq!(
        err.kind,
        RecordsErrorKind::InvalidLastOffsetDelta { delta: 0 }
    );
}

#[test]
fn control_batch_without_a_marker_key_is_rejected_under_read_committed() {
    let mut bad = marker(0, 4, false);
    bad.key = Some(Bytes::from_static(&[0]));
    let buffer = batch(&[bad]);
    let fetched = decode_fetched_records(
        &FetchedPartition {
            partition: PARTITION,
            fetch_offset: 0,
            records: &buffer,
            isolation: IsolationLevel::ReadCommitted,
            aborted_transactions: &[],
        },
        &DecodeLimits::default(),
    );
    assert_eq!(
        fetched.unwrap_err().kind,
        RecordsErrorKind::InvalidControlRecord
    );
}

#[test]
fn empty_buffer_is_nothing_to_do() {
    let fetched = decode(&Bytes::new(), 12).unwrap();
    assert_eq!(fetched.next_offset, 12);
    assert!(fetched.records.is_empty() && fetched.truncated.is_none() && !fetched.is_stalled());
}

#[test]
fn a_batch_overlapping_the_previous_one_is_refused() {
    let first = batch(&[record(10, "a"), record(11, "b")]);
    let overlapping = batch(&[record(11, "c"), record(12, "d")]);
    let err = decode(&concat(&[first.clone(), overlapping]), 0).unwrap_err();
    assert_eq!(
        err.kind,
        RecordsErrorKind::OffsetsOutOfOrder {
            base_offset: 11,
            previous_last_offset: Some(11),
        }
    );
    let backwards = batch(&[record(3, "e")]);
    assert!(matches!(
        decode(&concat(&[first.clone(), backwards]), 0)
            .unwrap_err()
            .kind,
        RecordsErrorKind::OffsetsOutOfOrder { .. }
    ));
    let negative = patch(&batch(&[record(0, "f")]), |b| {
        b[..8].copy_from_slice(&(-5_i64).to_be_bytes())
    });
    assert!(matches!(
        decode(&negative, 0).unwrap_err().kind,
        RecordsErrorKind::OffsetsOutOfOrder {
            base_offset: -5,
            previous_last_offset: None
        }
    ));
    let after = batch(&[record(12, "g")]);
    assert_eq!(
        offsets(&decode(&concat(&[first, after]), 0).unwrap()),
        [10, 11, 12]
    );
}

#[test]
fn a_record_beyond_the_last_offset_delta_is_refused() {
    // Three records, but the header says the batch ends at delta 1.
    let b = patch(
        &batch(&[record(0, "a"), record(1, "b"), record(2, "c")]),
        |b| b[23..27].copy_from_slice(&1_i32.to_be_bytes()),
    );
    let err = decode(&b, 0).unwrap_err();
    assert!(
        matches!(&err.kind, RecordsErrorKind::InvalidRecords { detail } if detail.contains("outside 0..=1")),
        "{err}"
    );
}

#[test]
fn a_record_count_below_the_records_present_is_refused() {
    // Three records in the section, a header announcing two.
    let b = patch(
        &batch(&[record(0, "a"), record(1, "b"), record(2, "c")]),
        |b| b[57..61].copy_from_slice(&2_i32.to_be_bytes()),
    );
    let err = decode(&b, 0).unwrap_err();
    assert!(
        matches!(&err.kind, RecordsErrorKind::InvalidRecords { detail } if detail.contains("after the 2 records")),
        "{err}"
    );
}

/// One partition's compressed batch decoded within `budget`.
fn decode_within(
    records: &Bytes,
    budget: &mut DecompressBudget,
) -> Result<FetchedRecords, RecordsError> {
    decode_fetched_records_within(
        &FetchedPartition {
            partition: PARTITION,
            fetch_offset: 0,
            records,
            isolation: IsolationLevel::ReadUncommitted,
            aborted_transactions: &[],
        },
        &DecodeLimits::default(),
        budget,
    )
}

#[test]
fn the_decompression_budget_of_a_response_is_shared_by_its_partitions() {
    let value = "x".repeat(10_000);
    let compressed = |base: i64| {
        batch_with(
            &(base..base + 10)
                .map(|o| record(o, &value))
                .collect::<Vec<_>>(),
            Compression::Gzip,
        )
    };
    let two = concat(&[compressed(0), compressed(10)]);
    let one_batch = decode_within(&compressed(0), &mut DecompressBudget::unlimited()).unwrap();
    assert_eq!(one_batch.records.len(), 10);
    // Room for two and a half batches (each about 100 kB decompressed).
    let mut budget = DecompressBudget::new(250_000);
    let first = decode_within(&two, &mut budget).unwrap();
    assert_eq!(offsets(&first).len(), 20, "both batches fit");
    assert!(!first.over_budget);
    // The next partition of the same response gets what is left: not a whole batch.
    let second = decode_within(&two, &mut budget).unwrap();
    assert!(second.over_budget);
    assert!(second.records.is_empty());
    assert_eq!(
        second.next_offset, 0,
        "nothing consumed past what was decoded"
    );
    // Within one partition: the first batch fits, the second waits for the next fetch.
    let mut budget = DecompressBudget::new(150_000);
    let partial = decode_within(&two, &mut budget).unwrap();
    assert_eq!(offsets(&partial), (0..10).collect::<Vec<_>>());
    assert!(partial.over_budget);
    assert_eq!(partial.next_offset, 10);
    // A batch larger than a whole fresh budget can never be decoded: an error.
    let err = decode_within(&compressed(0), &mut DecompressBudget::new(1_000)).unwrap_err();
    assert!(matches!(
        err.kind,
        RecordsErrorKind::DecompressedTooLarge { limit: 1_000 }
    ));
}
