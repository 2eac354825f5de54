//! The runnable form of one sub-topology: nodes with local indices, edges, stores.

use std::any::Any;
use std::sync::Arc;

use super::PunctuatorId;
use super::task_state::TaskState;
use crate::error::{DeserializationError, ProcessError};
use crate::record::{RawRecord, TopicPartition};
use crate::state::StoreDef;

/// One sub-topology, shared (immutable) by all of its tasks. Node indices are local.
pub(crate) struct Graph {
    pub(crate) names: Vec<String>,
    pub(crate) children: Vec<Vec<usize>>,
    /// Store slots (indices into `stores`) connected to each node.
    pub(crate) node_stores: Vec<Vec<usize>>,
    pub(crate) stores: Vec<StoreDef>,
    /// Source topic → source node.
    pub(crate) sources: Vec<(Arc<str>, usize)>,
    pub(crate) factories: Vec<Arc<dyn NodeFactory>>,
}

/// Makes a node's type-erased instance for one task.
pub(crate) trait NodeFactory: Send + Sync {
    fn create(&self) -> ErasedNode;
}

/// A node of a running task, its key and value types erased behind `dyn Any` inputs (the
/// typed wrappers are in `topology::node`).
pub(crate) enum ErasedNode {
    Source(Box<dyn ErasedSource>),
    Processor(Box<dyn ErasedProcessor>),
}

/// Why a source could not hand its batch on.
pub(crate) enum SourceFailure {
    /// Deserialization failed under the `Fail` policy.
    Deserialization(DeserializationError),
    /// A node downstream failed.
    Processing(ProcessError),
}

/// A source node, type-erased: deserializes raw records and forwards them as one batch.
pub(crate) trait ErasedSource: Send {
    /// Under a `Fail` deserialization policy an undecodable record fails the batch before
    /// anything is forwarded; otherwise it is left out of the batch and reported in
    /// `undecodable` (index into `records`), and the task applies the policy once it knows
    /// which records the batch consumed.
    ///
    /// With `take`, the source may move keys and values out of `records`
    /// ([`crate::serde::Deserializer::deserialize_owned`]): the task passes it when nothing
    /// reads the batch's raw records again (no rerun, no dead-letter copy).
    #[allow(clippy::too_many_arguments)]
    fn process_raw(
        &mut self,
        graph: &Graph,
        state: &mut TaskState,
        node: usize,
        tp: &TopicPartition,
        records: &mut [RawRecord],
        take: bool,
        undecodable: &mut Vec<(usize, DeserializationError)>,
    ) -> Result<(), SourceFailure>;
}

/// A processor or sink node, its input types erased. `input` is a
/// `&mut Option<Record<KIn, VIn>>` (`process_one`) or `&mut Option<Vec<Record<KIn, VIn>>>`
/// (`process_many`); the typed builder guarantees the types match.
pub(crate) trait ErasedProcessor: Send {
    fn init(
        &mut self,
        graph: &Graph,
        state: &mut TaskState,
        node: usize,
    ) -> Result<(), ProcessError>;
    fn process_one(
        &mut self,
        graph: &Graph,
        state: &mut TaskState,
        node: usize,
        input: &mut dyn Any,
    ) -> Result<(), ProcessError>;
    fn process_many(
        &mut self,
        graph: &Graph,
        state: &mut TaskState,
        node: usize,
        input: &mut dyn Any,
    ) -> Result<(), ProcessError>;
    fn punctuate(
        &mut self,
        graph: &Graph,
        state: &mut TaskState,
        node: usize,
        id: PunctuatorId,
        timestamp: i64,
    ) -> Result<(), ProcessError>;
    fn close(
        &mut self,
        graph: &Graph,
        state: &mut TaskState,
        node: usize,
    ) -> Result<(), ProcessError>;
}

/// Takes the typed input out of an erased slot.
pub(crate) fn take_input<T: 'static>(input: &mut dyn Any, node: &str) -> Result<T, ProcessError> {
    input
        .downcast_mut::<Option<T>>()
        .and_then(Option::take)
        .ok_or_else(|| {
            ProcessError::msg(format!(
                "node `{node}` got input of another type than {} (internal error)",
                std::any::type_name::<T>()
            ))
        })
}
