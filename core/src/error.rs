//! Error types of the processing layer.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use kstreams_store_api::StoreError;

use crate::ids::TaskId;
use crate::serde::SerdeError;

/// A key or a value: which half of a record failed to (de)serialize.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordPart {
    /// The record key.
    Key,
    /// The record value.
    Value,
}

impl fmt::Display for RecordPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Key => "key",
            Self::Value => "value",
        })
    }
}

/// A consumed record whose key or value could not be deserialized.
#[derive(Debug, thiserror::Error)]
#[error("cannot deserialize {part} of record at {topic}-{partition}@{offset}: {source}")]
pub struct DeserializationError {
    /// Source topic.
    pub topic: Arc<str>,
    /// Source partition.
    pub partition: i32,
    /// Offset of the record.
    pub offset: i64,
    /// Key or value.
    pub part: RecordPart,
    /// What the deserializer reported.
    #[source]
    pub source: SerdeError,
}

/// An error raised while processing: by user code, a store, or a sink's serializer.
///
/// When it names the offset of the input record that failed ([`ProcessError::at_offset`]),
/// the task knows that the records of the batch before it were processed and the ones after it
/// were not. Without an offset the whole batch counts as failed. The default
/// `Processor::process_batch` fills the offset in.
#[derive(Debug)]
pub struct ProcessError {
    source: Box<dyn StdError + Send + Sync>,
    offset: Option<i64>,
    node: Option<String>,
}

impl ProcessError {
    /// Wraps any error.
    pub fn new(source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self {
            source: source.into(),
            offset: None,
            node: None,
        }
    }

    /// An error described by a message.
    pub fn msg(message: impl fmt::Display) -> Self {
        Self::new(message.to_string())
    }

    /// Names the source offset of the input record that failed (kept if already set).
    pub fn at_offset(mut self, offset: Option<i64>) -> Self {
        if self.offset.is_none() {
            self.offset = offset;
        }
        self
    }

    /// The source offset of the failed input record, if known.
    pub fn offset(&self) -> Option<i64> {
        self.offset
    }

    /// The node whose call failed, once the task has attributed the error.
    pub fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }

    /// Names the failing node (kept if already set: the innermost node wins).
    pub(crate) fn in_node(mut self, node: &str) -> Self {
        if self.node.is_none() {
            self.node = Some(node.to_owned());
        }
        self
    }

    /// The underlying error.
    pub fn source_error(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.source
    }
}

impl fmt::Display for ProcessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.offset {
            Some(o) => write!(f, "processing failed at offset {o}: {}", self.source),
            None => write!(f, "processing failed: {}", self.source),
        }
    }
}

impl StdError for ProcessError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.source)
    }
}

impl From<StoreError> for ProcessError {
    fn from(e: StoreError) -> Self {
        Self::new(e)
    }
}

impl From<SerdeError> for ProcessError {
    fn from(e: SerdeError) -> Self {
        Self::new(e)
    }
}

/// Why a topology could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TopologyError {
    /// Two nodes (or two stores) share a name.
    #[error("duplicate name `{0}`")]
    DuplicateName(String),
    /// A parent handle does not belong to this builder.
    #[error("node `{child}` names unknown parent `{parent}`")]
    UnknownParent {
        /// The child being added.
        child: String,
        /// The parent that is not in this builder.
        parent: String,
    },
    /// A processor uses a store that is not connected to it.
    #[error("processor `{processor}` uses store `{store}`, which is not connected to it")]
    StoreNotConnected {
        /// The processor.
        processor: String,
        /// The store it uses.
        store: String,
    },
    /// A node name that is not in the builder.
    #[error("unknown node `{0}`")]
    UnknownNode(String),
    /// A store name that no `add_store` registered.
    #[error("unknown store `{0}`")]
    UnknownStore(String),
    /// A store connected to something that is not a processor.
    #[error("store `{store}` can only be connected to processors, not `{node}`")]
    StoreOnNonProcessor {
        /// The store.
        store: String,
        /// The node.
        node: String,
    },
    /// The node graph has a cycle.
    #[error("cycle through nodes: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    /// Two sources read the same topic.
    #[error("topic `{topic}` is consumed by two sources: `{first}` and `{second}`")]
    TopicConsumedTwice {
        /// The topic.
        topic: String,
        /// First source.
        first: String,
        /// Second source.
        second: String,
    },
    /// A source with no topic, or a processor/sink with no parent.
    #[error("node `{0}` is not connected: {1}")]
    Disconnected(String, &'static str),
    /// A topology without any source.
    #[error("the topology has no source")]
    NoSource,
    /// The source topics of one sub-topology have different partition counts.
    #[error("sub-topology {subtopology}: source topics must be co-partitioned: {detail}")]
    NotCoPartitioned {
        /// Sub-topology id.
        subtopology: usize,
        /// Topic → partition count.
        detail: String,
    },
    /// A topic the topology reads is missing.
    #[error("source topic `{0}` does not exist")]
    MissingSourceTopic(String),
}

/// Why a task stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// A deserialization error under [`crate::task::ErrorPolicy::Fail`].
    #[error("task {task}: {source}")]
    Deserialization {
        /// The task.
        task: TaskId,
        /// The error.
        #[source]
        source: DeserializationError,
    },
    /// A processing error under [`crate::task::ErrorPolicy::Fail`].
    #[error("task {task}: processor `{node}`{}: {source}", .topic.as_ref().map(|t| format!(" at {t}-{partition}")).unwrap_or_default())]
    Processing {
        /// The task.
        task: TaskId,
        /// The node whose call failed (the innermost one).
        node: String,
        /// Input topic of the failed batch; `None` outside a batch (init, punctuation, close).
        topic: Option<Arc<str>>,
        /// Input partition of the failed batch.
        partition: i32,
        /// The error.
        #[source]
        source: ProcessError,
    },
    /// A store failed outside processing (open, commit).
    #[error("task {task}: {source}")]
    Store {
        /// The task.
        task: TaskId,
        /// The error.
        #[source]
        source: StoreError,
    },
    /// Records were added for a partition the task does not own, or out of offset order.
    #[error("task {task}: {detail}")]
    InvalidInput {
        /// The task.
        task: TaskId,
        /// What is wrong.
        detail: String,
    },
    /// The task failed earlier and must be recreated from its committed state.
    #[error("task {0} has failed and must be recreated")]
    Failed(TaskId),
}
