//! The tablet lifecycle the master drives (`TabletAdminService`), in process and without a
//! lock service (`Gate::always_open`): creating and loading tablets, master and tablet epochs,
//! idempotent loads, unloading with a final flush so the next owner replays nothing, splits at
//! a row and at the middle (with writers running through the split), schema updates, and the
//! list the master reads on startup.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::faulty_storage::FaultyStorage;
use bytes::Bytes;
use tabula_common::{
    Clock, Code, Epoch, LocalDir, ServerId, StorageRoot, SystemClock, TableId, TabletId,
};
use tabula_proto::tabula::tablet::v1 as pb;
use tabula_tabletserver::engine::commitlog::{CommitLog, CommitLogOptions};
use tabula_tabletserver::engine::manifest::Manifest;
use tabula_tabletserver::engine::{
    CellFilter, Engine, EngineError, EngineOptions, Mutation, RowMutation, ScanOptions,
};
use tabula_tabletserver::server::{Gate, Registry, Route, ServedTablet, TabletAdminService};

const TABLE: u64 = 2;

struct Env {
    _dir: tempfile::TempDir,
    storage: Arc<dyn StorageRoot>,
}

/// One tablet server without a lock service: an engine, a registry and the admin service.
struct Server {
    engine: Arc<Engine>,
    registry: Arc<Registry>,
    admin: TabletAdminService,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let storage: Arc<dyn StorageRoot> = Arc::new(LocalDir::open(dir.path()).unwrap());
        Env { _dir: dir, storage }
    }

    fn server(&self, id: &str) -> Server {
        server_on(self.storage.clone(), id)
    }
}

/// A tablet server over `storage`.
fn server_on(storage: Arc<dyn StorageRoot>, id: &str) -> Server {
    let log = CommitLog::open(
        storage.clone(),
        ServerId(id.into()),
        CommitLogOptions::default(),
    )
    .unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let engine = Engine::new(
        storage.clone(),
        Arc::new(log),
        clock,
        EngineOptions::for_tests(),
    );
    let registry = Arc::new(Registry::new());
    let admin = TabletAdminService::new(
        engine.clone(),
        registry.clone(),
        Arc::new(Gate::always_open()),
    );
    Server {
        engine,
        registry,
        admin,
    }
}

fn master(epoch: u64) -> Option<pb::MasterEpoch> {
    Some(pb::MasterEpoch { epoch })
}

fn schema(families: &[&str]) -> pb::Schema {
    pb::Schema {
        families: families
            .iter()
            .map(|f| pb::ColumnFamily {
                name: (*f).to_owned(),
                gc_rule: None,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
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

fn load(desc: pb::TabletDescriptor, create: bool, master_epoch: u64) -> pb::LoadTabletRequest {
    pb::LoadTabletRequest {
        master_epoch: master(master_epoch),
        tablet: Some(desc),
        schema: Some(schema(&["cf"])),
        create,
    }
}

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

fn route() -> Route {
    Route {
        table: TableId(TABLE),
        tablet: None,
        epoch: None,
    }
}

impl Server {
    /// Writes `row` through the registry, as the data service routes it.
    fn write(&self, row: &str, value: &str) -> Result<(), tabula_common::Error> {
        let served = self.registry.route_row(&route(), row.as_bytes())?;
        served.tablet.apply(put(row, value))?;
        Ok(())
    }

    /// Every row of the table served here, with its value, read through the registry.
    fn read_all(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for served in self.registry.list() {
            for row in served.tablet.scan(ScanOptions::default()).unwrap() {
                let row = row.unwrap();
                let value = row.cells[0].value.clone();
                out.insert(
                    String::from_utf8(row.key.to_vec()).unwrap(),
                    String::from_utf8(value.to_vec()).unwrap(),
                );
            }
        }
        out
    }
}

fn rows(n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| {
            (
                format!("row{i:05}"),
                format!("value-{i}-{}", "x".repeat(200)),
            )
        })
        .collect()
}

#[tokio::test]
async fn load_creates_and_loading_again_at_the_same_epoch_answers_its_status() {
    let env = Env::new();
    let s = env.server("ts-a");
    let first = s
        .admin
        .load(load(descriptor(7, "", None, 1), true, 1))
        .await
        .unwrap();
    assert_eq!(first.tablet, Some(descriptor(7, "", None, 1)));
    s.write("a", "1").unwrap();
    let again = s
        .admin
        .load(load(descriptor(7, "", None, 1), true, 1))
        .await
        .unwrap();
    assert_eq!(again.tablet, first.tablet);
    assert_eq!(s.registry.len(), 1);
    // The retried create did not wipe the tablet.
    assert_eq!(s.read_all()["a"], "1");
    // The same id as another range is refused.
    let e = s
        .admin
        .load(load(descriptor(7, "", Some("m"), 1), true, 1))
        .await
        .unwrap_err();
    assert_eq!(e.code, Code::FailedPrecondition, "{e}");
}

#[tokio::test]
async fn commands_need_a_master_epoch_no_older_than_the_newest_seen() {
    let env = Env::new();
    let s = env.server("ts-a");
    let mut no_epoch = load(descriptor(7, "", None, 1), true, 1);
    no_epoch.master_epoch = None;
    let e = s.admin.load(no_epoch).await.unwrap_err();
    assert_eq!(e.code, Code::InvalidArgument, "{e}");
    s.admin
        .load(load(descriptor(7, "", None, 1), true, 5))
        .await
        .unwrap();
    let stale = s
        .admin
        .unload(pb::UnloadTabletRequest {
            master_epoch: master(4),
            tablet_id: 7,
            tablet_epoch: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code, Code::FailedPrecondition, "{stale}");
    let stale = s
        .admin
        .update_schema(pb::UpdateSchemaRequest {
            master_epoch: master(3),
            table_id: TABLE,
            schema: Some(schema(&["cf"])),
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code, Code::FailedPrecondition, "{stale}");
    assert_eq!(s.registry.len(), 1, "the stale unload changed nothing");
    assert_eq!(s.admin.list().master_epoch, 5);

    // A listing carrying a master epoch fences older masters, and is itself fenced.
    use tabula_proto::tabula::tablet::v1::tablet_admin_server::TabletAdmin;
    let listed = |epoch: Option<u64>| {
        TabletAdmin::list_tablets(
            &s.admin,
            tonic::Request::new(pb::ListTabletsRequest {
                master_epoch: epoch.and_then(master),
            }),
        )
    };
    assert_eq!(listed(None).await.unwrap().into_inner().master_epoch, 5);
    assert_eq!(listed(Some(8)).await.unwrap().into_inner().master_epoch, 8);
    let stale = listed(Some(7)).await.unwrap_err();
    assert_eq!(stale.code(), tonic::Code::FailedPrecondition, "{stale:?}");
    let e = s
        .admin
        .unload(pb::UnloadTabletRequest {
            master_epoch: master(7),
            tablet_id: 7,
            tablet_epoch: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code, Code::FailedPrecondition, "{e}");
}

#[tokio::test]
async fn older_tablet_epochs_are_refused_and_newer_ones_take_over() {
    let env = Env::new();
    let s = env.server("ts-a");
    s.admin
        .load(load(descriptor(7, "", None, 2), true, 1))
        .await
        .unwrap();
    s.write("a", "1").unwrap();
    let e = s
        .admin
        .load(load(descriptor(7, "", None, 1), false, 1))
        .await
        .unwrap_err();
    assert_eq!(e.code, Code::FailedPrecondition, "{e}");
    let status = s
        .admin
        .load(load(descriptor(7, "", None, 3), false, 1))
        .await
        .unwrap();
    assert_eq!(status.tablet.unwrap().tablet_epoch, 3);
    let served = s.registry.get(TabletId(7)).unwrap();
    assert_eq!(served.epoch, Epoch(3));
    drop(served);
    assert_eq!(s.read_all()["a"], "1");
    // Requests naming the old epoch are now told the tablet moved on.
    let old = Route {
        epoch: Some(Epoch(2)),
        ..route()
    };
    let e = s.registry.route_row(&old, b"a").unwrap_err();
    assert!(matches!(e.code, Code::WrongTablet { .. }), "{e}");
    // Unloading at a stale epoch is refused.
    let e = s
        .admin
        .unload(pb::UnloadTabletRequest {
            master_epoch: master(1),
            tablet_id: 7,
            tablet_epoch: 2,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code, Code::FailedPrecondition, "{e}");
}

#[tokio::test]
async fn loading_needs_a_manifest_with_the_same_rows() {
    let env = Env::new();
    let a = env.server("ts-a");
    let e = a
        .admin
        .load(load(descriptor(9, "", None, 1), false, 1))
        .await
        .unwrap_err();
    assert_eq!(e.code, Code::NotFound, "{e}");
    a.admin
        .load(load(descriptor(9, "a", Some("m"), 1), true, 1))
        .await
        .unwrap();
    a.admin
        .unload(pb::UnloadTabletRequest {
            master_epoch: master(1),
            tablet_id: 9,
            tablet_epoch: 1,
        })
        .await
        .unwrap();
    let b = env.server("ts-b");
    let e = b
        .admin
        .load(load(descriptor(9, "a", Some("z"), 2), false, 1))
        .await
        .unwrap_err();
    assert_eq!(e.code, Code::FailedPrecondition, "{e}");
    assert!(e.message.contains("manifest"), "{e}");
    b.admin
        .load(load(descriptor(9, "a", Some("m"), 2), false, 1))
        .await
        .unwrap();
    let e = b
        .admin
        .load(load(descriptor(10, "z", Some("a"), 1), true, 1))
        .await
        .unwrap_err();
    assert_eq!(e.code, Code::InvalidArgument, "{e}");
}

#[tokio::test]
async fn unload_flushes_so_the_next_owner_replays_nothing() {
    let env = Env::new();
    let a = env.server("ts-a");
    a.admin
        .load(load(descriptor(7, "", None, 1), true, 1))
        .await
        .unwrap();
    let data = rows(600);
    for (row, value) in &data {
        a.write(row, value).unwrap();
    }
    let before = a.registry.get(TabletId(7)).unwrap().tablet.manifest();
    assert!(
        before.sstables.len() > 1,
        "the test memtable flushed on its own"
    );
    assert!(before.redo_seq < before.last_seq || before.redo_seq < 600);
    a.admin
        .unload(pb::UnloadTabletRequest {
            master_epoch: master(1),
            tablet_id: 7,
            tablet_epoch: 1,
        })
        .await
        .unwrap();
    assert!(a.registry.is_empty());
    let after = Manifest::load(env.storage.as_ref(), TabletId(7)).unwrap();
    assert_eq!(after.redo_seq, after.last_seq, "nothing left to replay");
    assert_eq!(after.last_seq, 600, "one sequence number per cell written");
    // Unloading again is a no-op (a retry whose first answer was lost).
    a.admin
        .unload(pb::UnloadTabletRequest {
            master_epoch: master(1),
            tablet_id: 7,
            tablet_epoch: 1,
        })
        .await
        .unwrap();

    let b = env.server("ts-b");
    b.admin
        .load(load(descriptor(7, "", None, 2), false, 1))
        .await
        .unwrap();
    let expected: BTreeMap<String, String> = data.into_iter().collect();
    assert_eq!(b.read_all(), expected);
    let m = b.registry.get(TabletId(7)).unwrap().tablet.manifest();
    assert_eq!(m.log_dirs, vec![b.engine.commit_log().server_dir()]);
    assert_eq!(m.redo_seq, m.last_seq);
}

#[tokio::test]
async fn a_dead_servers_unflushed_writes_are_replayed_by_the_next_owner() {
    let env = Env::new();
    let a = env.server("ts-a");
    a.admin
        .load(load(descriptor(7, "", None, 1), true, 1))
        .await
        .unwrap();
    let data = rows(300);
    for (row, value) in &data {
        a.write(row, value).unwrap();
    }
    // A dies: no unload, no flush.
    drop(a);
    let b = env.server("ts-b");
    b.admin
        .load(load(descriptor(7, "", None, 2), false, 2))
        .await
        .unwrap();
    let expected: BTreeMap<String, String> = data.into_iter().collect();
    assert_eq!(b.read_all(), expected);
}

fn split(
    parent: u64,
    at: Option<&str>,
    left: u64,
    right: u64,
    epoch: u64,
) -> pb::SplitTabletRequest {
    pb::SplitTabletRequest {
        master_epoch: master(1),
        tablet_id: parent,
        tablet_epoch: epoch,
        split_row: at.map(|r| r.as_bytes().to_vec()),
        left_tablet_id: left,
        right_tablet_id: right,
        child_epoch: epoch + 1,
    }
}

#[tokio::test]
async fn split_at_a_row_and_at_the_middle_serves_the_children() {
    let env = Env::new();
    let s = env.server("ts-a");
    s.admin
        .load(load(descriptor(7, "", None, 1), true, 1))
        .await
        .unwrap();
    let data = rows(800);
    for (row, value) in &data {
        s.write(row, value).unwrap();
    }
    let (left, right) = s
        .admin
        .split(split(7, Some("row00300"), 8, 9, 1))
        .await
        .unwrap();
    assert_eq!(left.tablet, Some(descriptor(8, "", Some("row00300"), 2)));
    assert_eq!(right.tablet, Some(descriptor(9, "row00300", None, 2)));
    assert!(s.registry.get(TabletId(7)).is_none(), "the parent is gone");
    assert_eq!(s.registry.len(), 2);
    let expected: BTreeMap<String, String> = data.iter().cloned().collect();
    assert_eq!(
        s.read_all(),
        expected,
        "every row readable from the children"
    );
    // Each child holds only its own rows.
    let l = s.registry.get(TabletId(8)).unwrap();
    let left_rows = l.tablet.scan(ScanOptions::default()).unwrap().count();
    assert_eq!(left_rows, 300);
    drop(l);
    // Writes go to the child that holds the row.
    s.write("row00100", "left").unwrap();
    s.write("row00700", "right").unwrap();
    let r = s.registry.route_row(&route(), b"row00700").unwrap();
    assert_eq!(r.id(), TabletId(9));
    let cell = r
        .tablet
        .read_row(b"row00700", &CellFilter::default())
        .unwrap()
        .unwrap();
    assert_eq!(&cell.cells[0].value[..], b"right");
    drop(r);
    // A retried split answers the children.
    let (l2, r2) = s
        .admin
        .split(split(7, Some("row00300"), 8, 9, 1))
        .await
        .unwrap();
    assert_eq!(l2.tablet, left.tablet);
    assert_eq!(r2.tablet, right.tablet);

    // The right child at its middle row.
    s.registry.get(TabletId(9)).unwrap().tablet.flush().unwrap();
    let (ml, mr) = s.admin.split(split(9, None, 10, 11, 2)).await.unwrap();
    let middle = ml.tablet.as_ref().unwrap().end_row.clone().unwrap();
    assert_eq!(mr.tablet.as_ref().unwrap().start_row, middle);
    assert!(
        middle > b"row00300".to_vec() && middle < b"row00799".to_vec(),
        "middle {:?}",
        String::from_utf8_lossy(&middle)
    );
    let mut expected = expected;
    expected.insert("row00100".into(), "left".into());
    expected.insert("row00700".into(), "right".into());
    assert_eq!(s.read_all(), expected);
    assert_eq!(s.registry.len(), 3);
}

#[tokio::test]
async fn a_split_parent_is_never_loaded_again_and_names_its_children() {
    let env = Env::new();
    let s = env.server("ts-a");
    s.admin
        .load(load(descriptor(7, "", None, 1), true, 1))
        .await
        .unwrap();
    let data = rows(400);
    for (row, value) in &data {
        s.write(row, value).unwrap();
    }
    s.admin
        .split(split(7, Some("row00200"), 8, 9, 1))
        .await
        .unwrap();
    let served = s.admin.list();
    let parents: Vec<u64> = served.tablets.iter().map(|t| t.split_parent).collect();
    assert_eq!(parents, vec![7, 7], "children name their parent");
    drop(s);

    // Another server (the splitter died) is asked for the parent: it answers the children
    // and serves nothing; each child then loads with every row.
    let other = env.server("ts-b");
    let answer = other
        .admin
        .load_or_children(load(descriptor(7, "", None, 3), false, 2))
        .await
        .unwrap();
    assert_eq!(answer.status, None);
    assert_eq!(
        answer.split_into,
        vec![
            descriptor(8, "", Some("row00200"), 3),
            descriptor(9, "row00200", None, 3)
        ]
    );
    assert_eq!(other.registry.len(), 0);
    let e = other
        .admin
        .load(load(descriptor(7, "", None, 3), false, 2))
        .await
        .unwrap_err();
    assert_eq!(e.code, Code::FailedPrecondition);
    for child in answer.split_into {
        other.admin.load(load(child, false, 2)).await.unwrap();
    }
    let expected: BTreeMap<String, String> = data.iter().cloned().collect();
    assert_eq!(other.read_all(), expected);
}

/// The split's switch in the registry: the children replace the parent in one step, and a
/// replacement that would overlap another served tablet changes nothing.
#[tokio::test]
async fn the_registry_replaces_a_parent_with_its_children_at_once_or_not_at_all() {
    let env = Env::new();
    let s = env.server("ts-a");
    let served = |id: u64, start: &str, end: Option<&str>| {
        let tablet = s
            .engine
            .create_tablet(
                TabletId(id),
                Bytes::copy_from_slice(start.as_bytes()),
                end.map(|e| Bytes::copy_from_slice(e.as_bytes())),
                tabula_tabletserver::engine::Schema::with_families(["cf"]),
            )
            .unwrap();
        Arc::new(ServedTablet::new(TableId(TABLE), Epoch(1), tablet))
    };
    s.registry.insert(served(1, "", Some("m"))).unwrap();
    s.registry.insert(served(2, "m", None)).unwrap();
    let ids = |r: &Registry| r.list().iter().map(|t| t.id().0).collect::<Vec<_>>();

    // A child reaching into tablet 2's range: refused, tablet 1 still served.
    let bad = [served(3, "", Some("f")), served(4, "f", Some("q"))];
    let e = s.registry.replace(TabletId(1), &bad).unwrap_err();
    assert_eq!(e.code, Code::FailedPrecondition, "{e:?}");
    assert_eq!(ids(&s.registry), vec![1, 2]);
    drop(bad);

    let good = [served(5, "", Some("f")), served(6, "f", Some("m"))];
    s.registry.replace(TabletId(1), &good).unwrap();
    assert_eq!(ids(&s.registry), vec![5, 6, 2]);
    assert_eq!(
        s.registry.route_row(&route(), b"g").unwrap().id(),
        TabletId(6)
    );
}

/// A split past its commit point (the parent's manifest names the children) cannot be undone:
/// a child that fails to open is tried again, and if it keeps failing the parent's rows are
/// still one `LoadTablet` away, never lost.
#[tokio::test]
async fn a_committed_split_whose_children_fail_to_open_serves_them_later() {
    for (failures, split_ok) in [(2, true), (10, false)] {
        let dir = tempfile::tempdir().unwrap();
        let storage = Arc::new(FaultyStorage::new(
            LocalDir::open(dir.path()).unwrap(),
            Manifest::path(TabletId(8)),
        ));
        let s = server_on(storage.clone(), "ts-a");
        s.admin
            .load(load(descriptor(7, "", None, 1), true, 1))
            .await
            .unwrap();
        let data = rows(300);
        for (row, value) in &data {
            s.write(row, value).unwrap();
        }
        storage.read_failures_left.store(failures, Ordering::SeqCst);
        let answer = s.admin.split(split(7, Some("row00100"), 8, 9, 1)).await;
        let expected: BTreeMap<String, String> = data.iter().cloned().collect();
        assert!(
            s.registry.get(TabletId(7)).is_none(),
            "the parent is never served again"
        );
        if split_ok {
            let (left, right) = answer.unwrap();
            assert_eq!(left.tablet, Some(descriptor(8, "", Some("row00100"), 2)));
            assert_eq!(right.tablet, Some(descriptor(9, "row00100", None, 2)));
            assert_eq!(storage.read_failures_left.load(Ordering::SeqCst), 0);
            assert_eq!(s.read_all(), expected);
            continue;
        }
        let e = answer.unwrap_err();
        assert!(e.message.contains("injected"), "{e:?}");
        assert_eq!(s.registry.len(), 0);
        // The master's recovery: loading the parent answers its children, which then load.
        storage.read_failures_left.store(0, Ordering::SeqCst);
        let answer = s
            .admin
            .load_or_children(load(descriptor(7, "", None, 1), false, 1))
            .await
            .unwrap();
        assert_eq!(answer.split_into.len(), 2);
        for child in answer.split_into {
            s.admin.load(load(child, false, 1)).await.unwrap();
        }
        assert_eq!(s.read_all(), expected);
    }
}

#[tokio::test]
async fn a_tablet_too_small_to_split_is_refused_and_keeps_serving() {
    let env = Env::new();
    let s = env.server("ts-a");
    s.admin
        .load(load(descriptor(7, "", None, 1), true, 1))
        .await
        .unwrap();
    s.write("a", "1").unwrap();
    let e = s.admin.split(split(7, None, 8, 9, 1)).await.unwrap_err();
    assert_eq!(e.code, Code::FailedPrecondition, "{e}");
    assert!(e.message.contains("too small"), "{e}");
    let e = s
        .admin
        .split(split(7, Some(""), 8, 9, 1))
        .await
        .unwrap_err();
    assert_eq!(e.code, Code::InvalidArgument, "{e}");
    let e = s
        .admin
        .split(split(7, Some("b"), 8, 8, 1))
        .await
        .unwrap_err();
    assert_eq!(e.code, Code::InvalidArgument, "{e}");
    let e = s
        .admin
        .split(split(7, Some("b"), 8, 9, 4))
        .await
        .unwrap_err();
    assert_eq!(e.code, Code::FailedPrecondition, "{e}");
    s.write("b", "2").unwrap();
    assert_eq!(s.read_all().len(), 2);
}

/// Waits until `acks` reaches `at_least`, failing the test after 30 s.
async fn wait_for_acks(acks: &AtomicU64, at_least: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while acks.load(Ordering::Relaxed) < at_least {
        assert!(
            Instant::now() < deadline,
            "only {} writes acknowledged, waiting for {at_least}",
            acks.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_racing_a_split_are_acknowledged_only_if_kept() {
    let env = Env::new();
    let s = Arc::new(env.server("ts-a"));
    s.admin
        .load(load(descriptor(7, "", None, 1), true, 1))
        .await
        .unwrap();
    for (row, value) in rows(400) {
        s.write(&row, &value).unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for w in 0..4 {
        let s = s.clone();
        let stop = stop.clone();
        let acks = acks.clone();
        writers.push(std::thread::spawn(move || {
            let mut acked = Vec::new();
            let mut refused = 0u32;
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let row = format!("row{:05}", (i * 97 + w * 13) % 800);
                let value = format!("w{w}-{i}");
                match s.write(&row, &value) {
                    Ok(()) => {
                        acked.push((row, value));
                        acks.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        // The parent closed for the split, or the switch is under way.
                        assert!(
                            e.code == Code::Unavailable
                                || matches!(e.code, Code::WrongTablet { .. }),
                            "{e}"
                        );
                        refused += 1;
                    }
                }
                i += 1;
            }
            (acked, refused)
        }));
    }
    // Writes are acknowledged before the split, and by the children after it.
    wait_for_acks(&acks, 20).await;
    s.admin
        .split(split(7, Some("row00400"), 8, 9, 1))
        .await
        .unwrap();
    wait_for_acks(&acks, acks.load(Ordering::Relaxed) + 20).await;
    stop.store(true, Ordering::Relaxed);
    let mut last: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut total = 0;
    for w in writers {
        let (acked, _refused) = w.join().unwrap();
        total += acked.len();
        for (row, value) in acked {
            last.entry(row).or_default().push(value);
        }
    }
    assert!(total > 0);
    // Every row's value is one of the values acknowledged for it (all writes use the same
    // timestamp, so the last one applied wins): an acknowledged write to the parent that the
    // children lost would show up as an older value from the initial load.
    let now = s.read_all();
    for (row, values) in &last {
        assert!(
            values.contains(&now[row]),
            "row {row}: read {:?}, acknowledged {values:?}",
            now[row]
        );
    }
}

#[tokio::test]
async fn update_schema_reaches_every_tablet_of_the_table() {
    let env = Env::new();
    let s = env.server("ts-a");
    s.admin
        .load(load(descriptor(7, "", Some("m"), 1), true, 1))
        .await
        .unwrap();
    s.admin
        .load(load(descriptor(8, "m", None, 1), true, 1))
        .await
        .unwrap();
    let mut other = load(descriptor(9, "", None, 1), true, 1);
    other.tablet.as_mut().unwrap().table_id = TABLE + 1;
    s.admin.load(other).await.unwrap();
    let new_family = |row: &str| RowMutation {
        row: Bytes::copy_from_slice(row.as_bytes()),
        mutations: vec![Mutation::SetCell {
            family: Bytes::from_static(b"new"),
            qualifier: Bytes::from_static(b"q"),
            timestamp: 1,
            value: Bytes::from_static(b"v"),
        }],
    };
    let e = s
        .registry
        .get(TabletId(7))
        .unwrap()
        .tablet
        .apply(new_family("a"));
    assert!(matches!(e, Err(EngineError::UnknownFamily(_))), "{e:?}");
    let bad = s
        .admin
        .update_schema(pb::UpdateSchemaRequest {
            master_epoch: master(1),
            table_id: TABLE,
            schema: Some(schema(&["cf", "bad:name"])),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code, Code::InvalidArgument, "{bad}");
    s.admin
        .update_schema(pb::UpdateSchemaRequest {
            master_epoch: master(1),
            table_id: TABLE,
            schema: Some(schema(&["cf", "new"])),
        })
        .await
        .unwrap();
    for (id, row) in [(7, "a"), (8, "x")] {
        s.registry
            .get(TabletId(id))
            .unwrap()
            .tablet
            .apply(new_family(row))
            .unwrap();
    }
    let e = s
        .registry
        .get(TabletId(9))
        .unwrap()
        .tablet
        .apply(new_family("a"));
    assert!(
        matches!(e, Err(EngineError::UnknownFamily(_))),
        "another table keeps its schema: {e:?}"
    );

    // Dropping a family hides its cells at once and a major compaction removes them: created
    // again, the family starts empty.
    let t7 = s.registry.get(TabletId(7)).unwrap();
    t7.tablet.apply(put("a", "kept")).unwrap();
    t7.tablet.flush().unwrap();
    let families = |t: &ServedTablet| -> Vec<Bytes> {
        let row = t
            .tablet
            .read_row(b"a", &CellFilter::default())
            .unwrap()
            .unwrap();
        let mut f: Vec<Bytes> = row.cells.iter().map(|c| c.family.clone()).collect();
        f.dedup();
        f
    };
    assert_eq!(
        families(&t7),
        vec![Bytes::from_static(b"cf"), Bytes::from_static(b"new")]
    );
    s.admin
        .update_schema(pb::UpdateSchemaRequest {
            master_epoch: master(1),
            table_id: TABLE,
            schema: Some(schema(&["cf"])),
        })
        .await
        .unwrap();
    assert_eq!(
        families(&t7),
        vec![Bytes::from_static(b"cf")],
        "the dropped family is hidden"
    );
    t7.tablet.major_compact().unwrap();
    s.admin
        .update_schema(pb::UpdateSchemaRequest {
            master_epoch: master(1),
            table_id: TABLE,
            schema: Some(schema(&["cf", "new"])),
        })
        .await
        .unwrap();
    assert_eq!(
        families(&t7),
        vec![Bytes::from_static(b"cf")],
        "the family created again starts empty"
    );
}

#[tokio::test]
async fn list_tablets_names_the_server_the_master_epoch_and_every_tablet() {
    let env = Env::new();
    let s = env.server("ts-list");
    s.admin
        .load(load(descriptor(8, "m", None, 1), true, 3))
        .await
        .unwrap();
    s.admin
        .load(load(descriptor(7, "", Some("m"), 1), true, 3))
        .await
        .unwrap();
    for (row, value) in rows(50) {
        s.write(&row, &value).unwrap();
    }
    let list = s.admin.list();
    assert_eq!(list.server_id, "ts-list");
    assert_eq!(list.master_epoch, 3);
    let ids: Vec<u64> = list
        .tablets
        .iter()
        .map(|t| t.tablet.as_ref().unwrap().tablet_id)
        .collect();
    assert_eq!(ids, vec![7, 8], "in row order");
    // Every "row..." key sorts after "m".
    assert!(list.tablets[1].approximate_size_bytes > 50 * 200);
    assert!(list.tablets[0].approximate_size_bytes < list.tablets[1].approximate_size_bytes);
}
