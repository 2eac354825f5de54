//! Records through tasks: fetched batches into the tasks' queues, batches through the
//! topology, and the tasks' output to the producer.

use super::commit::OutputOwner;
use super::{Engine, EngineConfig, EngineError};
use crate::client::producer::{ProducerError, record_size_bound};
use crate::record::{ProducerRecord, TopicPartition};
use crate::task::{Task, TaskId};

impl Engine {
    pub(super) fn feed_tasks(&mut self) -> bool {
        let mut progress = false;
        while let Some(batch) = self.fetcher.poll_records() {
            progress = true;
            let tp = batch.partition;
            if self.is_restoring(&tp) {
                if let Err(error) = self.restore_records(&tp, batch.records) {
                    self.fail(error);
                    return true;
                }
                continue;
            }
            if self.is_standby_changelog(&tp) {
                if let Err(error) = self.standby_records(&tp, batch.records) {
                    self.fail(error);
                    return true;
                }
                continue;
            }
            // The fetcher holds only partitions of running tasks, changelogs of restoring
            // ones and of standbys: `close_tasks` unassigns a task's partitions (dropping their buffered
            // records) when it drops the task, and a restored changelog is unassigned.
            self.metrics.records_consumed += batch.records.len() as u64;
            let task = self
                .subtopology_of
                .get(&*tp.topic)
                .map(|&subtopology| TaskId {
                    subtopology,
                    partition: tp.partition,
                })
                .and_then(|id| self.tasks.get_mut(&id))
                .expect("fetched records belong to a running task");
            if let Err(error) = task.add_records(&tp, batch.records) {
                // The fetcher's position is already past these records: dropping them would let
                // a later commit skip them. Stop instead (offsets going backwards are a broker
                // or decoding fault, never normal).
                self.fail(error.into());
                return true;
            }
            let full = queue_full(&self.config, task, &tp);
            self.fetcher.set_paused(&tp, full || self.closing);
        }
        progress
    }

    pub(super) fn run_tasks(&mut self) -> bool {
        let mut progress = self.deliver_backlog();
        if !self.may_process() {
            return progress;
        }
        let now = self.now;
        let mut budget = self.config.max_batches_per_poll;
        let holding = self.holds_output();
        let ids: Vec<TaskId> = self.tasks.keys().copied().collect();
        for id in ids {
            // Its output waits for room in the producer: it must not produce more first
            // (unless the backlog holds it for the next transaction, up to a bound).
            if !self.task_may_run(id) {
                continue;
            }
            let task = self
                .tasks
                .get_mut(&id)
                .expect("ids were just read from the map");
            if task
                .next_wall_clock_punctuation()
                .is_some_and(|due| due <= now)
                && let Err(error) = task.punctuate_wall_clock(now)
            {
                self.fail(error.into());
                return true;
            }
            while budget > 0 {
                match task.process_next_batch() {
                    Ok(Some(outcome)) => {
                        self.metrics.process_total += outcome.consumed as u64;
                        self.metrics.batch_sizes.record(outcome.consumed as u64);
                        budget -= 1;
                        progress = true;
                    }
                    Ok(None) => break,
                    Err(error) => {
                        self.fail(error.into());
                        return true;
                    }
                }
                let output = task.take_output();
                self.metrics.records_sent += output.len() as u64;
                if !output.is_empty() {
                    if holding {
                        self.held_bytes += output.iter().map(held_size).sum::<usize>();
                    }
                    self.backlog.entry(id).or_default().extend(output);
                    let room = self.held_bytes + self.producer.buffered_bytes()
                        < self.config.producer.buffer_memory;
                    if !holding || !room {
                        break;
                    }
                }
            }
            let output = task.take_output();
            self.metrics.records_sent += output.len() as u64;
            if !output.is_empty() {
                if holding {
                    self.held_bytes += output.iter().map(held_size).sum::<usize>();
                }
                self.backlog.entry(id).or_default().extend(output);
            }
            for tp in task.partitions() {
                let full = queue_full(&self.config, task, tp);
                self.fetcher.set_paused(tp, full || self.closing);
            }
            progress |= self.deliver_backlog();
        }
        progress
    }

    /// Whether a task may run a batch now: not while its output waits in the backlog, unless
    /// the backlog holds it for the next transaction (exactly-once, a pipelined commit under
    /// way) and the held output has room.
    pub(super) fn task_may_run(&self, id: TaskId) -> bool {
        !self.backlog.contains_key(&id) || (self.holds_output() && self.held_output_has_room())
    }

    /// Held output and the producer's unacknowledged records share `buffer.memory`: the
    /// output waiting to be sent is bounded by one setting, held or queued.
    fn held_output_has_room(&self) -> bool {
        self.held_bytes + self.producer.buffered_bytes() < self.config.producer.buffer_memory
    }

    /// Exactly-once with a pipelined commit under way: the output produced since its start
    /// must not enter its transaction, so the backlog holds it until the transaction ended.
    fn holds_output(&self) -> bool {
        self.exactly_once() && self.commit.is_pipelined()
    }

    /// Hands held-back task output to the producer, as far as it takes it. The records a
    /// pipelined commit marked in a backlog go first, tagged with that commit (and make the
    /// producer send at once: the commit waits for them); the rest are tagged with the next
    /// (under exactly-once they wait until the commit's transaction ended).
    fn deliver_backlog(&mut self) -> bool {
        let mut progress = false;
        let holding = self.holds_output();
        let ids: Vec<TaskId> = self.backlog.keys().copied().collect();
        for id in ids {
            // Refused for want of room at this fill level: it cannot fit before acks free
            // some (trying again would check every record of a large backlog for nothing).
            if self
                .backlog_full_at
                .get(&id)
                .is_some_and(|&at| self.producer.buffered_bytes() >= at)
            {
                continue;
            }
            // Held for the next transaction, nothing of the commit under way in it.
            if holding && !self.backlog_marked.contains_key(&id) {
                continue;
            }
            // A refused batch goes back in; each task is tried once per call.
            let mut records = self
                .backlog
                .remove(&id)
                .expect("ids were just read from the map");
            if let Some(marked) = self.backlog_marked.remove(&id) {
                let rest = records.split_off(marked.min(records.len()));
                // The commit under way is the one before the output's current commit.
                let commit = self
                    .output_commit
                    .checked_sub(1)
                    .expect("a backlog is marked only while a pipelined commit is under way");
                match self.send_output(id, commit, records) {
                    Delivery::Sent => {
                        progress = true;
                        self.producer.flush();
                        records = rest;
                    }
                    Delivery::Refused(mut refused) => {
                        refused.extend(rest);
                        self.backlog.insert(id, refused);
                        self.backlog_marked.insert(id, marked);
                        continue;
                    }
                    Delivery::Failed => return true,
                }
                if records.is_empty() {
                    continue;
                }
            }
            // Output of the next commit waits while records of the one under way wait for
            // room (else it could keep the buffer full and delay that commit indefinitely).
            if holding || !self.backlog_marked.is_empty() {
                self.backlog.insert(id, records);
                continue;
            }
            match self.send_output(id, self.output_commit, records) {
                Delivery::Sent => progress = true,
                Delivery::Refused(refused) => {
                    self.backlog.insert(id, refused);
                }
                Delivery::Failed => return true,
            }
        }
        progress
    }

    /// Hands `records` of task `id` to the producer, tagged with `commit`.
    fn send_output(&mut self, id: TaskId, commit: u64, records: Vec<ProducerRecord>) -> Delivery {
        let owner = OutputOwner { task: id, commit };
        match self.producer.send_batch(owner, records, self.now) {
            Ok(_) => {
                self.backlog_full_at.remove(&id);
                Delivery::Sent
            }
            Err(refused) => match refused.error {
                ProducerError::BufferFull { .. } => {
                    self.backlog_full_at
                        .insert(id, self.producer.buffered_bytes());
                    Delivery::Refused(refused.records)
                }
                ProducerError::UnknownPartitionCount { .. }
                // Exactly-once: a commit or abort under way; its end takes them.
                | ProducerError::TransactionEnding
                | ProducerError::TransactionAbortable(_) => Delivery::Refused(refused.records),
                // Fenced: its event (not handled yet) closes the tasks with their backlog.
                ProducerError::TransactionFatal(ref fenced)
                    if fenced.is_fencing() && self.exactly_once() =>
                {
                    Delivery::Refused(refused.records)
                }
                error => {
                    self.fail(EngineError::Producer { task: id, error });
                    Delivery::Failed
                }
            },
        }
    }
}

/// What became of output handed to the producer.
enum Delivery {
    /// Taken.
    Sent,
    /// Not now (no room, ...): the records back, for the backlog.
    Refused(Vec<ProducerRecord>),
    /// The engine stopped.
    Failed,
}

/// Whether the queue of input partition `tp` of `task` holds as many records or bytes as
/// it may: then the partition is left out of fetches until the task catches up.
fn queue_full(config: &EngineConfig, task: &Task, tp: &TopicPartition) -> bool {
    task.queued(tp) >= config.max_queued_records_per_partition
        || task.queued_bytes(tp) >= config.max_queued_bytes_per_partition
}

/// The memory a held record takes: its encoded size bound and the record itself (held
/// records wait as [`ProducerRecord`]s, whose fields are a multiple of a small record's bytes).
fn held_size(record: &ProducerRecord) -> usize {
    record_size_bound(record) + std::mem::size_of::<ProducerRecord>()
}
