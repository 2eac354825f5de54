//! Settings of an [`Engine`](super::Engine).

use crate::client::admin::InternalTopicsConfig;
use crate::client::fetcher::{FetcherConfig, OffsetResetPolicy};
use crate::client::group::{GroupConfig, RebalanceProtocol};
use crate::client::metadata::MetadataConfig;
use crate::client::producer::ProducerConfig;
use crate::task::ErrorPolicy;
use crate::time::Duration;
use crate::wire::sasl::SaslConfig;

/// Everything an engine needs to know besides the topology and its stores.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// `host:port` of one or more brokers to bootstrap from.
    pub bootstrap_servers: Vec<String>,
    /// The application id: the consumer group id and the prefix of internal topics.
    pub application_id: String,
    /// `client.id` sent to brokers.
    pub client_id: String,
    /// Group session timeout (Kafka's `session.timeout.ms`).
    pub session_timeout: Duration,
    /// Group heartbeat interval (`heartbeat.interval.ms`).
    pub heartbeat_interval: Duration,
    /// Group rebalance timeout: how long a rebalance may take a member (`max.poll.interval.ms`).
    pub rebalance_timeout: Duration,
    /// The rebalance protocol offered to the group (KIP-429). Cooperative (default, as in
    /// Kafka Streams) offers `"kstreams-cooperative"` first and `"kstreams"` second: tasks
    /// that stay with an instance keep processing through a rebalance, only the tasks that
    /// move are committed and revoked, and a follow-up rebalance hands them over. Eager offers
    /// only `"kstreams"`: every instance revokes every task when a rebalance starts. The
    /// coordinator selects the first protocol every member offers, so a group with a member
    /// offering only eager (an older kstreams, or one configured so) rebalances eagerly.
    pub rebalance_protocol: RebalanceProtocol,
    /// Static membership (KIP-345, Kafka's `group.instance.id`): this engine's member is known
    /// to the coordinator by this id across restarts. An engine closed and started again under
    /// the same id within [`session_timeout`](Self::session_timeout) gets its tasks back with
    /// no rebalance: the closing engine sends no LeaveGroup (unless
    /// [`static_leave_on_close`](Self::static_leave_on_close)), the group keeps its generation
    /// and assignment, and the restarted member receives the same assignment. Its tasks do not
    /// run while it is away; an instance that stays away longer than the session timeout is
    /// removed and its tasks are reassigned. Two running engines with the same id fence each
    /// other: the older one stops with
    /// [`GroupError::FencedInstance`](crate::client::group::GroupError::FencedInstance).
    /// Needs brokers with JoinGroup v5 (Kafka 2.3+), else the engine stops at its first join
    /// with [`GroupError::StaticMembershipUnsupported`](crate::client::group::GroupError::StaticMembershipUnsupported).
    /// At most 249 characters of `[a-zA-Z0-9._-]`, as Kafka requires. Each engine needs its own
    /// id: the adapters' stream threads append `-<thread index>` (as Kafka Streams does).
    /// `None` (default): dynamic membership.
    pub group_instance_id: Option<String>,
    /// Whether a static member ([`group_instance_id`](Self::group_instance_id)) sends
    /// LeaveGroup when it closes, so its tasks move at once instead of after the session
    /// timeout. Default `false` (Kafka Streams' behaviour). Dynamic members always leave.
    pub static_leave_on_close: bool,
    /// Standby replicas per stateful task (`num.standby.replicas`, default 0): other members
    /// (of other processes, see [`process_id`](Self::process_id)) keep a copy of each task's
    /// logged stores warm by following their changelogs, so when the active member fails the
    /// task moves to the most caught-up copy and restores only the changelog's tail. Each
    /// costs one copy of the state and the changelog reads; with too few processes a task
    /// gets fewer. Only tasks with logged stores get standbys.
    pub num_standby_replicas: usize,
    /// How far (changelog records, summed over a task's logged stores) a member's copy of a
    /// task's state may be behind the most caught-up one and still count as caught up
    /// (`acceptable.recovery.lag`, default 10,000, as Kafka Streams): the assignor moves a
    /// stateful task only to a caught-up member, and warms a copy up on the member it wants
    /// the task on before moving it (KIP-441).
    pub acceptable_recovery_lag: i64,
    /// Most warm-up replicas in the whole group at a time (`max.warmup.replicas`, default 2,
    /// as Kafka Streams): copies of a task's state built on the member the assignor wants
    /// to move the task to, while it keeps running where its state is caught up. More move
    /// tasks sooner after a scale-out, at the cost of more changelog reading at once.
    pub max_warmup_replicas: usize,
    /// How long after an assignment with warm-up replicas the group rebalances again to
    /// move the tasks whose warm-ups caught up (`probing.rebalance.interval.ms`, default 10
    /// min, as Kafka Streams).
    pub probing_rebalance_interval: Duration,
    /// The identity of the process this engine runs in, shared by its stream threads
    /// (Kafka Streams' process id): the assignor never puts a standby in the process of its
    /// task's active, nor two standbys of a task in one process. The adapters set it (with
    /// LMDB stores, kept in the state directory, so a restarted instance keeps it). Empty
    /// (default): unknown, every member counts as a process of its own.
    pub process_id: String,
    /// How often processed offsets are committed, after the output is acknowledged
    /// (`commit.interval.ms`).
    pub commit_interval: Duration,
    /// Changelog bytes (keys and values) a restoring store collects before it writes them,
    /// in one transaction with their checkpoint. Bigger is faster on LMDB (every transaction
    /// rewrites each page its scattered keys touch) and holds that much more memory per
    /// restoring store. Default 8 MiB.
    pub restore_batch_bytes: usize,
    /// At-least-once (default) or exactly-once (`processing.guarantee`). Under exactly-once
    /// the producer's transaction timeout is at most
    /// [`EXACTLY_ONCE_TRANSACTION_TIMEOUT`](super::EXACTLY_ONCE_TRANSACTION_TIMEOUT) (10 s),
    /// and the commit interval at most half the transaction timeout (a transaction spans one
    /// commit interval).
    pub processing_guarantee: ProcessingGuarantee,
    /// Fetch settings: min/max bytes, max wait, isolation level, offset reset policy.
    pub fetch: FetcherConfig,
    /// Records per batch handed to processors.
    pub max_batch_records: usize,
    /// A partition whose task holds this many unprocessed records is left out of fetches.
    /// Default 2,000 (Kafka Streams' `buffered.records.per.partition` is 1,000, with its
    /// consumer's fetch buffer on top): enough that the next fetch is on the wire while the
    /// last one is processed. Queued records are views into the fetched responses, so a
    /// deeper queue keeps more whole responses alive: at 10,000 the end-to-end bench peaked
    /// ~50 MiB higher at the same throughput (docs/decisions.md §20).
    pub max_queued_records_per_partition: usize,
    /// A partition whose task holds this many bytes of unprocessed records (keys, values,
    /// headers) is left out of fetches too. Default 32 MiB: with large records the record
    /// bound alone would let a queue hold gigabytes. A queue may overshoot by one fetch
    /// (`fetch.partition_max_bytes`).
    pub max_queued_bytes_per_partition: usize,
    /// Producer settings: linger, batch size, compression, buffer memory, timeouts.
    pub producer: ProducerConfig,
    /// Metadata refresh settings.
    pub metadata: MetadataConfig,
    /// How changelog topics are created (replication factor, retries). Their CreateTopics
    /// `timeout_ms` is capped at half of [`request_timeout`](Self::request_timeout).
    pub internal_topics: InternalTopicsConfig,
    /// Policy for undeserializable records.
    pub deserialization_errors: ErrorPolicy,
    /// Policy for records whose processing fails.
    pub processing_errors: ErrorPolicy,
    /// A request unanswered for this long closes its connection (its requests fail over)
    /// (`request.timeout.ms`).
    pub request_timeout: Duration,
    /// How long an assignment may wait for the brokers to know its sink topics before the
    /// engine fails with `EngineError::MissingSinkTopics` (Kafka's producer `max.block.ms`).
    pub max_block: Duration,
    /// First delay before reconnecting to a broker; doubles up to `reconnect_backoff_max`
    /// (`reconnect.backoff.ms`). Each delay is this backoff scaled by a random factor in
    /// `[0.8, 1.0]` (see [`random_seed`](Self::random_seed)).
    pub reconnect_backoff: Duration,
    /// Largest reconnect delay (`reconnect.backoff.max.ms`; jitter only shortens delays, so
    /// it holds).
    pub reconnect_backoff_max: Duration,
    /// Seeds the engine's only randomness, the reconnect jitter. The engine reads no entropy
    /// itself: the adapters seed it from the OS (time, process id, stream thread index) so
    /// engines spread their reconnects; tests set it to get the same delays every run.
    /// Default 0.
    pub random_seed: u64,
    /// Highest version to use per API, below what we and the broker support (e.g. to avoid a
    /// broker's broken implementation of a version). Fetch, Produce and Metadata are always
    /// capped at 12.
    pub api_version_caps: std::collections::HashMap<kafka_protocol::messages::ApiKey, i16>,
    /// Most batches run per [`Engine::poll_output`](super::Engine::poll_output) call before
    /// network work gets its turn again.
    pub max_batches_per_poll: usize,
    /// SASL authentication of every broker connection (`sasl.mechanism` and its
    /// credentials); `None` (default): none. Failed authentication stops the engine with
    /// [`EngineError::Authentication`](super::EngineError::Authentication).
    pub sasl: Option<SaslConfig>,
}

impl EngineConfig {
    /// Kafka Streams' defaults for `application_id`, bootstrapping from `bootstrap_servers`.
    pub fn new(
        application_id: impl Into<String>,
        bootstrap_servers: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        let application_id = application_id.into();
        Self {
            bootstrap_servers: bootstrap_servers.into_iter().map(Into::into).collect(),
            client_id: format!("{application_id}-kstreams"),
            application_id,
            session_timeout: Duration::from_secs(45),
            heartbeat_interval: Duration::from_secs(3),
            rebalance_timeout: Duration::from_secs(300),
            rebalance_protocol: RebalanceProtocol::Cooperative,
            group_instance_id: None,
            static_leave_on_close: false,
            num_standby_replicas: 0,
            acceptable_recovery_lag: 10_000,
            max_warmup_replicas: 2,
            probing_rebalance_interval: Duration::from_secs(600),
            process_id: String::new(),
            commit_interval: Duration::from_secs(30),
            processing_guarantee: ProcessingGuarantee::AtLeastOnce,
            restore_batch_bytes: 8 * 1024 * 1024,
            fetch: FetcherConfig::default(),
            max_batch_records: 1_000,
            max_queued_records_per_partition: 2_000,
            max_queued_bytes_per_partition: 32 * 1024 * 1024,
            producer: ProducerConfig::default(),
            metadata: MetadataConfig::default(),
            internal_topics: InternalTopicsConfig::default(),
            deserialization_errors: ErrorPolicy::Fail,
            processing_errors: ErrorPolicy::Fail,
            request_timeout: Duration::from_secs(30),
            max_block: Duration::from_secs(60),
            reconnect_backoff: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_secs(1),
            random_seed: 0,
            api_version_caps: std::collections::HashMap::new(),
            max_batches_per_poll: 64,
            sasl: None,
        }
    }

    /// Where a fetched partition with no committed offset starts.
    pub fn with_offset_reset(mut self, policy: OffsetResetPolicy) -> Self {
        self.fetch.offset_reset = policy;
        self
    }

    pub(crate) fn internal_topics_config(&self) -> InternalTopicsConfig {
        let mut config = self.internal_topics.clone();
        let cap = Duration::from_millis(self.request_timeout.as_millis() / 2)
            .max(Duration::from_millis(1));
        config.timeout = config.timeout.min(cap);
        config
    }

    /// The member's settings; `stateful_subtopologies`: those with logged stores (their
    /// tasks get standbys and report offsets).
    pub(crate) fn group_config(&self, stateful_subtopologies: Vec<usize>) -> GroupConfig {
        let mut group = GroupConfig::new(self.application_id.clone());
        group.num_standby_replicas = self.num_standby_replicas;
        group.acceptable_recovery_lag = self.acceptable_recovery_lag;
        group.max_warmup_replicas = self.max_warmup_replicas;
        group.probing_rebalance_interval = self.probing_rebalance_interval;
        group.process_id = self.process_id.clone();
        group.stateful_subtopologies = stateful_subtopologies;
        group.session_timeout = self.session_timeout;
        group.heartbeat_interval = self.heartbeat_interval;
        group.rebalance_timeout = self.rebalance_timeout;
        group.rebalance_protocol = self.rebalance_protocol;
        group.group_instance_id = self.group_instance_id.clone();
        group.static_leave_on_close = self.static_leave_on_close;
        group
    }

    /// `Err` naming the problem when [`group_instance_id`](Self::group_instance_id) is not a
    /// valid Kafka instance id (non-empty, at most 249 characters of `[a-zA-Z0-9._-]`).
    pub(crate) fn check_group_instance_id(&self) -> Result<(), String> {
        let Some(id) = &self.group_instance_id else {
            return Ok(());
        };
        if id.is_empty() {
            return Err("group.instance.id is empty".into());
        }
        if id.len() > 249 {
            return Err(format!(
                "group.instance.id is {} characters long, at most 249 are allowed",
                id.len()
            ));
        }
        if let Some(c) = id
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(format!(
                "group.instance.id `{id}` contains {c:?}; only [a-zA-Z0-9._-] are allowed"
            ));
        }
        Ok(())
    }

    /// The bootstrap servers as (host, port); a malformed entry is an error naming it. An
    /// entry may itself be a comma-separated list, as Kafka's `bootstrap.servers` is.
    pub(crate) fn bootstrap_addresses(&self) -> Result<Vec<(String, i32)>, String> {
        self.bootstrap_servers
            .iter()
            .flat_map(|s| s.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                let (host, port) = s
                    .rsplit_once(':')
                    .ok_or_else(|| format!("bootstrap server `{s}` is not host:port"))?;
                let port = port
                    .parse::<i32>()
                    .map_err(|_| format!("bootstrap server `{s}` has an invalid port"))?;
                Ok((
                    host.trim_start_matches('[')
                        .trim_end_matches(']')
                        .to_owned(),
                    port,
                ))
            })
            .collect()
    }
}

/// What an application promises about its input's effects on output and state
/// (`processing.guarantee`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProcessingGuarantee {
    /// Every input record affects output and state at least once: after a crash or a lost
    /// membership, records processed since the last commit are processed again (output may
    /// repeat, counts may run ahead), never skipped.
    #[default]
    AtLeastOnce,
    /// Kafka's exactly-once v2: output, changelog writes and input offsets of a commit
    /// interval are one Kafka transaction; readers with `read_committed` see each input
    /// record's effects exactly once, and a store never keeps writes of an aborted
    /// transaction. Needs brokers with transactions.
    ExactlyOnce,
}
