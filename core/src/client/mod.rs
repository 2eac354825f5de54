//! The Kafka client of a streams application, as sans-IO state machines: each component
//! produces requests (typed `kafka-protocol` messages addressed to a [`Target`]) and consumes
//! the matching responses; the engine owns the connections and routes between them.
//!
//! # Time
//! Every component takes `now: `[`Instant`](crate::time::Instant), passed in by the caller and
//! never read from a clock here; its deadlines are `Instant`s ([`Instant::MIN`] for "due at
//! once"), `poll_timeout` returns `Option<Instant>`, and every span in the settings is a
//! [`Duration`](crate::time::Duration) named after its Kafka property without the `.ms`
//! (`linger`, `retry_backoff`, …). See [`crate::time`]. Callers pass non-decreasing values;
//! components treat a smaller `now` as equal to the largest seen. Milliseconds appear only on
//! the wire: a request field such as `timeout_ms` is converted when the request is built, a
//! response field such as `throttle_time_ms` becomes a `Duration` when it is read. Record
//! timestamps are data, not time: they stay `i64`.
//!
//! [`Instant::MIN`]: crate::time::Instant::MIN
//!
//! Components:
//! - [`admin`]: creation of internal topics (changelogs) with CreateTopics.
//! - [`metadata`]: brokers and partition leaders, refreshed on demand.
//! - [`fetcher`]: Fetch requests per leader, positions, decoded records per partition.
//! - [`group`]: consumer-group membership (classic protocol), our assignor, offset fetch/commit.
//! - [`producer`]: per-partition accumulators, idempotent produce with ordered retries, and
//!   transactions (exactly-once v2).

pub mod admin;
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

/// A request a component wants sent.
///
/// The component built it for the API version it was given (see [`ApiVersionLookup`]); the
/// engine sends it at that version to `target` and hands the response (or the failure) back to
/// the same component together with the broker that answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Outbound {
    /// Where it goes.
    pub target: Target,
    /// The request body.
    pub request: kafka_protocol::messages::RequestKind,
    /// The version the request was built for.
    pub version: i16,
}

/// The API version the engine will use for each API: the highest version that we and every
/// connected broker support (brokers of one cluster normally agree). Components build each
/// request for the version this returns and must not send an API it returns `None` for.
pub trait ApiVersionLookup {
    /// The version to use for `api`, or `None` when no version is usable.
    fn version(&self, api: kafka_protocol::messages::ApiKey) -> Option<i16>;
}

impl ApiVersionLookup for crate::wire::versions::NegotiatedVersions {
    fn version(&self, api: kafka_protocol::messages::ApiKey) -> Option<i16> {
        crate::wire::versions::NegotiatedVersions::version(self, api)
    }
}

/// A fixed version table, for tests and simulations.
impl ApiVersionLookup for std::collections::HashMap<kafka_protocol::messages::ApiKey, i16> {
    fn version(&self, api: kafka_protocol::messages::ApiKey) -> Option<i16> {
        self.get(&api).copied()
    }
}
