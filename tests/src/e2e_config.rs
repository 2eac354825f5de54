//! The engine settings of the end-to-end tests: quick commits and a quick failover.

use kstreams_core::engine::EngineConfig;
use kstreams_core::time::Duration;

/// `application_id` bootstrapping from `bootstrap` (comma-separated), with 200 ms commits,
/// 5 ms linger, a 6 s session (1 s heartbeats) and a 10 s rebalance timeout (a rebalance
/// waits at most this long for members that do not rejoin; Tansu keeps a member that
/// vanished until then, so a killed instance would stall the group for the 5-minute default).
pub fn fast_engine_config(application_id: &str, bootstrap: &str) -> EngineConfig {
    let mut engine = EngineConfig::new(application_id, [bootstrap]);
    engine.commit_interval = Duration::from_millis(200);
    engine.producer.linger = Duration::from_millis(5);
    engine.session_timeout = Duration::from_secs(6);
    engine.heartbeat_interval = Duration::from_secs(1);
    engine.rebalance_timeout = Duration::from_secs(10);
    engine
}
