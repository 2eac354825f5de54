//! An allocation-free walk over a batch's (decompressed) record section that rejects what would
//! make `kafka-protocol`'s record decoder misbehave on hostile input:
//!
//! - it reserves `record_count` records and `header_count` headers up front, straight from the
//!   wire (a few bytes can ask for terabytes and abort the process);
//! - it adds the timestamp and offset deltas to the batch's base values with plain `+`, which
//!   panics on overflow in debug builds.
//!
//! The walk reads varints exactly as the crate does, so the values it checks are the values the
//! crate will compute. It does not copy or allocate; the crate then does the real decoding.

/// What [`check_records`] checks a record section against: fields of its batch header.
#[derive(Debug, Clone, Copy)]
pub(super) struct SectionBounds {
    pub(super) record_count: i32,
    pub(super) base_offset: i64,
    pub(super) last_offset_delta: i32,
    pub(super) base_timestamp: i64,
}

/// Checks that `records` holds exactly `record_count` records and nothing after them; that
/// each record fits its size prefix and has a header count it can hold; that the offset
/// deltas strictly increase within `0..=last_offset_delta` (compaction may leave gaps, never
/// disorder); and that no delta added to `base_offset` / `base_timestamp` overflows.
pub(super) fn check_records(records: &[u8], bounds: SectionBounds) -> Result<(), String> {
    let mut walker = Walker {
        buf: records,
        pos: 0,
    };
    let count = bounds.record_count;
    let mut previous_delta: Option<i32> = None;
    for index in 0..count {
        let delta = check_record(&mut walker, bounds)
            .map_err(|why| format!("record {index} of {count}: {why}"))?;
        if previous_delta.is_some_and(|previous| delta <= previous) {
            return Err(format!(
                "record {index} of {count}: offset delta {delta} does not follow {}",
                previous_delta.unwrap_or_default()
            ));
        }
        previous_delta = Some(delta);
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

/// Checks one record; returns its offset delta.
fn check_record(walker: &mut Walker<'_>, bounds: SectionBounds) -> Result<i32, String> {
    let size = walker.varint()?;
    let size = usize::try_from(size).map_err(|_| format!("negative record size {size}"))?;
    let body = walker.take(size)?;
    let mut record = Walker { buf: body, pos: 0 };
    record.take(1)?; // attributes
    let timestamp_delta = record.varlong()?;
    bounds
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
    bounds
        .base_offset
        .checked_add(i64::from(offset_delta))
        .ok_or_else(|| format!("offset delta {offset_delta} overflows"))?;
    record.skip_nullable_bytes()?; // key
    record.skip_nullable_bytes()?; // value
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
    Ok(offset_delta)
}

struct Walker<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Walker<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|&end| end <= self.buf.len())
            .ok_or_else(|| format!("{len} bytes needed, {} left", self.remaining()))?;
        let slice = &self.buf[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn byte(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    /// Unsigned LEB128 of at most `max_bytes` bytes, accumulated like `kafka-protocol` does:
    /// bits beyond the width are dropped, and reading stops after `max_bytes` bytes even if the
    /// last one has its continuation bit set.
    fn unsigned(&mut self, max_bytes: u32) -> Result<u64, String> {
        let mut value = 0u64;
        for i in 0..max_bytes {
            let b = u64::from(self.byte()?);
            value |= (b & 0x7F) << (i * 7);
            if b < 0x80 {
                break;
            }
        }
        Ok(value)
    }

    fn varint(&mut self) -> Result<i32, String> {
        // Truncation to 32 bits mirrors the crate's u32 accumulator.
        let zigzag = self.unsigned(5)? as u32;
        Ok(((zigzag >> 1) as i32) ^ -((zigzag & 1) as i32))
    }

    fn varlong(&mut self) -> Result<i64, String> {
        let zigzag = self.unsigned(10)?;
        Ok(((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64))
    }

    fn skip_nullable_bytes(&mut self) -> Result<(), String> {
        let len = self.varint()?;
        match len {
            -1 => Ok(()),
            len if len < -1 => Err(format!("negative length {len}")),
            len => self.take(len as usize).map(drop),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
