//! A bounds-checked big-endian reader over untrusted bytes: every read either succeeds or
//! gives a [`ProtocolError`], and no length read from the bytes sizes an allocation before
//! it was checked against the bytes that remain.

use std::collections::BTreeMap;

use super::ProtocolError;
use crate::task::TaskId;

pub(super) struct Reader<'a> {
    pub(super) data: &'a [u8],
    pub(super) pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }
}

impl Reader<'_> {
    pub(super) fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    pub(super) fn take<const N: usize>(&mut self) -> Result<[u8; N], ProtocolError> {
        let bytes = self
            .data
            .get(self.pos..self.pos + N)
            .and_then(|s| <[u8; N]>::try_from(s).ok())
            .ok_or(ProtocolError::Truncated {
                offset: self.pos,
                needed: N.saturating_sub(self.remaining()),
            })?;
        self.pos += N;
        Ok(bytes)
    }

    pub(super) fn u8(&mut self) -> Result<u8, ProtocolError> {
        Ok(u8::from_be_bytes(self.take::<1>()?))
    }

    pub(super) fn i16(&mut self) -> Result<i16, ProtocolError> {
        Ok(i16::from_be_bytes(self.take::<2>()?))
    }

    pub(super) fn i32(&mut self) -> Result<i32, ProtocolError> {
        Ok(i32::from_be_bytes(self.take::<4>()?))
    }

    /// `count:i32 { subtopology:i32 partition:i32 }*count`, the count checked against the
    /// bytes that remain.
    pub(super) fn tasks(&mut self) -> Result<Vec<TaskId>, ProtocolError> {
        let count_at = self.pos;
        let count = self.i32()?;
        let fits = usize::try_from(count)
            .ok()
            .filter(|&n| n.checked_mul(8).is_some_and(|b| b <= self.remaining()));
        let Some(count) = fits else {
            return Err(ProtocolError::InvalidLength {
                offset: count_at,
                length: count,
            });
        };
        let mut tasks = Vec::with_capacity(count);
        for _ in 0..count {
            tasks.push(self.task()?);
        }
        Ok(tasks)
    }

    pub(super) fn skip(
        &mut self,
        n: usize,
        offset: usize,
        length: i32,
    ) -> Result<(), ProtocolError> {
        if n > self.remaining() {
            return Err(ProtocolError::InvalidLength { offset, length });
        }
        self.pos += n;
        Ok(())
    }

    /// An array length (`-1` = null = 0 elements) whose elements take at least `min_size` bytes.
    pub(super) fn array_len(&mut self, min_size: usize) -> Result<usize, ProtocolError> {
        let offset = self.pos;
        let length = self.i32()?;
        if length == -1 {
            return Ok(0);
        }
        usize::try_from(length)
            .ok()
            .filter(|&n| n.saturating_mul(min_size) <= self.remaining())
            .ok_or(ProtocolError::InvalidLength { offset, length })
    }

    pub(super) fn string(&mut self) -> Result<(), ProtocolError> {
        let offset = self.pos;
        let length = self.i16()?;
        if length == -1 {
            return Ok(());
        }
        let n = usize::try_from(length).map_err(|_| ProtocolError::InvalidLength {
            offset,
            length: i32::from(length),
        })?;
        self.skip(n, offset, i32::from(length))
    }

    pub(super) fn bytes(&mut self) -> Result<(), ProtocolError> {
        let offset = self.pos;
        let length = self.i32()?;
        if length == -1 {
            return Ok(());
        }
        let n =
            usize::try_from(length).map_err(|_| ProtocolError::InvalidLength { offset, length })?;
        self.skip(n, offset, length)
    }

    pub(super) fn topic_partitions(&mut self) -> Result<(), ProtocolError> {
        let topics = self.array_len(6)?;
        for _ in 0..topics {
            self.string()?;
            let partitions = self.array_len(4)?;
            self.skip(partitions * 4, self.pos, 0)?;
        }
        Ok(())
    }

    pub(super) fn i64(&mut self) -> Result<i64, ProtocolError> {
        Ok(i64::from_be_bytes(self.take::<8>()?))
    }

    /// `len:i16 utf8-bytes` with `len ≥ 0`.
    pub(super) fn string_value(&mut self) -> Result<String, ProtocolError> {
        let offset = self.pos;
        let length = self.i16()?;
        let n = usize::try_from(length)
            .ok()
            .filter(|&n| n <= self.remaining())
            .ok_or(ProtocolError::InvalidLength {
                offset,
                length: i32::from(length),
            })?;
        let bytes = self.data.get(self.pos..self.pos + n).unwrap_or_default();
        let value = std::str::from_utf8(bytes)
            .map_err(|_| ProtocolError::InvalidUtf8 { offset })?
            .to_owned();
        self.pos += n;
        Ok(value)
    }

    /// `count:i32 { subtopology:i32 partition:i32 offset_sum:i64 }*count`: every task once,
    /// every offset sum non-negative.
    pub(super) fn task_offsets(&mut self) -> Result<BTreeMap<TaskId, i64>, ProtocolError> {
        let count_at = self.pos;
        let count = self.i32()?;
        let fits = usize::try_from(count)
            .ok()
            .filter(|&n| n.checked_mul(16).is_some_and(|b| b <= self.remaining()));
        let Some(count) = fits else {
            return Err(ProtocolError::InvalidLength {
                offset: count_at,
                length: count,
            });
        };
        let mut offsets = BTreeMap::new();
        for _ in 0..count {
            let task = self.task()?;
            let offset_sum = self.i64()?;
            if offset_sum < 0 {
                return Err(ProtocolError::InvalidOffsetSum { task, offset_sum });
            }
            if offsets.insert(task, offset_sum).is_some() {
                return Err(ProtocolError::DuplicateTask(task));
            }
        }
        Ok(offsets)
    }

    /// `subtopology:i32 partition:i32`, both non-negative.
    fn task(&mut self) -> Result<TaskId, ProtocolError> {
        let sub = self.i32()?;
        let partition = self.i32()?;
        let subtopology = usize::try_from(sub).ok().filter(|_| partition >= 0).ok_or(
            ProtocolError::InvalidTaskId {
                subtopology: i64::from(sub),
                partition,
            },
        )?;
        Ok(TaskId {
            subtopology,
            partition,
        })
    }
}
