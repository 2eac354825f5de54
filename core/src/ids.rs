//! Identifiers shared by every layer of the core. This module imports nothing from the crate.

use std::fmt;

/// Identifies a task: sub-topology id and partition, shown as `<subtopology>_<partition>` like
/// Kafka Streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId {
    /// Sub-topology id.
    pub subtopology: usize,
    /// Partition of every source topic of the sub-topology.
    pub partition: i32,
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.subtopology, self.partition)
    }
}
