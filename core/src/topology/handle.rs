//! Typed handles to the nodes of a topology under construction.

use std::marker::PhantomData;
use std::sync::Arc;

/// Which builder and which node a handle points to.
#[derive(Debug, Clone)]
pub struct NodeRef {
    pub(crate) builder: u64,
    pub(crate) index: usize,
    pub(crate) name: Arc<str>,
}

impl NodeRef {
    /// The node's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A node whose output records are `Record<K, V>`: can be the parent of a node taking them.
pub trait Upstream<K, V> {
    /// The node.
    fn node_ref(&self) -> &NodeRef;
}

/// A node taking `Record<K, V>` as input: can be the child of a node producing them.
pub trait Downstream<K, V> {
    /// The node.
    fn node_ref(&self) -> &NodeRef;
}

macro_rules! handle_clone {
    ($name:ident < $($p:ident),* >) => {
        impl<$($p),*> Clone for $name<$($p),*> {
            fn clone(&self) -> Self {
                Self { node: self.node.clone(), _types: PhantomData }
            }
        }
        impl<$($p),*> $name<$($p),*> {
            /// The node's name.
            pub fn name(&self) -> &str {
                &self.node.name
            }
        }
    };
}

/// A source node producing `Record<K, V>`.
pub struct SourceHandle<K, V> {
    pub(crate) node: NodeRef,
    pub(crate) _types: PhantomData<fn() -> (K, V)>,
}
handle_clone!(SourceHandle<K, V>);

impl<K, V> Upstream<K, V> for SourceHandle<K, V> {
    fn node_ref(&self) -> &NodeRef {
        &self.node
    }
}

/// Marks a processor's input and output types without owning values of them.
type ProcessorTypes<KIn, VIn, KOut, VOut> = PhantomData<fn(KIn, VIn) -> (KOut, VOut)>;

/// A processor node taking `Record<KIn, VIn>` and producing `Record<KOut, VOut>`.
pub struct ProcessorHandle<KIn, VIn, KOut, VOut> {
    pub(crate) node: NodeRef,
    pub(crate) _types: ProcessorTypes<KIn, VIn, KOut, VOut>,
}
handle_clone!(ProcessorHandle<KIn, VIn, KOut, VOut>);

impl<KIn, VIn, KOut, VOut> Upstream<KOut, VOut> for ProcessorHandle<KIn, VIn, KOut, VOut> {
    fn node_ref(&self) -> &NodeRef {
        &self.node
    }
}

impl<KIn, VIn, KOut, VOut> Downstream<KIn, VIn> for ProcessorHandle<KIn, VIn, KOut, VOut> {
    fn node_ref(&self) -> &NodeRef {
        &self.node
    }
}

/// A sink node taking `Record<K, V>`.
pub struct SinkHandle<K, V> {
    pub(crate) node: NodeRef,
    pub(crate) _types: PhantomData<fn(K, V)>,
}
handle_clone!(SinkHandle<K, V>);

impl<K, V> Downstream<K, V> for SinkHandle<K, V> {
    fn node_ref(&self) -> &NodeRef {
        &self.node
    }
}
