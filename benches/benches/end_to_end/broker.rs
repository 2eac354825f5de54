//! The broker the contenders run against (Tansu, librdkafka's mock cluster or crabka-broker),
//! and the CPU time and memory of processes read from `/proc`.

use std::time::Duration;

use kstreams_tests::crabka::Crabka;
use kstreams_tests::tansu::Tansu;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

use crate::PARTITIONS;
use crate::options::BrokerKind;

pub(crate) enum Broker {
    Tansu(Tansu),
    Mock(kstreams_tests::mock::Mock),
    Crabka(Crabka),
}

impl Broker {
    pub(crate) fn start(kind: BrokerKind) -> Self {
        match kind {
            BrokerKind::Tansu => Broker::Tansu(
                Tansu::start().unwrap_or_else(|e| panic!("starting the Tansu broker: {e}")),
            ),
            BrokerKind::Mock => Broker::Mock(
                kstreams_tests::mock::mock_cluster(3).expect("librdkafka mock cluster"),
            ),
            BrokerKind::Crabka => Broker::Crabka(
                Crabka::start().unwrap_or_else(|e| panic!("starting crabka-broker: {e}")),
            ),
        }
    }

    pub(crate) fn bootstrap(&self) -> String {
        match self {
            Broker::Tansu(t) => t.bootstrap(),
            Broker::Mock(m) => m.bootstrap_servers(),
            Broker::Crabka(c) => c.bootstrap(),
        }
    }

    pub(crate) fn name(&self) -> &'static str {
        match self {
            Broker::Tansu(_) => "Tansu 0.6.0 (memory storage, separate process)",
            Broker::Mock(_) => "librdkafka 2.12 mock cluster (3 brokers, in the parent process)",
            Broker::Crabka(_) => "crabka-broker 0.3.0 (disk storage, separate process)",
        }
    }

    /// The process whose CPU time is the broker's: the Tansu or crabka-broker child, or this
    /// process.
    pub(crate) fn pid(&self) -> u32 {
        match self {
            Broker::Tansu(_) => child_pid("tansu").expect("the Tansu child process in /proc"),
            Broker::Mock(_) => std::process::id(),
            Broker::Crabka(_) => {
                child_pid("crabka-broker").expect("the crabka-broker child process in /proc")
            }
        }
    }

    /// The replication factor kstreams must ask for its internal topics (changelogs), where
    /// the engine's default (`-1`, the broker's default) does not do: crabka-broker 0.3.0
    /// refuses CreateTopics with `-1`.
    pub(crate) fn internal_replication_factor(&self) -> Option<i16> {
        match self {
            Broker::Crabka(_) => Some(1),
            Broker::Tansu(_) | Broker::Mock(_) => None,
        }
    }

    fn admin(&self) -> AdminClient<DefaultClientContext> {
        ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .create()
            .expect("admin client")
    }

    pub(crate) fn create_topic(&self, topic: &str) {
        match self {
            Broker::Mock(m) => m
                .create_topic(topic, PARTITIONS, 1)
                .unwrap_or_else(|e| panic!("create {topic} on the mock: {e}")),
            Broker::Crabka(c) => c
                .create_topic(topic, PARTITIONS)
                .unwrap_or_else(|e| panic!("create {topic} on crabka-broker: {e}")),
            Broker::Tansu(t) => {
                let new = NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1));
                let results = futures_lite::future::block_on(
                    self.admin().create_topics([&new], &AdminOptions::new()),
                )
                .unwrap_or_else(|e| panic!("CreateTopics {topic}: {e}"));
                for result in results {
                    if let Err((topic, code)) = result {
                        panic!("CreateTopics {topic}: {code}; log:\n{}", t.log_tail());
                    }
                }
            }
        }
    }

    /// Deletes a checked output topic so the broker's memory does not grow with every round.
    pub(crate) fn delete_topic(&self, topic: &str) {
        if let Broker::Mock(_) = self {
            // The mock cluster does not serve DeleteTopics (the request times out).
            return;
        }
        let outcome = futures_lite::future::block_on(self.admin().delete_topics(
            &[topic],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        ));
        match outcome {
            Ok(results) => {
                for result in results {
                    if let Err((topic, code)) = result {
                        eprintln!("  (DeleteTopics {topic}: {code}; topic kept)");
                    }
                }
            }
            Err(e) => eprintln!("  (DeleteTopics {topic}: {e}; topic kept)"),
        }
    }
}

/// The pid of our child process whose command name is `name`.
fn child_pid(name: &str) -> Option<u32> {
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (comm, rest) = stat.split_once(") ")?;
            let ppid: u32 = rest.split(' ').nth(1)?.parse().ok()?;
            (comm.strip_suffix(name)?.ends_with('(') && ppid == me).then_some(pid)
        })
}

/// CPU time (user, system) of a process, in seconds.
pub(crate) fn cpu_seconds(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/stat: {e}"));
    let (_, rest) = stat.rsplit_once(") ").expect("/proc/<pid>/stat layout");
    // Fields after the command: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = rest.split(' ').collect();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let field = |i: usize| fields[i - 3].parse::<f64>().expect("a CPU tick count") / ticks;
    (field(14), field(15))
}

/// Peak resident set size (`VmHWM`) of a process, in KiB.
pub(crate) fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status")
}

/// Resident set size now (`VmRSS`), in KiB.
pub(crate) fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
