//! Building the caller's record type straight from a decoded batch ([`DecodedRecord`]).

use bytes::Bytes;
use kafka_protocol::protocol::StrBytes;

use super::section::HeaderSpans;
use super::{FetchedRecord, RecordHeader, TimestampType};

/// A record type the decoder builds directly from a batch, so its caller gets its own record
/// type without a conversion pass ([`decode_fetched_records_within`](super::decode_fetched_records_within)).
pub trait DecodedRecord: Sized {
    /// The record made of `record`'s fields.
    fn from_wire(record: WireRecord<'_>) -> Self;
}

/// The fields of one decoded user record, handed to [`DecodedRecord::from_wire`]. Keys and
/// values are slices of the fetched buffer (or of a decompressed batch).
#[derive(Debug)]
pub struct WireRecord<'a> {
    /// The record's offset in its partition.
    pub offset: i64,
    /// Milliseconds since the epoch; for `LogAppendTime` the batch's broker timestamp.
    pub timestamp: i64,
    /// Who set [`timestamp`](Self::timestamp).
    pub timestamp_type: TimestampType,
    /// Leader epoch of the batch, if the producer's broker recorded one.
    pub leader_epoch: Option<i32>,
    /// The key; `None` for a null key.
    pub key: Option<Bytes>,
    /// The value; `None` for a null value (a tombstone).
    pub value: Option<Bytes>,
    /// The headers, in wire order, duplicates kept.
    pub headers: WireHeaders<'a>,
}

/// The headers of a [`WireRecord`], read on demand from the record's section.
#[derive(Debug, Clone, Copy)]
pub struct WireHeaders<'a> {
    pub(super) section: &'a Bytes,
    pub(super) spans: &'a [HeaderSpans],
}

impl<'a> WireHeaders<'a> {
    /// Number of headers.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether the record has no header.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// `(key, value)` of each header in wire order; keys are valid UTF-8 (checked by the
    /// decoder), values `None` when null. Both are slices of the section (no copy).
    pub fn iter(&self) -> impl Iterator<Item = (StrBytes, Option<Bytes>)> + 'a {
        let section = self.section;
        self.spans.iter().map(move |span| {
            let key = StrBytes::from_utf8(section.slice(span.key.clone()))
                .expect("the section walk checked every header key to be UTF-8");
            (key, span.value.clone().map(|value| section.slice(value)))
        })
    }
}

impl DecodedRecord for FetchedRecord {
    fn from_wire(record: WireRecord<'_>) -> Self {
        Self {
            offset: record.offset,
            timestamp: record.timestamp,
            timestamp_type: record.timestamp_type,
            leader_epoch: record.leader_epoch,
            key: record.key,
            value: record.value,
            headers: record
                .headers
                .iter()
                .map(|(key, value)| RecordHeader { key, value })
                .collect(),
        }
    }
}
