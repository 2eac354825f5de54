//! Every line the instances printed, with the instance (incarnation: `a1`, then `a2` once `a`
//! was restarted) and time, and what the parent reads from them: who runs which task, when a
//! task ran again, its longest pause, restores and rebalances.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

/// What a line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    Running,
    Assigned(Vec<i32>),
    Revoked(Vec<i32>),
    Lost(Vec<i32>),
    Synced(i32),
    RestoreStarted {
        partition: i32,
        checkpoint: i64,
    },
    Restored {
        partition: i32,
        records: u64,
        ms: u64,
    },
    Seen(i32),
    Failed(String),
    Exit(String),
}

/// One line of one instance.
#[derive(Debug, Clone)]
pub(crate) struct Line {
    pub(crate) instance: String,
    /// Milliseconds since the Unix epoch, from the instance's clock (the machine's).
    pub(crate) at: u64,
    pub(crate) kind: Kind,
}

impl Line {
    /// `<ms> <kind> <args…>` as the instance prints it.
    pub(crate) fn parse(instance: &str, text: &str) -> Result<Self, String> {
        let bad = || format!("{instance}: unexpected line `{text}`");
        let mut words = text.split_whitespace();
        let at: u64 = words.next().and_then(|w| w.parse().ok()).ok_or_else(bad)?;
        let word = words.next().ok_or_else(bad)?;
        let rest: Vec<&str> = words.collect();
        let numbers = || -> Result<Vec<i64>, String> {
            rest.iter()
                .map(|w| w.parse::<i64>().map_err(|_| bad()))
                .collect()
        };
        let partitions = || -> Result<Vec<i32>, String> {
            Ok(numbers()?.into_iter().map(|n| n as i32).collect())
        };
        let kind = match word {
            "running" => Kind::Running,
            "assigned" => Kind::Assigned(partitions()?),
            "revoked" => Kind::Revoked(partitions()?),
            "lost" => Kind::Lost(partitions()?),
            "synced" => Kind::Synced(*partitions()?.first().ok_or_else(bad)?),
            "seen" => Kind::Seen(*partitions()?.first().ok_or_else(bad)?),
            "restore-start" => match numbers()?[..] {
                [p, checkpoint] => Kind::RestoreStarted {
                    partition: p as i32,
                    checkpoint,
                },
                _ => return Err(bad()),
            },
            "restored" => match numbers()?[..] {
                [p, records, ms] => Kind::Restored {
                    partition: p as i32,
                    records: records as u64,
                    ms: ms as u64,
                },
                _ => return Err(bad()),
            },
            "failed" => Kind::Failed(rest.join(" ")),
            "exit" => Kind::Exit(rest.join(" ")),
            _ => return Err(bad()),
        };
        Ok(Self {
            instance: instance.to_owned(),
            at,
            kind,
        })
    }
}

/// Every line so far, in the order received.
#[derive(Default)]
pub(crate) struct Timeline {
    lines: Mutex<Vec<Line>>,
}

impl Timeline {
    pub(crate) fn push(&self, line: Line) {
        self.lines.lock().expect("timeline lock").push(line);
    }

    fn with<T>(&self, f: impl FnOnce(&[Line]) -> T) -> T {
        f(&self.lines.lock().expect("timeline lock"))
    }

    /// A failure any instance reported (`failed`, or an exit other than `exit ok`).
    pub(crate) fn failure(&self) -> Option<String> {
        self.with(|lines| {
            lines.iter().find_map(|l| match &l.kind {
                Kind::Failed(m) => Some(format!("{} failed: {m}", l.instance)),
                Kind::Exit(m) if m != "ok" => Some(format!("{} exited: {m}", l.instance)),
                _ => None,
            })
        })
    }

    /// The tasks `instance` runs according to its lines.
    pub(crate) fn owned(&self, instance: &str) -> BTreeSet<i32> {
        self.with(|lines| {
            let mut owned = BTreeSet::new();
            for line in lines.iter().filter(|l| l.instance == instance) {
                match &line.kind {
                    Kind::Assigned(ps) => owned.extend(ps),
                    Kind::Revoked(ps) | Kind::Lost(ps) => {
                        for p in ps {
                            owned.remove(p);
                        }
                    }
                    _ => {}
                }
            }
            owned
        })
    }

    /// When `instance` was last assigned `partition` (`None`: never).
    pub(crate) fn assigned_at(&self, instance: &str, partition: i32) -> Option<u64> {
        self.with(|lines| {
            lines
                .iter()
                .rev()
                .find(|l| {
                    l.instance == instance
                        && matches!(&l.kind, Kind::Assigned(ps) if ps.contains(&partition))
                })
                .map(|l| l.at)
        })
    }

    /// When `instance` first counted a record of `partition` at or after `since`.
    pub(crate) fn first_seen(&self, instance: &str, partition: i32, since: u64) -> Option<u64> {
        self.with(|lines| {
            lines
                .iter()
                .filter(|l| l.instance == instance && l.at >= since)
                .find(|l| l.kind == Kind::Seen(partition))
                .map(|l| l.at)
        })
    }

    /// The longest time between `from` and `to` in which no instance counted a record of
    /// `partition` (the pause from the last record before `from` counts from that record).
    pub(crate) fn longest_pause(&self, partition: i32, from: u64, to: u64) -> u64 {
        self.with(|lines| {
            let mut times: Vec<u64> = lines
                .iter()
                .filter(|l| l.kind == Kind::Seen(partition) && l.at <= to)
                .map(|l| l.at)
                .collect();
            times.sort_unstable();
            let first = times.partition_point(|t| *t < from);
            let mut previous = if first > 0 { times[first - 1] } else { from };
            let mut longest = 0;
            for t in &times[first..] {
                longest = longest.max(t - previous);
                previous = *t;
            }
            longest.max(to.saturating_sub(previous))
        })
    }

    /// Records restored (all stores, all instances) from `from` on, and the longest restore.
    pub(crate) fn restores(&self, from: u64, to: u64) -> (u64, u64) {
        self.with(|lines| {
            lines
                .iter()
                .filter(|l| l.at >= from && l.at <= to)
                .filter_map(|l| match l.kind {
                    Kind::Restored { records, ms, .. } => Some((records, ms)),
                    _ => None,
                })
                .fold((0, 0), |(records, longest), (r, ms)| {
                    (records + r, longest.max(ms))
                })
        })
    }

    /// The first restore of `partition` on `instance` that ended at or after `since`:
    /// (records, milliseconds).
    pub(crate) fn restored(
        &self,
        instance: &str,
        partition: i32,
        since: u64,
    ) -> Option<(u64, u64)> {
        self.with(|lines| {
            lines
                .iter()
                .filter(|l| l.instance == instance && l.at >= since)
                .find_map(|l| match l.kind {
                    Kind::Restored {
                        partition: p,
                        records,
                        ms,
                    } if p == partition => Some((records, ms)),
                    _ => None,
                })
        })
    }

    /// The generations any instance synced between `from` and `to`.
    pub(crate) fn generations(&self, from: u64, to: u64) -> BTreeSet<i32> {
        self.with(|lines| {
            lines
                .iter()
                .filter(|l| l.at >= from && l.at <= to)
                .filter_map(|l| match l.kind {
                    Kind::Synced(g) => Some(g),
                    _ => None,
                })
                .collect()
        })
    }

    /// If the instances in `live` run every one of `partitions` tasks, each on one instance,
    /// balanced (as many each as can be: 2/2/2, 3/3, 1/0), and every task counted a record on
    /// its instance after it was assigned there and after `since`: when the last of them did
    /// (all tasks run again), with the tasks per instance.
    pub(crate) fn all_running(
        &self,
        live: &[String],
        partitions: i32,
        since: u64,
    ) -> Option<(u64, BTreeMap<String, BTreeSet<i32>>)> {
        let fewest = partitions as usize / live.len().max(1);
        let most = (partitions as usize).div_ceil(live.len().max(1));
        let owned: BTreeMap<String, BTreeSet<i32>> =
            live.iter().map(|i| (i.clone(), self.owned(i))).collect();
        let all: Vec<i32> = owned.values().flatten().copied().collect();
        let distinct: BTreeSet<i32> = all.iter().copied().collect();
        if all.len() != partitions as usize
            || distinct.len() != all.len()
            || owned.values().any(|t| t.len() < fewest || t.len() > most)
        {
            return None;
        }
        let mut last = since;
        for (instance, tasks) in &owned {
            for p in tasks {
                let assigned = self.assigned_at(instance, *p).unwrap_or(since).max(since);
                last = last.max(self.first_seen(instance, *p, assigned)?);
            }
        }
        Some((last, owned))
    }
}
