//! One kstreams count instance in a process of its own, for end-to-end tests that kill,
//! stop and resume it (`tests/tests/e2e_exactly_once.rs`): `input` → count per key in the
//! LMDB store `counts` (logged to `<APPLICATION_ID>-counts-changelog`) → `output` (value: the
//! 8-byte big-endian count), under tokio, with the settings of
//! `kstreams_tests::e2e_config::fast_engine_config` and replication factor 1 for changelogs.
//!
//! ```text
//! e2e_count_instance BOOTSTRAP INPUT OUTPUT APPLICATION_ID STATE_DIR
//!     at-least-once|exactly-once COMMIT_INTERVAL_MS
//!     [--fail-on-key KEY] [--session-timeout-ms MS] [--transactional-id ID]
//!     [--num-standby-replicas N] [--acceptable-recovery-lag RECORDS]
//!     [--probing-rebalance-ms MS]
//! ```
//!
//! - `--fail-on-key KEY`: a processor after the count fails with a processing error on the
//!   first count of KEY (the counts before it in the same batch are forwarded first), under
//!   the default `ErrorPolicy::Fail`.
//! - `--session-timeout-ms MS`: the group session timeout (heartbeats every sixth of it).
//! - `--transactional-id ID`: the exactly-once producer's transactional id (default: the
//!   engine's, which differs between processes).
//! - `--num-standby-replicas N`, `--acceptable-recovery-lag RECORDS`,
//!   `--probing-rebalance-ms MS`: standby replicas and warm-up (the engine's settings of the
//!   same names).
//!
//! Prints one line per event on stdout, for the tests to follow:
//! `running` (the instance reached Running), `assigned|revoked|lost TASK…`, `committed`,
//! `restored TASK STORE RECORDS`, `restore-start TASK STORE CHECKPOINT|none EPOCH_MS`,
//! `restored-at TASK EPOCH_MS`, `revoked-at EPOCH_MS TASK…`,
//! `standby TASK STORE POSITION END|none`, `warning MESSAGE`, `failed KIND MESSAGE` (KIND:
//! `processing`, `fenced`, `transaction`, `other`), and at the end `exit ok` or
//! `exit error KIND MESSAGE` (then exits 1). Runs until killed, closed by the group, or failed.
//! The engine's log goes to stderr (`RUST_LOG`, default `warn`).

use std::io::Write;

use kstreams_core::client::producer::TransactionError;
use kstreams_core::engine::{EngineError, Event, ProcessingGuarantee};
use kstreams_core::error::TaskError;
use kstreams_core::ids::TaskId;
use kstreams_core::prelude::*;
use kstreams_core::time::Duration;
use kstreams_tokio::{KafkaStreams, Stores, StreamsConfig, StreamsError, StreamsState};

const USAGE: &str = "usage: e2e_count_instance BOOTSTRAP INPUT OUTPUT APPLICATION_ID STATE_DIR \
                     at-least-once|exactly-once COMMIT_INTERVAL_MS [--fail-on-key KEY] \
                     [--session-timeout-ms MS] [--transactional-id ID] \
                     [--num-standby-replicas N] [--acceptable-recovery-lag RECORDS] \
                     [--probing-rebalance-ms MS]";

/// What the command line asks for.
struct Args {
    bootstrap: String,
    input: String,
    output: String,
    app: String,
    state_dir: String,
    guarantee: ProcessingGuarantee,
    commit_interval_ms: u64,
    fail_on_key: Option<String>,
    session_timeout_ms: Option<u64>,
    transactional_id: Option<String>,
    num_standby_replicas: Option<usize>,
    acceptable_recovery_lag: Option<i64>,
    probing_rebalance_ms: Option<u64>,
}

fn parse_args() -> Result<Args, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [
        bootstrap,
        input,
        output,
        app,
        state_dir,
        guarantee,
        commit,
        rest @ ..,
    ] = args.as_slice()
    else {
        return Err("missing arguments".into());
    };
    let guarantee = match guarantee.as_str() {
        "at-least-once" => ProcessingGuarantee::AtLeastOnce,
        "exactly-once" => ProcessingGuarantee::ExactlyOnce,
        other => return Err(format!("unknown guarantee `{other}`")),
    };
    let number = |s: &str| {
        s.parse::<u64>()
            .map_err(|e| format!("`{s}` is not a number: {e}"))
    };
    let mut parsed = Args {
        bootstrap: bootstrap.clone(),
        input: input.clone(),
        output: output.clone(),
        app: app.clone(),
        state_dir: state_dir.clone(),
        guarantee,
        commit_interval_ms: number(commit)?,
        fail_on_key: None,
        session_timeout_ms: None,
        transactional_id: None,
        num_standby_replicas: None,
        acceptable_recovery_lag: None,
        probing_rebalance_ms: None,
    };
    let mut rest = rest.iter();
    while let Some(flag) = rest.next() {
        let value = rest.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--fail-on-key" => parsed.fail_on_key = Some(value.clone()),
            "--session-timeout-ms" => parsed.session_timeout_ms = Some(number(value)?),
            "--transactional-id" => parsed.transactional_id = Some(value.clone()),
            "--num-standby-replicas" => {
                parsed.num_standby_replicas = Some(number(value)? as usize);
            }
            "--acceptable-recovery-lag" => {
                parsed.acceptable_recovery_lag = Some(number(value)? as i64);
            }
            "--probing-rebalance-ms" => parsed.probing_rebalance_ms = Some(number(value)?),
            other => return Err(format!("unknown flag `{other}`")),
        }
    }
    Ok(parsed)
}

fn main() {
    // The engine's warnings on stderr (`RUST_LOG` overrides the default `warn`).
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = match parse_args() {
        Ok(args) => args,
        Err(error) => {
            eprintln!("e2e_count_instance: {error}\n{USAGE}");
            std::process::exit(2);
        }
    };
    match run(&args) {
        Ok(()) => say("exit ok"),
        Err(error) => {
            say(&format!("exit error {}", describe_streams_error(&error)));
            std::process::exit(1);
        }
    }
}

/// One line on stdout, flushed at once (the test reads it while we run).
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    // A closed stdout (the test stopped reading) must not stop the instance.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn run(args: &Args) -> Result<(), StreamsError> {
    let topology = count_topology(args).map_err(|e| StreamsError::Config(e.to_string()))?;
    let mut engine = kstreams_tests::e2e_config::fast_engine_config(&args.app, &args.bootstrap);
    // crabka-broker 0.3.0 refuses the broker-default replication factor (-1).
    engine.internal_topics.replication_factor = 1;
    engine.processing_guarantee = args.guarantee;
    engine.commit_interval = Duration::from_millis(args.commit_interval_ms);
    if let Some(ms) = args.session_timeout_ms {
        engine.session_timeout = Duration::from_millis(ms);
        engine.heartbeat_interval = Duration::from_millis((ms / 6).max(100));
    }
    engine.producer.transactional_id = args.transactional_id.clone();
    if let Some(n) = args.num_standby_replicas {
        engine.num_standby_replicas = n;
    }
    if let Some(lag) = args.acceptable_recovery_lag {
        engine.acceptable_recovery_lag = lag;
    }
    if let Some(ms) = args.probing_rebalance_ms {
        engine.probing_rebalance_interval = Duration::from_millis(ms);
    }
    let mut config = StreamsConfig::from_engine_config(engine);
    config.state_dir = (&args.state_dir).into();
    let mut streams = KafkaStreams::new(topology, config, Stores::Lmdb)?;
    streams.set_event_listener(|_thread, event| {
        if let Some(line) = event_line(event) {
            say(&line);
        }
    });
    let handle = streams.start()?;
    let state = futures_lite::future::block_on(
        handle.wait_for_state(|s| s == StreamsState::Running || s.is_terminal()),
    );
    if state == StreamsState::Running {
        say("running");
    }
    futures_lite::future::block_on(handle.wait())
}

/// `input` → count (store `counts`, logged) → [fail on a key] → `output`.
fn count_topology(args: &Args) -> Result<Topology, TopologyError> {
    let mut b = TopologyBuilder::new();
    let src = b.add_source("src", &[args.input.as_str()], StringSerde, StringSerde)?;
    let count = b.add_processor("count", &[&src], BatchCountAggregator::supplier("counts"))?;
    b.add_store(
        StoreBuilder::key_value("counts", StringSerde, I64Serde).with_logging(true),
        &["count"],
    )?;
    match &args.fail_on_key {
        None => b.add_sink("sink", &args.output, &[&count], StringSerde, I64Serde)?,
        Some(key) => {
            let key = key.clone();
            let guard = b.add_processor("poison-guard", &[&count], move || FailOnKey {
                key: key.clone(),
            })?;
            b.add_sink("sink", &args.output, &[&guard], StringSerde, I64Serde)?
        }
    };
    b.build()
}

/// Forwards counts unchanged up to the first count of `key`, then fails with a processing
/// error naming that record's offset.
struct FailOnKey {
    key: String,
}

impl Processor<String, i64, String, i64> for FailOnKey {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, i64>,
        record: Record<String, i64>,
    ) -> Result<(), ProcessError> {
        self.process_batch(ctx, vec![record])
    }

    fn process_batch(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, i64>,
        mut batch: Batch<String, i64>,
    ) -> Result<(), ProcessError> {
        match batch.iter().position(|r| r.key == self.key) {
            None => ctx.forward_batch(batch),
            Some(i) => {
                let poison = batch.split_off(i);
                ctx.forward_batch(batch)?;
                Err(
                    ProcessError::msg(format!("poison record with key {}", self.key))
                        .at_offset(poison[0].offset()),
                )
            }
        }
    }
}

/// The line an event prints (`None`: not one the tests follow).
fn event_line(event: &Event) -> Option<String> {
    let tasks = |tasks: &[TaskId]| {
        tasks
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    };
    Some(match event {
        Event::TasksAssigned(t) => format!("assigned {}", tasks(t)),
        Event::TasksRevoked(t) => {
            // Two lines: `revoked TASK…` as before, then when it happened.
            say(&format!("revoked {}", tasks(t)));
            format!("revoked-at {} {}", epoch_ms(), tasks(t))
        }
        Event::TasksLost(t) => format!("lost {}", tasks(t)),
        Event::Committed(_) => "committed".to_owned(),
        Event::RestoreEnded {
            task,
            store,
            records,
            ..
        } => {
            say(&format!("restored {task} {store} {records}"));
            format!("restored-at {task} {}", epoch_ms())
        }
        Event::RestoreStarted {
            task,
            store,
            checkpoint,
            ..
        } => format!(
            "restore-start {task} {store} {} {}",
            checkpoint.map_or("none".to_owned(), |c| c.to_string()),
            epoch_ms()
        ),
        Event::StandbyBatch {
            task,
            store,
            position,
            end,
            ..
        } => format!(
            "standby {task} {store} {position} {}",
            end.map_or("none".to_owned(), |e| e.to_string())
        ),
        Event::Warning(error) => format!("warning {}", one_line(&error.to_string())),
        Event::Failed(error) => format!("failed {}", describe_engine_error(error)),
        _ => return None,
    })
}

/// Milliseconds since the Unix epoch: lines of two instances compare on one clock.
fn epoch_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// `KIND MESSAGE` of an engine error.
fn describe_engine_error(error: &EngineError) -> String {
    let kind = match error {
        EngineError::Task(TaskError::Processing { .. }) => "processing",
        EngineError::Transaction(TransactionError::Fenced { .. }) => "fenced",
        EngineError::Transaction(_) => "transaction",
        _ => "other",
    };
    format!("{kind} {}", one_line(&error.to_string()))
}

/// `KIND MESSAGE` of the instance's error.
fn describe_streams_error(error: &StreamsError) -> String {
    match error {
        StreamsError::Engine { error, .. } => describe_engine_error(error),
        other => format!("other {}", one_line(&other.to_string())),
    }
}

fn one_line(message: &str) -> String {
    message.replace('\n', " ")
}
