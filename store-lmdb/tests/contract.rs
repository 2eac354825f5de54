//! The `KvBackend` / `StoreFactory` contract on LMDB.

use std::ops::Bound::{self, Excluded, Included, Unbounded};
use std::path::Path;

use bytes::Bytes;
use kstreams_store_api::{Checkpoint, KvBackend, StoreError, StoreFactory, WriteBatch, WriteOp};
use kstreams_store_lmdb::{
    LOCK_FILE_NAME, LmdbConfig, LmdbEnvironment, LmdbError, LmdbStore, SyncMode,
};
use kstreams_store_mem::MemoryStore;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn kv(k: &str, v: &str) -> (Bytes, Bytes) {
    (b(k), b(v))
}

fn cp(offset: i64) -> Option<Checkpoint> {
    Some(Checkpoint::new(offset, None))
}

fn env(dir: &Path) -> LmdbEnvironment {
    LmdbEnvironment::open(LmdbConfig::new(dir)).unwrap()
}

fn put(store: &mut dyn KvBackend, k: &str, v: &str) {
    let mut batch = WriteBatch::new();
    batch.put(b(k), b(v));
    store.write_batch(batch).unwrap();
}

fn delete(store: &mut dyn KvBackend, k: &str) {
    let mut batch = WriteBatch::new();
    batch.delete(b(k));
    store.write_batch(batch).unwrap();
}

fn all(store: &dyn KvBackend) -> Vec<(Bytes, Bytes)> {
    store.range(Unbounded, Unbounded).unwrap()
}

fn backend_source<'a>(err: &'a StoreError) -> &'a (dyn std::error::Error + Send + Sync + 'static) {
    match err {
        StoreError::Backend { source, .. } => source.as_ref(),
        other => panic!("expected a backend error, got {other:?}"),
    }
}

#[test]
fn stores_and_environments_are_send() {
    fn send<T: Send>() {}
    fn send_sync<T: Send + Sync>() {}
    send::<LmdbStore>();
    send_sync::<LmdbEnvironment>();
}

#[test]
fn reads_see_pending_writes() {
    let dir = tempfile::tempdir().unwrap();
    let env = env(dir.path());
    let mut store = env.open_store("s", 0).unwrap();
    put(&mut store, "a", "1");
    put(&mut store, "b", "2");
    store.commit(None).unwrap();

    let mut batch = WriteBatch::new();
    batch.put(b("a"), b("1'"));
    batch.delete(b("b"));
    batch.put(b("c"), b("3"));
    store.write_batch(batch).unwrap();

    assert_eq!(store.get(b"a").unwrap(), Some(b("1'")));
    assert_eq!(store.get(b"b").unwrap(), None);
    assert_eq!(store.get(b"c").unwrap(), Some(b("3")));
    assert_eq!(
        store.get_batch(&[b"c", b"b", b"a"]).unwrap(),
        vec![Some(b("3")), None, Some(b("1'"))]
    );
    assert_eq!(all(&store), vec![kv("a", "1'"), kv("c", "3")]);
    assert_eq!(store.uncommitted_len(), 3);
    assert_eq!(store.committed_len().unwrap(), 2);
}

#[test]
fn later_write_in_a_batch_wins() {
    let dir = tempfile::tempdir().unwrap();
    let env = env(dir.path());
    let mut store = env.open_store("s", 0).unwrap();
    let mut batch = WriteBatch::new();
    batch.put(b("k"), b("1"));
    batch.delete(b("k"));
    batch.put(b("k"), b("2"));
    batch.put(b("gone"), b("x"));
    batch.delete(b("gone"));
    store.write_batch(batch).unwrap();
    store.commit(None).unwrap();
    assert_eq!(all(&store), vec![kv("k", "2")]);
}

#[test]
fn rollback_discards_everything_since_the_last_commit() {
    let dir = tempfile::tempdir().unwrap();
    let env = env(dir.path());
    let mut store = env.open_store("s", 0).unwrap();
    put(&mut store, "a", "1");
    store.commit(cp(1)).unwrap();

    put(&mut store, "a", "2");
    delete(&mut store, "a");
    put(&mut store, "b", "x");
    store.rollback();
    assert_eq!(store.uncommitted_len(), 0);
    assert_eq!(store.get(b"a").unwrap(), Some(b("1")));
    assert_eq!(store.get(b"b").unwrap(), None);
    assert_eq!(all(&store), vec![kv("a", "1")]);

    // A commit after the rollback writes nothing of the rolled-back writes.
    store.commit(cp(2)).unwrap();
    assert_eq!(all(&store), vec![kv("a", "1")]);
    assert_eq!(store.checkpoint().unwrap(), cp(2));
}

#[test]
fn savepoints_undo_only_the_writes_after_them() {
    let dir = tempfile::tempdir().unwrap();
    let env = env(dir.path());
    let mut store = env.open_store("s", 0).unwrap();
    put(&mut store, "a", "committed");
    store.commit(None).unwrap();

    put(&mut store, "a", "before");
    store.set_savepoint();
    put(&mut store, "a", "after");
    delete(&mut store, "a");
    put(&mut store, "b", "after");
    store.rollback_to_savepoint();
    assert_eq!(store.get(b"a").unwrap(), Some(b("before")));
    assert_eq!(store.get(b"b").unwrap(), None);
    assert_eq!(store.uncommitted_len(), 1);

    // The savepoint stays set: later writes can be undone again.
    put(&mut store, "c", "again");
    store.rollback_to_savepoint();
    assert_eq!(store.get(b"c").unwrap(), None);

    // Released: writes stay, and rolling back to it is a no-op.
    store.release_savepoint();
    put(&mut store, "d", "kept");
    store.rollback_to_savepoint();
    store.commit(cp(1)).unwrap();
    drop(store);
    let store = env.open_store("s", 0).unwrap();
    assert_eq!(all(&store), vec![kv("a", "before"), kv("d", "kept")]);
}

#[test]
fn commit_persists_entries_and_checkpoint_together() {
    let dir = tempfile::tempdir().unwrap();
    let env = env(dir.path());
    let mut store = env.open_store("s", 3).unwrap();
    assert_eq!(store.checkpoint().unwrap(), None);

    put(&mut store, "a", "1");
    put(&mut store, "b", "2");
    store.commit(cp(7)).unwrap();
    assert_eq!(store.uncommitted_len(), 0);
    assert_eq!(store.committed_len().unwrap(), 2);
    assert_eq!(store.checkpoint().unwrap(), cp(7));

    // A commit without a checkpoint keeps the previous one.
    delete(&mut store, "a");
    store.commit(None).unwrap();
    assert_eq!(store.checkpoint().unwrap(), cp(7));
    assert_eq!(all(&store), vec![kv("b", "2")]);

    // A checkpoint alone can be committed; negative and extreme offsets round-trip.
    for offset in [i64::MIN, -1, 0, i64::MAX] {
        store.commit(cp(offset)).unwrap();
        assert_eq!(store.checkpoint().unwrap(), cp(offset));
    }
    // Deleting a key that was never written is fine.
    delete(&mut store, "never");
    store.commit(None).unwrap();
}

#[test]
fn commits_mixing_puts_and_deletes_in_and_after_the_existing_key_range() {
    let dir = tempfile::tempdir().unwrap();
    let env = env(dir.path());
    let mut store = env.open_store("s", 0).unwrap();
    // Into an empty database (the append path), with a delete that matches nothing.
    let mut batch = WriteBatch::new();
    for k in ["d", "b", "f"] {
        batch.put(b(k), b(k));
    }
    batch.delete(b("c"));
    store.write_batch(batch).unwrap();
    store.commit(None).unwrap();
    // Only keys after the last one (append path again): puts land, deletes are no-ops.
    let mut batch = WriteBatch::new();
    batch.delete(b("g"));
    batch.put(b("h"), b("h"));
    batch.put(b("i"), b("i"));
    store.write_batch(batch).unwrap();
    store.commit(None).unwrap();
    // Interleaved with existing keys: runs of puts, deletes in between, an update, new keys
    // before, between and after.
    let mut batch = WriteBatch::new();
    batch.put(b("a"), b("a"));
    batch.delete(b("b"));
    batch.put(b("c"), b("c"));
    batch.put(b("d"), b("d'"));
    batch.delete(b("f"));
    batch.delete(b("h"));
    batch.put(b("j"), b("j"));
    store.write_batch(batch).unwrap();
    store.commit(None).unwrap();
    let want = vec![
        kv("a", "a"),
        kv("c", "c"),
        kv("d", "d'"),
        kv("i", "i"),
        kv("j", "j"),
    ];
    assert_eq!(all(&store), want);
    drop(store);
    let store = env.open_store("s", 0).unwrap();
    assert_eq!(all(&store), want);
}

#[test]
fn reopen_keeps_committed_data_and_checkpoint_but_not_uncommitted_writes() {
    let dir = tempfile::tempdir().unwrap();
    {
        let env = env(dir.path());
        let mut store = env.open_store("s", 0).unwrap();
        put(&mut store, "a", "1");
        put(&mut store, "b", "2");
        store.commit(cp(10)).unwrap();
        put(&mut store, "c", "uncommitted");
        delete(&mut store, "a");
        // Dropped with pending writes: store first, then the environment.
    }
    let env = env(dir.path());
    let mut store = env.open_store("s", 0).unwrap();
    assert_eq!(store.uncommitted_len(), 0);
    assert_eq!(all(&store), vec![kv("a", "1"), kv("b", "2")]);
    assert_eq!(store.checkpoint().unwrap(), cp(10));

    // Reopening a store inside a live environment works the same.
    put(&mut store, "z", "pending");
    drop(store);
    let store = env.open_store("s", 0).unwrap();
    assert_eq!(all(&store), vec![kv("a", "1"), kv("b", "2")]);
}

#[test]
fn one_store_partition_cannot_be_open_twice_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let env = env(dir.path());
    let first = env.open_store("s", 0).unwrap();
    let err = env.open_store("s", 0).unwrap_err();
    assert!(
        matches!(err, StoreError::InUse { partition: 0, .. }),
        "{err:?}"
    );
    // Another partition and the same partition through a clone of the handle.
    let _other = env.open_store("s", 1).unwrap();
    assert!(env.clone().open_store("s", 0).is_err());
    drop(first);
    env.open_store("s", 0).unwrap();
}

fn assert_directory_locked(err: &StoreError, dir: &Path) {
    match backend_source(err).downcast_ref::<LmdbError>() {
        Some(LmdbError::DirectoryLocked { path }) => assert_eq!(path, dir),
        _ => panic!("expected DirectoryLocked, got {err:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("another kstreams instance uses the state directory"),
        "{message}"
    );
}

#[test]
fn one_directory_cannot_be_opened_twice_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let first = env(dir.path());
    assert!(dir.path().join(LOCK_FILE_NAME).is_file());
    let err = LmdbEnvironment::open(LmdbConfig::new(dir.path())).unwrap_err();
    assert_directory_locked(&err, dir.path());
    // Another spelling of the same directory is the same lock file.
    let err = LmdbEnvironment::open(LmdbConfig::new(dir.path().join("."))).unwrap_err();
    assert!(
        matches!(
            backend_source(&err).downcast_ref::<LmdbError>(),
            Some(LmdbError::DirectoryLocked { .. })
        ),
        "{err:?}"
    );
    // A clone shares the environment (and its lock).
    let clone = first.clone();
    let store = clone.open_store("s", 0).unwrap();
    drop(first);
    drop(clone);
    // The store keeps the environment, and the lock, alive.
    let err = LmdbEnvironment::open(LmdbConfig::new(dir.path())).unwrap_err();
    assert_directory_locked(&err, dir.path());
    drop(store);
    // Released with the last handle: the directory opens again (the lock file stays).
    let env = LmdbEnvironment::open(LmdbConfig::new(dir.path())).unwrap();
    drop(env);
    assert!(dir.path().join(LOCK_FILE_NAME).is_file());
    LmdbEnvironment::open(LmdbConfig::new(dir.path())).unwrap();
}

#[test]
fn stores_and_partitions_in_one_environment_are_independent() {
    let dir = tempfile::tempdir().unwrap();
    {
        let env = env(dir.path());
        let factory: &dyn StoreFactory = &env;
        let mut s0 = factory.open("counts", 0).unwrap();
        let mut s1 = factory.open("counts", 1).unwrap();
        let mut t0 = factory.open("totals", 0).unwrap();
        // Names that would collide under a naive scheme stay apart.
        let mut dotted = factory.open("counts.1", 0).unwrap();

        put(s0.as_mut(), "k", "s0");
        put(s1.as_mut(), "k", "s1");
        put(t0.as_mut(), "k", "t0");
        put(dotted.as_mut(), "k", "dotted");
        s0.commit(cp(100)).unwrap();
        s1.commit(cp(200)).unwrap();
        // t0 and dotted stay uncommitted; rolling back one does not touch the others.
        dotted.rollback();

        assert_eq!(s0.get(b"k").unwrap(), Some(b("s0")));
        assert_eq!(s1.get(b"k").unwrap(), Some(b("s1")));
        assert_eq!(t0.get(b"k").unwrap(), Some(b("t0")));
        assert_eq!(dotted.get(b"k").unwrap(), None);
        assert_eq!(t0.checkpoint().unwrap(), None);
        t0.commit(cp(300)).unwrap();
        assert_eq!(s0.checkpoint().unwrap(), cp(100));
        assert_eq!(s1.checkpoint().unwrap(), cp(200));
        assert_eq!(t0.checkpoint().unwrap(), cp(300));
        assert_eq!(dotted.checkpoint().unwrap(), None);
        assert_eq!(s0.name(), "counts");
        assert_eq!(dotted.name(), "counts.1");
    }
    let env = env(dir.path());
    for (store, partition, value, offset) in [
        ("counts", 0, "s0", 100),
        ("counts", 1, "s1", 200),
        ("totals", 0, "t0", 300),
    ] {
        let s = env.open_store(store, partition).unwrap();
        assert_eq!(all(&s), vec![kv("k", value)], "{store}/{partition}");
        assert_eq!(s.checkpoint().unwrap(), cp(offset));
    }
    let dotted = env.open_store("counts.1", 0).unwrap();
    assert!(all(&dotted).is_empty());
}

#[test]
fn get_batch_answers_in_the_order_asked() {
    let dir = tempfile::tempdir().unwrap();
    let env = env(dir.path());
    let mut store = env.open_store("s", 0).unwrap();
    put(&mut store, "a", "1");
    put(&mut store, "c", "3");
    put(&mut store, "e", "5");
    store.commit(None).unwrap();
    put(&mut store, "b", "2 pending");
    delete(&mut store, "e");

    let keys: [&[u8]; 8] = [b"e", b"c", b"x", b"b", b"a", b"c", b"", b"d"];
    assert_eq!(
        store.get_batch(&keys).unwrap(),
        vec![
            None,
            Some(b("3")),
            None,
            Some(b("2 pending")),
            Some(b("1")),
            Some(b("3")),
            None,
            None
        ]
    );
    assert!(store.get_batch(&[]).unwrap().is_empty());
    // Every key answered by the buffer: no LMDB read needed, same answers.
    assert_eq!(
        store.get_batch(&[b"b", b"e"]).unwrap(),
        vec![Some(b("2 pending")), None]
    );
}

/// `get_batch` reads LMDB in key order, by walking the database (many keys asked per entry) or
/// by one lookup per key (few): both answer in the order asked, with duplicates, keys missing
/// before, between and after the stored ones, pending writes and unstorable keys.
#[test]
fn get_batch_answers_in_the_order_asked_whether_it_walks_or_looks_up() {
    let dir = tempfile::tempdir().unwrap();
    let env = env(dir.path());
    let mut store = env.open_store("s", 0).unwrap();
    // Even keys 010..=398 committed; odd ones never written.
    for i in (10..400).step_by(2) {
        put(&mut store, &format!("k{i:03}"), &format!("v{i}"));
    }
    store.commit(None).unwrap();
    put(&mut store, "k100", "pending");
    delete(&mut store, "k102");
    let too_long = vec![b'k'; env.max_key_size() + 1];
    let expect = |name: &str| -> Option<Bytes> {
        match name {
            "k100" => Some(b("pending")),
            "k102" => None,
            _ => {
                let i: usize = name.strip_prefix('k')?.parse().ok()?;
                ((10..400).contains(&i) && i.is_multiple_of(2)).then(|| b(&format!("v{i}")))
            }
        }
    };
    // Few keys against 195 entries: one lookup per key.
    let few = [
        "k398", "k001", "k200", "k999", "k200", "k101", "k100", "k102",
    ];
    // Many keys: a walk between the first and the last one asked.
    let many: Vec<String> = (0..420)
        .rev()
        .step_by(3)
        .map(|i| format!("k{i:03}"))
        .chain(["k100", "k102", "k012", "k012", "k000", "k419"].map(String::from))
        .collect();
    for names in [few.map(String::from).to_vec(), many] {
        let mut keys: Vec<&[u8]> = names.iter().map(|n| n.as_bytes()).collect();
        keys.push(b"");
        keys.push(&too_long);
        let mut want: Vec<Option<Bytes>> = names.iter().map(|n| expect(n)).collect();
        want.extend([None, None]);
        assert_eq!(store.get_batch(&keys).unwrap(), want, "{names:?}");
        // The same answers key by key.
        let one_by_one: Vec<Option<Bytes>> = keys.iter().map(|k| store.get(k).unwrap()).collect();
        assert_eq!(one_by_one, want);
    }
}

#[test]
fn range_respects_every_kind_of_bound() {
    let dir = tempfile::tempdir().unwrap();
    let env = env(dir.path());
    let mut store = env.open_store("s", 0).unwrap();
    // Committed a, c, e; pending b, d and a delete of e.
    for k in ["a", "c", "e"] {
        put(&mut store, k, k);
    }
    store.commit(None).unwrap();
    put(&mut store, "b", "b");
    put(&mut store, "d", "d");
    delete(&mut store, "e");

    let keys = |from: Bound<&[u8]>, to: Bound<&[u8]>| -> String {
        store
            .range(from, to)
            .unwrap()
            .into_iter()
            .map(|(k, _)| String::from_utf8(k.to_vec()).unwrap())
            .collect()
    };
    assert_eq!(keys(Unbounded, Unbounded), "abcd");
    assert_eq!(keys(Included(b"b"), Included(b"d")), "bcd");
    assert_eq!(keys(Excluded(b"b"), Included(b"d")), "cd");
    assert_eq!(keys(Included(b"b"), Excluded(b"d")), "bc");
    assert_eq!(keys(Excluded(b"b"), Excluded(b"d")), "c");
    assert_eq!(keys(Unbounded, Excluded(b"c")), "ab");
    assert_eq!(keys(Excluded(b"c"), Unbounded), "d");
    assert_eq!(keys(Included(b"bb"), Included(b"cc")), "c");
    assert_eq!(keys(Included(b"c"), Included(b"c")), "c");
    // Empty and inverted ranges are empty, not a panic.
    assert_eq!(keys(Included(b"c"), Excluded(b"c")), "");
    assert_eq!(keys(Excluded(b"c"), Excluded(b"c")), "");
    assert_eq!(keys(Included(b"d"), Included(b"a")), "");
    // Bounds LMDB could not store as keys.
    assert_eq!(keys(Included(b""), Unbounded), "abcd");
    assert_eq!(keys(Excluded(b""), Included(b"b")), "ab");
    assert_eq!(keys(Unbounded, Included(b"")), "");
    let long = vec![b'b'; 2 * env.max_key_size()];
    assert_eq!(keys(Included(&long), Unbounded), "cd");
    assert_eq!(keys(Unbounded, Excluded(&long)), "ab");
}

#[test]
fn keys_lmdb_cannot_store_are_rejected_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let env = env(dir.path());
    let mut store = env.open_store("s", 0).unwrap();
    let max = env.max_key_size();
    assert!(max >= 511);

    let longest = vec![b'k'; max];
    let mut batch = WriteBatch::new();
    batch.put(longest.clone(), b("ok"));
    store.write_batch(batch).unwrap();
    store.commit(None).unwrap();
    assert_eq!(store.get(&longest).unwrap(), Some(b("ok")));

    for bad in [Vec::new(), vec![b'k'; max + 1]] {
        let mut batch = WriteBatch::new();
        batch.put(b("fine"), b("1"));
        batch.put(bad.clone(), b("x"));
        let err = store.write_batch(batch).unwrap_err();
        assert!(
            matches!(
                backend_source(&err).downcast_ref::<LmdbError>(),
                Some(LmdbError::InvalidKey { .. })
            ),
            "{err}"
        );
        assert_eq!(store.uncommitted_len(), 0, "batch applied in part");
        assert_eq!(store.get(&bad).unwrap(), None);
        assert_eq!(store.get_batch(&[&bad]).unwrap(), vec![None]);
    }
}

#[test]
fn invalid_names_and_partitions_are_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    let env = env(dir.path());
    for (name, partition) in [("", 0), ("a/b", 0), ("a b", 0), ("nul\0", 0), ("ok", -1)] {
        let err = env.open_store(name, partition).unwrap_err();
        assert!(
            matches!(err, StoreError::Config { .. }),
            "{name:?}/{partition}: {err:?}"
        );
    }
}

#[test]
fn too_many_databases_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let env = LmdbEnvironment::open(LmdbConfig::new(dir.path()).with_max_dbs(3)).unwrap();
    let _a = env.open_store("s", 0).unwrap();
    let _b = env.open_store("s", 1).unwrap();
    let err = env.open_store("s", 2).unwrap_err();
    assert!(
        matches!(&err, StoreError::Config { detail, .. } if detail.contains("max_dbs")),
        "{err:?}"
    );
    // The failed name is not left registered as open.
    assert!(matches!(
        env.open_store("s", 2).unwrap_err(),
        StoreError::Config { .. }
    ));
}

#[test]
fn invalid_map_sizes_are_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    let err = LmdbEnvironment::open(
        LmdbConfig::new(dir.path())
            .with_initial_map_size(1 << 30)
            .with_max_map_size(1 << 20),
    )
    .unwrap_err();
    assert!(matches!(err, StoreError::Config { .. }), "{err:?}");
}

#[test]
fn map_grows_when_full() {
    let dir = tempfile::tempdir().unwrap();
    let config = LmdbConfig::new(dir.path()).with_initial_map_size(64 * 1024);
    let value = vec![0xab_u8; 1000];
    let per_commit = 500;
    let commits = 8; // 4000 values of 1000 bytes: about 4 MB
    {
        let env = LmdbEnvironment::open(config.clone()).unwrap();
        assert_eq!(env.map_size(), 64 * 1024);
        let mut store = env.open_store("big", 0).unwrap();
        for c in 0..commits {
            let mut batch = WriteBatch::with_capacity(per_commit);
            for i in 0..per_commit {
                batch.put(format!("key-{c:02}-{i:05}"), value.clone());
            }
            store.write_batch(batch).unwrap();
            store.commit(cp(c as i64)).unwrap();
        }
        assert!(env.map_size() >= 4_000_000, "map size {}", env.map_size());
        assert_eq!(
            store.committed_len().unwrap(),
            (per_commit * commits) as u64
        );
    }
    // Reopened with the tiny initial size: LMDB maps at least the data, and growth continues.
    let env = LmdbEnvironment::open(config).unwrap();
    let mut store = env.open_store("big", 0).unwrap();
    assert_eq!(
        store.committed_len().unwrap(),
        (per_commit * commits) as u64
    );
    assert_eq!(store.checkpoint().unwrap(), cp(commits as i64 - 1));
    let mut batch = WriteBatch::new();
    for i in 0..2000 {
        batch.put(format!("more-{i:05}"), value.clone());
    }
    store.write_batch(batch).unwrap();
    store.commit(None).unwrap();
    assert_eq!(
        store.get(b"key-03-00042").unwrap().as_deref(),
        Some(&value[..])
    );
    assert_eq!(
        store.committed_len().unwrap(),
        (per_commit * commits + 2000) as u64
    );
}

#[test]
fn commit_past_max_map_size_fails_cleanly_and_keeps_pending_writes() {
    let dir = tempfile::tempdir().unwrap();
    let env = LmdbEnvironment::open(
        LmdbConfig::new(dir.path())
            .with_initial_map_size(64 * 1024)
            .with_max_map_size(256 * 1024),
    )
    .unwrap();
    let mut store = env.open_store("s", 0).unwrap();
    put(&mut store, "small", "1");
    store.commit(cp(1)).unwrap();

    let mut batch = WriteBatch::new();
    for i in 0..1000 {
        batch.put(format!("k{i:04}"), vec![7_u8; 1000]);
    }
    store.write_batch(batch).unwrap();
    let err = store.commit(cp(2)).unwrap_err();
    assert!(
        matches!(
            backend_source(&err).downcast_ref::<LmdbError>(),
            Some(LmdbError::MapFull {
                max_map_size: 262_144,
                ..
            })
        ),
        "{err}"
    );
    assert_eq!(env.map_size(), 256 * 1024);
    // Nothing of the failed commit is durable; its writes are still pending and readable.
    assert_eq!(store.uncommitted_len(), 1000);
    assert_eq!(store.checkpoint().unwrap(), cp(1));
    assert_eq!(store.committed_len().unwrap(), 1);
    assert_eq!(store.get(b"k0999").unwrap().map(|v| v.len()), Some(1000));
    // Retrying fails the same way; after a rollback the store works on.
    assert!(store.commit(cp(2)).is_err());
    store.rollback();
    put(&mut store, "after", "ok");
    store.commit(cp(3)).unwrap();
    assert_eq!(all(&store), vec![kv("after", "ok"), kv("small", "1")]);
    assert_eq!(store.checkpoint().unwrap(), cp(3));
}

/// Replaces the stored checkpoint of store `s`, partition 0 with `raw`, with heed directly (the
/// environment must be closed).
fn write_raw_checkpoint(dir: &Path, raw: &[u8]) {
    use heed::types::Bytes as Raw;
    let env = unsafe { heed::EnvOpenOptions::new().max_dbs(8).open(dir).unwrap() };
    let wtxn = env.write_txn().unwrap();
    let db = env
        .create_databases_and_commit(wtxn, |opener, wtxn| {
            opener
                .create_database::<Raw, Raw>(wtxn, Some("__kstreams_checkpoints"))
                .map(heed::CommitOrAbort::<_, ()>::Commit)
        })
        .unwrap()
        .unwrap_commit();
    let mut wtxn = env.write_txn().unwrap();
    db.put(&mut wtxn, b"s.0", raw).unwrap();
    wtxn.commit().unwrap();
    env.prepare_for_closing().wait();
}

#[test]
fn malformed_checkpoint_is_corrupt_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    {
        let env = env(dir.path());
        let mut store = env.open_store("s", 0).unwrap();
        store.commit(cp(5)).unwrap();
    }
    for len in [0, 3, 7, 9, 16, 23, 25, 40] {
        write_raw_checkpoint(dir.path(), &vec![1_u8; len]);
        let env = env(dir.path());
        let store = env.open_store("s", 0).unwrap();
        let err = store.checkpoint().unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt { detail, .. } if detail.contains(&format!("{len} bytes"))),
            "{len} bytes: {err:?}"
        );
    }
}

#[test]
fn an_8_byte_checkpoint_of_the_older_format_reads_without_topic_id() {
    let dir = tempfile::tempdir().unwrap();
    drop(env(dir.path()).open_store("s", 0).unwrap());
    write_raw_checkpoint(dir.path(), &1234_i64.to_be_bytes());
    let env = env(dir.path());
    let mut store = env.open_store("s", 0).unwrap();
    assert_eq!(
        store.checkpoint().unwrap(),
        Some(Checkpoint::new(1234, None))
    );
    // The next commit writes the current format.
    let id = [0xa5; 16];
    store.commit(Some(Checkpoint::new(1300, Some(id)))).unwrap();
    assert_eq!(
        store.checkpoint().unwrap(),
        Some(Checkpoint::new(1300, Some(id)))
    );
}

#[test]
fn checkpoints_with_and_without_topic_id_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let id = *b"changelog-uuid!!";
    {
        let env = env(dir.path());
        let mut with_id = env.open_store("s", 0).unwrap();
        let mut without = env.open_store("s", 1).unwrap();
        put(&mut with_id, "k", "v");
        with_id.commit(Some(Checkpoint::new(77, Some(id)))).unwrap();
        without.commit(Some(Checkpoint::new(78, None))).unwrap();
        // A commit without a checkpoint keeps the topic id too.
        put(&mut with_id, "k2", "v");
        with_id.commit(None).unwrap();
        assert_eq!(
            with_id.checkpoint().unwrap(),
            Some(Checkpoint::new(77, Some(id)))
        );
    }
    let env = env(dir.path());
    assert_eq!(
        env.open_store("s", 0).unwrap().checkpoint().unwrap(),
        Some(Checkpoint::new(77, Some(id)))
    );
    assert_eq!(
        env.open_store("s", 1).unwrap().checkpoint().unwrap(),
        Some(Checkpoint::new(78, None))
    );
}

#[test]
fn every_sync_mode_commits_and_reopens() {
    for mode in [SyncMode::Full, SyncMode::NoMetaSync, SyncMode::NoSync] {
        let dir = tempfile::tempdir().unwrap();
        let config = LmdbConfig::new(dir.path()).with_sync_mode(mode);
        {
            let env = LmdbEnvironment::open(config.clone()).unwrap();
            let mut store = env.open_store("s", 0).unwrap();
            put(&mut store, "k", "v");
            store.commit(cp(1)).unwrap();
            env.sync().unwrap();
        }
        let env = LmdbEnvironment::open(config).unwrap();
        assert_eq!(env.config().sync_mode, mode);
        let store = env.open_store("s", 0).unwrap();
        assert_eq!(all(&store), vec![kv("k", "v")], "{mode:?}");
        assert_eq!(store.checkpoint().unwrap(), cp(1));
    }
    assert_eq!(SyncMode::default(), SyncMode::NoMetaSync);
}

#[test]
fn a_store_moves_between_threads_between_calls() {
    let dir = tempfile::tempdir().unwrap();
    let env = env(dir.path());
    let mut store = env.open_store("s", 0).unwrap();
    put(&mut store, "a", "main");
    let mut store = std::thread::spawn(move || {
        put(&mut store, "b", "thread");
        store.commit(cp(1)).unwrap();
        put(&mut store, "c", "pending");
        store
    })
    .join()
    .unwrap();
    store.commit(cp(2)).unwrap();
    assert_eq!(
        all(&store),
        vec![kv("a", "main"), kv("b", "thread"), kv("c", "pending")]
    );
}

#[test]
fn concurrent_stores_of_one_environment_commit_while_the_map_grows() {
    let dir = tempfile::tempdir().unwrap();
    let env = LmdbEnvironment::open(
        LmdbConfig::new(dir.path())
            .with_initial_map_size(64 * 1024)
            .with_sync_mode(SyncMode::NoSync),
    )
    .unwrap();
    let threads: Vec<_> = (0..4)
        .map(|partition| {
            let env = env.clone();
            std::thread::spawn(move || {
                let mut store = env.open_store("s", partition).unwrap();
                for round in 0..20_i64 {
                    let mut batch = WriteBatch::new();
                    for i in 0..50 {
                        batch.put(format!("{round:03}-{i:03}"), vec![partition as u8; 500]);
                    }
                    store.write_batch(batch).unwrap();
                    store.commit(cp(round)).unwrap();
                    let got = store.get_batch(&[b"000-000", b"nope"]).unwrap();
                    assert_eq!(got[0].as_deref(), Some(&vec![partition as u8; 500][..]));
                    assert_eq!(got[1], None);
                }
                store.committed_len().unwrap()
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), 20 * 50);
    }
    assert!(env.map_size() > 64 * 1024);
}

// ---------------------------------------------------------------------------------------------
// Changelog and restore: `pending_writes`, `restore_batch`, `wipe`, on both backends where the
// contract is the same, then what only LMDB has (durability, append path, map growth).
// ---------------------------------------------------------------------------------------------

fn op(k: &str, v: Option<&str>) -> WriteOp {
    WriteOp {
        key: b(k),
        value: v.map(b),
    }
}

fn ops(ops: &[(&str, Option<&str>)]) -> WriteBatch {
    ops.iter().map(|&(k, v)| op(k, v)).collect()
}

const TOPIC_ID: [u8; 16] = *b"0123456789abcdef";

/// Runs `test` on a fresh LMDB store and on a fresh memory store.
fn for_both_backends(test: impl Fn(&mut dyn KvBackend)) {
    let dir = tempfile::tempdir().unwrap();
    let env = env(dir.path());
    let mut lmdb = env.open_store("s", 0).unwrap();
    test(&mut lmdb);
    let mut mem = MemoryStore::new("s");
    test(&mut mem);
}

#[test]
fn pending_writes_are_what_the_changelog_must_carry() {
    for_both_backends(|store| {
        put(store, "z", "1");
        put(store, "a", "1");
        assert_eq!(
            store.pending_writes(),
            vec![op("a", Some("1")), op("z", Some("1"))]
        );
        store.commit(cp(1)).unwrap();
        assert!(store.pending_writes().is_empty());

        store
            .write_batch(ops(&[
                ("m", Some("1")),
                ("z", None),
                ("m", Some("2")),
                ("never", None),
                ("b", Some("x")),
            ]))
            .unwrap();
        let want = vec![
            op("b", Some("x")),
            op("m", Some("2")),
            op("never", None),
            op("z", None),
        ];
        assert_eq!(store.pending_writes(), want);
        // Writes undone to a savepoint are not carried.
        store.set_savepoint();
        put(store, "q", "undone");
        delete(store, "b");
        store.rollback_to_savepoint();
        store.release_savepoint();
        assert_eq!(store.pending_writes(), want);
        store.commit(cp(2)).unwrap();
        assert!(store.pending_writes().is_empty());
        put(store, "r", "rolled back");
        store.rollback();
        assert!(store.pending_writes().is_empty());
    });
}

#[test]
fn restore_batch_applies_its_ops_in_order_with_its_checkpoint() {
    for_both_backends(|store| {
        for k in ["b", "d", "f"] {
            put(store, k, "committed");
        }
        store.commit(cp(3)).unwrap();

        // Keys among the existing ones (plain puts and deletes), a key written several times.
        let batch = ops(&[
            ("c", Some("c")),
            ("d", None),
            ("a", Some("1")),
            ("a", Some("2")),
            ("a", None),
            ("a", Some("3")),
            ("g", Some("g")),
            ("never", None),
            ("b", Some("b'")),
            ("f", Some("gone")),
            ("f", None),
        ]);
        store
            .restore_batch(batch, Checkpoint::new(10, Some(TOPIC_ID)))
            .unwrap();
        let want = vec![kv("a", "3"), kv("b", "b'"), kv("c", "c"), kv("g", "g")];
        assert_eq!(all(store), want);
        assert_eq!(
            store.checkpoint().unwrap(),
            Some(Checkpoint::new(10, Some(TOPIC_ID)))
        );
        assert_eq!(store.uncommitted_len(), 0);
        assert!(store.pending_writes().is_empty());

        // Keys all after the last one, unsorted, with deletes and a put then delete: `x`, `y`
        // and `z` land (LMDB appends), `w` does not.
        let batch = ops(&[
            ("z", Some("z")),
            ("x", Some("x")),
            ("y", None),
            ("w", Some("w")),
            ("w", None),
            ("y", Some("y")),
            ("zz", None),
        ]);
        store
            .restore_batch(batch, Checkpoint::new(17, None))
            .unwrap();
        let mut want = want;
        want.extend([kv("x", "x"), kv("y", "y"), kv("z", "z")]);
        assert_eq!(all(store), want);
        assert_eq!(store.checkpoint().unwrap(), Some(Checkpoint::new(17, None)));

        // An empty batch moves the checkpoint alone.
        store
            .restore_batch(WriteBatch::new(), Checkpoint::new(20, Some(TOPIC_ID)))
            .unwrap();
        assert_eq!(all(store), want);
        assert_eq!(
            store.checkpoint().unwrap(),
            Some(Checkpoint::new(20, Some(TOPIC_ID)))
        );

        // Processing goes on as usual after a restore.
        put(store, "a", "processed");
        store.commit(cp(21)).unwrap();
        assert_eq!(store.get(b"a").unwrap(), Some(b("processed")));
        assert_eq!(store.checkpoint().unwrap(), cp(21));
    });
}

#[test]
fn restore_batch_is_refused_while_writes_are_uncommitted() {
    for_both_backends(|store| {
        put(store, "a", "committed");
        store.commit(cp(1)).unwrap();
        put(store, "p", "pending");
        delete(store, "a");
        let batch = ops(&[("r", Some("restored"))]);
        let err = store
            .restore_batch(batch.clone(), Checkpoint::new(5, None))
            .unwrap_err();
        assert!(
            matches!(err, StoreError::UncommittedWrites { count: 2, .. }),
            "{err:?}"
        );
        // Nothing changed: the pending writes are still there, nothing of the batch landed.
        assert_eq!(store.uncommitted_len(), 2);
        assert_eq!(store.get(b"p").unwrap(), Some(b("pending")));
        assert_eq!(store.get(b"r").unwrap(), None);
        assert_eq!(store.checkpoint().unwrap(), cp(1));
        store.rollback();
        store
            .restore_batch(batch, Checkpoint::new(5, None))
            .unwrap();
        assert_eq!(all(store), vec![kv("a", "committed"), kv("r", "restored")]);
    });
}

#[test]
fn wipe_deletes_data_checkpoint_pending_writes_and_savepoint() {
    for_both_backends(|store| {
        put(store, "a", "1");
        put(store, "b", "2");
        store
            .commit(Some(Checkpoint::new(9, Some(TOPIC_ID))))
            .unwrap();
        put(store, "c", "pending");
        store.set_savepoint();
        put(store, "d", "after savepoint");
        store.wipe().unwrap();
        assert!(all(store).is_empty());
        assert_eq!(store.get(b"a").unwrap(), None);
        assert_eq!(store.checkpoint().unwrap(), None);
        assert_eq!(store.uncommitted_len(), 0);
        assert!(store.pending_writes().is_empty());
        // The savepoint went with the wipe: rolling back to it undoes nothing.
        put(store, "e", "new");
        store.rollback_to_savepoint();
        assert_eq!(store.get(b"e").unwrap(), Some(b("new")));
        store.rollback();
        // Wiping an empty store is fine, and a restore from scratch follows.
        store.wipe().unwrap();
        store
            .restore_batch(ops(&[("b", Some("2"))]), Checkpoint::new(1, None))
            .unwrap();
        assert_eq!(all(store), vec![kv("b", "2")]);
        assert_eq!(store.checkpoint().unwrap(), Some(Checkpoint::new(1, None)));
    });
}

#[test]
fn restored_batches_and_wipes_are_durable_and_stay_in_their_partition() {
    let dir = tempfile::tempdir().unwrap();
    let n = 5_000_u32;
    let key = |i: u32| format!("{:08x}", i.wrapping_mul(2_654_435_761)); // not sorted
    {
        let env = env(dir.path());
        let mut s0 = env.open_store("s", 0).unwrap();
        let mut s1 = env.open_store("s", 1).unwrap();
        for (offset, chunk) in (0..n).collect::<Vec<_>>().chunks(1000).enumerate() {
            let batch = chunk
                .iter()
                .map(|&i| op(&key(i), Some(&format!("v{i}"))))
                .collect();
            s0.restore_batch(batch, Checkpoint::new(offset as i64 + 1, Some(TOPIC_ID)))
                .unwrap();
        }
        s1.restore_batch(ops(&[("other", Some("1"))]), Checkpoint::new(1, None))
            .unwrap();
        assert_eq!(s0.committed_len().unwrap(), u64::from(n));
    }
    let lmdb = env(dir.path());
    let mut s0 = lmdb.open_store("s", 0).unwrap();
    let s1 = lmdb.open_store("s", 1).unwrap();
    assert_eq!(s0.committed_len().unwrap(), u64::from(n));
    assert_eq!(
        s0.checkpoint().unwrap(),
        Some(Checkpoint::new(5, Some(TOPIC_ID)))
    );
    for i in [0, 1, 999, 1000, 4999] {
        assert_eq!(
            s0.get(key(i).as_bytes()).unwrap(),
            Some(Bytes::from(format!("v{i}"))),
            "{i}"
        );
    }
    // Keys come back in order.
    let keys: Vec<Bytes> = all(&s0).into_iter().map(|(k, _)| k).collect();
    assert!(keys.is_sorted());
    s0.wipe().unwrap();
    drop(s0);
    drop(s1);
    drop(lmdb);
    let reopened = env(dir.path());
    let s0 = reopened.open_store("s", 0).unwrap();
    let s1 = reopened.open_store("s", 1).unwrap();
    assert_eq!(s0.committed_len().unwrap(), 0);
    assert_eq!(s0.checkpoint().unwrap(), None);
    assert_eq!(all(&s1), vec![kv("other", "1")]);
    assert_eq!(s1.checkpoint().unwrap(), Some(Checkpoint::new(1, None)));
}

#[test]
fn restore_batch_rejects_keys_lmdb_cannot_store_whole() {
    let dir = tempfile::tempdir().unwrap();
    let env = env(dir.path());
    let mut store = env.open_store("s", 0).unwrap();
    store.commit(cp(1)).unwrap();
    for bad in [Vec::new(), vec![b'k'; env.max_key_size() + 1]] {
        let mut batch = WriteBatch::new();
        batch.put(b("fine"), b("1"));
        batch.delete(bad);
        let err = store
            .restore_batch(batch, Checkpoint::new(2, None))
            .unwrap_err();
        assert!(
            matches!(
                backend_source(&err).downcast_ref::<LmdbError>(),
                Some(LmdbError::InvalidKey { .. })
            ),
            "{err}"
        );
        assert_eq!(store.get(b"fine").unwrap(), None);
        assert_eq!(store.checkpoint().unwrap(), cp(1));
    }
}

#[test]
fn restore_grows_the_map_and_fails_cleanly_past_its_maximum() {
    let dir = tempfile::tempdir().unwrap();
    let env = LmdbEnvironment::open(
        LmdbConfig::new(dir.path())
            .with_initial_map_size(64 * 1024)
            .with_max_map_size(16 << 20),
    )
    .unwrap();
    let mut store = env.open_store("s", 0).unwrap();
    let value = vec![0x5a_u8; 1000];
    // About 4 MB in batches of 500 records: the map grows from 64 KiB.
    for round in 0..8_i64 {
        let batch = (0..500)
            .map(|i| WriteOp {
                key: Bytes::from(format!("{i:05}-{round}")),
                value: Some(Bytes::from(value.clone())),
            })
            .collect();
        store
            .restore_batch(batch, Checkpoint::new(round, None))
            .unwrap();
    }
    assert!(env.map_size() >= 4_000_000, "map size {}", env.map_size());
    assert_eq!(store.committed_len().unwrap(), 4000);
    assert_eq!(store.checkpoint().unwrap(), cp(7));

    // One batch bigger than the whole map may grow to: refused, nothing of it durable.
    let batch = (0..20_000)
        .map(|i| WriteOp {
            key: Bytes::from(format!("big-{i:05}")),
            value: Some(Bytes::from(value.clone())),
        })
        .collect();
    let err = store
        .restore_batch(batch, Checkpoint::new(99, None))
        .unwrap_err();
    assert!(
        matches!(
            backend_source(&err).downcast_ref::<LmdbError>(),
            Some(LmdbError::MapFull { .. })
        ),
        "{err}"
    );
    assert_eq!(store.committed_len().unwrap(), 4000);
    assert_eq!(store.checkpoint().unwrap(), cp(7));
    assert_eq!(store.get(b"big-00000").unwrap(), None);
}

#[test]
fn local_checkpoints_list_every_store_partition_with_a_checkpoint_without_opening_it() {
    use kstreams_store_api::LocalCheckpoint;
    let dir = tempfile::tempdir().unwrap();
    let id = Some(*b"0123456789abcdef");
    let listed = |env: &LmdbEnvironment| {
        let mut all = StoreFactory::local_checkpoints(env).unwrap();
        all.sort_by(|a, b| (&a.store, a.partition).cmp(&(&b.store, b.partition)));
        all
    };
    let local = |store: &str, partition, offset, topic_id| LocalCheckpoint {
        store: store.to_owned(),
        partition,
        checkpoint: Checkpoint::new(offset, topic_id),
    };
    {
        let env = env(dir.path());
        assert_eq!(listed(&env), []);
        for (store, partition, offset) in [("counts", 0, 5), ("counts", 1, 7), ("counts", 10, 9)] {
            let mut s = env.open_store(store, partition).unwrap();
            put(&mut s, "k", "v");
            s.commit(Some(Checkpoint::new(offset, id))).unwrap();
        }
        // A store name with a dot, committed without a topic id.
        let mut s = env.open_store("app.totals", 2).unwrap();
        put(&mut s, "k", "v");
        s.commit(cp(3)).unwrap();
        drop(s);
        // Data without a checkpoint is no state to report.
        let mut s = env.open_store("counts", 4).unwrap();
        put(&mut s, "k", "v");
        s.commit(None).unwrap();
    }
    // After a restart.
    let env = env(dir.path());
    let expected = vec![
        local("app.totals", 2, 3, None),
        local("counts", 0, 5, id),
        local("counts", 1, 7, id),
        local("counts", 10, 9, id),
    ];
    assert_eq!(listed(&env), expected);
    // A store open elsewhere (another clone of the environment, as another stream thread) is
    // listed with its committed checkpoint and stays open there: its uncommitted writes and
    // its next commit are untouched, and it cannot be opened twice.
    let other = env.clone();
    let mut open = other.open_store("counts", 1).unwrap();
    put(&mut open, "k2", "uncommitted");
    assert_eq!(listed(&env), expected);
    assert!(matches!(
        env.open_store("counts", 1),
        Err(StoreError::InUse { .. })
    ));
    assert_eq!(open.uncommitted_len(), 1);
    open.commit(Some(Checkpoint::new(8, id))).unwrap();
    assert_eq!(listed(&env)[2], local("counts", 1, 8, id));
    // A wiped store drops out.
    open.wipe().unwrap();
    assert_eq!(listed(&env).len(), 3);
}
