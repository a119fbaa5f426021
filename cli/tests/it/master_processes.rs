//! Masters with real processes: a 3-node cell of `tabula lock serve`, two `tabula tablet
//! serve` and two `tabula master serve` on one storage root. The active master bootstraps the
//! cluster and serves a new table across both servers; rows are written through METADATA
//! lookups. The active master is SIGKILLed: the standby leads at a higher epoch within the
//! session lease. A tablet server is SIGKILLed: its tablets are served by the other, and every
//! acknowledged row reads back. Bad flags are a usage error (exit 2).

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tabula_client::meta::MetaTable;
use tabula_client::{Channels, Client, Mutation};
use tabula_common::TableId;
use tabula_lockservice::client::ClientOptions;
use tabula_master::election::{ActiveMaster, MASTER_LOCK};
use tabula_proto::tabula::master::v1 as mpb;
use tabula_proto::tabula::tablet::v1 as tpb;

use crate::support::{BIN, Cell, Daemon, eventually};

const DEADLINE: Duration = Duration::from_secs(60);
const SESSION_TTL_MS: &str = "3000";

fn tablet_server(cell: &Cell, root: &std::path::Path, name: &str) -> Daemon {
    Daemon::spawn(
        cell.root(),
        name,
        &[
            "tablet".into(),
            "serve".into(),
            "--lock".into(),
            cell.addrs().join(","),
            "--listen".into(),
            Daemon::free_addr(),
            "--storage-root".into(),
            root.display().to_string(),
            "--server-id".into(),
            name.into(),
            "--session-ttl-ms".into(),
            SESSION_TTL_MS.into(),
        ],
    )
}

fn master(cell: &Cell, root: &std::path::Path, name: &str) -> Daemon {
    Daemon::spawn(
        cell.root(),
        name,
        &[
            "master".into(),
            "serve".into(),
            "--lock".into(),
            cell.addrs().join(","),
            "--listen".into(),
            Daemon::free_addr(),
            "--storage-root".into(),
            root.display().to_string(),
            "--master-id".into(),
            name.into(),
            "--session-ttl-ms".into(),
            SESSION_TTL_MS.into(),
            "--round-interval-ms".into(),
            "100".into(),
        ],
    )
}

async fn active(lock: &tabula_lockservice::client::LockClient) -> Option<ActiveMaster> {
    let info = lock.get(MASTER_LOCK).await.ok()?;
    if info.lock_holders.is_empty() {
        return None;
    }
    ActiveMaster::decode(&info.contents)
}

async fn status(channels: &Channels, addr: &str) -> Option<mpb::ClusterStatusResponse> {
    let mut client = channels.master(addr).ok()?;
    client
        .cluster_status(mpb::ClusterStatusRequest {})
        .await
        .ok()
        .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_standby_master_leads_after_a_kill_and_a_dead_servers_tablets_move() {
    let cell = Cell::start(3);
    cell.wait_leader(&cell.ids()).await;
    let root = cell.root().join("storage");
    std::fs::create_dir_all(&root).unwrap();
    let mut servers = [
        tablet_server(&cell, &root, "ts-a"),
        tablet_server(&cell, &root, "ts-b"),
    ];
    let mut masters = [master(&cell, &root, "m-1"), master(&cell, &root, "m-2")];
    let lock = cell.client(ClientOptions::default());
    let channels = Channels::default();

    let first = eventually("a master to lead", DEADLINE, || async {
        active(&lock).await
    })
    .await;
    eventually("root and METADATA served", DEADLINE, || async {
        let s = status(&channels, &first.addr).await?;
        (s.tablets >= 2 && s.tablets_not_serving == 0 && s.servers == 2).then_some(())
    })
    .await;
    let mut client = channels.master(&first.addr).unwrap();
    let table = client
        .create_table(mpb::CreateTableRequest {
            name: "t".into(),
            schema: Some(tpb::Schema {
                families: vec![tpb::ColumnFamily {
                    name: "cf".into(),
                    gc_rule: None,
                    ..Default::default()
                }],
                ..Default::default()
            }),
            split_keys: vec![b"h".to_vec(), b"p".to_vec()],
        })
        .await
        .unwrap()
        .into_inner()
        .table
        .unwrap();
    let table_id = TableId(table.table_id);
    eventually("the table served", DEADLINE, || async {
        let s = status(&channels, &first.addr).await?;
        (s.tablets >= 5 && s.tablets_not_serving == 0).then_some(())
    })
    .await;
    let meta = MetaTable::new(lock.clone(), channels.clone());
    let client = Client::connect(&cell.addrs()).await.unwrap();
    let t = client.table("t").await.unwrap();
    assert_eq!(t.id(), table_id);
    let rows: Vec<Vec<u8>> = (0..30u8)
        .map(|i| vec![b'a' + (i % 26), b'0' + i / 26])
        .collect();
    for row in &rows {
        t.mutate_row(
            row.clone(),
            vec![Mutation::set_cell("cf", "q", row.clone())],
        )
        .await
        .unwrap();
    }

    // SIGKILL the active master: the standby leads at a higher epoch.
    let killed = usize::from(first.id != "m-1");
    masters[killed].kill();
    let second = eventually("the standby to lead", DEADLINE, || async {
        active(&lock)
            .await
            .filter(|m| m.id != first.id && m.epoch > first.epoch)
    })
    .await;
    eventually("the new master to answer", DEADLINE, || async {
        let s = status(&channels, &second.addr).await?;
        (s.master_epoch == second.epoch.0 && s.tablets_not_serving == 0).then_some(())
    })
    .await;

    // SIGKILL a tablet server: every tablet is served by the other one.
    servers[0].kill();
    eventually("every tablet on ts-b", DEADLINE, || async {
        let tablets = meta.scan_table(table_id).await.ok()?;
        let s = status(&channels, &second.addr).await?;
        (s.tablets_not_serving == 0
            && s.servers == 1
            && tablets
                .iter()
                .all(|t| t.server.as_ref().is_some_and(|s| s.0 == "ts-b")))
        .then_some(())
    })
    .await;
    // The client's cached locations are stale now: it finds the tablets' new server itself.
    for row in &rows {
        let got = t.read_row(row.clone(), None).await.unwrap();
        let value = got.as_ref().and_then(|r| r.value("cf", b"q"));
        assert_eq!(value.map(|v| &v[..]), Some(&row[..]), "row {row:?} lost");
    }
    assert!(servers[1].try_exit().is_none(), "ts-b exited");
    assert!(
        masters[1 - killed].try_exit().is_none(),
        "the standby exited"
    );
}

#[test]
fn master_serve_without_a_lock_cell_is_a_usage_error() {
    let out = std::process::Command::new(BIN)
        .args([
            "master",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--storage-root",
            "/tmp/x",
        ])
        .env_remove("TABULA_LOCK")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--lock"));
}
