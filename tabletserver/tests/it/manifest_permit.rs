//! The engine's manifest write permit: while it says no, a flush (or a split, or a background
//! flush) stores no manifest and fails with `NotPermitted` (mapped to `Unavailable`), the
//! writes stay readable from the memtables, and the tablet keeps working; once it says yes
//! again the background thread flushes what was postponed.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tabula_common::{Code, LocalDir, ServerId, StorageRoot, SystemClock, TabletId};
use tabula_tabletserver::engine::commitlog::{CommitLog, CommitLogOptions};
use tabula_tabletserver::engine::manifest::Manifest;
use tabula_tabletserver::engine::{
    CellFilter, Engine, EngineError, EngineOptions, ManifestWritePermit, Mutation, RowMutation,
    Schema, Tablet,
};

const DEADLINE: Duration = Duration::from_secs(30);

fn put(row: &str, value: &str) -> RowMutation {
    RowMutation {
        row: Bytes::copy_from_slice(row.as_bytes()),
        mutations: vec![Mutation::SetCell {
            family: Bytes::from_static(b"cf"),
            qualifier: Bytes::from_static(b"q"),
            timestamp: 1_000,
            value: Bytes::copy_from_slice(value.as_bytes()),
        }],
    }
}

fn value(t: &Tablet, row: &str) -> Option<Vec<u8>> {
    let row = t
        .read_row(row.as_bytes(), &CellFilter::default())
        .unwrap()?;
    Some(row.cells[0].value.to_vec())
}

/// The manifest as stored, in bytes (to compare what is on disk, not what the tablet holds).
fn stored(storage: &Arc<dyn StorageRoot>, id: TabletId) -> Bytes {
    storage.read_all(&Manifest::path(id)).unwrap()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !done() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn without_the_permit_nothing_is_stored_and_the_flush_happens_once_permitted() {
    let dir = tempfile::tempdir().unwrap();
    let storage: Arc<dyn StorageRoot> = Arc::new(LocalDir::open(dir.path()).unwrap());
    let log = CommitLog::open(
        storage.clone(),
        ServerId("s1".into()),
        CommitLogOptions::default(),
    )
    .unwrap();
    let allowed = Arc::new(AtomicBool::new(true));
    let permit = {
        let allowed = allowed.clone();
        ManifestWritePermit::new(move || allowed.load(Ordering::SeqCst))
    };
    let engine = Engine::new(
        storage.clone(),
        Arc::new(log),
        Arc::new(SystemClock),
        EngineOptions {
            manifest_write_permit: Some(permit),
            ..EngineOptions::for_tests()
        },
    );
    let id = TabletId(7);
    let t = engine
        .create_tablet(id, Bytes::new(), None, Schema::with_families(["cf"]))
        .unwrap();
    t.apply(put("a", "1")).unwrap();
    t.flush().unwrap();
    let before = stored(&storage, id);
    assert_eq!(t.manifest().sstables.len(), 1);

    allowed.store(false, Ordering::SeqCst);
    let refused_before = engine.manifest_writes_refused();
    t.apply(put("b", "2")).unwrap();
    t.apply(put("a", "3")).unwrap();
    let e = t.flush().unwrap_err();
    assert!(matches!(e, EngineError::NotPermitted(_)), "{e}");
    assert_eq!(tabula_common::Error::from(e).code, Code::Unavailable);
    assert!(engine.manifest_writes_refused() > refused_before);
    // A split is refused before it closes the tablet to writes.
    let e = t
        .split(Bytes::from_static(b"b"), TabletId(8), TabletId(9))
        .unwrap_err();
    assert!(matches!(e, EngineError::NotPermitted(_)), "{e}");
    assert!(!storage.exists(&Manifest::path(TabletId(8))).unwrap());
    // A major compaction asked of the background thread is postponed too.
    t.request_major_compaction();
    // Enough writes to freeze memtables: the background thread is kicked and must refuse.
    let big = "x".repeat(1024);
    for i in 0..100 {
        t.apply(put(&format!("r{i:03}"), &big)).unwrap();
    }
    let refused = engine.manifest_writes_refused();
    wait_until("the background thread to try and be refused", || {
        engine.manifest_writes_refused() > refused
    });
    assert_eq!(stored(&storage, id), before, "the stored manifest changed");
    assert_eq!(t.manifest().sstables.len(), 1);
    // Everything written stays readable (from the memtables), and writes still work.
    assert_eq!(value(&t, "a").unwrap(), b"3");
    assert_eq!(value(&t, "b").unwrap(), b"2");
    assert_eq!(value(&t, "r099").unwrap(), big.as_bytes());
    t.apply(put("c", "4")).unwrap();

    // Permitted again: the background thread flushes what it postponed, on its own.
    allowed.store(true, Ordering::SeqCst);
    let redo_before = Manifest::decode("manifest", before.clone())
        .unwrap()
        .redo_seq;
    wait_until("the postponed background flush", || {
        let m = Manifest::decode("manifest", stored(&storage, id)).unwrap();
        m.redo_seq > redo_before
    });
    assert_eq!(value(&t, "a").unwrap(), b"3");
    t.flush().unwrap();
    let m = t.manifest();
    assert!(m.redo_seq >= m.last_seq, "{m:?}");
    // Reopened from the stored manifest and the commit log, everything is there.
    drop(t);
    let t = engine
        .open_tablet(id, Schema::with_families(["cf"]))
        .unwrap();
    assert_eq!(value(&t, "a").unwrap(), b"3");
    assert_eq!(value(&t, "b").unwrap(), b"2");
    assert_eq!(value(&t, "c").unwrap(), b"4");
    assert_eq!(value(&t, "r042").unwrap(), big.as_bytes());
}

#[test]
fn creating_or_opening_a_tablet_without_the_permit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let storage: Arc<dyn StorageRoot> = Arc::new(LocalDir::open(dir.path()).unwrap());
    let log = CommitLog::open(
        storage.clone(),
        ServerId("s1".into()),
        CommitLogOptions::default(),
    )
    .unwrap();
    let engine = Engine::new(
        storage.clone(),
        Arc::new(log),
        Arc::new(SystemClock),
        EngineOptions {
            manifest_write_permit: Some(ManifestWritePermit::new(|| false)),
            ..EngineOptions::for_tests()
        },
    );
    let e = engine
        .create_tablet(TabletId(3), Bytes::new(), None, Schema::default())
        .unwrap_err();
    assert!(matches!(e, EngineError::NotPermitted(_)), "{e}");
    assert!(!storage.exists(&Manifest::path(TabletId(3))).unwrap());
}
