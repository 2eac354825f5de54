//! The facade's series through a real recorder (Prometheus', as the examples serve it): the
//! per-task counters never go back nor stall across a revocation and reassignment, and the
//! gauges of tasks and partitions the thread no longer has fall to 0.

use kstreams_core::engine::{EngineMetrics, PartitionLag, StandbyProgress};
use kstreams_core::record::TopicPartition;
use kstreams_core::task::{TaskId, TaskMetrics};
use metrics_exporter_prometheus::PrometheusBuilder;

use super::{Published, publish};
use crate::metrics::snapshot::{Rates, TaskMetricsSnapshot, ThreadMetrics, TimeStats};

const TASK: TaskId = TaskId {
    subtopology: 0,
    partition: 3,
};

fn processed(records: u64) -> TaskMetrics {
    TaskMetrics {
        received_records: records,
        consumed_records: records,
        produced_records: records,
        ..TaskMetrics::default()
    }
}

/// A thread running [`TASK`] (whose running instance processed `running`; `None`: not
/// assigned) after closing instances of it that processed `closed`.
fn thread(closed: u64, running: Option<u64>) -> ThreadMetrics {
    let mut engine = EngineMetrics::default();
    if closed > 0 {
        engine.closed_tasks.insert(TASK, processed(closed));
    }
    let tasks = running.map(|records| TaskMetricsSnapshot {
        task: TASK,
        counters: processed(records),
        process_rate: 42.0,
    });
    let partitions = running.map(|records| PartitionLag {
        partition: TopicPartition::new("in", 3),
        task: TASK,
        position: Some(records as i64),
        high_watermark: Some(records as i64 + 10),
        end_offset: Some(records as i64 + 7),
        queued: 0,
    });
    ThreadMetrics {
        thread_id: "t-1".into(),
        engine,
        rates: Rates::default(),
        process_latency: TimeStats::default(),
        tasks: tasks.into_iter().collect(),
        partitions: partitions.into_iter().collect(),
        restores: Vec::new(),
        standbys: Vec::new(),
    }
}

/// The value of the one sample of `name` in `text` (Prometheus' text format).
fn sample(text: &str, name: &str) -> f64 {
    let values: Vec<f64> = text
        .lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse().ok())
        .collect();
    assert_eq!(values.len(), 1, "one sample of {name} in:\n{text}");
    values[0]
}

#[test]
fn task_counters_keep_counting_across_a_revocation_and_gone_gauges_fall_to_zero() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let mut published = Published::default();
    let mut publish_and_render = |metrics: &ThreadMetrics| {
        metrics::with_local_recorder(&recorder, || publish(metrics, &mut published));
        handle.render()
    };

    let running = publish_and_render(&thread(0, Some(100)));
    assert_eq!(sample(&running, "kstreams_task_process_total"), 100.0);
    assert_eq!(sample(&running, "kstreams_task_process_rate"), 42.0);
    assert_eq!(
        sample(&running, "kstreams_records_lag"),
        7.0,
        "to the end offset, not the high watermark"
    );

    // Revoked after 20 more records: its totals stay, its rate and lag fall to 0.
    let revoked = publish_and_render(&thread(120, None));
    assert_eq!(sample(&revoked, "kstreams_task_process_total"), 120.0);
    assert_eq!(
        sample(&revoked, "kstreams_task_records_received_total"),
        120.0
    );
    assert_eq!(sample(&revoked, "kstreams_task_process_rate"), 0.0);
    assert_eq!(sample(&revoked, "kstreams_records_lag"), 0.0);

    // Assigned again: the new instance counts from 0, the series from its total.
    let again = publish_and_render(&thread(120, Some(30)));
    assert_eq!(sample(&again, "kstreams_task_process_total"), 150.0);
    assert_eq!(
        sample(&again, "kstreams_task_records_produced_total"),
        150.0
    );
    assert_eq!(sample(&again, "kstreams_task_process_rate"), 42.0);
    assert_eq!(sample(&again, "kstreams_records_lag"), 7.0);
}

#[test]
fn connections_and_reauthentications_are_thread_counters() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let mut metrics = thread(0, None);
    metrics.engine.connections.created = 3;
    metrics.engine.connections.closed = 2;
    metrics.engine.connections.lost = 1;
    metrics.engine.connections.reauthentications = 5;
    metrics::with_local_recorder(&recorder, || publish(&metrics, &mut Published::default()));
    let text = recorder.handle().render();
    for (name, value) in [
        ("kstreams_connection_creation_total", 3.0),
        ("kstreams_connection_close_total", 2.0),
        ("kstreams_connection_lost_total", 1.0),
        ("kstreams_reauthentication_total", 5.0),
    ] {
        assert_eq!(sample(&text, name), value, "{name}");
    }
}

#[test]
fn standby_tasks_records_and_lag_are_published_and_a_gone_standby_lag_falls_to_zero() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let mut published = Published::default();
    let mut metrics = thread(0, None);
    metrics.engine.standby_records_total = 900;
    metrics.standbys = vec![StandbyProgress {
        task: TASK,
        store: "counts".into(),
        changelog: TopicPartition::new("app-counts-changelog", 3),
        position: Some(900),
        end: Some(950),
        applied: 900,
    }];
    metrics::with_local_recorder(&recorder, || publish(&metrics, &mut published));
    let text = handle.render();
    assert_eq!(sample(&text, "kstreams_standby_tasks"), 1.0);
    assert_eq!(sample(&text, "kstreams_standby_records_total"), 900.0);
    assert_eq!(sample(&text, "kstreams_standby_lag"), 50.0);

    // Promoted (or moved away): no standby left, its lag series falls to 0.
    metrics.standbys.clear();
    metrics::with_local_recorder(&recorder, || publish(&metrics, &mut published));
    let text = handle.render();
    assert_eq!(sample(&text, "kstreams_standby_tasks"), 0.0);
    assert_eq!(sample(&text, "kstreams_standby_lag"), 0.0);
}
