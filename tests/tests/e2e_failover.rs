//! End-to-end failures: an instance killed without a close (SIGKILL of its process), on both
//! brokers (`mock_`: librdkafka 2.12's mock cluster; `tansu_`: a Tansu 0.6.0 process), and
//! request errors and a broker outage injected on the mock cluster, on both adapters.
//! Nothing may be lost; duplicates are allowed only where at-least-once allows them.

mod e2e_support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use e2e_support::*;
use kstreams_io_common::Stores;
use rdkafka::Offset;
use rdkafka::mocking::MockCoordinator;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

const INPUT: &str = "input";
const OUTPUT: &str = "output";

fn topics(broker: &Broker) {
    broker.create_topic(INPUT, PARTITIONS);
    broker.create_topic(OUTPUT, PARTITIONS);
}

/// A child process, killed when dropped (also when the test fails before it kills it).
struct Instance(Child);

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The passthrough instance in a process of its own; returns once it printed `running`.
fn spawn_instance(broker: &Broker, app: &str, state_dir: &std::path::Path) -> Instance {
    let mut child = Command::new(env!("CARGO_BIN_EXE_e2e_passthrough_instance"))
        .args([broker.bootstrap().as_str(), INPUT, OUTPUT, app])
        .arg(state_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the instance process");
    let stdout = child.stdout.take().expect("its stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    match rx.recv_timeout(WAIT) {
        Ok(line) if line.trim() == "running" => Instance(child),
        Ok(line) => {
            let _ = child.kill();
            panic!(
                "the instance process did not start: {line:?}, {:?}",
                child.wait()
            );
        }
        Err(_) => {
            let _ = child.kill();
            panic!("the instance process not running after {WAIT:?}");
        }
    }
}

/// Which input record a value is: its partition and offset (from the produce acknowledgements).
fn offsets_by_value(input: &[Input], offsets: &[i64]) -> BTreeMap<Vec<u8>, (i32, i64)> {
    input
        .iter()
        .zip(offsets)
        .map(|((p, _, v), offset)| (v.clone(), (*p, *offset)))
        .collect()
}

/// Every input value appears in `output` at least once; returns how often each appeared.
fn assert_none_lost(input: &[Input], output: &[Output]) -> BTreeMap<Vec<u8>, usize> {
    let mut seen: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
    for record in output {
        *seen.entry(record.value.clone()).or_insert(0) += 1;
    }
    for (p, _, value) in input {
        assert!(
            seen.contains_key(value),
            "input record {} of partition {p} lost",
            String::from_utf8_lossy(value)
        );
    }
    assert_eq!(seen.len(), input.len(), "no output that was not input");
    seen
}

fn all_present(input: &[Input]) -> impl FnMut(&[Output]) -> bool + '_ {
    move |out: &[Output]| {
        let values: std::collections::BTreeSet<&[u8]> =
            out.iter().map(|o| o.value.as_slice()).collect();
        input.iter().all(|(_, _, v)| values.contains(v.as_slice()))
    }
}

/// Which instance joins the group first (and so becomes the group leader on both brokers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FirstMember {
    /// A, the one that is killed.
    Killed,
    /// B, the survivor.
    Survivor,
}

/// Instance A (its own process) and B (in this process) share the partitions; A is killed
/// with SIGKILL (no commit, no LeaveGroup). After A's session times out B takes A's
/// partitions and resumes them from A's last commit: every record reaches the output, and the
/// only records output twice are A's records at or after its last committed offset.
fn killed_instance_is_replaced(broker: Broker, first: FirstMember) {
    topics(&broker);
    let bootstrap = broker.bootstrap();
    let app = "e2e-failover";
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let start_b = || {
        Adapter::Tokio.start(
            passthrough_topology(INPUT, OUTPUT),
            streams_config(&broker, app, dirs[1].path()),
            Stores::Memory,
        )
    };
    let (mut a, b) = match first {
        FirstMember::Killed => {
            let a = spawn_instance(&broker, app, dirs[0].path());
            (a, start_b())
        }
        FirstMember::Survivor => {
            let b = start_b();
            wait_running(&b);
            (spawn_instance(&broker, app, dirs[0].path()), b)
        }
    };
    // Wait until B owns some but not all of the partitions (A has the rest).
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let owned: usize = b
            .local_thread_metadata()
            .iter()
            .map(|t| t.active_tasks.len())
            .sum();
        if b.state() == kstreams_io_common::StreamsState::Running && (1..4).contains(&owned) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "B never shared the partitions with A (owns {owned})"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let first = numbered_input(0, 600, 11);
    let first_offsets = produce(&bootstrap, INPUT, &first);
    read_until(&bootstrap, OUTPUT, Duration::ZERO, all_present(&first));

    a.0.kill().expect("kill A");
    a.0.wait().expect("reap A");
    // A can commit no more: what the group has now is A's last commit for A's partitions.
    let committed_at_kill: Vec<i64> = committed_offsets(&bootstrap, app, INPUT)
        .into_iter()
        .map(|offset| match offset {
            Offset::Offset(o) => o,
            _ => 0,
        })
        .collect();

    let second = numbered_input(first.len(), 400, 11);
    let second_offsets = produce(&bootstrap, INPUT, &second);
    let input: Vec<Input> = first.iter().chain(&second).cloned().collect();
    let offsets: Vec<i64> = first_offsets.into_iter().chain(second_offsets).collect();
    let output = read_until(
        &bootstrap,
        OUTPUT,
        Duration::from_secs(1),
        all_present(&input),
    );
    let seen = assert_none_lost(&input, &output);
    let origin = offsets_by_value(&input, &offsets);
    for (value, times) in &seen {
        if *times > 1 {
            let (p, offset) = origin[value];
            assert!(
                offset >= committed_at_kill[p as usize],
                "{} (offset {offset} of partition {p}) output {times} times but it is before \
                 the last commit {}",
                String::from_utf8_lossy(value),
                committed_at_kill[p as usize]
            );
        }
    }
    assert_order_per_input_partition(&dedup_keep_first(&output));
    close(&b);
    assert_committed_at_end(&bootstrap, app, INPUT, &end_offsets(&input, &offsets));
}

/// The output with each value's repeats removed (a replay repeats a tail already seen).
fn dedup_keep_first(output: &[Output]) -> Vec<Output> {
    let mut seen = std::collections::BTreeSet::new();
    output
        .iter()
        .filter(|o| seen.insert(o.value.clone()))
        .cloned()
        .collect()
}

/// Request errors the client must retry (NOT_LEADER on Produce and Fetch, coordinator errors
/// on the group and commit APIs), then the group coordinator moved, then a broker down for
/// three seconds while records flow. Phase 1 (errors answered, nothing written) must be
/// exactly once; phase 2 (a broker vanishes with requests in flight) at least once.
///
/// librdkafka 2.12's mock answers an injected FindCoordinator (v3) or JoinGroup (v5) error
/// with a null string where those versions have a non-nullable one (`host`,
/// `protocol_name`); the engine reports such a response as malformed, drops the connection
/// and retries — so those two injections test recovery from a malformed response rather than
/// the error code.
fn recovers_from_injected_errors(adapter: Adapter) {
    use RDKafkaRespErr::*;
    let broker = Broker::mock();
    topics(&broker);
    let mock = broker.as_mock();
    let bootstrap = broker.bootstrap();
    let app = "e2e-faults";
    mock.request_errors(
        RDKafkaApiKey::FindCoordinator,
        &[RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE; 2],
    );
    mock.request_errors(
        RDKafkaApiKey::JoinGroup,
        &[RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS],
    );
    mock.request_errors(
        RDKafkaApiKey::Fetch,
        &[RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; 3],
    );
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[
            RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
        ],
    );
    mock.request_errors(
        RDKafkaApiKey::OffsetCommit,
        &[
            RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
            RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
        ],
    );
    let state_dir = tempfile::tempdir().unwrap();
    let handle = adapter.start(
        passthrough_topology(INPUT, OUTPUT),
        streams_config(&broker, app, state_dir.path()),
        Stores::Memory,
    );
    wait_running(&handle);
    let first = numbered_input(0, 500, 7);
    let mut offsets = produce(&bootstrap, INPUT, &first);
    let output = read_exactly(&bootstrap, OUTPUT, first.len(), Duration::from_millis(500));
    assert_passthrough_exact(&first, &output);

    // The coordinator moves; then a broker goes down for a while with records in flight.
    mock.coordinator(MockCoordinator::Group(app.to_owned()), 3)
        .expect("move the coordinator");
    let second = numbered_input(first.len(), 500, 7);
    offsets.extend(produce(&bootstrap, INPUT, &second));
    mock.broker_down(1).expect("broker 1 down");
    std::thread::sleep(Duration::from_secs(3));
    mock.broker_up(1).expect("broker 1 up");
    let input: Vec<Input> = first.iter().chain(&second).cloned().collect();
    let output = read_until(
        &bootstrap,
        OUTPUT,
        Duration::from_secs(1),
        all_present(&input),
    );
    assert_none_lost(&input, &output);
    assert_order_per_input_partition(&dedup_keep_first(&output));
    close(&handle);
    assert_committed_at_end(&bootstrap, app, INPUT, &end_offsets(&input, &offsets));
}

#[test]
fn mock_killed_group_leader_is_replaced() {
    bounded(|| killed_instance_is_replaced(Broker::mock(), FirstMember::Killed));
}

#[test]
fn mock_killed_follower_is_replaced() {
    bounded(|| killed_instance_is_replaced(Broker::mock(), FirstMember::Survivor));
}

/// On Tansu only the follower is killed: Tansu 0.6.0 keeps a group leader whose session
/// expired as the leader of every later generation, so no survivor can ever complete a
/// rebalance (librdkafka's consumer is stuck the same way; `docs/decisions.md` §9).
#[test]
fn tansu_killed_follower_is_replaced() {
    bounded(|| killed_instance_is_replaced(Broker::tansu(), FirstMember::Survivor));
}

#[test]
fn mock_recovers_from_injected_errors_tokio() {
    bounded(|| recovers_from_injected_errors(Adapter::Tokio));
}

#[test]
fn mock_recovers_from_injected_errors_smol() {
    bounded(|| recovers_from_injected_errors(Adapter::Smol));
}
