//! One instance, in a child process of its own (this bench binary re-executed with a hidden
//! subcommand): `input` → count per key (store `counts`, logged) → `output`, until a line on
//! stdin asks it to close (or it is killed).
//!
//! It prints one line per event on stdout, each starting with the wall-clock time in
//! milliseconds since the Unix epoch (the parent compares the times of several processes):
//! `running`, `assigned|revoked|lost P…` (input partitions: the task ids are `0_P`),
//! `synced GENERATION`, `restore-start P CHECKPOINT` (-1: none), `restored P RECORDS MS`,
//! `seen P` (the task counted a record; at most one line per task every [`SEEN_EVERY`]),
//! `failed MESSAGE`, and at the end `exit ok` or `exit error MESSAGE`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kstreams_core::engine::Event;
use kstreams_core::prelude::*;
use kstreams_io_common::{Stores, StreamsConfig, StreamsState};

use crate::options::{Mode, StoreKind};

/// A task prints `seen` at most this often: the resolution of the measured pauses.
pub(crate) const SEEN_EVERY: Duration = Duration::from_millis(10);

/// Milliseconds since the Unix epoch, now.
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What the parent tells an instance, as its command line.
#[derive(Debug, Clone)]
pub(crate) struct InstanceArgs {
    pub(crate) bootstrap: String,
    pub(crate) input: String,
    pub(crate) output: String,
    pub(crate) app: String,
    pub(crate) state_dir: PathBuf,
    pub(crate) mode: Mode,
    pub(crate) store: StoreKind,
    pub(crate) commit_ms: u64,
    pub(crate) session_ms: u64,
}

impl InstanceArgs {
    pub(crate) fn to_args(&self) -> Vec<String> {
        vec![
            self.bootstrap.clone(),
            self.input.clone(),
            self.output.clone(),
            self.app.clone(),
            self.state_dir.display().to_string(),
            self.mode.name().to_owned(),
            self.store.name().to_owned(),
            self.commit_ms.to_string(),
            self.session_ms.to_string(),
        ]
    }

    pub(crate) fn parse(args: &[String]) -> Result<Self, String> {
        let [
            bootstrap,
            input,
            output,
            app,
            state_dir,
            mode,
            store,
            commit_ms,
            session_ms,
        ] = args
        else {
            return Err(format!(
                "instance arguments: bootstrap input output app state-dir mode store \
                 commit-ms session-ms, got {args:?}"
            ));
        };
        let number = |v: &String| v.parse::<u64>().map_err(|e| format!("`{v}`: {e}"));
        Ok(Self {
            bootstrap: bootstrap.clone(),
            input: input.clone(),
            output: output.clone(),
            app: app.clone(),
            state_dir: PathBuf::from(state_dir),
            mode: Mode::parse(mode)?,
            store: StoreKind::parse(store)?,
            commit_ms: number(commit_ms)?,
            session_ms: number(session_ms)?,
        })
    }
}

/// Prints a line, prefixed with the time, and flushes it.
fn emit(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    // The parent reads until it has what it needs; a closed pipe only means it is gone.
    let _ = writeln!(out, "{} {line}", unix_ms());
    let _ = out.flush();
}

fn partitions(tasks: &[kstreams_core::ids::TaskId]) -> String {
    tasks
        .iter()
        .map(|t| t.partition.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Prints `seen P` for a task at most every [`SEEN_EVERY`].
#[derive(Default)]
struct Progress {
    last: Mutex<HashMap<i32, Instant>>,
}

impl Progress {
    fn note(&self, partition: i32) {
        let now = Instant::now();
        let mut last = self.last.lock().expect("progress lock");
        let due = last
            .get(&partition)
            .is_none_or(|at| now.duration_since(*at) >= SEEN_EVERY);
        if due {
            last.insert(partition, now);
            drop(last);
            emit(format_args!("seen {partition}"));
        }
    }
}

fn topology(args: &InstanceArgs, progress: Arc<Progress>) -> Result<Topology, TopologyError> {
    let mut b = TopologyBuilder::new();
    let src = b.add_source("src", &[args.input.as_str()], BytesSerde, BytesSerde)?;
    let count = b.add_processor("count", &[&src], BatchCountAggregator::supplier("counts"))?;
    b.add_store(
        StoreBuilder::key_value("counts", BytesSerde, I64Serde).with_logging(true),
        &["count"],
    )?;
    let noted = b.peek("progress", &count, move |r: &Record<bytes::Bytes, i64>| {
        let partition = r
            .metadata
            .as_ref()
            .map(|m| m.partition)
            .expect("a count carries its input record's metadata");
        progress.note(partition);
    })?;
    b.add_sink("sink", &args.output, &[&noted], BytesSerde, I64Serde)?;
    b.build()
}

fn on_event(event: &Event) {
    match event {
        Event::TasksAssigned(t) => emit(format_args!("assigned {}", partitions(t))),
        Event::TasksRevoked(t) => emit(format_args!("revoked {}", partitions(t))),
        Event::TasksLost(t) => emit(format_args!("lost {}", partitions(t))),
        Event::GroupSynced { generation, .. } => emit(format_args!("synced {generation}")),
        Event::RestoreStarted {
            task, checkpoint, ..
        } => emit(format_args!(
            "restore-start {} {}",
            task.partition,
            checkpoint.unwrap_or(-1)
        )),
        Event::RestoreEnded {
            task,
            records,
            duration,
            ..
        } => emit(format_args!(
            "restored {} {records} {}",
            task.partition,
            duration.as_millis()
        )),
        Event::Failed(e) => emit(format_args!("failed {e}")),
        _ => {}
    }
}

/// The child's main: runs the instance until stdin says stop (or closes); exits 1 on a failure.
pub(crate) fn run_instance(args: &[String]) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let args = InstanceArgs::parse(args).unwrap_or_else(|e| {
        emit(format_args!("exit error {e}"));
        std::process::exit(2)
    });
    let mut engine = kstreams_tests::e2e_config::fast_engine_config(&args.app, &args.bootstrap);
    engine.commit_interval = kstreams_core::time::Duration::from_millis(args.commit_ms);
    engine.session_timeout = kstreams_core::time::Duration::from_millis(args.session_ms);
    engine.heartbeat_interval =
        kstreams_core::time::Duration::from_millis((args.session_ms / 3).min(1_000));
    engine.rebalance_protocol = args.mode.protocol();
    // crabka-broker 0.3.0 refuses CreateTopics with the broker's default (-1).
    engine.internal_topics.replication_factor = 1;
    // A task moves to an instance without a caught-up copy only at a probing rebalance,
    // once its warm-up caught up (decisions §19): probe every second (Kafka Streams:
    // 10 min), so a restart of an instance whose state is behind ends within the window.
    engine.probing_rebalance_interval = kstreams_core::time::Duration::from_secs(1);
    let mut config = StreamsConfig::from_engine_config(engine);
    config.state_dir = args.state_dir.clone();
    config.engine.num_standby_replicas = args.mode.standby_replicas() as usize;
    let progress = Arc::new(Progress::default());
    let topology = topology(&args, progress).expect("the topology");
    let stores = match args.store {
        StoreKind::Lmdb => Stores::Lmdb,
        StoreKind::Memory => Stores::Memory,
    };
    let mut streams = kstreams_tokio::KafkaStreams::new(topology, config, stores)
        .unwrap_or_else(|e| panic!("the application: {e}"));
    streams.set_event_listener(|_, event| on_event(event));
    let handle = streams.start().unwrap_or_else(|e| panic!("starting: {e}"));
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(std::io::stdin()).read_line(&mut line);
            stop.store(true, Ordering::SeqCst);
        });
    }
    let mut running = false;
    while !stop.load(Ordering::SeqCst) {
        let state = handle.state();
        if state.is_terminal() {
            emit(format_args!("exit error stopped: {state:?}"));
            std::process::exit(1);
        }
        if !running && state == StreamsState::Running {
            running = true;
            emit(format_args!("running"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    match futures_lite::future::block_on(handle.close()) {
        Ok(()) => emit(format_args!("exit ok")),
        Err(e) => {
            emit(format_args!("exit error close: {e}"));
            std::process::exit(1);
        }
    }
}
