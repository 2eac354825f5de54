use std::fmt;

use super::{NodeKind, Topology};

/// A stable, human-readable description of a topology, in the spirit of Kafka Streams'
/// `TopologyDescription`: sub-topologies in id order, nodes in the order they were added,
/// each with its children (`-->`) and parents (`<--`). Stores without a changelog are marked
/// `(not logged)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyDescription(String);

impl TopologyDescription {
    pub(super) fn of(t: &Topology) -> Self {
        let mut out = String::from("Topologies:\n");
        let names = |ids: &[usize]| -> String {
            if ids.is_empty() {
                "none".to_owned()
            } else {
                ids.iter()
                    .map(|&i| t.nodes[i].name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        let mut children = vec![Vec::new(); t.nodes.len()];
        for (i, n) in t.nodes.iter().enumerate() {
            for &p in &n.parents {
                children[p].push(i);
            }
        }
        for sub in t.subtopologies() {
            out.push_str(&format!("   Sub-topology: {}\n", sub.id));
            for name in &sub.nodes {
                let Some(i) = t.nodes.iter().position(|n| &n.name == name) else {
                    continue;
                };
                let node = &t.nodes[i];
                match &node.kind {
                    NodeKind::Source { topics } => {
                        out.push_str(&format!(
                            "    Source: {} (topics: [{}])\n",
                            node.name,
                            topics.join(", ")
                        ));
                    }
                    NodeKind::Processor => {
                        // A store without a changelog says so: its state does not survive a
                        // move or the loss of its state directory.
                        let stores: Vec<String> = node
                            .stores
                            .iter()
                            .map(|&s| {
                                let store = &t.stores[s];
                                if store.logging {
                                    store.name.clone()
                                } else {
                                    format!("{} (not logged)", store.name)
                                }
                            })
                            .collect();
                        out.push_str(&format!(
                            "    Processor: {} (stores: [{}])\n",
                            node.name,
                            stores.join(", ")
                        ));
                    }
                    NodeKind::Sink { topic } => {
                        out.push_str(&format!("    Sink: {} (topic: {topic})\n", node.name));
                    }
                }
                if !matches!(node.kind, NodeKind::Sink { .. }) {
                    out.push_str(&format!("      --> {}\n", names(&children[i])));
                }
                if !matches!(node.kind, NodeKind::Source { .. }) {
                    out.push_str(&format!("      <-- {}\n", names(&node.parents)));
                }
            }
        }
        Self(out)
    }
}

impl fmt::Display for TopologyDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
