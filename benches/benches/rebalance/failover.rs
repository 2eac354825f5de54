//! The failover: two instances, one task (one input partition) holding all the state, under
//! continuous input; the instance running the task is killed with SIGKILL (no close, no
//! commit, no LeaveGroup). The coordinator notices when its session expires, and the task
//! moves to the other instance, which restores its store (all of it without a standby, the
//! tail with one) before it counts again.

use kstreams_tests::crabka::Crabka;

use crate::input::{Expect, check_counts};
use crate::instance::unix_ms;
use crate::options::{Mode, Options};
use crate::run::Run;

const PARTITIONS: i32 = 1;
const INSTANCES: [&str; 2] = ["x", "y"];
/// The task.
const TASK: i32 = 0;

pub(crate) struct FailoverFigures {
    pub(crate) mode: Mode,
    /// From the kill until the other instance was assigned the task.
    pub(crate) detection_ms: u64,
    /// The restore on the other instance: records and milliseconds (`None`: it restored
    /// nothing).
    pub(crate) restore: Option<(u64, u64)>,
    /// From the kill until the task counted a record on the other instance.
    pub(crate) failover_ms: u64,
    /// The task's longest pause around the kill (from its last record before it).
    pub(crate) pause_ms: u64,
    /// Output records checked.
    pub(crate) output_records: usize,
}

pub(crate) fn failover(broker: &Crabka, options: &Options, mode: Mode) -> FailoverFigures {
    let mut run = Run::new(broker, options, mode, "failover", PARTITIONS);
    let feed = run.build_state(&INSTANCES);
    let (_, tasks) = run.wait_all_running(0, Some(&feed));
    let owner = tasks
        .iter()
        .find(|(_, t)| t.contains(&TASK))
        .map(|(name, _)| name.clone())
        .expect("an instance runs the task");
    let survivor = tasks
        .keys()
        .find(|name| **name != owner)
        .cloned()
        .expect("the other instance");
    let killing = unix_ms();
    run.processes.remove(&owner).expect("the owner runs").kill();
    let (ready, _) = run.wait_all_running(killing, Some(&feed));
    let assigned = run
        .timeline
        .assigned_at(&survivor, TASK)
        .expect("the survivor was assigned the task");
    let figures = FailoverFigures {
        mode,
        detection_ms: assigned.saturating_sub(killing),
        restore: run.timeline.restored(&survivor, TASK, killing),
        failover_ms: ready - killing,
        pause_ms: run.timeline.longest_pause(TASK, killing, ready),
        output_records: 0,
    };
    eprintln!(
        "  {}: killed {owner}; {survivor} assigned the task after {} ms, restored {:?} \
         (records, ms), counted again after {} ms; longest pause {} ms",
        mode.name(),
        figures.detection_ms,
        figures.restore,
        figures.failover_ms,
        figures.pause_ms
    );
    let sent = feed.stop();
    let output_records = check_counts(
        &broker.bootstrap(),
        &run.output,
        PARTITIONS,
        options.keys,
        &sent,
        Expect::AtLeast,
    );
    for process in std::mem::take(&mut run.processes).into_values() {
        process.close();
    }
    FailoverFigures {
        output_records,
        ..figures
    }
}
