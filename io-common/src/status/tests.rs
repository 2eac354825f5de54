//! Tests of [`InstanceStatus`](super::InstanceStatus).

use super::*;
use EngineState as E;
use StreamsState as S;

#[test]
fn a_listener_may_close_the_instance_it_listens_to() {
    let status = InstanceStatus::new();
    let weak = Arc::downgrade(&status);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    status.set_listener(Box::new(move |new, old| {
        log.lock().unwrap().push((old, new));
        if new == S::Running
            && let Some(status) = weak.upgrade()
        {
            status.request_close(); // re-enters: delivered after this call returns
        }
    }));
    let (tx, _rx) = async_channel::unbounded();
    status.start(vec![("t-1".into(), tx)]).unwrap();
    status.on_event(
        0,
        Event::StateChanged {
            from: E::Created,
            to: E::Running,
        },
    );
    assert_eq!(status.state(), S::PendingShutdown);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            (S::Created, S::Rebalancing),
            (S::Rebalancing, S::Running),
            (S::Running, S::PendingShutdown),
        ]
    );
}

#[test]
fn listener_sees_every_change_and_waiters_wake() {
    let status = InstanceStatus::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    status.set_listener(Box::new(move |new, old| {
        log.lock().unwrap().push((old, new))
    }));
    let (tx, rx) = async_channel::unbounded();
    status.start(vec![("t-1".into(), tx)]).unwrap();
    status.on_event(
        0,
        Event::StateChanged {
            from: E::Created,
            to: E::Rebalancing,
        },
    );
    status.on_event(
        0,
        Event::TasksAssigned(vec![TaskId {
            subtopology: 0,
            partition: 1,
        }]),
    );
    status.on_event(
        0,
        Event::StateChanged {
            from: E::Rebalancing,
            to: E::Running,
        },
    );
    assert_eq!(status.state(), S::Running);
    assert_eq!(status.threads()[0].active_tasks.len(), 1);
    status.request_close();
    assert!(matches!(rx.try_recv(), Ok(Input::Close)));
    status.on_event(
        0,
        Event::StateChanged {
            from: E::Running,
            to: E::NotRunning,
        },
    );
    status.finish(0, None);
    let state = futures_lite::future::block_on(status.wait_for(S::is_terminal));
    assert_eq!(state, S::NotRunning);
    assert!(status.outcome().is_ok());
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            (S::Created, S::Rebalancing),
            (S::Rebalancing, S::Running),
            (S::Running, S::PendingShutdown),
            (S::PendingShutdown, S::NotRunning),
        ]
    );
}

#[test]
fn the_event_listener_sees_every_event_with_its_thread() {
    let status = InstanceStatus::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    status.set_event_listener(Box::new(move |thread, event| {
        log.lock().unwrap().push(format!("{thread}: {event:?}"))
    }));
    let (tx, _rx) = async_channel::unbounded();
    let (tx2, _rx2) = async_channel::unbounded();
    status
        .start(vec![("t-1".into(), tx), ("t-2".into(), tx2)])
        .unwrap();
    let task = TaskId {
        subtopology: 0,
        partition: 3,
    };
    status.on_event(1, Event::TasksAssigned(vec![task]));
    status.on_event(0, Event::Committed(Default::default()));
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "t-2: TasksAssigned([TaskId { subtopology: 0, partition: 3 }])",
            "t-1: Committed({})",
        ]
    );
    // The event was also applied.
    assert_eq!(status.threads()[1].active_tasks, [task]);
}

#[test]
fn restoring_tasks_show_until_their_last_store_is_restored_and_the_listener_hears_it() {
    use kstreams_core::record::TopicPartition;
    use kstreams_core::time::Duration;

    #[derive(Default)]
    struct Heard(Arc<Mutex<Vec<String>>>);
    impl StateRestoreListener for Heard {
        fn on_restore_start(
            &mut self,
            task: TaskId,
            store: &str,
            _: &TopicPartition,
            checkpoint: Option<i64>,
        ) {
            self.0
                .lock()
                .unwrap()
                .push(format!("start {task} {store} {checkpoint:?}"));
        }
        fn on_restore_end(
            &mut self,
            task: TaskId,
            store: &str,
            records: u64,
            _: u64,
            position: i64,
            _: Duration,
        ) {
            self.0
                .lock()
                .unwrap()
                .push(format!("end {task} {store} {records} {position}"));
        }
    }

    let status = InstanceStatus::new();
    let heard = Heard::default();
    let log = heard.0.clone();
    status.set_restore_listener(Box::new(heard));
    let (tx, _rx) = async_channel::unbounded();
    status.start(vec![("t-1".into(), tx)]).unwrap();
    let task = TaskId {
        subtopology: 0,
        partition: 1,
    };
    let changelog = TopicPartition::new("app-a-changelog", 1);
    status.on_event(0, Event::TasksAssigned(vec![task]));
    for store in ["a", "b"] {
        status.on_event(
            0,
            Event::RestoreStarted {
                task,
                store: store.into(),
                changelog: changelog.clone(),
                checkpoint: Some(7),
            },
        );
    }
    assert_eq!(status.threads()[0].restoring_tasks, [task]);
    let end = |store: &str| Event::RestoreEnded {
        task,
        store: store.into(),
        records: 3,
        bytes: 30,
        position: 10,
        duration: Duration::from_millis(5),
    };
    status.on_event(0, end("a"));
    assert_eq!(
        status.threads()[0].restoring_tasks,
        [task],
        "b restores still"
    );
    status.on_event(0, end("b"));
    assert!(status.threads()[0].restoring_tasks.is_empty());
    assert_eq!(status.threads()[0].active_tasks, [task]);
    assert_eq!(
        *log.lock().unwrap(),
        [
            "start 0_1 a Some(7)",
            "start 0_1 b Some(7)",
            "end 0_1 a 3 10",
            "end 0_1 b 3 10"
        ]
    );
}

#[test]
fn standby_tasks_show_while_a_store_follows_and_the_listener_hears_it() {
    use kstreams_core::engine::StandbySuspendReason;
    use kstreams_core::record::TopicPartition;

    #[derive(Default)]
    struct Heard(Arc<Mutex<Vec<String>>>);
    impl StandbyUpdateListener for Heard {
        fn on_update_start(
            &mut self,
            task: TaskId,
            store: &str,
            _: &TopicPartition,
            checkpoint: Option<i64>,
        ) {
            self.0
                .lock()
                .unwrap()
                .push(format!("start {task} {store} {checkpoint:?}"));
        }
        fn on_batch_loaded(
            &mut self,
            task: TaskId,
            store: &str,
            _: &TopicPartition,
            records: usize,
            position: i64,
            end: Option<i64>,
        ) {
            self.0
                .lock()
                .unwrap()
                .push(format!("batch {task} {store} {records} {position} {end:?}"));
        }
        fn on_update_suspended(
            &mut self,
            task: TaskId,
            store: &str,
            _: &TopicPartition,
            position: Option<i64>,
            _: Option<i64>,
            reason: StandbySuspendReason,
        ) {
            self.0
                .lock()
                .unwrap()
                .push(format!("suspended {task} {store} {position:?} {reason:?}"));
        }
    }

    let status = InstanceStatus::new();
    let heard = Heard::default();
    let log = heard.0.clone();
    status.set_standby_listener(Box::new(heard));
    let (tx, _rx) = async_channel::unbounded();
    status.start(vec![("t-1".into(), tx)]).unwrap();
    let task = TaskId {
        subtopology: 0,
        partition: 2,
    };
    let changelog = TopicPartition::new("app-a-changelog", 2);
    status.on_event(
        0,
        Event::StandbyStarted {
            task,
            store: "a".into(),
            changelog: changelog.clone(),
            checkpoint: None,
        },
    );
    status.on_event(
        0,
        Event::StandbyBatch {
            task,
            store: "a".into(),
            changelog: changelog.clone(),
            records: 4,
            bytes: 40,
            position: 9,
            end: Some(9),
        },
    );
    assert_eq!(status.threads()[0].standby_tasks, [task]);
    assert!(status.threads()[0].active_tasks.is_empty());
    status.on_event(
        0,
        Event::StandbySuspended {
            task,
            store: "a".into(),
            changelog,
            position: Some(9),
            end: Some(9),
            reason: StandbySuspendReason::Promoted,
        },
    );
    assert!(status.threads()[0].standby_tasks.is_empty());
    assert_eq!(
        *log.lock().unwrap(),
        [
            "start 0_2 a None",
            "batch 0_2 a 4 9 Some(9)",
            "suspended 0_2 a Some(9) Promoted",
        ]
    );
}
