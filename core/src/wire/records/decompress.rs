//! Bounded decompression of a batch's record section.
//!
//! `kafka-protocol` decompresses without an output bound (gzip, lz4 and zstd grow a buffer until
//! the stream ends; snappy allocates whatever length a block header claims, up to 4 GiB from a
//! few bytes). A fetched batch comes from the network, so we decompress here with a limit and
//! hand the result to the crate's record decoder through its custom-decompression hook.

use std::io::Read;

use bytes::Bytes;

use super::RecordsErrorKind;

/// Kafka's compression codec ids (batch attributes bits 0-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// No compression.
    None,
    /// gzip (RFC 1952), possibly several concatenated members.
    Gzip,
    /// Snappy, in the xerial block framing the Java client writes, or a single raw block.
    Snappy,
    /// LZ4 frame format.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl Codec {
    /// The codec for an attributes compression id, if it is one Kafka defines.
    pub fn from_id(id: i16) -> Option<Self> {
        Some(match id {
            0 => Self::None,
            1 => Self::Gzip,
            2 => Self::Snappy,
            3 => Self::Lz4,
            4 => Self::Zstd,
            _ => return None,
        })
    }
}

/// The xerial snappy stream header: magic, then a version and a compatible version (i32 each).
const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_LEN: usize = 16;

/// Decompresses `data` with `codec`, failing once the output would exceed `limit` bytes.
/// `Codec::None` returns `data` itself (no copy).
pub(super) fn decompress(
    codec: Codec,
    data: &Bytes,
    limit: usize,
) -> Result<Bytes, RecordsErrorKind> {
    let out = match codec {
        Codec::None => return Ok(data.clone()),
        Codec::Gzip => read_bounded(flate2::read::MultiGzDecoder::new(&data[..]), codec, limit)?,
        Codec::Lz4 => {
            let decoder = lz4::Decoder::new(&data[..]).map_err(|e| failure(codec, e))?;
            read_bounded(decoder, codec, limit)?
        }
        Codec::Zstd => {
            let decoder = zstd::stream::read::Decoder::with_buffer(&data[..])
                .map_err(|e| failure(codec, e))?;
            read_bounded(decoder, codec, limit)?
        }
        Codec::Snappy => snappy(data, limit)?,
    };
    Ok(Bytes::from(out))
}

fn read_bounded(
    reader: impl Read,
    codec: Codec,
    limit: usize,
) -> Result<Vec<u8>, RecordsErrorKind> {
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|e| failure(codec, e))?;
    if out.len() > limit {
        return Err(RecordsErrorKind::DecompressedTooLarge { limit });
    }
    Ok(out)
}

fn snappy(data: &[u8], limit: usize) -> Result<Vec<u8>, RecordsErrorKind> {
    let mut out = Vec::new();
    if !data.starts_with(XERIAL_MAGIC) {
        snappy_block(data, &mut out, limit)?;
        return Ok(out);
    }
    let mut rest = data
        .get(XERIAL_HEADER_LEN..)
        .ok_or_else(|| failure(Codec::Snappy, "xerial header is truncated"))?;
    while !rest.is_empty() {
        let (len, tail) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| failure(Codec::Snappy, "xerial block length is truncated"))?;
        let len = u32::from_be_bytes(*len) as usize;
        let block = tail
            .get(..len)
            .ok_or_else(|| failure(Codec::Snappy, "xerial block is truncated"))?;
        snappy_block(block, &mut out, limit)?;
        rest = &tail[len..];
    }
    Ok(out)
}

/// Appends one raw snappy block to `out`, checking its announced length before allocating.
fn snappy_block(block: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), RecordsErrorKind> {
    let len = snap::raw::decompress_len(block).map_err(|e| failure(Codec::Snappy, e))?;
    let start = out.len();
    let end = start
        .checked_add(len)
        .filter(|&end| end <= limit)
        .ok_or(RecordsErrorKind::DecompressedTooLarge { limit })?;
    out.resize(end, 0);
    let written = snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(|e| failure(Codec::Snappy, e))?;
    out.truncate(start + written);
    Ok(())
}

fn failure(codec: Codec, detail: impl std::fmt::Display) -> RecordsErrorKind {
    RecordsErrorKind::Decompress {
        codec,
        detail: detail.to_string(),
    }
}
