//! State that follows its partition, end to end: logged LMDB stores write their changelogs at
//! every commit and restore from them before processing, from their checkpoint when the state
//! directory has one (the tail only) or from the start when it is empty; counts stay exact
//! across restarts, a new machine, a stale state directory coming back, and partitions moving
//! between two running instances while input flows. On the mock cluster (no CreateTopics) the
//! changelog is made beforehand; Tansu creates it through the engine.

mod e2e_support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e_support::*;
use kstreams_core::record::TopicPartition;
use kstreams_core::task::TaskId;
use kstreams_io_common::{StateRestoreListener, Stores};

const INPUT: &str = "input";
const OUTPUT: &str = "output";
const SETTLE: Duration = Duration::from_millis(500);

/// One restore of a task's `counts` store, as the listener saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Restore {
    /// The checkpoint it started from.
    checkpoint: Option<i64>,
    /// Records restored.
    records: u64,
    /// The changelog position reached (its end).
    position: i64,
}

/// Records every restore, per task partition.
#[derive(Clone, Default)]
struct RestoreLog {
    started: Arc<Mutex<BTreeMap<i32, Option<i64>>>>,
    ended: Arc<Mutex<BTreeMap<i32, Restore>>>,
}

impl RestoreLog {
    /// The restore of every task partition; fails unless all ended.
    fn restores(&self) -> BTreeMap<i32, Restore> {
        let ended = self.ended.lock().unwrap().clone();
        assert_eq!(
            ended.keys().copied().collect::<Vec<_>>(),
            (0..PARTITIONS).collect::<Vec<_>>(),
            "every task restored its store"
        );
        ended
    }
}

impl StateRestoreListener for RestoreLog {
    fn on_restore_start(
        &mut self,
        task: TaskId,
        store: &str,
        _changelog: &TopicPartition,
        checkpoint: Option<i64>,
    ) {
        assert_eq!(store, "counts");
        self.started
            .lock()
            .unwrap()
            .insert(task.partition, checkpoint);
    }

    fn on_restore_end(
        &mut self,
        task: TaskId,
        _store: &str,
        records: u64,
        _bytes: u64,
        position: i64,
        _duration: kstreams_core::time::Duration,
    ) {
        let checkpoint = self.started.lock().unwrap()[&task.partition];
        self.ended.lock().unwrap().insert(
            task.partition,
            Restore {
                checkpoint,
                records,
                position,
            },
        );
    }
}

fn topics(broker: &Broker, app: &str) {
    broker.create_topic(INPUT, PARTITIONS);
    broker.create_topic(OUTPUT, PARTITIONS);
    if matches!(broker, Broker::Mock(_)) {
        broker.create_topic(&format!("{app}-counts-changelog"), PARTITIONS);
    }
}

/// Runs one instance on `dir` until the output holds a count for every record of `all` (the
/// input so far), checks the counts, closes it; returns its restores.
fn run_instance(
    broker: &Broker,
    adapter: Adapter,
    app: &str,
    dir: &std::path::Path,
    all: &[Input],
) -> BTreeMap<i32, Restore> {
    let restores = RestoreLog::default();
    let handle = adapter.start_with_restore_listener(
        count_topology_logged(INPUT, OUTPUT, true),
        streams_config(broker, app, dir),
        Stores::Lmdb,
        restores.clone(),
    );
    let output = read_exactly(&broker.bootstrap(), OUTPUT, all.len(), SETTLE);
    assert_counts_exact(all, &output);
    close(&handle);
    restores.restores()
}

/// Restart on the same directory (nothing to restore), a new machine (everything), the first
/// machine back with its stale directory (exactly the tail it missed): counts exact throughout.
fn state_follows_the_changelog(broker: Broker, adapter: Adapter) {
    let app = "e2e-state-restore";
    topics(&broker, app);
    let bootstrap = broker.bootstrap();
    let (first_dir, second_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut all: Vec<Input> = Vec::new();
    let mut phase = |n: usize, dir: &std::path::Path| {
        let input = numbered_input(all.len(), n, 9);
        produce(&bootstrap, INPUT, &input);
        all.extend(input);
        run_instance(&broker, adapter, app, dir, &all)
    };

    // A fresh instance on an empty changelog: nothing to restore.
    for (p, r) in phase(600, first_dir.path()) {
        assert_eq!(
            (r.checkpoint, r.records, r.position),
            (None, 0, 0),
            "task {p}"
        );
    }
    // The same directory again: its checkpoints are the changelog's end.
    let restarted = phase(400, first_dir.path());
    for (p, r) in &restarted {
        let checkpoint = r.checkpoint.expect("a checkpoint after the first run");
        assert!(checkpoint > 0, "task {p}: the first run logged its counts");
        assert_eq!(
            (r.records, r.position),
            (0, checkpoint),
            "task {p}: no tail"
        );
    }
    // A new machine: the whole changelog, written by both runs.
    let moved = phase(400, second_dir.path());
    for (p, r) in &moved {
        assert_eq!(r.checkpoint, None, "task {p}: an empty directory");
        assert_eq!(
            r.records as i64, r.position,
            "task {p}: everything restored"
        );
        assert!(
            r.position > restarted[p].position,
            "task {p}: the second run logged too"
        );
    }
    // The first machine back: its checkpoint is where it left, it restores what the new
    // machine appended, and nothing more.
    for (p, r) in phase(200, first_dir.path()) {
        assert_eq!(
            r.checkpoint,
            Some(moved[&p].position),
            "task {p}: the stale directory's checkpoint"
        );
        assert!(
            r.position > moved[&p].position,
            "task {p}: a tail to restore"
        );
        assert_eq!(
            r.records as i64,
            r.position - moved[&p].position,
            "task {p}: only the tail"
        );
    }
}

/// Two instances, the second joining and then the first leaving while input flows: the
/// tasks' state moves with them through the changelog, so the counts stay exact.
fn partitions_move_while_input_flows(broker: Broker) {
    let app = "e2e-state-moves";
    topics(&broker, app);
    let bootstrap = broker.bootstrap();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let start = |adapter: Adapter, dir: &std::path::Path| {
        adapter.start(
            count_topology_logged(INPUT, OUTPUT, true),
            streams_config(&broker, app, dir),
            Stores::Lmdb,
        )
    };
    let chunks: Vec<Vec<Input>> = (0..12).map(|i| numbered_input(i * 100, 100, 9)).collect();
    let first = start(Adapter::Tokio, dirs[0].path());
    wait_running(&first);
    let mut second = None;
    for (i, chunk) in chunks.iter().enumerate() {
        produce(&bootstrap, INPUT, chunk);
        std::thread::sleep(Duration::from_millis(300));
        if i == 3 {
            second = Some(start(Adapter::Smol, dirs[1].path()));
        }
        if i == 8 {
            // The first leaves: its tasks move to the second with their state.
            close(&first);
        }
    }
    let all: Vec<Input> = chunks.concat();
    let output = match broker {
        Broker::Mock(_) => {
            // librdkafka's mock refuses OffsetCommit while its group rebalances
            // (REBALANCE_IN_PROGRESS; Kafka accepts a commit of the current generation then),
            // so a revoked task's last commit can be lost there: its successor restores the
            // state the changelog holds and processes the uncommitted records again
            // (at-least-once: counts run ahead, never back, never skip).
            let output = read_until(&bootstrap, OUTPUT, SETTLE, |out| out.len() >= all.len());
            assert_counts_at_least(&all, &output);
            output
        }
        _ => {
            let output = read_exactly(&bootstrap, OUTPUT, all.len(), SETTLE);
            assert_counts_exact(&all, &output);
            output
        }
    };
    assert!(output.len() >= all.len());
    close(&second.expect("the second instance started"));
}

#[test]
fn mock_state_follows_the_changelog_tokio() {
    bounded(|| state_follows_the_changelog(Broker::mock(), Adapter::Tokio));
}

#[test]
fn tansu_state_follows_the_changelog_smol() {
    bounded(|| state_follows_the_changelog(Broker::tansu(), Adapter::Smol));
}

/// Ignored: on the mock, whose coordinator refuses the revoke commit during a rebalance and
/// may complete it without the revoking member, that member's changelog writes can land
/// after its successor restored (a stale write): at-least-once then loses updates (a count
/// below the truth seen here once in about ten runs). The seeded simulation counts these
/// (`stale_changelog_writes`); only exactly-once fences them. Open: fencing changelog writes
/// of a member that left the generation under at-least-once.
#[test]
#[ignore = "known at-least-once limit on the mock: a revoked member's late changelog write can lose updates (see doc)"]
fn mock_partitions_move_while_input_flows() {
    bounded(|| partitions_move_while_input_flows(Broker::mock()));
}

#[test]
fn tansu_partitions_move_while_input_flows() {
    bounded(|| partitions_move_while_input_flows(Broker::tansu()));
}
