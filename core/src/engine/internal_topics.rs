//! Internal topics seen from the engine: the changelog topics of logged stores, created
//! (or verified) before tasks start.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::Engine;
use crate::client::admin::{InternalTopicsEvent, TopicSpec, changelog_topic};
use crate::topology::Topology;

/// Each logged store with the sub-topology whose tasks own it and its changelog topic.
pub(super) fn changelogs_of(
    topology: &Topology,
    application_id: &str,
) -> Vec<(usize, String, String)> {
    topology
        .store_names()
        .into_iter()
        .filter(|store| topology.store_is_logged(store) == Some(true))
        .filter_map(|store| {
            let sub = topology
                .subtopologies()
                .iter()
                .find(|s| s.stores.contains(&store))?;
            let topic = changelog_topic(application_id, &store);
            Some((sub.id, store, topic))
        })
        .collect()
}

impl Engine {
    /// Whether every changelog topic exists with the partitions its sub-topology needs.
    pub(super) fn changelogs_ready(&self) -> bool {
        self.changelogs
            .iter()
            .all(|(_, _, topic)| self.internal_topics.is_ready(topic))
    }

    /// Asks for the changelog topics whose sub-topology's source partition counts are known,
    /// feeds metadata's partition counts to the topics being verified, and handles the
    /// component's events.
    pub(super) fn drive_internal_topics(&mut self) -> bool {
        let mut progress = false;
        let mut specs = Vec::new();
        for (sub, store, topic) in &self.changelogs {
            // Asked for already.
            if self.internal_topics.specs().any(|s| &s.name == topic) {
                continue;
            }
            let subtopology = self
                .topology
                .subtopologies()
                .iter()
                .find(|s| s.id == *sub)
                .expect("changelogs_of took the sub-topology from this topology");
            // As many partitions as the sub-topology has tasks.
            let counts: Option<Vec<i32>> = subtopology
                .source_topics
                .iter()
                .map(|t| self.metadata.partition_count(t))
                .collect();
            if let Some(partitions) = counts.and_then(|c| c.into_iter().max()) {
                specs.push(TopicSpec::changelog(
                    &self.config.application_id,
                    store,
                    partitions,
                ));
            }
        }
        if !specs.is_empty() {
            self.internal_topics.ensure(specs);
            progress = true;
        }
        let verifying: Vec<String> = self
            .internal_topics
            .verifying()
            .map(str::to_owned)
            .collect();
        for topic in verifying {
            if let Some(n) = self.metadata.partition_count(&topic) {
                self.internal_topics.partition_count_known(&topic, n);
                progress = true;
            }
        }
        while let Some(event) = self.internal_topics.poll_event() {
            progress = true;
            match event {
                InternalTopicsEvent::Ready { topic, created } => {
                    tracing::info!(%topic, created, "changelog topic ready");
                    self.add_metadata_topic(topic);
                }
                InternalTopicsEvent::VerificationNeeded { topic } => {
                    self.look_up_topic(topic);
                }
                InternalTopicsEvent::MetadataRefreshNeeded { reason } => {
                    self.metadata.request_refresh(&reason);
                }
                InternalTopicsEvent::Error(error) => {
                    self.fail(error.into());
                    return true;
                }
            }
        }
        progress
    }

    /// Has metadata look `topic` up with a new request, so that its answer (partition count, or
    /// `UnknownTopic`) reaches the internal topics component as news: a topic metadata already
    /// holds as failed (e.g. reported missing before) is forgotten and asked again, since a
    /// failure it already reported is not reported again.
    fn look_up_topic(&mut self, topic: String) {
        if self.metadata.topic_error(&topic).is_some() {
            let others: BTreeSet<Arc<str>> = self
                .metadata
                .topics()
                .filter(|t| ***t != *topic)
                .cloned()
                .collect();
            self.metadata.set_topics(others);
        }
        self.metadata
            .request_refresh(&format!("partition count of internal topic {topic}"));
        self.add_metadata_topic(topic);
    }

    /// Adds `topic` to the metadata topics of interest (only once it exists, or to check
    /// whether it exists when it cannot be created: Metadata v1–3 would let a broker
    /// auto-create it with the wrong settings).
    fn add_metadata_topic(&mut self, topic: String) {
        let mut topics: BTreeSet<Arc<str>> = self.metadata.topics().cloned().collect();
        if topics.insert(topic.into()) {
            self.metadata.set_topics(topics);
        }
    }
}
