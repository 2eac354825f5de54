//! `KvBackend::freeze` on LMDB: a commit after a freeze persists exactly the frozen writes,
//! the writes after it stay pending (and do not survive a reopen), reads see all layers.

use std::ops::Bound::Unbounded;

use bytes::Bytes;
use kstreams_store_api::{Checkpoint, KvBackend, WriteBatch};
use kstreams_store_lmdb::{LmdbConfig, LmdbEnvironment};

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn kv(k: &str, v: &str) -> (Bytes, Bytes) {
    (b(k), b(v))
}

fn write(store: &mut dyn KvBackend, puts: &[(&str, &str)], deletes: &[&str]) {
    let mut batch = WriteBatch::new();
    for (k, v) in puts {
        batch.put(b(k), b(v));
    }
    for k in deletes {
        batch.delete(b(k));
    }
    store.write_batch(batch).unwrap();
}

#[test]
fn a_commit_after_freeze_persists_exactly_the_frozen_writes() {
    let dir = tempfile::tempdir().unwrap();
    {
        let env = LmdbEnvironment::open(LmdbConfig::new(dir.path())).unwrap();
        let mut store = env.open_store("s", 0).unwrap();
        write(&mut store, &[("a", "1"), ("d", "1")], &[]);
        store.commit(Some(Checkpoint::new(1, None))).unwrap();
        write(&mut store, &[("a", "2"), ("b", "2")], &["d"]);
        store.freeze();
        assert!(store.pending_writes().is_empty());
        write(&mut store, &[("a", "3"), ("c", "3")], &[]);
        assert_eq!(store.get(b"a").unwrap(), Some(b("3")));
        assert_eq!(store.get(b"d").unwrap(), None);
        assert_eq!(
            store.get_batch(&[b"b", b"d", b"c"]).unwrap(),
            vec![Some(b("2")), None, Some(b("3"))]
        );
        assert_eq!(
            store.range(Unbounded, Unbounded).unwrap(),
            vec![kv("a", "3"), kv("b", "2"), kv("c", "3")]
        );
        assert!(
            store
                .restore_batch(WriteBatch::new(), Checkpoint::new(9, None))
                .is_err(),
            "a restore is refused over frozen writes"
        );
        store.commit(Some(Checkpoint::new(5, None))).unwrap();
        assert_eq!(store.uncommitted_len(), 2, "a and c stay pending");
        assert_eq!(store.get(b"a").unwrap(), Some(b("3")));
        // Dropped with the later writes pending.
    }
    let env = LmdbEnvironment::open(LmdbConfig::new(dir.path())).unwrap();
    let store = env.open_store("s", 0).unwrap();
    assert_eq!(
        store.range(Unbounded, Unbounded).unwrap(),
        vec![kv("a", "2"), kv("b", "2")]
    );
    assert_eq!(store.checkpoint().unwrap(), Some(Checkpoint::new(5, None)));
}

#[test]
fn rollback_and_wipe_discard_the_frozen_writes_too() {
    let dir = tempfile::tempdir().unwrap();
    let env = LmdbEnvironment::open(LmdbConfig::new(dir.path())).unwrap();
    let mut store = env.open_store("s", 0).unwrap();
    write(&mut store, &[("a", "1")], &[]);
    store.freeze();
    write(&mut store, &[("b", "1")], &[]);
    store.rollback();
    assert_eq!(store.uncommitted_len(), 0);
    assert!(store.range(Unbounded, Unbounded).unwrap().is_empty());
    write(&mut store, &[("a", "1")], &[]);
    store.freeze();
    store.wipe().unwrap();
    store.commit(Some(Checkpoint::new(3, None))).unwrap();
    assert!(store.range(Unbounded, Unbounded).unwrap().is_empty());
}
