//! Rebalancing under load on crabka-broker 0.3.0: a rolling restart of three instances, or the
//! failover of a task whose instance is killed, for each rebalance mode side by side in one run.
//!
//! ```text
//! cargo bench -p kstreams-benches --bench rebalance -- \
//!     [--scenario rolling|failover] [--mode eager,cooperative,cooperative-standby] \
//!     [--keys N] [--store lmdb|memory] [--commit-ms MS] [--session-timeout-ms MS] \
//!     [--warm-up-ms MS]
//! ```
//!
//! Every instance runs in a child process of its own (this binary re-executed with a hidden
//! subcommand, see `instance.rs`): `input` → count per key in the store `counts` (LMDB by
//! default, logged to its changelog) → `output`, with the end-to-end tests' engine settings
//! (`kstreams_tests::e2e_config::fast_engine_config`: 1 s heartbeats, 6 s sessions, 200 ms
//! commits; `--commit-ms` and `--session-timeout-ms` change them), at-least-once, dynamic
//! members. Each mode gets its own topics and application id on the one broker:
//! - `eager`: `RebalanceProtocol::Eager`, every instance revokes every task at each rebalance;
//! - `cooperative`: `RebalanceProtocol::Cooperative`, only the moved tasks stop;
//! - `cooperative-standby`: cooperative with one standby replica per task.
//!
//! The state: `--keys` (1,000,000) distinct 16-byte keys written once each to the input by an
//! rdkafka producer before the instances start; the instances count them (the stores then hold
//! every key, the changelogs one record per key) and commit. Then an rdkafka producer writes one
//! record to every input partition every 10 ms (keys drawn from the state's) until the end,
//! and the instances run `--warm-up-ms` (3,000) before the measurement.
//!
//! `--scenario rolling` (default): three instances (`a`, `b`, `c`), six input partitions, two
//! tasks each. Each instance in turn is closed (it commits and leaves the group); once every
//! task ran again on the other two it is started again on its state directory, and the restart
//! ends once every task ran again, two per instance (plus one second). Per restart: the time
//! from the close until all tasks ran again on the two others ("takeover"), from the start
//! until all tasks ran again ("back"), the longest pause of a task that stayed on an instance
//! not restarted and of a task that moved, the records restored and the rebalances (group
//! generations). Per task: its longest pause over the whole rolling restart. "Ran again": the
//! task counted a record on its instance after it was assigned there.
//!
//! `--scenario failover`: two instances (`x`, `y`), one input partition: one task holding all
//! `--keys` keys. The instance running it is killed with SIGKILL; the coordinator notices when
//! its session expires (`--session-timeout-ms`) and gives the task to the other instance,
//! which restores its store before it counts again. Measured: kill → assigned, the restore
//! (records, time), kill → counting again, the task's longest pause.
//!
//! Pauses come from the instances' own clocks: a task prints a line with the time whenever it
//! counts a record (at most every 10 ms, the resolution), and a pause is the longest time in
//! which no instance counted a record of that task. At the end the output is read back: every
//! key's last count must equal its input records (rolling: nothing counted twice, the closes
//! commit) or be at least that (failover: at-least-once counts the killed instance's
//! uncommitted interval again).

mod failover;
mod input;
mod instance;
mod options;
mod process;
mod rolling;
mod run;
mod timeline;

use kstreams_tests::crabka::Crabka;

use failover::{FailoverFigures, failover};
use options::{Options, Scenario};
use rolling::{RollingFigures, rolling_restart};

fn seconds(ms: u64) -> String {
    format!("{:.2}", ms as f64 / 1000.0)
}

fn print_rolling(options: &Options, results: &[RollingFigures]) {
    println!();
    println!(
        "rolling restart of 3 instances, 6 tasks, {} keys of state ({} store, logged), \
         commits every {} ms, session {} ms; crabka-broker 0.3.0",
        options.keys,
        options.store.name(),
        options.commit_ms,
        options.session_ms
    );
    println!();
    println!(
        "| mode | restart | all tasks run again after the close (s) | … after the start (s) | \
         longest pause, staying tasks (s) | longest pause, moved tasks (s) | records restored | \
         rebalances |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for figures in results {
        for r in &figures.restarts {
            println!(
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                figures.mode.name(),
                r.victim,
                seconds(r.takeover_ms),
                seconds(r.back_ms),
                seconds(r.staying_pause_ms),
                seconds(r.moved_pause_ms),
                r.restored,
                r.rebalances
            );
        }
    }
    println!();
    let tasks: Vec<i32> = results
        .first()
        .map(|f| f.task_pause_ms.keys().copied().collect())
        .unwrap_or_default();
    println!(
        "| mode | {} | output records checked |",
        tasks
            .iter()
            .map(|p| format!("0_{p} longest pause (s)"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|{}---:|", "---:|".repeat(tasks.len()));
    for figures in results {
        println!(
            "| {} | {} | {} |",
            figures.mode.name(),
            figures
                .task_pause_ms
                .values()
                .map(|ms| seconds(*ms))
                .collect::<Vec<_>>()
                .join(" | "),
            figures.output_records
        );
    }
}

fn print_failover(options: &Options, results: &[FailoverFigures]) {
    println!();
    println!(
        "failover of a task with {} keys of state ({} store, logged), instance killed with \
         SIGKILL, session {} ms, commits every {} ms; crabka-broker 0.3.0",
        options.keys,
        options.store.name(),
        options.session_ms,
        options.commit_ms
    );
    println!();
    println!(
        "| mode | kill → assigned (s) | restore: records | restore (s) | kill → counting again (s) | \
         longest pause (s) | output records checked |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for f in results {
        let (records, restore) = f
            .restore
            .map_or(("-".to_owned(), "-".to_owned()), |(r, ms)| {
                (r.to_string(), seconds(ms))
            });
        println!(
            "| {} | {} | {records} | {restore} | {} | {} | {} |",
            f.mode.name(),
            seconds(f.detection_ms),
            seconds(f.failover_ms),
            seconds(f.pause_ms),
            f.output_records
        );
    }
}

fn parent(options: Options) {
    let broker = Crabka::start().unwrap_or_else(|e| panic!("starting crabka-broker: {e}"));
    eprintln!("broker: crabka-broker 0.3.0 at {}", broker.bootstrap());
    let modes = options.modes.clone();
    match options.scenario {
        Scenario::Rolling => {
            let results: Vec<RollingFigures> = modes
                .iter()
                .map(|mode| {
                    eprintln!("rolling restart, {}:", mode.name());
                    rolling_restart(&broker, &options, *mode)
                })
                .collect();
            print_rolling(&options, &results);
        }
        Scenario::Failover => {
            let results: Vec<FailoverFigures> = modes
                .iter()
                .map(|mode| {
                    eprintln!("failover, {}:", mode.name());
                    failover(&broker, &options, *mode)
                })
                .collect();
            print_failover(&options, &results);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(process::CHILD) {
        instance::run_instance(&args[1..]);
        return;
    }
    match Options::parse(args) {
        Ok(options) => parent(options),
        Err(e) => {
            eprintln!("rebalance: {e}");
            std::process::exit(2);
        }
    }
}
