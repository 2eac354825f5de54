//! The command line of the rebalance bench: the scenario, the modes compared, the state's size
//! and the engine settings.

use kstreams_core::engine::RebalanceProtocol;

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scenario {
    /// Three instances, each closed and started again in turn.
    Rolling,
    /// Two instances, one task; the instance running it is killed (SIGKILL).
    Failover,
}

/// How the instances rebalance: the protocol, and whether they keep standby replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Eager,
    Cooperative,
    /// Cooperative with one standby replica per task.
    CooperativeStandby,
}

impl Mode {
    pub(crate) fn parse(name: &str) -> Result<Self, String> {
        Ok(match name {
            "eager" => Mode::Eager,
            "cooperative" => Mode::Cooperative,
            "cooperative-standby" => Mode::CooperativeStandby,
            other => {
                return Err(format!(
                    "unknown mode `{other}` (eager, cooperative, cooperative-standby)"
                ));
            }
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Mode::Eager => "eager",
            Mode::Cooperative => "cooperative",
            Mode::CooperativeStandby => "cooperative-standby",
        }
    }

    pub(crate) fn protocol(self) -> RebalanceProtocol {
        match self {
            Mode::Eager => RebalanceProtocol::Eager,
            Mode::Cooperative | Mode::CooperativeStandby => RebalanceProtocol::Cooperative,
        }
    }

    /// Standby replicas per task.
    pub(crate) fn standby_replicas(self) -> u32 {
        match self {
            Mode::CooperativeStandby => 1,
            Mode::Eager | Mode::Cooperative => 0,
        }
    }
}

/// Which store the count keeps its state in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreKind {
    Lmdb,
    Memory,
}

impl StoreKind {
    pub(crate) fn parse(name: &str) -> Result<Self, String> {
        match name {
            "lmdb" => Ok(StoreKind::Lmdb),
            "memory" => Ok(StoreKind::Memory),
            other => Err(format!("unknown store `{other}` (lmdb, memory)")),
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            StoreKind::Lmdb => "lmdb",
            StoreKind::Memory => "memory",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) scenario: Scenario,
    pub(crate) modes: Vec<Mode>,
    /// Keys of state: all tasks' together (rolling), the one task's (failover).
    pub(crate) keys: usize,
    pub(crate) store: StoreKind,
    pub(crate) commit_ms: u64,
    pub(crate) session_ms: u64,
    /// How long the instances run under the continuous input before the first restart or
    /// the kill (standby replicas catch up meanwhile).
    pub(crate) warm_up_ms: u64,
}

const USAGE: &str = "usage: rebalance [--scenario rolling|failover] \
[--mode eager,cooperative,cooperative-standby] [--keys N] [--store lmdb|memory] \
[--commit-ms MS] [--session-timeout-ms MS] [--warm-up-ms MS]";

impl Options {
    pub(crate) fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let mut options = Options {
            scenario: Scenario::Rolling,
            modes: vec![Mode::Eager, Mode::Cooperative, Mode::CooperativeStandby],
            keys: 1_000_000,
            store: StoreKind::Lmdb,
            commit_ms: 200,
            session_ms: 6_000,
            warm_up_ms: 3_000,
        };
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            // `cargo bench` passes `--bench` to every bench binary.
            if flag == "--bench" {
                continue;
            }
            let value = args
                .next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
            let number = |v: &str| {
                v.parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("{flag}: `{v}` is not a positive number"))
            };
            match flag.as_str() {
                "--scenario" => {
                    options.scenario = match value.as_str() {
                        "rolling" => Scenario::Rolling,
                        "failover" => Scenario::Failover,
                        other => {
                            return Err(format!(
                                "--scenario: `{other}` is not rolling or failover"
                            ));
                        }
                    }
                }
                "--mode" | "--modes" => {
                    options.modes = value
                        .split(',')
                        .map(Mode::parse)
                        .collect::<Result<_, _>>()?
                }
                "--keys" => options.keys = number(&value)?,
                "--store" => options.store = StoreKind::parse(&value)?,
                "--commit-ms" => options.commit_ms = number(&value)? as u64,
                "--session-timeout-ms" => options.session_ms = number(&value)? as u64,
                "--warm-up-ms" => options.warm_up_ms = number(&value)? as u64,
                _ => return Err(format!("unknown argument `{flag}`\n{USAGE}")),
            }
        }
        Ok(options)
    }
}
