//! Twins: two engines with one transactional id (a copied state directory). Each one's
//! InitProducerId fences the other. A fencing is a task migration, but a fencing that cannot
//! be the coordinator's transaction timeout (the fenced transaction began less than the
//! timeout before, or none was open) is a twin's, and the third stops the engine with the
//! typed error (`core/src/engine/fencing.rs`); the other twin takes its tasks over and
//! delivers every record exactly once to read_committed readers.

use super::*;

/// Two twins on `partitions` input partitions, exactly-once, one record per batch.
fn twins(partitions: i32, initial: i64) -> Harness {
    let mut sim = cluster(3, partitions);
    produce_all(&mut sim, partitions, initial);
    let mut h = Harness::new(sim, T0);
    let mut config = flow_config();
    config.processing_guarantee = ProcessingGuarantee::ExactlyOnce;
    config.producer.transactional_id = Some("twin".into());
    config.max_batch_records = 1;
    config.max_batches_per_poll = 1;
    h.add(engine(config.clone(), h.now));
    h.add(engine(config, h.now));
    h
}

/// Asserts that exactly one twin stopped, on a fencing, after recovering from two.
fn assert_one_twin_stopped(h: &Harness) {
    let failures: Vec<String> = h
        .engines
        .iter()
        .flat_map(|e| &e.events)
        .filter_map(|(_, e)| match e {
            Event::Failed(error) => Some(error.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(failures.len(), 1, "one twin stops: {failures:?}");
    assert!(failures[0].contains("fenced"), "{failures:?}");
    let stopped = h
        .engines
        .iter()
        .find(|e| e.engine.state() == EngineState::Error)
        .expect("the twin that stopped");
    let recovered = stopped
        .events
        .iter()
        .filter(|(_, e)| matches!(e, Event::Warning(w) if w.to_string().contains("fenced")))
        .count();
    assert_eq!(recovered, 2, "two fencings recovered, the third stops it");
}

/// Asserts that read_committed readers see input `0..n` of every partition exactly once, in
/// order.
fn assert_exact_output(h: &Harness, partitions: i32, n: i64) {
    let mut got = vec![Vec::new(); partitions as usize];
    for q in 0..partitions {
        for r in h.sim.read_committed(OUTPUT, q).expect("output") {
            let (p, o) = tag_of(&r).expect("tagged output");
            got[p as usize].push(o);
        }
    }
    for (p, got) in got.into_iter().enumerate() {
        assert_eq!(
            got,
            (0..n).collect::<Vec<_>>(),
            "read_committed output of input {p}"
        );
    }
}

fn one_stopped(h: &Harness) -> bool {
    h.engines
        .iter()
        .any(|e| e.engine.state() == EngineState::Error)
}

/// Plenty of input: the twins fence each other as fast as they process.
#[test]
fn twins_with_one_transactional_id_do_not_fence_each_other_forever() {
    let (partitions, n) = (2, 300);
    let mut h = twins(partitions, n);
    let stopped = h.run_until(60_000, |h| one_stopped(h));
    assert!(stopped, "the twins fenced each other for a minute");
    assert_one_twin_stopped(&h);
    let done = h.run_until(120_000, |h| all_committed(&h.sim, &[n; 2]));
    assert!(done, "the other twin took every task over");
    assert_exact_output(&h, partitions, n);
}

/// Sparse input: one record every 6 s, to each partition in turn, so each twin learns of its
/// fencing at its next record, 12 s apart — fewer than three fencings per transaction timeout
/// (10 s), which a count of fencings per timeout window never stopped (decisions §18, review).
/// Each of those fencings hits a transaction that just began: a twin's.
#[test]
fn twins_on_sparse_input_do_not_fence_each_other_forever() {
    let (partitions, n) = (2, 12);
    let mut h = twins(partitions, 0);
    let mut fed = 0;
    let mut next_at = T0 + 5_000;
    let mut feed = move |h: &mut Harness| {
        while h.now >= next_at && fed < n * i64::from(partitions) {
            let p = (fed % i64::from(partitions)) as i32;
            let offset = fed / i64::from(partitions);
            h.sim
                .produce_direct(INPUT, p, input_records(p, offset, 1))
                .expect("feed");
            fed += 1;
            next_at += 6_000;
        }
        fed == n * i64::from(partitions)
    };
    let stopped = h.run_until(150_000, |h| {
        feed(h);
        one_stopped(h)
    });
    assert!(
        stopped,
        "the twins fenced each other for 150 s of sparse input"
    );
    assert_one_twin_stopped(&h);
    let done = h.run_until(200_000, |h| feed(h) && all_committed(&h.sim, &[n; 2]));
    assert!(done, "the other twin took every task over");
    assert_exact_output(&h, partitions, n);
}
