//! Runs `examples/batch_count.rs` in process (its functions, not a cargo subprocess) in its
//! no-bootstrap mode: an in-process mock cluster, sample input, and the final counts.

#[allow(dead_code)]
#[path = "../examples/batch_count.rs"]
mod batch_count;

use std::time::Duration;

use batch_count::support::{self, Args, Mode, RuntimeChoice};

/// Bound of each run (the example exits after 1 s without new output once running).
const TIMEOUT: Duration = Duration::from_secs(90);

fn run_bounded(args: Vec<&str>) -> std::collections::BTreeMap<Vec<u8>, i64> {
    kstreams_tests::bounded::init_test_logging();
    let args = parse(args).expect("arguments");
    kstreams_tests::bounded::bounded("the example", TIMEOUT, move || {
        support::run(&batch_count::BATCH_COUNT, &args)
    })
    .expect("the example failed")
}

/// The expected final counts of the sample input (the example's own producer computes the same
/// map; recomputed here from its documented key scheme).
fn expected() -> std::collections::BTreeMap<Vec<u8>, i64> {
    let mut expected = std::collections::BTreeMap::new();
    for i in 0..batch_count::SAMPLE_RECORDS {
        *expected
            .entry(format!("word-{}", (i * 7) % 13).into_bytes())
            .or_insert(0) += 1;
    }
    expected
}

fn parse(args: Vec<&str>) -> Result<Args, String> {
    Args::parse(
        "batch_count",
        "batch-count",
        args.into_iter().map(String::from),
    )
}

#[test]
fn no_bootstrap_batch_mode_with_lmdb_on_tokio_prints_exact_counts() {
    let args = parse(Vec::new()).unwrap();
    assert_eq!(args.mode, Mode::Batch);
    assert_eq!(args.runtime, RuntimeChoice::Tokio);
    assert!(args.lmdb);
    let counts = run_bounded(vec!["--exit-when-idle", "1"]);
    assert_eq!(counts, expected());
}

#[test]
fn no_bootstrap_record_mode_in_memory_on_smol_prints_exact_counts() {
    let counts = run_bounded(vec![
        "--mode",
        "record",
        "--store",
        "memory",
        "--runtime",
        "smol",
        "--exit-when-idle",
        "1",
    ]);
    assert_eq!(counts, expected());
}

/// A Tansu broker with topics `input` and `output` (3 partitions) and the sample produced to
/// `input` by rdkafka; its bootstrap address.
fn tansu_with_sample(input: &str, output: &str) -> (kstreams_tests::tansu::Tansu, String) {
    let tansu = kstreams_tests::tansu::Tansu::start()
        .unwrap_or_else(|e| panic!("the Tansu broker this test needs did not start: {e}"));
    let bootstrap = tansu.bootstrap();
    for topic in [input, output] {
        support::create_topic(&bootstrap, topic, 3).expect("create topic");
    }
    support::produce(&bootstrap, input, &batch_count::sample()).expect("produce");
    (tansu, bootstrap)
}

/// With `--bootstrap` against a Tansu broker (topics made and input produced beforehand by
/// rdkafka), in record mode on the memory store under smol: the printed counts are exact.
#[test]
fn with_bootstrap_against_tansu_counts_exactly() {
    let (_tansu, bootstrap) = tansu_with_sample("lines-in", "counts-out");
    let state_dir = tempfile::tempdir().unwrap();
    let counts = run_bounded(vec![
        "--bootstrap",
        &bootstrap,
        "--input",
        "lines-in",
        "--output",
        "counts-out",
        "--application-id",
        "count-on-tansu",
        "--state-dir",
        state_dir.path().to_str().unwrap(),
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

/// With `--bootstrap` against a librdkafka mock cluster started outside the example and
/// without the version caps the other tests set: the mock cannot parse JoinGroup v6, so the
/// engine has to fall back to the non-flexible group APIs by itself; the counts are exact.
#[test]
fn with_bootstrap_against_an_uncapped_mock_falls_back_and_counts_exactly() {
    let mock = kstreams_tests::mock::mock_cluster_as_shipped(3).expect("mock cluster");
    let bootstrap = mock.bootstrap_servers();
    // The mock serves no CreateTopics: the store's changelog is made beforehand, as a user
    // of such a broker would.
    for topic in [
        "lines-in",
        "counts-out",
        "count-on-uncapped-mock-counts-changelog",
    ] {
        mock.create_topic(topic, 3, 1).expect("create topic");
    }
    support::produce(&bootstrap, "lines-in", &batch_count::sample()).expect("produce");
    let state_dir = tempfile::tempdir().unwrap();
    let counts = run_bounded(vec![
        "--bootstrap",
        &bootstrap,
        "--input",
        "lines-in",
        "--output",
        "counts-out",
        "--application-id",
        "count-on-uncapped-mock",
        "--state-dir",
        state_dir.path().to_str().unwrap(),
        "--exit-when-idle",
        "3",
    ]);
    assert_eq!(counts, expected());
}

#[test]
fn bad_arguments_are_refused() {
    assert!(parse(vec!["--bootstrap", "h:1"]).is_err());
    assert!(parse(vec!["--mode", "stream"]).is_err());
    assert!(parse(vec!["--nope"]).is_err());
    assert!(parse(vec!["--exit-when-idle", "0"]).is_err());
    assert!(parse(vec!["--store", "rocksdb"]).is_err());
    assert!(parse(vec!["--runtime", "glommio"]).is_err());
}

/// `--num-standby-replicas N` sets `num.standby.replicas`, over `--config`'s, and is checked
/// as the property is.
#[test]
fn the_standby_replicas_flag_sets_the_property() {
    let standbys = |args: &Args| {
        args.properties
            .iter()
            .filter(|(key, _)| key == "num.standby.replicas")
            .map(|(_, value)| value.clone())
            .collect::<Vec<_>>()
    };
    let args = parse(vec!["--num-standby-replicas", "1"]).unwrap();
    assert_eq!(standbys(&args), ["1"]);
    let file = properties_file("num.standby.replicas=2\n");
    let path = file.path().to_str().unwrap();
    assert_eq!(standbys(&parse(vec!["--config", path]).unwrap()), ["2"]);
    let args = parse(vec!["--config", path, "--num-standby-replicas", "1"]).unwrap();
    assert_eq!(standbys(&args), ["1"], "the flag wins");
    let error = parse(vec!["--num-standby-replicas", "-1"]).unwrap_err();
    assert!(error.contains("num.standby.replicas"), "{error}");
}

fn properties_file(text: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    file
}

/// `--config FILE`: the properties configure the application; a bad file is refused before
/// anything starts, and a cluster the example's own librdkafka clients cannot reach (TLS,
/// SCRAM) refuses `--exit-when-idle`, which needs them.
#[test]
fn config_files_are_read_and_checked() {
    let good = properties_file(
        "bootstrap.servers=h:1\napplication.id=from-file\nstate.dir=/tmp/x\n\
         commit.interval.ms=250\nprocessing.guarantee=exactly_once_v2\n",
    );
    let path = good.path().to_str().unwrap();
    let args = parse(vec!["--config", path, "--input", "i", "--output", "o"]).unwrap();
    assert_eq!(args.bootstrap.as_deref(), Some("h:1"));
    assert_eq!(args.application_id, "from-file");
    assert_eq!(
        args.state_dir.as_deref(),
        Some(std::path::Path::new("/tmp/x"))
    );
    assert_eq!(
        args.guarantee,
        kstreams_core::engine::ProcessingGuarantee::ExactlyOnce
    );
    // Flags win over the file.
    let args = parse(vec![
        "--config",
        path,
        "--input",
        "i",
        "--output",
        "o",
        "--application-id",
        "flag",
    ])
    .unwrap();
    assert_eq!(args.application_id, "flag");

    let typo = properties_file(
        "bootstrap.servers=h:1\ncommit.intervall.ms=5\napplication.id=a\nstate.dir=/tmp/s\n",
    );
    let typo_path = typo.path().to_str().unwrap();
    let error = parse(vec!["--config", typo_path, "--input", "i", "--output", "o"]).unwrap_err();
    assert!(
        error.contains("commit.intervall.ms") && error.contains("line 2"),
        "{error}"
    );
    let missing = parse(vec!["--config", "/nonexistent/kstreams.properties"]).unwrap_err();
    assert!(missing.contains("cannot read"), "{missing}");
    // Without the flag, the file's guarantee is checked as the library checks it.
    let eos_v1 = properties_file(
        "bootstrap.servers=h:1\napplication.id=a\nstate.dir=/tmp/s\nprocessing.guarantee=exactly_once\n",
    );
    let error = parse(vec![
        "--config",
        eos_v1.path().to_str().unwrap(),
        "--input",
        "i",
        "--output",
        "o",
    ])
    .unwrap_err();
    assert!(error.contains("processing.guarantee"), "{error}");
    let flag_wins = parse(vec![
        "--config",
        eos_v1.path().to_str().unwrap(),
        "--input",
        "i",
        "--output",
        "o",
        "--processing-guarantee",
        "at-least-once",
    ])
    .unwrap();
    assert_eq!(
        flag_wins.guarantee,
        kstreams_core::engine::ProcessingGuarantee::AtLeastOnce
    );
    let secret = properties_file(
        "bootstrap.servers=h:1\napplication.id=a\nstate.dir=/tmp/s\nsecurity.protocol=SASL_PLAINTEXT\n\
         sasl.mechanism=PLAIN\nsasl.username=u\nsasl.password=hunter2\n",
    );
    let args = parse(vec![
        "--config",
        secret.path().to_str().unwrap(),
        "--input",
        "i",
        "--output",
        "o",
    ])
    .unwrap();
    assert!(!format!("{args:?}").contains("hunter2"), "{args:?}");
    let scram = properties_file(
        "bootstrap.servers=h:1\napplication.id=a\nstate.dir=/tmp/s\nsecurity.protocol=SASL_PLAINTEXT\n\
         sasl.mechanism=SCRAM-SHA-512\nsasl.username=u\nsasl.password=p\n",
    );
    let error = parse(vec![
        "--config",
        scram.path().to_str().unwrap(),
        "--input",
        "i",
        "--output",
        "o",
        "--exit-when-idle",
        "3",
    ])
    .unwrap_err();
    assert!(error.contains("--exit-when-idle"), "{error}");
}

/// `--config` against a Tansu broker: the file's commit interval and ids drive the run, the
/// printed counts are exact.
#[test]
fn with_a_config_file_against_tansu_counts_exactly() {
    let (_tansu, bootstrap) = tansu_with_sample("conf-in", "conf-out");
    let state_dir = tempfile::tempdir().unwrap();
    let config = properties_file(&format!(
        "# the example's connection\nbootstrap.servers={bootstrap}\n\
         application.id=count-from-config\nstate.dir={}\ncommit.interval.ms=200\n\
         client.id=config-test\n",
        state_dir.path().display()
    ));
    let counts = run_bounded(vec![
        "--config",
        config.path().to_str().unwrap(),
        "--input",
        "conf-in",
        "--output",
        "conf-out",
        "--exit-when-idle",
        "3",
    ]);
    assert_eq!(counts, expected());
}
