//! Restore runs an earlier process left behind (it crashed while staging, or while finishing a
//! bulk restore) are dropped when the store opens. In a test binary of its own: the crashing
//! process is a child, and a spawned child inherits, until it executes, the locks of the state
//! directories other tests (threads of the same binary) hold.

use std::ops::Bound::Unbounded;
use std::path::Path;

use bytes::Bytes;
use kstreams_store_api::{Checkpoint, KvBackend, StoreError, WriteBatch, WriteOp};
use kstreams_store_lmdb::{LmdbConfig, LmdbEnvironment};

const TOPIC_ID: [u8; 16] = *b"bulk-restore-id!";

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn batch(ops: &[(&str, Option<&str>)]) -> WriteBatch {
    ops.iter()
        .map(|&(k, v)| WriteOp {
            key: b(k),
            value: v.map(b),
        })
        .collect()
}

fn all(store: &dyn KvBackend) -> Vec<(Bytes, Bytes)> {
    store.range(Unbounded, Unbounded).unwrap()
}

fn cp(offset: i64) -> Checkpoint {
    Checkpoint::new(offset, Some(TOPIC_ID))
}

fn env(dir: &Path) -> LmdbEnvironment {
    LmdbEnvironment::open(LmdbConfig::new(dir)).unwrap()
}

/// The names of the databases of the environment in `dir` (which must be closed).
fn database_names(dir: &Path) -> Vec<String> {
    use heed::types::{Bytes as Raw, DecodeIgnore};
    let env = unsafe { heed::EnvOpenOptions::new().max_dbs(8).open(dir).unwrap() };
    let rtxn = env.read_txn().unwrap();
    let mut names = Vec::new();
    env.open_databases_and_commit(rtxn, |opener, rtxn| {
        let main = opener
            .open_database::<Raw, DecodeIgnore>(rtxn, None)?
            .unwrap();
        for entry in main.iter(rtxn)? {
            let (name, ()) = entry?;
            names.push(String::from_utf8(name.to_vec()).unwrap());
        }
        Ok::<_, heed::Error>(heed::CommitOrAbort::<(), ()>::Abort(()))
    })
    .unwrap();
    env.prepare_for_closing().wait();
    names
}

/// Set by [`leftover_runs_are_dropped_when_the_store_opens`] for its child process.
const CRASH_DIR: &str = "KSTREAMS_LMDB_BULK_CRASH_DIR";

/// Not a test of its own: the child process of
/// [`leftover_runs_are_dropped_when_the_store_opens`], which stages runs of partition 0,
/// half-finishes the bulk restore of partition 1 (its map may not grow enough) and exits
/// without dropping anything, as a crash would. Without the variable it does nothing.
#[test]
fn bulk_crash_child() {
    let Some(dir) = std::env::var_os(CRASH_DIR) else {
        return;
    };
    let env = LmdbEnvironment::open(
        LmdbConfig::new(&dir)
            .with_initial_map_size(1 << 20)
            .with_max_map_size(1 << 20)
            .with_bulk_restore_txn_bytes(4096),
    )
    .unwrap();
    let mut staged = env.open_store("s", 0).unwrap();
    staged
        .restore_run(batch(&[("a", Some("1")), ("b", Some("1"))]))
        .unwrap();
    staged.restore_run(batch(&[("c", Some("1"))])).unwrap();
    let mut finishing = env.open_store("s", 1).unwrap();
    let value = vec![0x5a_u8; 200];
    let mut staged_runs = 0;
    for r in 0..14 {
        let run: WriteBatch = (0..200)
            .map(|i| WriteOp {
                key: Bytes::from(format!("{:03}-{r:02}", (i * 37 + r) % 200)),
                value: Some(Bytes::from(value.clone())),
            })
            .collect();
        if finishing.restore_run(run).is_err() {
            break;
        }
        staged_runs += 1;
    }
    let err = finishing.finish_restore_runs(cp(1)).unwrap_err();
    let partial = finishing.committed_len().unwrap();
    println!("crash-child: {staged_runs} runs, {partial} keys merged before: {err}");
    std::process::exit(0);
}

#[test]
fn leftover_runs_are_dropped_when_the_store_opens() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "bulk_crash_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_DIR, dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("crash-child: "),
        "child failed: {out:?}"
    );
    let names = database_names(dir.path());
    assert!(names.contains(&"s.0/run/0".to_owned()), "{names:?}");
    assert!(names.contains(&"s.0/run/1".to_owned()), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("s.1/run/")), "{names:?}");

    let env = env(dir.path());
    let mut staged = env.open_store("s", 0).unwrap();
    assert_eq!(staged.staged_restore_runs(), 0);
    assert!(all(&staged).is_empty());
    assert_eq!(staged.checkpoint().unwrap(), None);
    // The half-finished partition has data and no checkpoint: a bulk restore needs a wipe.
    let mut finishing = env.open_store("s", 1).unwrap();
    assert!(finishing.committed_len().unwrap() > 0, "{stdout}");
    assert_eq!(finishing.checkpoint().unwrap(), None);
    let err = finishing
        .restore_run(batch(&[("x", Some("1"))]))
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::NotEmpty {
                has_data: true,
                checkpoint: None,
                ..
            }
        ),
        "{err:?}"
    );
    finishing.wipe().unwrap();
    finishing.restore_run(batch(&[("x", Some("1"))])).unwrap();
    finishing.finish_restore_runs(cp(1)).unwrap();
    assert_eq!(all(&finishing), vec![(b("x"), b("1"))]);
    staged.restore_run(batch(&[("y", Some("2"))])).unwrap();
    staged.finish_restore_runs(cp(1)).unwrap();
    drop(staged);
    drop(finishing);
    drop(env);
    assert_eq!(
        database_names(dir.path()),
        vec!["__kstreams_checkpoints", "s.0", "s.1"]
    );
}
