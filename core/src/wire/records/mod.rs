//! Decoding one partition's `records` bytes from a Fetch response into records.
//!
//! [`decode_fetched_records`] is a pure function:
//!
//! 1. It splits the buffer into batches by each batch's length field. A trailing batch cut short
//!    is normal (brokers fill a response up to `max_bytes` and cut the last batch) and is
//!    reported in [`FetchedRecords::truncated`], not as an error.
//! 2. It checks each batch's magic and CRC (CRC-32C by the `crc32c` crate, which uses the
//!    SSE 4.2 / ARMv8 instruction when the CPU has it), decompresses it (gzip, snappy, lz4,
//!    zstd) with an output bound, and checks and decodes the record section in one pass (see
//!    `section`), building each record directly as the caller's type ([`DecodedRecord`]).
//! 3. It computes the next fetch offset from the batch header: `base_offset +
//!    last_offset_delta + 1`. Compaction can remove a batch's last records and control batches
//!    hold no user records, so the offset of the last returned record is not enough.
//! 4. It drops control records and records below the fetch offset (a broker returns whole
//!    batches, which can start before the offset asked for), and, for
//!    [`IsolationLevel::ReadCommitted`], the batches of aborted transactions.
//!
//! # Copies
//!
//! Keys, values and header values of uncompressed batches are zero-copy slices of the fetched
//! buffer. A compressed batch is decompressed into one new buffer, and its records' byte fields
//! are slices of that buffer. Nothing is allocated per record beyond the output `Vec`'s slot
//! (and, for records with headers, the record type's own header list).
//!
//! # Headers: duplicates kept
//!
//! Kafka allows a record to carry several headers with the same key; every one of them is
//! decoded, in wire order.

mod batch;
mod decoded;
mod decompress;
mod section;
mod transactions;

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod tests;

use std::ops::Range;

use bytes::Bytes;
use kafka_protocol::messages::fetch_response;
use kafka_protocol::protocol::StrBytes;

pub use decoded::{DecodedRecord, WireHeaders, WireRecord};
pub use decompress::Codec;

use batch::{BatchHeader, NO_PRODUCER_ID, Split, V2_HEADER_LEN};
use section::{RecordSpans, SectionBounds};
use transactions::AbortedTransactionFilter;

/// Default bound on one batch's decompressed record section: 128 MiB.
pub const DEFAULT_MAX_DECOMPRESSED_BATCH_BYTES: usize = 128 * 1024 * 1024;
/// Default bound on the decompressed bytes of one whole Fetch response: 256 MiB.
pub const DEFAULT_MAX_DECOMPRESSED_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

/// Which records a consumer may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IsolationLevel {
    /// Everything, including records of aborted and open transactions.
    #[default]
    ReadUncommitted,
    /// Only records of committed transactions (and non-transactional records). The broker stops
    /// the response at the last stable offset; this decoder drops aborted transactions.
    ReadCommitted,
}

/// An aborted transaction as listed in a Fetch response partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTransaction {
    /// The producer that aborted.
    pub producer_id: i64,
    /// Offset of the transaction's first record.
    pub first_offset: i64,
}

impl From<&fetch_response::AbortedTransaction> for AbortedTransaction {
    fn from(txn: &fetch_response::AbortedTransaction) -> Self {
        Self {
            producer_id: txn.producer_id.0,
            first_offset: txn.first_offset,
        }
    }
}

/// One partition's share of a Fetch response, as the decoder needs it.
#[derive(Debug, Clone, Copy)]
pub struct FetchedPartition<'a> {
    /// Partition index, for error messages.
    pub partition: i32,
    /// The offset the Fetch request asked for; earlier records are dropped.
    pub fetch_offset: i64,
    /// The partition's `records` bytes.
    pub records: &'a Bytes,
    /// Visibility of transactional records.
    pub isolation: IsolationLevel,
    /// The partition's aborted transactions (used only for read_committed).
    pub aborted_transactions: &'a [AbortedTransaction],
}

/// Resource bounds for decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest decompressed record section of one batch; larger is an error.
    pub max_decompressed_batch_bytes: usize,
    /// Largest decompressed total of one Fetch response, all partitions together (a
    /// [`DecompressBudget`] per response): past it, partitions stop before their next
    /// compressed batch and fetch it again later.
    pub max_decompressed_response_bytes: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_decompressed_batch_bytes: DEFAULT_MAX_DECOMPRESSED_BATCH_BYTES,
            max_decompressed_response_bytes: DEFAULT_MAX_DECOMPRESSED_RESPONSE_BYTES,
        }
    }
}

/// Decompressed bytes that the partitions of one Fetch response may still produce together
/// (see [`decode_fetched_records_within`]): a response of many compressed partitions is bounded
/// as a whole, not only batch by batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecompressBudget {
    remaining: usize,
    spent: usize,
}

impl DecompressBudget {
    /// A budget of `bytes`.
    pub fn new(bytes: usize) -> Self {
        Self {
            remaining: bytes,
            spent: 0,
        }
    }

    /// No bound beyond the per-batch one.
    pub fn unlimited() -> Self {
        Self::new(usize::MAX)
    }

    /// Decompressed bytes produced so far.
    pub fn spent(&self) -> usize {
        self.spent
    }

    fn spend(&mut self, bytes: usize) {
        self.remaining = self.remaining.saturating_sub(bytes);
        self.spent = self.spent.saturating_add(bytes);
    }
}

/// Whether a record's timestamp was set by the producer or by the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    /// Set by the producer (`CreateTime`).
    CreateTime,
    /// Set by the broker on append (`LogAppendTime`); all records of a batch share it.
    LogAppendTime,
}

/// A record header. A record may hold several headers with the same key (see the module
/// docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordHeader {
    /// The header key (valid UTF-8).
    pub key: StrBytes,
    /// The header value; `None` for a null value.
    pub value: Option<Bytes>,
}

/// A user record from a fetched batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedRecord {
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
    /// Headers in wire order, duplicate keys kept.
    pub headers: Vec<RecordHeader>,
}

/// A batch at the end of the buffer that is not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TruncatedBatch {
    /// Byte position where the partial batch starts (= bytes of complete batches).
    pub position: usize,
    /// Bytes of it present.
    pub available: usize,
    /// Its full length, if the length field was present.
    pub batch_len: Option<usize>,
    /// Its base offset, if present.
    pub base_offset: Option<i64>,
}

/// The result of decoding one partition's records, as `R` ([`FetchedRecord`] unless the
/// caller chose its own [`DecodedRecord`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedRecords<R = FetchedRecord> {
    /// User records at or after the fetch offset, in offset order.
    pub records: Vec<R>,
    /// The offset to fetch next: one past the last complete batch (by its header), and never
    /// below the fetch offset.
    pub next_offset: i64,
    /// Bytes of the buffer taken up by complete batches.
    pub complete_bytes: usize,
    /// The partial batch at the end, if any.
    pub truncated: Option<TruncatedBatch>,
    /// Control batches (transaction markers) skipped.
    pub control_batches: usize,
    /// Batches dropped as part of aborted transactions (read_committed only).
    pub aborted_batches: usize,
    /// Decoding stopped before a compressed batch because the response's
    /// [`DecompressBudget`] ran out: the batch and what follows come with the next fetch
    /// ([`next_offset`](Self::next_offset) stops before it).
    pub over_budget: bool,
}

impl<R> Default for FetchedRecords<R> {
    fn default() -> Self {
        Self {
            records: Vec::new(),
            next_offset: 0,
            complete_bytes: 0,
            truncated: None,
            control_batches: 0,
            aborted_batches: 0,
            over_budget: false,
        }
    }
}

impl<R> FetchedRecords<R> {
    /// True when the buffer held no complete batch but a partial one: fetching again with the
    /// same size limit returns the same partial batch. The caller must raise the limit (brokers
    /// since KIP-74 always send the first batch whole, so this means an old broker or a limit
    /// below one batch).
    pub fn is_stalled(&self) -> bool {
        self.complete_bytes == 0 && self.truncated.is_some()
    }
}

/// A batch that cannot be decoded. Names the partition, the byte position of the batch and its
/// base offset when it could be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("partition {partition}: bad record batch at byte {position}{}: {kind}", offset_suffix(.base_offset))]
pub struct RecordsError {
    /// Partition index.
    pub partition: i32,
    /// Byte position of the batch in the partition's `records` buffer.
    pub position: usize,
    /// The batch's base offset, if it could be read.
    pub base_offset: Option<i64>,
    /// What is wrong.
    pub kind: RecordsErrorKind,
}

fn offset_suffix(base_offset: &Option<i64>) -> String {
    base_offset.map_or_else(String::new, |offset| format!(" (base offset {offset})"))
}

/// What is wrong with a batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordsErrorKind {
    /// The batch length field is negative or shorter than a batch header.
    #[error("invalid batch length {length}")]
    InvalidBatchLength {
        /// The length field.
        length: i32,
    },
    /// Not a v2 batch (v0/v1 message sets are not supported).
    #[error("unsupported record batch magic {magic}")]
    UnsupportedMagic {
        /// The magic byte.
        magic: i8,
    },
    /// The CRC stored in the batch does not match its content.
    #[error("CRC mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    CrcMismatch {
        /// CRC in the header.
        stored: u32,
        /// CRC of the content.
        computed: u32,
    },
    /// The compression id is not one Kafka defines.
    #[error("unknown compression codec id {id}")]
    UnknownCompression {
        /// The attributes' codec bits.
        id: i16,
    },
    /// Decompression failed.
    #[error("{codec:?} decompression failed: {detail}")]
    Decompress {
        /// The codec.
        codec: Codec,
        /// The decompressor's message.
        detail: String,
    },
    /// The decompressed records exceed [`DecodeLimits::max_decompressed_batch_bytes`].
    #[error("decompressed batch exceeds {limit} bytes")]
    DecompressedTooLarge {
        /// The limit.
        limit: usize,
    },
    /// A batch does not start after the previous one ended (offsets must increase across the
    /// batches of a partition), or starts at a negative offset.
    #[error(
        "batch at base offset {base_offset} does not follow the previous batch (last offset {previous_last_offset:?})"
    )]
    OffsetsOutOfOrder {
        /// This batch's base offset.
        base_offset: i64,
        /// The last offset of the batch before it, if any.
        previous_last_offset: Option<i64>,
    },
    /// The header's last offset delta is negative or overflows.
    #[error("invalid last offset delta {delta}")]
    InvalidLastOffsetDelta {
        /// The field.
        delta: i32,
    },
    /// The record count is negative.
    #[error("negative record count {count}")]
    NegativeRecordCount {
        /// The field.
        count: i32,
    },
    /// The record section is malformed.
    #[error("malformed records: {detail}")]
    InvalidRecords {
        /// Which record and what.
        detail: String,
    },
    /// A control batch whose first record has no valid control key.
    #[error("control record has no valid key")]
    InvalidControlRecord,
}

/// Decodes one partition's fetched records. See the module documentation.
pub fn decode_fetched_records(
    fetched: &FetchedPartition<'_>,
    limits: &DecodeLimits,
) -> Result<FetchedRecords, RecordsError> {
    decode_fetched_records_within(fetched, limits, &mut DecompressBudget::unlimited())
}

/// [`decode_fetched_records`] spending decompressed bytes from `budget`, shared with the other
/// partitions of the same response. A compressed batch that does not fit what is left stops
/// the partition before it ([`FetchedRecords::over_budget`]) if other batches spent the
/// budget; if it does not fit a budget nothing was spent of, it can never be decoded and is
/// an error ([`RecordsErrorKind::DecompressedTooLarge`]). Records are built as `R`.
pub fn decode_fetched_records_within<R: DecodedRecord>(
    fetched: &FetchedPartition<'_>,
    limits: &DecodeLimits,
    budget: &mut DecompressBudget,
) -> Result<FetchedRecords<R>, RecordsError> {
    let buffer = fetched.records;
    let mut filter = match fetched.isolation {
        IsolationLevel::ReadCommitted => {
            Some(AbortedTransactionFilter::new(fetched.aborted_transactions))
        }
        IsolationLevel::ReadUncommitted => None,
    };
    let mut out = FetchedRecords {
        next_offset: fetched.fetch_offset,
        ..FetchedRecords::default()
    };
    let mut position = 0;
    let mut previous_last_offset: Option<i64> = None;
    loop {
        let error_at = |base_offset, kind| RecordsError {
            partition: fetched.partition,
            position,
            base_offset,
            kind,
        };
        let (bytes, header) = match batch::split_at(buffer, position) {
            Ok(Split::End) => break,
            Ok(Split::Truncated(truncated)) => {
                out.truncated = Some(truncated);
                break;
            }
            Ok(Split::Batch { bytes, header }) => (bytes, header),
            Err((kind, base_offset)) => return Err(error_at(base_offset, kind)),
        };
        let batch_error = |kind| error_at(Some(header.base_offset), kind);
        let last_offset = header
            .last_offset()
            .filter(|&last| last < i64::MAX)
            .ok_or_else(|| {
                batch_error(RecordsErrorKind::InvalidLastOffsetDelta {
                    delta: header.last_offset_delta,
                })
            })?;
        // Offsets increase across batches too: a batch starting at or before the end of the
        // previous one would make the task see offsets go backwards.
        if header.base_offset < 0
            || previous_last_offset.is_some_and(|previous| header.base_offset <= previous)
        {
            return Err(batch_error(RecordsErrorKind::OffsetsOutOfOrder {
                base_offset: header.base_offset,
                previous_last_offset,
            }));
        }
        let next_offset = last_offset + 1;

        let mut aborted = false;
        if let Some(filter) = filter.as_mut()
            && header.producer_id != NO_PRODUCER_ID
        {
            filter.advance_to(last_offset);
            if header.is_control() {
                let Some(section) =
                    decompress_section(&bytes, &header, limits, budget).map_err(batch_error)?
                else {
                    out.over_budget = true;
                    break;
                };
                let mut first_key: Option<Option<Range<usize>>> = None;
                walk_section(&section, &header, |record| {
                    first_key.get_or_insert_with(|| record.key.clone());
                })
                .map_err(batch_error)?;
                let first_key = first_key.flatten().map(|key| &section[key]);
                if is_abort_marker(first_key).map_err(batch_error)? {
                    filter.end_transaction(header.producer_id);
                }
            } else {
                aborted = header.is_transactional() && filter.is_aborted(header.producer_id);
            }
        }

        if header.is_control() {
            out.control_batches += 1;
        } else if aborted {
            out.aborted_batches += 1;
        } else if next_offset > fetched.fetch_offset {
            let Some(section) =
                decompress_section(&bytes, &header, limits, budget).map_err(batch_error)?
            else {
                out.over_budget = true;
                break;
            };
            let (timestamp_type, batch_timestamp) = if header.is_log_append_time() {
                (TimestampType::LogAppendTime, Some(header.max_timestamp))
            } else {
                (TimestampType::CreateTime, None)
            };
            let leader_epoch =
                (header.partition_leader_epoch >= 0).then_some(header.partition_leader_epoch);
            // Room for this batch's records (at most one per 7 bytes of its section: the
            // count is the peer's word) and, guessing from its size, for those of the batches
            // after it, at most one per 64 bytes left: a record becomes a struct several times
            // larger than a small record's bytes, so a guess must not over-reserve much.
            let count = usize::try_from(header.record_count).unwrap_or(0);
            let left = buffer.len() - position;
            let expected = count.saturating_mul(left / bytes.len().max(1));
            let this_batch = count.min(section.len() / 7);
            out.records.reserve(this_batch.max(expected.min(left / 64)));
            let fetch_offset = fetched.fetch_offset;
            let records = &mut out.records;
            walk_section(&section, &header, |record| {
                if record.offset >= fetch_offset {
                    records.push(R::from_wire(WireRecord {
                        offset: record.offset,
                        timestamp: batch_timestamp.unwrap_or(record.timestamp),
                        timestamp_type,
                        leader_epoch,
                        key: record.key.clone().map(|key| section.slice(key)),
                        value: record.value.clone().map(|value| section.slice(value)),
                        headers: WireHeaders {
                            section: &section,
                            spans: record.headers,
                        },
                    }));
                }
            })
            .map_err(batch_error)?;
        }
        out.next_offset = out.next_offset.max(next_offset);
        previous_last_offset = Some(last_offset);
        position += bytes.len();
        out.complete_bytes = position;
    }
    Ok(out)
}

/// Decompresses one complete batch's record section; `None` when it does not fit what is
/// left of `budget` (see [`decode_fetched_records_within`]).
fn decompress_section(
    bytes: &Bytes,
    header: &BatchHeader,
    limits: &DecodeLimits,
    budget: &mut DecompressBudget,
) -> Result<Option<Bytes>, RecordsErrorKind> {
    if header.record_count < 0 {
        return Err(RecordsErrorKind::NegativeRecordCount {
            count: header.record_count,
        });
    }
    let codec =
        Codec::from_id(header.compression_code()).ok_or(RecordsErrorKind::UnknownCompression {
            id: header.compression_code(),
        })?;
    let section = bytes.slice(V2_HEADER_LEN..);
    let limit = limits.max_decompressed_batch_bytes.min(budget.remaining);
    let records = match decompress::decompress(codec, &section, limit) {
        Err(RecordsErrorKind::DecompressedTooLarge { .. })
            if limit < limits.max_decompressed_batch_bytes && budget.spent > 0 =>
        {
            return Ok(None);
        }
        other => other?,
    };
    if codec != Codec::None {
        // Uncompressed records are slices of the fetched buffer: nothing new is held.
        budget.spend(records.len());
    }
    Ok(Some(records))
}

/// Checks and walks a batch's (decompressed) record section; see `section`.
fn walk_section(
    section: &[u8],
    header: &BatchHeader,
    visit: impl FnMut(&RecordSpans<'_>),
) -> Result<(), RecordsErrorKind> {
    section::walk_records(
        section,
        SectionBounds {
            record_count: header.record_count,
            base_offset: header.base_offset,
            last_offset_delta: header.last_offset_delta,
            base_timestamp: header.base_timestamp,
        },
        visit,
    )
    .map_err(|detail| RecordsErrorKind::InvalidRecords { detail })
}

/// Reads a control record's key (`version: i16, type: i16`); type 0 is ABORT, 1 COMMIT. Other
/// types are future markers and are not aborts.
fn is_abort_marker(first_key: Option<&[u8]>) -> Result<bool, RecordsErrorKind> {
    let key = first_key
        .and_then(|key| key.get(2..4))
        .ok_or(RecordsErrorKind::InvalidControlRecord)?;
    Ok(i16::from_be_bytes([key[0], key[1]]) == 0)
}
