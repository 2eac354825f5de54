//! The client components seen from the engine: their requests go to the router, what the
//! router routed comes back to them, and their events become engine actions.

use kafka_protocol::messages::{ApiKey, ResponseKind};

use super::fencing;
use super::shared::{Component, Routed};
use super::{Engine, EngineError};
use crate::client::fetcher::{FetchError, FetchEvent};
use crate::client::metadata::{MetadataError, MetadataEvent};
use crate::client::producer::{DeliveryError, ProducerEvent, TransactionError};
use crate::client::{BrokerId, Target};
use crate::record::TopicPartition;

/// The order components are asked for requests.
const POLL_ORDER: [Component; 5] = [
    Component::Metadata,
    Component::Group,
    Component::Fetcher,
    Component::Producer,
    Component::InternalTopics,
];

impl Engine {
    /// Hands the components' new requests to the router (opening a general connection first
    /// when none is open: nothing can be built before a broker told us its versions).
    pub(super) fn poll_components(&mut self) -> bool {
        let mut progress = self.router.ensure_general_connection();
        if !self.router.any_ready() {
            return progress;
        }
        self.internal_topics
            .set_controller(self.metadata.controller());
        let now = self.now;
        for component in POLL_ORDER {
            loop {
                let versions = self.router.versions();
                let request = match component {
                    Component::Metadata => self.metadata.poll_request(now, &versions),
                    Component::Group => self.group.poll_request(now, &versions),
                    Component::Fetcher => self.fetcher.poll_request(now, &versions),
                    Component::Producer => self.producer.poll_request(now, &versions),
                    Component::InternalTopics => self.internal_topics.poll_request(now, &versions),
                };
                let Some(request) = request else {
                    break;
                };
                self.router.send(component, request, self.now);
                progress = true;
            }
        }
        progress
    }

    /// Hands what the router routed to the components.
    pub(super) fn dispatch_routed(&mut self) -> bool {
        let mut progress = false;
        while let Some(routed) = self.router.poll_routed() {
            progress = true;
            match routed {
                Routed::Response {
                    component,
                    broker,
                    response,
                } => self.route_response(component, broker, response),
                Routed::Failed {
                    component,
                    target,
                    api,
                } => self.request_failed(component, target, api),
                Routed::Lost { broker } => {
                    if self.group.coordinator() == Some(broker) || broker < 0 {
                        self.metadata.request_refresh("broker connection lost");
                    }
                }
                Routed::Warning(error) => self.warn(error),
                Routed::Fatal(error) => {
                    self.fail(error);
                    return true;
                }
            }
        }
        progress
    }

    fn route_response(&mut self, component: Component, from: BrokerId, kind: ResponseKind) {
        let now = self.now;
        let result = match component {
            Component::Metadata => self
                .metadata
                .handle_response(from, kind, now)
                .map_err(EngineError::from),
            Component::Fetcher => self
                .fetcher
                .handle_response(from, kind, now)
                .map_err(EngineError::from),
            Component::Group => self
                .group
                .handle_response(from, kind, now)
                .map_err(EngineError::from),
            Component::Producer => self
                .producer
                .handle_response(from, kind, now)
                .map_err(EngineError::ProducerResponse),
            Component::InternalTopics => self
                .internal_topics
                .handle_response(from, kind, now)
                .map_err(EngineError::from),
        };
        if let Err(error) = result {
            self.warn(error);
        }
    }

    fn request_failed(&mut self, component: Component, target: Target, api: ApiKey) {
        let now = self.now;
        match component {
            Component::Metadata => self.metadata.handle_request_failed(target, api, now),
            Component::Fetcher => self.fetcher.handle_request_failed(target, api, now),
            Component::Group => self.group.handle_request_failed(target, api, now),
            Component::Producer => self.producer.handle_request_failed(target, api, now),
            Component::InternalTopics => {
                self.internal_topics.handle_request_failed(target, api, now)
            }
        }
    }

    pub(super) fn handle_component_events(&mut self) -> bool {
        let mut progress = self.sync_metadata();
        progress |= self.drive_internal_topics();
        if self.stopped() {
            return true;
        }
        if self.leave_after_transaction && !self.transaction_open() && !self.transaction_ending() {
            // A closing engine whose tasks were lost: it ended its transaction, now it leaves
            // (an assignment the member rejoined for meanwhile is not started).
            self.leave_after_transaction = false;
            self.pending_assignment = None;
            self.group.leave(self.now);
            progress = true;
        }
        progress |= self.resume_assignment();
        while let Some(event) = self.metadata.poll_event() {
            progress = true;
            match event {
                MetadataEvent::Error(MetadataError::UnknownTopic { topic })
                    if self.subtopology_of.contains_key(&*topic) =>
                {
                    self.fail(EngineError::MissingSourceTopic(topic.to_string()));
                    return true;
                }
                MetadataEvent::Error(MetadataError::UnknownTopic { topic })
                    if self.internal_topics.verifying().any(|t| t == &*topic) =>
                {
                    // Existed when we tried to create it, gone now: create it again.
                    self.internal_topics.topic_missing(&topic, self.now);
                }
                MetadataEvent::Error(MetadataError::UnknownTopic { topic })
                    if self.changelogs.iter().any(|(_, _, t)| *t == *topic) =>
                {
                    // Just created: the broker's metadata cache may lag behind the controller.
                    tracing::debug!(%topic, "new changelog topic not in metadata yet");
                    self.metadata
                        .request_refresh(&format!("new changelog topic {topic}"));
                }
                MetadataEvent::Error(error) => self.warn(error.into()),
                MetadataEvent::PartitionCountChanged {
                    topic,
                    previous,
                    current,
                } => {
                    tracing::info!(%topic, ?previous, current, "partition count changed");
                }
            }
        }
        while let Some(event) = self.fetcher.poll_event() {
            progress = true;
            match event {
                FetchEvent::MetadataRefreshNeeded { reason } => {
                    self.metadata.request_refresh(&reason)
                }
                FetchEvent::PositionReset { partition, offset } => {
                    tracing::debug!(%partition, offset, "position reset");
                }
                FetchEvent::PartitionMaxBytesRaised { partition, .. } => {
                    tracing::debug!(%partition, "raised partition max bytes");
                }
                FetchEvent::Error(FetchError::OffsetOutOfRange { partition, offset })
                    if self.is_restoring(&partition) =>
                {
                    if let Err(error) = self.checkpoint_out_of_range(&partition, offset) {
                        self.fail(error);
                        return true;
                    }
                }
                FetchEvent::Error(FetchError::OffsetOutOfRange { partition, offset })
                    if self.is_standby_changelog(&partition) =>
                {
                    if let Err(error) = self.standby_out_of_range(&partition, offset) {
                        self.fail(error);
                        return true;
                    }
                }
                FetchEvent::Error(error) => match error {
                    FetchError::NoOffset { .. }
                    | FetchError::OffsetOutOfRange { .. }
                    | FetchError::CorruptRecords { .. }
                    | FetchError::BatchTooLarge { .. } => {
                        self.fail(error.into());
                        return true;
                    }
                    other => self.warn(other.into()),
                },
            }
        }
        while let Some(event) = self.producer.poll_event() {
            progress = true;
            match event {
                ProducerEvent::Acked {
                    owner,
                    topic_partition,
                    base_offset,
                    count,
                } => {
                    self.count_produced(owner.task, &topic_partition.topic, count, false);
                    self.changelog_write_acked(topic_partition, base_offset, count)
                }
                ProducerEvent::Failed {
                    error: DeliveryError::Aborted,
                    ..
                } if self.exactly_once() => {
                    // Unsent records of an aborted transaction: they are processed again.
                }
                ProducerEvent::Failed {
                    owner,
                    topic_partition,
                    error,
                    count,
                } if self.exactly_once() && fencing::failed_with_the_producer(&error) => {
                    // The producer's fencing (or fatal error): its event follows and decides.
                    tracing::debug!(task = %owner.task, %topic_partition, %error, "records failed with the producer");
                    self.count_produced(owner.task, &topic_partition.topic, count, true);
                }
                ProducerEvent::Failed {
                    owner,
                    topic_partition,
                    error,
                    count,
                } => {
                    self.count_produced(owner.task, &topic_partition.topic, count, true);
                    self.fail(EngineError::Delivery {
                        task: owner.task,
                        topic_partition,
                        error,
                    });
                    return true;
                }
                ProducerEvent::RefreshMetadata { topic } => {
                    self.metadata
                        .request_refresh(&format!("producer: leader of {topic} moved"));
                }
                ProducerEvent::TransactionCoordinatorFound { id, host, port } => {
                    self.router.set_address(id, host, port);
                }
                ProducerEvent::TransactionCommitted { offsets } => {
                    self.transaction_committed(offsets);
                }
                ProducerEvent::TransactionAborted => self.transaction_aborted(),
                ProducerEvent::GroupCoordinatorMoved => self.group.coordinator_moved(self.now),
                ProducerEvent::TransactionFailed { error } => {
                    self.handle_transaction_failure(error, false);
                }
                ProducerEvent::Fenced { error } => self.handle_transaction_failure(error, true),
                ProducerEvent::TransactionsUnsupported { missing_api } => {
                    self.fail(EngineError::Transaction(TransactionError::Unsupported {
                        missing_api,
                    }));
                }
            }
            if self.stopped() {
                return true;
            }
        }
        while let Some(event) = self.group.poll_event() {
            progress = true;
            self.handle_group_event(event);
            if self.stopped() {
                return true;
            }
        }
        progress
    }

    /// Pushes metadata changes to the components that depend on it.
    fn sync_metadata(&mut self) -> bool {
        let generation = self.metadata.generation();
        if generation == self.metadata_generation || !self.metadata.is_initialized() {
            return false;
        }
        self.metadata_generation = generation;
        for (&id, addr) in self.metadata.brokers() {
            self.router.set_address(id, addr.host.clone(), addr.port);
        }
        self.fetcher.update_leaders(&self.metadata);
        let mut counts = Vec::new();
        for topic in self.metadata.topics().cloned().collect::<Vec<_>>() {
            // Not (yet) known to the brokers: its error is reported by metadata's events.
            let Some(n) = self.metadata.partition_count(&topic) else {
                continue;
            };
            counts.push((topic.to_string(), n));
            self.producer.set_partition_count(topic.clone(), n);
            for p in 0..n {
                let tp = TopicPartition::new(topic.clone(), p);
                let leader = self.metadata.leader(&tp);
                self.producer.update_leader(tp, leader);
            }
        }
        self.group.set_partition_counts(counts);
        true
    }
}
