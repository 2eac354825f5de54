//! Tasks: one per (sub-topology, partition). A task owns per-partition queues of consumed
//! records, the processor instances and the stores of its sub-topology, and runs batches
//! through them.
//!
//! # Batch contract
//! - A batch is a run of records of **one** input partition, in offset order, at most
//!   [`TaskConfig::max_batch_records`] long; consecutive batches of a partition never overlap
//!   or skip a record.
//! - When the task reads several partitions (co-partitioned topics), the next batch comes from
//!   the partition whose first queued record has the smallest timestamp.
//! - A partition's committable offset is its last processed offset + 1 and moves only when a
//!   whole batch succeeded (or, under `Skip`/`DeadLetter`, when the failed record was handed to
//!   the policy). Records stay queued until then.
//! - Under [`ErrorPolicy::Fail`] the task stops: nothing after the failed record is ever
//!   reported committable, and the owner must [`Task::rollback_stores`] and recreate the task
//!   from its committed offsets, which retries the batch from its first record.

mod policy;
mod queue;
mod stores;

use std::collections::HashMap;
use std::sync::Arc;

pub use crate::ids::TaskId;
pub use policy::{
    DLQ_HEADER_ERROR, DLQ_HEADER_OFFSET, DLQ_HEADER_PARTITION, DLQ_HEADER_TOPIC, ErrorPolicy,
};
pub use stores::OpenStores;

use crate::error::{DeserializationError, ProcessError, TaskError};
use crate::processor::graph::{ErasedNode, Graph, SourceFailure};
use crate::processor::task_state::TaskState;
use crate::processor::{PunctuationType, with_processor};
use crate::record::{ProducerRecord, RawRecord, TopicPartition};
use crate::state::{KeyValueStore, KvSerdes, StateError, StoreFactory};
use crate::time::Instant;
use crate::topology::Topology;
use queue::InputQueue;

/// Settings of a task.
#[derive(Debug, Clone)]
pub struct TaskConfig {
    /// Most records in one batch (at least 1).
    pub max_batch_records: usize,
    /// Policy for records whose key or value cannot be deserialized.
    pub deserialization_errors: ErrorPolicy,
    /// Policy for records whose processing fails.
    pub processing_errors: ErrorPolicy,
}

impl Default for TaskConfig {
    fn default() -> Self {
        Self {
            max_batch_records: 1000,
            deserialization_errors: ErrorPolicy::Fail,
            processing_errors: ErrorPolicy::Fail,
        }
    }
}

/// Counters of a task.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskMetrics {
    /// Records queued for processing (fetched from the input partitions).
    pub received_records: u64,
    /// Records taken off the queues as processed (skipped and dead-lettered ones included).
    pub consumed_records: u64,
    /// Batches run.
    pub batches: u64,
    /// Records skipped under [`ErrorPolicy::Skip`].
    pub skipped_records: u64,
    /// Records sent to a dead-letter topic.
    pub dead_lettered_records: u64,
    /// Records the task produced (to sinks and dead-letter topics), as handed to the owner
    /// by [`Task::take_output`].
    pub produced_records: u64,
}

impl std::ops::AddAssign for TaskMetrics {
    /// Adds `other`'s counters (e.g. another instance's of the same task).
    fn add_assign(&mut self, other: Self) {
        self.received_records += other.received_records;
        self.consumed_records += other.consumed_records;
        self.batches += other.batches;
        self.skipped_records += other.skipped_records;
        self.dead_lettered_records += other.dead_lettered_records;
        self.produced_records += other.produced_records;
    }
}

/// What one call of [`Task::process_next_batch`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchOutcome {
    /// The input partition of the batch.
    pub partition: TopicPartition,
    /// Records taken off its queue.
    pub consumed: usize,
}

/// A running task. See the [module docs](self) for the batch contract.
pub struct Task {
    graph: Arc<Graph>,
    state: TaskState,
    config: TaskConfig,
    metrics: TaskMetrics,
    queues: Vec<InputQueue>,
    failed: bool,
}

impl Task {
    /// Creates task `id` of `topology`: opens its stores through `stores` and initializes its
    /// processors. `partition_counts` gives the partition count of sink topics (needed by sinks
    /// with a partitioner); `now` is wall-clock time.
    pub fn new(
        topology: &Topology,
        id: TaskId,
        stores: &dyn StoreFactory,
        config: TaskConfig,
        partition_counts: HashMap<String, i32>,
        now: Instant,
    ) -> Result<Self, TaskError> {
        let graph = topology
            .graphs
            .get(id.subtopology)
            .cloned()
            .ok_or_else(|| TaskError::InvalidInput {
                task: id,
                detail: format!("the topology has no sub-topology {}", id.subtopology),
            })?;
        let backends = graph
            .stores
            .iter()
            .map(|s| stores.open(&s.name, id.partition))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| TaskError::Store { task: id, source })?;
        let queues = graph
            .sources
            .iter()
            .map(|(topic, node)| {
                InputQueue::new(TopicPartition::new(topic.clone(), id.partition), *node)
            })
            .collect();
        let config = TaskConfig {
            max_batch_records: config.max_batch_records.max(1),
            ..config
        };
        let state = TaskState {
            task_id: id,
            nodes: graph.factories.iter().map(|f| Some(f.create())).collect(),
            stores: backends,
            stream_time: None,
            wall_clock: now,
            current: Default::default(),
            punctuators: Default::default(),
            output: Vec::new(),
            partition_counts,
            fail_on_undecodable: config.deserialization_errors == ErrorPolicy::Fail,
        };
        let mut task = Self {
            graph,
            state,
            config,
            metrics: TaskMetrics::default(),
            queues,
            failed: false,
        };
        for node in 0..task.graph.names.len() {
            if matches!(task.state.nodes[node], Some(ErasedNode::Processor(_))) {
                let graph = &*task.graph;
                with_processor(graph, &mut task.state, node, |p, g, s| p.init(g, s, node))
                    .map_err(|e| task.processing_failure(node, e))?;
            }
        }
        Ok(task)
    }

    /// The task's id.
    pub fn id(&self) -> TaskId {
        self.state.task_id
    }

    /// The input partitions of the task.
    pub fn partitions(&self) -> impl Iterator<Item = &TopicPartition> {
        self.queues.iter().map(|q| &q.tp)
    }

    /// Whether the task has failed (see [`ErrorPolicy::Fail`]).
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// Counters.
    pub fn metrics(&self) -> TaskMetrics {
        self.metrics
    }

    /// The task's stream time.
    pub fn stream_time(&self) -> Option<i64> {
        self.state.stream_time
    }

    /// Queues consumed records of `tp`. Offsets must increase (gaps are fine: compaction,
    /// transaction markers) and lie in `0..i64::MAX`; otherwise this is an error and nothing
    /// of the call is queued.
    pub fn add_records(
        &mut self,
        tp: &TopicPartition,
        records: impl IntoIterator<Item = RawRecord>,
    ) -> Result<(), TaskError> {
        let task = self.id();
        let queue = Self::queue_of(&mut self.queues, task, tp)?;
        let records: Vec<RawRecord> = records.into_iter().collect();
        let mut last = queue.last_offset();
        for r in &records {
            check_after(task, tp, last, r.offset)?;
            last = Some(r.offset);
        }
        self.metrics.received_records += records.len() as u64;
        queue.push(records);
        Ok(())
    }

    /// Queues one consumed record of `tp` (see [`Task::add_records`]); no allocation.
    pub fn add_record(&mut self, tp: &TopicPartition, record: RawRecord) -> Result<(), TaskError> {
        let task = self.id();
        let queue = Self::queue_of(&mut self.queues, task, tp)?;
        check_after(task, tp, queue.last_offset(), record.offset)?;
        queue.push([record]);
        self.metrics.received_records += 1;
        Ok(())
    }

    fn queue_of<'q>(
        queues: &'q mut [InputQueue],
        task: TaskId,
        tp: &TopicPartition,
    ) -> Result<&'q mut InputQueue, TaskError> {
        queues
            .iter_mut()
            .find(|q| &q.tp == tp)
            .ok_or_else(|| TaskError::InvalidInput {
                task,
                detail: format!("partition {tp} is not an input of this task"),
            })
    }

    /// Number of queued records of `tp` (so a fetcher can leave full partitions out).
    pub fn queued(&self, tp: &TopicPartition) -> usize {
        self.queues
            .iter()
            .find(|q| &q.tp == tp)
            .map_or(0, |q| q.records.len())
    }

    /// Bytes of the queued records of `tp` (keys, values and headers: see
    /// [`RawRecord::payload_len`]).
    pub fn queued_bytes(&self, tp: &TopicPartition) -> usize {
        self.queues
            .iter()
            .find(|q| &q.tp == tp)
            .map_or(0, |q| q.bytes)
    }

    /// Total queued records.
    pub fn queued_total(&self) -> usize {
        self.queues.iter().map(|q| q.records.len()).sum()
    }

    /// Runs one batch, if any record is queued. Stream-time punctuations due after it fire
    /// before this returns.
    pub fn process_next_batch(&mut self) -> Result<Option<BatchOutcome>, TaskError> {
        if self.failed {
            return Err(TaskError::Failed(self.id()));
        }
        let Some(qi) = self
            .queues
            .iter()
            .enumerate()
            .filter_map(|(i, q)| q.head_timestamp().map(|ts| (ts, i)))
            .min()
            .map(|(_, i)| i)
        else {
            return Ok(None);
        };
        let graph = &*self.graph;
        let queue = &mut self.queues[qi];
        let n = queue.records.len().min(self.config.max_batch_records);
        let records = &mut queue.records.make_contiguous()[..n];
        let tp = queue.tp.clone();
        let batch_max_ts = records.iter().map(|r| r.timestamp).max();
        self.state.stream_time = self.state.stream_time.max(batch_max_ts);
        self.state.current.topic = Some(tp.topic.clone());
        self.state.current.partition = tp.partition;
        self.metrics.batches += 1;

        let source = queue.source;
        // Under Skip/DeadLetter a failed run is undone (store writes via savepoints, output by
        // truncation) and the records before the failed one are run again without it, so no
        // record's effects are applied twice and the failed record leaves none behind.
        let guarded = self.config.processing_errors != ErrorPolicy::Fail;
        // When a failure fails the task (no rerun, no record handed to a policy), the source
        // may move keys and values out of the queued records instead of cloning them; the
        // queue's byte count then comes from before the move.
        let take = !guarded && self.state.fail_on_undecodable;
        let taken_bytes = take.then(|| {
            records
                .iter()
                .map(RawRecord::payload_len)
                .fold(0, usize::saturating_add)
        });
        let output_mark = self.state.output.len();
        let mut end = n;
        let mut failed: Vec<usize> = Vec::new();
        let mut message = String::new();
        let mut undecodable = Vec::new();
        let consumed = loop {
            if guarded {
                self.state.stores.iter_mut().for_each(|s| s.set_savepoint());
            }
            undecodable.clear();
            let run = &mut records[..end];
            match run_source(
                graph,
                &mut self.state,
                source,
                &tp,
                run,
                take,
                &mut undecodable,
            ) {
                Ok(()) => break failed.first().map_or(end, |&i| i + 1),
                Err(SourceFailure::Deserialization(source)) => {
                    self.state
                        .stores
                        .iter_mut()
                        .for_each(|s| s.release_savepoint());
                    self.failed = true;
                    return Err(TaskError::Deserialization {
                        task: self.id(),
                        source,
                    });
                }
                Err(SourceFailure::Processing(err)) => {
                    if !guarded {
                        return Err(self.processing_failure(source, err));
                    }
                    self.state
                        .stores
                        .iter_mut()
                        .for_each(|s| s.rollback_to_savepoint());
                    self.state.output.truncate(output_mark);
                    message = err.to_string();
                    match err
                        .offset()
                        .and_then(|o| run.iter().position(|r| r.offset == o))
                    {
                        Some(0) => {
                            failed = vec![0];
                            break 1;
                        }
                        Some(i) => {
                            failed = vec![i];
                            end = i;
                        }
                        // Without the failed record's offset the whole run failed (except the
                        // undecodable records, which never reached a processor).
                        None => {
                            failed = (0..end)
                                .filter(|i| !undecodable.iter().any(|(u, _)| u == i))
                                .collect();
                            break end;
                        }
                    }
                }
            }
        };
        if guarded {
            self.state
                .stores
                .iter_mut()
                .for_each(|s| s.release_savepoint());
        }
        for &i in &failed {
            let raw = &records[i];
            match &self.config.processing_errors {
                ErrorPolicy::DeadLetter { topic } => {
                    tracing::warn!(task = %self.state.task_id, error = %message, offset = raw.offset, dlq = %topic, "sending failed record to the dead-letter topic");
                    let topic = Arc::from(topic.as_str());
                    policy::dead_letter(
                        &mut self.state.output,
                        &mut self.metrics,
                        topic,
                        &tp,
                        raw,
                        &message,
                    );
                }
                _ => {
                    tracing::warn!(task = %self.state.task_id, error = %message, offset = raw.offset, "skipping record whose processing failed");
                    self.metrics.skipped_records += 1;
                }
            }
        }
        // Undecodable records after a failed one stay queued and are met again next batch.
        for (index, err) in undecodable.iter().filter(|(i, _)| *i < consumed) {
            policy::on_deserialization_error(
                &self.config.deserialization_errors,
                self.state.task_id,
                &mut self.state.output,
                &mut self.metrics,
                &tp,
                &records[*index],
                err,
            );
        }
        match taken_bytes {
            Some(bytes) => {
                debug_assert_eq!(
                    consumed, n,
                    "a run that moved records out either consumes them all or fails the task"
                );
                self.queues[qi].consume_taken(consumed, bytes);
            }
            None => self.queues[qi].consume(consumed),
        }
        self.metrics.consumed_records += consumed as u64;
        if let Some(time) = self.state.stream_time {
            self.punctuate(PunctuationType::StreamTime, time)?;
        }
        Ok(Some(BatchOutcome {
            partition: tp,
            consumed,
        }))
    }

    /// Runs batches until every queue is empty; returns the number of batches.
    pub fn process_all(&mut self) -> Result<usize, TaskError> {
        let mut batches = 0;
        while self.process_next_batch()?.is_some() {
            batches += 1;
        }
        Ok(batches)
    }

    /// Sets wall-clock time (a smaller `now` than seen before counts as the largest) and fires
    /// the wall-clock punctuations due; returns how many fired.
    pub fn punctuate_wall_clock(&mut self, now: Instant) -> Result<usize, TaskError> {
        if self.failed {
            return Err(TaskError::Failed(self.id()));
        }
        self.state.wall_clock = self.state.wall_clock.max(now);
        // Punctuations run on milliseconds since the epoch, the scale of record timestamps.
        let now = self.state.wall_clock.as_millis();
        self.punctuate(PunctuationType::WallClock, now)
    }

    /// When the next wall-clock punctuation is due, for the owner's timer.
    pub fn next_wall_clock_punctuation(&self) -> Option<Instant> {
        self.state.punctuators.next_wall_clock_due()
    }

    fn punctuate(&mut self, kind: PunctuationType, time: i64) -> Result<usize, TaskError> {
        let due = self.state.punctuators.take_due(kind, time);
        let mut fired = 0;
        for (node, id) in due {
            // An earlier punctuation of this round may have cancelled it.
            if !self.state.punctuators.contains(id) {
                continue;
            }
            self.state.current.offset = None;
            let graph = &*self.graph;
            with_processor(graph, &mut self.state, node, |p, g, s| {
                p.punctuate(g, s, node, id, time)
            })
            .map_err(|e| self.processing_failure(node, e))?;
            fired += 1;
        }
        Ok(fired)
    }

    /// Marks the task failed and describes `source`, raised in `node` (or deeper).
    fn processing_failure(&mut self, node: usize, source: ProcessError) -> TaskError {
        self.failed = true;
        let node = source
            .node()
            .map_or_else(|| self.graph.names[node].clone(), str::to_owned);
        TaskError::Processing {
            task: self.state.task_id,
            node,
            topic: self.state.current.topic.clone(),
            partition: self.state.current.partition,
            source,
        }
    }

    /// Takes the records the sinks (and the dead-letter policy) produced since the last call,
    /// in production order.
    pub fn take_output(&mut self) -> Vec<ProducerRecord> {
        self.metrics.produced_records += self.state.output.len() as u64;
        std::mem::take(&mut self.state.output)
    }

    /// Each input partition's committable offset (last processed offset + 1), for partitions
    /// with progress.
    pub fn committable_offsets(&self) -> Vec<(TopicPartition, i64)> {
        self.queues
            .iter()
            .filter_map(|q| q.committable.map(|o| (q.tp.clone(), o)))
            .collect()
    }

    /// Typed access to one of the task's stores, e.g. to inspect it in tests.
    pub fn store<K: 'static, V: 'static>(
        &mut self,
        name: &str,
    ) -> Result<KeyValueStore<'_, K, V>, StateError> {
        let slot = self
            .graph
            .stores
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| StateError::NotConnected {
                processor: format!("task {}", self.state.task_id),
                store: name.to_owned(),
            })?;
        let def = &self.graph.stores[slot];
        let serdes = def.serdes.downcast_ref::<KvSerdes<K, V>>().ok_or_else(|| {
            StateError::TypeMismatch {
                store: def.name.clone(),
                key: def.key_type,
                value: def.value_type,
                asked_key: std::any::type_name::<K>(),
                asked_value: std::any::type_name::<V>(),
            }
        })?;
        Ok(KeyValueStore::new(
            &def.name,
            self.state.stores[slot].as_mut(),
            serdes,
        ))
    }

    /// Closes the processors (in topology order) and returns the first error.
    pub fn close(mut self) -> Result<(), TaskError> {
        self.close_processors()
    }

    fn close_processors(&mut self) -> Result<(), TaskError> {
        let mut first_error = None;
        for node in 0..self.graph.names.len() {
            if matches!(self.state.nodes[node], Some(ErasedNode::Processor(_))) {
                let graph = &*self.graph;
                if let Err(e) =
                    with_processor(graph, &mut self.state, node, |p, g, s| p.close(g, s, node))
                {
                    let err = self.processing_failure(node, e);
                    first_error.get_or_insert(err);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Records of a partition must come after everything queued or processed before, at an
/// offset Kafka can have (`0..i64::MAX`: the committable offset is one past it).
fn check_after(
    task: TaskId,
    tp: &TopicPartition,
    last: Option<i64>,
    offset: i64,
) -> Result<(), TaskError> {
    if !(0..i64::MAX).contains(&offset) {
        return Err(TaskError::InvalidInput {
            task,
            detail: format!("{tp}: offset {offset} is outside 0..i64::MAX"),
        });
    }
    match last {
        Some(last) if offset <= last => Err(TaskError::InvalidInput {
            task,
            detail: format!("{tp}: offset {offset} is not after {last}"),
        }),
        _ => Ok(()),
    }
}

/// Hands `records` of `tp` to the source node `source`.
fn run_source(
    graph: &Graph,
    state: &mut TaskState,
    source: usize,
    tp: &TopicPartition,
    records: &mut [RawRecord],
    take: bool,
    undecodable: &mut Vec<(usize, DeserializationError)>,
) -> Result<(), SourceFailure> {
    match state.nodes[source].take() {
        Some(ErasedNode::Source(mut s)) => {
            let result = s.process_raw(graph, state, source, tp, records, take, undecodable);
            state.nodes[source] = Some(ErasedNode::Source(s));
            result
        }
        other => {
            state.nodes[source] = other;
            Err(SourceFailure::Processing(ProcessError::msg(format!(
                "node `{}` is not a source (internal error)",
                graph.names[source]
            ))))
        }
    }
}

#[cfg(test)]
mod tests;
