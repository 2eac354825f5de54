use std::sync::{Arc, Mutex};

use super::*;
use crate::prelude::*;
use crate::processor::PunctuatorId;

fn passthrough(through: bool) -> Topology {
    let mut b = TopologyBuilder::new();
    let src = b
        .add_source("src", &["in"], StringSerde, StringSerde)
        .unwrap();
    if through {
        b.add_sink("to-mid", "mid", &[&src], StringSerde, StringSerde)
            .unwrap();
        let mid = b
            .add_source::<String, String>("mid-src", &["mid"], StringSerde, StringSerde)
            .unwrap();
        let up = b
            .map_values("upper", &mid, |v: &String| v.to_uppercase())
            .unwrap();
        b.add_sink("out", "out", &[&up], StringSerde, StringSerde)
            .unwrap();
    } else {
        b.add_sink("out", "out", &[&src], StringSerde, StringSerde)
            .unwrap();
    }
    b.build().unwrap()
}

#[test]
fn output_written_to_an_input_topic_is_fed_back() {
    let mut d = TopologyTestDriver::builder(passthrough(true))
        .topic("in", 2)
        .topic("mid", 3)
        .build()
        .unwrap();
    assert_eq!(d.tasks().count(), 5);
    let input = d.input_topic("in", StringSerde, StringSerde);
    for i in 0..6 {
        input
            .pipe(&mut d, format!("k{i}"), format!("v{i}"), i)
            .unwrap();
    }
    let out = d.output_topic("out", StringSerde, StringSerde);
    let mut got = out.read_key_values(&mut d).unwrap();
    got.sort();
    assert_eq!(
        got,
        (0..6)
            .map(|i| (format!("k{i}"), format!("V{i}")))
            .collect::<Vec<_>>()
    );
    let mid = d.output_topic("mid", StringSerde, StringSerde);
    assert_eq!(mid.read_records(&mut d).unwrap().len(), 6);
    assert!(
        out.read_key_values(&mut d).unwrap().is_empty(),
        "records are read once"
    );
    let committed: i64 = (0..2).filter_map(|p| d.committed_offset("in", p)).sum();
    assert_eq!(committed, 6);
}

#[test]
fn keyed_records_land_on_the_default_partitioners_partition() {
    let mut d = TopologyTestDriver::builder(passthrough(false))
        .topic("in", 4)
        .topic("out", 4)
        .build()
        .unwrap();
    let input = d.input_topic("in", StringSerde, StringSerde);
    input.pipe(&mut d, "key".into(), "v".into(), 0).unwrap();
    let out = d.output_topic("out", StringSerde, StringSerde);
    let rec = out.read_records(&mut d).unwrap().pop().unwrap();
    let expected = crate::partitioner::default_partition(b"key", 4);
    assert_eq!(rec.metadata.unwrap().partition, expected);
    assert_eq!(d.committed_offset("in", expected), Some(1));
}

#[test]
fn piping_to_unknown_topics_or_partitions_is_an_error() {
    let mut d = TopologyTestDriver::new(passthrough(false)).unwrap();
    let stray = d.input_topic("nope", StringSerde, StringSerde);
    assert!(matches!(
        stray.pipe(&mut d, "k".into(), "v".into(), 0),
        Err(DriverError::NotAnInputTopic(_))
    ));
    let input = d.input_topic("in", StringSerde, StringSerde);
    let err = input
        .pipe_record(&mut d, Some(1), Record::new("k".into(), "v".into(), 0))
        .unwrap_err();
    assert!(matches!(
        err,
        DriverError::NoSuchPartition {
            partitions: 1,
            partition: 1,
            ..
        }
    ));
}

#[test]
fn source_topics_of_a_subtopology_must_be_co_partitioned() {
    let mut b = TopologyBuilder::new();
    let src = b
        .add_source("src", &["x", "y"], StringSerde, StringSerde)
        .unwrap();
    b.add_sink("out", "out", &[&src], StringSerde, StringSerde)
        .unwrap();
    let err = TopologyTestDriver::builder(b.build().unwrap())
        .topic("x", 2)
        .build()
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            DriverError::Topology(TopologyError::NotCoPartitioned { .. })
        ),
        "{err}"
    );
}

/// Emits the number of records seen since the last wall-clock punctuation.
struct Throughput(i64);

impl Processor<String, String, String, i64> for Throughput {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, String, i64>) -> Result<(), ProcessError> {
        ctx.schedule(Duration::from_secs(1), PunctuationType::WallClock);
        Ok(())
    }

    fn process(
        &mut self,
        _: &mut ProcessorContext<'_, String, i64>,
        _: Record<String, String>,
    ) -> Result<(), ProcessError> {
        self.0 += 1;
        Ok(())
    }

    fn punctuate(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, i64>,
        _: PunctuatorId,
        ts: i64,
    ) -> Result<(), ProcessError> {
        let n = std::mem::take(&mut self.0);
        ctx.forward(Record::new("count".into(), n, ts))
    }
}

#[test]
fn advancing_wall_clock_processes_input_then_punctuates() {
    let mut b = TopologyBuilder::new();
    let src = b
        .add_source("src", &["in"], StringSerde, StringSerde)
        .unwrap();
    let p = b.add_processor("tp", &[&src], || Throughput(0)).unwrap();
    b.add_sink("out", "out", &[&p], StringSerde, I64Serde)
        .unwrap();
    let mut d = TopologyTestDriver::builder(b.build().unwrap())
        .wall_clock(Instant::from_millis(5_000))
        .build()
        .unwrap();
    let input = d.input_topic("in", StringSerde, StringSerde);
    input
        .pipe_all(&mut d, (0..3).map(|i| (i.to_string(), String::new())), 0)
        .unwrap();
    d.advance_wall_clock(Duration::from_millis(999)).unwrap();
    let out = d.output_topic("out", StringSerde, I64Serde);
    assert!(out.read_records(&mut d).unwrap().is_empty());
    d.advance_wall_clock(Duration::from_millis(1)).unwrap();
    input.pipe(&mut d, "x".into(), String::new(), 0).unwrap();
    d.advance_wall_clock(Duration::from_secs(1)).unwrap();
    let got: Vec<_> = out
        .read_records(&mut d)
        .unwrap()
        .into_iter()
        .map(|r| (r.value, r.timestamp))
        .collect();
    assert_eq!(got, vec![(3, 6_000), (1, 7_000)]);
    assert_eq!(d.wall_clock(), Instant::from_millis(7_000));
}

#[test]
fn batch_size_bounds_what_processors_receive() {
    let sizes: Arc<Mutex<Vec<usize>>> = Default::default();
    struct Sizes(Arc<Mutex<Vec<usize>>>);
    impl Processor<String, String, String, String> for Sizes {
        fn process(
            &mut self,
            _: &mut ProcessorContext<'_, String, String>,
            _: Record<String, String>,
        ) -> Result<(), ProcessError> {
            Ok(())
        }
        fn process_batch(
            &mut self,
            _: &mut ProcessorContext<'_, String, String>,
            batch: Batch<String, String>,
        ) -> Result<(), ProcessError> {
            self.0.lock().unwrap().push(batch.len());
            Ok(())
        }
    }
    let mut b = TopologyBuilder::new();
    let src = b
        .add_source("src", &["in"], StringSerde, StringSerde)
        .unwrap();
    let s = sizes.clone();
    b.add_processor("sizes", &[&src], move || Sizes(s.clone()))
        .unwrap();
    let mut d = TopologyTestDriver::builder(b.build().unwrap())
        .batch_size(4)
        .build()
        .unwrap();
    let input = d.input_topic("in", StringSerde, StringSerde);
    input
        .pipe_all(&mut d, (0..10).map(|i| (i.to_string(), String::new())), 0)
        .unwrap();
    d.process().unwrap();
    assert_eq!(*sizes.lock().unwrap(), vec![4, 4, 2]);
}
