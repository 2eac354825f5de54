//! [`EngineError`]: everything an engine reports as a warning or as the reason it stopped.

use kafka_protocol::messages::ApiKey;

use crate::client::BrokerId;
use crate::client::admin::InternalTopicsError;
use crate::client::fetcher::FetchError;
use crate::client::group::{AssignError, CommitError, GroupError, OffsetFetchError};
use crate::client::metadata::MetadataError;
use crate::client::producer::{DeliveryError, ProducerError, TransactionError};
use crate::error::TaskError;
use crate::record::TopicPartition;
use crate::task::TaskId;
use crate::time::Duration;
use crate::wire::connection::ConnectionError;
use crate::wire::framing::FrameError;
use crate::wire::sasl::{SaslError, SaslMechanism};

/// Errors an engine reports.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The configuration cannot work.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A topic the topology reads does not exist.
    #[error("source topic `{0}` does not exist")]
    MissingSourceTopic(String),
    /// Topics the topology writes were still unknown to the brokers after
    /// [`EngineConfig::max_block`](crate::engine::EngineConfig::max_block) (Kafka's producer
    /// fails the same way after `max.block.ms`); the assigned tasks never started.
    #[error("sink topics {} unknown to the brokers after {waited}", topics.join(", "))]
    MissingSinkTopics {
        /// The topics.
        topics: Vec<String>,
        /// How long the engine waited for them.
        waited: Duration,
    },
    /// A task failed (processing or deserialization error under the `Fail` policy, store error).
    #[error(transparent)]
    Task(#[from] TaskError),
    /// Exactly-once: the transaction failed (a warning: it is aborted and the tasks start
    /// again from the committed offsets), the producer was fenced (a warning: the tasks are
    /// re-created from the committed offsets under a new epoch; the engine stops only when
    /// fenced again and again, by a twin with the same transactional id) or the producer
    /// cannot go on (not authorized, brokers without transactions: the engine stops).
    #[error("transaction: {0}")]
    Transaction(TransactionError),
    /// A changelog holds what cannot be restored (a record without a key).
    #[error("task {task}: changelog {changelog} of store `{store}` at offset {offset}: {detail}")]
    CorruptChangelog {
        /// The task restoring.
        task: TaskId,
        /// The store.
        store: String,
        /// The changelog partition.
        changelog: TopicPartition,
        /// The offending record's offset.
        offset: i64,
        /// What is wrong.
        detail: String,
    },
    /// Output of a task could not be delivered.
    #[error("task {task}: delivery to {topic_partition} failed: {error}")]
    Delivery {
        /// The task whose output failed.
        task: TaskId,
        /// Where it was going.
        topic_partition: TopicPartition,
        /// Why.
        error: DeliveryError,
    },
    /// The producer refused output.
    #[error("task {task}: {error}")]
    Producer {
        /// The task.
        task: TaskId,
        /// Why.
        error: ProducerError,
    },
    /// A broker lacks an API (or every version of one) the engine needs.
    #[error("broker {broker} cannot serve kstreams: {error}")]
    UnsupportedBroker {
        /// The broker.
        broker: BrokerId,
        /// What negotiation found.
        error: crate::wire::versions::NegotiationError,
    },
    /// Committed offsets could not be fetched (retried).
    #[error("fetching committed offsets failed: {0}")]
    OffsetFetch(OffsetFetchError),
    /// As group leader, the assignor failed; members got empty assignments.
    #[error("assignment failed: {0}")]
    Assignment(AssignError),
    /// The producer could not use a broker's answer.
    #[error("producer: {0}")]
    ProducerResponse(ProducerError),
    /// Group membership failed.
    #[error(transparent)]
    Group(#[from] GroupError),
    /// A commit was not accepted; the offsets stay uncommitted.
    #[error("commit failed: {0}")]
    Commit(CommitError),
    /// Fetching failed.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// Metadata could not be had.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// An internal (changelog) topic could not be created, or exists with other partitions.
    #[error(transparent)]
    InternalTopic(#[from] InternalTopicsError),
    /// SASL authentication with a broker failed (wrong credentials, a mechanism the broker
    /// does not enable, a bad server signature, ...). Fatal: the engine stops and never
    /// retries the same credentials in a reconnect loop.
    #[error("broker {broker}: SASL {mechanism} authentication: {reason}")]
    Authentication {
        /// The broker's `host:port`.
        broker: String,
        /// The mechanism.
        mechanism: SaslMechanism,
        /// Why.
        reason: SaslError,
    },
    /// A broker connection broke.
    #[error("broker {broker}: {error}")]
    Connection {
        /// The broker.
        broker: BrokerId,
        /// Why.
        error: ConnectionError,
    },
    /// A broker sent bytes that are not a Kafka frame.
    #[error("broker {broker}: {error}")]
    Frame {
        /// The broker.
        broker: BrokerId,
        /// Why.
        error: FrameError,
    },
    /// A connection closed while requests on it were unanswered (they are retried).
    #[error("broker {broker}: connection lost with {unanswered:?} unanswered")]
    Disconnected {
        /// The broker (node id).
        broker: BrokerId,
        /// The APIs of the unanswered requests.
        unanswered: Vec<ApiKey>,
    },
    /// Opening a connection failed (refused, unreachable, name not resolved, connect timeout);
    /// reported at the 1st, 2nd, 4th, 8th, … failure in a row. The engine keeps retrying.
    #[error("broker {broker}: cannot connect to {host}:{port} ({attempts} attempts in a row)")]
    ConnectFailed {
        /// The broker (node id; negative for a bootstrap server).
        broker: BrokerId,
        /// The host dialled.
        host: String,
        /// The port dialled.
        port: i32,
        /// Failed attempts in a row so far.
        attempts: u32,
    },
    /// A request got no answer within the request timeout.
    #[error("broker {broker}: {api:?} request timed out")]
    RequestTimeout {
        /// The broker.
        broker: BrokerId,
        /// The API.
        api: ApiKey,
    },
    /// A broker failed a flexible version of an API (an undecodable answer, or the
    /// connection dropped right after the request, twice): from now on these APIs use their
    /// last non-flexible versions with that broker. Reported once per broker and API family.
    #[error(
        "broker {broker} cannot take {api:?} v{version}; using {} with it from now on",
        caps.iter().map(|(api, v)| format!("{api:?} v{v}")).collect::<Vec<_>>().join(", ")
    )]
    VersionFallback {
        /// The broker.
        broker: BrokerId,
        /// The API that failed.
        api: ApiKey,
        /// The version that failed.
        version: i16,
        /// The new caps (the failing API and those that fall back with it).
        caps: Vec<(ApiKey, i16)>,
    },
    /// A broker answered an API, at a version with no older one to fall back to, with bodies
    /// that cannot be decoded, again and again.
    #[error(
        "broker {broker} answered {api:?} v{version} with {failures} undecodable bodies in a \
         row; it cannot serve kstreams"
    )]
    BrokerApiUnusable {
        /// The broker.
        broker: BrokerId,
        /// The API.
        api: ApiKey,
        /// The version that failed.
        version: i16,
        /// Failures in a row.
        failures: u32,
    },
}

impl EngineError {
    /// Whether a task's store could not be opened because another backend has it open (another
    /// stream thread of the process still runs the task or a standby of it): not a failure,
    /// the engine tries again on a later poll.
    pub(super) fn is_store_in_use(&self) -> bool {
        matches!(
            self,
            Self::Task(TaskError::Store {
                source: crate::state::StoreError::InUse { .. },
                ..
            })
        )
    }
}
