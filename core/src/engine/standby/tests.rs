//! Tests of the standby module's pieces (the flows: `tests/tests/engine_standby.rs`).

use super::*;
use crate::state::MemoryStoreFactory;

#[test]
fn lag_counts_from_the_checkpoint_or_the_start_once_the_end_is_known() {
    let progress = |position, end| StandbyProgress {
        task: TaskId {
            subtopology: 0,
            partition: 1,
        },
        store: "s".into(),
        changelog: TopicPartition::new("app-s-changelog", 1),
        position,
        end,
        applied: 0,
    };
    assert_eq!(progress(Some(40), Some(50)).lag(), Some(10));
    assert_eq!(progress(None, Some(50)).lag(), Some(50));
    assert_eq!(progress(Some(40), None).lag(), None);
    // Past the end as last fetched (it moved on since): no negative lag.
    assert_eq!(progress(Some(51), Some(50)).lag(), Some(0));
}

#[test]
fn a_promoted_task_gets_the_standby_backends_and_fresh_ones_for_its_other_stores() {
    let mut kept = MemoryStoreFactory.open("logged", 3).unwrap();
    kept.restore_batch(WriteBatch::new(), Checkpoint::new(42, None))
        .unwrap();
    let stores = StandbyStores {
        open: Mutex::new(HashMap::from([("logged".to_owned(), kept)])),
        others: &MemoryStoreFactory,
    };
    let logged = stores.open("logged", 3).unwrap();
    assert_eq!(
        logged.checkpoint().unwrap(),
        Some(Checkpoint::new(42, None)),
        "the standby's store, checkpoint and all"
    );
    let other = stores.open("unlogged", 3).unwrap();
    assert_eq!(other.checkpoint().unwrap(), None, "opened fresh");
    // Handed over once: a second open of the name is a fresh store.
    assert_eq!(
        stores.open("logged", 3).unwrap().checkpoint().unwrap(),
        None
    );
}
