use std::marker::PhantomData;

use super::graph::{ErasedNode, ErasedProcessor, Graph};
use super::task_state::TaskState;
use super::{PunctuationType, PunctuatorId};
use crate::error::ProcessError;
use crate::ids::TaskId;
use crate::record::{Record, RecordMetadata};
use crate::state::{KeyValueStore, KvSerdes, StateError};
use crate::time::{Duration, Instant};

/// What a processor can do besides transforming records: forward them to its children, use
/// its stores, read time and record metadata, and schedule punctuations.
///
/// `K`/`V` are the processor's output types: forwarding anything else does not compile.
pub struct ProcessorContext<'a, K, V> {
    graph: &'a Graph,
    state: &'a mut TaskState,
    node: usize,
    _out: PhantomData<fn(K, V)>,
}

impl<'a, K, V> ProcessorContext<'a, K, V> {
    pub(crate) fn new(graph: &'a Graph, state: &'a mut TaskState, node: usize) -> Self {
        Self {
            graph,
            state,
            node,
            _out: PhantomData,
        }
    }

    pub(crate) fn set_current(&mut self, offset: Option<i64>, timestamp: i64) {
        self.state.current.offset = offset;
        self.state.current.timestamp = timestamp;
    }

    /// The task running this processor.
    pub fn task_id(&self) -> TaskId {
        self.state.task_id
    }

    /// This processor's node name.
    pub fn node_name(&self) -> &str {
        &self.graph.names[self.node]
    }

    /// Topic, partition and offset of the input record being processed through `process`.
    ///
    /// `None` during `process_batch` and in punctuations, where there is no single current
    /// record: each record of a batch carries its own [`Record::metadata`].
    pub fn record_metadata(&self) -> Option<RecordMetadata> {
        let c = &self.state.current;
        Some(RecordMetadata {
            topic: c.topic.clone()?,
            partition: c.partition,
            offset: c.offset?,
        })
    }

    /// The task's stream time: the largest timestamp of the records it has taken in, up to and
    /// including the current batch; `None` before the first record.
    pub fn stream_time(&self) -> Option<i64> {
        self.state.stream_time
    }

    /// Wall-clock time, as last passed to the task (the core reads no clock).
    pub fn wall_clock_time(&self) -> Instant {
        self.state.wall_clock
    }

    /// Schedules [`super::Processor::punctuate`] on this processor every `interval` (at least
    /// 1 ms) of the given clock, until [`ProcessorContext::cancel`] (Kafka Streams'
    /// `schedule(Duration, PunctuationType, Punctuator)`).
    pub fn schedule(&mut self, interval: Duration, kind: PunctuationType) -> PunctuatorId {
        let now = match kind {
            PunctuationType::StreamTime => self.state.stream_time,
            PunctuationType::WallClock => Some(self.state.wall_clock.as_millis()),
        };
        self.state
            .punctuators
            .schedule(self.node, interval, kind, now)
    }

    /// Cancels a punctuation scheduled by this processor.
    pub fn cancel(&mut self, id: PunctuatorId) {
        self.state.punctuators.cancel(self.node, id);
    }

    /// Typed access to a store connected to this processor.
    pub fn store<SK: 'static, SV: 'static>(
        &mut self,
        name: &str,
    ) -> Result<KeyValueStore<'_, SK, SV>, StateError> {
        let graph = self.graph;
        let slot = graph.node_stores[self.node]
            .iter()
            .copied()
            .find(|&s| graph.stores[s].name == name)
            .ok_or_else(|| StateError::NotConnected {
                processor: graph.names[self.node].clone(),
                store: name.to_owned(),
            })?;
        let def = &graph.stores[slot];
        let serdes = def
            .serdes
            .downcast_ref::<KvSerdes<SK, SV>>()
            .ok_or_else(|| StateError::TypeMismatch {
                store: def.name.clone(),
                key: def.key_type,
                value: def.value_type,
                asked_key: std::any::type_name::<SK>(),
                asked_value: std::any::type_name::<SV>(),
            })?;
        Ok(KeyValueStore::new(
            &def.name,
            self.state.stores[slot].as_mut(),
            serdes,
        ))
    }

    fn child_named(&self, child: &str) -> Result<usize, ProcessError> {
        self.graph.children[self.node]
            .iter()
            .copied()
            .find(|&c| self.graph.names[c] == child)
            .ok_or_else(|| {
                ProcessError::msg(format!(
                    "`{child}` is not a child of `{}`",
                    self.graph.names[self.node]
                ))
            })
    }
}

impl<K: Clone + 'static, V: Clone + 'static> ProcessorContext<'_, K, V> {
    /// Sends one record to every child's `process`.
    pub fn forward(&mut self, record: Record<K, V>) -> Result<(), ProcessError> {
        let children = &self.graph.children[self.node];
        let Some((&last, rest)) = children.split_last() else {
            return Ok(());
        };
        for &child in rest {
            dispatch_record(self.graph, self.state, child, record.clone())?;
        }
        dispatch_record(self.graph, self.state, last, record)
    }

    /// Sends one record to the child called `child`.
    pub fn forward_to(&mut self, child: &str, record: Record<K, V>) -> Result<(), ProcessError> {
        let child = self.child_named(child)?;
        dispatch_record(self.graph, self.state, child, record)
    }

    /// Sends a batch to every child's `process_batch`, timestamps and headers unchanged. An
    /// empty batch is not sent.
    pub fn forward_batch(&mut self, batch: Vec<Record<K, V>>) -> Result<(), ProcessError> {
        let children = &self.graph.children[self.node];
        let Some((&last, rest)) = children.split_last() else {
            return Ok(());
        };
        if batch.is_empty() {
            return Ok(());
        }
        for &child in rest {
            dispatch_batch(self.graph, self.state, child, batch.clone())?;
        }
        dispatch_batch(self.graph, self.state, last, batch)
    }

    /// Sends a batch to the child called `child`.
    pub fn forward_batch_to(
        &mut self,
        child: &str,
        batch: Vec<Record<K, V>>,
    ) -> Result<(), ProcessError> {
        let child = self.child_named(child)?;
        if batch.is_empty() {
            return Ok(());
        }
        dispatch_batch(self.graph, self.state, child, batch)
    }
}

/// Runs `child` on one record; the node is taken out of the task while it runs (the graph is
/// acyclic, so it is never re-entered).
fn dispatch_record<K: 'static, V: 'static>(
    graph: &Graph,
    state: &mut TaskState,
    child: usize,
    record: Record<K, V>,
) -> Result<(), ProcessError> {
    state.current.offset = record.offset();
    state.current.timestamp = record.timestamp;
    let mut input = Some(record);
    with_processor(graph, state, child, |p, graph, state| {
        p.process_one(graph, state, child, &mut input)
    })
}

/// Runs `child` on a batch.
pub(crate) fn dispatch_batch<K: 'static, V: 'static>(
    graph: &Graph,
    state: &mut TaskState,
    child: usize,
    batch: Vec<Record<K, V>>,
) -> Result<(), ProcessError> {
    state.current.offset = None;
    let mut input = Some(batch);
    with_processor(graph, state, child, |p, graph, state| {
        p.process_many(graph, state, child, &mut input)
    })
}

/// Takes node `index` out of the task, runs `f` on it, and puts it back.
pub(crate) fn with_processor(
    graph: &Graph,
    state: &mut TaskState,
    index: usize,
    f: impl FnOnce(&mut dyn ErasedProcessor, &Graph, &mut TaskState) -> Result<(), ProcessError>,
) -> Result<(), ProcessError> {
    let Some(mut node) = state.nodes.get_mut(index).and_then(Option::take) else {
        return Err(ProcessError::msg(format!(
            "node `{}` re-entered while running (internal error)",
            graph.names[index]
        )));
    };
    let result = match &mut node {
        ErasedNode::Processor(p) => f(p.as_mut(), graph, state),
        ErasedNode::Source(_) => Err(ProcessError::msg(format!(
            "source `{}` cannot receive records from a parent (internal error)",
            graph.names[index]
        ))),
    };
    state.nodes[index] = Some(node);
    result.map_err(|e| e.in_node(&graph.names[index]))
}
