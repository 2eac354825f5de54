//! Record batch v2 encoding of one producer batch.
//!
//! # Why our own writer
//! `kafka-protocol`'s `RecordBatchEncoder` takes records whose headers are an `IndexMap`, so a
//! record with two headers of the same key (legal in Kafka, kept by [`crate::record::Headers`])
//! would lose all but the last value before it reaches the wire. This writer encodes the record
//! section from [`ProducerRecord`]s directly, so **the wire gets every header, in order,
//! duplicates included**. It writes the 61-byte v2 batch header itself (CRC-32C over
//! attributes..end) and compresses the record section with `kafka-protocol`'s own codecs
//! (`kafka_protocol::compression`), so compressed output is byte-for-byte what that crate
//! would produce (xerial-framed snappy, LZ4 frame, gzip, zstd).
//!
//! Our fetcher (`crate::wire::records`), Java and librdkafka consumers see them all; readers
//! decoding with `kafka-protocol`'s `RecordBatchDecoder` collapse duplicate keys to the last
//! value.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};
use kafka_protocol::records::Compression;

use crate::record::ProducerRecord;

/// Length of the record batch v2 header, up to and including the record count.
pub const BATCH_HEADER_LEN: usize = 61;

/// The idempotence fields written into a batch header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchIdentity {
    /// Producer id from InitProducerId.
    pub producer_id: i64,
    /// Producer epoch from InitProducerId.
    pub producer_epoch: i16,
    /// Sequence number of the batch's first record.
    pub base_sequence: i32,
}

/// A batch that could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A batch must hold at least one record.
    #[error("cannot encode an empty record batch")]
    Empty,
    /// The batch does not fit the format's 32-bit length fields.
    #[error("record batch too large to encode ({bytes} bytes)")]
    TooLarge {
        /// Size reached.
        bytes: usize,
    },
    /// The codec failed.
    #[error("{codec:?} compression failed: {detail}")]
    Compression {
        /// The codec.
        codec: Compression,
        /// The codec's message.
        detail: String,
    },
}

/// An upper bound of `record`'s encoded size inside an uncompressed batch (every varint
/// counted at its maximum width). Used for `batch_size` and `buffer_memory` accounting.
pub fn record_size_bound(record: &ProducerRecord) -> usize {
    // length(5) attributes(1) timestamp delta(10) offset delta(5) key len(5) value len(5)
    // header count(5)
    let fixed = 5 + 1 + 10 + 5 + 5 + 5 + 5;
    let key = record.key.as_ref().map_or(0, |k| k.len());
    let value = record.value.as_ref().map_or(0, |v| v.len());
    let headers: usize = record
        .headers
        .iter()
        .map(|h| 5 + h.key.len() + 5 + h.value.as_ref().map_or(0, |v| v.len()))
        .sum();
    fixed + key + value + headers
}

/// The transactional bit of a record batch's attributes.
const TRANSACTIONAL_ATTRIBUTE: i16 = 0x10;
/// Where the attributes, producer id, and CRC-covered bytes start in a batch.
const ATTRIBUTES_AT: usize = 21;
const PRODUCER_ID_AT: usize = 43;
const CRC_AT: usize = 17;

/// Encodes `records` (all of one partition, in order) as one record batch v2 with base offset
/// 0, create-time timestamps, no partition leader epoch, and the given producer identity.
pub fn encode_batch(
    records: &[ProducerRecord],
    identity: BatchIdentity,
    compression: Compression,
) -> Result<Bytes, EncodeError> {
    encode(records, identity, compression, false)
}

/// [`encode_batch`] with the transactional attribute set: the batch belongs to the open
/// transaction of its producer id.
pub fn encode_transactional_batch(
    records: &[ProducerRecord],
    identity: BatchIdentity,
    compression: Compression,
) -> Result<Bytes, EncodeError> {
    encode(records, identity, compression, true)
}

fn encode(
    records: &[ProducerRecord],
    identity: BatchIdentity,
    compression: Compression,
    transactional: bool,
) -> Result<Bytes, EncodeError> {
    let capacity = BATCH_HEADER_LEN + records.iter().map(record_size_bound).sum::<usize>();
    let mut builder = BatchBuilder::with_capacity(capacity);
    for record in records {
        builder.push(record);
    }
    builder.finish(identity, compression, transactional)
}

/// Unused room above which a finished uncompressed batch is copied to its exact size.
const SHRINK_SLACK: usize = 4096;

/// A record batch v2 being filled: records are encoded into its buffer as they are appended,
/// behind room for the batch header, so sending an uncompressed batch copies nothing more
/// (the header is written in place). Timestamp deltas are relative to the first record's
/// timestamp (as Kafka's Java producer writes them; they may be negative).
#[derive(Debug)]
pub struct BatchBuilder {
    buf: BytesMut,
    count: i32,
    base_timestamp: i64,
    max_timestamp: i64,
}

impl BatchBuilder {
    /// An empty batch with room for `capacity` bytes (header included) before it grows.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        let mut buf = BytesMut::with_capacity(capacity.max(BATCH_HEADER_LEN));
        buf.put_bytes(0, BATCH_HEADER_LEN);
        Self {
            buf,
            count: 0,
            base_timestamp: 0,
            max_timestamp: i64::MIN,
        }
    }

    /// Number of records appended.
    pub(crate) fn record_count(&self) -> usize {
        self.count as usize
    }

    /// Appends `record` at the next offset delta.
    pub(crate) fn push(&mut self, record: &ProducerRecord) {
        if self.count == 0 {
            self.base_timestamp = record.timestamp;
        }
        self.max_timestamp = self.max_timestamp.max(record.timestamp);
        let timestamp_delta = record.timestamp.wrapping_sub(self.base_timestamp);
        let offset_delta = i64::from(self.count);
        let headers: usize = record
            .headers
            .iter()
            .map(|h| {
                nullable_len(Some(h.key.len())) + nullable_len(h.value.as_ref().map(Bytes::len))
            })
            .sum();
        let body = 1
            + varlong_len(timestamp_delta)
            + varlong_len(offset_delta)
            + nullable_len(record.key.as_ref().map(Bytes::len))
            + nullable_len(record.value.as_ref().map(Bytes::len))
            + varlong_len(record.headers.len() as i64)
            + headers;
        let buf = &mut self.buf;
        buf.reserve(body + 5);
        put_varlong(buf, body as i64);
        let start = buf.len();
        buf.put_i8(0); // attributes (unused in v2)
        put_varlong(buf, timestamp_delta);
        put_varlong(buf, offset_delta);
        put_nullable_bytes(buf, record.key.as_deref());
        put_nullable_bytes(buf, record.value.as_deref());
        put_varlong(buf, record.headers.len() as i64);
        for header in &record.headers {
            put_nullable_bytes(buf, Some(header.key.as_bytes()));
            put_nullable_bytes(buf, header.value.as_deref());
        }
        debug_assert_eq!(
            buf.len() - start,
            body,
            "record length computed before writing"
        );
        // A batch of more than i32::MAX records cannot be sent: finish reports it.
        self.count = self.count.saturating_add(1);
    }

    /// The finished batch under `identity`, its records compressed with `compression`.
    pub(crate) fn finish(
        self,
        identity: BatchIdentity,
        compression: Compression,
        transactional: bool,
    ) -> Result<Bytes, EncodeError> {
        if self.count == 0 {
            return Err(EncodeError::Empty);
        }
        if self.count == i32::MAX {
            return Err(EncodeError::TooLarge {
                bytes: self.buf.len(),
            });
        }
        let mut out = match compression {
            // A batch that stayed small does not keep its reserved room while it waits for its
            // acknowledgement (`buffer.memory` counts records, not reservations).
            Compression::None if self.buf.capacity() >= 2 * self.buf.len() + SHRINK_SLACK => {
                BytesMut::from(&self.buf[..])
            }
            Compression::None => self.buf,
            _ => {
                let mut out = BytesMut::with_capacity(BATCH_HEADER_LEN + self.buf.len() / 2);
                out.put_bytes(0, BATCH_HEADER_LEN);
                compress_into(&mut out, &self.buf[BATCH_HEADER_LEN..], compression)?;
                out
            }
        };
        let batch_length = i32::try_from(out.len() - 12)
            .map_err(|_| EncodeError::TooLarge { bytes: out.len() })?;
        let mut header = &mut out[..BATCH_HEADER_LEN];
        header.put_i64(0); // base offset: the broker assigns offsets
        header.put_i32(batch_length);
        header.put_i32(-1); // partition leader epoch
        header.put_i8(2); // magic
        header.put_u32(0); // crc, filled below
        // attributes: codec, create time, transactional or not, not a control batch
        let transactional = if transactional {
            TRANSACTIONAL_ATTRIBUTE
        } else {
            0
        };
        header.put_i16(compression as i16 | transactional);
        header.put_i32(self.count - 1); // last offset delta
        header.put_i64(self.base_timestamp);
        header.put_i64(self.max_timestamp);
        header.put_i64(identity.producer_id);
        header.put_i16(identity.producer_epoch);
        header.put_i32(identity.base_sequence);
        header.put_i32(self.count);
        stamp_crc(&mut out);
        Ok(out.freeze())
    }
}

/// A copy of the encoded batch `encoded` under another identity (and transactional
/// attribute): for a batch sent before under a producer id that is gone. Records, codec and
/// timestamps stay; the CRC is computed again.
pub(crate) fn restamp(encoded: &Bytes, identity: BatchIdentity, transactional: bool) -> Bytes {
    debug_assert!(
        encoded.len() >= BATCH_HEADER_LEN,
        "an encoded batch has a header"
    );
    let mut out = BytesMut::from(&encoded[..]);
    let attributes = i16::from_be_bytes([out[ATTRIBUTES_AT], out[ATTRIBUTES_AT + 1]]);
    let attributes = if transactional {
        attributes | TRANSACTIONAL_ATTRIBUTE
    } else {
        attributes & !TRANSACTIONAL_ATTRIBUTE
    };
    out[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    let mut identity_fields = &mut out[PRODUCER_ID_AT..BATCH_HEADER_LEN - 4];
    identity_fields.put_i64(identity.producer_id);
    identity_fields.put_i16(identity.producer_epoch);
    identity_fields.put_i32(identity.base_sequence);
    stamp_crc(&mut out);
    out.freeze()
}

/// Writes the CRC-32C of attributes..end into the header.
fn stamp_crc(batch: &mut BytesMut) {
    let crc = crc32c::crc32c(&batch[ATTRIBUTES_AT..]);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Encoded length of a zig-zag varlong.
fn varlong_len(value: i64) -> usize {
    let zigzag = ((value << 1) ^ (value >> 63)) as u64;
    // 7 bits per byte; 0 still takes one byte.
    (64 - (zigzag | 1).leading_zeros() as usize).div_ceil(7)
}

/// Encoded length of a nullable byte string of `len` bytes (`None`: null).
fn nullable_len(len: Option<usize>) -> usize {
    match len {
        None => 1,
        Some(len) => varlong_len(len as i64) + len,
    }
}

fn put_nullable_bytes(buf: &mut BytesMut, bytes: Option<&[u8]>) {
    match bytes {
        None => put_varlong(buf, -1),
        Some(bytes) => {
            put_varlong(buf, bytes.len() as i64);
            buf.put_slice(bytes);
        }
    }
}

/// Zig-zag varint, as Kafka's `ByteUtils.writeVarlong` (and `writeVarint` for values that fit
/// 32 bits, which encode identically).
fn put_varlong(buf: &mut BytesMut, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        buf.put_u8((zigzag as u8 & 0x7f) | 0x80);
        zigzag >>= 7;
    }
    buf.put_u8(zigzag as u8);
}

fn compress_into(
    out: &mut BytesMut,
    section: &[u8],
    compression: Compression,
) -> Result<(), EncodeError> {
    let result = match compression {
        Compression::None => {
            out.put_slice(section);
            Ok(())
        }
        Compression::Gzip => compress_with::<Gzip>(out, section),
        Compression::Snappy => compress_with::<Snappy>(out, section),
        Compression::Lz4 => compress_with::<Lz4>(out, section),
        Compression::Zstd => compress_with::<Zstd>(out, section),
    };
    result.map_err(|detail| EncodeError::Compression {
        codec: compression,
        detail,
    })
}

fn compress_with<C>(out: &mut BytesMut, section: &[u8]) -> Result<(), String>
where
    C: Compressor<BytesMut, BufMut = BytesMut>,
{
    C::compress(out, |uncompressed: &mut BytesMut| {
        uncompressed.put_slice(section);
        Ok(())
    })
    .map_err(|err| format!("{err:#}"))
}
