//! End to end on loopback: kstreams (record mode, batch mode; batch mode with its store logged,
//! at-least-once and exactly-once) against a consume → transform → produce loop written on
//! rdkafka, the same broker, the same workload, in one run.
//!
//! ```text
//! cargo bench -p kstreams-benches --bench end_to_end -- \
//!     [--broker tansu|mock|crabka] [--records N] [--keys K] [--repeat R] [--commit-ms MS] \
//!     [--linger-ms MS] [--fetch-wait-ms MS] \
//!     [--contenders rdkafka,record,batch,record-mem,batch-mem,batch-logged,batch-eos]
//! ```
//!
//! Without `--contenders` the first five run; `batch-logged` and `batch-eos` are asked for by
//! name, `batch-eos` on a broker with transactions (`--broker crabka`; refused on Tansu).
//!
//! `--fetch-wait-ms` (500, both clients' default) sets kstreams' `FetcherConfig::max_wait` and
//! rdkafka's `fetch.wait.max.ms` alike. It matters on Tansu 0.6.0, which holds every Fetch for
//! half of the remaining max wait (or all of it below 250 ms) even when it has data to return
//! (`tansu-storage` `service/fetch.rs`), so each fetch round trip costs ~250 ms at the default.
//!
//! Workload: one input topic of 8 partitions holding `--records` records (1,000,000) with
//! 16-byte keys (`key-000000000042`) drawn pseudo-randomly from `--keys` (10,000) distinct keys,
//! each key always in the same partition (key index mod 8), and 100-byte values; produced once,
//! before any contender starts, by an idempotent rdkafka producer (not timed). Work: count per
//! key, and for every input record produce `key → running count` (8-byte big-endian i64) to
//! the contender's own output topic (8 partitions) with an idempotent producer (acks=all),
//! committing the consumed offsets every `--commit-ms` (1000) only once the output they cover
//! is acknowledged (at-least-once; `batch-eos`: in one transaction with that output). Each
//! contender has its own group id (its application id for kstreams).
//!
//! Contenders, each in its own child process (this binary re-executed with a hidden
//! subcommand), one after another against the same broker, interleaved for `--repeat` rounds:
//! - `rdkafka`: a `BaseConsumer` poll loop + `BaseProducer`, counts in a `HashMap` in memory;
//!   every commit interval it flushes the producer and then commits the positions it processed.
//! - `record` / `batch`: `kstreams_tokio::KafkaStreams`, one stream thread,
//!   `RecordCountAggregator` / `BatchCountAggregator` on the LMDB store (not logged);
//!   `record-mem` / `batch-mem`: the same on the memory store.
//! - `batch-logged`: `batch` with the store logged (`StoreBuilder::with_logging(true)`): every
//!   commit also appends the keys written since the last one to `<group>-counts-changelog` (8
//!   partitions, created by the engine at start-up, deleted after the run), and each store
//!   restores from it (empty here) before processing.
//! - `batch-eos`: `batch-logged` with `ProcessingGuarantee::ExactlyOnce`: output, changelog
//!   writes and input offsets of a commit interval are one transaction (AddPartitionsToTxn,
//!   AddOffsetsToTxn, TxnOffsetCommit, EndTxn), input and changelog read read_committed.
//!
//! A contender's time runs from spawning its process until its group's committed offsets, read
//! through the broker every 20 ms, equal the input's end offsets (under exactly-once the
//! offsets committed with TxnOffsetCommit count once their transaction committed). Then the
//! parent samples the child's CPU time and peak RSS (`VmHWM`) from `/proc`, tells it to stop (a
//! line on stdin) and checks its output: the last count per key read back from the output topic
//! (`batch-eos`: with `isolation.level=read_committed`) must equal the number of input records
//! with that key, for every key — a wrong output fails the run. "First output" is when the
//! first output record reached the broker: a consumer of the output topic sees it, or on
//! crabka-broker its end offsets move (see [`FirstOutputWatch`](workload::FirstOutputWatch)); under exactly-once that is
//! before read_committed readers see it.
//!
//! "All output" is when the output topic's end offsets first cover one output record per input
//! record (polled with the committed offsets; not on Tansu, whose end offsets are wrong): the
//! records/s from first to last output is the processing rate whatever the commit interval,
//! which compares commit intervals fairly (completion waits for a commit, up to a whole
//! interval). CPU µs per record is the contender's user + system CPU over the input records.
//!
//! The broker is Tansu 0.6.0 (a separate process, see `kstreams_tests::tansu`) by default,
//! librdkafka's mock cluster (in this process, three brokers) with `--broker mock`, or
//! crabka-broker 0.3.0 (a separate process with transactions, see `kstreams_tests::crabka`)
//! with `--broker crabka`. On crabka the engine asks for its changelogs with replication
//! factor 1 (crabka refuses the broker default, -1); output topics are created before each
//! run, as on every broker.

mod broker;
mod contenders;
mod options;
mod workload;

use std::collections::HashMap;
use std::io::Write;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use broker::{Broker, cpu_seconds, peak_rss_kib, rss_kib};
use contenders::{ChildArgs, DEFAULT_REPLICATION, KstreamsSetup, run_kstreams, run_rdkafka};
use options::{Contender, Options};
use workload::{
    FirstOutputWatch, check_output, committed, end_offset_sum, end_offsets, observer, produce_input,
};

/// Partitions of the input and every output topic.
pub(crate) const PARTITIONS: i32 = 8;
/// Bytes of every input value.
pub(crate) const VALUE_BYTES: usize = 100;
/// The hidden subcommand a child runs.
const CHILD: &str = "__e2e_contender";
/// The input topic.
pub(crate) const INPUT: &str = "e2e-input";
/// How often the parent reads a contender's committed offsets.
const PROGRESS_POLL: Duration = Duration::from_millis(20);
/// Longest a contender may take before the run fails.
const CONTENDER_TIMEOUT: Duration = Duration::from_secs(900);

/// What one contender run measured.
#[derive(Debug, Clone, Copy)]
struct Measurement {
    seconds: f64,
    /// From spawning the process until its first output record reached the broker (group
    /// join, restore, first fetch; sampled every 20 ms).
    startup: f64,
    /// From spawning the process until the output topic's end offsets cover one output record
    /// per input record (`None` on Tansu, whose end offsets are wrong): the processing
    /// throughput whatever the commit interval (completion waits for a commit).
    last_output: Option<f64>,
    /// User + system CPU of the contender's process until it was done.
    cpu: f64,
    /// CPU of the broker (the Tansu or crabka-broker process, or this process for the mock)
    /// during the run.
    broker_cpu: f64,
    peak_rss_mib: f64,
}

fn spawn_child(contender: Contender, args: &[String]) -> (Child, ChildStdin) {
    let exe = std::env::current_exe().expect("the bench binary's path");
    // `E2E_CHILD_WRAPPER="valgrind --tool=massif"` (for example) runs each contender under a
    // profiler: the wrapper's words, then this binary and its child arguments.
    let wrapper = std::env::var("E2E_CHILD_WRAPPER").unwrap_or_default();
    let mut words = wrapper.split_whitespace();
    let mut command = match words.next() {
        Some(program) => {
            let mut command = Command::new(program);
            command.args(words).arg(exe);
            command
        }
        None => Command::new(exe),
    };
    let mut child = command
        .arg(CHILD)
        .arg(contender.name())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawning a contender process");
    let stdin = child.stdin.take().expect("child stdin");
    (child, stdin)
}

fn run_contender(
    broker: &Broker,
    options: &Options,
    contender: Contender,
    round: usize,
    ends: &[i64],
    expected: &HashMap<Vec<u8>, i64>,
) -> Measurement {
    let bootstrap = broker.bootstrap();
    let output = format!("e2e-out-{}-{round}", contender.name());
    let group = format!("e2e-{}-{round}", contender.name());
    broker.create_topic(&output);
    let observer = observer(&bootstrap, &group);
    let watch = FirstOutputWatch::new(broker, &output);
    let broker_pid = broker.pid();
    let args = [
        bootstrap.clone(),
        output.clone(),
        group.clone(),
        options.commit_ms.to_string(),
        options.linger_ms.to_string(),
        options.fetch_wait_ms.to_string(),
        broker
            .internal_replication_factor()
            .map_or(DEFAULT_REPLICATION.to_owned(), |r| r.to_string()),
    ];
    let (broker_user0, broker_sys0) = cpu_seconds(broker_pid);
    let started = Instant::now();
    let (mut child, mut stdin) = spawn_child(contender, &args);
    let pid = child.id();
    let mut last_report = Instant::now();
    let mut first_output: Option<f64> = None;
    let mut last_output: Option<f64> = None;
    let output_offsets_valid = !matches!(broker, Broker::Tansu(_));
    loop {
        std::thread::sleep(PROGRESS_POLL);
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{} exited early: {status}", contender.name());
        }
        assert!(
            started.elapsed() < CONTENDER_TIMEOUT,
            "{} not done after {CONTENDER_TIMEOUT:?}",
            contender.name()
        );
        if first_output.is_none() && watch.output_seen() {
            first_output = Some(started.elapsed().as_secs_f64());
        }
        // Under exactly-once, transaction markers count too (one per partition and commit):
        // the output is complete at most a few markers early.
        if output_offsets_valid
            && last_output.is_none()
            && first_output.is_some()
            && end_offset_sum(&observer, &output).is_some_and(|sum| sum >= options.records as i64)
        {
            last_output = Some(started.elapsed().as_secs_f64());
        }
        let committed = committed(&observer);
        if committed == ends {
            // Offsets are committed only once the output they cover is on the broker (under
            // exactly-once, with it in one transaction): a completion the end offsets' poll
            // just missed is now.
            if output_offsets_valid && last_output.is_none() {
                last_output = Some(started.elapsed().as_secs_f64());
            }
            break;
        }
        if last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            eprintln!(
                "  … {} after {:.0} s: {} of {} input records committed",
                contender.name(),
                started.elapsed().as_secs_f64(),
                committed.iter().sum::<i64>(),
                options.records
            );
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let startup = first_output.unwrap_or(seconds);
    let (user, sys) = cpu_seconds(pid);
    let peak = peak_rss_kib(pid);
    let (broker_user1, broker_sys1) = cpu_seconds(broker_pid);
    // Stop: one line on stdin; the child closes cleanly and exits.
    let _ = writeln!(stdin, "stop");
    drop(stdin);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                assert!(
                    status.success(),
                    "{} exited with {status}",
                    contender.name()
                );
                break;
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{} did not stop within 60 s", contender.name());
            }
        }
    }
    let outputs = check_output(
        &bootstrap,
        &output,
        options.records,
        expected,
        contender.exactly_once(),
    );
    broker.delete_topic(&output);
    if let Contender::KstreamsLogged { .. } = contender {
        // The application id is the group id; the store is `counts`.
        broker.delete_topic(&format!("{group}-counts-changelog"));
    }
    let measurement = Measurement {
        seconds,
        startup,
        last_output,
        cpu: user + sys,
        broker_cpu: (broker_user1 - broker_user0) + (broker_sys1 - broker_sys0),
        peak_rss_mib: peak as f64 / 1024.0,
    };
    eprintln!(
        "  round {round} {:<10} {:>7.2} s {:>10.0} rec/s  (first output at {startup:.2} s, \
         {:.0} rec/s after it; all output at {})  cpu {:>6.2} s (user {user:.2}, sys {sys:.2})  \
         broker cpu {:>6.2} s  peak RSS {:>6.1} MiB  output {outputs} records OK",
        contender.name(),
        seconds,
        options.records as f64 / seconds,
        options.records as f64 / (seconds - startup),
        last_output.map_or("-".to_owned(), |s| format!("{s:.2} s")),
        measurement.cpu,
        measurement.broker_cpu,
        measurement.peak_rss_mib,
    );
    measurement
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn parent(options: Options) {
    let broker = Broker::start(options.broker);
    let bootstrap = broker.bootstrap();
    eprintln!("broker: {} at {bootstrap}", broker.name());
    broker.create_topic(INPUT);
    let produce_started = Instant::now();
    let (expected, ends) = produce_input(&bootstrap, options.records, options.keys);
    // The end offsets come from the delivery reports: Tansu 0.6.0 answers ListOffsets(latest)
    // with a wrong offset (7,936 on every partition of a 100,000-record input whose partitions
    // hold 12,281–12,707 readable records).
    let listed = end_offsets(&observer(&bootstrap, "e2e-bench-setup"), INPUT);
    if listed != ends {
        eprintln!(
            "note: the broker's ListOffsets(latest) says {listed:?}, the delivery reports {ends:?}; \
             using the delivery reports"
        );
    }
    assert_eq!(
        ends.iter().sum::<i64>(),
        options.records as i64,
        "input end offsets"
    );
    eprintln!(
        "input: {} records, {} keys, {VALUE_BYTES}-byte values, {PARTITIONS} partitions, \
         produced in {:.1} s; broker RSS {:.0} MiB",
        options.records,
        expected.len(),
        produce_started.elapsed().as_secs_f64(),
        rss_kib(broker.pid()) as f64 / 1024.0,
    );
    let mut results: Vec<(Contender, Vec<Measurement>)> = options
        .contenders
        .iter()
        .map(|c| (*c, Vec::new()))
        .collect();
    for round in 1..=options.repeat {
        for (contender, measurements) in &mut results {
            let m = run_contender(&broker, &options, *contender, round, &ends, &expected);
            measurements.push(m);
        }
    }
    let rate = |ms: &[Measurement]| {
        median(
            ms.iter()
                .map(|m| options.records as f64 / m.seconds)
                .collect(),
        )
    };
    let steady_rate = |ms: &[Measurement]| {
        median(
            ms.iter()
                .map(|m| options.records as f64 / (m.seconds - m.startup))
                .collect(),
        )
    };
    let reference = results
        .iter()
        .find(|(c, _)| *c == Contender::Rdkafka)
        .map(|(_, ms)| (rate(ms), steady_rate(ms)));
    println!();
    println!(
        "{} records of {VALUE_BYTES} bytes, {} keys, {PARTITIONS} partitions, commit every {} ms, \
         linger {} ms, fetch max wait {} ms; broker: {}; medians of {} rounds",
        options.records,
        options.keys,
        options.commit_ms,
        options.linger_ms,
        options.fetch_wait_ms,
        broker.name(),
        options.repeat
    );
    println!();
    println!(
        "| contender | seconds | records/s | vs rdkafka loop | first output s | records/s after first output | vs rdkafka loop | all output s | records/s first to last output | peak RSS MiB | CPU s (user+sys) | CPU µs per record | broker CPU s |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (contender, ms) in &results {
        let r = rate(ms);
        let steady = steady_rate(ms);
        // Every round's output completion seen, or the column says "-".
        let last: Option<Vec<(f64, f64)>> = ms
            .iter()
            .map(|m| m.last_output.map(|last| (last, m.startup)))
            .collect();
        let (last_s, output_rate) = match last {
            Some(pairs) if !pairs.is_empty() => (
                format!("{:.2}", median(pairs.iter().map(|(l, _)| *l).collect())),
                format!(
                    "{:.0}",
                    median(
                        pairs
                            .iter()
                            .map(|(l, f)| options.records as f64 / (l - f))
                            .collect()
                    )
                ),
            ),
            _ => ("-".to_owned(), "-".to_owned()),
        };
        let cpu = median(ms.iter().map(|m| m.cpu).collect());
        println!(
            "| {} | {:.2} | {:.0} | {} | {:.2} | {:.0} | {} | {last_s} | {output_rate} | {:.1} | {:.2} | {:.2} | {:.2} |",
            contender.description(),
            median(ms.iter().map(|m| m.seconds).collect()),
            r,
            reference.map_or("-".to_owned(), |(base, _)| format!("{:.2}x", r / base)),
            median(ms.iter().map(|m| m.startup).collect()),
            steady,
            reference.map_or("-".to_owned(), |(_, base)| format!("{:.2}x", steady / base)),
            median(ms.iter().map(|m| m.peak_rss_mib).collect()),
            cpu,
            cpu * 1e6 / options.records as f64,
            median(ms.iter().map(|m| m.broker_cpu).collect()),
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(CHILD) {
        let contender =
            Contender::parse(args.get(1).map_or("", String::as_str)).expect("contender name");
        let child_args = ChildArgs::parse(&args[2..]);
        match contender {
            Contender::Rdkafka => run_rdkafka(child_args),
            Contender::Kstreams { batch, lmdb } => run_kstreams(
                child_args,
                KstreamsSetup {
                    batch,
                    lmdb,
                    logged: false,
                    exactly_once: false,
                },
            ),
            Contender::KstreamsLogged { exactly_once } => run_kstreams(
                child_args,
                KstreamsSetup {
                    batch: true,
                    lmdb: true,
                    logged: true,
                    exactly_once,
                },
            ),
        }
        return;
    }
    match Options::parse(args) {
        Ok(options) => parent(options),
        Err(e) => {
            eprintln!("end_to_end: {e}");
            std::process::exit(2);
        }
    }
}
