//! Record-batch builders shared by the tests of the wire layer and the fetcher: records as a
//! producer writes them, encoded with `kafka-protocol`'s `RecordBatchEncoder`.

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions,
    TimestampType as CrateTimestampType,
};

/// Timestamp of the record at offset 0; the record at offset `o` has `T0 + o`.
pub(crate) const T0: i64 = 1_700_000_000_000;

/// Leader epoch written into every batch.
pub(crate) const LEADER_EPOCH: i32 = 5;

/// A plain record at `offset` with key `k<offset>` and `value`.
pub(crate) fn record(offset: i64, value: &str) -> Record {
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: LEADER_EPOCH,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: CrateTimestampType::Creation,
        offset,
        // The encoder starts a new batch whenever offset - sequence changes.
        sequence: offset as i32,
        timestamp: T0 + offset,
        key: Some(Bytes::from(format!("k{offset}"))),
        value: Some(Bytes::copy_from_slice(value.as_bytes())),
        headers: Default::default(),
    }
}

/// `record` as part of `producer_id`'s transaction.
pub(crate) fn transactional(mut record: Record, producer_id: i64) -> Record {
    record.transactional = true;
    record.producer_id = producer_id;
    record.producer_epoch = 0;
    record
}

/// A transaction marker: control record with key (version 0, type) — type 0 ABORT, 1 COMMIT.
pub(crate) fn marker(offset: i64, producer_id: i64, commit: bool) -> Record {
    let mut record = transactional(record(offset, ""), producer_id);
    record.control = true;
    record.key = Some(Bytes::from(vec![0, 0, 0, u8::from(commit)]));
    record.value = Some(Bytes::from_static(&[0, 0, 0, 0, 0, 0]));
    record
}

/// `records` as record batches (v2) with `compression`.
pub(crate) fn batch_with(records: &[Record], compression: Compression) -> Bytes {
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .unwrap();
    buf.freeze()
}
