//! The master's table-wide commands on one tablet server (`TabletAdminService`), in process
//! and without a lock service (`Gate::always_open`): `CompactTablet` (a minor compaction
//! empties the memtable into an SSTable, a major one leaves one SSTable; stale master epochs
//! and tablets not served here are refused) and `DropRows` (by prefix, across batches, or all
//! rows; only the tablet's own rows; the deletes survive an unload and reload).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use tabula_common::{Clock, Code, LocalDir, ServerId, StorageRoot, SystemClock, TableId};
use tabula_proto::tabula::tablet::v1 as pb;
use tabula_proto::tabula::tablet::v1::drop_rows_request::Target;
use tabula_tabletserver::engine::commitlog::{CommitLog, CommitLogOptions};
use tabula_tabletserver::engine::{Engine, EngineOptions, Mutation, RowMutation, ScanOptions};
use tabula_tabletserver::server::drop_rows::DROP_BATCH_ROWS;
use tabula_tabletserver::server::{Gate, Registry, Route, TabletAdminService};

const TABLE: u64 = 2;

struct Server {
    _dir: tempfile::TempDir,
    registry: Arc<Registry>,
    admin: TabletAdminService,
}

fn server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let storage: Arc<dyn StorageRoot> = Arc::new(LocalDir::open(dir.path()).unwrap());
    let log = CommitLog::open(
        storage.clone(),
        ServerId("ts-a".into()),
        CommitLogOptions::default(),
    )
    .unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let engine = Engine::new(storage, Arc::new(log), clock, EngineOptions::for_tests());
    let registry = Arc::new(Registry::new());
    let admin = TabletAdminService::new(engine, registry.clone(), Arc::new(Gate::always_open()));
    Server {
        _dir: dir,
        registry,
        admin,
    }
}

fn master(epoch: u64) -> Option<pb::MasterEpoch> {
    Some(pb::MasterEpoch { epoch })
}

fn descriptor(id: u64, start: &str, end: Option<&str>) -> pb::TabletDescriptor {
    pb::TabletDescriptor {
        table_id: TABLE,
        tablet_id: id,
        start_row: start.as_bytes().to_vec(),
        end_row: end.map(|e| e.as_bytes().to_vec()),
        tablet_epoch: 1,
    }
}

impl Server {
    async fn load(&self, id: u64, start: &str, end: Option<&str>, create: bool) {
        self.admin
            .load(pb::LoadTabletRequest {
                master_epoch: master(1),
                tablet: Some(descriptor(id, start, end)),
                schema: Some(pb::Schema {
                    families: vec![pb::ColumnFamily {
                        name: "cf".into(),
                        gc_rule: None,
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                create,
            })
            .await
            .unwrap();
    }

    fn write(&self, row: &str) {
        let route = Route {
            table: TableId(TABLE),
            tablet: None,
            epoch: None,
        };
        let served = self.registry.route_row(&route, row.as_bytes()).unwrap();
        served
            .tablet
            .apply(RowMutation {
                row: Bytes::copy_from_slice(row.as_bytes()),
                mutations: vec![Mutation::SetCell {
                    family: Bytes::from_static(b"cf"),
                    qualifier: Bytes::from_static(b"q"),
                    timestamp: 1_000,
                    value: Bytes::from(format!("value of {row}")),
                }],
            })
            .unwrap();
    }

    /// Every row key served here.
    fn rows(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for served in self.registry.list() {
            for row in served.tablet.scan(ScanOptions::default()).unwrap() {
                out.insert(String::from_utf8(row.unwrap().key.to_vec()).unwrap());
            }
        }
        out
    }

    async fn compact(
        &self,
        id: u64,
        major: bool,
    ) -> Result<pb::TabletStatus, tabula_common::Error> {
        self.compact_at(id, major, 1).await
    }

    async fn compact_at(
        &self,
        id: u64,
        major: bool,
        master_epoch: u64,
    ) -> Result<pb::TabletStatus, tabula_common::Error> {
        self.admin
            .compact(pb::CompactTabletRequest {
                master_epoch: master(master_epoch),
                tablet_id: id,
                tablet_epoch: 1,
                major,
            })
            .await
    }

    async fn drop(&self, id: u64, target: Option<Target>) -> Result<u64, tabula_common::Error> {
        self.admin
            .drop_rows(pb::DropRowsRequest {
                master_epoch: master(1),
                tablet_id: id,
                tablet_epoch: 1,
                target,
            })
            .await
    }
}

fn prefix(p: &str) -> Option<Target> {
    Some(Target::RowKeyPrefix(p.as_bytes().to_vec()))
}

#[tokio::test]
async fn a_minor_compaction_empties_the_memtable_and_a_major_one_leaves_one_sstable() {
    let s = server();
    s.load(7, "", None, true).await;
    for i in 0..50 {
        s.write(&format!("a{i:03}"));
    }
    let before = &s.admin.list().tablets[0];
    assert!(before.memtable_bytes > 0);
    let flushed = s.compact(7, false).await.unwrap();
    assert_eq!(flushed.memtable_bytes, 0);
    assert!(flushed.sstable_count >= 1, "{flushed:?}");
    for i in 0..50 {
        s.write(&format!("b{i:03}"));
    }
    let flushed = s.compact(7, false).await.unwrap();
    assert_eq!(flushed.memtable_bytes, 0);
    assert!(flushed.sstable_count >= 2, "{flushed:?}");
    for i in 0..10 {
        s.write(&format!("c{i:03}"));
    }
    let compacted = s.compact(7, true).await.unwrap();
    assert_eq!(compacted.sstable_count, 1, "{compacted:?}");
    assert_eq!(compacted.memtable_bytes, 0);
    assert_eq!(s.rows().len(), 110, "nothing was lost");
    assert_eq!(s.admin.list().tablets[0].sstable_count, 1);
}

#[tokio::test]
async fn compaction_is_refused_to_stale_masters_and_for_tablets_not_served_here() {
    let s = server();
    s.load(7, "", None, true).await;
    s.compact_at(7, false, 5).await.unwrap();
    let stale = s.compact_at(7, true, 4).await.unwrap_err();
    assert_eq!(stale.code, Code::FailedPrecondition, "{stale}");
    let unknown = s.compact_at(8, false, 5).await.unwrap_err();
    assert_eq!(unknown.code, Code::NotFound, "{unknown}");
    let wrong_epoch = s
        .admin
        .compact(pb::CompactTabletRequest {
            master_epoch: master(5),
            tablet_id: 7,
            tablet_epoch: 2,
            major: false,
        })
        .await
        .unwrap_err();
    assert_eq!(wrong_epoch.code, Code::FailedPrecondition, "{wrong_epoch}");
    let mut no_epoch = pb::CompactTabletRequest {
        master_epoch: None,
        tablet_id: 7,
        tablet_epoch: 1,
        major: false,
    };
    let e = s.admin.compact(no_epoch).await.unwrap_err();
    assert_eq!(e.code, Code::InvalidArgument, "{e}");
    no_epoch.master_epoch = master(5);
    s.admin.compact(no_epoch).await.unwrap();
}

#[tokio::test]
async fn drop_rows_by_prefix_deletes_only_the_tablets_rows_with_the_prefix() {
    let s = server();
    s.load(7, "", Some("k5"), true).await;
    s.load(8, "k5", None, true).await;
    let mut all = BTreeSet::new();
    for p in ["a", "k", "z"] {
        for i in 0..10 {
            let row = format!("{p}{i}");
            s.write(&row);
            all.insert(row);
        }
    }
    // Some of the rows are in SSTables, some in the memtable, one overwritten.
    s.compact(7, false).await.unwrap();
    s.write("k1");
    assert_eq!(s.drop(7, prefix("k")).await.unwrap(), 5);
    let left: BTreeSet<String> = all
        .iter()
        .filter(|r| !(r.starts_with('k') && r.as_str() < "k5"))
        .cloned()
        .collect();
    assert_eq!(s.rows(), left);
    // Nothing left to drop: a retry deletes nothing.
    assert_eq!(s.drop(7, prefix("k")).await.unwrap(), 0);
    // A prefix with no rows in the tablet.
    assert_eq!(s.drop(7, prefix("z")).await.unwrap(), 0);
    assert_eq!(s.rows(), left);

    // Every row of the other tablet.
    assert_eq!(
        s.drop(8, Some(Target::DeleteAllDataFromTable(true)))
            .await
            .unwrap(),
        15
    );
    let a_rows: BTreeSet<String> = (0..10).map(|i| format!("a{i}")).collect();
    assert_eq!(s.rows(), a_rows);

    // The deletes are durable: unloaded (flushed) and loaded again, the rows stay gone.
    s.admin
        .unload(pb::UnloadTabletRequest {
            master_epoch: master(1),
            tablet_id: 8,
            tablet_epoch: 1,
        })
        .await
        .unwrap();
    s.load(8, "k5", None, false).await;
    assert_eq!(s.rows(), a_rows);
}

#[tokio::test]
async fn drop_rows_works_in_batches_and_refuses_an_empty_target() {
    let s = server();
    s.load(7, "", None, true).await;
    let n = DROP_BATCH_ROWS * 2 + 7;
    for i in 0..n {
        s.write(&format!("b{i:05}"));
    }
    s.write("c");
    for target in [
        None,
        prefix(""),
        Some(Target::DeleteAllDataFromTable(false)),
    ] {
        let e = s.drop(7, target).await.unwrap_err();
        assert_eq!(e.code, Code::InvalidArgument, "{e}");
    }
    assert_eq!(s.drop(7, prefix("b")).await.unwrap(), n as u64);
    assert_eq!(s.rows(), BTreeSet::from(["c".to_owned()]));
    let unknown = s.drop(9, prefix("b")).await.unwrap_err();
    assert_eq!(unknown.code, Code::NotFound, "{unknown}");
    let stale = s
        .admin
        .drop_rows(pb::DropRowsRequest {
            master_epoch: master(0),
            tablet_id: 7,
            tablet_epoch: 1,
            target: prefix("c"),
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code, Code::FailedPrecondition, "{stale}");
    assert_eq!(s.rows().len(), 1, "the stale drop changed nothing");
}
