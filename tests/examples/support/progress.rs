//! Progress of a running example on stderr, so that a slow run can be told from a stuck
//! one: the instance's state changes and each stream thread's task assignments as they
//! happen, and every [`REPORT_INTERVAL`] a summary with the offsets committed so far, summed
//! per topic, and their growth since the previous summary (commits come every commit
//! interval, 30 s by default), plus the output records read so far when the output topic is
//! watched (`--exit-when-idle`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kstreams_core::engine::Event;
use kstreams_core::record::TopicPartition;
use kstreams_core::task::TaskId;
use kstreams_io_common::{KafkaStreams, Runtime, StreamsHandle};

/// Time between two summaries.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(5);

/// The committed offset of each partition: the highest any stream thread committed (a
/// partition moves between threads on a rebalance).
type CommittedOffsets = Arc<Mutex<BTreeMap<TopicPartition, i64>>>;

/// What the progress reports of one run share.
#[derive(Clone)]
pub struct Progress {
    started: Instant,
    commit_interval: Duration,
    committed: CommittedOffsets,
    /// Output records read by the watcher of the output topic, if there is one.
    output_records: Arc<AtomicU64>,
    watching_output: Arc<AtomicBool>,
}

impl Progress {
    /// Progress of a run starting now, whose engines commit every `commit_interval`.
    pub fn new(commit_interval: Duration) -> Self {
        Self {
            started: Instant::now(),
            commit_interval,
            committed: Arc::default(),
            output_records: Arc::default(),
            watching_output: Arc::default(),
        }
    }

    /// The output topic is being watched: summaries tell how many records were read.
    pub fn watching_output(&self) {
        self.watching_output.store(true, Ordering::Relaxed);
    }

    /// The watcher read one more output record.
    pub fn output_record_read(&self) {
        self.output_records.fetch_add(1, Ordering::Relaxed);
    }

    /// `[  12.3s]`: the time since the run started.
    fn stamp(&self) -> String {
        format!("[{:>7.1}s]", self.started.elapsed().as_secs_f64())
    }

    /// Prints the state changes and task assignments of `streams` as they happen, and
    /// collects its committed offsets for the summaries.
    pub fn listen<R: Runtime>(&self, streams: &mut KafkaStreams<R>) {
        let progress = self.clone();
        streams.set_state_listener(move |new, old| {
            eprintln!("{} state {old:?} -> {new:?}", progress.stamp());
        });
        let progress = self.clone();
        streams.set_event_listener(move |thread, event| match event {
            Event::GroupSynced {
                generation,
                member_id,
            } => eprintln!(
                "{} {thread}: group generation {generation} (member {member_id})",
                progress.stamp()
            ),
            Event::TasksAssigned(tasks) => progress.tasks(thread, "assigned", tasks),
            Event::TasksRevoked(tasks) => progress.tasks(thread, "revoked", tasks),
            Event::TasksLost(tasks) => progress.tasks(thread, "lost", tasks),
            Event::Committed(offsets) => {
                let mut committed = progress
                    .committed
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                for (partition, &offset) in offsets {
                    let known = committed.entry(partition.clone()).or_insert(offset);
                    *known = (*known).max(offset);
                }
            }
            // Engine state changes add up to the instance's, printed above; warnings and
            // failures reach the log.
            _ => {}
        });
    }

    fn tasks(&self, thread: &str, what: &str, tasks: &[TaskId]) {
        let list: Vec<String> = tasks.iter().map(TaskId::to_string).collect();
        eprintln!("{} {thread}: {what} tasks {}", self.stamp(), list.join(" "));
    }

    /// Prints a summary of `handle`'s instance every [`REPORT_INTERVAL`], and a last one when
    /// the returned value is dropped.
    pub fn report_periodically(&self, handle: StreamsHandle) -> PeriodicReport {
        let (stop, stopped) = mpsc::channel::<()>();
        let progress = self.clone();
        let thread = std::thread::Builder::new()
            .name("progress".into())
            .spawn(move || {
                let mut before = BTreeMap::new();
                loop {
                    let last = match stopped.recv_timeout(REPORT_INTERVAL) {
                        Err(mpsc::RecvTimeoutError::Timeout) => false,
                        Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => true,
                    };
                    before = progress.summary(&handle, &before);
                    if last {
                        return;
                    }
                }
            });
        let thread = match thread {
            Ok(thread) => Some(thread),
            Err(error) => {
                eprintln!("no progress summaries: cannot start their thread: {error}");
                None
            }
        };
        PeriodicReport {
            stop: Some(stop),
            thread,
        }
    }

    /// Prints the state, the task count and the committed offsets per topic (with the growth
    /// since `before`); returns the offsets per topic for the next summary.
    fn summary(
        &self,
        handle: &StreamsHandle,
        before: &BTreeMap<String, i64>,
    ) -> BTreeMap<String, i64> {
        let mut per_topic: BTreeMap<String, i64> = BTreeMap::new();
        for (partition, offset) in self
            .committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            *per_topic.entry(partition.topic.to_string()).or_default() += offset;
        }
        let tasks: usize = handle
            .local_thread_metadata()
            .iter()
            .map(|t| t.active_tasks.len())
            .sum();
        let committed = if per_topic.is_empty() {
            format!(
                "nothing committed yet (commits every {:?})",
                self.commit_interval
            )
        } else {
            let topics: Vec<String> = per_topic
                .iter()
                .map(|(topic, sum)| {
                    let growth = sum - before.get(topic).copied().unwrap_or(0);
                    format!("{topic} {sum} (+{growth})")
                })
                .collect();
            format!("committed offsets: {}", topics.join(", "))
        };
        let output = if self.watching_output.load(Ordering::Relaxed) {
            let read = self.output_records.load(Ordering::Relaxed);
            format!("; {read} output records read")
        } else {
            String::new()
        };
        eprintln!(
            "{} {:?}, {tasks} tasks; {committed}{output}",
            self.stamp(),
            handle.state()
        );
        per_topic
    }
}

/// The thread printing the summaries; stops (after a last summary) when dropped.
pub struct PeriodicReport {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for PeriodicReport {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
