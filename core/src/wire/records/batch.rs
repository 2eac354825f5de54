//! Splitting a fetched `records` buffer into record batches by their length field, and reading
//! the v2 batch header (which `kafka-protocol` parses but partly discards).
//!
//! Batch layout (magic 2), byte offsets from the start of the batch:
//!
//! ```text
//!  0 base_offset i64        8 batch_length i32 (bytes after this field)
//! 12 leader_epoch i32      16 magic i8          17 crc u32 (crc32c of bytes 21..)
//! 21 attributes i16        23 last_offset_delta i32
//! 27 base_timestamp i64    35 max_timestamp i64
//! 43 producer_id i64       51 producer_epoch i16  53 base_sequence i32
//! 57 record_count i32      61 records...
//! ```

use bytes::Bytes;

use super::{RecordsErrorKind, TruncatedBatch};

/// Bytes in front of the part of a batch counted by `batch_length`.
pub(super) const LOG_OVERHEAD: usize = 12;
/// Size of the whole v2 batch header.
pub(super) const V2_HEADER_LEN: usize = 61;
/// Offset of the first byte covered by the CRC.
const CRC_START: usize = 21;
/// The only batch format we decode.
pub(super) const MAGIC_V2: i8 = 2;
/// `producer_id` of batches written without an idempotent or transactional producer.
pub(super) const NO_PRODUCER_ID: i64 = -1;

/// The fields of a v2 batch header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct BatchHeader {
    pub base_offset: i64,
    pub partition_leader_epoch: i32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub record_count: i32,
}

impl BatchHeader {
    /// Compression codec id (attributes bits 0-2).
    pub fn compression_code(&self) -> i16 {
        self.attributes & 0x7
    }

    /// Timestamps are set by the broker (attributes bit 3): every record's timestamp is then
    /// the batch's `max_timestamp`.
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & (1 << 3) != 0
    }

    /// Part of a transaction (attributes bit 4).
    pub fn is_transactional(&self) -> bool {
        self.attributes & (1 << 4) != 0
    }

    /// Holds control records (commit/abort markers), never user data (attributes bit 5).
    pub fn is_control(&self) -> bool {
        self.attributes & (1 << 5) != 0
    }

    /// Offset of the batch's last record, which survives compaction even when the record does.
    pub fn last_offset(&self) -> Option<i64> {
        if self.last_offset_delta < 0 {
            return None;
        }
        self.base_offset
            .checked_add(i64::from(self.last_offset_delta))
    }
}

/// One step of splitting.
#[derive(Debug)]
pub(super) enum Split {
    /// A complete batch: the whole batch (from `base_offset`) and its header.
    Batch { bytes: Bytes, header: BatchHeader },
    /// The rest of the buffer is a batch cut short (normal at the fetch size limit).
    Truncated(TruncatedBatch),
    /// The buffer is used up.
    End,
}

/// Reads the batch starting at `position` in `buffer`. Errors carry the batch's base offset when
/// it could be read.
pub(super) fn split_at(
    buffer: &Bytes,
    position: usize,
) -> Result<Split, (RecordsErrorKind, Option<i64>)> {
    let rest = buffer.get(position..).unwrap_or_default();
    if rest.is_empty() {
        return Ok(Split::End);
    }
    let base_offset = rest.get(..8).map(|b| i64_at(b, 0));
    let Some(length_field) = rest.get(8..LOG_OVERHEAD) else {
        return Ok(Split::Truncated(TruncatedBatch {
            position,
            available: rest.len(),
            batch_len: None,
            base_offset,
        }));
    };
    let batch_length = i32::from_be_bytes([
        length_field[0],
        length_field[1],
        length_field[2],
        length_field[3],
    ]);
    // The shortest legal batch (v2, no records) covers everything after the length field.
    let min_length = V2_HEADER_LEN - LOG_OVERHEAD;
    let total = match usize::try_from(batch_length) {
        Ok(len) if len >= min_length => len + LOG_OVERHEAD,
        _ => {
            return Err((
                RecordsErrorKind::InvalidBatchLength {
                    length: batch_length,
                },
                base_offset,
            ));
        }
    };
    let Some(bytes) = rest.get(..total) else {
        return Ok(Split::Truncated(TruncatedBatch {
            position,
            available: rest.len(),
            batch_len: Some(total),
            base_offset,
        }));
    };
    let magic = bytes[16] as i8;
    if magic != MAGIC_V2 {
        return Err((RecordsErrorKind::UnsupportedMagic { magic }, base_offset));
    }
    let stored_crc = u32::from_be_bytes([bytes[17], bytes[18], bytes[19], bytes[20]]);
    let actual_crc = crc32c::crc32c(&bytes[CRC_START..]);
    if stored_crc != actual_crc {
        return Err((
            RecordsErrorKind::CrcMismatch {
                stored: stored_crc,
                computed: actual_crc,
            },
            base_offset,
        ));
    }
    let header = BatchHeader {
        base_offset: i64_at(bytes, 0),
        partition_leader_epoch: i32_at(bytes, 12),
        attributes: i16::from_be_bytes([bytes[21], bytes[22]]),
        last_offset_delta: i32_at(bytes, 23),
        base_timestamp: i64_at(bytes, 27),
        max_timestamp: i64_at(bytes, 35),
        producer_id: i64_at(bytes, 43),
        record_count: i32_at(bytes, 57),
    };
    let start = position;
    Ok(Split::Batch {
        bytes: buffer.slice(start..start + total),
        header,
    })
}

fn i64_at(bytes: &[u8], at: usize) -> i64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&bytes[at..at + 8]);
    i64::from_be_bytes(raw)
}

fn i32_at(bytes: &[u8], at: usize) -> i32 {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(&bytes[at..at + 4]);
    i32::from_be_bytes(raw)
}
