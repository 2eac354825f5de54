//! The mutable state of a running task that its processors reach through their context.

use std::collections::HashMap;
use std::sync::Arc;

use super::graph::ErasedNode;
use super::punctuation::Punctuators;
use crate::ids::TaskId;
use crate::record::ProducerRecord;
use crate::state::KvBackend;
use crate::time::Instant;

/// The input record a processor call is working on, as far as the task knows it.
#[derive(Debug, Clone, Default)]
pub(crate) struct CurrentRecord {
    pub(crate) topic: Option<Arc<str>>,
    pub(crate) partition: i32,
    pub(crate) offset: Option<i64>,
    pub(crate) timestamp: i64,
}

/// One task's side of a [`Graph`](super::graph::Graph): its node instances, stores, time and
/// output. The task owns it; processors reach it through their context.
pub(crate) struct TaskState {
    pub(crate) task_id: TaskId,
    /// Indexed like the graph's nodes; a node is `None` while it runs.
    pub(crate) nodes: Vec<Option<ErasedNode>>,
    /// Indexed like the graph's stores.
    pub(crate) stores: Vec<Box<dyn KvBackend>>,
    pub(crate) stream_time: Option<i64>,
    pub(crate) wall_clock: Instant,
    pub(crate) current: CurrentRecord,
    pub(crate) punctuators: Punctuators,
    pub(crate) output: Vec<ProducerRecord>,
    pub(crate) partition_counts: HashMap<String, i32>,
    /// Whether an undecodable record fails its batch before anything is forwarded (the task's
    /// `Fail` deserialization policy); otherwise sources leave it out and report it.
    pub(crate) fail_on_undecodable: bool,
}

impl TaskState {
    pub(crate) fn partition_count(&self, topic: &str) -> Option<i32> {
        self.partition_counts.get(topic).copied()
    }
}
