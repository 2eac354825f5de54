//! Snapshots of `Topology::describe()`: its text is meant to be stable, so any change to it
//! shows up here.

mod common;

use common::{FailOnBoom, RecordOnly};
use kstreams_core::prelude::*;

#[test]
fn single_chain() {
    let mut b = TopologyBuilder::new();
    let lines = b
        .add_source("lines", &["input"], StringSerde, StringSerde)
        .unwrap();
    let non_empty = b
        .filter("non-empty", &lines, |r: &Record<String, String>| {
            !r.value.is_empty()
        })
        .unwrap();
    let upper = b
        .map_values("upper", &non_empty, |v: &String| v.to_uppercase())
        .unwrap();
    b.add_sink("out", "output", &[&upper], StringSerde, StringSerde)
        .unwrap();
    insta::assert_snapshot!(b.build().unwrap().describe().to_string());
}

/// A re-keying sub-topology writes a through topic that a counting sub-topology reads.
#[test]
fn two_subtopologies_through_a_topic() {
    let mut b = TopologyBuilder::new();
    let words = b
        .add_source("words", &["words"], StringSerde, StringSerde)
        .unwrap();
    let by_letter = b
        .map("by-first-letter", &words, |_k: String, v: String| {
            (v.chars().next().unwrap_or('_').to_string(), v)
        })
        .unwrap();
    b.add_sink(
        "to-letters",
        "words-by-letter",
        &[&by_letter],
        StringSerde,
        StringSerde,
    )
    .unwrap();
    let letters = b
        .add_source("letters", &["words-by-letter"], StringSerde, StringSerde)
        .unwrap();
    let count = b
        .add_processor(
            "count",
            &[&letters],
            BatchCountAggregator::supplier("counts"),
        )
        .unwrap();
    b.add_store(
        StoreBuilder::key_value("counts", StringSerde, I64Serde),
        &["count"],
    )
    .unwrap();
    b.add_sink("out", "letter-counts", &[&count], StringSerde, I64Serde)
        .unwrap();
    let topology = b.build().unwrap();
    assert_eq!(topology.subtopologies().len(), 2);
    insta::assert_snapshot!(topology.describe().to_string());
}

/// A processor fed by two sources, and a third parent added afterwards with `connect`.
#[test]
fn processor_with_several_parents() {
    let mut b = TopologyBuilder::new();
    let clicks = b
        .add_source("clicks", &["clicks"], StringSerde, StringSerde)
        .unwrap();
    let views = b
        .add_source("views", &["views"], StringSerde, StringSerde)
        .unwrap();
    let merge = b
        .add_processor("merge", &[&clicks, &views], || {
            RecordOnly(|r: Record<String, String>| Some(r))
        })
        .unwrap();
    let buys = b
        .add_source("buys", &["buys"], StringSerde, StringSerde)
        .unwrap();
    b.connect(&buys, &merge).unwrap();
    b.add_sink("events", "events", &[&merge], StringSerde, StringSerde)
        .unwrap();
    let topology = b.build().unwrap();
    assert_eq!(topology.subtopologies().len(), 1);
    insta::assert_snapshot!(topology.describe().to_string());
}

/// Two processors sharing a store end up in one sub-topology; a processor with two stores; a
/// store-less sub-topology beside them.
#[test]
fn stores() {
    let mut b = TopologyBuilder::new();
    let orders = b
        .add_source("orders", &["orders"], StringSerde, StringSerde)
        .unwrap();
    let count = b
        .add_processor(
            "count-orders",
            &[&orders],
            RecordCountAggregator::supplier("order-counts"),
        )
        .unwrap();
    let refunds = b
        .add_source("refunds", &["refunds"], StringSerde, StringSerde)
        .unwrap();
    let audit = b
        .add_processor("audit", &[&refunds], || FailOnBoom)
        .unwrap();
    b.add_store(
        StoreBuilder::key_value("order-counts", StringSerde, I64Serde),
        &["count-orders", "audit"],
    )
    .unwrap();
    b.add_store(
        StoreBuilder::key_value("audit-log", StringSerde, StringSerde).with_logging(false),
        &["audit"],
    )
    .unwrap();
    b.add_sink(
        "counts-out",
        "order-counts",
        &[&count],
        StringSerde,
        I64Serde,
    )
    .unwrap();
    b.add_sink("audit-out", "audited", &[&audit], StringSerde, StringSerde)
        .unwrap();
    let pings = b
        .add_source("pings", &["pings"], StringSerde, StringSerde)
        .unwrap();
    b.add_sink("pongs", "pongs", &[&pings], StringSerde, StringSerde)
        .unwrap();
    let topology = b.build().unwrap();
    assert_eq!(topology.subtopologies().len(), 2);
    assert_eq!(topology.store_is_logged("audit-log"), Some(false));
    insta::assert_snapshot!(topology.describe().to_string());
}
