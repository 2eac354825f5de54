//! The Kafka client of a streams application, as sans-IO state machines: each component
//! produces requests (typed `kafka-protocol` messages addressed to a [`Target`]) and consumes
//! the matching responses; the engine owns the connections and routes between them.
//!
//! # Time
//! Every component takes `now: i64`, milliseconds since the Unix epoch, passed in by the
//! caller and never read from a clock here. Callers pass non-decreasing values; components
//! treat a smaller `now` as equal to the largest seen.
//!
//! Components:
//! - [`metadata`]: brokers and partition leaders, refreshed on demand.
//! - [`fetcher`]: Fetch requests per leader, positions, decoded records per partition.
//! - [`group`]: consumer-group membership (classic protocol), our assignor, offset fetch/commit.
//! - [`producer`]: per-partition accumulators, idempotent produce with ordered retries.

pub mod fetcher;
pub mod group;
pub mod metadata;
pub mod producer;

/// A broker's node id.
pub type BrokerId = i32;

/// Where a request must be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// Any reachable broker (bootstrap or known): Metadata, FindCoordinator.
    AnyBroker,
    /// One broker: Fetch, Produce, ListOffsets to a partition leader.
    Broker(BrokerId),
    /// The group coordinator (found by the group component).
    Coordinator,
}
