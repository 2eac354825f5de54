//! One mode's run of a scenario: its topics, application id and state directories on the
//! shared broker, the instances' lines, and waiting for the group to settle.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kstreams_tests::crabka::Crabka;

use crate::input::{Feed, produce_state, wait_committed};
use crate::instance::{InstanceArgs, unix_ms};
use crate::options::{Mode, Options};
use crate::process::Process;
use crate::timeline::Timeline;

/// Longest the bench waits for the group to settle, or for the state to be counted.
pub(crate) const SETTLE_TIMEOUT: Duration = Duration::from_secs(600);

pub(crate) struct Run<'a> {
    pub(crate) broker: &'a Crabka,
    pub(crate) options: &'a Options,
    pub(crate) mode: Mode,
    pub(crate) partitions: i32,
    pub(crate) app: String,
    pub(crate) input: String,
    pub(crate) output: String,
    state: tempfile::TempDir,
    pub(crate) timeline: Arc<Timeline>,
    /// The running instances, by incarnation (`a1`, `a2`, …).
    pub(crate) processes: BTreeMap<String, Process>,
}

impl<'a> Run<'a> {
    /// Creates the run's topics (`partitions` each) on `broker`.
    pub(crate) fn new(
        broker: &'a Crabka,
        options: &'a Options,
        mode: Mode,
        scenario: &str,
        partitions: i32,
    ) -> Self {
        let app = format!("rebalance-{scenario}-{}", mode.name());
        let input = format!("{app}-in");
        let output = format!("{app}-out");
        for topic in [&input, &output] {
            broker
                .create_topic(topic, partitions)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        Self {
            broker,
            options,
            mode,
            partitions,
            app,
            input,
            output,
            state: tempfile::tempdir().expect("state dir"),
            timeline: Arc::default(),
            processes: BTreeMap::new(),
        }
    }

    /// Starts incarnation `incarnation` of instance `base` (state under `<tmp>/<base>`, kept
    /// across its restarts); returns its name.
    pub(crate) fn spawn(&mut self, base: &str, incarnation: u32) -> String {
        let name = format!("{base}{incarnation}");
        let args = InstanceArgs {
            bootstrap: self.broker.bootstrap(),
            input: self.input.clone(),
            output: self.output.clone(),
            app: self.app.clone(),
            state_dir: self.state.path().join(base),
            mode: self.mode,
            store: self.options.store,
            commit_ms: self.options.commit_ms,
            session_ms: self.options.session_ms,
        };
        let process = Process::spawn(&name, &args, self.timeline.clone());
        self.processes.insert(name.clone(), process);
        name
    }

    /// Fails the bench if an instance failed or exited, or the input stopped.
    pub(crate) fn check(&mut self, feed: Option<&Feed>) {
        if let Some(failure) = self.timeline.failure() {
            panic!("{}: {failure}", self.mode.name());
        }
        for process in self.processes.values_mut() {
            process.check_alive();
        }
        if let Some(feed) = feed {
            feed.check();
        }
    }

    /// Waits until the running instances run every task, balanced, and each task counted a
    /// record after it was assigned and after `since`; returns when the last one did and the
    /// tasks per instance.
    pub(crate) fn wait_all_running(
        &mut self,
        since: u64,
        feed: Option<&Feed>,
    ) -> (u64, BTreeMap<String, BTreeSet<i32>>) {
        let live: Vec<String> = self.processes.keys().cloned().collect();
        let started = Instant::now();
        loop {
            if let Some(found) = self.timeline.all_running(&live, self.partitions, since) {
                return found;
            }
            self.check(feed);
            assert!(
                started.elapsed() < SETTLE_TIMEOUT,
                "{}: tasks not running, balanced, on {live:?} after \
                 {SETTLE_TIMEOUT:?}: {:?}",
                self.mode.name(),
                live.iter()
                    .map(|i| (i, self.timeline.owned(i)))
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Produces the state, starts `instances` (incarnation 1 each), waits until every task
    /// runs and the state is counted and committed, then starts the continuous input and lets
    /// it run for the warm-up; returns the input.
    pub(crate) fn build_state(&mut self, instances: &[&str]) -> Feed {
        let bootstrap = self.broker.bootstrap();
        let produced = Instant::now();
        let ends = produce_state(&bootstrap, &self.input, self.partitions, self.options.keys);
        eprintln!(
            "  {}: {} keys produced in {:.1} s",
            self.mode.name(),
            self.options.keys,
            produced.elapsed().as_secs_f64()
        );
        let started = unix_ms();
        for base in instances {
            self.spawn(base, 1);
        }
        self.wait_all_running(started, None);
        {
            let timeline = self.timeline.clone();
            let mode = self.mode.name();
            wait_committed(
                &bootstrap,
                &self.app,
                &self.input,
                &ends,
                SETTLE_TIMEOUT,
                || {
                    if let Some(failure) = timeline.failure() {
                        panic!("{mode}: {failure}");
                    }
                },
            );
        }
        eprintln!(
            "  {}: state counted and committed {:.1} s after the start",
            self.mode.name(),
            (unix_ms() - started) as f64 / 1000.0
        );
        let feed = Feed::start(&bootstrap, &self.input, self.partitions, self.options.keys);
        let warm_up = Instant::now();
        while warm_up.elapsed() < Duration::from_millis(self.options.warm_up_ms) {
            self.check(Some(&feed));
            std::thread::sleep(Duration::from_millis(50));
        }
        feed
    }
}
