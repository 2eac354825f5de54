//! What a task does with a record it cannot deserialize or process: the [`ErrorPolicy`], and
//! the dead-letter records and skip counts it leads to.

use std::sync::Arc;

use bytes::Bytes;

use super::TaskMetrics;
use crate::error::DeserializationError;
use crate::ids::TaskId;
use crate::record::{ProducerRecord, RawRecord, TopicPartition};

/// Header naming the source topic of a dead-lettered record.
pub const DLQ_HEADER_TOPIC: &str = "kstreams.dlq.source.topic";
/// Header naming the source partition (decimal) of a dead-lettered record.
pub const DLQ_HEADER_PARTITION: &str = "kstreams.dlq.source.partition";
/// Header naming the source offset (decimal) of a dead-lettered record.
pub const DLQ_HEADER_OFFSET: &str = "kstreams.dlq.source.offset";
/// Header carrying the error message of a dead-lettered record.
pub const DLQ_HEADER_ERROR: &str = "kstreams.dlq.error";

fn dead_letter_headers(
    tp: &TopicPartition,
    offset: i64,
    error: &str,
) -> [(&'static str, String); 4] {
    [
        (DLQ_HEADER_TOPIC, tp.topic.to_string()),
        (DLQ_HEADER_PARTITION, tp.partition.to_string()),
        (DLQ_HEADER_OFFSET, offset.to_string()),
        (DLQ_HEADER_ERROR, error.to_owned()),
    ]
}

/// What to do with a record that cannot be deserialized or processed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ErrorPolicy {
    /// Stop the task (the default): nothing after the record is committed.
    #[default]
    Fail,
    /// Log the error, count the record in [`TaskMetrics::skipped_records`] and go on.
    Skip,
    /// Produce the raw record to `topic` with the `kstreams.dlq.*` headers naming its source
    /// topic, partition, offset and the error, count it and go on.
    DeadLetter {
        /// The dead-letter topic.
        topic: String,
    },
}

/// Applies the (non-`Fail`) deserialization-error `policy` to one consumed record of `task`.
pub(super) fn on_deserialization_error(
    policy: &ErrorPolicy,
    task: TaskId,
    output: &mut Vec<ProducerRecord>,
    metrics: &mut TaskMetrics,
    tp: &TopicPartition,
    raw: &RawRecord,
    err: &DeserializationError,
) {
    match policy {
        ErrorPolicy::DeadLetter { topic } => {
            let topic: Arc<str> = Arc::from(topic.as_str());
            tracing::warn!(task = %task, error = %err, dlq = %topic, "sending undeserializable record to the dead-letter topic");
            dead_letter(output, metrics, topic, tp, raw, &err.to_string());
        }
        ErrorPolicy::Skip | ErrorPolicy::Fail => {
            tracing::warn!(task = %task, error = %err, "skipping undeserializable record");
            metrics.skipped_records += 1;
        }
    }
}

/// Appends the raw `record` to the dead-letter `topic`, with headers naming its source and
/// the error.
pub(super) fn dead_letter(
    output: &mut Vec<ProducerRecord>,
    metrics: &mut TaskMetrics,
    topic: Arc<str>,
    tp: &TopicPartition,
    raw: &RawRecord,
    error: &str,
) {
    let mut headers = raw.headers.clone();
    for (k, v) in dead_letter_headers(tp, raw.offset, error) {
        headers.add(k, Some(Bytes::from(v)));
    }
    output.push(ProducerRecord {
        topic,
        partition: None,
        key: raw.key.clone(),
        value: raw.value.clone(),
        timestamp: raw.timestamp,
        headers,
    });
    metrics.dead_lettered_records += 1;
}
