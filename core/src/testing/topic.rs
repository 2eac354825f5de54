//! Typed input and output topic handles of the test driver.

use std::sync::Arc;

use bytes::BytesMut;

use super::{DriverError, TopologyTestDriver};
use crate::record::{Headers, Record, RecordMetadata};
use crate::serde::{Deserializer, Serializer};

/// Pipes typed records into a topic of a [`TopologyTestDriver`].
pub struct InputTopic<K, V> {
    topic: String,
    key: Arc<dyn Serializer<K>>,
    value: Arc<dyn Serializer<V>>,
}

impl<K: 'static, V: 'static> InputTopic<K, V> {
    pub(super) fn new(topic: &str, key: impl Serializer<K>, value: impl Serializer<V>) -> Self {
        Self {
            topic: topic.to_owned(),
            key: Arc::new(key),
            value: Arc::new(value),
        }
    }

    /// Queues `key` → `value` at `timestamp` on the partition Kafka's default partitioner picks.
    pub fn pipe(
        &self,
        driver: &mut TopologyTestDriver,
        key: K,
        value: V,
        timestamp: i64,
    ) -> Result<i64, DriverError> {
        self.pipe_record(driver, None, Record::new(key, value, timestamp))
    }

    /// Queues a record (with its headers) on `partition`, or the default partitioner's choice.
    /// Returns the record's offset.
    pub fn pipe_record(
        &self,
        driver: &mut TopologyTestDriver,
        partition: Option<i32>,
        record: Record<K, V>,
    ) -> Result<i64, DriverError> {
        let serde = |source| DriverError::Serde {
            topic: self.topic.clone(),
            source,
        };
        let mut buf = BytesMut::new();
        let key = self
            .key
            .serialize_into(&self.topic, &record.key, &mut buf)
            .map_err(serde)?
            .then(|| buf.split().freeze());
        let value = self
            .value
            .serialize_into(&self.topic, &record.value, &mut buf)
            .map_err(serde)?
            .then(|| buf.split().freeze());
        driver.pipe_raw(
            &self.topic,
            partition,
            key,
            value,
            record.timestamp,
            record.headers,
        )
    }

    /// Queues many key-value pairs with the same timestamp.
    pub fn pipe_all(
        &self,
        driver: &mut TopologyTestDriver,
        records: impl IntoIterator<Item = (K, V)>,
        timestamp: i64,
    ) -> Result<(), DriverError> {
        for (k, v) in records {
            self.pipe(driver, k, v, timestamp)?;
        }
        Ok(())
    }
}

/// Reads typed records written to a topic of a [`TopologyTestDriver`].
pub struct OutputTopic<K, V> {
    topic: String,
    key: Arc<dyn Deserializer<K>>,
    value: Arc<dyn Deserializer<V>>,
}

impl<K: 'static, V: 'static> OutputTopic<K, V> {
    pub(super) fn new(topic: &str, key: impl Deserializer<K>, value: impl Deserializer<V>) -> Self {
        Self {
            topic: topic.to_owned(),
            key: Arc::new(key),
            value: Arc::new(value),
        }
    }

    /// Every record written since the last read, in production order; each record's metadata
    /// names its output partition and offset.
    pub fn read_records(
        &self,
        driver: &mut TopologyTestDriver,
    ) -> Result<Vec<Record<K, V>>, DriverError> {
        let topic: Arc<str> = Arc::from(self.topic.as_str());
        driver
            .read_output(&self.topic)?
            .into_iter()
            .map(|stored| {
                let serde = |source| DriverError::Serde {
                    topic: self.topic.clone(),
                    source,
                };
                let r = stored.record;
                Ok(Record {
                    key: self
                        .key
                        .deserialize(&self.topic, r.key.as_ref())
                        .map_err(serde)?,
                    value: self
                        .value
                        .deserialize(&self.topic, r.value.as_ref())
                        .map_err(serde)?,
                    timestamp: r.timestamp,
                    headers: r.headers,
                    metadata: Some(RecordMetadata {
                        topic: topic.clone(),
                        partition: stored.partition,
                        offset: stored.offset,
                    }),
                })
            })
            .collect()
    }

    /// Every key-value pair written since the last read, in production order.
    pub fn read_key_values(
        &self,
        driver: &mut TopologyTestDriver,
    ) -> Result<Vec<(K, V)>, DriverError> {
        Ok(self
            .read_records(driver)?
            .into_iter()
            .map(|r| (r.key, r.value))
            .collect())
    }

    /// Headers of the unread records, e.g. to inspect dead-letter records.
    pub fn read_headers(
        &self,
        driver: &mut TopologyTestDriver,
    ) -> Result<Vec<Headers>, DriverError> {
        Ok(driver
            .read_output(&self.topic)?
            .into_iter()
            .map(|s| s.record.headers)
            .collect())
    }
}
