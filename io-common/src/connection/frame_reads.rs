//! The read buffer of one connection: socket reads land in it, and it hands the engine chunks
//! of whole Kafka frames, which the engine's frame decoder slices without copying
//! (`FrameDecoder::push_chunk`). A frame's whole length is reserved as soon as its length
//! prefix is in (up to [`EAGER_RESERVE_LIMIT`]), so a large Fetch response is read straight
//! into the buffer the records will be views of. So a broker can make a connection hold up to
//! 16 MiB with a 4-byte prefix (the engine's decoder, which never reserves on a prefix, still
//! bounds what it accepts); kstreams connects only to the brokers it is configured with.
//! The reader treats a prefix above the engine decoder's default limit
//! (`DEFAULT_MAX_FRAME_LEN`) as invalid and hands everything over for the decoder to refuse.

use bytes::{Bytes, BytesMut};
use kstreams_core::wire::framing::{DEFAULT_MAX_FRAME_LEN, LENGTH_PREFIX_LEN};

/// Room a read gets at least (and the first buffer's size).
pub(crate) const READ_CHUNK: usize = 64 * 1024;

/// Below this much room a read gets a new buffer rather than a short read.
const MIN_ROOM: usize = 4096;

/// Up to this frame size the whole frame is reserved when its prefix arrives; a larger one
/// (a hostile peer can announce 100 MiB) grows with the bytes received, at most doubling.
pub(crate) const EAGER_RESERVE_LIMIT: usize = 16 * 1024 * 1024;

/// Received bytes and the room for the next read.
///
/// Invariant: `buf[..filled]` holds received bytes not handed over yet, `buf[filled..]` is
/// zeroed room for the next read (the read API takes initialized memory).
#[derive(Debug)]
pub(crate) struct FrameReads {
    buf: BytesMut,
    filled: usize,
}

impl Default for FrameReads {
    fn default() -> Self {
        Self {
            buf: BytesMut::zeroed(READ_CHUNK),
            filled: 0,
        }
    }
}

impl FrameReads {
    /// Where the next read goes: room for the rest of the frame being received (see the
    /// module doc), and at least [`READ_CHUNK`] when the room left is small.
    pub(crate) fn room(&mut self) -> &mut [u8] {
        let spare = self.buf.len() - self.filled;
        let grow_to = match self.partial_frame_end() {
            // Reserved whole: the rest of the frame and a read's worth for the next ones.
            Some(end) if end <= EAGER_RESERVE_LIMIT => (self.buf.len() < end || spare < MIN_ROOM)
                .then(|| end.max(self.filled + READ_CHUNK)),
            // A lying prefix costs at most twice what was received.
            Some(_) => (spare < MIN_ROOM).then(|| self.filled + self.filled.max(READ_CHUNK)),
            None => (spare < MIN_ROOM).then_some(self.filled + READ_CHUNK),
        };
        if let Some(len) = grow_to {
            // Only the received bytes move if the buffer is reallocated, not the zeroed room.
            self.buf.truncate(self.filled);
            self.buf.resize(len, 0);
        }
        &mut self.buf[self.filled..]
    }

    /// `n` bytes were read into [`room`](Self::room); returns the whole frames received so
    /// far as one chunk, or, after an invalid length prefix, everything received (the engine's
    /// decoder reports the error).
    pub(crate) fn filled(&mut self, n: usize) -> Option<Bytes> {
        debug_assert!(
            self.filled + n <= self.buf.len(),
            "a read past the room given"
        );
        self.filled = (self.filled + n).min(self.buf.len());
        let end = self.whole_frames_end();
        (end > 0).then(|| {
            self.filled -= end;
            self.buf.split_to(end).freeze()
        })
    }

    /// The end of the complete frames at the start of the received bytes (all received bytes
    /// if a prefix is invalid).
    fn whole_frames_end(&self) -> usize {
        let mut at = 0;
        loop {
            match frame_len(&self.buf[at..self.filled]) {
                Some(Ok(len)) if self.filled - at - LENGTH_PREFIX_LEN >= len => {
                    at += LENGTH_PREFIX_LEN + len;
                }
                Some(Ok(_)) | None => return at,
                Some(Err(())) => return self.filled,
            }
        }
    }

    /// Where the frame at the start of the unsent bytes ends, once its prefix is in.
    fn partial_frame_end(&self) -> Option<usize> {
        match frame_len(&self.buf[..self.filled]) {
            Some(Ok(len)) => Some(LENGTH_PREFIX_LEN + len),
            _ => None,
        }
    }
}

/// The payload length announced at the start of `bytes`: `None` before four bytes are in,
/// `Err` for a negative or oversized one.
fn frame_len(bytes: &[u8]) -> Option<Result<usize, ()>> {
    let prefix: [u8; LENGTH_PREFIX_LEN] = bytes.get(..LENGTH_PREFIX_LEN)?.try_into().ok()?;
    let len = i32::from_be_bytes(prefix);
    Some(
        usize::try_from(len)
            .ok()
            .filter(|len| *len <= DEFAULT_MAX_FRAME_LEN)
            .ok_or(()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use kstreams_core::wire::framing::{FrameDecoder, encode_frame};

    /// Feeds `stream` through reads of at most `read` bytes; returns the chunks handed over.
    fn chunks_of(stream: &[u8], read: usize) -> Vec<Bytes> {
        let mut reads = FrameReads::default();
        let mut chunks = Vec::new();
        let mut at = 0;
        while at < stream.len() {
            let room = reads.room();
            let n = room.len().min(read).min(stream.len() - at);
            assert!(n > 0, "room for a read");
            room[..n].copy_from_slice(&stream[at..at + n]);
            at += n;
            chunks.extend(reads.filled(n));
        }
        chunks
    }

    fn stream(payloads: &[&[u8]]) -> Vec<u8> {
        payloads
            .iter()
            .flat_map(|p| encode_frame(p).expect("small frame").to_vec())
            .collect()
    }

    #[test]
    fn chunks_hold_whole_frames_whatever_the_read_sizes() {
        let big = vec![7u8; 200_000];
        let payloads: [&[u8]; 4] = [b"a", &big, b"", b"tail"];
        let stream = stream(&payloads);
        for read in [1, 3, 1000, READ_CHUNK, 1 << 20] {
            let chunks = chunks_of(&stream, read);
            let mut decoder = FrameDecoder::default();
            let mut frames = Vec::new();
            for chunk in chunks {
                decoder.push_chunk(chunk);
                while let Some(frame) = decoder.next_frame().expect("valid") {
                    frames.push(frame);
                }
                // Whole frames only: nothing was left over to copy.
                assert_eq!(decoder.buffered_len(), 0, "read size {read}");
            }
            let expected: Vec<&[u8]> = payloads.to_vec();
            let got: Vec<&[u8]> = frames.iter().map(|f| &f[..]).collect();
            assert_eq!(got, expected, "read size {read}");
        }
    }

    #[test]
    fn a_large_frame_is_read_into_one_buffer_reserved_at_its_prefix() {
        let big = vec![1u8; 3 * READ_CHUNK];
        let stream = stream(&[&big]);
        let mut reads = FrameReads::default();
        let room = reads.room();
        room[..LENGTH_PREFIX_LEN].copy_from_slice(&stream[..LENGTH_PREFIX_LEN]);
        assert!(reads.filled(LENGTH_PREFIX_LEN).is_none());
        // The rest of the frame fits in the room given now: one read, no regrowth.
        let room = reads.room();
        assert!(room.len() >= big.len());
        room[..big.len()].copy_from_slice(&big);
        let chunk = reads.filled(big.len()).expect("the frame is complete");
        assert_eq!(chunk.len(), stream.len());
    }

    #[test]
    fn an_invalid_prefix_hands_everything_over() {
        let mut reads = FrameReads::default();
        let bad = (-5i32).to_be_bytes();
        reads.room()[..4].copy_from_slice(&bad);
        assert_eq!(reads.filled(4).as_deref(), Some(&bad[..]));
    }

    #[test]
    fn a_huge_announced_frame_reserves_only_what_was_received() {
        let mut reads = FrameReads::default();
        let prefix = (EAGER_RESERVE_LIMIT as i32 + 1).to_be_bytes();
        reads.room()[..4].copy_from_slice(&prefix);
        assert!(reads.filled(4).is_none());
        assert!(reads.room().len() <= 2 * READ_CHUNK);
    }
}
