//! The exactly-once audit: the output topic (and the changelog of the stateful topology) as a
//! read_committed consumer sees it, checked after every request the simulator serves, next to
//! the [`Audit`](super::tagged::Audit) of the raw log.
//!
//! Two views are compared:
//! - **the transactions**: every record the engines append is attributed to the ongoing
//!   transaction of its producer (the harness watches each engine's transactional id with
//!   [`SimCluster::transaction`]), and that transaction's outcome is seen when it ends
//!   (`EndTxn` commit or abort, or an abort by fencing or timeout);
//! - **the read_committed view**: [`SimCluster::read_committed_from`], below the last stable
//!   offset.
//!
//! Invariants:
//! - every record appended under exactly-once is transactional;
//! - the read_committed view is exactly the records of committed transactions: none of an
//!   aborted (or still open) transaction is ever visible, and every record of a committed
//!   transaction is visible once the last stable offset passed it;
//! - in the visible output, every input partition's records appear once each, in input order,
//!   from offset 0 without a gap (no duplicate, nothing lost) — and, for the stateful topology,
//!   each with its exact count;
//! - no record a zombie appended (an engine still running a task after the coordinator
//!   removed its membership, see [`ownership`](super::ownership)) is ever visible;
//! - the group's committed offsets never go back, and are never ahead of the visible output:
//!   committed `C` for an input partition means its records below `C` are visible, checked
//!   whenever no transaction is open on its output partition (while one is, a transaction that
//!   committed after it opened may legitimately have its output held back by the last stable
//!   offset).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use kstreams_core::engine::EngineConfig;

use super::ownership::TaskOwnership;
use super::tagged::{COUNTS_CHANGELOG, OUTPUT, committed, count_of, tag_of, true_count};
use crate::sim::{SimCluster, StoredRecord, TransactionInfo, TxnState};

/// The transactional id of an engine with `config` under exactly-once (the engine's rule,
/// docs/decisions.md §12: `<application id>-<client id>-<random seed as 16 hex digits>`).
pub fn transactional_id(config: &EngineConfig) -> String {
    config.producer.transactional_id.clone().unwrap_or_else(|| {
        format!(
            "{}-{}-{:016x}",
            config.application_id, config.client_id, config.random_seed
        )
    })
}

/// A partition the audit reads: (topic, partition).
type Partition = (&'static str, i32);

/// How the transactions of the watched ids went, and what the read_committed view showed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TxnStats {
    /// Transactions seen committing.
    pub committed: usize,
    /// Transactions seen aborting (by the engine, by fencing or by timeout).
    pub aborted: usize,
    /// Records of aborted transactions (output and changelog).
    pub aborted_records: usize,
    /// Records seen in the read_committed view (output and changelog).
    pub visible_records: usize,
    /// Transactions aborted by the coordinator (its epoch bumped: a timeout or a new
    /// InitProducerId of the same transactional id).
    pub fenced: usize,
    /// The longest a transaction was seen open before its producer ended it (commit or
    /// abort by EndTxn; fenced ones not counted), in ms.
    pub longest_ms: i64,
    /// Records a zombie appended (see [`CommittedAudit::watch_zombies`]): none may become
    /// visible.
    pub zombie_records: usize,
}

/// The transactions of the watched transactional ids, from the records they append to the
/// outcome the coordinator gives them.
#[derive(Debug, Default)]
struct TxnWatch {
    /// Each watched id's producer and transaction at the last check (`None`: no
    /// InitProducerId yet).
    last: BTreeMap<String, Option<TransactionInfo>>,
    /// Records appended in each id's ongoing transaction: (partition, offset).
    open: BTreeMap<String, Vec<(Partition, i64)>>,
    /// When each id's ongoing transaction was first seen open.
    began: BTreeMap<String, i64>,
    /// Per partition, the raw log read so far (exclusive).
    raw_read: BTreeMap<Partition, i64>,
    /// Per partition, offsets of committed transactions' records the read_committed view has
    /// not shown yet.
    expected: BTreeMap<Partition, BTreeSet<i64>>,
    /// Per partition, offsets of aborted transactions' records (never to be shown).
    aborted: BTreeMap<Partition, BTreeSet<i64>>,
    stats: TxnStats,
    /// Print every change of a watched transaction.
    trace: bool,
    /// The harness index of the engine running each transactional id (the last one started
    /// with it: an engine takes a machine's id only once the one before stopped or vanished).
    engines: BTreeMap<String, usize>,
    /// Who runs which task, to tell a zombie's records.
    ownership: Option<Rc<RefCell<TaskOwnership>>>,
    /// Per partition, offsets of records a zombie appended (never to be shown).
    zombie: BTreeMap<Partition, BTreeMap<i64, usize>>,
}

impl TxnWatch {
    /// Attributes new raw records to their producers' ongoing transactions.
    fn read_appended(&mut self, sim: &SimCluster, partitions: &[Partition]) -> Result<(), String> {
        let mut ids_by_producer: Option<BTreeMap<i64, String>> = None;
        for tp in partitions {
            let read = self.raw_read.entry(*tp).or_insert(0);
            let hw = sim.high_watermark(tp.0, tp.1).map_err(|e| e.to_string())?;
            if hw <= *read {
                continue;
            }
            let ids_by_producer = ids_by_producer.get_or_insert_with(|| {
                self.last
                    .keys()
                    .filter_map(|id| Some((sim.transaction(id)?.producer_id, id.clone())))
                    .collect()
            });
            for r in sim
                .read_log_from(tp.0, tp.1, *read)
                .map_err(|e| e.to_string())?
            {
                if !r.transactional {
                    return Err(format!(
                        "{}-{}@{}: a record outside a transaction under exactly-once (producer {})",
                        tp.0, tp.1, r.offset, r.producer_id
                    ));
                }
                let id = ids_by_producer.get(&r.producer_id).ok_or_else(|| {
                    format!(
                        "{}-{}@{}: a record of producer {}, which no watched transactional id has",
                        tp.0, tp.1, r.offset, r.producer_id
                    )
                })?;
                if let Some(engine) = zombie_engine(&self.ownership, &self.engines, sim, id, tp, &r)
                {
                    self.stats.zombie_records += 1;
                    self.zombie.entry(*tp).or_default().insert(r.offset, engine);
                }
                self.open
                    .entry(id.clone())
                    .or_default()
                    .push((*tp, r.offset));
            }
            *read = hw;
        }
        Ok(())
    }

    /// Sees which transactions ended since the last check, and how.
    fn read_outcomes(&mut self, sim: &SimCluster) {
        for (id, last) in &mut self.last {
            let now = sim.transaction(id);
            if self.trace && now != *last {
                println!(
                    "transaction {id} at {}: {:?} -> {:?}",
                    sim.now(),
                    last.as_ref()
                        .map(|t| (t.producer_id, t.producer_epoch, t.state)),
                    now.as_ref()
                        .map(|t| (t.producer_id, t.producer_epoch, t.state, &t.partitions)),
                );
            }
            let mut same_producer = false;
            let ended = match (last.as_ref(), now.as_ref()) {
                (Some(before), Some(now)) if before.state == TxnState::Ongoing => {
                    same_producer = (before.producer_id, before.producer_epoch)
                        == (now.producer_id, now.producer_epoch);
                    match now.state {
                        TxnState::Ongoing if same_producer => None,
                        TxnState::CompleteCommit if same_producer => Some(true),
                        _ => Some(false),
                    }
                }
                _ => None,
            };
            if now.as_ref().is_some_and(|t| t.state == TxnState::Ongoing)
                && (ended.is_some() || last.as_ref().is_none_or(|t| t.state != TxnState::Ongoing))
            {
                self.began.insert(id.clone(), sim.now());
            }
            if let Some(commit) = ended {
                let records = self.open.remove(id).unwrap_or_default();
                if commit {
                    self.stats.committed += 1;
                } else {
                    self.stats.aborted += 1;
                    self.stats.aborted_records += records.len();
                }
                if !same_producer {
                    self.stats.fenced += 1;
                } else if let Some(began) = self.began.get(id) {
                    self.stats.longest_ms = self.stats.longest_ms.max(sim.now() - began);
                }
                let into = if commit {
                    &mut self.expected
                } else {
                    &mut self.aborted
                };
                for (tp, offset) in records {
                    into.entry(tp).or_default().insert(offset);
                }
            }
            *last = now;
        }
    }

    /// A record the read_committed view shows: it must be one of a committed transaction.
    fn shown(&mut self, tp: &Partition, r: &StoredRecord) -> Result<(), String> {
        if let Some(engine) = self.zombie.get(tp).and_then(|z| z.get(&r.offset)) {
            return Err(format!(
                "{}-{}@{}: read_committed shows a record engine {engine} appended as a zombie \
                 (its membership removed by the coordinator; producer {} epoch {}, value {:?})",
                tp.0, tp.1, r.offset, r.producer_id, r.producer_epoch, r.value
            ));
        }
        if self
            .expected
            .get_mut(tp)
            .is_some_and(|offsets| offsets.remove(&r.offset))
        {
            self.stats.visible_records += 1;
            return Ok(());
        }
        let what = if self.aborted.get(tp).is_some_and(|a| a.contains(&r.offset)) {
            "of an aborted transaction"
        } else {
            "of no transaction seen committing"
        };
        Err(format!(
            "{}-{}@{}: read_committed shows a record {what} (producer {} epoch {}, value {:?})",
            tp.0, tp.1, r.offset, r.producer_id, r.producer_epoch, r.value
        ))
    }

    /// After the view was read up to `lso`: every committed record below it was shown.
    fn all_shown_below(&self, tp: &Partition, lso: i64) -> Result<(), String> {
        match self
            .expected
            .get(tp)
            .and_then(|offsets| offsets.range(..lso).next())
        {
            Some(offset) => Err(format!(
                "{}-{}@{offset}: a committed transaction's record is not in the read_committed \
                 view though the last stable offset is {lso}",
                tp.0, tp.1
            )),
            None => Ok(()),
        }
    }
}

/// The engine that appended `r` (of transactional id `id`, run by `engines`) to `tp`, if it
/// ran the task of the record's input partition as a zombie (as `ownership` tells).
fn zombie_engine(
    ownership: &Option<Rc<RefCell<TaskOwnership>>>,
    engines: &BTreeMap<String, usize>,
    sim: &SimCluster,
    id: &str,
    tp: &Partition,
    r: &StoredRecord,
) -> Option<usize> {
    let ownership = ownership.as_ref()?;
    let engine = *engines.get(id)?;
    let partition = if tp.0 == OUTPUT { tag_of(r)?.0 } else { tp.1 };
    ownership
        .borrow_mut()
        .zombie_runs(sim, engine, partition)
        .then_some(engine)
}

/// Checks the read_committed view after every served request (see the module docs).
#[derive(Debug)]
pub struct CommittedAudit {
    output_partitions: i32,
    stateful: bool,
    txns: TxnWatch,
    /// Per partition (output and changelog), the read_committed view read so far (exclusive).
    read: BTreeMap<Partition, i64>,
    /// Per input partition, the next input offset whose output the view must show.
    next: Vec<i64>,
    /// Committed offset of each input partition at the previous check.
    committed_before: Vec<Option<i64>>,
    /// The last value the view showed per changelog (partition, key).
    changelog: BTreeMap<(i32, bytes::Bytes), Option<bytes::Bytes>>,
}

impl CommittedAudit {
    /// An audit of `input_partitions` input partitions tagged into `output_partitions`;
    /// `stateful` for [`tag_count_topology`](super::tagged::tag_count_topology) (counts checked
    /// exactly, changelog audited too).
    pub fn new(input_partitions: i32, output_partitions: i32, stateful: bool) -> Self {
        let n = input_partitions as usize;
        Self {
            output_partitions,
            stateful,
            txns: TxnWatch::default(),
            read: BTreeMap::new(),
            next: vec![0; n],
            committed_before: vec![None; n],
            changelog: BTreeMap::new(),
        }
    }

    /// Prints every change of a watched transaction (`ENGINE_TRACE`).
    pub fn trace(&mut self) {
        self.txns.trace = true;
    }

    /// Watches the transactions of `transactional_id` (an engine about to start).
    pub fn watch(&mut self, transactional_id: String) {
        self.txns.last.entry(transactional_id).or_insert(None);
    }

    /// `transactional_id` is run by the engine at harness index `engine` from now on.
    pub fn run_by(&mut self, transactional_id: &str, engine: usize) {
        self.txns
            .engines
            .insert(transactional_id.to_owned(), engine);
    }

    /// Tells the records zombies append with `ownership` (the engines named by
    /// [`run_by`](Self::run_by)); read_committed must never show one.
    pub fn watch_zombies(&mut self, ownership: Rc<RefCell<TaskOwnership>>) {
        self.txns.ownership = Some(ownership);
    }

    /// How the transactions went so far.
    pub fn stats(&self) -> TxnStats {
        self.txns.stats
    }

    /// Whether every input offset below `n[p]` has its output in the view, for every `p`,
    /// and no transaction is open on the audited partitions (so the view of the changelog is
    /// final too: an engine that lost its tasks may still be aborting a transaction that holds
    /// a changelog's last stable offset back, and a dropped one's transaction holds it until
    /// the coordinator aborts it on its timeout).
    pub fn complete(&self, sim: &SimCluster, n: &[i64]) -> bool {
        self.next == n
            && self.partitions(sim).iter().all(|&(topic, p)| {
                sim.last_stable_offset(topic, p).ok() == sim.high_watermark(topic, p).ok()
            })
    }

    /// The audited partitions: the output's, then the changelog's once it exists.
    fn partitions(&self, sim: &SimCluster) -> Vec<Partition> {
        let mut topics = vec![OUTPUT];
        if self.stateful {
            topics.push(COUNTS_CHANGELOG);
        }
        topics
            .into_iter()
            .flat_map(|t| (0..sim.partition_count(t).unwrap_or(0)).map(move |p| (t, p)))
            .collect()
    }

    /// Checks the invariants of the module docs on the cluster as it is now.
    pub fn check(&mut self, sim: &SimCluster) -> Result<(), String> {
        let partitions = self.partitions(sim);
        self.txns.read_appended(sim, &partitions)?;
        self.txns.read_outcomes(sim);
        for tp in &partitions {
            let lso = sim
                .last_stable_offset(tp.0, tp.1)
                .map_err(|e| e.to_string())?;
            let read = self.read.entry(*tp).or_insert(0);
            if lso <= *read {
                continue;
            }
            let from = *read;
            *read = lso;
            for r in sim
                .read_committed_from(tp.0, tp.1, from)
                .map_err(|e| e.to_string())?
            {
                self.txns.shown(tp, &r)?;
                if tp.0 == OUTPUT {
                    self.output(tp.1, &r)?;
                } else {
                    let key = r.key.clone().unwrap_or_default();
                    self.changelog.insert((tp.1, key), r.value.clone());
                }
            }
            self.txns.all_shown_below(tp, lso)?;
        }
        self.commits(sim)
    }

    /// A visible output record: the next of its input partition, with its exact count.
    fn output(&mut self, q: i32, r: &StoredRecord) -> Result<(), String> {
        let (p, o) = tag_of(r).ok_or_else(|| format!("untagged output {r:?}"))?;
        let Some(next) = usize::try_from(p).ok().and_then(|i| self.next.get_mut(i)) else {
            return Err(format!("output of unknown input partition {p}"));
        };
        if p % self.output_partitions != q {
            return Err(format!("output of {p}:{o} in output partition {q}"));
        }
        if o != *next {
            let what = if o < *next {
                "a duplicate"
            } else {
                "a gap (lost or reordered)"
            };
            return Err(format!(
                "read_committed output {q}@{}: {p}:{o} where {p}:{next} is due: {what}",
                r.offset
            ));
        }
        *next += 1;
        if self.stateful {
            let count = count_of(r).ok_or_else(|| format!("output without a count {r:?}"))?;
            if count != true_count(o) {
                return Err(format!(
                    "read_committed output {q}@{}: {p}:{o} counted {count}, truly {}",
                    r.offset,
                    true_count(o)
                ));
            }
        }
        Ok(())
    }

    /// Committed offsets never go back and are never ahead of the visible output.
    fn commits(&mut self, sim: &SimCluster) -> Result<(), String> {
        for (p, before) in self.committed_before.iter_mut().enumerate() {
            let now = committed(sim, p as i32);
            if let (Some(before), Some(now)) = (*before, now)
                && now < before
            {
                return Err(format!(
                    "input partition {p}: committed offset went back from {before} to {now}"
                ));
            }
            *before = now;
            let q = p as i32 % self.output_partitions;
            let settled =
                sim.last_stable_offset(OUTPUT, q).ok() == sim.high_watermark(OUTPUT, q).ok();
            if let Some(c) = now
                && settled
                && c > self.next[p]
            {
                return Err(format!(
                    "input partition {p}: committed offset {c} but the read_committed output \
                     shows only up to {} (no transaction open on output {q})",
                    self.next[p]
                ));
            }
        }
        Ok(())
    }

    /// At the end of a run: every input offset below `n[p]` has its output in the view, and,
    /// for the stateful topology, the view of the changelog holds every key's exact count.
    pub fn assert_complete(&self, n: &[i64]) {
        assert_eq!(
            self.next, n,
            "input offsets with visible output, per partition"
        );
        if self.stateful {
            for (p, counts) in final_counts(&self.changelog, n.len()).iter().enumerate() {
                assert_eq!(
                    counts,
                    &true_final_counts(n[p]),
                    "counts in the read_committed changelog of partition {p}"
                );
            }
        }
        for (tp, offsets) in &self.txns.expected {
            assert!(
                offsets.is_empty(),
                "{}-{}: committed records never shown: {offsets:?}",
                tp.0,
                tp.1
            );
        }
    }
}

/// Per changelog partition, each key's count (from its last value; tombstones drop it).
pub fn final_counts(
    last_values: &BTreeMap<(i32, bytes::Bytes), Option<bytes::Bytes>>,
    partitions: usize,
) -> Vec<BTreeMap<String, i64>> {
    let mut out = vec![BTreeMap::new(); partitions];
    for ((p, key), value) in last_values {
        let p = *p as usize;
        assert!(
            p < partitions,
            "changelog partition {p} of {partitions} input partitions"
        );
        if let Some(value) = value {
            let bytes: [u8; 8] = value
                .as_ref()
                .try_into()
                .expect("a count is an 8-byte big-endian i64");
            out[p].insert(
                String::from_utf8_lossy(key).into_owned(),
                i64::from_be_bytes(bytes),
            );
        }
    }
    out
}

/// The true final count of each key of an input partition holding `n` records.
pub fn true_final_counts(n: i64) -> BTreeMap<String, i64> {
    (0..3)
        .filter(|&j| j < n)
        .map(|j| (format!("k{j}"), (n - 1 - j) / 3 + 1))
        .collect()
}

/// The last value per (partition, key) of the raw changelog: what an at-least-once restore
/// brings back. Under at-least-once every count is at least the truth.
pub fn raw_changelog(sim: &SimCluster) -> BTreeMap<(i32, bytes::Bytes), Option<bytes::Bytes>> {
    let mut last = BTreeMap::new();
    for p in 0..sim.partition_count(COUNTS_CHANGELOG).unwrap_or(0) {
        for r in sim.read_log(COUNTS_CHANGELOG, p).unwrap_or_default() {
            last.insert((p, r.key.clone().unwrap_or_default()), r.value.clone());
        }
    }
    last
}
