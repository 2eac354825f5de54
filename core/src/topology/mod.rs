//! Topologies: what to run. Build one with [`TopologyBuilder`]; it is split into
//! sub-topologies (connected components), each run as one task per input partition.

mod builder;
mod describe;
mod handle;
pub(crate) mod node;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

pub use builder::TopologyBuilder;
pub use describe::TopologyDescription;
pub use handle::{Downstream, NodeRef, ProcessorHandle, SinkHandle, SourceHandle, Upstream};
pub use node::Partitioner;

use crate::error::TopologyError;
use crate::processor::graph::{Graph, NodeFactory};
use crate::state::StoreDef;

pub(crate) enum NodeKind {
    Source { topics: Vec<String> },
    Processor,
    Sink { topic: String },
}

pub(crate) struct NodeDef {
    pub(crate) name: String,
    pub(crate) kind: NodeKind,
    pub(crate) parents: Vec<usize>,
    /// Store indices connected to this node.
    pub(crate) stores: Vec<usize>,
    /// Stores the processor's supplier says it uses.
    pub(crate) declared_stores: Vec<String>,
    pub(crate) factory: Arc<dyn NodeFactory>,
}

/// A connected component of the topology: the unit tasks are made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subtopology {
    /// Its id, by order of its first node.
    pub id: usize,
    /// Node names in the order they were added.
    pub nodes: Vec<String>,
    /// Topics read by its sources; they must be co-partitioned (same partition count), and
    /// partition `p` of each belongs to task `<id>_<p>`.
    pub source_topics: Vec<String>,
    /// Topics its sinks write.
    pub sink_topics: Vec<String>,
    /// Stores of its processors.
    pub stores: Vec<String>,
}

/// A validated topology.
pub struct Topology {
    pub(crate) nodes: Vec<NodeDef>,
    pub(crate) stores: Vec<StoreDef>,
    subtopologies: Vec<Subtopology>,
    pub(crate) graphs: Vec<Arc<Graph>>,
}

impl Topology {
    fn from_builder(b: TopologyBuilder) -> Result<Self, TopologyError> {
        let nodes = b.nodes;
        let stores = b.stores;
        if !nodes
            .iter()
            .any(|n| matches!(n.kind, NodeKind::Source { .. }))
        {
            return Err(TopologyError::NoSource);
        }
        for node in &nodes {
            for declared in &node.declared_stores {
                let slot = stores
                    .iter()
                    .position(|s| &s.name == declared)
                    .ok_or_else(|| TopologyError::UnknownStore(declared.clone()))?;
                if !node.stores.contains(&slot) {
                    return Err(TopologyError::StoreNotConnected {
                        processor: node.name.clone(),
                        store: declared.clone(),
                    });
                }
            }
        }
        let mut children = vec![Vec::new(); nodes.len()];
        for (i, node) in nodes.iter().enumerate() {
            for &p in &node.parents {
                children[p].push(i);
            }
        }
        if let Some(cycle) = find_cycle(&children) {
            return Err(TopologyError::Cycle(
                cycle.into_iter().map(|i| nodes[i].name.clone()).collect(),
            ));
        }

        // Connected components over parent edges and shared stores.
        let mut components = UnionFind::new(nodes.len());
        for (i, node) in nodes.iter().enumerate() {
            for &p in &node.parents {
                components.union(i, p);
            }
        }
        let mut store_owner: HashMap<usize, usize> = HashMap::new();
        for (i, node) in nodes.iter().enumerate() {
            for &s in &node.stores {
                match store_owner.get(&s) {
                    Some(&other) => components.union(i, other),
                    None => {
                        store_owner.insert(s, i);
                    }
                }
            }
        }
        // Sub-topology ids follow the order of each component's first node.
        let mut id_of_root: BTreeMap<usize, usize> = BTreeMap::new();
        let mut members: Vec<Vec<usize>> = Vec::new();
        for i in 0..nodes.len() {
            let root = components.find(i);
            let id = *id_of_root.entry(root).or_insert_with(|| {
                members.push(Vec::new());
                members.len() - 1
            });
            members[id].push(i);
        }

        let mut subtopologies = Vec::new();
        let mut graphs = Vec::new();
        for (id, member) in members.iter().enumerate() {
            let local: HashMap<usize, usize> =
                member.iter().enumerate().map(|(l, &g)| (g, l)).collect();
            let mut store_slots: Vec<usize> = member
                .iter()
                .flat_map(|&g| nodes[g].stores.iter().copied())
                .collect();
            store_slots.sort_unstable();
            store_slots.dedup();
            let local_store: HashMap<usize, usize> = store_slots
                .iter()
                .enumerate()
                .map(|(l, &g)| (g, l))
                .collect();
            let mut sources = Vec::new();
            let mut sink_topics = Vec::new();
            for &g in member {
                match &nodes[g].kind {
                    NodeKind::Source { topics } => {
                        sources.extend(
                            topics
                                .iter()
                                .map(|t| (Arc::<str>::from(t.as_str()), local[&g])),
                        );
                    }
                    NodeKind::Sink { topic } if !sink_topics.contains(topic) => {
                        sink_topics.push(topic.clone());
                    }
                    _ => {}
                }
            }
            graphs.push(Arc::new(Graph {
                names: member.iter().map(|&g| nodes[g].name.clone()).collect(),
                children: member
                    .iter()
                    .map(|&g| children[g].iter().map(|c| local[c]).collect())
                    .collect(),
                node_stores: member
                    .iter()
                    .map(|&g| nodes[g].stores.iter().map(|s| local_store[s]).collect())
                    .collect(),
                stores: store_slots.iter().map(|&s| stores[s].clone()).collect(),
                sources: sources.clone(),
                factories: member.iter().map(|&g| nodes[g].factory.clone()).collect(),
            }));
            subtopologies.push(Subtopology {
                id,
                nodes: member.iter().map(|&g| nodes[g].name.clone()).collect(),
                source_topics: sources.iter().map(|(t, _)| t.to_string()).collect(),
                sink_topics,
                stores: store_slots
                    .iter()
                    .map(|&s| stores[s].name.clone())
                    .collect(),
            });
        }
        Ok(Self {
            nodes,
            stores,
            subtopologies,
            graphs,
        })
    }

    /// The sub-topologies, by id.
    pub fn subtopologies(&self) -> &[Subtopology] {
        &self.subtopologies
    }

    /// Every topic read by a source.
    pub fn source_topics(&self) -> Vec<String> {
        self.subtopologies
            .iter()
            .flat_map(|s| s.source_topics.iter().cloned())
            .collect()
    }

    /// Every topic written by a sink.
    pub fn sink_topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = self
            .subtopologies
            .iter()
            .flat_map(|s| s.sink_topics.iter().cloned())
            .collect();
        topics.sort();
        topics.dedup();
        topics
    }

    /// The names of all stores.
    pub fn store_names(&self) -> Vec<String> {
        self.stores.iter().map(|s| s.name.clone()).collect()
    }

    /// Whether store `name` is backed by a changelog topic.
    pub fn store_is_logged(&self, name: &str) -> Option<bool> {
        self.stores
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.logging)
    }

    /// Number of tasks of each sub-topology given the partition counts of its source topics
    /// (`None` for a topic that does not exist). Fails on a missing topic or when the source
    /// topics of a sub-topology are not co-partitioned.
    pub fn partition_counts(
        &self,
        partitions_of: impl Fn(&str) -> Option<i32>,
    ) -> Result<Vec<i32>, TopologyError> {
        self.subtopologies
            .iter()
            .map(|sub| {
                let counts = sub
                    .source_topics
                    .iter()
                    .map(|t| {
                        partitions_of(t)
                            .map(|n| (t.as_str(), n))
                            .ok_or_else(|| TopologyError::MissingSourceTopic(t.clone()))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let first = counts.first().map(|&(_, n)| n).unwrap_or(0);
                if counts.iter().any(|&(_, n)| n != first) {
                    return Err(TopologyError::NotCoPartitioned {
                        subtopology: sub.id,
                        detail: counts
                            .iter()
                            .map(|(t, n)| format!("{t}={n}"))
                            .collect::<Vec<_>>()
                            .join(", "),
                    });
                }
                Ok(first)
            })
            .collect()
    }

    /// A stable text description of the topology.
    pub fn describe(&self) -> TopologyDescription {
        TopologyDescription::of(self)
    }
}

/// Returns the nodes of a cycle, first node repeated at the end, if there is one.
fn find_cycle(children: &[Vec<usize>]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let mut marks = vec![Mark::New; children.len()];
    for start in 0..children.len() {
        if marks[start] != Mark::New {
            continue;
        }
        // Iterative DFS: (node, next child index).
        let mut path: Vec<(usize, usize)> = vec![(start, 0)];
        marks[start] = Mark::OnPath;
        while let Some(&mut (node, ref mut next)) = path.last_mut() {
            if let Some(&child) = children[node].get(*next) {
                *next += 1;
                match marks[child] {
                    Mark::New => {
                        marks[child] = Mark::OnPath;
                        path.push((child, 0));
                    }
                    Mark::OnPath => {
                        let from = path.iter().position(|&(n, _)| n == child).unwrap_or(0);
                        let mut cycle: Vec<usize> = path[from..].iter().map(|&(n, _)| n).collect();
                        cycle.push(child);
                        return Some(cycle);
                    }
                    Mark::Done => {}
                }
            } else {
                marks[node] = Mark::Done;
                path.pop();
            }
        }
    }
    None
}

struct UnionFind(Vec<usize>);

impl UnionFind {
    fn new(n: usize) -> Self {
        Self((0..n).collect())
    }

    fn find(&mut self, mut i: usize) -> usize {
        while self.0[i] != i {
            self.0[i] = self.0[self.0[i]];
            i = self.0[i];
        }
        i
    }

    /// Joins two sets; the smaller root stays root, so roots are the first node of a set.
    fn union(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        let (lo, hi) = if a < b { (a, b) } else { (b, a) };
        self.0[hi] = lo;
    }
}

#[cfg(test)]
mod tests;
