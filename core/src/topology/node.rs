//! Typed nodes: the source, processor and sink wrappers behind the erased graph.

use std::any::Any;
use std::marker::PhantomData;
use std::sync::Arc;

use bytes::BytesMut;

use crate::error::{DeserializationError, ProcessError, RecordPart};
use crate::processor::graph::{
    ErasedNode, ErasedProcessor, ErasedSource, Graph, NodeFactory, SourceFailure, take_input,
};
use crate::processor::task_state::TaskState;
use crate::processor::{
    Processor, ProcessorContext, ProcessorSupplier, PunctuatorId, dispatch_batch,
};
use crate::record::{ProducerRecord, RawRecord, Record, RecordMetadata, TopicPartition};
use crate::serde::{Deserializer, Serializer};

/// Chooses the partition of a sink record: `(topic, key, value, partition count)` →
/// `Some(partition)`, or `None` for the producer's default (murmur2 of the key bytes).
pub type Partitioner<K, V> = Arc<dyn Fn(&str, &K, &V, i32) -> Option<i32> + Send + Sync>;

pub(crate) struct SourceFactory<K, V> {
    pub(crate) key: Arc<dyn Deserializer<K>>,
    pub(crate) value: Arc<dyn Deserializer<V>>,
}

impl<K: Clone + 'static, V: Clone + 'static> NodeFactory for SourceFactory<K, V> {
    fn create(&self) -> ErasedNode {
        ErasedNode::Source(Box::new(SourceNode {
            key: self.key.clone(),
            value: self.value.clone(),
        }))
    }
}

struct SourceNode<K, V> {
    key: Arc<dyn Deserializer<K>>,
    value: Arc<dyn Deserializer<V>>,
}

impl<K: Clone + 'static, V: Clone + 'static> ErasedSource for SourceNode<K, V> {
    fn process_raw(
        &mut self,
        graph: &Graph,
        state: &mut TaskState,
        node: usize,
        tp: &TopicPartition,
        records: &mut [RawRecord],
        take: bool,
        undecodable: &mut Vec<(usize, DeserializationError)>,
    ) -> Result<(), SourceFailure> {
        let mut batch = Vec::with_capacity(records.len());
        for (index, raw) in records.iter_mut().enumerate() {
            let decoded = if take {
                self.key
                    .deserialize_owned(&tp.topic, &mut raw.key)
                    .map_err(|e| (RecordPart::Key, e))
                    .and_then(|key| {
                        self.value
                            .deserialize_owned(&tp.topic, &mut raw.value)
                            .map(|value| (key, value))
                            .map_err(|e| (RecordPart::Value, e))
                    })
            } else {
                self.key
                    .deserialize(&tp.topic, raw.key.as_ref())
                    .map_err(|e| (RecordPart::Key, e))
                    .and_then(|key| {
                        self.value
                            .deserialize(&tp.topic, raw.value.as_ref())
                            .map(|value| (key, value))
                            .map_err(|e| (RecordPart::Value, e))
                    })
            };
            match decoded {
                Ok((key, value)) => batch.push(Record {
                    key,
                    value,
                    timestamp: raw.timestamp,
                    headers: if take {
                        std::mem::take(&mut raw.headers)
                    } else {
                        raw.headers.clone()
                    },
                    metadata: Some(RecordMetadata {
                        topic: tp.topic.clone(),
                        partition: tp.partition,
                        offset: raw.offset,
                    }),
                }),
                Err((part, source)) => {
                    let err = DeserializationError {
                        topic: tp.topic.clone(),
                        partition: tp.partition,
                        offset: raw.offset,
                        part,
                        source,
                    };
                    if state.fail_on_undecodable {
                        return Err(SourceFailure::Deserialization(err));
                    }
                    undecodable.push((index, err));
                }
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        for (i, &child) in graph.children[node].iter().enumerate() {
            let last = i + 1 == graph.children[node].len();
            let input = if last {
                std::mem::take(&mut batch)
            } else {
                batch.clone()
            };
            dispatch_batch(graph, state, child, input).map_err(SourceFailure::Processing)?;
        }
        Ok(())
    }
}

pub(crate) struct ProcessorFactory<S, KIn, VIn, KOut, VOut> {
    pub(crate) supplier: S,
    pub(crate) _types: PhantomData<fn(KIn, VIn, KOut, VOut)>,
}

impl<S, KIn, VIn, KOut, VOut> NodeFactory for ProcessorFactory<S, KIn, VIn, KOut, VOut>
where
    S: ProcessorSupplier<KIn, VIn, KOut, VOut>,
    KIn: 'static,
    VIn: 'static,
    KOut: 'static,
    VOut: 'static,
{
    fn create(&self) -> ErasedNode {
        ErasedNode::Processor(Box::new(ProcessorNode {
            processor: self.supplier.get(),
            _types: PhantomData::<fn(KIn, VIn, KOut, VOut)>,
        }))
    }
}

struct ProcessorNode<P, KIn, VIn, KOut, VOut> {
    processor: P,
    _types: PhantomData<fn(KIn, VIn, KOut, VOut)>,
}

impl<P, KIn, VIn, KOut, VOut> ErasedProcessor for ProcessorNode<P, KIn, VIn, KOut, VOut>
where
    P: Processor<KIn, VIn, KOut, VOut>,
    KIn: 'static,
    VIn: 'static,
    KOut: 'static,
    VOut: 'static,
{
    fn init(
        &mut self,
        graph: &Graph,
        state: &mut TaskState,
        node: usize,
    ) -> Result<(), ProcessError> {
        self.processor
            .init(&mut ProcessorContext::new(graph, state, node))
    }

    fn process_one(
        &mut self,
        graph: &Graph,
        state: &mut TaskState,
        node: usize,
        input: &mut dyn Any,
    ) -> Result<(), ProcessError> {
        let record: Record<KIn, VIn> = take_input(input, &graph.names[node])?;
        let offset = record.offset();
        self.processor
            .process(&mut ProcessorContext::new(graph, state, node), record)
            .map_err(|e| e.at_offset(offset))
    }

    fn process_many(
        &mut self,
        graph: &Graph,
        state: &mut TaskState,
        node: usize,
        input: &mut dyn Any,
    ) -> Result<(), ProcessError> {
        let batch: Vec<Record<KIn, VIn>> = take_input(input, &graph.names[node])?;
        self.processor
            .process_batch(&mut ProcessorContext::new(graph, state, node), batch)
    }

    fn punctuate(
        &mut self,
        graph: &Graph,
        state: &mut TaskState,
        node: usize,
        id: PunctuatorId,
        timestamp: i64,
    ) -> Result<(), ProcessError> {
        self.processor.punctuate(
            &mut ProcessorContext::new(graph, state, node),
            id,
            timestamp,
        )
    }

    fn close(
        &mut self,
        graph: &Graph,
        state: &mut TaskState,
        node: usize,
    ) -> Result<(), ProcessError> {
        self.processor
            .close(&mut ProcessorContext::new(graph, state, node))
    }
}

pub(crate) struct SinkFactory<K, V> {
    pub(crate) topic: Arc<str>,
    pub(crate) key: Arc<dyn Serializer<K>>,
    pub(crate) value: Arc<dyn Serializer<V>>,
    pub(crate) partitioner: Option<Partitioner<K, V>>,
}

impl<K: 'static, V: 'static> NodeFactory for SinkFactory<K, V> {
    fn create(&self) -> ErasedNode {
        ErasedNode::Processor(Box::new(SinkNode {
            topic: self.topic.clone(),
            key: self.key.clone(),
            value: self.value.clone(),
            partitioner: self.partitioner.clone(),
            buf: BytesMut::new(),
        }))
    }
}

/// Serializes records and appends them to the task's output, a batch at a time.
struct SinkNode<K, V> {
    topic: Arc<str>,
    key: Arc<dyn Serializer<K>>,
    value: Arc<dyn Serializer<V>>,
    partitioner: Option<Partitioner<K, V>>,
    /// Serialization buffer, grown a chunk at a time: a batch's keys and values are slices of
    /// a few shared allocations (keys and values that already are bytes pass through instead:
    /// [`Serializer::serialize_owned`]).
    buf: BytesMut,
}

impl<K: 'static, V: 'static> SinkNode<K, V> {
    fn append(&mut self, state: &mut TaskState, record: Record<K, V>) -> Result<(), ProcessError> {
        let offset = record.offset();
        let fail = |e: crate::serde::SerdeError| ProcessError::new(e).at_offset(offset);
        let partition = match &self.partitioner {
            Some(p) => {
                let count = state.partition_count(&self.topic).ok_or_else(|| {
                    ProcessError::msg(format!(
                        "sink topic `{}`: partition count unknown, cannot run its partitioner",
                        self.topic
                    ))
                    .at_offset(offset)
                })?;
                match p(&self.topic, &record.key, &record.value, count) {
                    Some(p) if !(0..count).contains(&p) => {
                        return Err(ProcessError::msg(format!(
                            "partitioner chose partition {p} of topic `{}`, which has {count}",
                            self.topic
                        ))
                        .at_offset(offset));
                    }
                    chosen => chosen,
                }
            }
            None => None,
        };
        let key = self
            .key
            .serialize_owned(&self.topic, record.key, &mut self.buf)
            .map_err(fail)?;
        let value = self
            .value
            .serialize_owned(&self.topic, record.value, &mut self.buf)
            .map_err(fail)?;
        state.output.push(ProducerRecord {
            topic: self.topic.clone(),
            partition,
            key,
            value,
            timestamp: record.timestamp,
            headers: record.headers,
        });
        Ok(())
    }
}

impl<K: 'static, V: 'static> ErasedProcessor for SinkNode<K, V> {
    fn init(&mut self, _: &Graph, _: &mut TaskState, _: usize) -> Result<(), ProcessError> {
        Ok(())
    }

    fn process_one(
        &mut self,
        graph: &Graph,
        state: &mut TaskState,
        node: usize,
        input: &mut dyn Any,
    ) -> Result<(), ProcessError> {
        let record: Record<K, V> = take_input(input, &graph.names[node])?;
        self.append(state, record)
    }

    fn process_many(
        &mut self,
        graph: &Graph,
        state: &mut TaskState,
        node: usize,
        input: &mut dyn Any,
    ) -> Result<(), ProcessError> {
        let batch: Vec<Record<K, V>> = take_input(input, &graph.names[node])?;
        state.output.reserve(batch.len());
        for record in batch {
            self.append(state, record)?;
        }
        Ok(())
    }

    fn punctuate(
        &mut self,
        _: &Graph,
        _: &mut TaskState,
        _: usize,
        _: PunctuatorId,
        _: i64,
    ) -> Result<(), ProcessError> {
        Ok(())
    }

    fn close(&mut self, _: &Graph, _: &mut TaskState, _: usize) -> Result<(), ProcessError> {
        Ok(())
    }
}
