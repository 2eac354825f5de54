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
    let first = records.first().ok_or(EncodeError::Empty)?;
    let count = i32::try_from(records.len()).map_err(|_| EncodeError::TooLarge {
        bytes: records.len(),
    })?;
    let base_timestamp = records
        .iter()
        .map(|r| r.timestamp)
        .min()
        .unwrap_or(first.timestamp);
    let max_timestamp = records
        .iter()
        .map(|r| r.timestamp)
        .max()
        .unwrap_or(first.timestamp);

    let mut section = BytesMut::new();
    let mut body = BytesMut::new();
    for (delta, record) in records.iter().enumerate() {
        body.clear();
        encode_record(&mut body, record, base_timestamp, delta as i64);
        put_varlong(&mut section, body.len() as i64);
        section.put_slice(&body);
    }

    let mut out = BytesMut::with_capacity(BATCH_HEADER_LEN + section.len());
    out.put_i64(0); // base offset: the broker assigns offsets
    out.put_i32(0); // batch length, filled below
    out.put_i32(-1); // partition leader epoch
    out.put_i8(2); // magic
    out.put_u32(0); // crc, filled below
    // attributes: codec, create time, transactional or not, not a control batch
    let transactional = if transactional {
        TRANSACTIONAL_ATTRIBUTE
    } else {
        0
    };
    out.put_i16(compression as i16 | transactional);
    out.put_i32(count - 1); // last offset delta
    out.put_i64(base_timestamp);
    out.put_i64(max_timestamp);
    out.put_i64(identity.producer_id);
    out.put_i16(identity.producer_epoch);
    out.put_i32(identity.base_sequence);
    out.put_i32(count);
    compress_into(&mut out, &section, compression)?;

    let batch_length = out.len() - 12;
    let batch_length_field =
        i32::try_from(batch_length).map_err(|_| EncodeError::TooLarge { bytes: out.len() })?;
    out[8..12].copy_from_slice(&batch_length_field.to_be_bytes());
    let crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(out.freeze())
}

fn encode_record(buf: &mut BytesMut, record: &ProducerRecord, base_timestamp: i64, delta: i64) {
    buf.put_i8(0); // attributes (unused in v2)
    put_varlong(buf, record.timestamp.wrapping_sub(base_timestamp));
    put_varlong(buf, delta);
    put_nullable_bytes(buf, record.key.as_deref());
    put_nullable_bytes(buf, record.value.as_deref());
    put_varlong(buf, record.headers.len() as i64);
    for header in &record.headers {
        put_nullable_bytes(buf, Some(header.key.as_bytes()));
        put_nullable_bytes(buf, header.value.as_deref());
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
