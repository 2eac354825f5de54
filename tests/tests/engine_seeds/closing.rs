//! Seeds the invariant "a task never runs on two members at once" found (full volume,
//! cooperative and exactly-once, as found by the release run; kept literally): a closing
//! engine that started the tasks of an assignment its member synced while it closed, and
//! stopped with them open (`TaskOwnership`: "stopped with task … still open"). A closing
//! engine now starts no task.

use super::regressions::{exactly_once, replay};
use super::*;

/// Engine 2 was closing while its member rejoined in a cooperative rebalance (engine 1 had
/// just left): its close commit committed and closed its task, then the SyncGroup answer of
/// generation 3 came, and the engine started the task it named, left and stopped with it
/// open.
#[test]
fn seed_143_a_closing_engine_starts_no_task_after_its_close_commit() {
    replay(
        143,
        Scenario {
            initial: 95,
            target: 1831,
            chunk: 5,
            feed_every_ms: 72,
            engine_starts: vec![426],
            max_batch_records: 216,
            max_batches_per_poll: 6,
            max_queued: 1074,
            commit_interval_ms: 879,
            linger_ms: 11,
            fetch_wait_ms: 342,
            session_timeout_ms: 6294,
            heartbeat_divisor: 6,
            duplicate_reply_original_offset: true,
            rebalance_delay_ms: 1000,
            membership: vec![
                (5016, Membership::Drop(2)),
                (8163, Membership::Start),
                (14219, Membership::RestartAll),
                (24379, Membership::Start),
            ],
            stateful: false,
            transaction_timeout_ms: 36665,
            reuse_machine_percent: 40,
            protocols: Some(Protocols::All(RebalanceProtocol::Cooperative)),
            ..exactly_once(1, 1, 2)
        },
    );
}

/// Engine 1 (a static member, to be restarted on its machine) was closing while the single
/// broker was down; its session expired and it lost its tasks with a transaction open, so it
/// waited for the abort before leaving. Its member rejoined meanwhile (a new member id,
/// generation 3) and the engine started all three tasks (twice: again when the abort of its
/// refused TxnOffsetCommit restarted them), then left and stopped with them open.
#[test]
fn seed_1891_a_closing_engine_that_lost_its_tasks_starts_none_before_it_leaves() {
    replay(
        1891,
        Scenario {
            initial: 232,
            target: 2027,
            chunk: 60,
            feed_every_ms: 270,
            engine_starts: vec![2040, 1964],
            max_batch_records: 281,
            max_batches_per_poll: 4,
            max_queued: 449,
            commit_interval_ms: 666,
            linger_ms: 5,
            fetch_wait_ms: 444,
            session_timeout_ms: 6545,
            heartbeat_divisor: 4,
            duplicate_reply_original_offset: true,
            faults: Some(RandomFaults {
                error_probability: 0.052,
                disconnect_probability: 0.024,
            }),
            membership: vec![
                (948, Membership::Drop(1)),
                (1416, Membership::Drop(1)),
                (6624, Membership::Start),
                (7911, Membership::Start),
            ],
            chaos: vec![
                (
                    5833,
                    Chaos::MoveLeader {
                        input: true,
                        partition: 1,
                        to: 0,
                    },
                ),
                (
                    4023,
                    Chaos::BrokerDown {
                        broker: 0,
                        for_ms: 7443,
                    },
                ),
            ],
            stateful: false,
            transaction_timeout_ms: 33318,
            reuse_machine_percent: 26,
            protocols: Some(Protocols::All(RebalanceProtocol::Cooperative)),
            static_members: Some(StaticMembers {
                percent: 88,
                leave_on_close_percent: 6,
                restarts: vec![
                    (
                        5782,
                        Membership::Restart {
                            n: 0,
                            crash: false,
                            down_ms: 1286,
                        },
                    ),
                    (
                        7949,
                        Membership::Restart {
                            n: 2,
                            crash: true,
                            down_ms: 8928,
                        },
                    ),
                ],
            }),
            ..exactly_once(1, 3, 1)
        },
    );
}
