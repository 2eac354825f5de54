use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::*;
use crate::prelude::*;
use crate::processor::PunctuatorId;
use crate::record::{Headers, RecordMetadata};
use crate::state::MemoryStoreFactory;

fn raw(offset: i64, timestamp: i64, key: &str, value: &str) -> RawRecord {
    RawRecord {
        offset,
        timestamp,
        key: Some(Bytes::copy_from_slice(key.as_bytes())),
        value: Some(Bytes::copy_from_slice(value.as_bytes())),
        headers: Headers::new(),
    }
}

fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

fn task(topology: &Topology, partition: i32, config: TaskConfig) -> Task {
    Task::new(
        topology,
        TaskId {
            subtopology: 0,
            partition,
        },
        &MemoryStoreFactory,
        config,
        HashMap::from([("out".to_owned(), 3)]),
        Instant::from_millis(1_000),
    )
    .unwrap()
}

type Seen = Arc<Mutex<Vec<(String, Vec<i64>)>>>;

/// Records each batch it gets as (topic-partition, offsets) and forwards it.
struct BatchRecorder(Seen);

impl Processor<String, String, String, String> for BatchRecorder {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, String>,
        record: Record<String, String>,
    ) -> Result<(), ProcessError> {
        self.process_batch(ctx, vec![record])
    }

    fn process_batch(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, String>,
        batch: Batch<String, String>,
    ) -> Result<(), ProcessError> {
        let meta = batch[0].metadata.clone().unwrap();
        self.0.lock().unwrap().push((
            format!("{}-{}", meta.topic, meta.partition),
            batch.iter().map(|r| r.offset().unwrap()).collect(),
        ));
        ctx.forward_batch(batch)
    }
}

fn recorder_topology(seen: Seen) -> Topology {
    let mut b = TopologyBuilder::new();
    let src = b
        .add_source("src", &["a", "b"], StringSerde, StringSerde)
        .unwrap();
    let rec = b
        .add_processor("rec", &[&src], move || BatchRecorder(seen.clone()))
        .unwrap();
    b.add_sink("sink", "out", &[&rec], StringSerde, StringSerde)
        .unwrap();
    b.build().unwrap()
}

#[test]
fn batches_stay_in_one_partition_in_offset_order_and_bounded() {
    let seen: Seen = Default::default();
    let topology = recorder_topology(seen.clone());
    let mut t = task(
        &topology,
        0,
        TaskConfig {
            max_batch_records: 3,
            ..TaskConfig::default()
        },
    );
    t.add_records(&tp("a", 0), (0..5).map(|o| raw(o, 10 + o, "k", "v")))
        .unwrap();
    t.add_records(&tp("b", 0), (7..9).map(|o| raw(o, o, "k", "v")))
        .unwrap();
    assert_eq!(t.process_all().unwrap(), 3);
    // "b" first: its head timestamp (7) is older than "a"'s (10).
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            ("b-0".into(), vec![7, 8]),
            ("a-0".into(), vec![0, 1, 2]),
            ("a-0".into(), vec![3, 4])
        ]
    );
    let mut committable = t.committable_offsets();
    committable.sort();
    assert_eq!(committable, vec![(tp("a", 0), 5), (tp("b", 0), 9)]);
    assert_eq!(t.take_output().len(), 7);
    assert_eq!(t.stream_time(), Some(14));
    assert_eq!(t.metrics().consumed_records, 7);
    assert_eq!(t.metrics().batches, 3);
}

#[test]
fn records_must_come_in_increasing_offsets_of_owned_partitions() {
    let topology = recorder_topology(Default::default());
    let mut t = task(&topology, 1, TaskConfig::default());
    assert!(matches!(
        t.add_records(&tp("a", 0), [raw(0, 0, "k", "v")]),
        Err(TaskError::InvalidInput { .. })
    ));
    t.add_records(&tp("a", 1), [raw(5, 0, "k", "v"), raw(9, 0, "k", "v")])
        .unwrap();
    let err = t
        .add_records(&tp("a", 1), [raw(10, 0, "k", "v"), raw(9, 0, "k", "v")])
        .unwrap_err();
    assert!(
        err.to_string().contains("offset 9 is not after 10"),
        "{err}"
    );
    assert_eq!(t.queued(&tp("a", 1)), 2, "a rejected call queues nothing");
    t.process_all().unwrap();
    assert_eq!(t.committable_offsets(), vec![(tp("a", 1), 10)]);
}

#[test]
fn offsets_kafka_cannot_have_are_refused_and_the_last_one_commits_without_overflow() {
    let topology = recorder_topology(Default::default());
    let mut t = task(&topology, 1, TaskConfig::default());
    for bad in [-1, i64::MAX] {
        let err = t
            .add_records(&tp("a", 1), [raw(bad, 0, "k", "v")])
            .unwrap_err();
        assert!(err.to_string().contains("outside 0..i64::MAX"), "{err}");
    }
    assert_eq!(t.queued(&tp("a", 1)), 0);
    t.add_record(&tp("a", 1), raw(i64::MAX - 1, 0, "k", "v"))
        .unwrap();
    t.process_all().unwrap();
    assert_eq!(t.committable_offsets(), vec![(tp("a", 1), i64::MAX)]);
}

#[test]
fn queued_bytes_count_keys_values_and_headers_until_processed() {
    let topology = recorder_topology(Default::default());
    let mut t = task(&topology, 1, TaskConfig::default());
    let mut with_header = raw(1, 0, "key", "value");
    with_header
        .headers
        .add("h", Some(bytes::Bytes::from_static(b"12")));
    t.add_records(&tp("a", 1), [raw(0, 0, "k", "v"), with_header])
        .unwrap();
    assert_eq!(t.queued_bytes(&tp("a", 1)), 2 + (3 + 5 + 1 + 2));
    t.process_all().unwrap();
    assert_eq!(t.queued_bytes(&tp("a", 1)), 0);
}

#[test]
fn stream_time_punctuation_survives_extreme_timestamps() {
    let topology = ticker_topology(PunctuationType::StreamTime);
    let mut t = task(&topology, 0, TaskConfig::default());
    t.add_records(&tp("a", 0), [raw(0, i64::MIN + 1, "k", "v")])
        .unwrap();
    t.process_all().unwrap();
    t.add_records(&tp("a", 0), [raw(1, i64::MAX, "k", "v")])
        .unwrap();
    t.process_all().unwrap();
    assert_eq!(ticks(&mut t).len(), 2);
}

/// Fails on values equal to "bad"; counts every value it is given in store "seen".
struct FailOnBad {
    with_offset: bool,
}

impl Processor<String, String, String, String> for FailOnBad {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, String>,
        record: Record<String, String>,
    ) -> Result<(), ProcessError> {
        let mut store = ctx.store::<String, i64>("seen")?;
        let n = store.get(&record.value)?.unwrap_or(0);
        store.put(&record.value, &(n + 1))?;
        if record.value == "bad" {
            return Err(ProcessError::msg("bad value"));
        }
        ctx.forward(record)
    }

    fn process_batch(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, String>,
        batch: Batch<String, String>,
    ) -> Result<(), ProcessError> {
        for record in batch {
            let offset = record.offset();
            let result = self.process(ctx, record);
            if self.with_offset {
                result.map_err(|e| e.at_offset(offset))?;
            } else {
                result?;
            }
        }
        Ok(())
    }
}

fn failing_topology(with_offset: bool) -> Topology {
    let mut b = TopologyBuilder::new();
    let src = b
        .add_source("src", &["a"], StringSerde, StringSerde)
        .unwrap();
    let p = b
        .add_processor("p", &[&src], move || FailOnBad { with_offset })
        .unwrap();
    b.add_store(
        StoreBuilder::key_value("seen", StringSerde, I64Serde),
        &["p"],
    )
    .unwrap();
    b.add_sink("sink", "out", &[&p], StringSerde, StringSerde)
        .unwrap();
    b.build().unwrap()
}

fn input_with_bad(t: &mut Task, first_offset: i64) {
    let values = ["x", "y", "bad", "z"];
    t.add_records(
        &tp("a", 0),
        values
            .iter()
            .enumerate()
            .map(|(i, v)| raw(first_offset + i as i64, 0, "k", v)),
    )
    .unwrap();
}

#[test]
fn fail_policy_stops_the_task_and_never_commits_past_the_failure() {
    let topology = failing_topology(true);
    let mut t = task(&topology, 0, TaskConfig::default());
    t.add_records(&tp("a", 0), [raw(0, 0, "k", "ok")]).unwrap();
    t.process_all().unwrap();
    t.commit_stores().unwrap();
    input_with_bad(&mut t, 1);
    let err = t.process_next_batch().unwrap_err();
    match &err {
        TaskError::Processing {
            node,
            topic,
            partition,
            source,
            ..
        } => {
            assert_eq!(node, "p");
            assert_eq!(topic.as_deref(), Some("a"));
            assert_eq!(*partition, 0);
            assert_eq!(source.offset(), Some(3));
        }
        other => panic!("unexpected {other}"),
    }
    assert!(t.is_failed());
    assert!(matches!(t.process_next_batch(), Err(TaskError::Failed(_))));
    assert_eq!(t.committable_offsets(), vec![(tp("a", 0), 1)]);
    // The failed batch's writes are discarded by rollback; committed state stays.
    t.rollback_stores();
    let seen = t.store::<String, i64>("seen").unwrap().all().unwrap();
    assert_eq!(seen, vec![("ok".to_owned(), 1)]);
}

#[test]
fn skip_policy_keeps_records_before_and_after_the_failed_one() {
    let topology = failing_topology(true);
    let config = TaskConfig {
        processing_errors: ErrorPolicy::Skip,
        ..TaskConfig::default()
    };
    let mut t = task(&topology, 0, config);
    input_with_bad(&mut t, 0);
    let first = t.process_next_batch().unwrap().unwrap();
    assert_eq!(
        first.consumed, 3,
        "x, y processed and bad skipped in the first call"
    );
    assert_eq!(t.committable_offsets(), vec![(tp("a", 0), 3)]);
    t.process_all().unwrap();
    let values: Vec<_> = t
        .take_output()
        .into_iter()
        .map(|r| r.value.unwrap())
        .collect();
    assert_eq!(
        values,
        vec![Bytes::from("x"), Bytes::from("y"), Bytes::from("z")]
    );
    assert_eq!(t.metrics().skipped_records, 1);
    assert_eq!(t.committable_offsets(), vec![(tp("a", 0), 4)]);
    // Each record counted once; the skipped record's writes were undone.
    let seen = t.store::<String, i64>("seen").unwrap().all().unwrap();
    let expected: Vec<(String, i64)> = ["x", "y", "z"].iter().map(|v| (v.to_string(), 1)).collect();
    assert_eq!(seen, expected);
}

#[test]
fn dead_letter_policy_without_offset_sends_the_whole_batch_with_headers() {
    let topology = failing_topology(false);
    let config = TaskConfig {
        processing_errors: ErrorPolicy::DeadLetter {
            topic: "dlq".into(),
        },
        ..TaskConfig::default()
    };
    let mut t = task(&topology, 0, config);
    input_with_bad(&mut t, 0);
    t.process_all().unwrap();
    let out = t.take_output();
    // The failed batch's output (x and y) is undone; all four records go to the DLQ.
    let dlq: Vec<_> = out.iter().filter(|r| &*r.topic == "dlq").collect();
    assert_eq!(dlq.len(), 4);
    assert_eq!(out.len(), 4);
    assert!(
        t.store::<String, i64>("seen")
            .unwrap()
            .all()
            .unwrap()
            .is_empty()
    );
    assert_eq!(t.metrics().dead_lettered_records, 4);
    let h = &dlq[2].headers;
    let get = |k: &str| h.last(k).and_then(|h| h.value.clone()).unwrap();
    assert_eq!(get(DLQ_HEADER_TOPIC), Bytes::from("a"));
    assert_eq!(get(DLQ_HEADER_PARTITION), Bytes::from("0"));
    assert_eq!(get(DLQ_HEADER_OFFSET), Bytes::from("2"));
    assert!(String::from_utf8_lossy(&get(DLQ_HEADER_ERROR)).contains("bad value"));
    assert_eq!(dlq[2].value.as_deref(), Some(&b"bad"[..]));
    assert_eq!(t.committable_offsets(), vec![(tp("a", 0), 4)]);
}

fn i64_source_topology() -> Topology {
    let mut b = TopologyBuilder::new();
    let src = b.add_source("src", &["a"], StringSerde, I64Serde).unwrap();
    b.add_sink("sink", "out", &[&src], StringSerde, I64Serde)
        .unwrap();
    b.build().unwrap()
}

fn i64_raw(offset: i64, value: &[u8]) -> RawRecord {
    RawRecord {
        offset,
        timestamp: 0,
        key: Some(Bytes::from("k")),
        value: Some(Bytes::copy_from_slice(value)),
        headers: Headers::new(),
    }
}

#[test]
fn deserialization_errors_follow_their_policy() {
    let topology = i64_source_topology();
    let input = [
        i64_raw(0, &7i64.to_be_bytes()),
        i64_raw(1, b"short"),
        i64_raw(2, &9i64.to_be_bytes()),
    ];

    let mut t = task(&topology, 0, TaskConfig::default());
    t.add_records(&tp("a", 0), input.clone()).unwrap();
    match t.process_next_batch().unwrap_err() {
        TaskError::Deserialization { source, .. } => {
            assert_eq!(
                (&*source.topic, source.partition, source.offset),
                ("a", 0, 1)
            );
            assert_eq!(source.part, crate::error::RecordPart::Value);
        }
        other => panic!("unexpected {other}"),
    }
    assert!(t.committable_offsets().is_empty());

    let config = TaskConfig {
        deserialization_errors: ErrorPolicy::Skip,
        ..TaskConfig::default()
    };
    let mut t = task(&topology, 0, config);
    t.add_records(&tp("a", 0), input.clone()).unwrap();
    t.process_all().unwrap();
    assert_eq!(t.take_output().len(), 2);
    assert_eq!(t.metrics().skipped_records, 1);
    assert_eq!(t.committable_offsets(), vec![(tp("a", 0), 3)]);

    let config = TaskConfig {
        deserialization_errors: ErrorPolicy::DeadLetter {
            topic: "dlq".into(),
        },
        ..TaskConfig::default()
    };
    let mut t = task(&topology, 0, config);
    t.add_records(&tp("a", 0), input).unwrap();
    t.process_all().unwrap();
    let out = t.take_output();
    assert_eq!(
        out.iter().map(|r| &*r.topic).collect::<Vec<_>>(),
        vec!["out", "out", "dlq"],
        "dead letters follow the batch's output"
    );
    assert_eq!(out[2].value.as_deref(), Some(&b"short"[..]));
}

/// Counts punctuations and emits one record per punctuation; cancels after three.
struct Ticker {
    kind: PunctuationType,
    id: Option<PunctuatorId>,
    fired: Vec<i64>,
}

impl Processor<String, String, String, String> for Ticker {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, String, String>) -> Result<(), ProcessError> {
        self.id = Some(ctx.schedule(Duration::from_millis(10), self.kind));
        Ok(())
    }

    fn process(
        &mut self,
        _: &mut ProcessorContext<'_, String, String>,
        _: Record<String, String>,
    ) -> Result<(), ProcessError> {
        Ok(())
    }

    fn punctuate(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, String>,
        id: PunctuatorId,
        timestamp: i64,
    ) -> Result<(), ProcessError> {
        assert_eq!(Some(id), self.id);
        self.fired.push(timestamp);
        if self.fired.len() == 3 {
            ctx.cancel(id);
        }
        ctx.forward(Record::new("tick".into(), timestamp.to_string(), timestamp))
    }
}

fn ticker_topology(kind: PunctuationType) -> Topology {
    let mut b = TopologyBuilder::new();
    let src = b
        .add_source("src", &["a"], StringSerde, StringSerde)
        .unwrap();
    let p = b
        .add_processor("ticker", &[&src], move || Ticker {
            kind,
            id: None,
            fired: Vec::new(),
        })
        .unwrap();
    b.add_sink("sink", "out", &[&p], StringSerde, StringSerde)
        .unwrap();
    b.build().unwrap()
}

fn ticks(t: &mut Task) -> Vec<String> {
    t.take_output()
        .into_iter()
        .map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
        .collect()
}

#[test]
fn stream_time_punctuation_fires_after_batches_and_can_be_cancelled() {
    let topology = ticker_topology(PunctuationType::StreamTime);
    let mut t = task(&topology, 0, TaskConfig::default());
    t.add_records(&tp("a", 0), [raw(0, 100, "k", "v")]).unwrap();
    t.process_all().unwrap();
    assert_eq!(
        ticks(&mut t),
        vec!["100"],
        "first punctuation at the first record"
    );
    t.add_records(&tp("a", 0), [raw(1, 105, "k", "v"), raw(2, 90, "k", "v")])
        .unwrap();
    t.process_all().unwrap();
    assert!(ticks(&mut t).is_empty(), "stream time 105 < 110");
    t.add_records(&tp("a", 0), [raw(3, 135, "k", "v")]).unwrap();
    t.process_all().unwrap();
    assert_eq!(ticks(&mut t), vec!["135"]);
    t.add_records(&tp("a", 0), [raw(4, 140, "k", "v")]).unwrap();
    t.process_all().unwrap();
    assert_eq!(ticks(&mut t), vec!["140"]);
    t.add_records(&tp("a", 0), [raw(5, 1000, "k", "v")])
        .unwrap();
    t.process_all().unwrap();
    assert!(ticks(&mut t).is_empty(), "cancelled after three");
    assert_eq!(
        t.punctuate_wall_clock(Instant::from_millis(1_000_000))
            .unwrap(),
        0
    );
}

#[test]
fn wall_clock_punctuation_uses_the_time_passed_in() {
    let topology = ticker_topology(PunctuationType::WallClock);
    let mut t = task(&topology, 0, TaskConfig::default());
    assert_eq!(
        t.next_wall_clock_punctuation(),
        Some(Instant::from_millis(1_010))
    );
    assert_eq!(
        t.punctuate_wall_clock(Instant::from_millis(1_009)).unwrap(),
        0
    );
    assert_eq!(
        t.punctuate_wall_clock(Instant::from_millis(1_010)).unwrap(),
        1
    );
    assert_eq!(
        t.punctuate_wall_clock(Instant::from_millis(1_055)).unwrap(),
        1
    );
    assert_eq!(
        t.next_wall_clock_punctuation(),
        Some(Instant::from_millis(1_060))
    );
    assert_eq!(ticks(&mut t), vec!["1010", "1055"]);
    // Time never goes backwards for the task.
    assert_eq!(t.punctuate_wall_clock(Instant::from_millis(0)).unwrap(), 0);
}

/// Uses whatever store it is told to, with the types it is told to.
struct StoreUser(&'static str);

impl Processor<String, String, String, String> for StoreUser {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, String>,
        record: Record<String, String>,
    ) -> Result<(), ProcessError> {
        ctx.store::<String, i64>(self.0)?;
        ctx.forward(record)
    }
}

#[test]
fn store_access_is_checked_for_connection_and_types() {
    for (store, expected) in [("other", "not connected"), ("strings", "holds")] {
        let mut b = TopologyBuilder::new();
        let src = b
            .add_source("src", &["a"], StringSerde, StringSerde)
            .unwrap();
        b.add_processor("user", &[&src], move || StoreUser(store))
            .unwrap();
        b.add_processor("owner", &[&src], || StoreUser("strings"))
            .unwrap();
        b.add_store(
            StoreBuilder::key_value("strings", StringSerde, StringSerde),
            &["user"],
        )
        .unwrap();
        b.add_store(
            StoreBuilder::key_value("other", StringSerde, I64Serde),
            &["owner"],
        )
        .unwrap();
        let topology = b.build().unwrap();
        let mut t = task(&topology, 0, TaskConfig::default());
        t.add_records(&tp("a", 0), [raw(0, 0, "k", "v")]).unwrap();
        let err = t.process_all().unwrap_err();
        assert!(err.to_string().contains(expected), "{err}");
    }
}

/// Routes records whose value starts with "l" to child "left", others to "right".
struct Router;

impl Processor<String, String, String, String> for Router {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, String>,
        record: Record<String, String>,
    ) -> Result<(), ProcessError> {
        assert_eq!(ctx.record_metadata().map(|m| m.offset), record.offset());
        let child = if record.value.starts_with('l') {
            "left"
        } else if record.value.starts_with('r') {
            "right"
        } else {
            "nowhere"
        };
        ctx.forward_to(child, record)
    }
}

#[test]
fn forward_to_reaches_one_named_child_and_rejects_strangers() {
    let mut b = TopologyBuilder::new();
    let src = b
        .add_source("src", &["a"], StringSerde, StringSerde)
        .unwrap();
    let router = b.add_processor("router", &[&src], || Router).unwrap();
    b.add_sink("left", "out-l", &[&router], StringSerde, StringSerde)
        .unwrap();
    b.add_sink("right", "out-r", &[&router], StringSerde, StringSerde)
        .unwrap();
    let topology = b.build().unwrap();
    let mut t = task(&topology, 0, TaskConfig::default());
    t.add_records(
        &tp("a", 0),
        [
            raw(0, 0, "k", "l1"),
            raw(1, 0, "k", "r1"),
            raw(2, 0, "k", "l2"),
        ],
    )
    .unwrap();
    t.process_all().unwrap();
    let out: Vec<_> = t
        .take_output()
        .into_iter()
        .map(|r| (r.topic.to_string(), r.value.unwrap()))
        .collect();
    assert_eq!(
        out,
        vec![
            ("out-l".into(), Bytes::from("l1")),
            ("out-r".into(), Bytes::from("r1")),
            ("out-l".into(), Bytes::from("l2"))
        ]
    );

    t.add_records(&tp("a", 0), [raw(3, 0, "k", "x")]).unwrap();
    let err = t.process_all().unwrap_err();
    assert!(
        err.to_string()
            .contains("`nowhere` is not a child of `router`"),
        "{err}"
    );
}

#[test]
fn sink_partitioner_chooses_partitions_within_the_topic() {
    for (choice, ok) in [(2, true), (3, false)] {
        let mut b = TopologyBuilder::new();
        let src = b
            .add_source("src", &["a"], StringSerde, StringSerde)
            .unwrap();
        b.add_sink_with_partitioner(
            "sink",
            "out",
            &[&src],
            StringSerde,
            StringSerde,
            move |topic, _, _, n| {
                assert_eq!((topic, n), ("out", 3));
                Some(choice)
            },
        )
        .unwrap();
        let topology = b.build().unwrap();
        let mut t = task(&topology, 0, TaskConfig::default());
        t.add_records(&tp("a", 0), [raw(0, 0, "k", "v")]).unwrap();
        match t.process_all() {
            Ok(_) => {
                assert!(ok);
                assert_eq!(t.take_output()[0].partition, Some(2));
            }
            Err(e) => {
                assert!(!ok);
                assert!(
                    e.to_string()
                        .contains("partition 3 of topic `out`, which has 3"),
                    "{e}"
                );
            }
        }
    }
}

#[test]
fn forwarded_batches_keep_timestamps_headers_and_metadata() {
    let mut b = TopologyBuilder::new();
    let src = b
        .add_source("src", &["a"], StringSerde, StringSerde)
        .unwrap();
    let up = b
        .map_values("upper", &src, |v: &String| v.to_uppercase())
        .unwrap();
    let got: Arc<Mutex<Vec<Record<String, String>>>> = Default::default();
    let sink = got.clone();
    b.for_each("collect", &up, move |r: &Record<String, String>| {
        sink.lock().unwrap().push(r.clone())
    })
    .unwrap();
    let topology = b.build().unwrap();
    let mut t = task(&topology, 0, TaskConfig::default());
    let mut headers = Headers::new();
    headers
        .add("h", Some(Bytes::from("1")))
        .add("h", Some(Bytes::from("2")));
    t.add_records(
        &tp("a", 0),
        [RawRecord {
            headers: headers.clone(),
            ..raw(4, 77, "k", "v")
        }],
    )
    .unwrap();
    t.process_all().unwrap();
    let got = got.lock().unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].value, "V");
    assert_eq!(got[0].timestamp, 77);
    assert_eq!(got[0].headers, headers, "duplicate header keys are kept");
    assert_eq!(
        got[0].metadata,
        Some(RecordMetadata {
            topic: Arc::from("a"),
            partition: 0,
            offset: 4
        })
    );
}

#[test]
fn undecodable_records_after_a_failed_record_are_dead_lettered_once() {
    let mut b = TopologyBuilder::new();
    let src = b.add_source("src", &["a"], StringSerde, I64Serde).unwrap();
    struct Unlucky;
    impl Processor<String, i64, String, i64> for Unlucky {
        fn process(
            &mut self,
            ctx: &mut ProcessorContext<'_, String, i64>,
            r: Record<String, i64>,
        ) -> Result<(), ProcessError> {
            if r.value == 13 {
                return Err(ProcessError::msg("unlucky"));
            }
            ctx.forward(r)
        }
    }
    let u = b.add_processor("unlucky", &[&src], || Unlucky).unwrap();
    b.add_sink("sink", "out", &[&u], StringSerde, I64Serde)
        .unwrap();
    let topology = b.build().unwrap();
    let dlq = ErrorPolicy::DeadLetter {
        topic: "dlq".into(),
    };
    let config = TaskConfig {
        deserialization_errors: dlq.clone(),
        processing_errors: dlq,
        ..TaskConfig::default()
    };
    let mut t = task(&topology, 0, config);
    t.add_records(
        &tp("a", 0),
        [
            i64_raw(0, &7i64.to_be_bytes()),
            i64_raw(1, &13i64.to_be_bytes()),
            i64_raw(2, b"short"),
            i64_raw(3, &9i64.to_be_bytes()),
        ],
    )
    .unwrap();
    t.process_all().unwrap();
    let out = t.take_output();
    let dlq_offsets: Vec<_> = out
        .iter()
        .filter(|r| &*r.topic == "dlq")
        .map(|r| {
            r.headers
                .last(DLQ_HEADER_OFFSET)
                .and_then(|h| h.value.clone())
                .unwrap()
        })
        .collect();
    assert_eq!(dlq_offsets, vec![Bytes::from("1"), Bytes::from("2")]);
    let values: Vec<_> = out
        .iter()
        .filter(|r| &*r.topic == "out")
        .map(|r| r.value.clone().unwrap())
        .collect();
    assert_eq!(
        values,
        vec![
            Bytes::copy_from_slice(&7i64.to_be_bytes()),
            Bytes::copy_from_slice(&9i64.to_be_bytes())
        ]
    );
    assert_eq!(t.metrics().dead_lettered_records, 2);
    assert_eq!(t.committable_offsets(), vec![(tp("a", 0), 4)]);
}

#[test]
fn add_record_checks_partition_and_offset_order_like_add_records() {
    let topology = recorder_topology(Default::default());
    let mut t = task(&topology, 0, TaskConfig::default());
    assert!(matches!(
        t.add_record(&tp("a", 1), raw(0, 0, "k", "v")),
        Err(TaskError::InvalidInput { .. })
    ));
    t.add_record(&tp("a", 0), raw(3, 0, "k", "v")).unwrap();
    let err = t.add_record(&tp("a", 0), raw(3, 0, "k", "v")).unwrap_err();
    assert!(err.to_string().contains("offset 3 is not after 3"), "{err}");
    t.add_record(&tp("a", 0), raw(7, 0, "k", "v")).unwrap();
    assert_eq!(t.queued(&tp("a", 0)), 2);
    t.process_all().unwrap();
    assert_eq!(t.committable_offsets(), vec![(tp("a", 0), 8)]);
    assert!(
        t.add_record(&tp("a", 0), raw(7, 0, "k", "v")).is_err(),
        "not after the committed offset"
    );
}

#[test]
fn a_task_closed_keeping_its_stores_hands_them_back_open_with_their_committed_state() {
    let mut b = TopologyBuilder::new();
    let src = b
        .add_source("src", &["a"], StringSerde, StringSerde)
        .unwrap();
    b.add_processor("user", &[&src], || StoreUser("counts"))
        .unwrap();
    b.add_store(
        StoreBuilder::key_value("counts", StringSerde, I64Serde),
        &["user"],
    )
    .unwrap();
    let topology = b.build().unwrap();
    let mut t = task(&topology, 0, TaskConfig::default());
    t.store::<String, i64>("counts")
        .unwrap()
        .put(&"k".to_owned(), &7)
        .unwrap();
    t.commit_stores_with(|_| Some(crate::state::Checkpoint::new(12, None)))
        .unwrap();
    let (closed, stores) = t.close_keeping_stores();
    closed.unwrap();
    assert_eq!(stores.len(), 1);
    let (name, backend) = &stores[0];
    assert_eq!(name, "counts");
    assert_eq!(
        backend.checkpoint().unwrap(),
        Some(crate::state::Checkpoint::new(12, None)),
        "a memory store keeps its checkpoint while open"
    );
    let entries = backend
        .range(std::ops::Bound::Unbounded, std::ops::Bound::Unbounded)
        .unwrap();
    assert_eq!(entries.len(), 1, "the committed entry is there");
    assert_eq!(backend.uncommitted_len(), 0);
}
