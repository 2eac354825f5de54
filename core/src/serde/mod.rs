//! Serializers and deserializers between typed keys/values and Kafka's bytes.
//!
//! Built-ins are byte-compatible with Kafka's Java serdes: [`StringSerde`] is UTF-8,
//! the integer and float serdes are big-endian ([`I64Serde`] reads what Java's
//! `LongSerializer` writes), [`UnitSerde`] is Java's `VoidSerde` (always null).
//! Kafka's null key/value is an explicit choice: plain serdes reject null with
//! [`SerdeError::Null`]; wrap one in [`Nullable`] to get `Option<T>`.

#[cfg(feature = "json")]
mod json;
mod primitive;

use bytes::{Bytes, BytesMut};

#[cfg(feature = "json")]
pub use json::JsonSerde;
pub use primitive::{
    BytesSerde, F64Serde, I32Serde, I64Serde, Nullable, StringSerde, U32Serde, U64Serde, UnitSerde,
};

/// Why bytes could not be turned into a value or back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SerdeError {
    /// A null key or value reached a serde that does not accept null.
    #[error("null data for non-nullable type {type_name} (wrap the serde in `Nullable`)")]
    Null {
        /// The Rust type expected.
        type_name: &'static str,
    },
    /// Data for a `()` (Java `VoidSerde`) was not null.
    #[error("expected null data for unit type, got {len} bytes")]
    NotNull {
        /// Length of the unexpected data.
        len: usize,
    },
    /// A fixed-width type got the wrong number of bytes.
    #[error("{type_name} needs exactly {expected} bytes, got {actual}")]
    Size {
        /// The Rust type expected.
        type_name: &'static str,
        /// Bytes needed.
        expected: usize,
        /// Bytes received.
        actual: usize,
    },
    /// Bytes that are not valid UTF-8 for a `String`.
    #[error("invalid UTF-8: {0}")]
    Utf8(#[from] std::str::Utf8Error),
    /// JSON that does not match the target type, or a value JSON cannot encode.
    #[cfg(feature = "json")]
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A user serde's own error.
    #[error("{0}")]
    Custom(Box<dyn std::error::Error + Send + Sync>),
}

/// Makes sure `buf` has room for a few more small encodings, growing it a chunk at a time.
///
/// Encoders `split()` each key and value off a shared buffer; a `BytesMut` keeps no spare
/// capacity after a split unless it had some, so without this every encoding would allocate.
/// Keys and values split off one chunk share its allocation.
pub(crate) fn reserve_chunk(buf: &mut BytesMut) {
    const LOW_WATER: usize = 1024;
    const CHUNK: usize = 32 * 1024;
    if buf.capacity() - buf.len() < LOW_WATER {
        buf.reserve(CHUNK);
    }
}

/// Turns a `T` into bytes.
pub trait Serializer<T>: Send + Sync + 'static {
    /// Appends the encoding of `value` to `buf` and returns `true`, or returns `false` for
    /// Kafka's null (and appends nothing). Sinks serialize a whole batch into one buffer
    /// through this method, so a batch costs a few allocations, not one per record.
    fn serialize_into(
        &self,
        topic: &str,
        value: &T,
        buf: &mut BytesMut,
    ) -> Result<bool, SerdeError>;

    /// The encoding of an owned `value`, split off `buf` (grown a chunk at a time, so a
    /// batch's encodings share a few allocations); `None` is Kafka's null. Sinks call this.
    /// A serializer whose value already is its encoding overrides it to hand the value
    /// through without a copy ([`BytesSerde`] does).
    fn serialize_owned(
        &self,
        topic: &str,
        value: T,
        buf: &mut BytesMut,
    ) -> Result<Option<Bytes>, SerdeError> {
        reserve_chunk(buf);
        Ok(self
            .serialize_into(topic, &value, buf)?
            .then(|| buf.split().freeze()))
    }

    /// The encoding of `value` as its own buffer; `None` is Kafka's null.
    fn serialize(&self, topic: &str, value: &T) -> Result<Option<Bytes>, SerdeError> {
        let mut buf = BytesMut::new();
        Ok(self
            .serialize_into(topic, value, &mut buf)?
            .then(|| buf.freeze()))
    }
}

/// Turns bytes (or Kafka's null, `None`) into a `T`.
pub trait Deserializer<T>: Send + Sync + 'static {
    /// Decodes `data` read from `topic`. `data` is a slice of the fetched buffer, so a
    /// deserializer producing `Bytes` can keep it without copying.
    fn deserialize(&self, topic: &str, data: Option<&Bytes>) -> Result<T, SerdeError>;

    /// [`deserialize`](Self::deserialize) of data the caller no longer needs: a deserializer
    /// that keeps the bytes may take them out of `data` instead of cloning (one reference
    /// count less to raise and to drop later). On an error `data` must be left as it was.
    /// Sources call this when a failed record fails the task anyway.
    fn deserialize_owned(&self, topic: &str, data: &mut Option<Bytes>) -> Result<T, SerdeError> {
        self.deserialize(topic, data.as_ref())
    }
}

/// A serializer and deserializer for the same type; implemented for every type that is both.
pub trait Serde<T>: Serializer<T> + Deserializer<T> {}

impl<T, S: Serializer<T> + Deserializer<T>> Serde<T> for S {}
