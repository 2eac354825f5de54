//! The count instance (`src/bin/e2e_count_instance.rs`) in a process of its own: spawned,
//! followed through the lines it prints (events), killed (SIGKILL), stopped and resumed
//! (SIGSTOP, SIGCONT). Killed when dropped, also when the test fails first.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::WAIT;

/// The command line of one count instance.
#[derive(Debug, Clone)]
pub struct CountInstanceArgs {
    /// `host:port` of the broker.
    pub bootstrap: String,
    /// The input topic.
    pub input: String,
    /// The output topic.
    pub output: String,
    /// The application id.
    pub app: String,
    /// The state directory.
    pub state_dir: PathBuf,
    /// `at-least-once` or `exactly-once`.
    pub guarantee: &'static str,
    /// The commit interval.
    pub commit_interval_ms: u64,
    /// Fail with a processing error on the first count of this key.
    pub fail_on_key: Option<String>,
    /// The group session timeout (default: `fast_engine_config`'s 6 s).
    pub session_timeout_ms: Option<u64>,
    /// The transactional id (default: the engine's, different in every process).
    pub transactional_id: Option<String>,
    /// Standby replicas per stateful task (default: the engine's, 0).
    pub num_standby_replicas: Option<usize>,
    /// The caught-up threshold of the state-aware assignor (default: the engine's).
    pub acceptable_recovery_lag: Option<i64>,
    /// The probing rebalance interval (default: the engine's, 10 min).
    pub probing_rebalance_ms: Option<u64>,
}

impl CountInstanceArgs {
    /// `input` → `output` of `app` with state in `state_dir`, under `guarantee`, with 200 ms
    /// commits.
    pub fn new(
        bootstrap: &str,
        input: &str,
        output: &str,
        app: &str,
        state_dir: &Path,
        guarantee: &'static str,
    ) -> Self {
        Self {
            bootstrap: bootstrap.to_owned(),
            input: input.to_owned(),
            output: output.to_owned(),
            app: app.to_owned(),
            state_dir: state_dir.to_owned(),
            guarantee,
            commit_interval_ms: 200,
            fail_on_key: None,
            session_timeout_ms: None,
            transactional_id: None,
            num_standby_replicas: None,
            acceptable_recovery_lag: None,
            probing_rebalance_ms: None,
        }
    }
}

/// A running count instance and the lines it printed so far.
pub struct CountInstance {
    /// For messages: which instance this is.
    pub name: String,
    child: Child,
    lines: Receiver<String>,
    /// Every line received so far.
    log: Vec<String>,
}

impl CountInstance {
    /// Spawns the instance; returns once it printed `running` (fails the test if it does not
    /// within [`WAIT`]).
    pub fn spawn(name: &str, args: &CountInstanceArgs) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_e2e_count_instance"));
        command
            .args([&args.bootstrap, &args.input, &args.output, &args.app])
            .arg(&args.state_dir)
            .arg(args.guarantee)
            .arg(args.commit_interval_ms.to_string());
        if let Some(key) = &args.fail_on_key {
            command.args(["--fail-on-key", key]);
        }
        if let Some(ms) = args.session_timeout_ms {
            command.args(["--session-timeout-ms", &ms.to_string()]);
        }
        if let Some(id) = &args.transactional_id {
            command.args(["--transactional-id", id]);
        }
        if let Some(n) = args.num_standby_replicas {
            command.args(["--num-standby-replicas", &n.to_string()]);
        }
        if let Some(lag) = args.acceptable_recovery_lag {
            command.args(["--acceptable-recovery-lag", &lag.to_string()]);
        }
        if let Some(ms) = args.probing_rebalance_ms {
            command.args(["--probing-rebalance-ms", &ms.to_string()]);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the count instance process");
        let stdout = child.stdout.take().expect("its stdout");
        // Its log on ours, each line marked with the instance's name.
        let stderr = child.stderr.take().expect("its stderr");
        let prefix = format!("[{name}] ");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("{prefix}{line}");
            }
        });
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut instance = Self {
            name: name.to_owned(),
            child,
            lines,
            log: Vec::new(),
        };
        let started = instance.wait_line(WAIT, |l| l == "running" || l.starts_with("exit "));
        match started {
            Some(line) if line == "running" => instance,
            other => panic!(
                "{name} did not start: {other:?}; its lines: {:?}",
                instance.log
            ),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `timeout` for a line (printed after the last one this returned) that
    /// `wanted` accepts; `None` if none came (or the process closed its output).
    pub fn wait_line(
        &mut self,
        timeout: Duration,
        mut wanted: impl FnMut(&str) -> bool,
    ) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if wanted(&line) {
                        return Some(line);
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Takes in the lines printed so far without waiting.
    pub fn drain(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.log.push(line);
        }
    }

    /// Every line received so far (call [`CountInstance::drain`] first for the latest).
    pub fn log(&self) -> &[String] {
        &self.log
    }

    /// The tasks the instance runs according to the lines received so far (`assigned` adds,
    /// `revoked` and `lost` remove).
    pub fn owned_tasks(&self) -> BTreeSet<String> {
        let mut owned = BTreeSet::new();
        for line in &self.log {
            let mut words = line.split_whitespace();
            let tasks = words.clone().skip(1).map(str::to_owned);
            match words.next() {
                Some("assigned") => owned.extend(tasks),
                Some("revoked" | "lost") => {
                    for task in tasks {
                        owned.remove(&task);
                    }
                }
                _ => {}
            }
        }
        owned
    }

    /// Kills the process with SIGKILL (no close, no commit, no LeaveGroup) and reaps it.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL the instance");
        self.child.wait().expect("reap the instance");
        self.drain();
    }

    /// Sends `signal` (`STOP`, `CONT`, …) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {}: {status}", self.pid());
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            self.drain();
            if let Some(status) = self.child.try_wait().expect("poll the instance") {
                // Lines printed just before the exit.
                while self
                    .wait_line(Duration::from_millis(200), |_| true)
                    .is_some()
                {}
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for CountInstance {
    fn drop(&mut self) {
        // SIGKILL ends a stopped process too.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
