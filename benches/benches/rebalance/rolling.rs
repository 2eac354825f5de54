//! The rolling restart: three instances, six tasks (two each) holding the state between them,
//! under continuous input; each instance in turn is closed, the other two take over its
//! tasks, and it is started again (same state directory) and gets two tasks back.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kstreams_tests::crabka::Crabka;

use crate::input::{Expect, check_counts};
use crate::instance::unix_ms;
use crate::options::{Mode, Options};
use crate::run::Run;

/// Input partitions: two tasks per instance.
const PARTITIONS: i32 = 6;
const INSTANCES: [&str; 3] = ["a", "b", "c"];
/// After every task ran again, a restart's window goes on this long before the next one.
const SETTLE: Duration = Duration::from_secs(1);

/// One instance's restart.
pub(crate) struct Restart {
    pub(crate) victim: &'static str,
    /// From asking the instance to close until every task ran again on the other two.
    pub(crate) takeover_ms: u64,
    /// From starting the instance again until every task ran again, two per instance.
    pub(crate) back_ms: u64,
    /// The longest pause of a task that stayed on an instance not restarted.
    pub(crate) staying_pause_ms: u64,
    /// The longest pause of a task that moved (to another instance, or back).
    pub(crate) moved_pause_ms: u64,
    /// Changelog records restored during the restart (all tasks, all instances).
    pub(crate) restored: u64,
    /// Group generations synced during the restart.
    pub(crate) rebalances: usize,
}

pub(crate) struct RollingFigures {
    pub(crate) mode: Mode,
    pub(crate) restarts: Vec<Restart>,
    /// Each task's longest pause over the whole rolling restart.
    pub(crate) task_pause_ms: BTreeMap<i32, u64>,
    /// Output records checked.
    pub(crate) output_records: usize,
}

pub(crate) fn rolling_restart(broker: &Crabka, options: &Options, mode: Mode) -> RollingFigures {
    let mut run = Run::new(broker, options, mode, "rolling", PARTITIONS);
    let feed = run.build_state(&INSTANCES);
    let (_, mut tasks) = run.wait_all_running(0, Some(&feed));
    let mut incarnation: BTreeMap<&str, u32> = INSTANCES.iter().map(|i| (*i, 1)).collect();
    let first_close = unix_ms();
    let mut restarts = Vec::new();
    for victim in INSTANCES {
        let victim_name = format!("{victim}{}", incarnation[victim]);
        let before = tasks.clone();
        let closing = unix_ms();
        run.processes
            .remove(&victim_name)
            .expect("the victim runs")
            .close();
        let (taken_over, _) = run.wait_all_running(closing, Some(&feed));
        let next = incarnation[victim] + 1;
        incarnation.insert(victim, next);
        let starting = unix_ms();
        run.spawn(victim, next);
        let (back, after) = run.wait_all_running(starting, Some(&feed));
        std::thread::sleep(SETTLE);
        run.check(Some(&feed));
        let end = unix_ms();
        let mut staying: BTreeSet<i32> = BTreeSet::new();
        for (instance, was) in before.iter().filter(|(i, _)| **i != victim_name) {
            staying.extend(was.intersection(&after[instance]));
        }
        let pause = |p: &i32| run.timeline.longest_pause(*p, closing, end);
        let restart = Restart {
            victim,
            takeover_ms: taken_over - closing,
            back_ms: back - starting,
            staying_pause_ms: staying.iter().map(pause).max().unwrap_or(0),
            moved_pause_ms: (0..PARTITIONS)
                .filter(|p| !staying.contains(p))
                .map(|p| pause(&p))
                .max()
                .unwrap_or(0),
            restored: run.timeline.restores(closing, end).0,
            rebalances: run.timeline.generations(closing, end).len(),
        };
        eprintln!(
            "  {}: restart of {victim}: all tasks ran again {} ms after the close and {} ms \
             after the start; longest pause {} ms (staying tasks {staying:?}), {} ms (moved); \
             {} records restored; {} rebalances",
            mode.name(),
            restart.takeover_ms,
            restart.back_ms,
            restart.staying_pause_ms,
            restart.moved_pause_ms,
            restart.restored,
            restart.rebalances
        );
        restarts.push(restart);
        tasks = after;
    }
    let last_end = unix_ms();
    let task_pause_ms = (0..PARTITIONS)
        .map(|p| (p, run.timeline.longest_pause(p, first_close, last_end)))
        .collect();
    let sent = feed.stop();
    let output_records = check_counts(
        &broker.bootstrap(),
        &run.output,
        PARTITIONS,
        options.keys,
        &sent,
        Expect::Exact,
    );
    for process in std::mem::take(&mut run.processes).into_values() {
        process.close();
    }
    RollingFigures {
        mode,
        restarts,
        task_pause_ms,
        output_records,
    }
}
