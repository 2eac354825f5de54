//! Runs `examples/wordcount.rs` in process in its no-bootstrap mode (an in-process mock
//! cluster, sample lines, a repartition topic between its two sub-topologies) and checks the
//! final count of every word.

#[allow(dead_code)]
#[path = "../examples/wordcount.rs"]
mod wordcount;

use std::collections::BTreeMap;
use std::time::Duration;

use wordcount::support::{self, Args};

/// Bound of each run (`--exit-when-idle 3`: the first counts need two hops, through the
/// repartition topic, so a 1 s idle limit could end a slow run before any output).
const TIMEOUT: Duration = Duration::from_secs(90);

fn run_bounded(args: &[&str]) -> BTreeMap<Vec<u8>, i64> {
    kstreams_tests::bounded::init_test_logging();
    let args = Args::parse("wordcount", "wordcount", args.iter().map(|a| a.to_string()))
        .expect("arguments");
    kstreams_tests::bounded::bounded("the example", TIMEOUT, move || {
        support::run(&wordcount::WORDCOUNT, &args)
    })
    .expect("the example failed")
}

/// The counts, written out by hand from the four sample lines (25 rounds each).
fn expected() -> BTreeMap<Vec<u8>, i64> {
    [
        ("the", 7),
        ("quick", 2),
        ("brown", 2),
        ("fox", 4),
        ("jumps", 2),
        ("over", 2),
        ("lazy", 2),
        ("dog", 3),
        ("sleeps", 1),
        ("and", 2),
        ("runs", 1),
        ("a", 2),
        ("meet", 1),
        ("cat", 2),
    ]
    .into_iter()
    .map(|(word, per_round)| {
        (
            word.as_bytes().to_vec(),
            per_round * wordcount::SAMPLE_ROUNDS as i64,
        )
    })
    .collect()
}

#[test]
fn words_are_split_on_punctuation_and_lower_cased() {
    let words: Vec<String> = wordcount::words("The dog sleeps, and the fox's run.").collect();
    assert_eq!(
        words,
        ["the", "dog", "sleeps", "and", "the", "fox's", "run"]
    );
}

#[test]
fn no_bootstrap_batch_mode_on_lmdb_counts_every_word() {
    assert_eq!(run_bounded(&["--exit-when-idle", "3"]), expected());
}

#[test]
fn no_bootstrap_record_mode_in_memory_on_smol_counts_every_word() {
    let counts = run_bounded(&[
        "--mode",
        "record",
        "--store",
        "memory",
        "--runtime",
        "smol",
        "--exit-when-idle",
        "3",
    ]);
    assert_eq!(counts, expected());
}

/// With `--bootstrap` against a Tansu broker: the example creates its repartition topic with
/// CreateTopics (3 partitions, like the input) and counts every word of the produced lines.
#[test]
fn with_bootstrap_against_tansu_creates_the_repartition_topic_and_counts() {
    let tansu = kstreams_tests::tansu::Tansu::start()
        .unwrap_or_else(|e| panic!("the Tansu broker this test needs did not start: {e}"));
    let bootstrap = tansu.bootstrap();
    for topic in ["text", "word-counts"] {
        support::create_topic(&bootstrap, topic, 3).expect("create topic");
    }
    support::produce(&bootstrap, "text", &wordcount::sample()).expect("produce");
    let state_dir = tempfile::tempdir().unwrap();
    let counts = run_bounded(&[
        "--bootstrap",
        &bootstrap,
        "--input",
        "text",
        "--output",
        "word-counts",
        "--application-id",
        "wc-on-tansu",
        "--state-dir",
        state_dir.path().to_str().unwrap(),
        "--exit-when-idle",
        "3",
    ]);
    assert_eq!(counts, expected());
}
