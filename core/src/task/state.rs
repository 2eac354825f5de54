//! The mutable state of a running task that its processors reach through their context.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use super::{ErrorPolicy, TaskConfig, TaskId, TaskMetrics, dead_letter_headers};
use crate::error::DeserializationError;
use crate::processor::CurrentRecord;
use crate::record::{ProducerRecord, RawRecord, TopicPartition};
use crate::state::KvBackend;
use crate::task::punctuation::Punctuators;
use crate::topology::graph::NodeRuntime;

pub(crate) struct TaskState {
    pub(crate) task_id: TaskId,
    /// Indexed like the graph's nodes; a node is `None` while it runs.
    pub(crate) nodes: Vec<Option<NodeRuntime>>,
    /// Indexed like the graph's stores.
    pub(crate) stores: Vec<Box<dyn KvBackend>>,
    pub(crate) stream_time: Option<i64>,
    pub(crate) wall_clock: i64,
    pub(crate) current: CurrentRecord,
    pub(crate) punctuators: Punctuators,
    pub(crate) output: Vec<ProducerRecord>,
    pub(crate) partition_counts: HashMap<String, i32>,
    pub(crate) config: TaskConfig,
    pub(crate) metrics: TaskMetrics,
}

impl TaskState {
    pub(crate) fn partition_count(&self, topic: &str) -> Option<i32> {
        self.partition_counts.get(topic).copied()
    }

    /// Applies the (non-`Fail`) deserialization-error policy to one consumed record.
    pub(crate) fn on_deserialization_error(
        &mut self,
        tp: &TopicPartition,
        raw: &RawRecord,
        err: &DeserializationError,
    ) {
        match &self.config.deserialization_errors {
            ErrorPolicy::DeadLetter { topic } => {
                let topic: Arc<str> = Arc::from(topic.as_str());
                tracing::warn!(task = %self.task_id, error = %err, dlq = %topic, "sending undeserializable record to the dead-letter topic");
                self.dead_letter(topic, tp, raw, &err.to_string());
            }
            ErrorPolicy::Skip | ErrorPolicy::Fail => {
                tracing::warn!(task = %self.task_id, error = %err, "skipping undeserializable record");
                self.metrics.skipped_records += 1;
            }
        }
    }

    /// Appends the raw `record` to the dead-letter `topic`, with headers naming its source and
    /// the error.
    pub(crate) fn dead_letter(
        &mut self,
        topic: Arc<str>,
        tp: &TopicPartition,
        raw: &RawRecord,
        error: &str,
    ) {
        let mut headers = raw.headers.clone();
        for (k, v) in dead_letter_headers(tp, raw.offset, error) {
            headers.add(k, Some(Bytes::from(v)));
        }
        self.output.push(ProducerRecord {
            topic,
            partition: None,
            key: raw.key.clone(),
            value: raw.value.clone(),
            timestamp: raw.timestamp,
            headers,
        });
        self.metrics.dead_lettered_records += 1;
    }
}
