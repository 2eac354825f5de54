use bytes::{BufMut, Bytes, BytesMut};

use super::{Deserializer, SerdeError, Serializer};

fn non_null<T>(data: Option<&Bytes>) -> Result<&Bytes, SerdeError> {
    data.ok_or(SerdeError::Null {
        type_name: std::any::type_name::<T>(),
    })
}

/// Raw bytes, unchanged (Java `BytesSerde`). Deserializing keeps a slice of the fetched
/// buffer: no copy.
#[derive(Debug, Default, Clone, Copy)]
pub struct BytesSerde;

impl Serializer<Bytes> for BytesSerde {
    fn serialize_into(
        &self,
        _: &str,
        value: &Bytes,
        buf: &mut BytesMut,
    ) -> Result<bool, SerdeError> {
        buf.extend_from_slice(value);
        Ok(true)
    }

    fn serialize(&self, _: &str, value: &Bytes) -> Result<Option<Bytes>, SerdeError> {
        Ok(Some(value.clone()))
    }

    /// The value itself: a sink forwarding consumed bytes hands the fetched slice on, no copy.
    fn serialize_owned(
        &self,
        _: &str,
        value: Bytes,
        _: &mut BytesMut,
    ) -> Result<Option<Bytes>, SerdeError> {
        Ok(Some(value))
    }
}

impl Deserializer<Bytes> for BytesSerde {
    fn deserialize(&self, _: &str, data: Option<&Bytes>) -> Result<Bytes, SerdeError> {
        non_null::<Bytes>(data).cloned()
    }

    fn deserialize_owned(&self, _: &str, data: &mut Option<Bytes>) -> Result<Bytes, SerdeError> {
        data.take().ok_or_else(|| SerdeError::Null {
            type_name: std::any::type_name::<Bytes>(),
        })
    }
}

/// UTF-8 strings (Java `StringSerde` with its default UTF-8 encoding).
#[derive(Debug, Default, Clone, Copy)]
pub struct StringSerde;

impl Serializer<String> for StringSerde {
    fn serialize_into(
        &self,
        _: &str,
        value: &String,
        buf: &mut BytesMut,
    ) -> Result<bool, SerdeError> {
        buf.extend_from_slice(value.as_bytes());
        Ok(true)
    }
}

impl Deserializer<String> for StringSerde {
    fn deserialize(&self, _: &str, data: Option<&Bytes>) -> Result<String, SerdeError> {
        let data = non_null::<String>(data)?;
        Ok(std::str::from_utf8(data)?.to_owned())
    }
}

/// The unit type as Kafka's null (Java `VoidSerde`): serializes to null, accepts only null.
#[derive(Debug, Default, Clone, Copy)]
pub struct UnitSerde;

impl Serializer<()> for UnitSerde {
    fn serialize_into(&self, _: &str, _: &(), _: &mut BytesMut) -> Result<bool, SerdeError> {
        Ok(false)
    }
}

impl Deserializer<()> for UnitSerde {
    fn deserialize(&self, _: &str, data: Option<&Bytes>) -> Result<(), SerdeError> {
        match data {
            None => Ok(()),
            Some(d) => Err(SerdeError::NotNull { len: d.len() }),
        }
    }
}

macro_rules! big_endian_serde {
    ($(#[$doc:meta])* $name:ident, $ty:ty, $put:ident) => {
        $(#[$doc])*
        #[derive(Debug, Default, Clone, Copy)]
        pub struct $name;

        impl Serializer<$ty> for $name {
            fn serialize_into(&self, _: &str, value: &$ty, buf: &mut BytesMut) -> Result<bool, SerdeError> {
                buf.$put(*value);
                Ok(true)
            }
        }

        impl Deserializer<$ty> for $name {
            fn deserialize(&self, _: &str, data: Option<&Bytes>) -> Result<$ty, SerdeError> {
                let data = non_null::<$ty>(data)?;
                let bytes: [u8; std::mem::size_of::<$ty>()] =
                    data.as_ref().try_into().map_err(|_| SerdeError::Size {
                        type_name: stringify!($ty),
                        expected: std::mem::size_of::<$ty>(),
                        actual: data.len(),
                    })?;
                Ok(<$ty>::from_be_bytes(bytes))
            }
        }
    };
}

big_endian_serde!(
    /// 4-byte big-endian `i32` (Java `IntegerSerde`).
    I32Serde, i32, put_i32
);
big_endian_serde!(
    /// 8-byte big-endian `i64` (Java `LongSerde`).
    I64Serde, i64, put_i64
);
big_endian_serde!(
    /// 4-byte big-endian `u32` (same bytes as Java's `IntegerSerde` for the same bit pattern).
    U32Serde, u32, put_u32
);
big_endian_serde!(
    /// 8-byte big-endian `u64` (same bytes as Java's `LongSerde` for the same bit pattern).
    U64Serde, u64, put_u64
);
big_endian_serde!(
    /// 8-byte big-endian IEEE 754 `f64` (Java `DoubleSerde`).
    F64Serde, f64, put_f64
);

/// Makes any serde accept Kafka's null: `None` ↔ null, `Some(v)` ↔ the inner encoding.
#[derive(Debug, Default, Clone, Copy)]
pub struct Nullable<S>(pub S);

impl<T, S: Serializer<T>> Serializer<Option<T>> for Nullable<S> {
    fn serialize_into(
        &self,
        topic: &str,
        value: &Option<T>,
        buf: &mut BytesMut,
    ) -> Result<bool, SerdeError> {
        match value {
            Some(v) => self.0.serialize_into(topic, v, buf),
            None => Ok(false),
        }
    }
    fn serialize_owned(
        &self,
        topic: &str,
        value: Option<T>,
        buf: &mut BytesMut,
    ) -> Result<Option<Bytes>, SerdeError> {
        match value {
            Some(v) => self.0.serialize_owned(topic, v, buf),
            None => Ok(None),
        }
    }
}

impl<T, S: Deserializer<T>> Deserializer<Option<T>> for Nullable<S> {
    fn deserialize(&self, topic: &str, data: Option<&Bytes>) -> Result<Option<T>, SerdeError> {
        data.map(|d| self.0.deserialize(topic, Some(d))).transpose()
    }

    fn deserialize_owned(
        &self,
        topic: &str,
        data: &mut Option<Bytes>,
    ) -> Result<Option<T>, SerdeError> {
        if data.is_none() {
            return Ok(None);
        }
        self.0.deserialize_owned(topic, data).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip<T: PartialEq + std::fmt::Debug, S: Serializer<T> + Deserializer<T>>(
        s: &S,
        v: T,
    ) -> Option<Bytes> {
        let bytes = s.serialize("t", &v).unwrap();
        assert_eq!(s.deserialize("t", bytes.as_ref()).unwrap(), v);
        bytes
    }

    #[test]
    fn integers_are_big_endian_like_java() {
        // Java: new LongSerializer().serialize("t", 1L) == {0,0,0,0,0,0,0,1}
        assert_eq!(
            roundtrip(&I64Serde, 1).unwrap().as_ref(),
            &[0, 0, 0, 0, 0, 0, 0, 1]
        );
        assert_eq!(
            roundtrip(&I64Serde, -2).unwrap().as_ref(),
            &[0xff; 7].iter().copied().chain([0xfe]).collect::<Vec<_>>()[..]
        );
        assert_eq!(roundtrip(&I32Serde, 258).unwrap().as_ref(), &[0, 0, 1, 2]);
        assert_eq!(roundtrip(&U32Serde, u32::MAX).unwrap().as_ref(), &[0xff; 4]);
        assert_eq!(
            roundtrip(&U64Serde, 1 << 56).unwrap().as_ref(),
            &[1, 0, 0, 0, 0, 0, 0, 0]
        );
        // Java: new DoubleSerializer().serialize("t", 1.5) == 0x3FF8000000000000
        assert_eq!(
            roundtrip(&F64Serde, 1.5).unwrap().as_ref(),
            &[0x3f, 0xf8, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn wrong_width_is_a_size_error() {
        let err = I64Serde
            .deserialize("t", Some(&Bytes::from_static(&[1, 2, 3])))
            .unwrap_err();
        assert!(
            matches!(
                err,
                SerdeError::Size {
                    expected: 8,
                    actual: 3,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn null_is_rejected_unless_nullable() {
        assert!(matches!(
            StringSerde.deserialize("t", None),
            Err(SerdeError::Null { .. })
        ));
        assert_eq!(Nullable(StringSerde).deserialize("t", None).unwrap(), None);
        assert_eq!(
            roundtrip(&Nullable(StringSerde), Some("x".to_owned()))
                .unwrap()
                .as_ref(),
            b"x"
        );
        assert_eq!(roundtrip(&Nullable(I32Serde), None), None);
    }

    #[test]
    fn strings_are_utf8_and_invalid_utf8_is_an_error() {
        assert_eq!(
            roundtrip(&StringSerde, "héllo".to_owned())
                .unwrap()
                .as_ref(),
            "héllo".as_bytes()
        );
        let err = StringSerde
            .deserialize("t", Some(&Bytes::from_static(&[0xff, 0xfe])))
            .unwrap_err();
        assert!(matches!(err, SerdeError::Utf8(_)));
    }

    #[test]
    fn unit_is_java_void() {
        assert_eq!(roundtrip(&UnitSerde, ()), None);
        assert!(matches!(
            UnitSerde.deserialize("t", Some(&Bytes::from_static(b"x"))),
            Err(SerdeError::NotNull { len: 1 })
        ));
    }

    #[test]
    fn bytes_deserialize_without_copy() {
        let buf = Bytes::from_static(b"payload");
        let out = BytesSerde.deserialize("t", Some(&buf)).unwrap();
        assert_eq!(out.as_ptr(), buf.as_ptr());
    }

    #[test]
    fn bytes_deserialize_owned_takes_the_bytes_and_leaves_null_alone() {
        let buf = Bytes::from_static(b"payload");
        let mut data = Some(buf.clone());
        let out = BytesSerde.deserialize_owned("t", &mut data).unwrap();
        assert_eq!(out.as_ptr(), buf.as_ptr());
        assert_eq!(data, None);
        assert!(BytesSerde.deserialize_owned("t", &mut None).is_err());
        let mut data = Some(buf.clone());
        let out = Nullable(BytesSerde)
            .deserialize_owned("t", &mut data)
            .unwrap();
        assert_eq!(out, Some(buf));
        assert_eq!(
            Nullable(BytesSerde)
                .deserialize_owned("t", &mut None)
                .unwrap(),
            None
        );
        // A deserializer that copies leaves the data where it was.
        let mut data = Some(Bytes::from_static(&[0, 0, 0, 7]));
        assert_eq!(I32Serde.deserialize_owned("t", &mut data).unwrap(), 7);
        assert!(data.is_some());
    }

    #[test]
    fn bytes_serialize_owned_hands_the_value_through() {
        let value = Bytes::from_static(b"payload");
        let mut buf = BytesMut::new();
        let out = BytesSerde
            .serialize_owned("t", value.clone(), &mut buf)
            .unwrap()
            .unwrap();
        assert_eq!(out.as_ptr(), value.as_ptr());
        assert!(buf.is_empty());
        let nullable = Nullable(BytesSerde);
        let out = nullable
            .serialize_owned("t", Some(value.clone()), &mut buf)
            .unwrap()
            .unwrap();
        assert_eq!(out.as_ptr(), value.as_ptr());
        assert_eq!(nullable.serialize_owned("t", None, &mut buf).unwrap(), None);
        let copied = I64Serde.serialize_owned("t", 7, &mut buf).unwrap().unwrap();
        assert_eq!(copied.as_ref(), &7i64.to_be_bytes());
    }

    #[test]
    fn serialize_into_appends_to_a_shared_buffer() {
        let mut buf = BytesMut::new();
        assert!(
            StringSerde
                .serialize_into("t", &"ab".to_owned(), &mut buf)
                .unwrap()
        );
        assert!(I32Serde.serialize_into("t", &1, &mut buf).unwrap());
        assert!(!UnitSerde.serialize_into("t", &(), &mut buf).unwrap());
        assert_eq!(buf.as_ref(), b"ab\0\0\0\x01");
    }
}
