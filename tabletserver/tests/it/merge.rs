//! Merging two adjacent tablets: through the engine (`Engine::merge_tablets`: every row of
//! both readable from the merged tablet, refusals of unflushed, non-adjacent and open tablets
//! and of SSTables that would bring a compacted-away sibling's rows back, retries after a
//! crash at each step) and through `TabletAdmin.MergeTablets` (fencing, refusal while served,
//! a load of a merged-away tablet answering the merged one).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use tabula_common::{Clock, Code, LocalDir, ServerId, StorageRoot, SystemClock, TabletId};
use tabula_proto::tabula::tablet::v1 as pb;
use tabula_proto::tabula::tablet::v1::tablet_admin_server::TabletAdmin;
use tabula_tabletserver::engine::commitlog::{CommitLog, CommitLogOptions};
use tabula_tabletserver::engine::manifest::Manifest;
use tabula_tabletserver::engine::{
    Engine, EngineError, EngineOptions, Mutation, RowMutation, ScanOptions, Schema, Tablet,
};
use tabula_tabletserver::server::{Gate, Registry, TabletAdminService};

struct Env {
    _dir: tempfile::TempDir,
    storage: Arc<dyn StorageRoot>,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let storage: Arc<dyn StorageRoot> = Arc::new(LocalDir::open(dir.path()).unwrap());
        Env { _dir: dir, storage }
    }

    fn engine(&self, server: &str) -> Arc<Engine> {
        let log = CommitLog::open(
            self.storage.clone(),
            ServerId(server.into()),
            CommitLogOptions::default(),
        )
        .unwrap();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        Engine::new(
            self.storage.clone(),
            Arc::new(log),
            clock,
            EngineOptions::for_tests(),
        )
    }

    fn manifest(&self, id: u64) -> Manifest {
        Manifest::load(self.storage.as_ref(), TabletId(id)).unwrap()
    }
}

fn schema() -> Schema {
    Schema::with_families(["cf"])
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn put(row: &str, value: &str) -> RowMutation {
    RowMutation {
        row: b(row),
        mutations: vec![Mutation::SetCell {
            family: b("cf"),
            qualifier: b("q"),
            timestamp: 1_000,
            value: b(value),
        }],
    }
}

fn delete(row: &str) -> RowMutation {
    RowMutation {
        row: b(row),
        mutations: vec![Mutation::DeleteFromRow],
    }
}

fn contents(t: &Tablet) -> BTreeMap<String, String> {
    t.scan(ScanOptions::default())
        .unwrap()
        .map(|r| {
            let r = r.unwrap();
            (
                String::from_utf8(r.key.to_vec()).unwrap(),
                String::from_utf8(r.cells[0].value.to_vec()).unwrap(),
            )
        })
        .collect()
}

/// Rows `row000..row{n}` with values naming them.
fn data(n: usize) -> BTreeMap<String, String> {
    (0..n)
        .map(|i| (format!("row{i:03}"), format!("v{i}-{}", "x".repeat(100))))
        .collect()
}

/// Tablets 1 = `["", "row100")` and 2 = `["row100", ∞)` holding `data(200)` (flushed,
/// several SSTables each), closed.
fn two_flushed_tablets(engine: &Arc<Engine>) -> BTreeMap<String, String> {
    let rows = data(200);
    let left = engine
        .create_tablet(TabletId(1), Bytes::new(), Some(b("row100")), schema())
        .unwrap();
    let right = engine
        .create_tablet(TabletId(2), b("row100"), None, schema())
        .unwrap();
    for (i, (row, value)) in rows.iter().enumerate() {
        let t = if left.contains(row.as_bytes()) {
            &left
        } else {
            &right
        };
        t.apply(put(row, value)).unwrap();
        if i % 50 == 49 {
            t.flush().unwrap();
        }
    }
    left.flush().unwrap();
    right.flush().unwrap();
    rows
}

#[test]
fn merging_two_flushed_tablets_serves_every_row_of_both() {
    let env = Env::new();
    let engine = env.engine("s1");
    let rows = two_flushed_tablets(&engine);
    let (l, r) = (env.manifest(1), env.manifest(2));
    let m = engine
        .merge_tablets(TabletId(1), TabletId(2), TabletId(3))
        .unwrap();
    assert_eq!(
        (m.start_row.clone(), m.end_row.clone()),
        (Bytes::new(), None)
    );
    assert_eq!(m.sstables.len(), l.sstables.len() + r.sstables.len());
    assert_eq!(m.redo_seq, l.last_seq.max(r.last_seq));
    assert_eq!(m.redo_seq, m.last_seq);
    assert_eq!(env.manifest(1).split_into, vec![TabletId(3)]);
    assert_eq!(env.manifest(2).split_into, vec![TabletId(3)]);

    let merged = engine.open_tablet(TabletId(3), schema()).unwrap();
    assert_eq!(contents(&merged), rows);
    // Writes go on across the old boundary, and survive a crash and a compaction.
    merged.apply(put("row050", "new-left")).unwrap();
    merged.apply(put("row150", "new-right")).unwrap();
    merged.apply(delete("row100")).unwrap();
    merged.close();
    let again = env.engine("s2").open_tablet(TabletId(3), schema()).unwrap();
    again.major_compact().unwrap();
    let mut expected = rows;
    expected.insert("row050".into(), "new-left".into());
    expected.insert("row150".into(), "new-right".into());
    expected.remove("row100");
    assert_eq!(contents(&again), expected);

    // The merged-away tablets are never opened again: they name the merged one.
    for id in [1, 2] {
        match engine.open_tablet(TabletId(id), schema()) {
            Err(EngineError::WasSplit { children, .. }) => {
                assert_eq!(children, vec![TabletId(3)])
            }
            other => panic!("opened a merged-away tablet: {other:?}"),
        }
    }
}

#[test]
fn merging_split_children_that_still_share_their_parents_files_works() {
    let env = Env::new();
    let engine = env.engine("s1");
    let rows = data(300);
    let parent = engine
        .create_tablet(TabletId(1), Bytes::new(), None, schema())
        .unwrap();
    for (row, value) in &rows {
        parent.apply(put(row, value)).unwrap();
    }
    parent.split(b("row150"), TabletId(2), TabletId(3)).unwrap();
    drop(parent);
    // The left child gets a file of its own (a flush), the shared files stay in both.
    let left = engine.open_tablet(TabletId(2), schema()).unwrap();
    left.apply(put("row000", "changed")).unwrap();
    left.flush().unwrap();
    drop(left);
    let m = engine
        .merge_tablets(TabletId(2), TabletId(3), TabletId(4))
        .unwrap();
    let shared = env.manifest(3).sstables;
    assert!(shared.iter().all(|f| m.sstables.contains(f)));
    assert_eq!(
        m.sstables.len(),
        shared.len() + 1,
        "shared files are named once"
    );
    let merged = engine.open_tablet(TabletId(4), schema()).unwrap();
    let mut expected = rows;
    expected.insert("row000".into(), "changed".into());
    assert_eq!(contents(&merged), expected);
}

#[test]
fn a_shared_file_one_sibling_compacted_away_is_refused_until_both_compacted() {
    let env = Env::new();
    let engine = env.engine("s1");
    let rows = data(300);
    let parent = engine
        .create_tablet(TabletId(1), Bytes::new(), None, schema())
        .unwrap();
    for (row, value) in &rows {
        parent.apply(put(row, value)).unwrap();
    }
    parent.split(b("row150"), TabletId(2), TabletId(3)).unwrap();
    drop(parent);
    // The left child deletes a row and major-compacts: the cells and the tombstone are gone
    // from its files, but the right child's shared files still hold the old row.
    let left = engine.open_tablet(TabletId(2), schema()).unwrap();
    left.apply(delete("row010")).unwrap();
    left.major_compact().unwrap();
    drop(left);
    let e = engine
        .merge_tablets(TabletId(2), TabletId(3), TabletId(4))
        .unwrap_err();
    assert!(matches!(e, EngineError::MergeRefused(_)), "{e}");
    assert_eq!(tabula_common::Error::from(e).code, Code::FailedPrecondition);
    assert!(
        !env.storage.exists(&Manifest::path(TabletId(4))).unwrap(),
        "nothing stored"
    );
    assert!(env.manifest(2).split_into.is_empty());
    // Once the right child compacted too, no file holds a row of the other's range.
    let right = engine.open_tablet(TabletId(3), schema()).unwrap();
    right.major_compact().unwrap();
    drop(right);
    engine
        .merge_tablets(TabletId(2), TabletId(3), TabletId(4))
        .unwrap();
    let merged = engine.open_tablet(TabletId(4), schema()).unwrap();
    let mut expected = rows;
    expected.remove("row010");
    assert_eq!(contents(&merged), expected, "the deleted row stays deleted");
}

#[test]
fn unflushed_open_and_non_adjacent_tablets_are_refused() {
    let env = Env::new();
    let engine = env.engine("s1");
    let a = engine
        .create_tablet(TabletId(1), Bytes::new(), Some(b("m")), schema())
        .unwrap();
    let c = engine
        .create_tablet(TabletId(2), b("m"), Some(b("t")), schema())
        .unwrap();
    let far = engine
        .create_tablet(TabletId(5), b("x"), None, schema())
        .unwrap();
    a.apply(put("a", "1")).unwrap();
    c.apply(put("n", "2")).unwrap();
    c.flush().unwrap();
    drop(far);
    drop(c);
    // Open in this engine.
    let refused = |l: u64, r: u64| {
        let e = engine
            .merge_tablets(TabletId(l), TabletId(r), TabletId(9))
            .unwrap_err();
        assert!(matches!(e, EngineError::MergeRefused(_)), "{e}");
        assert!(!env.storage.exists(&Manifest::path(TabletId(9))).unwrap());
        e.to_string()
    };
    assert!(refused(1, 2).contains("open here"));
    // A crash with the write only in the commit log.
    a.close();
    assert!(refused(1, 2).contains("commit-log records"));
    // Recovered (which flushes), it merges — but not with a tablet it does not touch.
    drop(engine.open_tablet(TabletId(1), schema()).unwrap());
    assert!(refused(2, 5).contains("not adjacent"));
    assert!(refused(2, 1).contains("not adjacent"));
    // A manifest whose redo point is behind its last sequence number.
    let mut m = env.manifest(2);
    let live = m.clone();
    m.redo_seq = m.last_seq - 1;
    m.store(env.storage.as_ref()).unwrap();
    assert!(refused(1, 2).contains("not fully flushed"));
    live.store(env.storage.as_ref()).unwrap();
    engine
        .merge_tablets(TabletId(1), TabletId(2), TabletId(9))
        .unwrap();
    let merged = engine.open_tablet(TabletId(9), schema()).unwrap();
    assert_eq!(contents(&merged).len(), 2);
}

#[test]
fn a_retry_finishes_the_merge_wherever_the_first_attempt_stopped() {
    let env = Env::new();
    let engine = env.engine("s1");
    let rows = two_flushed_tablets(&engine);
    let (l, r) = (env.manifest(1), env.manifest(2));
    let first = engine
        .merge_tablets(TabletId(1), TabletId(2), TabletId(3))
        .unwrap();
    // The same call again answers the same merged manifest.
    let retried = engine
        .merge_tablets(TabletId(1), TabletId(2), TabletId(3))
        .unwrap();
    assert_eq!(first, retried);
    // A crash after the merged manifest only: both are live again.
    l.store(env.storage.as_ref()).unwrap();
    r.store(env.storage.as_ref()).unwrap();
    assert_eq!(
        engine
            .merge_tablets(TabletId(1), TabletId(2), TabletId(3))
            .unwrap(),
        first
    );
    // A crash after the commit point (the left marked, the right not).
    r.store(env.storage.as_ref()).unwrap();
    engine
        .merge_tablets(TabletId(1), TabletId(2), TabletId(3))
        .unwrap();
    assert_eq!(env.manifest(2).split_into, vec![TabletId(3)]);
    // A different tablet under the merged id is not overwritten.
    l.store(env.storage.as_ref()).unwrap();
    r.store(env.storage.as_ref()).unwrap();
    let e = engine
        .merge_tablets(TabletId(1), TabletId(2), TabletId(2))
        .unwrap_err();
    assert!(matches!(e, EngineError::MergeRefused(_)));
    let mut other = first.clone();
    other.sstables.clear();
    other.store(env.storage.as_ref()).unwrap();
    let e = engine
        .merge_tablets(TabletId(1), TabletId(2), TabletId(3))
        .unwrap_err();
    assert!(e.to_string().contains("exists already"), "{e}");
    first.store(env.storage.as_ref()).unwrap();
    engine
        .merge_tablets(TabletId(1), TabletId(2), TabletId(3))
        .unwrap();
    let merged = engine.open_tablet(TabletId(3), schema()).unwrap();
    assert_eq!(contents(&merged), rows);
}

// ---------------------------------------------------------------------------------------------
// TabletAdmin.MergeTablets

const TABLE: u64 = 2;

fn admin(env: &Env, server: &str) -> (TabletAdminService, Arc<Registry>) {
    let registry = Arc::new(Registry::new());
    let admin = TabletAdminService::new(
        env.engine(server),
        registry.clone(),
        Arc::new(Gate::always_open()),
    );
    (admin, registry)
}

fn descriptor(id: u64, start: &str, end: Option<&str>, epoch: u64) -> pb::TabletDescriptor {
    pb::TabletDescriptor {
        table_id: TABLE,
        tablet_id: id,
        start_row: start.as_bytes().to_vec(),
        end_row: end.map(|e| e.as_bytes().to_vec()),
        tablet_epoch: epoch,
    }
}

fn load(desc: pb::TabletDescriptor, create: bool) -> pb::LoadTabletRequest {
    pb::LoadTabletRequest {
        master_epoch: Some(pb::MasterEpoch { epoch: 5 }),
        tablet: Some(desc),
        schema: Some(pb::Schema {
            families: vec![pb::ColumnFamily {
                name: "cf".into(),
                gc_rule: None,
                ..Default::default()
            }],
            ..Default::default()
        }),
        create,
    }
}

fn merge_request(master_epoch: u64) -> pb::MergeTabletsRequest {
    pb::MergeTabletsRequest {
        master_epoch: Some(pb::MasterEpoch {
            epoch: master_epoch,
        }),
        table_id: TABLE,
        left_tablet_id: 1,
        right_tablet_id: 2,
        merged_tablet_id: 3,
        merged_epoch: 4,
    }
}

#[tokio::test]
async fn merge_tablets_rpc_is_fenced_refused_while_served_and_loads_answer_the_merged() {
    let env = Env::new();
    let (s, registry) = admin(&env, "ts-a");
    s.load(load(descriptor(1, "", Some("m"), 1), true))
        .await
        .unwrap();
    s.load(load(descriptor(2, "m", None, 1), true))
        .await
        .unwrap();
    for (row, value) in [("a", "left"), ("z", "right")] {
        let served = registry
            .route_row(
                &tabula_tabletserver::server::Route {
                    table: tabula_common::TableId(TABLE),
                    tablet: None,
                    epoch: None,
                },
                row.as_bytes(),
            )
            .unwrap();
        served.tablet.apply(put(row, value)).unwrap();
    }
    let call = |req| TabletAdmin::merge_tablets(&s, tonic::Request::new(req));
    let code = |status: tonic::Status| tabula_common::Error::from(status).code;
    // Served here: unload first.
    let e = call(merge_request(5)).await.unwrap_err();
    assert_eq!(code(e), Code::FailedPrecondition);
    for id in [1, 2] {
        s.unload(pb::UnloadTabletRequest {
            master_epoch: Some(pb::MasterEpoch { epoch: 5 }),
            tablet_id: id,
            tablet_epoch: 1,
        })
        .await
        .unwrap();
    }
    // A deposed master's command is refused; no epoch at all is invalid.
    let e = call(merge_request(4)).await.unwrap_err();
    assert_ne!(code(e), Code::Internal);
    assert!(!env.storage.exists(&Manifest::path(TabletId(3))).unwrap());
    let mut no_epoch = merge_request(5);
    no_epoch.master_epoch = None;
    assert_eq!(
        code(call(no_epoch).await.unwrap_err()),
        Code::InvalidArgument
    );

    let answer = call(merge_request(5)).await.unwrap().into_inner();
    assert_eq!(answer.merged, Some(descriptor(3, "", None, 4)));
    // Retried (the answer was lost): the same answer.
    let again = call(merge_request(5)).await.unwrap().into_inner();
    assert_eq!(again, answer);

    // Another server asked to load a merged-away tablet answers the merged one.
    let (other, other_registry) = admin(&env, "ts-b");
    for old in [descriptor(1, "", Some("m"), 4), descriptor(2, "m", None, 4)] {
        let reply = other.load_or_children(load(old, false)).await.unwrap();
        assert_eq!(reply.status, None);
        assert_eq!(reply.split_into, vec![descriptor(3, "", None, 4)]);
    }
    assert!(other_registry.is_empty());
    other
        .load(load(descriptor(3, "", None, 4), false))
        .await
        .unwrap();
    let merged = other_registry.get(TabletId(3)).unwrap();
    let got = contents(&merged.tablet);
    let want: BTreeMap<String, String> = [("a", "left"), ("z", "right")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    assert_eq!(got, want);
}
