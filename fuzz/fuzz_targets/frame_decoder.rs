//! Arbitrary bytes, cut into arbitrary chunks, into the frame decoder. Checks that chunking
//! never changes the result: the frames (or the error) equal those of a one-shot decode.
#![no_main]

use kstreams_core::wire::framing::FrameDecoder;
use libfuzzer_sys::fuzz_target;

/// Frames and the final outcome (`None`: needs more bytes; `Some(err)`: stream broken).
fn decode_all(decoder: &mut FrameDecoder, frames: &mut Vec<bytes::Bytes>) -> Option<String> {
    loop {
        match decoder.next_frame() {
            Ok(Some(frame)) => frames.push(frame),
            Ok(None) => return None,
            Err(error) => return Some(error.to_string()),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // First byte: max frame length (small, so the oversized path is reachable).
    // Second byte: seed for the chunk sizes.
    let [max, seed, stream @ ..] = data else {
        return;
    };
    let max_frame_len = usize::from(*max) * 4;

    let mut whole = FrameDecoder::new(max_frame_len);
    whole.push(stream);
    let mut expected = Vec::new();
    let expected_error = decode_all(&mut whole, &mut expected);

    let mut chunked = FrameDecoder::new(max_frame_len);
    let mut frames = Vec::new();
    let mut error = None;
    let mut rest = stream;
    let mut step = usize::from(*seed);
    while !rest.is_empty() {
        step = step.wrapping_mul(31).wrapping_add(7);
        let len = (step % 17 + 1).min(rest.len());
        chunked.push(&rest[..len]);
        rest = &rest[len..];
        error = decode_all(&mut chunked, &mut frames);
        if error.is_some() {
            break;
        }
    }
    assert_eq!(frames, expected);
    assert_eq!(error, expected_error);
    if error.is_none() {
        let consumed: usize = frames.iter().map(|f| f.len() + 4).sum();
        assert_eq!(consumed + chunked.buffered_len(), stream.len());
    }
});
