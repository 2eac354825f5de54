use super::*;
use crate::error::ProcessError;
use crate::prelude::*;

fn words_source(
    b: &mut TopologyBuilder,
    name: &str,
    topic: &str,
) -> crate::topology::SourceHandle<String, String> {
    b.add_source(name, &[topic], StringSerde, StringSerde)
        .unwrap()
}

#[test]
fn duplicate_node_and_store_names_are_rejected() {
    let mut b = TopologyBuilder::new();
    let src = words_source(&mut b, "src", "in");
    assert_eq!(
        b.add_source::<String, String>("src", &["other"], StringSerde, StringSerde)
            .err(),
        Some(TopologyError::DuplicateName("src".into()))
    );
    b.add_store(StoreBuilder::key_value("s", StringSerde, I64Serde), &[])
        .unwrap();
    assert_eq!(
        b.add_store(StoreBuilder::key_value("s", StringSerde, I64Serde), &[])
            .err(),
        Some(TopologyError::DuplicateName("s".into()))
    );
    assert_eq!(
        b.map_values("src", &src, |v: &String| v.len() as i64).err(),
        Some(TopologyError::DuplicateName("src".into()))
    );
}

#[test]
fn parent_from_another_builder_is_unknown() {
    let mut other = TopologyBuilder::new();
    let foreign = words_source(&mut other, "foreign", "x");
    let mut b = TopologyBuilder::new();
    words_source(&mut b, "src", "in");
    let err = b
        .add_sink("sink", "out", &[&foreign], StringSerde, StringSerde)
        .err();
    assert_eq!(
        err,
        Some(TopologyError::UnknownParent {
            child: "sink".into(),
            parent: "foreign".into()
        })
    );
}

#[test]
fn declared_store_must_be_connected() {
    let mut b = TopologyBuilder::new();
    let src = words_source(&mut b, "src", "in");
    b.add_processor("count", &[&src], BatchCountAggregator::supplier("counts"))
        .unwrap();
    b.add_store(
        StoreBuilder::key_value("counts", StringSerde, I64Serde),
        &[],
    )
    .unwrap();
    assert_eq!(
        b.build().err(),
        Some(TopologyError::StoreNotConnected {
            processor: "count".into(),
            store: "counts".into()
        })
    );

    let mut b = TopologyBuilder::new();
    let src = words_source(&mut b, "src", "in");
    b.add_processor("count", &[&src], BatchCountAggregator::supplier("counts"))
        .unwrap();
    assert_eq!(
        b.build().err(),
        Some(TopologyError::UnknownStore("counts".into()))
    );
}

#[test]
fn stores_connect_only_to_known_processors() {
    let mut b = TopologyBuilder::new();
    words_source(&mut b, "src", "in");
    assert_eq!(
        b.add_store(
            StoreBuilder::key_value("s", StringSerde, I64Serde),
            &["nope"]
        )
        .err(),
        Some(TopologyError::UnknownNode("nope".into()))
    );
    assert_eq!(
        b.connect_store("s", "src").err(),
        Some(TopologyError::StoreOnNonProcessor {
            store: "s".into(),
            node: "src".into()
        })
    );
    assert_eq!(
        b.connect_store("missing", "src").err(),
        Some(TopologyError::UnknownStore("missing".into()))
    );
}

#[test]
fn cycles_are_rejected_with_their_path() {
    let mut b = TopologyBuilder::new();
    let src = words_source(&mut b, "src", "in");
    let a = b
        .filter("a", &src, |_: &Record<String, String>| true)
        .unwrap();
    let c = b
        .filter("c", &a, |_: &Record<String, String>| true)
        .unwrap();
    b.connect(&c, &a).unwrap();
    assert_eq!(
        b.build().err(),
        Some(TopologyError::Cycle(vec![
            "a".into(),
            "c".into(),
            "a".into()
        ]))
    );
}

#[test]
fn a_topic_read_by_two_sources_is_rejected() {
    let mut b = TopologyBuilder::new();
    words_source(&mut b, "one", "in");
    let err = b
        .add_source::<String, String>("two", &["x", "in"], StringSerde, StringSerde)
        .err();
    assert_eq!(
        err,
        Some(TopologyError::TopicConsumedTwice {
            topic: "in".into(),
            first: "one".into(),
            second: "two".into()
        })
    );
}

#[test]
fn empty_parents_sources_and_topologies_are_rejected() {
    let mut b = TopologyBuilder::new();
    let parents: &[&dyn Upstream<String, String>] = &[];
    assert!(matches!(
        b.add_sink("sink", "out", parents, StringSerde, StringSerde),
        Err(TopologyError::Disconnected(..))
    ));
    assert!(matches!(
        b.add_source::<String, String>("src", &[], StringSerde, StringSerde),
        Err(TopologyError::Disconnected(..))
    ));
    assert_eq!(
        TopologyBuilder::new().build().err(),
        Some(TopologyError::NoSource)
    );
}

#[test]
fn subtopologies_split_on_topics_and_join_on_shared_stores() {
    let mut b = TopologyBuilder::new();
    let a = words_source(&mut b, "a", "ta");
    let pa = b
        .add_processor("pa", &[&a], RecordCountAggregator::supplier("shared"))
        .unwrap();
    b.add_sink("to-mid", "mid", &[&pa], StringSerde, I64Serde)
        .unwrap();
    let c = words_source(&mut b, "c", "tc");
    // Shares store "shared" with `pa`, so `c` joins sub-topology 0.
    b.add_processor("pc", &[&c], RecordCountAggregator::supplier("shared"))
        .unwrap();
    b.add_store(
        StoreBuilder::key_value("shared", StringSerde, I64Serde),
        &["pa", "pc"],
    )
    .unwrap();
    let mid = b
        .add_source::<String, i64>("mid-src", &["mid"], StringSerde, I64Serde)
        .unwrap();
    b.add_sink("out", "final", &[&mid], StringSerde, I64Serde)
        .unwrap();
    let t = b.build().unwrap();
    let subs = t.subtopologies();
    assert_eq!(subs.len(), 2);
    assert_eq!(subs[0].nodes, vec!["a", "pa", "to-mid", "c", "pc"]);
    assert_eq!(subs[0].source_topics, vec!["ta", "tc"]);
    assert_eq!(subs[0].stores, vec!["shared"]);
    assert_eq!(subs[1].source_topics, vec!["mid"]);
    assert_eq!(subs[1].sink_topics, vec!["final"]);
    assert_eq!(t.source_topics(), vec!["ta", "tc", "mid"]);
    assert_eq!(t.sink_topics(), vec!["final", "mid"]);

    let counts = |ta: i32, tc: i32| {
        move |topic: &str| match topic {
            "ta" => Some(ta),
            "tc" => Some(tc),
            "mid" => Some(3),
            _ => None,
        }
    };
    assert_eq!(t.partition_counts(counts(4, 4)).unwrap(), vec![4, 3]);
    assert!(matches!(
        t.partition_counts(counts(4, 2)),
        Err(TopologyError::NotCoPartitioned { subtopology: 0, .. })
    ));
    assert_eq!(
        t.partition_counts(|topic| (topic != "mid").then_some(1)),
        Err(TopologyError::MissingSourceTopic("mid".into()))
    );
}

#[test]
fn describe_lists_nodes_edges_and_stores() {
    let mut b = TopologyBuilder::new();
    let src = words_source(&mut b, "src", "in");
    let count = b
        .add_processor("count", &[&src], BatchCountAggregator::supplier("counts"))
        .unwrap();
    b.add_store(
        StoreBuilder::key_value("counts", StringSerde, I64Serde),
        &["count"],
    )
    .unwrap();
    b.add_sink("sink", "out", &[&count], StringSerde, I64Serde)
        .unwrap();
    let text = b.build().unwrap().describe().to_string();
    assert_eq!(
        text,
        "Topologies:\n   Sub-topology: 0\n    Source: src (topics: [in])\n      --> count\n    Processor: count (stores: [counts])\n      --> sink\n      <-- src\n    Sink: sink (topic: out)\n      <-- count\n"
    );
}

#[test]
fn a_processor_may_have_two_parents_of_the_same_type() {
    let mut b = TopologyBuilder::new();
    let x = words_source(&mut b, "x", "tx");
    let y = words_source(&mut b, "y", "ty");
    let merge = b
        .add_processor("merge", &[&x, &y], || {
            crate::processor::Peek::new(|_: &Record<String, String>| {})
        })
        .unwrap();
    b.add_sink("sink", "out", &[&merge], StringSerde, StringSerde)
        .unwrap();
    let t = b.build().unwrap();
    assert_eq!(t.subtopologies().len(), 1);
    assert!(t.describe().to_string().contains("<-- x, y"));
}

#[test]
fn process_error_keeps_first_offset_and_innermost_node() {
    let e = ProcessError::msg("boom")
        .at_offset(Some(3))
        .at_offset(Some(9))
        .in_node("inner")
        .in_node("outer");
    assert_eq!(e.offset(), Some(3));
    assert_eq!(e.node(), Some("inner"));
}
