//! Creation of the application's internal topics (changelog topics of logged stores) with
//! CreateTopics.
//!
//! [`InternalTopics`] is a sans-IO component (see [`crate::client`]): the engine tells it which
//! topics must exist ([`InternalTopics::ensure`]); it sends CreateTopics requests through
//! [`InternalTopics::poll_request`] and reports through [`InternalTopics::poll_event`] when each
//! topic is ready or why it cannot be.
//!
//! # Outcome per topic
//! - created by our request (error code 0): ready — it has the partitions and configs asked for;
//! - `TOPIC_ALREADY_EXISTS`: it must be checked — [`InternalTopicsEvent::VerificationNeeded`]
//!   asks the engine to look its partition count up in metadata and hand it to
//!   [`InternalTopics::partition_count_known`]; the wanted count makes it ready, another count is
//!   [`InternalTopicsError::PartitionCountMismatch`] (Kafka Streams fails on it too). Its
//!   configs (e.g. `cleanup.policy`) are not checked;
//! - a retriable error (`NOT_CONTROLLER`, `REQUEST_TIMED_OUT`, `THROTTLING_QUOTA_EXCEEDED`, …,
//!   see [`ResponseError::is_retriable`]) and a request that got no answer: sent again after a
//!   backoff; `NOT_CONTROLLER` also asks for a metadata refresh
//!   ([`InternalTopicsEvent::MetadataRefreshNeeded`]) so the next attempt finds the controller;
//! - any other error (`POLICY_VIOLATION`, `TOPIC_AUTHORIZATION_FAILED`,
//!   `INVALID_REPLICATION_FACTOR`, …): [`InternalTopicsError::Topic`], and the topic stays failed.
//!
//! # Brokers without a usable CreateTopics
//! Some brokers do not offer CreateTopics (librdkafka's mock cluster, brokers before Kafka
//! 0.10.1), or only versions outside the range this component builds. Then nothing is sent:
//! every wanted topic goes straight to verification ([`InternalTopicsEvent::VerificationNeeded`]),
//! so a topic that already exists with the wanted partition count is ready
//! (`Ready { created: false }`) and one with another count is
//! [`InternalTopicsError::PartitionCountMismatch`]. A topic metadata reports missing is looked
//! up once more (another `VerificationNeeded`, so a stale broker metadata cache cannot fail
//! it); missing again, it fails with [`InternalTopicsError::UnsupportedVersion`], which names
//! the topic and says how to create it by hand. Such a topic is never created later, even if
//! a broker offering CreateTopics shows up meanwhile.
//!
//! The lookup asks Metadata for a topic that may not exist: with Metadata v1–3 (brokers before
//! Kafka 0.11) a broker configured with `auto.create.topics.enable` may then create it with its
//! own defaults (not compacted); the partition count is still checked, its configs are not.
//!
//! # Where requests go
//! To the controller when [`InternalTopics::set_controller`] named one (brokers before KIP-590,
//! i.e. ZooKeeper-mode clusters, serve CreateTopics only there and answer `NOT_CONTROLLER`
//! elsewhere; a KRaft cluster names some broker that forwards), else to any broker.
//!
//! # Versions and replication factor
//! Requests are built for CreateTopics [`CREATE_TOPICS_MIN_VERSION`] (2, the lowest
//! `kafka-protocol` 0.18 encodes) to [`CREATE_TOPICS_MAX_VERSION`] (7). The replication factor is
//! [`InternalTopicsConfig::replication_factor`], by default `-1`: the broker's
//! `default.replication.factor`, as in Kafka Streams since 3.0. Versions below 4 (brokers before
//! Kafka 2.4) have no "broker default"; there [`InternalTopicsConfig::legacy_replication_factor`]
//! (default 1, Kafka Streams' default before 3.0) is sent instead.
//!
//! # Timing
//! At most one request is in flight, carrying every topic that is due. Timed work (backoffs)
//! happens inside [`InternalTopics::poll_request`]; [`InternalTopics::poll_timeout`] says when
//! to call it next. Backoffs double from [`InternalTopicsConfig::retry_backoff`] up to
//! [`InternalTopicsConfig::retry_backoff_max`], and are at least the broker's throttle time.

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, RequestKind, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::metadata::response_api;
use super::{ApiVersionLookup, BrokerId, Outbound, Target};
use crate::time::{Duration, Instant};

/// Lowest CreateTopics version this component builds requests for.
pub const CREATE_TOPICS_MIN_VERSION: i16 = 2;
/// Highest CreateTopics version this component builds requests for.
pub const CREATE_TOPICS_MAX_VERSION: i16 = 7;
/// First CreateTopics version that accepts replication factor `-1` (broker default).
pub const BROKER_DEFAULT_REPLICATION_MIN_VERSION: i16 = 4;

/// How internal topics are created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InternalTopicsConfig {
    /// Replication factor of created topics; `-1` (the default) is the broker's
    /// `default.replication.factor`, understood from CreateTopics v4 (Kafka 2.4) on.
    pub replication_factor: i16,
    /// Sent instead of a `-1` [`replication_factor`](Self::replication_factor) to brokers that
    /// only speak CreateTopics v2–3. Default 1.
    pub legacy_replication_factor: i16,
    /// How long the broker may take to create the topics, sent as the CreateTopics request's
    /// `timeout_ms` (saturating at `i32::MAX` ms); keep it below the engine's request timeout
    /// (Kafka's admin client sends its `default.api.timeout.ms` budget there). Default 10 s.
    pub timeout: Duration,
    /// Wait before the first retry; doubled after each further failure in a row (Kafka's
    /// `retry.backoff.ms`). Default 100 ms.
    pub retry_backoff: Duration,
    /// Largest wait between retries (Kafka's `retry.backoff.max.ms`). Default 1 s.
    pub retry_backoff_max: Duration,
}

impl Default for InternalTopicsConfig {
    fn default() -> Self {
        Self {
            replication_factor: -1,
            legacy_replication_factor: 1,
            timeout: Duration::from_secs(10),
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(1),
        }
    }
}

/// A topic that must exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// Its name.
    pub name: String,
    /// Its number of partitions.
    pub partitions: i32,
    /// Topic configs set at creation (name → value).
    pub configs: BTreeMap<String, String>,
}

impl TopicSpec {
    /// The changelog topic of `store`: `<application_id>-<store>-changelog`, compacted.
    pub fn changelog(application_id: &str, store: &str, partitions: i32) -> Self {
        Self {
            name: changelog_topic(application_id, store),
            partitions,
            configs: BTreeMap::from([("cleanup.policy".to_owned(), "compact".to_owned())]),
        }
    }
}

/// The name of the changelog topic of `store`: `<application_id>-<store>-changelog`.
pub fn changelog_topic(application_id: &str, store: &str) -> String {
    format!("{application_id}-{store}-changelog")
}

/// Why an internal topic cannot be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InternalTopicsError {
    /// The broker refused to create the topic with a non-retriable error (e.g.
    /// `POLICY_VIOLATION`, `TOPIC_AUTHORIZATION_FAILED`, `INVALID_REPLICATION_FACTOR`).
    #[error("creating internal topic `{topic}` failed: {error}{}", message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Topic {
        /// The topic.
        topic: String,
        /// The broker's error.
        error: ResponseError,
        /// The broker's error message, when it sent one.
        message: Option<String>,
    },
    /// The topic exists with another number of partitions than the application needs.
    #[error("internal topic `{topic}` has {actual} partitions, {expected} are needed")]
    PartitionCountMismatch {
        /// The topic.
        topic: String,
        /// Partitions needed.
        expected: i32,
        /// Partitions it has.
        actual: i32,
    },
    /// The topic does not exist (metadata said so twice) and cannot be created: the brokers
    /// offer no CreateTopics version in the range this component builds. It must be created
    /// by hand, as the message says.
    #[error(
        "internal topic `{topic}` does not exist and cannot be created: the brokers {} (this client builds CreateTopics v{CREATE_TOPICS_MIN_VERSION} to v{CREATE_TOPICS_MAX_VERSION}); create topic `{topic}` with {partitions} partitions{} yourself",
        offered_create_topics(*version),
        configs_note(configs)
    )]
    UnsupportedVersion {
        /// The missing topic.
        topic: String,
        /// Partitions it needs.
        partitions: i32,
        /// Configs it needs (for a changelog: `cleanup.policy=compact`).
        configs: BTreeMap<String, String>,
        /// The CreateTopics version negotiated with the brokers (`None`: they do not offer
        /// CreateTopics).
        version: Option<i16>,
    },
    /// A response to something this component did not ask for.
    #[error("unexpected response ({api:?}) for the internal topics component")]
    UnexpectedResponse {
        /// The API of the response, for the APIs the client uses.
        api: Option<ApiKey>,
    },
    /// A CreateTopics response arrived while no request was in flight.
    #[error("CreateTopics response with no request in flight")]
    NotInFlight,
}

/// Something the engine should act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InternalTopicsEvent {
    /// The topic exists with the wanted partition count.
    Ready {
        /// The topic.
        topic: String,
        /// Whether our request created it (else it existed and its count was verified).
        created: bool,
    },
    /// The topic already existed, or cannot be created (no usable CreateTopics): look up its
    /// partition count in metadata with a fresh request and pass it to
    /// [`InternalTopics::partition_count_known`], or report it missing with
    /// [`InternalTopics::topic_missing`].
    VerificationNeeded {
        /// The topic.
        topic: String,
    },
    /// The controller moved: refresh metadata so [`InternalTopics::set_controller`] learns the
    /// new one.
    MetadataRefreshNeeded {
        /// Why, for the log.
        reason: String,
    },
    /// A topic failed for good (see the variants), or the component cannot send requests.
    Error(InternalTopicsError),
}

/// What the brokers offer instead of a usable CreateTopics, for the error message.
fn offered_create_topics(version: Option<i16>) -> String {
    match version {
        None => "do not offer CreateTopics".to_owned(),
        Some(v) => format!("offer only CreateTopics v{v}"),
    }
}

/// ` (name=value, …)`, or nothing for no configs.
fn configs_note(configs: &BTreeMap<String, String>) -> String {
    if configs.is_empty() {
        return String::new();
    }
    let list: Vec<String> = configs
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    format!(" ({})", list.join(", "))
}

/// Where one wanted topic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// To be sent in the next request.
    Wanted,
    /// In the request in flight.
    InFlight,
    /// Existed before, or cannot be created; waiting for its partition count.
    Verifying,
    /// Exists as wanted.
    Ready,
    /// Failed for good (reported).
    Failed,
}

#[derive(Debug, Clone)]
struct Wanted {
    spec: TopicSpec,
    phase: Phase,
    /// Verified instead of created because CreateTopics is not usable: the negotiated version
    /// (`None`: not offered). `None` for a topic CreateTopics can handle.
    uncreatable: Option<Option<i16>>,
    /// Metadata reported this uncreatable topic missing once; a second report fails it.
    missing_once: bool,
}

/// The internal topics component. See the module documentation.
#[derive(Debug)]
pub struct InternalTopics {
    config: InternalTopicsConfig,
    topics: BTreeMap<String, Wanted>,
    controller: Option<BrokerId>,
    events: VecDeque<InternalTopicsEvent>,
    /// Largest `now` seen.
    now: Instant,
    /// No request before this time (backoff).
    not_before: Instant,
    /// Failed attempts in a row.
    failures: u32,
    /// The request in flight: its target and version.
    in_flight: Option<(Target, i16)>,
    /// The unusable CreateTopics version already logged, so it is logged once.
    reported_version: Option<Option<i16>>,
}

impl InternalTopics {
    /// A component with no topic to create yet.
    pub fn new(config: InternalTopicsConfig, now: Instant) -> Self {
        Self {
            config,
            topics: BTreeMap::new(),
            controller: None,
            events: VecDeque::new(),
            now,
            not_before: now,
            failures: 0,
            in_flight: None,
            reported_version: None,
        }
    }

    /// Adds topics that must exist; a topic already known (by name) keeps its first spec and
    /// state.
    pub fn ensure(&mut self, specs: impl IntoIterator<Item = TopicSpec>) {
        for spec in specs {
            if !self.topics.contains_key(&spec.name) {
                tracing::debug!(topic = %spec.name, partitions = spec.partitions, "internal topic wanted");
                self.topics.insert(
                    spec.name.clone(),
                    Wanted {
                        spec,
                        phase: Phase::Wanted,
                        uncreatable: None,
                        missing_once: false,
                    },
                );
            }
        }
    }

    /// Where requests go: the controller from metadata, or `None` for any broker.
    pub fn set_controller(&mut self, controller: Option<BrokerId>) {
        self.controller = controller;
    }

    /// Whether `topic` was ensured and exists as wanted.
    pub fn is_ready(&self, topic: &str) -> bool {
        self.topics
            .get(topic)
            .is_some_and(|t| t.phase == Phase::Ready)
    }

    /// The topics ensured so far, with their specs.
    pub fn specs(&self) -> impl Iterator<Item = &TopicSpec> + '_ {
        self.topics.values().map(|t| &t.spec)
    }

    /// The topics waiting for [`partition_count_known`](Self::partition_count_known).
    pub fn verifying(&self) -> impl Iterator<Item = &str> + '_ {
        self.topics
            .values()
            .filter(|t| t.phase == Phase::Verifying)
            .map(|t| t.spec.name.as_str())
    }

    /// Metadata says `topic` has `partitions` partitions: a topic being verified becomes ready
    /// or fails with [`InternalTopicsError::PartitionCountMismatch`]. Other topics are ignored.
    pub fn partition_count_known(&mut self, topic: &str, partitions: i32) {
        let Some(wanted) = self.topics.get_mut(topic) else {
            return;
        };
        if wanted.phase != Phase::Verifying {
            return;
        }
        if wanted.spec.partitions == partitions {
            wanted.phase = Phase::Ready;
            tracing::info!(topic, partitions, "internal topic exists as wanted");
            self.events.push_back(InternalTopicsEvent::Ready {
                topic: topic.to_owned(),
                created: false,
            });
        } else {
            wanted.phase = Phase::Failed;
            self.events.push_back(InternalTopicsEvent::Error(
                InternalTopicsError::PartitionCountMismatch {
                    topic: topic.to_owned(),
                    expected: wanted.spec.partitions,
                    actual: partitions,
                },
            ));
        }
    }

    /// A Metadata response newer than the topic's last
    /// [`VerificationNeeded`](InternalTopicsEvent::VerificationNeeded) says `topic` does not
    /// exist. Other topics are ignored. For a topic being verified:
    /// - when CreateTopics is usable, it was deleted since it was found existing: it is created
    ///   again, after a backoff;
    /// - when CreateTopics is not usable, the first report asks for another look
    ///   (`VerificationNeeded` again: the broker's metadata may be stale); the second fails the
    ///   topic with [`InternalTopicsError::UnsupportedVersion`].
    pub fn topic_missing(&mut self, topic: &str, now: Instant) {
        self.observe(now);
        let Some(wanted) = self.topics.get_mut(topic) else {
            return;
        };
        if wanted.phase != Phase::Verifying {
            return;
        }
        match wanted.uncreatable {
            None => {
                wanted.phase = Phase::Wanted;
                self.back_off(Duration::ZERO);
            }
            Some(_) if !wanted.missing_once => {
                wanted.missing_once = true;
                tracing::debug!(topic, "internal topic not in metadata; looking once more");
                self.events
                    .push_back(InternalTopicsEvent::VerificationNeeded {
                        topic: topic.to_owned(),
                    });
            }
            Some(version) => {
                wanted.phase = Phase::Failed;
                self.events.push_back(InternalTopicsEvent::Error(
                    InternalTopicsError::UnsupportedVersion {
                        topic: topic.to_owned(),
                        partitions: wanted.spec.partitions,
                        configs: wanted.spec.configs.clone(),
                        version,
                    },
                ));
            }
        }
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<InternalTopicsEvent> {
        self.events.pop_front()
    }

    /// When [`poll_request`](Self::poll_request) next has something to send: `None` while a
    /// request is in flight or nothing is wanted. May be in the past.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.in_flight.is_some() || !self.has_wanted() {
            return None;
        }
        Some(self.not_before)
    }

    /// The CreateTopics request to send now, if one is due. When `versions` offers no
    /// CreateTopics version this component builds, nothing is sent: the wanted topics go to
    /// verification instead (see the module documentation).
    pub fn poll_request(
        &mut self,
        now: Instant,
        versions: &dyn ApiVersionLookup,
    ) -> Option<Outbound> {
        self.observe(now);
        if self.in_flight.is_some() || self.now < self.not_before || !self.has_wanted() {
            return None;
        }
        let offered = versions.version(ApiKey::CreateTopics);
        let version = match offered {
            Some(v) if (CREATE_TOPICS_MIN_VERSION..=CREATE_TOPICS_MAX_VERSION).contains(&v) => v,
            _ => {
                self.verify_instead_of_creating(offered);
                return None;
            }
        };
        let replication_factor = if self.config.replication_factor == -1
            && version < BROKER_DEFAULT_REPLICATION_MIN_VERSION
        {
            self.config.legacy_replication_factor
        } else {
            self.config.replication_factor
        };
        let mut topics = Vec::new();
        for wanted in self.topics.values_mut() {
            if wanted.phase != Phase::Wanted {
                continue;
            }
            wanted.phase = Phase::InFlight;
            topics.push(creatable(&wanted.spec, replication_factor));
        }
        let target = self.controller.map_or(Target::AnyBroker, Target::Broker);
        tracing::debug!(
            version,
            ?target,
            topics = topics.len(),
            "sending CreateTopics"
        );
        self.in_flight = Some((target, version));
        Some(Outbound {
            target,
            request: RequestKind::CreateTopics(
                CreateTopicsRequest::default()
                    .with_topics(topics)
                    .with_timeout_ms(self.config.timeout.as_millis_i32())
                    .with_validate_only(false),
            ),
            version,
        })
    }

    /// Handles the answer to the request from [`poll_request`](Self::poll_request). Per-topic
    /// outcomes become events; the `Err` is for a response that does not fit.
    pub fn handle_response(
        &mut self,
        from: BrokerId,
        response: ResponseKind,
        now: Instant,
    ) -> Result<(), InternalTopicsError> {
        match response {
            ResponseKind::CreateTopics(response) => {
                self.handle_create_topics_response(from, response, now)
            }
            other => Err(InternalTopicsError::UnexpectedResponse {
                api: response_api(&other),
            }),
        }
    }

    /// Handles a CreateTopics response (see [`handle_response`](Self::handle_response)).
    pub fn handle_create_topics_response(
        &mut self,
        from: BrokerId,
        response: CreateTopicsResponse,
        now: Instant,
    ) -> Result<(), InternalTopicsError> {
        self.observe(now);
        if self.in_flight.take().is_none() {
            return Err(InternalTopicsError::NotInFlight);
        }
        let mut retry = false;
        let mut refresh = None;
        for result in response.topics {
            let name = result.name.0.as_str();
            let Some(wanted) = self.topics.get_mut(name) else {
                tracing::debug!(
                    topic = name,
                    "CreateTopics result for a topic not asked for"
                );
                continue;
            };
            if wanted.phase != Phase::InFlight {
                continue;
            }
            match ResponseError::try_from_code(result.error_code) {
                None => {
                    wanted.phase = Phase::Ready;
                    tracing::info!(from, topic = name, "internal topic created");
                    self.events.push_back(InternalTopicsEvent::Ready {
                        topic: name.to_owned(),
                        created: true,
                    });
                }
                Some(ResponseError::TopicAlreadyExists) => {
                    wanted.phase = Phase::Verifying;
                    self.events
                        .push_back(InternalTopicsEvent::VerificationNeeded {
                            topic: name.to_owned(),
                        });
                }
                Some(error) if error.is_retriable() => {
                    tracing::debug!(from, topic = name, %error, "CreateTopics: retrying");
                    wanted.phase = Phase::Wanted;
                    retry = true;
                    if error == ResponseError::NotController {
                        refresh =
                            Some(format!("CreateTopics: broker {from} is not the controller"));
                    }
                }
                Some(error) => {
                    wanted.phase = Phase::Failed;
                    let message = result.error_message.as_ref().map(|m| m.to_string());
                    self.events
                        .push_back(InternalTopicsEvent::Error(InternalTopicsError::Topic {
                            topic: name.to_owned(),
                            error,
                            message,
                        }));
                }
            }
        }
        // Topics the response left out are asked again.
        for wanted in self.topics.values_mut() {
            if wanted.phase == Phase::InFlight {
                wanted.phase = Phase::Wanted;
                retry = true;
            }
        }
        if let Some(reason) = refresh {
            self.events
                .push_back(InternalTopicsEvent::MetadataRefreshNeeded { reason });
        }
        if retry {
            let throttle = Duration::from_millis_i64(i64::from(response.throttle_time_ms));
            self.back_off(throttle);
        } else {
            self.failures = 0;
            self.not_before = self.now;
        }
        Ok(())
    }

    /// The request from [`poll_request`](Self::poll_request) got no answer; its topics are
    /// asked again after a backoff. Other APIs are ignored.
    pub fn handle_request_failed(&mut self, target: Target, api: ApiKey, now: Instant) {
        self.observe(now);
        if api != ApiKey::CreateTopics || self.in_flight.is_none() {
            return;
        }
        tracing::debug!(?target, "CreateTopics request failed");
        self.in_flight = None;
        for wanted in self.topics.values_mut() {
            if wanted.phase == Phase::InFlight {
                wanted.phase = Phase::Wanted;
            }
        }
        if matches!(target, Target::Broker(_)) {
            self.events
                .push_back(InternalTopicsEvent::MetadataRefreshNeeded {
                    reason: format!("CreateTopics to {target:?} failed"),
                });
        }
        self.back_off(Duration::ZERO);
    }

    /// CreateTopics is not usable (`offered` is the negotiated version): every wanted topic
    /// can only be checked in metadata.
    fn verify_instead_of_creating(&mut self, offered: Option<i16>) {
        if self.reported_version != Some(offered) {
            self.reported_version = Some(offered);
            tracing::warn!(
                version = ?offered,
                min = CREATE_TOPICS_MIN_VERSION,
                max = CREATE_TOPICS_MAX_VERSION,
                "no usable CreateTopics version: internal topics must exist already"
            );
        }
        for wanted in self.topics.values_mut() {
            if wanted.phase != Phase::Wanted {
                continue;
            }
            wanted.phase = Phase::Verifying;
            wanted.uncreatable = Some(offered);
            wanted.missing_once = false;
            self.events
                .push_back(InternalTopicsEvent::VerificationNeeded {
                    topic: wanted.spec.name.clone(),
                });
        }
    }

    fn has_wanted(&self) -> bool {
        self.topics.values().any(|t| t.phase == Phase::Wanted)
    }

    /// Counts a failure and waits the exponential backoff, and at least `at_least`.
    fn back_off(&mut self, at_least: Duration) {
        self.failures = self.failures.saturating_add(1);
        let exponent = self.failures.saturating_sub(1).min(30);
        let backoff = self
            .config
            .retry_backoff
            .saturating_mul(1_u64 << exponent)
            .min(self.config.retry_backoff_max)
            .max(at_least);
        self.not_before = self.now + backoff;
    }

    fn observe(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }
}

/// The request entry for `spec`.
fn creatable(spec: &TopicSpec, replication_factor: i16) -> CreatableTopic {
    CreatableTopic::default()
        .with_name(TopicName(StrBytes::from_string(spec.name.clone())))
        .with_num_partitions(spec.partitions)
        .with_replication_factor(replication_factor)
        .with_configs(
            spec.configs
                .iter()
                .map(|(name, value)| {
                    CreatableTopicConfig::default()
                        .with_name(StrBytes::from_string(name.clone()))
                        .with_value(Some(StrBytes::from_string(value.clone())))
                })
                .collect(),
        )
}
