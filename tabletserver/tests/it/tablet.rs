//! Tablet behaviour through the public engine API: server timestamps, errors, splits sharing
//! SSTables, garbage collection, GC policies at major compaction, and recovery of a tablet from
//! a dead server's commit log.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::ops::Bound;
use std::sync::Arc;

use crate::faulty_storage::FaultyStorage;
use bytes::Bytes;
use tabula_common::{Clock, LocalDir, ManualClock, ServerId, StorageRoot, TabletId, Timestamp};
use tabula_tabletserver::engine::commitlog::{CommitLog, CommitLogOptions};
use tabula_tabletserver::engine::sstable::RowRange;
use tabula_tabletserver::engine::{
    CellFilter, Engine, EngineError, EngineOptions, GcPolicy, Mutation, RowMutation, ScanOptions,
    Schema, Tablet,
};

struct Env {
    _dir: tempfile::TempDir,
    storage: Arc<dyn StorageRoot>,
    clock: Arc<ManualClock>,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let storage: Arc<dyn StorageRoot> = Arc::new(LocalDir::open(dir.path()).unwrap());
        let clock = Arc::new(ManualClock::new(Timestamp(1_700_000_000_000_000)));
        Env {
            _dir: dir,
            storage,
            clock,
        }
    }

    /// A new whole-table tablet (id 1, family `cf`) on a new engine for `server`.
    fn tablet(&self, server: &str) -> Tablet {
        let schema = Schema::with_families(["cf"]);
        self.engine(server)
            .create_tablet(TabletId(1), Bytes::new(), None, schema)
            .unwrap()
    }

    fn engine(&self, server: &str) -> Arc<Engine> {
        let log = CommitLog::open(
            self.storage.clone(),
            ServerId(server.into()),
            CommitLogOptions::default(),
        )
        .unwrap();
        let clock: Arc<dyn Clock> = self.clock.clone();
        Engine::new(
            self.storage.clone(),
            Arc::new(log),
            clock,
            EngineOptions::for_tests(),
        )
    }
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn put(row: &str, q: &str, ts: i64, value: &str) -> RowMutation {
    RowMutation {
        row: b(row),
        mutations: vec![Mutation::SetCell {
            family: b("cf"),
            qualifier: b(q),
            timestamp: ts,
            value: b(value),
        }],
    }
}

fn rows(t: &Tablet) -> Vec<String> {
    t.scan(ScanOptions::default())
        .unwrap()
        .map(|r| String::from_utf8(r.unwrap().key.to_vec()).unwrap())
        .collect()
}

#[test]
fn server_timestamps_strictly_increase_even_when_the_clock_stands_still() {
    let env = Env::new();
    let t = env.tablet("s1");
    for i in 0..5 {
        t.apply(put("r", "q", -1, &i.to_string())).unwrap();
    }
    let row = t.read_row(b"r", &CellFilter::default()).unwrap().unwrap();
    let ts: Vec<i64> = row.cells.iter().map(|c| c.timestamp).collect();
    assert_eq!(ts.len(), 5, "no write overwrote another");
    assert!(ts.windows(2).all(|w| w[0] > w[1]));
    assert_eq!(ts[4], env.clock.now().micros());
}

/// The newest timestamp of `row`'s `cf:q`.
fn newest_ts(t: &Tablet, row: &str) -> i64 {
    let got = t.read_row(row.as_bytes(), &CellFilter::default()).unwrap();
    got.unwrap().cells[0].timestamp
}

/// A tablet reopened elsewhere — flushed and moved, or recovered from a dead server's log — on
/// a server whose clock is behind never hands out a server timestamp below one handed out
/// before, so "the latest version" stays the latest write. A caller's own timestamp far in
/// the future does not drag server time along.
#[test]
fn server_timestamps_never_go_back_when_a_tablet_is_reopened_behind_the_clock() {
    let env = Env::new();
    let schema = Schema::with_families(["cf"]);
    let start = env.clock.now();
    let first = env
        .engine("s1")
        .create_tablet(TabletId(3), Bytes::new(), None, schema.clone())
        .unwrap();
    first.apply(put("flushed", "q", -1, "v1")).unwrap();
    let flushed_ts = newest_ts(&first, "flushed");
    first.flush().unwrap();
    assert_eq!(first.manifest().timestamp_mark, flushed_ts);
    env.clock.advance(std::time::Duration::from_secs(10));
    first.apply(put("logged", "q", -1, "v1")).unwrap();
    let logged_ts = newest_ts(&first, "logged");
    let future = logged_ts + 3_600_000_000;
    first
        .apply(put("explicit", "q", future, "far ahead"))
        .unwrap();
    first.close(); // a crash: the last writes are only in the log

    // The next server's clock is 5 s behind the first write's.
    env.clock.set(Timestamp(start.micros() - 5_000_000));
    let second = env
        .engine("s2")
        .open_tablet(TabletId(3), schema.clone())
        .unwrap();
    second.apply(put("logged", "q", -1, "v2")).unwrap();
    let after = newest_ts(&second, "logged");
    assert_eq!(after, logged_ts + 1, "the mark is recovered from the log");
    let row = second
        .read_row(b"logged", &CellFilter::default())
        .unwrap()
        .unwrap();
    assert_eq!(
        row.cells[0].value,
        b("v2"),
        "the latest write is the latest version"
    );
    second.flush().unwrap();
    assert_eq!(second.manifest().timestamp_mark, after);
    drop(second);

    // Moved again (flushed): the mark comes from the manifest.
    let third = env.engine("s3").open_tablet(TabletId(3), schema).unwrap();
    third.apply(put("flushed", "q", -1, "v2")).unwrap();
    assert_eq!(newest_ts(&third, "flushed"), after + 1);
}

#[test]
fn bad_writes_are_refused_with_typed_errors() {
    let env = Env::new();
    let t = env
        .engine("s1")
        .create_tablet(
            TabletId(1),
            b("b"),
            Some(b("m")),
            Schema::with_families(["cf"]),
        )
        .unwrap();
    assert!(matches!(
        t.apply(put("z", "q", 1, "v")),
        Err(EngineError::OutOfRange { .. })
    ));
    let unknown = RowMutation {
        row: b("c"),
        mutations: vec![Mutation::DeleteFromFamily { family: b("nope") }],
    };
    assert!(matches!(
        t.apply(unknown),
        Err(EngineError::UnknownFamily(_))
    ));
    assert!(matches!(
        t.apply(put("", "q", 1, "v")),
        Err(EngineError::Invalid(_))
    ));
    let code = tabula_common::Error::from(t.apply(put("a", "q", 1, "v")).unwrap_err()).code;
    assert!(matches!(code, tabula_common::Code::WrongTablet { .. }));
    assert!(t.read_row(b"a", &CellFilter::default()).is_err());
}

#[test]
fn split_children_share_sstables_and_read_only_their_half() {
    let env = Env::new();
    let engine = env.engine("s1");
    let schema = Schema::with_families(["cf"]);
    let parent = engine
        .create_tablet(TabletId(1), Bytes::new(), None, schema.clone())
        .unwrap();
    for i in 0..400 {
        parent
            .apply(put(&format!("row{i:03}"), "q", 1, &"v".repeat(300)))
            .unwrap();
    }
    let at = parent.middle_row().unwrap().expect("big enough to split");
    let (l, r) = parent.split(at.clone(), TabletId(2), TabletId(3)).unwrap();
    assert!(matches!(
        parent.apply(put("row000", "q", 2, "x")),
        Err(EngineError::Closed)
    ));
    assert_eq!(
        l.sstables, r.sstables,
        "children reference the parent's files"
    );
    drop(parent);
    let left = engine.open_tablet(TabletId(2), schema.clone()).unwrap();
    let right = engine.open_tablet(TabletId(3), schema).unwrap();
    let (lrows, rrows) = (rows(&left), rows(&right));
    assert_eq!(lrows.len() + rrows.len(), 400);
    assert!(lrows.iter().all(|k| k.as_bytes() < &at[..]));
    assert!(rrows.iter().all(|k| k.as_bytes() >= &at[..]));
    // Children compact independently; each keeps only its rows, and the shared files die
    // only when neither child names them.
    right.apply(put("zzz", "q", 1, "new")).unwrap();
    right.major_compact().unwrap();
    left.major_compact().unwrap();
    assert_eq!(rows(&left), lrows);
    assert_eq!(rows(&right).len(), rrows.len() + 1);
    // The parent's manifest stays (it answers a load of the parent with its children) but is
    // not a root: it is never opened again.
    let stats = engine.collect_garbage().unwrap();
    assert!(stats.deleted > 0, "{stats:?}");
    assert_eq!(stats.live, 2);
    assert!(
        engine
            .storage()
            .exists("tablets/0000000000000001/manifest")
            .unwrap()
    );
    assert_eq!(rows(&left), lrows, "live files survived the collection");
}

#[test]
fn gc_policy_applies_at_major_compaction() {
    let env = Env::new();
    let mut schema = Schema::with_families(["cf"]);
    schema.families.insert(b("cf"), GcPolicy::MaxVersions(2));
    let t = env
        .engine("s1")
        .create_tablet(TabletId(1), Bytes::new(), None, schema)
        .unwrap();
    for ts in 1..=5 {
        t.apply(put("r", "q", ts, &ts.to_string())).unwrap();
    }
    t.apply(RowMutation {
        row: b("gone"),
        mutations: vec![Mutation::SetCell {
            family: b("cf"),
            qualifier: b("q"),
            timestamp: 1,
            value: b("x"),
        }],
    })
    .unwrap();
    t.apply(RowMutation {
        row: b("gone"),
        mutations: vec![Mutation::DeleteFromRow],
    })
    .unwrap();
    assert_eq!(
        t.read_row(b"r", &CellFilter::default())
            .unwrap()
            .unwrap()
            .cells
            .len(),
        5,
        "GC is lazy"
    );
    t.major_compact().unwrap();
    let cells = t
        .read_row(b"r", &CellFilter::default())
        .unwrap()
        .unwrap()
        .cells;
    assert_eq!(
        cells.iter().map(|c| c.timestamp).collect::<Vec<_>>(),
        vec![5, 4]
    );
    assert_eq!(rows(&t), vec!["r".to_string()]);
    assert_eq!(t.sstable_count(), 1);
}

#[test]
fn a_new_server_recovers_a_tablet_from_a_dead_servers_log() {
    let env = Env::new();
    let schema = Schema::with_families(["cf"]);
    {
        let dead = env
            .engine("dead")
            .create_tablet(TabletId(9), Bytes::new(), None, schema.clone())
            .unwrap();
        dead.apply(put("a", "q", 1, "flushed")).unwrap();
        dead.flush().unwrap();
        dead.apply(put("b", "q", 1, "only-in-log")).unwrap();
        dead.apply(RowMutation {
            row: b("a"),
            mutations: vec![Mutation::DeleteFromRow],
        })
        .unwrap();
        dead.close(); // crash: the memtable is gone
    }
    let t = env
        .engine("heir")
        .open_tablet(TabletId(9), schema.clone())
        .unwrap();
    assert_eq!(rows(&t), vec!["b".to_string()]);
    let m = t.manifest();
    assert_eq!(
        m.log_dirs,
        vec!["logs/heir".to_string()],
        "recovered entries were flushed"
    );
    assert_eq!(m.redo_seq, m.last_seq);
    drop(t);
    // A second recovery replays nothing old and finds the same data.
    let again = env
        .engine("heir2")
        .open_tablet(TabletId(9), schema)
        .unwrap();
    assert_eq!(rows(&again), vec!["b".to_string()]);
}

#[test]
fn scans_are_a_consistent_snapshot_while_writes_and_flushes_go_on() {
    let env = Env::new();
    let t = env.tablet("s1");
    for i in 0..200 {
        t.apply(put(&format!("k{i:03}"), "q", 1, "before")).unwrap();
    }
    let scan = t
        .scan(ScanOptions {
            range: RowRange {
                start: Bound::Included(b("k050")),
                end: Bound::Unbounded,
            },
            reverse: true,
            ..ScanOptions::default()
        })
        .unwrap();
    for i in 0..200 {
        t.apply(put(&format!("k{i:03}"), "q", 2, "after")).unwrap();
    }
    t.flush().unwrap();
    t.major_compact().unwrap();
    let got: Vec<_> = scan.map(|r| r.unwrap()).collect();
    assert_eq!(got.len(), 150);
    assert_eq!(&got[0].key[..], b"k199");
    assert!(
        got.iter()
            .all(|r| r.cells.len() == 1 && &r.cells[0].value[..] == b"before")
    );
}

#[test]
fn log_segments_go_once_every_tablet_has_flushed_past_them() {
    let env = Env::new();
    let opts = CommitLogOptions {
        segment_bytes: 4 * 1024,
        ..CommitLogOptions::default()
    };
    let log = Arc::new(CommitLog::open(env.storage.clone(), ServerId("s1".into()), opts).unwrap());
    let clock: Arc<dyn Clock> = env.clock.clone();
    let engine = Engine::new(
        env.storage.clone(),
        log.clone(),
        clock,
        EngineOptions::for_tests(),
    );
    let schema = Schema::with_families(["cf"]);
    let a = engine
        .create_tablet(TabletId(1), Bytes::new(), Some(b("m")), schema.clone())
        .unwrap();
    let z = engine
        .create_tablet(TabletId(2), b("m"), None, schema.clone())
        .unwrap();
    for i in 0..60 {
        a.apply(put(&format!("a{i:02}"), "q", 1, &"v".repeat(200)))
            .unwrap();
        z.apply(put(&format!("z{i:02}"), "q", 1, &"v".repeat(200)))
            .unwrap();
    }
    let before = log.segments().len();
    assert!(before > 3, "tiny segments rolled: {before}");
    a.flush().unwrap();
    assert_eq!(
        engine.collect_log_garbage().unwrap(),
        0,
        "tablet 2 still needs every segment"
    );
    z.flush().unwrap();
    let deleted = engine.collect_log_garbage().unwrap();
    assert_eq!(deleted, before - 1, "all but the segment being written");
    a.close();
    z.close();
    let heir = env.engine("s2");
    assert_eq!(
        rows(&heir.open_tablet(TabletId(1), schema.clone()).unwrap()).len(),
        60
    );
    assert_eq!(
        rows(&heir.open_tablet(TabletId(2), schema).unwrap()).len(),
        60
    );
}

#[test]
fn concurrent_writers_flushes_and_compactions_lose_nothing_across_a_crash() {
    let env = Env::new();
    let schema = Schema::with_families(["cf"]);
    let t = Arc::new(
        env.engine("s1")
            .create_tablet(TabletId(1), Bytes::new(), None, schema.clone())
            .unwrap(),
    );
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let t = t.clone();
            std::thread::spawn(move || {
                for i in 0..400 {
                    t.apply(put(&format!("w{w}-{i:04}"), "q", 1, &"v".repeat(100)))
                        .unwrap();
                }
            })
        })
        .collect();
    let compactor = {
        let t = t.clone();
        std::thread::spawn(move || {
            for i in 0..20 {
                if i % 5 == 4 {
                    t.major_compact().unwrap();
                } else {
                    t.flush().unwrap();
                }
            }
        })
    };
    for w in writers {
        w.join().unwrap();
    }
    compactor.join().unwrap();
    Arc::into_inner(t).unwrap().close();
    let heir = env.engine("s2").open_tablet(TabletId(1), schema).unwrap();
    assert_eq!(rows(&heir).len(), 1600);
}

#[test]
fn writers_are_held_back_then_refused_when_flushes_fail_and_resume_after() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Arc::new(FaultyStorage::new(
        LocalDir::open(dir.path()).unwrap(),
        String::new(),
    ));
    storage
        .sstables_broken
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let root: Arc<dyn StorageRoot> = storage.clone();
    let log = CommitLog::open(
        root.clone(),
        ServerId("s1".into()),
        CommitLogOptions::default(),
    )
    .unwrap();
    let opts = EngineOptions {
        max_frozen_memtables: 1,
        write_stall_timeout: std::time::Duration::from_millis(300),
        ..EngineOptions::for_tests()
    };
    let engine = Engine::new(
        root,
        Arc::new(log),
        Arc::new(tabula_common::SystemClock),
        opts,
    );
    let t = engine
        .create_tablet(
            TabletId(1),
            Bytes::new(),
            None,
            Schema::with_families(["cf"]),
        )
        .unwrap();
    let mut written = 0;
    let err = loop {
        match t.apply(put(&format!("r{written:05}"), "q", 1, &"v".repeat(500))) {
            Ok(_) => written += 1,
            Err(e) => break e,
        }
        assert!(written < 10_000, "memory grew without bound");
    };
    assert!(matches!(err, EngineError::Stalled(_)), "{err}");
    let code = tabula_common::Error::from(err).code;
    assert_eq!(code, tabula_common::Code::ResourceExhausted);
    // The disk recovers: the flusher catches up and writes go through again, nothing lost.
    storage
        .sstables_broken
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        match t.apply(put("after", "q", 1, "v")) {
            Ok(_) => break,
            Err(EngineError::Stalled(_)) => assert!(std::time::Instant::now() < deadline),
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(rows(&t).len(), written + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_writes_are_durable_visible_and_finish_even_when_their_caller_goes_away() {
    let env = Env::new();
    let schema = Schema::with_families(["cf"]);
    {
        let t = Arc::new(
            env.engine("dead")
                .create_tablet(TabletId(7), Bytes::new(), None, schema.clone())
                .unwrap(),
        );
        // Dropped as soon as it is made: the write still runs to its end.
        drop(t.apply_async(put("dropped", "q", 1, "v")));
        let mut writers = tokio::task::JoinSet::new();
        for w in 0..16 {
            let t = t.clone();
            writers.spawn(async move {
                for i in 0..50 {
                    t.apply_async(put(&format!("w{w:02}-{i:02}"), "q", 1, "v"))
                        .await
                        .unwrap();
                }
            });
        }
        while let Some(done) = writers.join_next().await {
            done.unwrap();
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !rows(&t).contains(&"dropped".to_string()) {
            assert!(
                std::time::Instant::now() < deadline,
                "the write whose future was dropped never became visible"
            );
            tokio::task::yield_now().await;
        }
        assert_eq!(rows(&t).len(), 16 * 50 + 1);
        // Nothing was left unfinished: a later write becomes visible at once.
        t.apply_async(put("zz-last", "q", 1, "v")).await.unwrap();
        assert_eq!(rows(&t).last().map(String::as_str), Some("zz-last"));
        // Crash: only the commit log keeps the writes.
        Arc::try_unwrap(t)
            .expect("no writer holds the tablet")
            .close();
    }
    let heir = env.engine("heir").open_tablet(TabletId(7), schema).unwrap();
    assert_eq!(
        rows(&heir).len(),
        16 * 50 + 2,
        "every acknowledged write was logged"
    );
}

/// Reads of the newest version stop early in each source (the memtable and SSTables hold a
/// hot column's many versions), yet a tombstone written later still uncovers the version
/// below the one it hides, wherever that version is.
#[test]
fn newest_version_reads_see_through_later_tombstones_across_sources() {
    let env = Env::new();
    let t = env.tablet("s1");
    for ts in 1..=50 {
        t.apply(put("hot", "q", ts, &format!("v{ts}"))).unwrap();
    }
    t.flush().unwrap();
    for ts in 51..=60 {
        t.apply(put("hot", "q", ts, &format!("v{ts}"))).unwrap();
    }
    let latest = CellFilter {
        max_versions: Some(1),
        ..CellFilter::default()
    };
    let newest = |t: &Tablet| {
        let row = t.read_row(b"hot", &latest).unwrap().unwrap();
        assert_eq!(row.cells.len(), 1);
        let scanned: Vec<_> = t
            .scan(ScanOptions {
                filter: latest.clone(),
                ..ScanOptions::default()
            })
            .unwrap()
            .map(|r| r.unwrap().cells)
            .collect();
        assert_eq!(
            scanned,
            vec![row.cells.clone()],
            "a scan reads the same cell"
        );
        row.cells[0].value.clone()
    };
    assert_eq!(newest(&t), b("v60"));
    // Hide 55..=60 (in the memtable): the newest left is 54, still in the memtable.
    let delete = |start: i64, end: i64| RowMutation {
        row: b("hot"),
        mutations: vec![Mutation::DeleteFromColumn {
            family: b("cf"),
            qualifier: b("q"),
            start,
            end,
        }],
    };
    t.apply(delete(55, 61)).unwrap();
    assert_eq!(newest(&t), b("v54"));
    // Hide every version in the memtable: the newest left is 50, in the SSTable.
    t.apply(delete(51, 55)).unwrap();
    assert_eq!(newest(&t), b("v50"));
    // The same with the tombstones flushed too, into an SSTable newer than the cells.
    t.flush().unwrap();
    assert_eq!(newest(&t), b("v50"));
    t.apply(delete(40, 51)).unwrap();
    assert_eq!(newest(&t), b("v39"));
    t.flush().unwrap();
    assert_eq!(newest(&t), b("v39"));
}
