//! Static membership (KIP-345) on a real broker: two instances with `group.instance.id`s run
//! a passthrough; one is closed and started again under the same id well within the session
//! timeout. It must get its tasks back in the same group generation (each engine reports the
//! generation it synced, `Event::GroupSynced`), the other instance must see no revocation and
//! no assignment, and the output must hold every input record exactly once.
//!
//! Which brokers here implement KIP-345 (probed; docs/decisions.md, "Static membership"):
//! - crabka-broker 0.3.0 and Tansu 0.6.0 get this scenario right (the restarted member gets
//!   the same member id back, its assignment, and the generation stays), so it runs on both.
//!   Neither fences: a second instance started under an id in use gets the same member id
//!   and both run the same tasks; and neither expires a static member after the session
//!   timeout (crabka keeps it for good, its tasks run nowhere; Tansu revoked the survivor's
//!   tasks and assigned nothing for 20 s). Fencing and expiry are tested on the simulated
//!   cluster only (`engine_static.rs`), which follows Kafka's coordinator.
//! - librdkafka 2.12's mock cluster does not implement it at all: it stores the instance id
//!   (for leader election) but adds the restarted member as a new one and rebalances, after
//!   the old member's session expired (the restart took 39 s with a 20 s session).

mod e2e_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e_support::*;
use kstreams_core::engine::Event;
use kstreams_io_common::{Stores, StreamsConfig, StreamsHandle};

const INPUT: &str = "static-in";
const OUTPUT: &str = "static-out";
const APP: &str = "static-app";
/// Long enough that the restart (a close and a start, a second or two) is well within it.
const SESSION: Duration = Duration::from_secs(20);

/// What an instance's engine reported: `(generation synced, member id)` and task moves.
#[derive(Debug, Default)]
struct Seen {
    synced: Vec<(i32, String)>,
    moves: Vec<String>,
}

fn start(config: StreamsConfig, seen: Arc<Mutex<Seen>>) -> StreamsHandle {
    let topology = passthrough_topology(INPUT, OUTPUT);
    let mut streams = kstreams_tokio::KafkaStreams::new(topology, config, Stores::Memory)
        .expect("the application");
    streams.set_event_listener(move |_, event| {
        let mut seen = seen.lock().expect("not poisoned");
        match event {
            Event::GroupSynced {
                generation,
                member_id,
            } => seen.synced.push((*generation, member_id.clone())),
            Event::TasksAssigned(t) => seen.moves.push(format!("assigned {t:?}")),
            Event::TasksRevoked(t) => seen.moves.push(format!("revoked {t:?}")),
            Event::TasksLost(t) => seen.moves.push(format!("lost {t:?}")),
            _ => {}
        }
    });
    streams.start().expect("started")
}

fn tasks(handle: &StreamsHandle) -> Vec<String> {
    handle
        .local_thread_metadata()
        .into_iter()
        .flat_map(|t| t.active_tasks)
        .map(|t| t.to_string())
        .collect()
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + WAIT;
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} after {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn restart_within_the_session_timeout(broker: Broker) {
    let bootstrap = broker.bootstrap();
    broker.create_topic(INPUT, PARTITIONS);
    broker.create_topic(OUTPUT, PARTITIONS);
    let state = tempfile::tempdir().expect("state dir");
    let config = |instance: &str| {
        let mut config = streams_config(&broker, APP, state.path());
        config.engine.session_timeout = SESSION.into();
        config.engine.group_instance_id = Some(instance.to_owned());
        config
    };
    let first = numbered_input(0, 400, 10);
    let mut offsets = produce(&bootstrap, INPUT, &first);

    let seen_a = Arc::new(Mutex::new(Seen::default()));
    let seen_b = Arc::new(Mutex::new(Seen::default()));
    let a = start(config("instance-a"), seen_a.clone());
    let b = start(config("instance-b"), seen_b.clone());
    wait_running(&a);
    wait_running(&b);
    wait_for("two tasks each", || {
        tasks(&a).len() == 2 && tasks(&b).len() == 2
    });
    read_exactly(&bootstrap, OUTPUT, first.len(), Duration::ZERO);
    let a_tasks = tasks(&a);
    let b_tasks = tasks(&b);
    let (generation, a_member) = seen_a.lock().unwrap().synced.last().cloned().unwrap();
    assert_eq!(
        seen_b.lock().unwrap().synced.last().map(|s| s.0),
        Some(generation),
        "both in one generation"
    );
    let b_moves_before = seen_b.lock().unwrap().moves.len();

    close(&a);
    let closed = std::time::Instant::now();
    let seen_restarted = Arc::new(Mutex::new(Seen::default()));
    let restarted = start(config("instance-a"), seen_restarted.clone());
    wait_running(&restarted);
    wait_for("the restarted instance's tasks", || {
        tasks(&restarted).len() == 2
    });
    let back_after = closed.elapsed();
    assert!(back_after < SESSION, "back after {back_after:?}");
    assert_eq!(tasks(&restarted), a_tasks, "the same tasks back");
    let (restarted_generation, restarted_member) = seen_restarted.lock().unwrap().synced[0].clone();
    assert_eq!(
        restarted_generation, generation,
        "no rebalance: the generation is unchanged (member {a_member} → {restarted_member})"
    );

    let second = numbered_input(400, 400, 10);
    offsets.extend(produce(&bootstrap, INPUT, &second));
    let input: Vec<Input> = first.into_iter().chain(second).collect();
    let output = read_exactly(&bootstrap, OUTPUT, input.len(), Duration::from_secs(1));
    assert_passthrough_exact(&input, &output);
    assert_committed_at_end(&bootstrap, APP, INPUT, &end_offsets(&input, &offsets));

    let b_seen = seen_b.lock().unwrap();
    assert_eq!(
        b_seen.moves[b_moves_before..],
        [] as [String; 0],
        "the other instance saw no rebalance"
    );
    assert_eq!(b_seen.synced.last().map(|s| s.0), Some(generation));
    drop(b_seen);
    assert_eq!(tasks(&b), b_tasks);
    let restarted_seen = seen_restarted.lock().unwrap();
    assert_eq!(restarted_seen.synced.len(), 1, "{restarted_seen:?}");
    drop(restarted_seen);
    close(&restarted);
    close(&b);
}

#[test]
fn crabka_static_member_restarted_within_the_session_timeout_keeps_the_generation() {
    bounded(|| restart_within_the_session_timeout(Broker::crabka()));
}

#[test]
fn tansu_static_member_restarted_within_the_session_timeout_keeps_the_generation() {
    bounded(|| restart_within_the_session_timeout(Broker::tansu()));
}
