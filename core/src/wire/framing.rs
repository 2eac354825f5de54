//! Length-prefixed framing of the Kafka TCP stream.
//!
//! Every Kafka request and response travels as a big-endian `i32` length followed by that many
//! bytes. [`FrameDecoder`] turns a byte stream that arrives in arbitrary chunks (partial reads,
//! several frames coalesced into one read) into complete frames; [`encode_frame`] and
//! [`FrameBuilder`] write the prefix.
//!
//! **Decision:** frames handed out by the decoder have the 4-byte length prefix *stripped*; they
//! start at the request/response header. Everything above this module (the connection, the
//! engine's `handle_received`) works on stripped frames.

use std::collections::VecDeque;

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Size of the big-endian `i32` length prefix in front of every frame.
pub const LENGTH_PREFIX_LEN: usize = 4;

/// Default largest frame the decoder accepts: 100 MiB, the same bound librdkafka applies to
/// responses (`receive.message.max.bytes`). A fetch response is bounded by the request's
/// `max_bytes` plus some overhead, so anything larger indicates a broken or hostile peer.
pub const DEFAULT_MAX_FRAME_LEN: usize = 100 * 1024 * 1024;

/// Why the byte stream cannot be split into frames. After one of these the stream is out of
/// sync and the connection must be closed; the decoder keeps returning the same error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length prefix is negative.
    #[error("frame length prefix is negative ({len})")]
    NegativeLength {
        /// The length as read from the wire.
        len: i32,
    },
    /// The length prefix exceeds the configured maximum frame size.
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    Oversized {
        /// The length as read from the wire.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// A frame to be written is longer than an `i32` length prefix can express.
    #[error("frame payload of {len} bytes does not fit an i32 length prefix")]
    PayloadTooLarge {
        /// The payload length that was attempted.
        len: usize,
    },
}

/// Splits a byte stream into length-prefixed frames, whatever the read boundaries.
///
/// Feed bytes with [`push`](Self::push) (borrowed: copied in) or
/// [`push_chunk`](Self::push_chunk) (owned: whole frames in it are handed out without a copy)
/// as they arrive, then call [`next_frame`](Self::next_frame) until it returns `Ok(None)`.
/// Returned frames are zero-copy [`Bytes`] views of the received chunks or of the internal
/// buffer, without the length prefix.
///
/// The decoder never reserves memory for a frame based on its announced length; the buffer
/// grows only with bytes actually received, so a lying length prefix cannot make it allocate.
#[derive(Debug)]
pub struct FrameDecoder {
    /// Frames cut out of owned chunks, oldest first; they come before `buffer`'s bytes.
    ready: VecDeque<Bytes>,
    /// Received bytes of frames not complete yet (or not split off yet).
    buffer: BytesMut,
    max_frame_len: usize,
    failed: Option<FrameError>,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME_LEN)
    }
}

impl FrameDecoder {
    /// Creates a decoder that rejects frames longer than `max_frame_len` bytes (prefix excluded).
    pub fn new(max_frame_len: usize) -> Self {
        Self {
            ready: VecDeque::new(),
            buffer: BytesMut::new(),
            max_frame_len,
            failed: None,
        }
    }

    /// The largest frame length this decoder accepts.
    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// Appends bytes read from the socket.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// Appends a chunk read from the socket, taking ownership: while no partial frame is
    /// buffered, the whole frames at its start are handed out as views of `chunk` (no copy);
    /// only a trailing partial frame is copied into the buffer. An adapter that sends chunks of
    /// whole frames makes every frame zero-copy.
    pub fn push_chunk(&mut self, mut chunk: Bytes) {
        if self.buffer.is_empty() && self.failed.is_none() {
            // A bad prefix stops the cut: the rest goes to the buffer, where `next_frame`
            // reports it in order.
            while let Ok(Some(len)) = self.frame_len(&chunk) {
                if chunk.len() - LENGTH_PREFIX_LEN < len {
                    break;
                }
                chunk.advance(LENGTH_PREFIX_LEN);
                self.ready.push_back(chunk.split_to(len));
            }
        }
        if !chunk.is_empty() {
            self.buffer.extend_from_slice(&chunk);
        }
    }

    /// Number of received bytes not yet returned as part of a frame.
    pub fn buffered_len(&self) -> usize {
        self.ready
            .iter()
            .map(|frame| LENGTH_PREFIX_LEN + frame.len())
            .sum::<usize>()
            + self.buffer.len()
    }

    /// The payload length announced by the prefix at the start of `bytes` (`None`: fewer than
    /// four bytes), or why it is invalid.
    fn frame_len(&self, bytes: &[u8]) -> Result<Option<usize>, FrameError> {
        let Some(prefix) = bytes.get(..LENGTH_PREFIX_LEN) else {
            return Ok(None);
        };
        let len = i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        match usize::try_from(len) {
            Ok(len) if len <= self.max_frame_len => Ok(Some(len)),
            Ok(len) => Err(FrameError::Oversized {
                len,
                max: self.max_frame_len,
            }),
            Err(_) => Err(FrameError::NegativeLength { len }),
        }
    }

    /// Returns the next complete frame (length prefix stripped), `Ok(None)` if more bytes are
    /// needed, or the framing error that broke the stream (sticky: returned on every later call).
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        if let Some(frame) = self.ready.pop_front() {
            return Ok(Some(frame));
        }
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let len = match self.frame_len(&self.buffer) {
            Ok(Some(len)) => len,
            Ok(None) => return Ok(None),
            Err(error) => return Err(self.fail(error)),
        };
        if self.buffer.len() - LENGTH_PREFIX_LEN < len {
            return Ok(None);
        }
        self.buffer.advance(LENGTH_PREFIX_LEN);
        Ok(Some(self.buffer.split_to(len).freeze()))
    }

    fn fail(&mut self, error: FrameError) -> FrameError {
        self.failed = Some(error.clone());
        error
    }
}

/// Returns `payload` with its 4-byte big-endian length prefix, ready to write to a socket.
pub fn encode_frame(payload: &[u8]) -> Result<Bytes, FrameError> {
    let mut builder = FrameBuilder::with_capacity(payload.len());
    builder.payload_mut().put_slice(payload);
    builder.finish()
}

/// Writes one frame in place: reserves the length prefix, lets the caller encode the payload
/// directly behind it, then fills the prefix in. Avoids a copy of the encoded request.
#[derive(Debug)]
pub struct FrameBuilder {
    buffer: BytesMut,
}

impl Default for FrameBuilder {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl FrameBuilder {
    /// Starts a frame with room for `payload_capacity` payload bytes.
    pub fn with_capacity(payload_capacity: usize) -> Self {
        let mut buffer =
            BytesMut::with_capacity(LENGTH_PREFIX_LEN.saturating_add(payload_capacity));
        buffer.put_i32(0);
        Self { buffer }
    }

    /// The buffer to append the payload to. Only append: the first 4 bytes are the prefix.
    pub fn payload_mut(&mut self) -> &mut BytesMut {
        &mut self.buffer
    }

    /// Fills in the length prefix and returns the complete frame.
    pub fn finish(mut self) -> Result<Bytes, FrameError> {
        let len = self.buffer.len() - LENGTH_PREFIX_LEN;
        let prefix = i32::try_from(len).map_err(|_| FrameError::PayloadTooLarge { len })?;
        self.buffer[..LENGTH_PREFIX_LEN].copy_from_slice(&prefix.to_be_bytes());
        Ok(self.buffer.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn stream_of(payloads: &[&[u8]]) -> Vec<u8> {
        payloads
            .iter()
            .flat_map(|p| encode_frame(p).expect("small frame").to_vec())
            .collect()
    }

    fn drain(decoder: &mut FrameDecoder) -> Vec<Bytes> {
        let mut frames = Vec::new();
        while let Some(frame) = decoder.next_frame().expect("valid stream") {
            frames.push(frame);
        }
        frames
    }

    #[test]
    fn encode_frame_writes_big_endian_length_prefix() {
        let frame = encode_frame(b"abc").unwrap();
        assert_eq!(&frame[..], &[0, 0, 0, 3, b'a', b'b', b'c']);
    }

    #[test]
    fn frame_builder_encodes_in_place() {
        let mut builder = FrameBuilder::default();
        builder.payload_mut().put_u16(0xBEEF);
        assert_eq!(&builder.finish().unwrap()[..], &[0, 0, 0, 2, 0xBE, 0xEF]);
    }

    #[test]
    fn byte_by_byte_reads_yield_each_frame_once_complete() {
        let stream = stream_of(&[b"hello", b"", b"world!"]);
        let mut decoder = FrameDecoder::default();
        let mut frames = Vec::new();
        for (i, byte) in stream.iter().enumerate() {
            decoder.push(std::slice::from_ref(byte));
            let got = drain(&mut decoder);
            // Frame ends: prefix(4)+5 = 9, +4+0 = 13, +4+6 = 23.
            match i + 1 {
                9 => assert_eq!(got, vec![Bytes::from_static(b"hello")]),
                13 => assert_eq!(got, vec![Bytes::new()]),
                23 => assert_eq!(got, vec![Bytes::from_static(b"world!")]),
                _ => assert!(got.is_empty(), "no frame expected after {} bytes", i + 1),
            }
            frames.extend(got);
        }
        assert_eq!(frames.len(), 3);
        assert_eq!(decoder.buffered_len(), 0);
    }

    #[test]
    fn coalesced_frames_in_one_read_all_come_out() {
        let mut stream = stream_of(&[b"one", b"two", b"three"]);
        stream.extend_from_slice(&[0, 0, 0, 9, b'p']); // start of a fourth frame
        let mut decoder = FrameDecoder::default();
        decoder.push(&stream);
        assert_eq!(
            drain(&mut decoder),
            vec![
                Bytes::from_static(b"one"),
                Bytes::from_static(b"two"),
                Bytes::from_static(b"three")
            ]
        );
        assert_eq!(decoder.buffered_len(), 5);
    }

    #[test]
    fn negative_length_is_a_sticky_error() {
        let mut decoder = FrameDecoder::default();
        decoder.push(&(-1i32).to_be_bytes());
        assert_eq!(
            decoder.next_frame(),
            Err(FrameError::NegativeLength { len: -1 })
        );
        decoder.push(&stream_of(&[b"ok"]));
        assert_eq!(
            decoder.next_frame(),
            Err(FrameError::NegativeLength { len: -1 })
        );
    }

    #[test]
    fn oversized_length_is_rejected_before_the_body_arrives() {
        let mut decoder = FrameDecoder::new(10);
        decoder.push(&11i32.to_be_bytes());
        assert_eq!(
            decoder.next_frame(),
            Err(FrameError::Oversized { len: 11, max: 10 })
        );
    }

    #[test]
    fn frame_of_exactly_max_len_is_accepted() {
        let mut decoder = FrameDecoder::new(3);
        decoder.push(&stream_of(&[b"abc"]));
        assert_eq!(decoder.next_frame(), Ok(Some(Bytes::from_static(b"abc"))));
    }

    proptest! {
        #[test]
        fn random_chunking_decodes_identically(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..12),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..20),
        ) {
            let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
            let stream = stream_of(&refs);
            let mut cut_points: Vec<usize> =
                cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
            cut_points.push(0);
            cut_points.push(stream.len());
            cut_points.sort_unstable();
            // Borrowed, owned and alternating pushes decode the same frames.
            for mode in 0..3 {
                let mut decoder = FrameDecoder::default();
                let mut frames = Vec::new();
                for (i, window) in cut_points.windows(2).enumerate() {
                    let piece = &stream[window[0]..window[1]];
                    if mode == 0 || (mode == 2 && i % 2 == 0) {
                        decoder.push(piece);
                    } else {
                        decoder.push_chunk(Bytes::copy_from_slice(piece));
                    }
                    frames.extend(drain(&mut decoder));
                }
                let expected: Vec<Bytes> = payloads.iter().cloned().map(Bytes::from).collect();
                prop_assert_eq!(frames, expected);
                prop_assert_eq!(decoder.buffered_len(), 0);
            }
        }
    }

    #[test]
    fn whole_frames_of_an_owned_chunk_are_views_of_it() {
        let chunk = Bytes::from(stream_of(&[b"first", b"second", b"thi"]));
        let (start, end) = (
            chunk.as_ptr() as usize,
            chunk.as_ptr() as usize + chunk.len(),
        );
        let mut decoder = FrameDecoder::default();
        // The third frame is cut short: only it is copied.
        decoder.push_chunk(chunk.slice(..chunk.len() - 1));
        let first = decoder.next_frame().unwrap().unwrap();
        let second = decoder.next_frame().unwrap().unwrap();
        assert_eq!((&first[..], &second[..]), (&b"first"[..], &b"second"[..]));
        for frame in [&first, &second] {
            let at = frame.as_ptr() as usize;
            assert!(at >= start && at + frame.len() <= end, "a copy, not a view");
        }
        assert_eq!(decoder.next_frame(), Ok(None));
        assert_eq!(decoder.buffered_len(), 4 + 2);
        decoder.push_chunk(chunk.slice(chunk.len() - 1..));
        assert_eq!(decoder.next_frame(), Ok(Some(Bytes::from_static(b"thi"))));
    }

    #[test]
    fn a_bad_prefix_in_an_owned_chunk_comes_after_the_good_frames() {
        let mut stream = stream_of(&[b"ok"]);
        stream.extend_from_slice(&(-1i32).to_be_bytes());
        let mut decoder = FrameDecoder::default();
        decoder.push_chunk(Bytes::from(stream));
        assert_eq!(decoder.next_frame(), Ok(Some(Bytes::from_static(b"ok"))));
        assert_eq!(
            decoder.next_frame(),
            Err(FrameError::NegativeLength { len: -1 })
        );
        decoder.push_chunk(Bytes::from(stream_of(&[b"late"])));
        assert_eq!(
            decoder.next_frame(),
            Err(FrameError::NegativeLength { len: -1 }),
            "the error is sticky"
        );
    }
}
