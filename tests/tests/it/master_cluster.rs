//! The master with real tablet servers and a real lock cell, in process: bootstrap of a new
//! cluster (root and METADATA tablets served), tables created with split keys and served
//! across servers, data written and read back through METADATA lookups, a dead tablet server's
//! tablets served elsewhere with every acknowledged write, master failover to a standby at a
//! higher epoch, and a deposed master's commands refused.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use tabula_client::Channels;
use tabula_client::meta::{MetaTable, TabletRecord};
use tabula_common::{Code, Error, TableId};
use tabula_master::{Master, MasterConfig};
use tabula_proto::tabula::master::v1 as mpb;
use tabula_proto::tabula::tablet::v1 as tpb;
use tabula_tests::master_helpers::{
    WAIT, all_served, create_table, get, master_config, put, put_retrying, status,
};
use tabula_tests::{LockCell, eventually, start_tablet_server};

async fn tablets_of(meta: &MetaTable, table: TableId) -> Vec<TabletRecord> {
    meta.scan_table(table).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_cluster_serves_tables_across_servers_and_survives_a_server_death() {
    let cell = LockCell::start(1).await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let s1 = start_tablet_server(&cell, root.path()).await.unwrap();
    let s2 = start_tablet_server(&cell, root.path()).await.unwrap();
    let master = Master::start(master_config(&cell, root.path()))
        .await
        .unwrap();
    let channels = Channels::default();
    // Bootstrap: root and the first METADATA tablet.
    all_served(&channels, &master, 2).await;

    let table = create_table(&channels, &master, "t", &[b"g", b"p"]).await;
    let table_id = TableId(table.table_id);
    assert!(table_id >= TableId::FIRST_USER);
    all_served(&channels, &master, 5).await;

    let meta = MetaTable::new(cell.client().unwrap(), channels.clone());
    let tablets = tablets_of(&meta, table_id).await;
    assert_eq!(tablets.len(), 3);
    assert_eq!(tablets[0].end_row.as_deref().unwrap(), b"g");
    assert_eq!(&tablets[1].start_row[..], b"g");
    assert_eq!(tablets[2].end_row, None);
    // Both servers serve something: the planner spreads tablets by count.
    let per_server: BTreeMap<_, usize> = tablets.iter().fold(BTreeMap::new(), |mut m, t| {
        *m.entry(t.server.clone().unwrap()).or_default() += 1;
        m
    });
    assert_eq!(per_server.len(), 2, "{per_server:?}");

    let rows: Vec<Vec<u8>> = (0..60u32)
        .map(|i| format!("{}{i:03}", (b'a' + (i % 26) as u8) as char).into_bytes())
        .collect();
    for row in &rows {
        put(&meta, table_id, row, row).await.unwrap();
    }
    for row in &rows {
        assert_eq!(
            get(&meta, table_id, row).await.unwrap().as_deref(),
            Some(&row[..])
        );
    }

    // Kill the server holding the most tablets of the table (dropping it is a crash: no
    // flush, no goodbye; its session lapses and its file goes).
    let victim_id = per_server
        .iter()
        .max_by_key(|(_, n)| **n)
        .unwrap()
        .0
        .clone();
    let (victim, survivor) = if *s1.server_id() == victim_id {
        (s1, s2)
    } else {
        (s2, s1)
    };
    drop(victim);
    eventually(
        "the dead server's tablets served by the survivor",
        WAIT,
        || async {
            let tablets = meta.scan_table(table_id).await.ok()?;
            let s = status(&channels, &master).await.ok()?;
            (s.tablets_not_serving == 0
                && tablets
                    .iter()
                    .all(|t| t.server.as_ref() == Some(survivor.server_id())))
            .then_some(())
        },
    )
    .await;
    for row in &rows {
        let got = eventually("a read after failover", WAIT, || async {
            get(&meta, table_id, row).await.ok()
        })
        .await;
        assert_eq!(got.as_deref(), Some(&row[..]), "row {:?} lost", row);
    }
    put_retrying(&meta, table_id, b"after", b"failover").await;

    master.shutdown().await;
    survivor.shutdown().await.unwrap();
    cell.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_standby_takes_over_at_a_higher_epoch_and_the_deposed_epoch_is_refused() {
    let cell = LockCell::start(1).await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let server = start_tablet_server(&cell, root.path()).await.unwrap();
    let first = Master::start(master_config(&cell, root.path()))
        .await
        .unwrap();
    let channels = Channels::default();
    all_served(&channels, &first, 2).await;
    let second = Master::start(master_config(&cell, root.path()))
        .await
        .unwrap();
    let old_epoch = first.epoch().unwrap();
    assert_eq!(second.epoch(), None, "two active masters");
    // A standby points at the active master.
    let mut standby = channels.master(&second.addr().to_string()).unwrap();
    let e = Error::from(
        standby
            .cluster_status(mpb::ClusterStatusRequest {})
            .await
            .unwrap_err(),
    );
    assert_eq!(
        e.code,
        Code::NotLeader {
            hint: Some(first.addr().to_string())
        }
    );

    let table = create_table(&channels, &first, "t", &[b"m"]).await;
    all_served(&channels, &first, 4).await;
    let meta = MetaTable::new(cell.client().unwrap(), channels.clone());
    put(&meta, TableId(table.table_id), b"k", b"v")
        .await
        .unwrap();

    first.shutdown().await;
    let new_epoch = eventually("the standby to lead", WAIT, || async { second.epoch() }).await;
    assert!(new_epoch > old_epoch, "{new_epoch:?} <= {old_epoch:?}");
    all_served(&channels, &second, 4).await;
    assert_eq!(
        get(&meta, TableId(table.table_id), b"k")
            .await
            .unwrap()
            .as_deref(),
        Some(&b"v"[..])
    );
    // Tables created by the first master are known to the second.
    let mut client = channels.master(&second.addr().to_string()).unwrap();
    let tables = client
        .list_tables(mpb::ListTablesRequest {})
        .await
        .unwrap()
        .into_inner()
        .tables;
    assert_eq!(tables.len(), 1);
    assert_eq!(tables[0].name, "t");

    // The tablet server has seen the new epoch: a command at the old one is refused.
    let record = meta.locate(TableId(table.table_id), b"k").await.unwrap();
    let mut admin = channels.admin(&server.addr().to_string()).unwrap();
    let refused = admin
        .unload_tablet(tpb::UnloadTabletRequest {
            master_epoch: Some(tpb::MasterEpoch { epoch: old_epoch.0 }),
            tablet_id: record.tablet.0,
            tablet_epoch: record.epoch.0,
        })
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
    assert_eq!(
        get(&meta, TableId(table.table_id), b"k")
            .await
            .unwrap()
            .as_deref(),
        Some(&b"v"[..])
    );

    second.shutdown().await;
    server.shutdown().await.unwrap();
    cell.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_split_made_by_a_tablet_server_is_recorded_in_metadata_and_survives_its_death() {
    let cell = LockCell::start(1).await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let mut config = tabula_tests::tablet_server_config(&cell, root.path());
    config.split_threshold_bytes = 256 * 1024;
    config.split_check_interval = Duration::from_millis(100);
    let splitter = tabula_tabletserver::server::TabletServer::start(config)
        .await
        .unwrap();
    let master = Master::start(master_config(&cell, root.path()))
        .await
        .unwrap();
    let channels = Channels::default();
    all_served(&channels, &master, 2).await;
    let table = create_table(&channels, &master, "big", &[]).await;
    let table_id = TableId(table.table_id);
    all_served(&channels, &master, 3).await;
    let meta = MetaTable::new(cell.client().unwrap(), channels.clone());

    // ~1 MiB in 256 rows of 4 KiB of incompressible bytes: past the threshold a few times
    // over once flushed.
    let value: Vec<u8> = (0..4096).map(|_| rand::random::<u8>()).collect();
    let rows: Vec<Vec<u8>> = (0..256u32)
        .map(|i| format!("row{i:05}").into_bytes())
        .collect();
    for row in &rows {
        put_retrying(&meta, table_id, row, &value).await;
    }
    // Flushes happen as memtables fill; the splitter splits what its SSTables hold.
    let tablets = eventually("the table split and recorded in METADATA", WAIT, || async {
        let tablets = meta.scan_table(table_id).await.ok()?;
        let s = status(&channels, &master).await.ok()?;
        (tablets.len() >= 2 && s.tablets_not_serving == 0).then_some(tablets)
    })
    .await;
    // The records tile the table.
    assert_eq!(tablets[0].start_row.len(), 0);
    for pair in tablets.windows(2) {
        assert_eq!(pair[0].end_row.as_ref(), Some(&pair[1].start_row));
    }
    assert_eq!(tablets.last().unwrap().end_row, None);

    // The splitting server dies; another takes every tablet, children included.
    let other = start_tablet_server(&cell, root.path()).await.unwrap();
    drop(splitter);
    eventually("every tablet served by the other server", WAIT, || async {
        let tablets = meta.scan_table(table_id).await.ok()?;
        let s = status(&channels, &master).await.ok()?;
        (s.tablets_not_serving == 0
            && tablets
                .iter()
                .all(|t| t.server.as_ref() == Some(other.server_id())))
        .then_some(())
    })
    .await;
    for row in &rows {
        let got = eventually("a read after the failover", WAIT, || async {
            get(&meta, table_id, row).await.ok()
        })
        .await;
        assert_eq!(got.as_deref(), Some(&value[..]), "row {:?} lost", row);
    }

    master.shutdown().await;
    other.shutdown().await.unwrap();
    cell.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_masters_serve_metrics_and_health() {
    let cell = LockCell::start(1).await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let server = start_tablet_server(&cell, root.path()).await.unwrap();
    let with_metrics = || MasterConfig {
        metrics: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
        ..master_config(&cell, root.path())
    };
    let active = Master::start(with_metrics()).await.unwrap();
    let channels = Channels::default();
    all_served(&channels, &active, 2).await;
    let standby = Master::start(with_metrics()).await.unwrap();
    let metrics = active.metrics_addr().unwrap();
    let scrape = eventually("a scrape after a round", WAIT, || async {
        let (status, body) = tabula_tests::http::http_get(metrics, "/metrics")
            .await
            .ok()?;
        assert_eq!(status, 200);
        (body.contains("tabula_master_tablets_not_serving 0\n")
            && body.contains("tabula_master_tablets{state=\"assigned\"} 2\n"))
        .then_some(body)
    })
    .await;
    assert!(scrape.contains("tabula_master_active 1\n"), "{scrape}");
    assert!(
        scrape.contains("tabula_master_servers_live 1\n"),
        "{scrape}"
    );
    assert!(
        scrape.contains("tabula_master_leaderships_total 1\n"),
        "{scrape}"
    );
    assert!(
        scrape.contains("tabula_master_actions_total{kind=\"assign\",result=\"ok\"} 2\n"),
        "{scrape}"
    );
    let epoch = active.epoch().unwrap().0;
    assert!(
        scrape.contains(&format!("tabula_master_epoch {epoch}\n")),
        "{scrape}"
    );
    let (status, body) = tabula_tests::http::http_get(metrics, "/healthz")
        .await
        .unwrap();
    assert_eq!((status, body), (200, format!("active epoch {epoch}\n")));
    let (status, _) = tabula_tests::http::http_get(metrics, "/nope")
        .await
        .unwrap();
    assert_eq!(status, 404);

    let standby_metrics = standby.metrics_addr().unwrap();
    let (status, body) = tabula_tests::http::http_get(standby_metrics, "/healthz")
        .await
        .unwrap();
    assert_eq!((status, body.as_str()), (200, "standby\n"));
    let (_, scrape) = tabula_tests::http::http_get(standby_metrics, "/metrics")
        .await
        .unwrap();
    assert!(scrape.contains("tabula_master_active 0\n"), "{scrape}");

    standby.shutdown().await;
    active.shutdown().await;
    assert!(
        tabula_tests::http::http_get(metrics, "/healthz")
            .await
            .is_err()
    );
    server.shutdown().await.unwrap();
    cell.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deleted_table_leaves_no_tablets_records_or_manifests() {
    let cell = LockCell::start(1).await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let server = start_tablet_server(&cell, root.path()).await.unwrap();
    let master = Master::start(master_config(&cell, root.path()))
        .await
        .unwrap();
    let channels = Channels::default();
    all_served(&channels, &master, 2).await;
    let table = create_table(&channels, &master, "gone", &[b"m"]).await;
    let table_id = TableId(table.table_id);
    all_served(&channels, &master, 4).await;
    let meta = MetaTable::new(cell.client().unwrap(), channels.clone());
    put(&meta, table_id, b"k", b"v").await.unwrap();
    let manifests: Vec<String> = tablets_of(&meta, table_id)
        .await
        .iter()
        .map(|t| t.manifest_path.clone())
        .collect();
    assert_eq!(manifests.len(), 2);
    for m in &manifests {
        assert!(root.path().join(m).exists(), "{m}");
    }

    let mut client = channels.master(&master.addr().to_string()).unwrap();
    client
        .delete_table(mpb::DeleteTableRequest {
            name: "gone".into(),
        })
        .await
        .unwrap();
    let tables = client
        .list_tables(mpb::ListTablesRequest {})
        .await
        .unwrap()
        .into_inner()
        .tables;
    assert!(tables.is_empty(), "{tables:?}");
    assert!(meta.scan_table(table_id).await.unwrap().is_empty());
    for m in &manifests {
        assert!(!root.path().join(m).exists(), "{m} still there");
    }
    let served = server.registry().list();
    assert!(
        served.iter().all(|t| t.table != table_id),
        "a tablet of the deleted table is still served"
    );
    let e = client
        .delete_table(mpb::DeleteTableRequest {
            name: "gone".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);

    // The name can be used again, for a new, empty table.
    let again = create_table(&channels, &master, "gone", &[]).await;
    assert_ne!(again.table_id, table.table_id);
    all_served(&channels, &master, 3).await;
    assert_eq!(
        get(&meta, TableId(again.table_id), b"k").await.unwrap(),
        None
    );

    master.shutdown().await;
    server.shutdown().await.unwrap();
    cell.shutdown().await.unwrap();
}
