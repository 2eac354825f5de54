//! The on-disk form of a [`Checkpoint`] in the checkpoints database.
//!
//! An 8-byte big-endian changelog offset, followed by the 16 bytes of the changelog's topic id
//! when it is known (24 bytes in all). An 8-byte value (the format before topic ids were
//! recorded) reads as a checkpoint without a topic id. Any other length is corrupt.

use kstreams_store_api::Checkpoint;

/// Length of an encoded offset.
const OFFSET_LEN: usize = 8;
/// Length of an encoded offset followed by a topic id.
const WITH_TOPIC_ID_LEN: usize = OFFSET_LEN + 16;

/// An encoded checkpoint: [`EncodedCheckpoint::as_bytes`] is what the database holds.
pub(crate) struct EncodedCheckpoint {
    buf: [u8; WITH_TOPIC_ID_LEN],
    len: usize,
}

impl EncodedCheckpoint {
    /// Encodes `checkpoint`.
    pub(crate) fn new(checkpoint: &Checkpoint) -> Self {
        let mut buf = [0_u8; WITH_TOPIC_ID_LEN];
        buf[..OFFSET_LEN].copy_from_slice(&checkpoint.changelog_offset.to_be_bytes());
        let len = match &checkpoint.topic_id {
            Some(id) => {
                buf[OFFSET_LEN..].copy_from_slice(id);
                WITH_TOPIC_ID_LEN
            }
            None => OFFSET_LEN,
        };
        Self { buf, len }
    }

    /// The bytes to store.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Decodes a stored checkpoint; `Err` describes what is wrong with it.
pub(crate) fn decode(raw: &[u8]) -> Result<Checkpoint, String> {
    let bad_length = || {
        format!(
            "checkpoint is {} bytes, expected an 8-byte big-endian offset optionally followed \
             by a 16-byte topic id",
            raw.len()
        )
    };
    let (offset, rest) = raw
        .split_first_chunk::<OFFSET_LEN>()
        .ok_or_else(bad_length)?;
    let topic_id = match rest {
        [] => None,
        id => Some(<[u8; 16]>::try_from(id).map_err(|_| bad_length())?),
    };
    Ok(Checkpoint::new(i64::from_be_bytes(*offset), topic_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_round_trip_with_and_without_topic_id() {
        let id = *b"0123456789abcdef";
        for checkpoint in [
            Checkpoint::new(0, None),
            Checkpoint::new(-1, None),
            Checkpoint::new(i64::MAX, Some(id)),
            Checkpoint::new(i64::MIN, Some([0; 16])),
        ] {
            let encoded = EncodedCheckpoint::new(&checkpoint);
            assert_eq!(decode(encoded.as_bytes()), Ok(checkpoint));
        }
        assert_eq!(
            EncodedCheckpoint::new(&Checkpoint::new(1, None))
                .as_bytes()
                .len(),
            8
        );
        let encoded = EncodedCheckpoint::new(&Checkpoint::new(258, Some(id)));
        assert_eq!(&encoded.as_bytes()[..8], &[0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(&encoded.as_bytes()[8..], &id);
    }

    #[test]
    fn the_older_8_byte_format_reads_without_topic_id() {
        assert_eq!(decode(&42_i64.to_be_bytes()), Ok(Checkpoint::new(42, None)));
    }

    #[test]
    fn every_other_length_is_an_error() {
        for len in [0, 1, 7, 9, 16, 23, 25, 32] {
            assert!(decode(&vec![1; len]).is_err(), "{len} bytes accepted");
        }
    }
}
