//! The core's hot path without a network: encoded Fetch responses in → fetcher → task
//! (topology) → producer → encoded Produce requests out, acknowledged by constructed responses.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::init_producer_id_response::InitProducerIdResponse;
use kafka_protocol::messages::metadata_response::{
    MetadataResponse, MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{
    PartitionProduceResponse, ProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchResponse, ProducerId, RequestKind, ResponseKind, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use kstreams_core::client::ApiVersionLookup;
use kstreams_core::client::fetcher::{Fetcher, FetcherConfig};
use kstreams_core::client::metadata::{Metadata, MetadataConfig};
use kstreams_core::client::producer::{
    BatchIdentity, Compression, Producer, ProducerConfig, encode_batch,
};
use kstreams_core::prelude::*;
use kstreams_core::record::{Headers, ProducerRecord, TopicPartition};
use kstreams_core::state::MemoryStoreFactory;
use kstreams_core::task::{Task, TaskId};

const INPUT: &str = "input";
const OUTPUT: &str = "output";
const BROKER: i32 = 1;
const FETCH_VERSION: i16 = 12;

/// Which topology the pipeline runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// Source → sink, forwarded as batches.
    PassthroughBatch,
    /// Source → a processor that only implements `process` → sink.
    PassthroughRecord,
    /// Source → `BatchCountAggregator` → sink.
    CountBatch,
    /// Source → `RecordCountAggregator` → sink.
    CountRecord,
}

/// Forwards record by record (no `process_batch` override).
struct RecordPassthrough;

impl Processor<Bytes, Bytes, Bytes, Bytes> for RecordPassthrough {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, Bytes, Bytes>,
        record: Record<Bytes, Bytes>,
    ) -> Result<(), ProcessError> {
        ctx.forward(record)
    }
}

fn topology(workload: Workload) -> Topology {
    let mut b = TopologyBuilder::new();
    let src = b
        .add_source("src", &[INPUT], BytesSerde, BytesSerde)
        .expect("source");
    match workload {
        Workload::PassthroughBatch => {
            b.add_sink("sink", OUTPUT, &[&src], BytesSerde, BytesSerde)
                .expect("sink");
        }
        Workload::PassthroughRecord => {
            let p = b
                .add_processor("pass", &[&src], || RecordPassthrough)
                .expect("processor");
            b.add_sink("sink", OUTPUT, &[&p], BytesSerde, BytesSerde)
                .expect("sink");
        }
        Workload::CountBatch | Workload::CountRecord => {
            let count = if workload == Workload::CountBatch {
                b.add_processor("count", &[&src], BatchCountAggregator::supplier("counts"))
            } else {
                b.add_processor("count", &[&src], RecordCountAggregator::supplier("counts"))
            }
            .expect("count");
            b.add_store(
                StoreBuilder::key_value("counts", BytesSerde, I64Serde),
                &["count"],
            )
            .expect("store");
            b.add_sink("sink", OUTPUT, &[&count], BytesSerde, I64Serde)
                .expect("sink");
        }
    }
    b.build().expect("topology")
}

fn versions() -> HashMap<ApiKey, i16> {
    HashMap::from([
        (ApiKey::Fetch, FETCH_VERSION),
        (ApiKey::Produce, 9),
        (ApiKey::InitProducerId, 4),
        (ApiKey::Metadata, 12),
        (ApiKey::ListOffsets, 7),
    ])
}

/// Encoded Fetch responses of `partitions` partitions, each round continuing where the last
/// ended: `records_per_partition` records of 100-byte values per partition per round, in
/// record batches of `batch_records`.
pub struct FetchResponses {
    /// Per partition: its batches, encoded once with base offset 0, and each batch's first
    /// record's index within the round.
    batches: Vec<Vec<(usize, Bytes)>>,
    records_per_partition: usize,
    round: usize,
}

impl FetchResponses {
    /// Encodes the batches once.
    pub fn new(partitions: i32, records_per_partition: usize, batch_records: usize) -> Self {
        let value = Bytes::from(vec![b'v'; 100]);
        let batches = (0..partitions)
            .map(|p| {
                let mut out = Vec::new();
                let mut start = 0usize;
                while start < records_per_partition {
                    let n = batch_records.min(records_per_partition - start);
                    let batch: Vec<ProducerRecord> = (0..n)
                        .map(|i| ProducerRecord {
                            topic: Arc::from(INPUT),
                            partition: Some(p),
                            key: Some(Bytes::from(format!("key-{}", (start + i) % 1000))),
                            value: Some(value.clone()),
                            timestamp: 1_700_000_000_000 + (start + i) as i64,
                            headers: Headers::new(),
                        })
                        .collect();
                    let identity = BatchIdentity {
                        producer_id: -1,
                        producer_epoch: -1,
                        base_sequence: -1,
                    };
                    out.push((
                        start,
                        encode_batch(&batch, identity, Compression::None).expect("batch"),
                    ));
                    start += n;
                }
                out
            })
            .collect();
        Self {
            batches,
            records_per_partition,
            round: 0,
        }
    }

    /// The next round's encoded Fetch response.
    pub fn next_response(&mut self) -> Bytes {
        let base = (self.round * self.records_per_partition) as i64;
        self.round += 1;
        let mut topic = FetchableTopicResponse::default()
            .with_topic(TopicName(StrBytes::from_static_str(INPUT)));
        for (p, batches) in self.batches.iter().enumerate() {
            let mut records = BytesMut::new();
            for (start, batch) in batches {
                let at = records.len();
                records.extend_from_slice(batch);
                // The base offset (bytes 0..8) is outside the batch CRC.
                records[at..at + 8].copy_from_slice(&(base + *start as i64).to_be_bytes());
            }
            topic.partitions.push(
                PartitionData::default()
                    .with_partition_index(p as i32)
                    .with_high_watermark(base + self.records_per_partition as i64)
                    .with_records(Some(records.freeze())),
            );
        }
        let response = FetchResponse::default().with_responses(vec![topic]);
        let mut buf = BytesMut::new();
        response
            .encode(&mut buf, FETCH_VERSION)
            .expect("encode fetch response");
        buf.freeze()
    }
}

/// Fetcher, one task per partition and a producer, wired as the engine wires them.
pub struct Pipeline {
    fetcher: Fetcher,
    tasks: Vec<Task>,
    producer: Producer<TaskId>,
    versions: HashMap<ApiKey, i16>,
    now: Instant,
    /// Encoded Produce request bytes, to keep the encoding from being optimised away.
    pub produced_bytes: usize,
    /// Records handed to the producer.
    pub produced_records: usize,
}

impl Pipeline {
    /// A pipeline for `partitions` partitions of the input topic running `workload`.
    pub fn new(workload: Workload, partitions: i32, max_batch_records: usize) -> Self {
        let now = Instant::from_millis(1_700_000_000_000);
        let versions = versions();
        let topology = topology(workload);
        let mut metadata =
            Metadata::new(MetadataConfig::default(), [("bench".to_owned(), 9092)], now);
        metadata.set_topics([INPUT, OUTPUT]);
        let _request = metadata
            .poll_request(now, &versions)
            .expect("metadata request");
        let topics = [INPUT, OUTPUT]
            .iter()
            .map(|t| {
                MetadataResponseTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_static_str(t))))
                    .with_partitions(
                        (0..partitions)
                            .map(|p| {
                                MetadataResponsePartition::default()
                                    .with_partition_index(p)
                                    .with_leader_id(BrokerId(BROKER))
                            })
                            .collect(),
                    )
            })
            .collect();
        let response = MetadataResponse::default()
            .with_brokers(vec![
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(BROKER))
                    .with_host(StrBytes::from_static_str("bench"))
                    .with_port(9092),
            ])
            .with_topics(topics);
        metadata
            .handle_metadata_response(-1, response, now)
            .expect("metadata");

        let mut fetcher = Fetcher::new(FetcherConfig::default());
        for p in 0..partitions {
            fetcher.assign(TopicPartition::new(INPUT, p), Some(0));
        }
        fetcher.update_leaders(&metadata);

        let config = TaskConfig {
            max_batch_records,
            ..TaskConfig::default()
        };
        let counts = HashMap::from([(OUTPUT.to_owned(), partitions)]);
        let tasks = (0..partitions)
            .map(|p| {
                Task::new(
                    &topology,
                    TaskId {
                        subtopology: 0,
                        partition: p,
                    },
                    &MemoryStoreFactory,
                    config.clone(),
                    counts.clone(),
                    now,
                )
                .expect("task")
            })
            .collect();

        let mut producer = Producer::new(
            ProducerConfig {
                linger: Duration::ZERO,
                batch_size: 1 << 20,
                ..ProducerConfig::default()
            },
            now,
        );
        producer.set_partition_count(OUTPUT, partitions);
        for p in 0..partitions {
            producer.update_leader(TopicPartition::new(OUTPUT, p), Some(BROKER));
        }
        let init = producer
            .poll_request(now, &versions)
            .expect("init producer id");
        assert!(matches!(init.request, RequestKind::InitProducerId(_)));
        let response = InitProducerIdResponse::default()
            .with_producer_id(ProducerId(1))
            .with_producer_epoch(0);
        producer
            .handle_response(BROKER, ResponseKind::InitProducerId(response), now)
            .expect("init");

        Self {
            fetcher,
            tasks,
            producer,
            versions,
            now,
            produced_bytes: 0,
            produced_records: 0,
        }
    }

    /// Runs one encoded Fetch response through: decode, process, produce, encode the Produce
    /// requests and acknowledge them. Returns the records produced.
    pub fn run(&mut self, fetch_response: &Bytes) -> usize {
        let request = self
            .fetcher
            .poll_request(self.now, &self.versions)
            .expect("fetch request");
        assert!(matches!(request.request, RequestKind::Fetch(_)));
        let mut body = fetch_response.clone();
        let response =
            ResponseKind::decode(ApiKey::Fetch, &mut body, FETCH_VERSION).expect("decode fetch");
        self.fetcher
            .handle_response(BROKER, response, self.now)
            .expect("fetch response");
        let mut produced = 0;
        while let Some(batch) = self.fetcher.poll_records() {
            let task = &mut self.tasks[batch.partition.partition as usize];
            task.add_records(&batch.partition, batch.records)
                .expect("records in offset order");
            task.process_all().expect("process");
            let output = task.take_output();
            produced += output.len();
            self.producer
                .send_batch(task.id(), output, self.now)
                .expect("send");
        }
        self.producer.flush();
        let version = self.versions.version(ApiKey::Produce).unwrap_or(9);
        while let Some(out) = self.producer.poll_request(self.now, &self.versions) {
            let RequestKind::Produce(request) = &out.request else {
                continue;
            };
            let mut buf = BytesMut::new();
            request.encode(&mut buf, version).expect("encode produce");
            self.produced_bytes += buf.len();
            let responses = request
                .topic_data
                .iter()
                .map(|t| {
                    TopicProduceResponse::default()
                        .with_name(t.name.clone())
                        .with_partition_responses(
                            t.partition_data
                                .iter()
                                .map(|p| {
                                    PartitionProduceResponse::default()
                                        .with_index(p.index)
                                        .with_base_offset(0)
                                })
                                .collect(),
                        )
                })
                .collect();
            let response = ProduceResponse::default().with_responses(responses);
            self.producer
                .handle_response(BROKER, ResponseKind::Produce(response), self.now)
                .expect("produce response");
        }
        while self.producer.poll_event().is_some() {}
        self.produced_records += produced;
        produced
    }
}
