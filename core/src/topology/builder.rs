//! [`TopologyBuilder`]: typed construction and validation of a topology.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::handle::{Downstream, NodeRef, ProcessorHandle, SinkHandle, SourceHandle, Upstream};
use super::node::{Partitioner, ProcessorFactory, SinkFactory, SourceFactory};
use super::{NodeDef, NodeKind, Topology};
use crate::error::TopologyError;
use crate::processor::graph::NodeFactory;
use crate::processor::{Filter, FlatMap, ForEach, Map, MapValues, Peek, ProcessorSupplier};
use crate::record::Record;
use crate::serde::{Deserializer, Serializer};
use crate::state::{StoreBuilder, StoreDef};

static NEXT_BUILDER_ID: AtomicU64 = AtomicU64::new(1);

/// Builds a [`Topology`]: sources, processors, sinks and stores, typed end to end — a node
/// can only have parents whose output type is its input type.
///
/// ```
/// use kstreams_core::prelude::*;
///
/// let mut b = TopologyBuilder::new();
/// let src = b.add_source("lines", &["input"], StringSerde, StringSerde)?;
/// let upper = b.map_values("upper", &src, |v: &String| v.to_uppercase())?;
/// b.add_sink("out", "output", &[&upper], StringSerde, StringSerde)?;
/// let topology = b.build()?;
/// assert_eq!(topology.subtopologies().len(), 1);
/// # Ok::<(), TopologyError>(())
/// ```
///
/// Wiring a parent whose output type is not the child's input type does not compile:
///
/// ```compile_fail
/// use kstreams_core::prelude::*;
///
/// let mut b = TopologyBuilder::new();
/// let src = b.add_source::<String, String>("src", &["input"], StringSerde, StringSerde)?;
/// // The sink takes (String, i64) records; the source gives (String, String).
/// b.add_sink("out", "output", &[&src], StringSerde, I64Serde)?;
/// # Ok::<(), TopologyError>(())
/// ```
pub struct TopologyBuilder {
    id: u64,
    pub(super) nodes: Vec<NodeDef>,
    pub(super) stores: Vec<StoreDef>,
    names: HashMap<String, usize>,
    topics: HashMap<String, usize>,
}

impl Default for TopologyBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl TopologyBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self {
            id: NEXT_BUILDER_ID.fetch_add(1, Ordering::Relaxed),
            nodes: Vec::new(),
            stores: Vec::new(),
            names: HashMap::new(),
            topics: HashMap::new(),
        }
    }

    fn add_node(
        &mut self,
        name: &str,
        kind: NodeKind,
        parents: Vec<usize>,
        declared_stores: Vec<String>,
        factory: Arc<dyn NodeFactory>,
    ) -> Result<NodeRef, TopologyError> {
        if self.names.contains_key(name) || self.stores.iter().any(|s| s.name == name) {
            return Err(TopologyError::DuplicateName(name.to_owned()));
        }
        let index = self.nodes.len();
        self.nodes.push(NodeDef {
            name: name.to_owned(),
            kind,
            parents,
            stores: Vec::new(),
            declared_stores,
            factory,
        });
        self.names.insert(name.to_owned(), index);
        Ok(NodeRef {
            builder: self.id,
            index,
            name: Arc::from(name),
        })
    }

    fn resolve(&self, child: &str, node: &NodeRef) -> Result<usize, TopologyError> {
        if node.builder != self.id || node.index >= self.nodes.len() {
            return Err(TopologyError::UnknownParent {
                child: child.to_owned(),
                parent: node.name.to_string(),
            });
        }
        Ok(node.index)
    }

    fn resolve_parents(
        &self,
        child: &str,
        parents: impl IntoIterator<Item = NodeRef>,
    ) -> Result<Vec<usize>, TopologyError> {
        let parents = parents
            .into_iter()
            .map(|p| self.resolve(child, &p))
            .collect::<Result<Vec<_>, _>>()?;
        if parents.is_empty() {
            return Err(TopologyError::Disconnected(
                child.to_owned(),
                "it has no parent",
            ));
        }
        Ok(parents)
    }

    /// Adds a source reading `topics` (all co-partitioned) with the given deserializers.
    pub fn add_source<K: Clone + 'static, V: Clone + 'static>(
        &mut self,
        name: &str,
        topics: &[&str],
        key: impl Deserializer<K>,
        value: impl Deserializer<V>,
    ) -> Result<SourceHandle<K, V>, TopologyError> {
        if topics.is_empty() {
            return Err(TopologyError::Disconnected(
                name.to_owned(),
                "a source needs a topic",
            ));
        }
        for topic in topics {
            if let Some(&other) = self.topics.get(*topic) {
                return Err(TopologyError::TopicConsumedTwice {
                    topic: (*topic).to_owned(),
                    first: self.nodes[other].name.clone(),
                    second: name.to_owned(),
                });
            }
        }
        let factory = Arc::new(SourceFactory {
            key: Arc::new(key),
            value: Arc::new(value),
        });
        let kind = NodeKind::Source {
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
        };
        let node = self.add_node(name, kind, Vec::new(), Vec::new(), factory)?;
        for topic in topics {
            self.topics.insert((*topic).to_owned(), node.index);
        }
        Ok(SourceHandle {
            node,
            _types: PhantomData,
        })
    }

    /// Adds a processor made by `supplier`, fed by `parents`.
    pub fn add_processor<KIn, VIn, KOut, VOut, S>(
        &mut self,
        name: &str,
        parents: &[&dyn Upstream<KIn, VIn>],
        supplier: S,
    ) -> Result<ProcessorHandle<KIn, VIn, KOut, VOut>, TopologyError>
    where
        S: ProcessorSupplier<KIn, VIn, KOut, VOut>,
        KIn: 'static,
        VIn: 'static,
        KOut: 'static,
        VOut: 'static,
    {
        let parents = self.resolve_parents(name, parents.iter().map(|p| p.node_ref().clone()))?;
        let declared = supplier.stores();
        let factory = Arc::new(ProcessorFactory {
            supplier,
            _types: PhantomData::<fn(KIn, VIn, KOut, VOut)>,
        });
        let node = self.add_node(name, NodeKind::Processor, parents, declared, factory)?;
        Ok(ProcessorHandle {
            node,
            _types: PhantomData,
        })
    }

    /// Adds a sink writing to `topic`; the producer picks partitions (murmur2 of the key bytes,
    /// like Kafka's default partitioner).
    pub fn add_sink<K: 'static, V: 'static>(
        &mut self,
        name: &str,
        topic: &str,
        parents: &[&dyn Upstream<K, V>],
        key: impl Serializer<K>,
        value: impl Serializer<V>,
    ) -> Result<SinkHandle<K, V>, TopologyError> {
        self.sink(name, topic, parents, key, value, None)
    }

    /// Adds a sink writing to `topic` whose partitions `partitioner` chooses.
    pub fn add_sink_with_partitioner<K: 'static, V: 'static>(
        &mut self,
        name: &str,
        topic: &str,
        parents: &[&dyn Upstream<K, V>],
        key: impl Serializer<K>,
        value: impl Serializer<V>,
        partitioner: impl Fn(&str, &K, &V, i32) -> Option<i32> + Send + Sync + 'static,
    ) -> Result<SinkHandle<K, V>, TopologyError> {
        self.sink(
            name,
            topic,
            parents,
            key,
            value,
            Some(Arc::new(partitioner)),
        )
    }

    fn sink<K: 'static, V: 'static>(
        &mut self,
        name: &str,
        topic: &str,
        parents: &[&dyn Upstream<K, V>],
        key: impl Serializer<K>,
        value: impl Serializer<V>,
        partitioner: Option<Partitioner<K, V>>,
    ) -> Result<SinkHandle<K, V>, TopologyError> {
        let parents = self.resolve_parents(name, parents.iter().map(|p| p.node_ref().clone()))?;
        let factory = Arc::new(SinkFactory {
            topic: Arc::from(topic),
            key: Arc::new(key),
            value: Arc::new(value),
            partitioner,
        });
        let kind = NodeKind::Sink {
            topic: topic.to_owned(),
        };
        let node = self.add_node(name, kind, parents, Vec::new(), factory)?;
        Ok(SinkHandle {
            node,
            _types: PhantomData,
        })
    }

    /// Adds an edge from `parent` to `child` (e.g. a second parent of an existing node).
    pub fn connect<K, V>(
        &mut self,
        parent: &dyn Upstream<K, V>,
        child: &dyn Downstream<K, V>,
    ) -> Result<(), TopologyError> {
        let child_name = child.node_ref().name.to_string();
        let parent = self.resolve(&child_name, parent.node_ref())?;
        let child = self.resolve(&child_name, child.node_ref())?;
        if !self.nodes[child].parents.contains(&parent) {
            self.nodes[child].parents.push(parent);
        }
        Ok(())
    }

    /// Registers a store and connects it to the named processors.
    pub fn add_store<K: 'static, V: 'static>(
        &mut self,
        store: StoreBuilder<K, V>,
        processors: &[&str],
    ) -> Result<(), TopologyError> {
        let name = store.name().to_owned();
        if self.names.contains_key(&name) || self.stores.iter().any(|s| s.name == name) {
            return Err(TopologyError::DuplicateName(name));
        }
        self.stores.push(store.into_def());
        for p in processors {
            self.connect_store(&name, p)?;
        }
        Ok(())
    }

    /// Connects an already added store to an already added processor.
    pub fn connect_store(&mut self, store: &str, processor: &str) -> Result<(), TopologyError> {
        let slot = self
            .stores
            .iter()
            .position(|s| s.name == store)
            .ok_or_else(|| TopologyError::UnknownStore(store.to_owned()))?;
        let &node = self
            .names
            .get(processor)
            .ok_or_else(|| TopologyError::UnknownNode(processor.to_owned()))?;
        if !matches!(self.nodes[node].kind, NodeKind::Processor) {
            return Err(TopologyError::StoreOnNonProcessor {
                store: store.to_owned(),
                node: processor.to_owned(),
            });
        }
        if !self.nodes[node].stores.contains(&slot) {
            self.nodes[node].stores.push(slot);
        }
        Ok(())
    }

    /// Adds a [`Filter`] keeping the records for which `predicate` is true.
    pub fn filter<K, V, F>(
        &mut self,
        name: &str,
        parent: &dyn Upstream<K, V>,
        predicate: F,
    ) -> Result<ProcessorHandle<K, V, K, V>, TopologyError>
    where
        K: Clone + 'static,
        V: Clone + 'static,
        F: Fn(&Record<K, V>) -> bool + Clone + Send + Sync + 'static,
    {
        self.add_processor(name, &[parent], move || Filter::new(predicate.clone()))
    }

    /// Adds a [`Map`] replacing each record's key and value.
    pub fn map<K, V, K2, V2, F>(
        &mut self,
        name: &str,
        parent: &dyn Upstream<K, V>,
        f: F,
    ) -> Result<ProcessorHandle<K, V, K2, V2>, TopologyError>
    where
        K: 'static,
        V: 'static,
        K2: Clone + 'static,
        V2: Clone + 'static,
        F: Fn(K, V) -> (K2, V2) + Clone + Send + Sync + 'static,
    {
        self.add_processor(name, &[parent], move || Map::new(f.clone()))
    }

    /// Adds a [`MapValues`] replacing each record's value, key unchanged.
    pub fn map_values<K, V, V2, F>(
        &mut self,
        name: &str,
        parent: &dyn Upstream<K, V>,
        f: F,
    ) -> Result<ProcessorHandle<K, V, K, V2>, TopologyError>
    where
        K: Clone + 'static,
        V: 'static,
        V2: Clone + 'static,
        F: Fn(&V) -> V2 + Clone + Send + Sync + 'static,
    {
        self.add_processor(name, &[parent], move || MapValues::new(f.clone()))
    }

    /// Adds a [`FlatMap`] turning each record into zero or more records.
    pub fn flat_map<K, V, K2, V2, I, F>(
        &mut self,
        name: &str,
        parent: &dyn Upstream<K, V>,
        f: F,
    ) -> Result<ProcessorHandle<K, V, K2, V2>, TopologyError>
    where
        K: 'static,
        V: 'static,
        K2: Clone + 'static,
        V2: Clone + 'static,
        I: IntoIterator<Item = (K2, V2)>,
        F: Fn(&K, &V) -> I + Clone + Send + Sync + 'static,
    {
        self.add_processor(name, &[parent], move || FlatMap::new(f.clone()))
    }

    /// Adds a [`ForEach`] calling `f` on each record and forwarding nothing.
    pub fn for_each<K, V, F>(
        &mut self,
        name: &str,
        parent: &dyn Upstream<K, V>,
        f: F,
    ) -> Result<ProcessorHandle<K, V, K, V>, TopologyError>
    where
        K: Clone + 'static,
        V: Clone + 'static,
        F: FnMut(&Record<K, V>) + Clone + Send + Sync + 'static,
    {
        self.add_processor(name, &[parent], move || ForEach::new(f.clone()))
    }

    /// Adds a [`Peek`] calling `f` on each record and forwarding it unchanged.
    pub fn peek<K, V, F>(
        &mut self,
        name: &str,
        parent: &dyn Upstream<K, V>,
        f: F,
    ) -> Result<ProcessorHandle<K, V, K, V>, TopologyError>
    where
        K: Clone + 'static,
        V: Clone + 'static,
        F: FnMut(&Record<K, V>) + Clone + Send + Sync + 'static,
    {
        self.add_processor(name, &[parent], move || Peek::new(f.clone()))
    }

    /// Validates the topology and computes its sub-topologies.
    pub fn build(self) -> Result<Topology, TopologyError> {
        Topology::from_builder(self)
    }
}
