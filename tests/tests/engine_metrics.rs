//! The engine's counters ([`Engine::metrics`], [`Engine::partition_lags`],
//! [`Engine::restore_progress`], the tasks' [`TaskMetrics`]) against the simulated cluster:
//! what they count must equal what the cluster saw.

use std::cell::RefCell;
use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::ApiKey;
use kstreams_core::engine::{
    BATCH_SIZE_BOUNDS, Engine, EngineState, Event, ProcessingGuarantee, RebalanceProtocol,
};
use kstreams_core::state::MemoryStoreFactory;
use kstreams_core::time::Instant;
use kstreams_tests::harness::Harness;
use kstreams_tests::harness::tagged::*;
use kstreams_tests::sim::SimRecord;

const PARTITIONS: i32 = 4;
const PER_PARTITION: i64 = 10;

/// One tag engine that processed and committed [`PER_PARTITION`] records on each of
/// [`PARTITIONS`] partitions (and, with `faults`, met them on the way).
fn processed(faults: impl FnOnce(&mut Harness)) -> Harness {
    let mut sim = cluster(3, PARTITIONS);
    produce_all(&mut sim, PARTITIONS, PER_PARTITION);
    let mut h = Harness::new(sim, T0);
    faults(&mut h);
    h.add(engine(flow_config(), h.now));
    let done = h.run_until(60_000, |h| {
        all_committed(&h.sim, &[PER_PARTITION; PARTITIONS as usize])
    });
    assert_run(&h, done);
    // Idle a little: the fetcher's next answers bring the high watermarks.
    h.run_until(1_000, |_| false);
    h
}

#[test]
fn records_batches_commits_and_lags_match_what_the_cluster_saw() {
    let h = processed(|_| {});
    let engine = &h.engines[0].engine;
    let m = engine.metrics();
    let total = (PARTITIONS as i64 * PER_PARTITION) as u64;
    assert_eq!(m.records_consumed, total);
    assert_eq!(m.process_total, total);
    assert_eq!(m.records_sent, total, "one output per input");
    assert_eq!(m.batch_sizes.sum, total);
    assert!(m.batch_sizes.count >= total / 5, "batches of at most 5");
    assert!(m.batch_sizes.max <= 5);
    assert_eq!(
        m.batch_sizes.buckets.iter().sum::<u64>(),
        m.batch_sizes.count
    );
    assert_eq!(
        m.batch_sizes.buckets[BATCH_SIZE_BOUNDS.len()],
        0,
        "no batch over 1024"
    );
    let output_records: u64 = (0..PARTITIONS)
        .map(|p| h.sim.read_log(OUTPUT, p).unwrap().len() as u64)
        .sum();
    let produced: u64 = m
        .produced
        .iter()
        .filter(|((_, topic), _)| &**topic == OUTPUT)
        .map(|(_, counts)| counts.records)
        .sum();
    assert_eq!(produced, output_records);
    assert_eq!(produced, total);
    assert!(m.produced.values().all(|c| c.errors == 0));
    let committed_events = h.engines[0]
        .events
        .iter()
        .filter(|(_, e)| matches!(e, Event::Committed(_)))
        .count() as u64;
    assert!(m.commit_total >= committed_events && committed_events >= 1);
    assert_eq!(m.commit_failed_total, 0);
    assert_eq!(m.commit_latency.count, m.commit_total);
    assert!(m.commit_latency.max_ms < 5_000);
    assert_eq!(m.rebalance_total, 1);
    assert_eq!((m.tasks_revoked_total, m.tasks_lost_total), (0, 0));
    assert_eq!(m.produce_retry_records, 0);

    let lags: Vec<_> = engine.partition_lags().collect();
    assert_eq!(lags.len(), PARTITIONS as usize);
    for lag in &lags {
        assert_eq!(lag.position, Some(PER_PARTITION), "{lag:?}");
        assert_eq!(lag.high_watermark, Some(PER_PARTITION), "{lag:?}");
        assert_eq!(
            lag.end_offset,
            Some(PER_PARTITION),
            "read_uncommitted: the high watermark"
        );
        assert_eq!(lag.records_lag(), Some(0));
        assert_eq!(lag.queued, 0);
    }
    for task in engine.tasks() {
        let t = task.metrics();
        assert_eq!(t.received_records, PER_PARTITION as u64, "{}", task.id());
        assert_eq!(t.consumed_records, PER_PARTITION as u64);
        assert_eq!(t.produced_records, PER_PARTITION as u64);
    }
}

#[test]
fn lag_counts_the_records_not_fetched_yet() {
    let mut h = processed(|_| {});
    // New input: the lag shows once a fetch answer brings the new high watermark.
    let records = input_records(0, PER_PARTITION, 7);
    h.sim.produce_direct(INPUT, 0, records).unwrap();
    let lag_seen = h.run_until(5_000, |h| {
        h.engines[0]
            .engine
            .partition_lags()
            .any(|l| l.partition.partition == 0 && l.high_watermark == Some(PER_PARTITION + 7))
    });
    assert!(
        lag_seen,
        "the new high watermark arrives with a fetch answer"
    );
    h.run_until(5_000, |h| {
        h.engines[0]
            .engine
            .partition_lags()
            .all(|l| l.records_lag() == Some(0))
    });
    assert_eq!(
        h.engines[0].engine.metrics().process_total,
        (PARTITIONS as i64 * PER_PARTITION + 7) as u64
    );
}

#[test]
fn produce_retries_are_counted() {
    let h = processed(|h| {
        let code = ResponseError::NotLeaderOrFollower.code();
        h.sim.inject_error(ApiKey::Produce, code, 3);
    });
    let m = h.engines[0].engine.metrics();
    assert!(m.produce_retry_batches >= 1, "{m:?}");
    assert!(m.produce_retry_records >= m.produce_retry_batches);
    let produced: u64 = m.produced.values().map(|c| c.records).sum();
    assert_eq!(produced, (PARTITIONS as i64 * PER_PARTITION) as u64);
}

/// A second engine joins one that ran every task, until each runs two: the harness then.
fn late_joiner(protocol: RebalanceProtocol) -> Harness {
    let mut config = flow_config();
    config.rebalance_protocol = protocol;
    let mut sim = cluster(3, PARTITIONS);
    produce_all(&mut sim, PARTITIONS, PER_PARTITION);
    let mut h = Harness::new(sim, T0);
    h.add(engine(config.clone(), h.now));
    let done = h.run_until(60_000, |h| {
        all_committed(&h.sim, &[PER_PARTITION; PARTITIONS as usize])
    });
    assert_run(&h, done);
    h.add(engine(config, h.now));
    let split = h.run_until(60_000, |h| {
        h.engines
            .iter()
            .all(|s| s.engine.state() == EngineState::Running && s.engine.tasks().count() == 2)
    });
    assert!(split, "{}", describe(&h, PARTITIONS));
    h
}

/// Eager: the first engine revokes all four tasks and runs two of them again as new
/// instances, which start from 0 while the totals of the revoked instances stay.
#[test]
fn a_late_joiner_counts_a_rebalance_and_the_revoked_tasks() {
    let h = late_joiner(RebalanceProtocol::Eager);
    let first = h.engines[0].engine.metrics();
    assert_eq!(first.rebalance_total, 2);
    assert_eq!(
        first.tasks_revoked_total, PARTITIONS as u64,
        "eager: all revoked"
    );
    assert_eq!(h.engines[1].engine.metrics().rebalance_total, 1);
    let total = (PARTITIONS as i64 * PER_PARTITION) as u64;
    let first = &h.engines[0].engine;
    let running: u64 = first.tasks().map(|t| t.metrics().consumed_records).sum();
    assert_eq!(running, 0, "new instances: {}", describe(&h, PARTITIONS));
    let closed: u64 = first
        .metrics()
        .closed_tasks
        .values()
        .map(|c| c.consumed_records)
        .sum();
    assert_eq!(closed, total);
    assert_task_totals(first, total);
}

/// Cooperative: one more rebalance (the follow-up that hands the moved tasks over), only
/// the two moved tasks revoked; the staying ones keep their instances and counts.
#[test]
fn a_cooperative_late_joiner_revokes_only_the_moved_tasks() {
    let h = late_joiner(RebalanceProtocol::Cooperative);
    let first = h.engines[0].engine.metrics();
    assert_eq!(first.rebalance_total, 3);
    assert_eq!(
        first.tasks_revoked_total,
        PARTITIONS as u64 / 2,
        "cooperative: the moved ones"
    );
    assert_eq!(h.engines[1].engine.metrics().rebalance_total, 2);
    let total = (PARTITIONS as i64 * PER_PARTITION) as u64;
    let first = &h.engines[0].engine;
    let running: u64 = first.tasks().map(|t| t.metrics().consumed_records).sum();
    assert_eq!(
        running,
        total / 2,
        "the staying instances kept their counts: {}",
        describe(&h, PARTITIONS)
    );
    assert_task_totals(first, total);
}

/// Every task the engine ever ran counted its partition's records once, and the thread total
/// agrees.
fn assert_task_totals(engine: &Engine, total: u64) {
    let totals = engine.task_totals();
    assert_eq!(totals.len(), PARTITIONS as usize, "every task it ever ran");
    assert!(
        totals
            .values()
            .all(|c| c.consumed_records == PER_PARTITION as u64
                && c.received_records == PER_PARTITION as u64
                && c.produced_records == PER_PARTITION as u64),
        "{totals:?}"
    );
    assert_eq!(
        engine.metrics().process_total,
        total,
        "the thread total agrees"
    );
}

/// A producer id no coordinator of the simulated cluster hands out.
const HANGING_PRODUCER: i64 = 900_000;

#[test]
fn under_exactly_once_the_lag_ends_at_the_last_stable_offset() {
    let mut sim = cluster(3, PARTITIONS);
    produce_all(&mut sim, PARTITIONS, PER_PARTITION);
    // Behind the committed records of partition 0, a transaction that never ends: a
    // read_committed consumer cannot read past its start, so it is not lag.
    let open = sim
        .produce_open_transaction(
            INPUT,
            0,
            HANGING_PRODUCER,
            input_records(0, PER_PARTITION, 5),
        )
        .unwrap();
    assert_eq!(open, PER_PARTITION);
    let mut h = Harness::new(sim, T0);
    let mut config = flow_config();
    config.processing_guarantee = ProcessingGuarantee::ExactlyOnce;
    h.add(engine(config, h.now));
    let done = h.run_until(60_000, |h| {
        all_committed(&h.sim, &[PER_PARTITION; PARTITIONS as usize])
    });
    assert_run(&h, done);
    h.run_until(1_000, |_| false);
    let engine = &h.engines[0].engine;
    let lag = engine
        .partition_lags()
        .find(|l| l.partition.partition == 0)
        .expect("partition 0 is assigned");
    assert_eq!(lag.high_watermark, Some(PER_PARTITION + 5), "{lag:?}");
    assert_eq!(lag.end_offset, Some(PER_PARTITION), "{lag:?}");
    assert_eq!(lag.position, Some(PER_PARTITION), "{lag:?}");
    assert_eq!(
        lag.records_lag(),
        Some(0),
        "Kafka's records-lag: to the LSO"
    );
    assert!(engine.partition_lags().all(|l| l.records_lag() == Some(0)));
    assert_eq!(
        engine.metrics().process_total,
        (PARTITIONS as i64 * PER_PARTITION) as u64
    );
}

/// `commit_total` counts the commits that sent something: a close with everything committed
/// already commits nothing and is not counted (see its docs).
#[test]
fn a_close_with_nothing_to_commit_is_not_counted() {
    let mut h = processed(|_| {});
    let before = h.engines[0].engine.metrics().commit_total;
    assert!(before >= 1);
    h.close_engine(0);
    let stopped = h.run_until(30_000, |h| {
        h.engines[0].engine.state() == EngineState::NotRunning
    });
    assert!(stopped, "{}", describe(&h, PARTITIONS));
    let m = h.engines[0].engine.metrics();
    assert_eq!(m.commit_total, before, "nothing was left to commit");
    assert_eq!(m.commit_failed_total, 0);
    assert_eq!(
        m.closed_tasks.len(),
        PARTITIONS as usize,
        "the close closed every task"
    );
}

#[test]
fn restores_count_the_changelog_records_written_into_the_stores() {
    let mut sim = cluster(3, PARTITIONS);
    sim.create_topic(COUNTS_CHANGELOG, PARTITIONS).unwrap();
    let per_changelog = 6;
    for p in 0..PARTITIONS {
        let records = (0..per_changelog)
            .map(|i| {
                SimRecord::new(
                    Bytes::from(format!("k{i}")),
                    Bytes::from(7i64.to_be_bytes().to_vec()),
                    T0,
                )
            })
            .collect();
        sim.produce_direct(COUNTS_CHANGELOG, p, records).unwrap();
    }
    let mut h = Harness::new(sim, T0);
    let engine = Engine::new(
        tag_count_topology(),
        flow_config(),
        Box::new(MemoryStoreFactory),
        Instant::from_millis(T0),
    )
    .unwrap();
    h.add(engine);
    let seen = Rc::new(RefCell::new(Vec::new()));
    let log = seen.clone();
    h.set_engine_observer(Box::new(move |_, engine| {
        log.borrow_mut().extend(engine.restore_progress());
        Ok(())
    }));
    let done = h.run_until(60_000, |h| {
        let engine = &h.engines[0].engine;
        engine.state() == EngineState::Running && engine.tasks().count() == PARTITIONS as usize
    });
    let seen_progress = seen.borrow();
    assert_run(&h, done);
    let m = h.engines[0].engine.metrics();
    assert_eq!(m.restore_total, (PARTITIONS as i64 * per_changelog) as u64);
    assert_eq!(m.restores_completed_total, PARTITIONS as u64);
    assert!(
        seen_progress.iter().any(|p| !p.done),
        "the restores were seen under way"
    );
    for progress in seen_progress.iter() {
        assert_eq!(progress.store, COUNTS);
        assert!(progress.restored <= per_changelog as u64);
        if let Some(remaining) = progress.remaining {
            assert!(remaining <= per_changelog, "{progress:?}");
        }
    }
    assert_eq!(h.engines[0].engine.restore_progress().count(), 0);
}
