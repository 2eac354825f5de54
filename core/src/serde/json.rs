use std::marker::PhantomData;

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Deserializer, SerdeError, Serializer};

/// JSON via serde_json (feature `json`, on by default). Null data is rejected; use
/// `Nullable<JsonSerde<T>>` for `Option<T>`.
pub struct JsonSerde<T>(PhantomData<fn() -> T>);

impl<T> JsonSerde<T> {
    /// A JSON serde for `T`.
    pub fn new() -> Self {
        Self(PhantomData)
    }
}

impl<T> Default for JsonSerde<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Clone for JsonSerde<T> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<T> std::fmt::Debug for JsonSerde<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JsonSerde<{}>", std::any::type_name::<T>())
    }
}

impl<T: Serialize + 'static> Serializer<T> for JsonSerde<T> {
    fn serialize_into(&self, _: &str, value: &T, buf: &mut BytesMut) -> Result<bool, SerdeError> {
        serde_json::to_writer(buf.writer(), value)?;
        Ok(true)
    }
}

impl<T: DeserializeOwned + 'static> Deserializer<T> for JsonSerde<T> {
    fn deserialize(&self, _: &str, data: Option<&Bytes>) -> Result<T, SerdeError> {
        let data = data.ok_or(SerdeError::Null {
            type_name: std::any::type_name::<T>(),
        })?;
        Ok(serde_json::from_slice(data)?)
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Order {
        id: u32,
        item: String,
    }

    #[test]
    fn json_roundtrip_and_typed_error() {
        let serde = JsonSerde::<Order>::new();
        let order = Order {
            id: 7,
            item: "tea".into(),
        };
        let bytes = serde.serialize("t", &order).unwrap().unwrap();
        assert_eq!(bytes.as_ref(), br#"{"id":7,"item":"tea"}"#);
        assert_eq!(serde.deserialize("t", Some(&bytes)).unwrap(), order);
        let err = serde
            .deserialize("t", Some(&Bytes::from_static(b"{\"id\":\"x\"}")))
            .unwrap_err();
        assert!(matches!(err, SerdeError::Json(_)));
    }
}
