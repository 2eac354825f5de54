//! The independent client's read side (rdkafka), shared by the end-to-end tests, the examples
//! and the end-to-end bench: a consumer of a whole topic from its beginning, and a group's
//! committed offsets as the broker reports them (OffsetFetch).

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

/// A consumer (group `group`, no commits) assigned partitions `0..partitions` of `topic` from
/// the beginning. `settings` are extra rdkafka settings (e.g. `fetch.wait.max.ms`).
pub fn from_beginning(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
    settings: &[(&str, &str)],
) -> Result<BaseConsumer, KafkaError> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false");
    for (key, value) in settings {
        config.set(*key, *value);
    }
    let consumer: BaseConsumer = config.create()?;
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    Ok(consumer)
}

/// The offsets `consumer`'s group committed for partitions `0..partitions` of `topic`
/// (`Offset::Invalid` where none).
pub fn committed_offsets(
    consumer: &BaseConsumer,
    topic: &str,
    partitions: i32,
) -> Result<Vec<Offset>, KafkaError> {
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition(topic, p);
    }
    let committed = consumer.committed_offsets(list, Duration::from_secs(10))?;
    Ok((0..partitions)
        .map(|p| {
            committed
                .find_partition(topic, p)
                .map_or(Offset::Invalid, |tp| tp.offset())
        })
        .collect())
}
