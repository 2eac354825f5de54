//! A second process cannot open a locked state directory. In a test binary of its own: the
//! child process it spawns inherits, until it executes, the parent's open files and with them
//! the locks of directories other tests (threads of the same binary) hold, so another test
//! reopening its directory in that window would find it locked.

use kstreams_store_api::StoreError;
use kstreams_store_lmdb::{LmdbConfig, LmdbEnvironment, LmdbError};

/// Set by [`another_process_cannot_open_a_locked_directory`] for the child process it starts.
const LOCK_PROBE_DIR: &str = "KSTREAMS_LMDB_LOCK_PROBE_DIR";

/// Not a test of its own: the child process of
/// [`another_process_cannot_open_a_locked_directory`] (this test binary run again with only
/// this test). Without the variable it does nothing.
#[test]
fn lock_probe_child() {
    let Some(dir) = std::env::var_os(LOCK_PROBE_DIR) else {
        return;
    };
    match LmdbEnvironment::open(LmdbConfig::new(&dir)) {
        Ok(_) => println!("lock-probe: opened"),
        Err(err) => match backend_source_opt(&err).and_then(|s| s.downcast_ref::<LmdbError>()) {
            Some(LmdbError::DirectoryLocked { .. }) => println!("lock-probe: locked: {err}"),
            _ => println!("lock-probe: failed: {err:?}"),
        },
    }
}

fn backend_source_opt(
    err: &StoreError,
) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
    match err {
        StoreError::Backend { source, .. } => Some(source.as_ref()),
        _ => None,
    }
}

#[test]
fn another_process_cannot_open_a_locked_directory() {
    let dir = tempfile::tempdir().unwrap();
    let probe = || {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "lock_probe_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(LOCK_PROBE_DIR, dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "child failed: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let env = LmdbEnvironment::open(LmdbConfig::new(dir.path())).unwrap();
    let stdout = probe();
    assert!(
        stdout.contains("lock-probe: locked: ")
            && stdout.contains("another kstreams instance uses the state directory"),
        "{stdout}"
    );
    drop(env);
    let stdout = probe();
    assert!(stdout.contains("lock-probe: opened"), "{stdout}");
}
