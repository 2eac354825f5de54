//! Ctrl-C / SIGTERM in the examples: the running `batch_count` example (as a process of its
//! own, `src/bin/example_batch_count.rs`) closes cleanly on SIGTERM: it commits what it
//! processed and exits 0, long before its 30 s commit interval would have committed.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[path = "../examples/batch_count.rs"]
#[allow(dead_code)] // The test uses its support functions, not its run paths.
mod batch_count;

use batch_count::support;
use rdkafka::Offset;
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;

const INPUT: &str = "signal-in";
const OUTPUT: &str = "signal-out";
const APPLICATION: &str = "signal-count";
const PARTITIONS: i32 = 3;

/// Sends `signal` (`TERM`, `INT`) to process `pid` with kill(1).
fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

fn committed_total(bootstrap: &str) -> i64 {
    let consumer =
        kstreams_tests::reader::from_beginning(bootstrap, APPLICATION, INPUT, PARTITIONS, &[])
            .expect("consumer");
    kstreams_tests::reader::committed_offsets(&consumer, INPUT, PARTITIONS)
        .expect("committed offsets")
        .into_iter()
        .map(|offset| match offset {
            Offset::Offset(n) => n,
            _ => 0,
        })
        .sum()
}

/// Reads the output until every key's latest count is its number of input records: all of
/// `sample` is processed (within 30 s).
fn wait_for_final_counts(bootstrap: &str, sample: &[(Vec<u8>, Vec<u8>)]) {
    let mut expected: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
    for (key, _) in sample {
        *expected.entry(key.clone()).or_default() += 1;
    }
    let consumer =
        kstreams_tests::reader::from_beginning(bootstrap, "signal-reader", OUTPUT, PARTITIONS, &[])
            .expect("output reader");
    let mut latest: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while latest != expected {
        assert!(
            Instant::now() < deadline,
            "not every record processed within 30 s: {latest:?}"
        );
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.expect("read the output");
            let count = message
                .payload()
                .and_then(|v| <[u8; 8]>::try_from(v).ok())
                .map(i64::from_be_bytes)
                .expect("an 8-byte count");
            latest.insert(message.key().unwrap_or_default().to_vec(), count);
        }
    }
}

fn closes_cleanly_on(signal: &str) {
    let tansu = kstreams_tests::tansu::Tansu::start()
        .unwrap_or_else(|e| panic!("the Tansu broker this test needs did not start: {e}"));
    let bootstrap = tansu.bootstrap();
    for topic in [INPUT, OUTPUT] {
        support::create_topic(&bootstrap, topic, PARTITIONS).expect("create topic");
    }
    let sample = batch_count::sample();
    support::produce(&bootstrap, INPUT, &sample).expect("produce");
    let state_dir = tempfile::tempdir().unwrap();
    // No --exit-when-idle: it runs until a signal. Default 30 s commit interval.
    let mut child = Command::new(env!("CARGO_BIN_EXE_example_batch_count"))
        .args([
            "--bootstrap",
            &bootstrap,
            "--input",
            INPUT,
            "--output",
            OUTPUT,
        ])
        .args(["--application-id", APPLICATION, "--state-dir"])
        .arg(state_dir.path())
        .args(["--store", "memory", "--logging", "off"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the example");
    let (lines_tx, lines) = mpsc::channel();
    let stderr = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("example: {line}");
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    // Running, then every record processed (its output read back).
    let mut running = false;
    while !running {
        let line = lines
            .recv_timeout(Duration::from_secs(60).saturating_sub(started.elapsed()))
            .expect("the example did not reach Running within 60 s");
        running = line.contains("-> Running");
    }
    wait_for_final_counts(&bootstrap, &sample);
    assert_eq!(
        committed_total(&bootstrap),
        0,
        "nothing commits before 30 s on its own"
    );
    send_signal(child.id(), signal);
    let signalled = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(20),
            "the example did not exit within 20 s of SIG{signal}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status after SIG{signal}: {status}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "ran into the commit interval; the commit below would not prove the close"
    );
    let said: Vec<String> = lines.try_iter().collect();
    assert!(
        said.iter().any(|l| l.contains("signal received")),
        "no signal message: {said:?}"
    );
    assert_eq!(
        committed_total(&bootstrap),
        sample.len() as i64,
        "the close after SIG{signal} committed every processed record"
    );
    // It left the group (LeaveGroup), rather than leaving it to expire after 45 s.
    let consumer = kstreams_tests::reader::from_beginning(&bootstrap, "probe", INPUT, 1, &[])
        .expect("consumer");
    let groups = consumer
        .fetch_group_list(Some(APPLICATION), Duration::from_secs(10))
        .expect("describe the group");
    let group = groups.groups().first().expect("the group is known");
    assert!(
        group.members().is_empty(),
        "members after the close: {} (state {})",
        group.members().len(),
        group.state()
    );
}

#[test]
fn sigterm_commits_and_exits_cleanly() {
    closes_cleanly_on("TERM");
}

#[test]
fn ctrl_c_commits_and_exits_cleanly() {
    closes_cleanly_on("INT");
}
