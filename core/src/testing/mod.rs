//! [`TopologyTestDriver`]: run a topology without a broker, for unit tests — the counterpart
//! of Kafka Streams' test driver, batch-aware.
//!
//! Piped records are queued; they are processed (in batches of up to
//! [`TopologyTestDriverBuilder::batch_size`] records per partition) when you call
//! [`TopologyTestDriver::process`], read an output topic or a store, or advance wall-clock
//! time. After processing, the driver commits like a real run: stores are committed and each
//! task's committable offsets are recorded ([`TopologyTestDriver::committed_offset`]).
//! Output written to a topic that the topology also reads is fed back as input.

mod topic;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;

pub use topic::{InputTopic, OutputTopic};

use crate::error::{TaskError, TopologyError};
use crate::partitioner::default_partition;
use crate::record::{Headers, ProducerRecord, RawRecord, TopicPartition};
use crate::serde::SerdeError;
use crate::state::{MemoryStoreFactory, StateError, StoreFactory};
use crate::task::{ErrorPolicy, Task, TaskConfig, TaskId};
use crate::time::{Duration, Instant};
use crate::topology::Topology;

/// Errors of the test driver.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// The topology does not fit the declared topics.
    #[error(transparent)]
    Topology(#[from] TopologyError),
    /// A task failed or could not be created.
    #[error(transparent)]
    Task(#[from] TaskError),
    /// A store could not be read.
    #[error(transparent)]
    State(#[from] StateError),
    /// A record could not be serialized for piping or deserialized when read.
    #[error("topic `{topic}`: {source}")]
    Serde {
        /// The topic.
        topic: String,
        /// The error.
        #[source]
        source: SerdeError,
    },
    /// A partition outside the topic's partitions.
    #[error("topic `{topic}` has {partitions} partitions; there is no partition {partition}")]
    NoSuchPartition {
        /// The topic.
        topic: String,
        /// Its partition count.
        partitions: i32,
        /// The partition asked for.
        partition: i32,
    },
    /// Input piped to a topic the topology does not read.
    #[error("topic `{0}` is not read by the topology")]
    NotAnInputTopic(String),
}

/// Configures a [`TopologyTestDriver`].
pub struct TopologyTestDriverBuilder {
    topology: Topology,
    config: TaskConfig,
    stores: Box<dyn StoreFactory>,
    partitions: HashMap<String, i32>,
    wall_clock: Instant,
}

impl TopologyTestDriverBuilder {
    /// Most records per batch (default 1000; 1 runs record by record).
    pub fn batch_size(mut self, records: usize) -> Self {
        self.config.max_batch_records = records.max(1);
        self
    }

    /// Partition count of a topic (default 1). Source topics of one sub-topology must agree.
    pub fn topic(mut self, name: &str, partitions: i32) -> Self {
        self.partitions.insert(name.to_owned(), partitions.max(1));
        self
    }

    /// Where stores live: in memory by default; pass `kstreams_store_lmdb`'s factory for LMDB.
    pub fn store_factory(mut self, factory: impl StoreFactory + 'static) -> Self {
        self.stores = Box::new(factory);
        self
    }

    /// Policy for undeserializable records (default: fail).
    pub fn deserialization_errors(mut self, policy: ErrorPolicy) -> Self {
        self.config.deserialization_errors = policy;
        self
    }

    /// Policy for records whose processing fails (default: fail).
    pub fn processing_errors(mut self, policy: ErrorPolicy) -> Self {
        self.config.processing_errors = policy;
        self
    }

    /// Initial wall-clock time (default [`Instant::EPOCH`]).
    pub fn wall_clock(mut self, now: Instant) -> Self {
        self.wall_clock = now;
        self
    }

    /// Creates the tasks: one per sub-topology and partition.
    pub fn build(self) -> Result<TopologyTestDriver, DriverError> {
        let partitions_of = |t: &str| Some(self.partitions.get(t).copied().unwrap_or(1));
        let counts = self.topology.partition_counts(partitions_of)?;
        let mut sink_partitions: HashMap<String, i32> = HashMap::new();
        for topic in self.topology.sink_topics() {
            let n = partitions_of(&topic).unwrap_or(1);
            sink_partitions.insert(topic, n);
        }
        let mut tasks = BTreeMap::new();
        for (subtopology, &n) in counts.iter().enumerate() {
            for partition in 0..n {
                let id = TaskId {
                    subtopology,
                    partition,
                };
                let task = Task::new(
                    &self.topology,
                    id,
                    self.stores.as_ref(),
                    self.config.clone(),
                    sink_partitions.clone(),
                    self.wall_clock,
                )?;
                tasks.insert(id, task);
            }
        }
        let mut readers = HashMap::new();
        for sub in self.topology.subtopologies() {
            for t in &sub.source_topics {
                readers.insert(t.clone(), sub.id);
            }
        }
        Ok(TopologyTestDriver {
            topology: self.topology,
            tasks,
            partitions: self.partitions,
            readers,
            next_offset: HashMap::new(),
            outputs: HashMap::new(),
            committed: BTreeMap::new(),
            wall_clock: self.wall_clock,
        })
    }
}

/// One record written to a topic, as the driver keeps it.
#[derive(Debug, Clone)]
pub(crate) struct StoredRecord {
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) record: ProducerRecord,
}

/// Runs a topology in memory, without a broker. See the [module docs](self).
pub struct TopologyTestDriver {
    topology: Topology,
    tasks: BTreeMap<TaskId, Task>,
    partitions: HashMap<String, i32>,
    /// Source topic → sub-topology reading it.
    readers: HashMap<String, usize>,
    /// Topic → its shared name and the next offset of each partition (grown on demand).
    next_offset: HashMap<Arc<str>, (Arc<str>, Vec<i64>)>,
    /// Topic → records written, in production order, and how many were read.
    outputs: HashMap<Arc<str>, (Vec<StoredRecord>, usize)>,
    committed: BTreeMap<TopicPartition, i64>,
    wall_clock: Instant,
}

impl TopologyTestDriver {
    /// A builder for a driver of `topology`.
    pub fn builder(topology: Topology) -> TopologyTestDriverBuilder {
        TopologyTestDriverBuilder {
            topology,
            config: TaskConfig::default(),
            stores: Box::new(MemoryStoreFactory),
            partitions: HashMap::new(),
            wall_clock: Instant::EPOCH,
        }
    }

    /// A driver with default settings: every topic one partition, memory stores.
    pub fn new(topology: Topology) -> Result<Self, DriverError> {
        Self::builder(topology).build()
    }

    /// The topology run.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Partition count of `topic`.
    pub fn partitions(&self, topic: &str) -> i32 {
        self.partitions.get(topic).copied().unwrap_or(1)
    }

    /// A typed handle for piping into `topic`.
    pub fn input_topic<K: 'static, V: 'static>(
        &self,
        topic: &str,
        key: impl crate::serde::Serializer<K>,
        value: impl crate::serde::Serializer<V>,
    ) -> InputTopic<K, V> {
        InputTopic::new(topic, key, value)
    }

    /// A typed handle for reading `topic`.
    pub fn output_topic<K: 'static, V: 'static>(
        &self,
        topic: &str,
        key: impl crate::serde::Deserializer<K>,
        value: impl crate::serde::Deserializer<V>,
    ) -> OutputTopic<K, V> {
        OutputTopic::new(topic, key, value)
    }

    /// Queues a serialized record on `topic`; `partition: None` picks one like Kafka's default
    /// partitioner (murmur2 of the key; partition 0 for a null key). Returns its offset.
    pub fn pipe_raw(
        &mut self,
        topic: &str,
        partition: Option<i32>,
        key: Option<Bytes>,
        value: Option<Bytes>,
        timestamp: i64,
        headers: Headers,
    ) -> Result<i64, DriverError> {
        let &subtopology = self
            .readers
            .get(topic)
            .ok_or_else(|| DriverError::NotAnInputTopic(topic.to_owned()))?;
        let partition = self.choose_partition(topic, partition, key.as_deref())?;
        let (topic_name, offset) = self.next_offset(topic, partition);
        let tp = TopicPartition {
            topic: topic_name,
            partition,
        };
        let task = self
            .tasks
            .get_mut(&TaskId {
                subtopology,
                partition,
            })
            .ok_or_else(|| DriverError::NotAnInputTopic(topic.to_owned()))?;
        task.add_record(
            &tp,
            RawRecord {
                offset,
                timestamp,
                key,
                value,
                headers,
            },
        )?;
        Ok(offset)
    }

    fn choose_partition(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
    ) -> Result<i32, DriverError> {
        let partitions = self.partitions(topic);
        let p = partition.unwrap_or_else(|| key.map_or(0, |k| default_partition(k, partitions)));
        if !(0..partitions).contains(&p) {
            return Err(DriverError::NoSuchPartition {
                topic: topic.to_owned(),
                partitions,
                partition: p,
            });
        }
        Ok(p)
    }

    /// Takes the next offset of `topic`-`partition`; also returns the topic's shared name
    /// (one allocation per topic, not per record).
    fn next_offset(&mut self, topic: &str, partition: i32) -> (Arc<str>, i64) {
        let index = usize::try_from(partition).unwrap_or_default();
        if !self.next_offset.contains_key(topic) {
            let name: Arc<str> = Arc::from(topic);
            self.next_offset.insert(name.clone(), (name, Vec::new()));
        }
        match self.next_offset.get_mut(topic) {
            Some((name, next)) => {
                if next.len() <= index {
                    next.resize(index + 1, 0);
                }
                let offset = next[index];
                next[index] += 1;
                (name.clone(), offset)
            }
            None => (Arc::from(topic), 0),
        }
    }

    /// Processes every queued record, routes the output (feeding topics the topology reads),
    /// then commits stores and offsets. A failed task's uncommitted store writes are rolled
    /// back and its error returned; later calls return [`TaskError::Failed`].
    pub fn process(&mut self) -> Result<(), DriverError> {
        loop {
            let mut output = Vec::new();
            for task in self.tasks.values_mut() {
                if let Err(e) = task.process_all() {
                    task.rollback_stores();
                    return Err(e.into());
                }
                output.extend(task.take_output());
            }
            if output.is_empty() && self.tasks.values().all(|t| t.queued_total() == 0) {
                break;
            }
            self.route(output)?;
        }
        self.commit()
    }

    fn route(&mut self, output: Vec<ProducerRecord>) -> Result<(), DriverError> {
        for record in output {
            let topic = record.topic.clone();
            let partition =
                self.choose_partition(&topic, record.partition, record.key.as_deref())?;
            if self.readers.contains_key(&*topic) {
                let offset = self.pipe_raw(
                    &topic,
                    Some(partition),
                    record.key.clone(),
                    record.value.clone(),
                    record.timestamp,
                    record.headers.clone(),
                )?;
                self.push_output(topic, partition, offset, record);
            } else {
                let (_, offset) = self.next_offset(&topic, partition);
                self.push_output(topic, partition, offset, record);
            }
        }
        Ok(())
    }

    fn push_output(
        &mut self,
        topic: Arc<str>,
        partition: i32,
        offset: i64,
        record: ProducerRecord,
    ) {
        self.outputs.entry(topic).or_default().0.push(StoredRecord {
            partition,
            offset,
            record,
        });
    }

    fn commit(&mut self) -> Result<(), DriverError> {
        for task in self.tasks.values_mut() {
            task.commit_stores()?;
            for (tp, offset) in task.committable_offsets() {
                self.committed.insert(tp, offset);
            }
        }
        Ok(())
    }

    /// Advances wall-clock time by `by`, processing queued input first, and fires the
    /// wall-clock punctuations that come due.
    pub fn advance_wall_clock(&mut self, by: Duration) -> Result<(), DriverError> {
        self.process()?;
        self.wall_clock += by;
        let mut output = Vec::new();
        for task in self.tasks.values_mut() {
            task.punctuate_wall_clock(self.wall_clock)?;
            output.extend(task.take_output());
        }
        self.route(output)?;
        self.process()
    }

    /// Current wall-clock time of the driver.
    pub fn wall_clock(&self) -> Instant {
        self.wall_clock
    }

    /// The committed offset (next offset to consume) of an input partition.
    pub fn committed_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        self.committed
            .get(&TopicPartition::new(topic, partition))
            .copied()
    }

    /// The unread records of `topic`, in the order they were produced, and marks them read.
    pub(crate) fn read_output(&mut self, topic: &str) -> Result<Vec<StoredRecord>, DriverError> {
        self.process()?;
        let Some((records, read)) = self.outputs.get_mut(topic) else {
            return Ok(Vec::new());
        };
        let unread = records[*read..].to_vec();
        *read = records.len();
        Ok(unread)
    }

    /// The entries of `store` across all tasks (partitions in order, each in key order),
    /// after processing queued input.
    pub fn store_entries<K: 'static, V: 'static>(
        &mut self,
        store: &str,
    ) -> Result<Vec<(K, V)>, DriverError> {
        self.process()?;
        let mut entries = Vec::new();
        for task in self.tasks.values_mut() {
            match task.store::<K, V>(store) {
                Ok(s) => entries.extend(s.all()?),
                Err(StateError::NotConnected { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(entries)
    }

    /// The entries of `store` in the task of `partition`, in key order.
    pub fn store_entries_of<K: 'static, V: 'static>(
        &mut self,
        store: &str,
        partition: i32,
    ) -> Result<Vec<(K, V)>, DriverError> {
        self.process()?;
        for (id, task) in &mut self.tasks {
            if id.partition != partition {
                continue;
            }
            match task.store::<K, V>(store) {
                Ok(s) => return Ok(s.all()?),
                Err(StateError::NotConnected { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StateError::NotConnected {
            processor: format!("partition {partition}"),
            store: store.to_owned(),
        }
        .into())
    }

    /// The tasks, for metrics and inspection.
    pub fn tasks(&self) -> impl Iterator<Item = &Task> {
        self.tasks.values()
    }

    /// Closes every task (processors' `close`).
    pub fn close(self) -> Result<(), DriverError> {
        for task in self.tasks.into_values() {
            task.close()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
