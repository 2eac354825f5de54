//! One pass over a batch's (decompressed) record section that both checks and decodes it:
//! each record's fields come out as byte ranges of the section, so the caller slices keys,
//! values and header values out of the section's buffer without copying.
//!
//! The checks reject what hostile input could use to hurt the process or the task:
//!
//! - nothing is reserved from counts on the wire (`record_count`, `header_count`): a few bytes
//!   can ask for terabytes;
//! - timestamp and offset deltas are added to the batch's base values with checked
//!   arithmetic;
//! - the section holds exactly `record_count` records, each inside its size prefix, with offset
//!   deltas strictly increasing within `0..=last_offset_delta`;
//! - lengths are `-1` (null) or non-negative, header keys are non-null UTF-8.
//!
//! Varints are read as Kafka (and `kafka-protocol`) read them: zig-zag LEB128, at most 5 bytes
//! for a varint and 10 for a varlong, bits beyond the width dropped. Like `kafka-protocol`,
//! bytes left inside a record's size prefix after its headers are ignored.

use std::ops::Range;

/// What [`walk_records`] checks a record section against: fields of its batch header.
#[derive(Debug, Clone, Copy)]
pub(super) struct SectionBounds {
    pub(super) record_count: i32,
    pub(super) base_offset: i64,
    pub(super) last_offset_delta: i32,
    pub(super) base_timestamp: i64,
}

/// One header of a record, as ranges of the section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct HeaderSpans {
    /// The key (checked to be UTF-8).
    pub(super) key: Range<usize>,
    /// The value; `None` for a null value.
    pub(super) value: Option<Range<usize>>,
}

/// One record, its byte fields as ranges of the section.
#[derive(Debug)]
pub(super) struct RecordSpans<'a> {
    /// `base_offset + offset_delta` (checked not to overflow).
    pub(super) offset: i64,
    /// `base_timestamp + timestamp_delta` (checked not to overflow).
    pub(super) timestamp: i64,
    /// The key; `None` for a null key.
    pub(super) key: Option<Range<usize>>,
    /// The value; `None` for a null value.
    pub(super) value: Option<Range<usize>>,
    /// The headers in wire order, duplicates kept.
    pub(super) headers: &'a [HeaderSpans],
}

/// Walks `records`, the record section of a batch described by `bounds`, and hands each
/// record to `visit` in order. Fails (with the record's index and what is wrong) on the first
/// record that breaks a rule of the module docs, or on bytes after the last record; `visit`
/// may have seen the records before it.
pub(super) fn walk_records(
    records: &[u8],
    bounds: SectionBounds,
    mut visit: impl FnMut(&RecordSpans<'_>),
) -> Result<(), String> {
    let mut walker = Walker {
        buf: records,
        pos: 0,
    };
    let count = bounds.record_count;
    let mut previous_delta: Option<i32> = None;
    let mut headers = Vec::new();
    for index in 0..count {
        let (delta, spans) = walk_record(&mut walker, bounds, &mut headers)
            .map_err(|why| format!("record {index} of {count}: {why}"))?;
        if previous_delta.is_some_and(|previous| delta <= previous) {
            return Err(format!(
                "record {index} of {count}: offset delta {delta} does not follow {}",
                previous_delta.unwrap_or_default()
            ));
        }
        previous_delta = Some(delta);
        visit(&RecordSpans {
            headers: &headers,
            ..spans
        });
    }
    if walker.remaining() > 0 {
        // A broker never pads a batch: bytes left over mean a wrong record count (records
        // this decoder would silently skip) or garbage that still costs memory.
        return Err(format!(
            "{} bytes after the {count} records the header announces",
            walker.remaining()
        ));
    }
    Ok(())
}

/// Reads one record (its headers into `headers`); returns its offset delta and its spans
/// (with empty headers: the caller points them at `headers`).
fn walk_record(
    walker: &mut Walker<'_>,
    bounds: SectionBounds,
    headers: &mut Vec<HeaderSpans>,
) -> Result<(i32, RecordSpans<'static>), String> {
    let size = walker.varint()?;
    let size = usize::try_from(size).map_err(|_| format!("negative record size {size}"))?;
    let body = walker.take(size)?;
    // The record's walker sees the section up to the record's end, so its positions are
    // positions in the section.
    let mut record = Walker {
        buf: &walker.buf[..body.end],
        pos: body.start,
    };
    record.take(1)?; // attributes
    let timestamp_delta = record.varlong()?;
    let timestamp = bounds
        .base_timestamp
        .checked_add(timestamp_delta)
        .ok_or_else(|| format!("timestamp delta {timestamp_delta} overflows"))?;
    let offset_delta = record.varint()?;
    if !(0..=bounds.last_offset_delta).contains(&offset_delta) {
        return Err(format!(
            "offset delta {offset_delta} outside 0..={} (the header's last offset delta)",
            bounds.last_offset_delta
        ));
    }
    let offset = bounds
        .base_offset
        .checked_add(i64::from(offset_delta))
        .ok_or_else(|| format!("offset delta {offset_delta} overflows"))?;
    let key = record.nullable_bytes("key")?;
    let value = record.nullable_bytes("value")?;
    let header_count = record.varint()?;
    let header_count = usize::try_from(header_count)
        .map_err(|_| format!("negative header count {header_count}"))?;
    // Each header takes at least two bytes (key length and value length).
    if header_count > record.remaining() / 2 {
        return Err(format!(
            "{header_count} headers cannot fit in {} bytes",
            record.remaining()
        ));
    }
    headers.clear();
    for index in 0..header_count {
        let key = record
            .nullable_bytes("header key")?
            .ok_or_else(|| format!("header {index} has a null key"))?;
        std::str::from_utf8(&record.buf[key.clone()])
            .map_err(|e| format!("header {index} key is not UTF-8: {e}"))?;
        let value = record.nullable_bytes("header value")?;
        headers.push(HeaderSpans { key, value });
    }
    Ok((
        offset_delta,
        RecordSpans {
            offset,
            timestamp,
            key,
            value,
            headers: &[],
        },
    ))
}

struct Walker<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Walker<'_> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next `len` bytes, as a range of `buf`.
    #[inline(always)]
    fn take(&mut self, len: usize) -> Result<Range<usize>, String> {
        let start = self.pos;
        let end = start
            .checked_add(len)
            .filter(|&end| end <= self.buf.len())
            .ok_or_else(|| format!("{len} bytes needed, {} left", self.remaining()))?;
        self.pos = end;
        Ok(start..end)
    }

    /// Unsigned LEB128 of at most `max_bytes` bytes, accumulated like `kafka-protocol` does:
    /// bits beyond the width are dropped, and reading stops after `max_bytes` bytes even if the
    /// last one has its continuation bit set.
    #[inline(always)]
    fn unsigned(&mut self, max_bytes: u32) -> Result<u64, String> {
        // One byte: the common case for lengths, deltas and counts below 64.
        match self.buf.get(self.pos) {
            Some(&b) if b < 0x80 => {
                self.pos += 1;
                return Ok(u64::from(b));
            }
            Some(_) => {}
            None => return Err("1 bytes needed, 0 left".to_owned()),
        }
        let mut value = 0u64;
        for i in 0..max_bytes {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| "1 bytes needed, 0 left".to_owned())?;
            self.pos += 1;
            let b = u64::from(b);
            value |= (b & 0x7F) << (i * 7);
            if b < 0x80 {
                break;
            }
        }
        Ok(value)
    }

    #[inline(always)]
    fn varint(&mut self) -> Result<i32, String> {
        // Truncation to 32 bits mirrors the crate's u32 accumulator.
        let zigzag = self.unsigned(5)? as u32;
        Ok(((zigzag >> 1) as i32) ^ -((zigzag & 1) as i32))
    }

    #[inline(always)]
    fn varlong(&mut self) -> Result<i64, String> {
        let zigzag = self.unsigned(10)?;
        Ok(((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64))
    }

    /// A length-prefixed byte string (`-1`: null) as a range of `buf`.
    #[inline(always)]
    fn nullable_bytes(&mut self, what: &str) -> Result<Option<Range<usize>>, String> {
        match self.varint()? {
            -1 => Ok(None),
            len if len < -1 => Err(format!("negative {what} length {len}")),
            len => self.take(len as usize).map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_records(records: &[u8], bounds: SectionBounds) -> Result<(), String> {
        walk_records(records, bounds, |_| {})
    }

    fn bounds(record_count: i32, last_offset_delta: i32) -> SectionBounds {
        SectionBounds {
            record_count,
            base_offset: 0,
            last_offset_delta,
            base_timestamp: 0,
        }
    }

    /// A record with no key, value or headers at `offset_delta` (below 64).
    fn record(offset_delta: u8) -> Vec<u8> {
        let body = [0x00, 0x00, offset_delta << 1, 0x01, 0x01, 0x00];
        let mut bytes = vec![(body.len() as u8) << 1];
        bytes.extend_from_slice(&body);
        bytes
    }

    #[test]
    fn offset_deltas_must_increase_within_the_last_offset_delta() {
        let section = [record(0), record(2), record(5)].concat();
        assert!(
            check_records(&section, bounds(3, 5)).is_ok(),
            "gaps are fine"
        );
        let beyond = check_records(&section, bounds(3, 4)).unwrap_err();
        assert!(beyond.contains("outside 0..=4"), "{beyond}");
        let backwards = [record(3), record(1)].concat();
        let err = check_records(&backwards, bounds(2, 5)).unwrap_err();
        assert!(err.contains("does not follow 3"), "{err}");
        let repeated = [record(1), record(1)].concat();
        assert!(check_records(&repeated, bounds(2, 5)).is_err());
    }

    #[test]
    fn bytes_after_the_announced_records_are_refused() {
        let section = [record(0), record(1)].concat();
        let err = check_records(&section, bounds(1, 1)).unwrap_err();
        assert!(err.contains("bytes after the 1 records"), "{err}");
    }

    #[test]
    fn varints_match_kafka_zigzag() {
        // zigzag: 0 -> 0, -1 -> 1, 1 -> 2, 63 -> 126, -64 -> 127, 64 -> 128 (0x80 0x01)
        let bytes = [0x00, 0x01, 0x02, 0x7E, 0x7F, 0x80, 0x01];
        let mut walker = Walker {
            buf: &bytes,
            pos: 0,
        };
        let values: Vec<i32> = (0..6).map(|_| walker.varint().unwrap()).collect();
        assert_eq!(values, vec![0, -1, 1, 63, -64, 64]);
    }

    #[test]
    fn huge_record_count_is_rejected_without_allocating() {
        let err = check_records(&[], bounds(i32::MAX, 0)).unwrap_err();
        assert!(err.contains("record 0"), "{err}");
    }

    #[test]
    fn huge_header_count_is_rejected() {
        // size=6: attributes, ts delta 0, offset delta 0, key null, value null, headers = i32::MAX/2-ish
        let record = [0x00, 0x00, 0x00, 0x01, 0x01, 0xFE, 0xFF, 0xFF, 0xFF, 0x0F];
        let mut bytes = vec![(record.len() as u8) << 1];
        bytes.extend_from_slice(&record);
        let err = check_records(&bytes, bounds(1, 0)).unwrap_err();
        assert!(err.contains("headers cannot fit"), "{err}");
    }

    #[test]
    fn overflowing_timestamp_delta_is_rejected() {
        // ts delta = i64::MAX (zigzag u64::MAX - 1), base timestamp 1.
        let mut record = vec![0x00];
        record.extend_from_slice(&[0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]);
        record.extend_from_slice(&[0x00, 0x01, 0x01, 0x00]);
        let mut bytes = vec![(record.len() as u8) << 1];
        bytes.extend_from_slice(&record);
        let err = check_records(
            &bytes,
            SectionBounds {
                base_timestamp: 1,
                ..bounds(1, 0)
            },
        )
        .unwrap_err();
        assert!(err.contains("timestamp delta"), "{err}");
        assert!(check_records(&bytes, bounds(1, 0)).is_ok());
    }

    /// One record with no key, value "v" and `headers` (already encoded, count first).
    fn with_headers(headers: &[u8]) -> Vec<u8> {
        let mut body = vec![0x00, 0x00, 0x00, 0x01, 0x02, b'v'];
        body.extend_from_slice(headers);
        let mut bytes = vec![(body.len() as u8) << 1];
        bytes.extend_from_slice(&body);
        bytes
    }

    #[test]
    fn headers_come_out_as_ranges_duplicates_kept() {
        // Two headers "h": "1", then "h": null.
        let section = with_headers(&[0x04, 0x02, b'h', 0x02, b'1', 0x02, b'h', 0x01]);
        let mut seen = Vec::new();
        walk_records(&section, bounds(1, 0), |r| {
            let text = |range: &Range<usize>| section[range.clone()].to_vec();
            seen.push((
                r.offset,
                r.value.as_ref().map(text),
                r.headers
                    .iter()
                    .map(|h| (text(&h.key), h.value.as_ref().map(text)))
                    .collect::<Vec<_>>(),
            ));
        })
        .unwrap();
        assert_eq!(
            seen,
            vec![(
                0,
                Some(b"v".to_vec()),
                vec![(b"h".to_vec(), Some(b"1".to_vec())), (b"h".to_vec(), None)]
            )]
        );
    }

    #[test]
    fn null_and_non_utf8_header_keys_and_negative_lengths_are_refused() {
        let null_key = with_headers(&[0x02, 0x01, 0x01]);
        let err = check_records(&null_key, bounds(1, 0)).unwrap_err();
        assert!(err.contains("null key"), "{err}");
        let bad_utf8 = with_headers(&[0x02, 0x02, 0xFF, 0x01]);
        let err = check_records(&bad_utf8, bounds(1, 0)).unwrap_err();
        assert!(err.contains("not UTF-8"), "{err}");
        let negative = with_headers(&[0x02, 0x02, b'h', 0x03]);
        let err = check_records(&negative, bounds(1, 0)).unwrap_err();
        assert!(err.contains("negative header value length -2"), "{err}");
    }
}
