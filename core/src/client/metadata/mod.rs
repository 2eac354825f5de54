//! Cluster metadata: the brokers (id → host:port) and, for each topic of interest, its
//! partitions with their leader and leader epoch.
//!
//! [`Metadata`] is a sans-IO component (see [`crate::client`]): it asks for a Metadata request
//! through [`Metadata::poll_request`] and learns from the responses handed to
//! [`Metadata::handle_response`].
//!
//! # What is asked
//! Only the topics of interest set by the engine with [`Metadata::set_topics`] (source, sink and
//! internal topics), never "all topics". With no topic of interest the request lists none and
//! the broker answers with its brokers only.
//!
//! # When a request is sent
//! - at start (the broker list is needed before anything else), and when a topic of interest
//!   is added that is not known yet;
//! - when [`Metadata::request_refresh`] was called (a fetcher or producer saw a stale leader),
//!   or a response showed a partition without leader (`LEADER_NOT_AVAILABLE`, leader `-1`): a
//!   *quick refresh*, sent no sooner than [`MetadataConfig::refresh_backoff`] after the
//!   previous successful one;
//! - when [`MetadataConfig::max_age`] has passed since the last successful response.
//!
//! At most one request is in flight. After a failure ([`Metadata::handle_request_failed`]) the
//! next attempt waits an exponential backoff from [`MetadataConfig::retry_backoff`] up to
//! [`MetadataConfig::retry_backoff_max`] (no jitter: the component has no randomness
//! source, and one client sends one metadata request at a time; the engine jitters its
//! reconnects).
//!
//! Timed work happens inside [`Metadata::poll_request`]; [`Metadata::poll_timeout`] says when
//! to call it next.
//!
//! # Bootstrap brokers
//! Before the first response, the bootstrap addresses are the known brokers, under the
//! negative ids `-1, -2, …` (as the Java client does). The first response replaces the whole
//! broker list with the cluster's real brokers.
//!
//! # Versions
//! Requests are built for any version from [`METADATA_MIN_VERSION`] (1; version 0 reads an empty
//! topic list as "all topics") to [`METADATA_MAX_VERSION`] (12). Topic ids (v10+) are ignored:
//! topics are keyed by name. Versions 1–3 cannot turn off automatic topic creation, so a broker
//! configured with `auto.create.topics.enable` may create a missing topic on such a request;
//! from version 4 on the request asks it not to.
//!
//! # Changes
//! [`Metadata::generation`] increases whenever the broker list or a topic's partitions, leaders
//! or leader epochs change; other components (the fetcher, the producer) compare it with the
//! generation they last saw. Per-topic problems become [`MetadataEvent`]s.

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    ApiKey, MetadataRequest, MetadataResponse, RequestKind, ResponseKind, TopicName,
    metadata_request::MetadataRequestTopic,
};
use kafka_protocol::protocol::StrBytes;

use super::{ApiVersionLookup, BrokerId, Outbound, Target};
use crate::record::TopicPartition;
use crate::time::{Duration, Instant};

/// Lowest Metadata version this component builds requests for.
pub const METADATA_MIN_VERSION: i16 = 1;
/// Highest Metadata version this component builds requests for.
pub const METADATA_MAX_VERSION: i16 = 12;

/// Timing of metadata refreshes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataConfig {
    /// Refresh at least this often even when nothing asked for it (Kafka's
    /// `metadata.max.age.ms`). Default 5 minutes.
    pub max_age: Duration,
    /// Smallest gap between a successful response and the next requested refresh, so that many
    /// refresh requests in a row cost one request (the Java client uses its `retry.backoff.ms`
    /// here). Default 100 ms.
    pub refresh_backoff: Duration,
    /// Wait after the first failed request; doubled after each further failure in a row
    /// (Kafka's `retry.backoff.ms`). Default 100 ms.
    pub retry_backoff: Duration,
    /// Largest wait after failures (Kafka's `retry.backoff.max.ms`). Default 1 s.
    pub retry_backoff_max: Duration,
}

impl Default for MetadataConfig {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(300),
            refresh_backoff: Duration::from_millis(100),
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(1),
        }
    }
}

/// Where a broker listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BrokerAddress {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: i32,
    /// The broker's rack, when it has one (Metadata v1+).
    pub rack: Option<String>,
}

/// What is known of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionInfo {
    /// The leader, or `None` while the partition has none (leader election, offline).
    pub leader: Option<BrokerId>,
    /// The leader epoch (Metadata v7+), `None` when the broker did not say.
    pub leader_epoch: Option<i32>,
}

/// A problem the metadata component reports, in an event or as the error of a method.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// The cluster does not have this topic (`UNKNOWN_TOPIC_OR_PARTITION`). For a source topic
    /// this is the "missing source topic" error.
    #[error("topic `{topic}` does not exist (UNKNOWN_TOPIC_OR_PARTITION)")]
    UnknownTopic {
        /// The topic.
        topic: Arc<str>,
    },
    /// The broker reported another error for this topic (e.g. `TOPIC_AUTHORIZATION_FAILED`).
    #[error("metadata for topic `{topic}` failed: {error}")]
    Topic {
        /// The topic.
        topic: Arc<str>,
        /// The broker's error.
        error: ResponseError,
    },
    /// The engine offers no Metadata version in the range this component builds.
    #[error(
        "no usable Metadata version: the engine offers {version:?}, this client builds {METADATA_MIN_VERSION}..={METADATA_MAX_VERSION}"
    )]
    UnsupportedVersion {
        /// The version the engine offered.
        version: Option<i16>,
    },
    /// A response to something this component did not ask for.
    #[error("unexpected response ({api:?}) for the metadata component")]
    UnexpectedResponse {
        /// The API of the response, for the APIs the client uses.
        api: Option<ApiKey>,
    },
    /// A Metadata response arrived while no request was in flight.
    #[error("Metadata response with no request in flight")]
    NotInFlight,
}

/// Something the engine should act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataEvent {
    /// A topic of interest failed; reported when a topic enters that state, not on every
    /// refresh. [`MetadataError::UnknownTopic`] means the topic does not exist.
    Error(MetadataError),
    /// A known topic now has another number of partitions.
    PartitionCountChanged {
        /// The topic.
        topic: Arc<str>,
        /// Partitions before.
        previous: i32,
        /// Partitions now.
        current: i32,
    },
}

/// What is known of one topic of interest.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TopicState {
    /// No answer yet.
    Pending,
    /// Partitions by index.
    Known(BTreeMap<i32, PartitionInfo>),
    /// The topic failed (reported once as an event).
    Failed(MetadataError),
}

/// The metadata component. See the module documentation.
#[derive(Debug)]
pub struct Metadata {
    config: MetadataConfig,
    brokers: BTreeMap<BrokerId, BrokerAddress>,
    topics: BTreeMap<Arc<str>, TopicState>,
    /// Topic ids (Metadata v10+) of the topics of interest, when the broker gave a non-zero one.
    topic_ids: BTreeMap<Arc<str>, [u8; 16]>,
    generation: u64,
    events: VecDeque<MetadataEvent>,
    /// Largest `now` seen.
    now: Instant,
    /// A refresh is wanted (as soon as the backoffs allow).
    refresh_requested: bool,
    /// Why, for the log.
    refresh_reason: String,
    /// When the last successful response arrived.
    last_success_at: Option<Instant>,
    /// No request before this time (backoff after a failure or after a success).
    not_before: Instant,
    /// Failed requests in a row.
    failures: u32,
    in_flight: bool,
    /// The unsupported version already reported, so it is reported once.
    reported_version: Option<Option<i16>>,
    /// The controller named by the last response (Metadata v1+), if it named a known broker.
    controller: Option<BrokerId>,
}

impl Metadata {
    /// A component that knows the bootstrap addresses only (as brokers `-1, -2, …`) and wants
    /// its first refresh now.
    pub fn new(
        config: MetadataConfig,
        bootstrap: impl IntoIterator<Item = (String, i32)>,
        now: Instant,
    ) -> Self {
        let brokers = bootstrap
            .into_iter()
            .zip(1..)
            .map(|((host, port), n)| {
                (
                    -n,
                    BrokerAddress {
                        host,
                        port,
                        rack: None,
                    },
                )
            })
            .collect();
        Self {
            config,
            brokers,
            topics: BTreeMap::new(),
            topic_ids: BTreeMap::new(),
            generation: 0,
            events: VecDeque::new(),
            now,
            refresh_requested: true,
            refresh_reason: "initial metadata".to_owned(),
            last_success_at: None,
            not_before: now,
            failures: 0,
            in_flight: false,
            reported_version: None,
            controller: None,
        }
    }

    /// Sets the topics of interest. A topic not seen before triggers a refresh; a topic no
    /// longer listed is forgotten.
    pub fn set_topics<T: Into<Arc<str>>>(&mut self, topics: impl IntoIterator<Item = T>) {
        let wanted: BTreeSet<Arc<str>> = topics.into_iter().map(Into::into).collect();
        let before = self.topics.len();
        self.topics.retain(|topic, _| wanted.contains(topic));
        if self.topics.len() != before {
            self.generation += 1;
        }
        let mut added = Vec::new();
        for topic in wanted {
            if !self.topics.contains_key(&topic) {
                self.topics.insert(topic.clone(), TopicState::Pending);
                added.push(topic);
            }
        }
        if !added.is_empty() {
            self.request_refresh(&format!("new topics of interest {added:?}"));
        }
    }

    /// The topics of interest.
    pub fn topics(&self) -> impl Iterator<Item = &Arc<str>> + '_ {
        self.topics.keys()
    }

    /// Asks for a refresh as soon as the backoffs allow. `reason` is logged.
    pub fn request_refresh(&mut self, reason: &str) {
        tracing::debug!(reason, "metadata refresh requested");
        if !self.refresh_requested {
            self.refresh_reason = reason.to_owned();
        }
        self.refresh_requested = true;
    }

    /// Increases whenever brokers, partitions, leaders or leader epochs change.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether at least one Metadata response has been applied.
    pub fn is_initialized(&self) -> bool {
        self.last_success_at.is_some()
    }

    /// The leader of a partition of a topic of interest, when it has one.
    pub fn leader(&self, tp: &TopicPartition) -> Option<BrokerId> {
        self.partition(tp).and_then(|info| info.leader)
    }

    /// The leader epoch of a partition, when known (Metadata v7+).
    pub fn leader_epoch(&self, tp: &TopicPartition) -> Option<i32> {
        self.partition(tp).and_then(|info| info.leader_epoch)
    }

    /// What is known of a partition of a topic of interest.
    pub fn partition(&self, tp: &TopicPartition) -> Option<PartitionInfo> {
        match self.topics.get(&tp.topic) {
            Some(TopicState::Known(partitions)) => partitions.get(&tp.partition).copied(),
            _ => None,
        }
    }

    /// The topic's id (Metadata v10+), when a broker gave a non-zero one: it tells a topic
    /// from an earlier one of the same name that was deleted.
    pub fn topic_id(&self, topic: &str) -> Option<[u8; 16]> {
        self.topic_ids.get(topic).copied()
    }

    /// Number of partitions of a known topic of interest.
    pub fn partition_count(&self, topic: &str) -> Option<i32> {
        match self.topics.get(topic) {
            Some(TopicState::Known(partitions)) => i32::try_from(partitions.len()).ok(),
            _ => None,
        }
    }

    /// The error a topic of interest is in, if any (see [`MetadataEvent::Error`]).
    pub fn topic_error(&self, topic: &str) -> Option<&MetadataError> {
        match self.topics.get(topic) {
            Some(TopicState::Failed(error)) => Some(error),
            _ => None,
        }
    }

    /// Where a broker listens (bootstrap brokers have negative ids until the first response).
    pub fn broker_address(&self, id: BrokerId) -> Option<(String, i32)> {
        self.brokers
            .get(&id)
            .map(|broker| (broker.host.clone(), broker.port))
    }

    /// All known brokers, by id.
    pub fn brokers(&self) -> &BTreeMap<BrokerId, BrokerAddress> {
        &self.brokers
    }

    /// The controller the last response named, when it is one of the known brokers. Requests
    /// that pre-KIP-590 (ZooKeeper-mode) brokers serve only on the controller, such as
    /// CreateTopics, go there; a KRaft cluster names some broker that forwards them.
    pub fn controller(&self) -> Option<BrokerId> {
        self.controller
    }

    /// Whether a Metadata request is in flight.
    pub fn is_in_flight(&self) -> bool {
        self.in_flight
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<MetadataEvent> {
        self.events.pop_front()
    }

    /// When [`poll_request`](Self::poll_request) next has something to send: `None` while a
    /// request is in flight (its answer or failure comes first). May be in the past.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.in_flight {
            return None;
        }
        if self.refresh_requested {
            return Some(self.not_before);
        }
        let expiry = self
            .last_success_at
            .map_or(self.now, |at| at + self.config.max_age);
        Some(expiry.max(self.not_before))
    }

    /// The Metadata request to send now, if one is due. Target: any broker.
    pub fn poll_request(
        &mut self,
        now: Instant,
        versions: &dyn ApiVersionLookup,
    ) -> Option<Outbound> {
        self.observe(now);
        if !self.is_due() {
            return None;
        }
        let offered = versions.version(ApiKey::Metadata);
        let version = match offered {
            Some(v) if (METADATA_MIN_VERSION..=METADATA_MAX_VERSION).contains(&v) => v,
            _ => {
                if self.reported_version != Some(offered) {
                    self.reported_version = Some(offered);
                    self.events.push_back(MetadataEvent::Error(
                        MetadataError::UnsupportedVersion { version: offered },
                    ));
                }
                // Try again later, as after a failure: the versions may change on reconnect.
                self.fail(now);
                return None;
            }
        };
        let request = self.build_request(version);
        tracing::debug!(
            version,
            reason = %self.refresh_reason,
            topics = self.topics.len(),
            "sending Metadata request"
        );
        self.in_flight = true;
        self.refresh_requested = false;
        Some(Outbound {
            target: Target::AnyBroker,
            request: RequestKind::Metadata(request),
            version,
        })
    }

    /// The request for the topics of interest, valid at `version` (1..=12).
    fn build_request(&self, version: i16) -> MetadataRequest {
        let mut request = MetadataRequest::default();
        request.topics = Some(
            self.topics
                .keys()
                .map(|topic| {
                    let mut entry = MetadataRequestTopic::default();
                    entry.name = Some(TopicName(StrBytes::from_string(topic.to_string())));
                    entry
                })
                .collect(),
        );
        // Before v4 the field does not exist and the broker behaves as if it were true.
        request.allow_auto_topic_creation = version < 4;
        request
    }

    fn is_due(&self) -> bool {
        if self.in_flight || self.now < self.not_before {
            return false;
        }
        self.refresh_requested
            || self
                .last_success_at
                .is_none_or(|at| self.now >= at + self.config.max_age)
    }

    /// Handles the answer to the request from [`poll_request`](Self::poll_request).
    pub fn handle_response(
        &mut self,
        from: BrokerId,
        response: ResponseKind,
        now: Instant,
    ) -> Result<(), MetadataError> {
        match response {
            ResponseKind::Metadata(response) => self.handle_metadata_response(from, response, now),
            other => Err(MetadataError::UnexpectedResponse {
                api: response_api(&other),
            }),
        }
    }

    /// Handles a Metadata response (see [`handle_response`](Self::handle_response)).
    pub fn handle_metadata_response(
        &mut self,
        from: BrokerId,
        response: MetadataResponse,
        now: Instant,
    ) -> Result<(), MetadataError> {
        self.observe(now);
        if !self.in_flight {
            return Err(MetadataError::NotInFlight);
        }
        self.in_flight = false;
        if response.brokers.is_empty() {
            tracing::warn!(from, "Metadata response lists no broker; retrying");
            self.fail(now);
            return Ok(());
        }
        let mut changed = self.apply_brokers(&response);
        let controller = response.controller_id.0;
        self.controller =
            (controller >= 0 && self.brokers.contains_key(&controller)).then_some(controller);
        for topic in response.topics {
            changed |= self.apply_topic(topic);
        }
        if changed {
            self.generation += 1;
        }
        self.failures = 0;
        self.last_success_at = Some(self.now);
        self.not_before = self.now + self.config.refresh_backoff;
        tracing::debug!(from, generation = self.generation, "Metadata applied");
        Ok(())
    }

    /// The request from [`poll_request`](Self::poll_request) got no answer; it is retried
    /// after a backoff. Other APIs are ignored.
    pub fn handle_request_failed(&mut self, target: Target, api: ApiKey, now: Instant) {
        self.observe(now);
        if api != ApiKey::Metadata || !self.in_flight {
            return;
        }
        tracing::debug!(?target, "Metadata request failed");
        self.in_flight = false;
        self.fail(now);
    }

    fn fail(&mut self, now: Instant) {
        self.observe(now);
        self.failures = self.failures.saturating_add(1);
        self.refresh_requested = true;
        let exponent = self.failures.saturating_sub(1).min(30);
        let backoff = self
            .config
            .retry_backoff
            .saturating_mul(1_u64 << exponent)
            .min(self.config.retry_backoff_max);
        self.not_before = self.now + backoff;
    }

    fn observe(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }

    /// Replaces the broker list; true when it changed.
    fn apply_brokers(&mut self, response: &MetadataResponse) -> bool {
        let brokers: BTreeMap<BrokerId, BrokerAddress> = response
            .brokers
            .iter()
            .map(|broker| {
                (
                    broker.node_id.0,
                    BrokerAddress {
                        host: broker.host.to_string(),
                        port: broker.port,
                        rack: broker.rack.as_ref().map(|rack| rack.to_string()),
                    },
                )
            })
            .collect();
        if brokers == self.brokers {
            return false;
        }
        self.brokers = brokers;
        true
    }

    /// Applies one topic of a response; true when what is known of it changed.
    fn apply_topic(
        &mut self,
        topic: kafka_protocol::messages::metadata_response::MetadataResponseTopic,
    ) -> bool {
        let Some(name) = topic.name.as_ref() else {
            tracing::debug!("Metadata response topic without a name ignored");
            return false;
        };
        let Some((name, state)) = self.topics.get_key_value(name.0.as_str()) else {
            tracing::debug!(topic = %name.0.as_str(), "Metadata for a topic not of interest ignored");
            return false;
        };
        let name = name.clone();
        let previous = state.clone();
        let next = match topic.error_code {
            0 => {
                let id = *topic.topic_id.as_bytes();
                if id != [0; 16] {
                    self.topic_ids.insert(name.clone(), id);
                }
                let partitions = self.partitions_of(&name, &topic.partitions);
                if let TopicState::Known(old) = &previous
                    && old.len() != partitions.len()
                {
                    self.events.push_back(MetadataEvent::PartitionCountChanged {
                        topic: name.clone(),
                        previous: i32::try_from(old.len()).unwrap_or(i32::MAX),
                        current: i32::try_from(partitions.len()).unwrap_or(i32::MAX),
                    });
                }
                TopicState::Known(partitions)
            }
            code => match ResponseError::try_from_code(code) {
                Some(ResponseError::UnknownTopicOrPartition) => {
                    TopicState::Failed(MetadataError::UnknownTopic {
                        topic: name.clone(),
                    })
                }
                Some(error) if error.is_retriable() => {
                    // LEADER_NOT_AVAILABLE while a topic is being created, and the like: keep
                    // what is known and look again soon.
                    self.request_refresh(&format!("topic {name}: {error}"));
                    return false;
                }
                error => TopicState::Failed(MetadataError::Topic {
                    topic: name.clone(),
                    error: error.unwrap_or(ResponseError::Unknown(code)),
                }),
            },
        };
        if let TopicState::Failed(error) = &next
            && previous != next
        {
            tracing::warn!(%error, "topic metadata failed");
            self.events.push_back(MetadataEvent::Error(error.clone()));
        }
        let changed = previous != next;
        self.topics.insert(name, next);
        changed
    }

    /// The partitions of a topic from a response; schedules a quick refresh when one has no
    /// (known) leader.
    fn partitions_of(
        &mut self,
        topic: &str,
        partitions: &[kafka_protocol::messages::metadata_response::MetadataResponsePartition],
    ) -> BTreeMap<i32, PartitionInfo> {
        let mut leaderless = Vec::new();
        let out = partitions
            .iter()
            .map(|partition| {
                let leader = partition.leader_id.0;
                let leader = (leader >= 0 && self.brokers.contains_key(&leader)).then_some(leader);
                if leader.is_none() {
                    leaderless.push(partition.partition_index);
                }
                let info = PartitionInfo {
                    leader,
                    leader_epoch: (partition.leader_epoch >= 0).then_some(partition.leader_epoch),
                };
                (partition.partition_index, info)
            })
            .collect();
        if !leaderless.is_empty() {
            self.request_refresh(&format!(
                "topic {topic}: no leader for partitions {leaderless:?}"
            ));
        }
        out
    }
}

/// The API of a response, for error messages: the APIs the client components use, `None` for
/// the others.
pub(crate) fn response_api(response: &ResponseKind) -> Option<ApiKey> {
    Some(match response {
        ResponseKind::Metadata(_) => ApiKey::Metadata,
        ResponseKind::Fetch(_) => ApiKey::Fetch,
        ResponseKind::ListOffsets(_) => ApiKey::ListOffsets,
        ResponseKind::Produce(_) => ApiKey::Produce,
        ResponseKind::FindCoordinator(_) => ApiKey::FindCoordinator,
        ResponseKind::JoinGroup(_) => ApiKey::JoinGroup,
        ResponseKind::SyncGroup(_) => ApiKey::SyncGroup,
        ResponseKind::Heartbeat(_) => ApiKey::Heartbeat,
        ResponseKind::LeaveGroup(_) => ApiKey::LeaveGroup,
        ResponseKind::OffsetCommit(_) => ApiKey::OffsetCommit,
        ResponseKind::OffsetFetch(_) => ApiKey::OffsetFetch,
        ResponseKind::ApiVersions(_) => ApiKey::ApiVersions,
        ResponseKind::InitProducerId(_) => ApiKey::InitProducerId,
        ResponseKind::CreateTopics(_) => ApiKey::CreateTopics,
        ResponseKind::AddPartitionsToTxn(_) => ApiKey::AddPartitionsToTxn,
        ResponseKind::AddOffsetsToTxn(_) => ApiKey::AddOffsetsToTxn,
        ResponseKind::TxnOffsetCommit(_) => ApiKey::TxnOffsetCommit,
        ResponseKind::EndTxn(_) => ApiKey::EndTxn,
        _ => return None,
    })
}
