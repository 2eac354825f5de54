//! An instance's child process as the parent sees it: spawned, its lines fed into the
//! [`Timeline`], closed (a line on stdin) or killed (SIGKILL: no close, no commit, no
//! LeaveGroup). Killed when dropped, also when the bench fails first.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::instance::InstanceArgs;
use crate::timeline::{Line, Timeline};

/// The hidden subcommand a child runs.
pub(crate) const CHILD: &str = "__rebalance_instance";

pub(crate) struct Process {
    /// The incarnation: `a1`, `a2`, …
    pub(crate) name: String,
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Process {
    /// Starts an instance; returns at once (its lines arrive in `timeline`).
    pub(crate) fn spawn(name: &str, args: &InstanceArgs, timeline: Arc<Timeline>) -> Self {
        let exe = std::env::current_exe().expect("the bench binary's path");
        let mut child = Command::new(exe)
            .arg(CHILD)
            .args(args.to_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawning an instance process");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("the instance's stdout");
        let instance = name.to_owned();
        std::thread::spawn(move || {
            for text in BufReader::new(stdout).lines() {
                let Ok(text) = text else { break };
                match Line::parse(&instance, &text) {
                    Ok(line) => timeline.push(line),
                    Err(e) => eprintln!("  ({e})"),
                }
            }
        });
        Self {
            name: name.to_owned(),
            child,
            stdin,
        }
    }

    /// Asks the instance to close and waits until it exited (it must exit cleanly).
    pub(crate) fn close(mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = writeln!(stdin, "stop");
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.child.try_wait().expect("polling an instance") {
                Some(status) => {
                    assert!(status.success(), "{} exited with {status}", self.name);
                    return;
                }
                None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                None => panic!("{} did not close within 60 s", self.name),
            }
        }
    }

    /// Kills the instance with SIGKILL and reaps it.
    pub(crate) fn kill(mut self) {
        self.child.kill().expect("SIGKILL an instance");
        self.child.wait().expect("reaping an instance");
    }

    /// Fails the bench if the process exited on its own.
    pub(crate) fn check_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited on its own: {status}", self.name);
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
