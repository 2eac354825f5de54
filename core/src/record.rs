//! Records as processors see them, and the raw records a task consumes and produces.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

/// A topic name and a partition number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: Arc<str>,
    /// Partition number.
    pub partition: i32,
}

impl TopicPartition {
    /// `topic`-`partition`.
    pub fn new(topic: impl Into<Arc<str>>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// One record header. Kafka allows several headers with the same key; [`Headers`] keeps them
/// all, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header key.
    pub key: String,
    /// Header value; Kafka allows a null value.
    pub value: Option<Bytes>,
}

/// The headers of a record, in wire order, duplicates kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<Header>);

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Self(Vec::new())
    }

    /// Appends a header (an existing header with the same key is kept).
    pub fn add(&mut self, key: impl Into<String>, value: Option<Bytes>) -> &mut Self {
        self.0.push(Header {
            key: key.into(),
            value,
        });
        self
    }

    /// The value of the last header called `key` (Kafka's `lastHeader`).
    pub fn last(&self, key: &str) -> Option<&Header> {
        self.0.iter().rev().find(|h| h.key == key)
    }

    /// Removes every header called `key`.
    pub fn remove(&mut self, key: &str) {
        self.0.retain(|h| h.key != key);
    }

    /// The headers in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Header> {
        self.0.iter()
    }

    /// Number of headers.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is no header.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<Header> for Headers {
    fn from_iter<I: IntoIterator<Item = Header>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = &'a Header;
    type IntoIter = std::slice::Iter<'a, Header>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Where a record was consumed from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecordMetadata {
    /// Source topic.
    pub topic: Arc<str>,
    /// Source partition.
    pub partition: i32,
    /// Offset in the source partition.
    pub offset: i64,
}

/// A typed record flowing through a topology.
///
/// Records made from a consumed record carry its [`RecordMetadata`]; `with_*` keep it, so a
/// mapped record still names the input it came from. A record made with [`Record::new`] has
/// none.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<K, V> {
    /// The key.
    pub key: K,
    /// The value.
    pub value: V,
    /// Timestamp in milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// Headers, forwarded unchanged unless a processor changes them.
    pub headers: Headers,
    /// Source position of the input record this one derives from.
    pub metadata: Option<RecordMetadata>,
}

impl<K, V> Record<K, V> {
    /// A record with no headers and no source metadata.
    pub fn new(key: K, value: V, timestamp: i64) -> Self {
        Self {
            key,
            value,
            timestamp,
            headers: Headers::new(),
            metadata: None,
        }
    }

    /// The same record with another key.
    pub fn with_key<K2>(self, key: K2) -> Record<K2, V> {
        Record {
            key,
            value: self.value,
            timestamp: self.timestamp,
            headers: self.headers,
            metadata: self.metadata,
        }
    }

    /// The same record with another value.
    pub fn with_value<V2>(self, value: V2) -> Record<K, V2> {
        Record {
            key: self.key,
            value,
            timestamp: self.timestamp,
            headers: self.headers,
            metadata: self.metadata,
        }
    }

    /// The same record with another key and value.
    pub fn with_key_value<K2, V2>(self, key: K2, value: V2) -> Record<K2, V2> {
        Record {
            key,
            value,
            timestamp: self.timestamp,
            headers: self.headers,
            metadata: self.metadata,
        }
    }

    /// The same record with another timestamp.
    pub fn with_timestamp(mut self, timestamp: i64) -> Self {
        self.timestamp = timestamp;
        self
    }

    /// The same record with other headers.
    pub fn with_headers(mut self, headers: Headers) -> Self {
        self.headers = headers;
        self
    }

    /// The source offset, when the record derives from a consumed one.
    pub fn offset(&self) -> Option<i64> {
        self.metadata.as_ref().map(|m| m.offset)
    }
}

/// A consumed record before deserialization: what the fetcher hands a task.
///
/// Key and value are `Bytes`, typically slices of the fetched buffer (no copy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    /// Offset in its partition.
    pub offset: i64,
    /// Timestamp in milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// Key bytes; `None` is Kafka's null key.
    pub key: Option<Bytes>,
    /// Value bytes; `None` is Kafka's null value (a tombstone).
    pub value: Option<Bytes>,
    /// Headers in wire order.
    pub headers: Headers,
}

impl RawRecord {
    /// Bytes of its key, value and headers (keys and values): what queueing it costs, for
    /// memory bounds. Struct overhead is not counted.
    pub fn payload_len(&self) -> usize {
        let bytes = |b: &Option<Bytes>| b.as_ref().map_or(0, Bytes::len);
        self.headers
            .iter()
            .map(|h| h.key.len() + bytes(&h.value))
            .fold(bytes(&self.key) + bytes(&self.value), usize::saturating_add)
    }
}

/// A serialized record a sink hands to the producer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerRecord {
    /// Destination topic.
    pub topic: Arc<str>,
    /// Destination partition when the sink chose one; `None` lets the producer's default
    /// partitioner decide ([`crate::partitioner::default_partition`]).
    pub partition: Option<i32>,
    /// Key bytes; `None` is a null key.
    pub key: Option<Bytes>,
    /// Value bytes; `None` is a tombstone.
    pub value: Option<Bytes>,
    /// Timestamp in milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// Headers in order.
    pub headers: Headers,
}
