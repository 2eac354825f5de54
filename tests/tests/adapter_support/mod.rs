//! Shared by the adapter tests: the simulated cluster served over real loopback TCP, the
//! count topology, and checks of its output.
//!
//! [`SimServer`] binds one listener per simulated broker on `127.0.0.1:0` and runs one plain
//! OS thread (no async runtime, so every adapter and runtime is tested against the same
//! server): it accepts sockets and maps each to [`SimCluster::connect`] of its broker, feeds
//! the bytes it reads to [`SimCluster::receive`], writes whatever [`SimCluster::poll_send`]
//! has, closes sockets the simulator closed, and calls [`SimCluster::advance`] with the wall
//! clock (epoch milliseconds, like the engines' clock). The simulator advertises brokers as
//! `sim-<id>:<9092 + id>`; [`SimServer::configure`] maps those names to the listeners'
//! ports through `StreamsConfig::map_broker_address`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kstreams_core::engine::EngineConfig;
use kstreams_core::prelude::*;
use kstreams_core::record::TopicPartition;
use kstreams_core::task::TaskId;
use kstreams_core::topology::Topology;
use kstreams_io_common::{KafkaStreams, Runtime, Stores, StreamsConfig, StreamsState};
use kstreams_store_lmdb::{LmdbConfig, LmdbEnvironment};
use kstreams_tests::sim::{ConnId, SimCluster, SimRecord};

/// Input topic of the count topology.
pub const INPUT: &str = "words";
/// Output topic of the count topology.
pub const OUTPUT: &str = "word-counts";
/// Partitions of both topics.
pub const PARTITIONS: i32 = 4;
/// Input records per partition.
pub const PER_PARTITION: usize = 50;
/// Bound of every wait in these tests (a test fails loudly past it, never hangs).
pub const TEST_TIMEOUT: Duration = Duration::from_secs(60);

fn epoch_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

struct ServedConn {
    id: ConnId,
    stream: TcpStream,
    out: Vec<u8>,
    /// The simulator closed it: close the socket once `out` is written.
    closing: bool,
    dead: bool,
}

/// The simulated cluster behind loopback listeners. Stops (and closes every socket) on drop.
pub struct SimServer {
    sim: Arc<Mutex<SimCluster>>,
    ports: Vec<u16>,
    accepted: Arc<Vec<AtomicUsize>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SimServer {
    /// Serves `sim` (every broker it has) on ephemeral loopback ports.
    pub fn start(sim: SimCluster) -> Self {
        let brokers = sim.broker_count();
        let mut listeners = Vec::new();
        let mut ports = Vec::new();
        for id in 0..brokers {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
            listener
                .set_nonblocking(true)
                .expect("nonblocking listener");
            ports.push(listener.local_addr().expect("local addr").port());
            listeners.push((id as i32, listener));
        }
        let sim = Arc::new(Mutex::new(sim));
        let stop = Arc::new(AtomicBool::new(false));
        let accepted: Arc<Vec<AtomicUsize>> =
            Arc::new((0..brokers).map(|_| AtomicUsize::new(0)).collect());
        let thread = {
            let sim = sim.clone();
            let stop = stop.clone();
            let accepted = accepted.clone();
            std::thread::Builder::new()
                .name("sim-server".into())
                .spawn(move || serve(&sim, &listeners, &accepted, &stop))
                .expect("spawn sim server")
        };
        Self {
            sim,
            ports,
            accepted,
            stop,
            thread: Some(thread),
        }
    }

    /// The cluster (lock held while the guard lives: keep it short).
    pub fn sim(&self) -> MutexGuard<'_, SimCluster> {
        self.sim.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// TCP connections accepted by broker `id`'s listener so far (also those refused because
    /// the broker is down).
    pub fn accepted(&self, id: usize) -> usize {
        self.accepted
            .get(id)
            .map_or(0, |a| a.load(Ordering::Acquire))
    }

    /// `sim-0:9092`, the advertised address of broker 0 (mapped by [`Self::configure`]).
    pub fn bootstrap(&self) -> String {
        "sim-0:9092".into()
    }

    /// Each broker's advertised `host:port` with the loopback port it is served on.
    pub fn listeners(&self) -> Vec<(String, u16)> {
        let sim = self.sim();
        self.ports
            .iter()
            .enumerate()
            .map(|(id, port)| {
                let (host, advertised_port) = sim.broker_address(id as i32).expect("broker");
                (format!("{host}:{advertised_port}"), *port)
            })
            .collect()
    }

    /// Maps every advertised broker address to its loopback listener.
    pub fn configure(&self, mut config: StreamsConfig) -> StreamsConfig {
        let sim = self.sim();
        for (id, port) in self.ports.iter().enumerate() {
            let (host, advertised_port) = sim.broker_address(id as i32).expect("broker");
            config = config.map_broker_address(
                format!("{host}:{advertised_port}"),
                format!("127.0.0.1:{port}"),
            );
        }
        config
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(
    sim: &Mutex<SimCluster>,
    listeners: &[(i32, TcpListener)],
    accepted: &[AtomicUsize],
    stop: &AtomicBool,
) {
    let mut conns: Vec<ServedConn> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::Acquire) {
        let mut busy = false;
        let now = epoch_ms();
        let mut sim = sim.lock().unwrap_or_else(|e| e.into_inner());
        for (broker, listener) in listeners {
            while let Ok((stream, _)) = listener.accept() {
                busy = true;
                if let Some(count) = usize::try_from(*broker).ok().and_then(|i| accepted.get(i)) {
                    count.fetch_add(1, Ordering::AcqRel);
                }
                let _ = stream.set_nonblocking(true);
                let _ = stream.set_nodelay(true);
                match sim.connect(*broker) {
                    Ok(id) => conns.push(ServedConn {
                        id,
                        stream,
                        out: Vec::new(),
                        closing: false,
                        dead: false,
                    }),
                    Err(_) => drop(stream), // broker down: the client sees a closed socket
                }
            }
        }
        sim.advance(now);
        for conn in conns.iter_mut().filter(|c| !c.closing) {
            loop {
                match conn.stream.read(&mut buf) {
                    Ok(0) => {
                        sim.disconnect(conn.id);
                        conn.dead = true;
                        break;
                    }
                    Ok(n) => {
                        busy = true;
                        if sim.receive(conn.id, &buf[..n], now).is_err() {
                            conn.closing = true;
                            break;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => {
                        sim.disconnect(conn.id);
                        conn.dead = true;
                        break;
                    }
                }
            }
        }
        while let Some((id, _reason)) = sim.poll_closed() {
            if let Some(conn) = conns.iter_mut().find(|c| c.id == id) {
                conn.closing = true;
            }
        }
        for conn in conns.iter_mut().filter(|c| !c.dead) {
            while let Some(frame) = sim.poll_send(conn.id) {
                conn.out.extend_from_slice(&frame);
            }
            while !conn.out.is_empty() {
                match conn.stream.write(&conn.out) {
                    Ok(0) => {
                        conn.dead = true;
                        break;
                    }
                    Ok(n) => {
                        busy = true;
                        conn.out.drain(..n);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => {
                        conn.dead = true;
                        break;
                    }
                }
            }
            if conn.closing && conn.out.is_empty() {
                conn.dead = true;
            }
        }
        conns.retain(|c| !c.dead); // dropping a stream closes the socket
        drop(sim);
        if !busy {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// A cluster of 3 brokers with the count topology's topics and input: `PER_PARTITION`
/// records in each of `PARTITIONS` partitions, keys `p<p>-k<0..5>`. Returns it with the
/// expected final count per key.
pub fn cluster_with_input(seed: u64) -> (SimCluster, BTreeMap<String, i64>) {
    let mut sim = SimCluster::new(seed, 3);
    sim.create_topic(INPUT, PARTITIONS).unwrap();
    sim.create_topic(OUTPUT, PARTITIONS).unwrap();
    let mut expected = BTreeMap::new();
    for p in 0..PARTITIONS {
        let records: Vec<SimRecord> = (0..PER_PARTITION)
            .map(|i| {
                let key = format!("p{p}-k{}", (i * 7) % 5);
                *expected.entry(key.clone()).or_insert(0) += 1;
                SimRecord::new(
                    Bytes::from(key),
                    Bytes::from(format!("v{i}")),
                    1_000 + i as i64,
                )
            })
            .collect();
        sim.produce_direct(INPUT, p, records).unwrap();
    }
    (sim, expected)
}

/// words → count per key (store "counts") → word-counts.
pub fn count_topology() -> Topology {
    let mut b = TopologyBuilder::new();
    let src = b
        .add_source("src", &[INPUT], StringSerde, StringSerde)
        .unwrap();
    let count = b
        .add_processor("count", &[&src], BatchCountAggregator::supplier("counts"))
        .unwrap();
    b.add_store(
        StoreBuilder::key_value("counts", StringSerde, I64Serde),
        &["count"],
    )
    .unwrap();
    b.add_sink("sink", OUTPUT, &[&count], StringSerde, I64Serde)
        .unwrap();
    b.build().unwrap()
}

/// Streams settings for the tests: quick commits, short linger, a 6 s session.
pub fn streams_config(server: &SimServer, app: &str, threads: usize) -> StreamsConfig {
    let mut engine = EngineConfig::new(app, [server.bootstrap()]);
    engine.commit_interval = kstreams_core::time::Duration::from_millis(200);
    engine.producer.linger = kstreams_core::time::Duration::from_millis(5);
    engine.session_timeout = kstreams_core::time::Duration::from_millis(6_000);
    engine.heartbeat_interval = kstreams_core::time::Duration::from_millis(1_000);
    let mut config = StreamsConfig::from_engine_config(engine);
    config.num_stream_threads = threads;
    server.configure(config)
}

/// Every input partition committed at its end.
pub fn all_committed(server: &SimServer, app: &str) -> bool {
    let sim = server.sim();
    (0..PARTITIONS).all(|p| {
        sim.committed_offset(app, &TopicPartition::new(INPUT, p)) == Some(PER_PARTITION as i64)
    })
}

/// The output, per partition, as (key, count).
pub fn output(server: &SimServer) -> Vec<Vec<(String, i64)>> {
    let sim = server.sim();
    (0..PARTITIONS)
        .map(|p| {
            sim.read_log(OUTPUT, p)
                .unwrap()
                .into_iter()
                .map(|r| {
                    let key = String::from_utf8(r.key.unwrap().to_vec()).unwrap();
                    let value = i64::from_be_bytes(r.value.unwrap().as_ref().try_into().unwrap());
                    (key, value)
                })
                .collect()
        })
        .collect()
}

/// Asserts the exact output of one pass over the input: each key's counts are 1, 2, … n in
/// its output partition's order (so no record was lost, duplicated or reordered), ending at the
/// expected total, and every key stays in one output partition (murmur2 of the key).
pub fn assert_exact_output(server: &SimServer, expected: &BTreeMap<String, i64>) {
    let output = output(server);
    let mut seen: BTreeMap<String, i64> = BTreeMap::new();
    let mut total = 0;
    let mut partition_of: BTreeMap<String, usize> = BTreeMap::new();
    for (p, records) in output.iter().enumerate() {
        for (key, count) in records {
            total += 1;
            let home = *partition_of.entry(key.clone()).or_insert(p);
            assert_eq!(
                home, p,
                "{key}: the sink's partitioner keeps a key in one partition"
            );
            let last = seen.entry(key.clone()).or_insert(0);
            assert_eq!(
                *count,
                *last + 1,
                "{key}: counts go 1, 2, 3, … exactly once"
            );
            *last = *count;
        }
    }
    assert_eq!(&seen, expected, "final count per key");
    assert_eq!(
        total,
        PARTITIONS as usize * PER_PARTITION,
        "one output per input"
    );
}

/// The group has no member left.
pub fn group_is_empty(server: &SimServer, app: &str) -> bool {
    server.sim().group_members(app).is_empty()
}

/// Every task `0_<p>` for the partitions, sorted.
pub fn all_tasks() -> Vec<TaskId> {
    (0..PARTITIONS)
        .map(|partition| TaskId {
            subtopology: 0,
            partition,
        })
        .collect()
}

/// Polls `done` every 20 ms until it holds; panics after [`TEST_TIMEOUT`]. Blocking sleeps are
/// fine here: the engines run on their own threads, and the test's executor has nothing else
/// to do.
pub fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + TEST_TIMEOUT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A state listener's record: `(old, new)` in order.
pub type Transitions = Arc<Mutex<Vec<(StreamsState, StreamsState)>>>;

fn record_transitions<R: Runtime>(streams: &mut KafkaStreams<R>) -> Transitions {
    let transitions: Transitions = Arc::default();
    let log = transitions.clone();
    streams.set_state_listener(move |new, old| log.lock().unwrap().push((old, new)));
    transitions
}

/// One stream thread, memory stores: joins, counts, produces the exact output, commits every
/// input offset, reaches `Running`; `close()` commits, leaves the group and ends in
/// `NotRunning`; the listener saw the whole lifecycle.
pub async fn count_flow<R: Runtime>(seed: u64, app: &str) {
    let (sim, expected) = cluster_with_input(seed);
    let server = SimServer::start(sim);
    let mut streams = KafkaStreams::<R>::new(
        count_topology(),
        streams_config(&server, app, 1),
        Stores::Memory,
    )
    .unwrap();
    let transitions = record_transitions(&mut streams);
    assert_eq!(streams.state(), StreamsState::Created);
    let handle = streams.start().unwrap();
    assert_eq!(
        handle.wait_for_state(|s| s == StreamsState::Running).await,
        StreamsState::Running
    );
    eventually("every input offset committed", || {
        all_committed(&server, app)
    });
    assert_exact_output(&server, &expected);
    let threads = handle.local_thread_metadata();
    assert_eq!(threads.len(), 1);
    assert_eq!(
        threads[0].thread_name,
        format!("{app}-kstreams-StreamThread-1")
    );
    assert_eq!(threads[0].active_tasks, all_tasks());
    assert_eq!(server.sim().group_members(app).len(), 1);

    handle.close().await.unwrap();
    assert_eq!(handle.state(), StreamsState::NotRunning);
    assert!(group_is_empty(&server, app), "close() left the group");
    assert!(all_committed(&server, app));
    let transitions = transitions.lock().unwrap().clone();
    use StreamsState as S;
    assert_eq!(transitions.first(), Some(&(S::Created, S::Rebalancing)));
    assert!(transitions.contains(&(S::Rebalancing, S::Running)));
    assert!(
        transitions.ends_with(&[
            (S::Running, S::PendingShutdown),
            (S::PendingShutdown, S::NotRunning)
        ]),
        "{transitions:?}"
    );
}

/// Two stream threads in one instance, sharing one LMDB environment under
/// `<state_dir>/<app>/`: they split the four partitions 2/2 (both join the first generation
/// thanks to the coordinator's initial rebalance delay), produce the exact output, commit,
/// and leave the group on close; the counts are in LMDB afterwards.
pub async fn two_threads_flow<R: Runtime>(seed: u64, app: &str, stores: StoreKind) {
    let (mut sim, expected) = cluster_with_input(seed);
    sim.config_mut().group.initial_rebalance_delay_ms = 1_500;
    let server = SimServer::start(sim);
    let state_dir = tempfile::tempdir().unwrap();
    let mut config = streams_config(&server, app, 2);
    config.state_dir = state_dir.path().to_owned();
    let choice = match stores {
        StoreKind::Memory => Stores::Memory,
        StoreKind::Lmdb => Stores::Lmdb,
    };
    let streams = KafkaStreams::<R>::new(count_topology(), config, choice).unwrap();
    let handle = streams.start().unwrap();
    eventually("every input offset committed", || {
        all_committed(&server, app)
    });
    assert_eq!(
        handle.wait_for_state(|s| s == StreamsState::Running).await,
        StreamsState::Running
    );
    let threads = handle.local_thread_metadata();
    assert_eq!(threads.len(), 2);
    let mut union: Vec<TaskId> = Vec::new();
    for t in &threads {
        assert_eq!(t.active_tasks.len(), 2, "{threads:?}");
        union.extend(&t.active_tasks);
    }
    union.sort();
    assert_eq!(union, all_tasks(), "the threads split the tasks");
    assert_eq!(server.sim().group_members(app).len(), 2);
    assert_exact_output(&server, &expected);

    handle.close().await.unwrap();
    assert_eq!(handle.state(), StreamsState::NotRunning);
    assert!(group_is_empty(&server, app), "both threads left the group");
    if stores == StoreKind::Lmdb {
        // The engines (and their environment handles) are gone: reopen and read the counts.
        let env = LmdbEnvironment::open(LmdbConfig::new(state_dir.path().join(app))).unwrap();
        let keys: u64 = (0..PARTITIONS)
            .map(|p| {
                env.open_store("counts", p)
                    .unwrap()
                    .committed_len()
                    .unwrap()
            })
            .sum();
        assert_eq!(
            keys,
            expected.len() as u64,
            "one LMDB entry per counted key"
        );
    }
}

/// Which stores [`two_threads_flow`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// In memory.
    Memory,
    /// LMDB.
    Lmdb,
}

/// The only bootstrap broker is down at first: the server accepts and at once closes every
/// socket to it, so each attempt ends in `handle_disconnected` and the engine retries on its
/// own backoff. Once the broker is back, the instance counts everything and closes cleanly.
pub async fn bootstrap_outage_flow<R: Runtime>(seed: u64, app: &str) {
    let (mut sim, expected) = cluster_with_input(seed);
    sim.broker_down(0).unwrap();
    let server = SimServer::start(sim);
    let streams = KafkaStreams::<R>::new(
        count_topology(),
        streams_config(&server, app, 1),
        Stores::Memory,
    )
    .unwrap();
    let handle = streams.start().unwrap();
    eventually("three refused connection attempts", || {
        server.accepted(0) >= 3
    });
    assert_eq!(handle.state(), StreamsState::Rebalancing);
    server.sim().broker_up(0).unwrap();
    eventually("every input offset committed", || {
        all_committed(&server, app)
    });
    assert_exact_output(&server, &expected);
    handle.close().await.unwrap();
    assert!(group_is_empty(&server, app));
}

/// A topology whose source topic does not exist: the engines fail, the instance ends in
/// `Error`, and `wait()` / `close()` return the failure naming the topic.
pub async fn failure_flow<R: Runtime>(seed: u64, app: &str) {
    let mut sim = SimCluster::new(seed, 1);
    sim.create_topic(OUTPUT, PARTITIONS).unwrap(); // no input topic
    let server = SimServer::start(sim);
    let mut streams = KafkaStreams::<R>::new(
        count_topology(),
        streams_config(&server, app, 2),
        Stores::Memory,
    )
    .unwrap();
    let transitions = record_transitions(&mut streams);
    let handle = streams.start().unwrap();
    let error = handle.wait().await.unwrap_err();
    assert!(
        matches!(
            &error,
            kstreams_io_common::StreamsError::Engine { error, .. }
                if matches!(**error, kstreams_core::engine::EngineError::MissingSourceTopic(ref t) if t == INPUT)
        ),
        "{error}"
    );
    assert_eq!(handle.state(), StreamsState::Error);
    assert!(
        handle.close().await.is_err(),
        "close() reports the failure too"
    );
    let transitions = transitions.lock().unwrap().clone();
    assert_eq!(transitions.last().map(|t| t.1), Some(StreamsState::Error));
}
