//! The master's admin commands through the client library's `Admin`, with real tablet
//! servers, real masters and a real lock cell, in process:
//! - table-wide commands on a table of four tablets on two servers: `flush` empties every
//!   tablet's memtable into SSTables, `compact` (major) leaves one SSTable per tablet,
//!   `drop_row_range` deletes exactly the rows with a prefix spanning two tablets, then every
//!   row of the table;
//! - `modify_column_families`: a created family takes writes, an updated one shows its new GC
//!   rule, a dropped one's cells are no longer readable and it takes no writes;
//! - the balancer switch: `set_balancer(false)` answers the previous setting, `cluster_status`
//!   shows it, a standby answers `NotLeader`, rounds with the switch off leave a new server
//!   empty, the next master after a failover still sees it off, and turning it on evens the
//!   servers out.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use bytes::Bytes;
use tabula_client::{
    Admin, Channels, Client, Family, FamilyChange, GcRule, Mutation, RowSet, Table,
};
use tabula_common::{Code, Error, TableId};
use tabula_master::Master;
use tabula_proto::tabula::master::v1 as mpb;
use tabula_proto::tabula::tablet::v1 as tpb;
use tabula_tabletserver::server::TabletServer;
use tabula_tests::master_helpers::{WAIT, all_served, master_config};
use tabula_tests::{LockCell, eventually, start_tablet_server};

/// Writes every row (`cf:q` = the row key and `round`); the client retries moving tablets.
async fn write_all(table: &Table, rows: &[Vec<u8>], round: u8) {
    let entries = rows
        .iter()
        .map(|row| {
            let mut value = row.clone();
            value.push(round);
            (
                Bytes::from(row.clone()),
                vec![Mutation::set_cell("cf", "q", value)],
            )
        })
        .collect();
    for (i, result) in table.mutate_rows(entries).await.into_iter().enumerate() {
        assert!(result.is_ok(), "row {:?}: {result:?}", rows[i]);
    }
}

/// The keys of every row of the table.
async fn present(table: &Table) -> BTreeSet<Vec<u8>> {
    table
        .read_rows(RowSet::all(), None)
        .collect_rows()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.key.to_vec())
        .collect()
}

/// The status of every tablet of `table` on the servers, once all `count` are listed (one
/// may be between servers while the balancer settles).
async fn tablet_statuses(
    channels: &Channels,
    servers: &[&TabletServer],
    table: TableId,
    count: usize,
) -> Vec<tpb::TabletStatus> {
    eventually("every tablet of the table listed", WAIT, || async {
        let mut out = Vec::new();
        for server in servers {
            let mut admin = channels.admin(&server.addr().to_string()).ok()?;
            let listed = admin
                .list_tablets(tpb::ListTabletsRequest { master_epoch: None })
                .await
                .ok()?
                .into_inner();
            out.extend(listed.tablets.into_iter().filter(|t| {
                t.tablet
                    .as_ref()
                    .is_some_and(|d| TableId(d.table_id) == table)
            }));
        }
        (out.len() == count).then_some(out)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn table_commands_reach_every_tablet_and_families_change() {
    let cell = LockCell::start(1).await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let s1 = start_tablet_server(&cell, root.path()).await.unwrap();
    let s2 = start_tablet_server(&cell, root.path()).await.unwrap();
    let master = Master::start(master_config(&cell, root.path()))
        .await
        .unwrap();
    let client = Client::connect(&cell.addrs()).await.unwrap();
    let channels = client.channels().clone();
    all_served(&channels, &master, 2).await;
    let admin = client.admin();
    let info = admin
        .create_table("t", &[Family::new("cf")], &[b"g", b"k5", b"p"])
        .await
        .unwrap();
    let table_id = info.id;
    all_served(&channels, &master, 6).await;
    let servers = [&s1, &s2];
    // Tablets [-, g) [g, k5) [k5, p) [p, -): the prefix "k" spans the middle two.
    assert_eq!(admin.list_tablets(Some("t")).await.unwrap().len(), 4);
    let table = client.table("t").await.unwrap();
    let rows: Vec<Vec<u8>> = ["a", "g", "k", "p", "z"]
        .iter()
        .flat_map(|p| (0..10).map(move |i| format!("{p}{i}").into_bytes()))
        .collect();
    write_all(&table, &rows, 1).await;

    // Flush: every tablet's memtable becomes an SSTable.
    admin.flush("t").await.unwrap();
    let flushed = tablet_statuses(&channels, &servers, table_id, 4).await;
    for t in &flushed {
        assert_eq!(t.memtable_bytes, 0, "{t:?}");
        assert!(t.sstable_count >= 1, "{t:?}");
    }

    // A second round of writes and a minor compaction: empty memtables; a major one: one
    // SSTable per tablet.
    write_all(&table, &rows, 2).await;
    admin.compact("t", false).await.unwrap();
    for t in tablet_statuses(&channels, &servers, table_id, 4).await {
        assert_eq!(t.memtable_bytes, 0, "{t:?}");
    }
    admin.compact("t", true).await.unwrap();
    for t in &tablet_statuses(&channels, &servers, table_id, 4).await {
        assert_eq!(t.sstable_count, 1, "{t:?}");
        assert_eq!(t.memtable_bytes, 0, "{t:?}");
    }
    let all: BTreeSet<Vec<u8>> = rows.iter().cloned().collect();
    assert_eq!(present(&table).await, all);
    let a3 = table.read_row("a3", None).await.unwrap().unwrap();
    assert_eq!(a3.value("cf", b"q").unwrap().as_ref(), b"a3\x02");

    // Bad requests: no target (only the wire can say that), an empty prefix, no such table.
    let mut raw = channels.master(&master.addr().to_string()).unwrap();
    let e = raw
        .drop_row_range(mpb::DropRowRangeRequest {
            name: "t".into(),
            target: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    let e = admin.drop_row_range("t", Some(b"")).await.unwrap_err();
    assert_eq!(e.code, Code::InvalidArgument, "{e}");
    assert_eq!(admin.flush("nope").await.unwrap_err().code, Code::NotFound);
    let e = admin.drop_row_range("nope", None).await.unwrap_err();
    assert_eq!(e.code, Code::NotFound, "{e}");

    // drop_row_range by a prefix spanning two tablets on (usually) two servers.
    admin.drop_row_range("t", Some(b"k")).await.unwrap();
    let kept: BTreeSet<Vec<u8>> = rows.iter().filter(|r| r[0] != b'k').cloned().collect();
    assert_eq!(present(&table).await, kept);

    // Column families: create one, write to it, update its GC rule.
    let changed = admin
        .modify_column_families(
            "t",
            &[FamilyChange::Create(
                Family::new("extra").gc(GcRule::MaxVersions(3)),
            )],
        )
        .await
        .unwrap();
    assert_eq!(changed.families, vec!["cf".to_owned(), "extra".to_owned()]);
    table
        .mutate_row("z1", vec![Mutation::set_cell("extra", "e", "1")])
        .await
        .unwrap();
    let z1 = table.read_row("z1", None).await.unwrap().unwrap();
    assert_eq!(z1.value("extra", b"e").unwrap().as_ref(), b"1");
    let e = admin
        .modify_column_families("t", &[FamilyChange::Create(Family::new("extra"))])
        .await
        .unwrap_err();
    assert_eq!(e.code, Code::AlreadyExists, "{e}");
    let e = admin
        .modify_column_families("t", &[FamilyChange::Drop("absent".into())])
        .await
        .unwrap_err();
    assert_eq!(e.code, Code::NotFound, "{e}");
    let updated = admin
        .modify_column_families(
            "t",
            &[FamilyChange::Update(
                Family::new("extra").gc(GcRule::MaxVersions(1)),
            )],
        )
        .await
        .unwrap();
    let extra = updated
        .proto
        .schema
        .as_ref()
        .unwrap()
        .families
        .iter()
        .find(|f| f.name == "extra")
        .unwrap()
        .clone();
    assert_eq!(
        extra.gc_rule.and_then(|r| r.rule),
        Some(tpb::gc_rule::Rule::MaxNumVersions(1))
    );
    assert_eq!(
        admin.get_table("t").await.unwrap().proto.schema,
        updated.proto.schema
    );

    // Drop "cf": its cells are no longer readable on any tablet, and it takes no writes;
    // "extra" keeps its cell.
    let dropped = admin
        .modify_column_families("t", &[FamilyChange::Drop("cf".into())])
        .await
        .unwrap();
    assert_eq!(dropped.families, vec!["extra".to_owned()]);
    let left = table
        .read_rows(RowSet::all(), None)
        .collect_rows()
        .await
        .unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].key.as_ref(), b"z1");
    assert!(
        left[0].cells.iter().all(|c| c.family == "extra"),
        "{left:?}"
    );
    let e = table
        .mutate_row("a1", vec![Mutation::set_cell("cf", "q", "x")])
        .await
        .unwrap_err();
    assert_eq!(e.code, Code::NotFound, "{e}");
    admin
        .modify_column_families("t", &[FamilyChange::Create(Family::new("cf"))])
        .await
        .unwrap();

    // drop_row_range of everything.
    write_all(&table, &rows, 3).await;
    admin.drop_row_range("t", None).await.unwrap();
    assert_eq!(present(&table).await, BTreeSet::new());
    // The table still takes writes.
    write_all(&table, &rows[..1], 4).await;
    assert_eq!(present(&table).await.len(), 1);

    master.shutdown().await;
    s1.shutdown().await.unwrap();
    s2.shutdown().await.unwrap();
    cell.shutdown().await.unwrap();
}

/// Tablets each live server serves, as the active master lists them.
async fn tablets_per_server(admin: &Admin) -> Vec<(String, u32)> {
    eventually("the server list", WAIT, || async {
        let servers = admin.list_servers().await.ok()?;
        Some(
            servers
                .into_iter()
                .map(|s| (s.server_id, s.tablets))
                .collect(),
        )
    })
    .await
}

/// Runs rounds on `master` until its picture lists `server`, then `n` more; answers how
/// many tablets `server` serves after them.
async fn rounds_with(master: &Master, server: &TabletServer, n: usize) -> usize {
    let active = eventually("the master leads", WAIT, || async { master.active() }).await;
    eventually("the master sees the server", WAIT, || async {
        active.round().await.ok()?;
        active
            .latest()
            .servers
            .live
            .contains_key(server.server_id())
            .then_some(())
    })
    .await;
    for _ in 0..n {
        active.round().await.unwrap();
    }
    active
        .latest()
        .servers
        .live
        .get(server.server_id())
        .map_or(0, |s| s.tablets.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_balancer_switch_is_cluster_wide_and_survives_failover() {
    let cell = LockCell::start(1).await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let s1 = start_tablet_server(&cell, root.path()).await.unwrap();
    let m1 = Master::start(master_config(&cell, root.path()))
        .await
        .unwrap();
    let client = Client::connect(&cell.addrs()).await.unwrap();
    let channels = client.channels().clone();
    all_served(&channels, &m1, 2).await;
    let m2 = Master::start(master_config(&cell, root.path()))
        .await
        .unwrap();
    let admin = client.admin();
    assert!(admin.cluster_status().await.unwrap().balancer_enabled);

    // Off: the previous setting was on (no file yet); the status says off at once.
    assert!(admin.set_balancer(false).await.unwrap());
    assert!(!admin.cluster_status().await.unwrap().balancer_enabled);
    assert!(!admin.set_balancer(false).await.unwrap());
    // The standby does not answer.
    let e = Error::from(
        channels
            .master(&m2.addr().to_string())
            .unwrap()
            .set_balancer(mpb::SetBalancerRequest { enabled: true })
            .await
            .unwrap_err(),
    );
    assert!(matches!(e.code, Code::NotLeader { .. }), "{e}");

    // Eight user tablets, all on the only server; then a second server joins. Rounds with
    // the switch off assign nothing to it and move nothing.
    admin
        .create_table(
            "b",
            &[Family::new("cf")],
            &[b"b", b"c", b"d", b"e", b"f", b"g", b"h"],
        )
        .await
        .unwrap();
    all_served(&channels, &m1, 10).await;
    let table = client.table("b").await.unwrap();
    let rows: Vec<Vec<u8>> = ["a", "b", "c", "d", "e", "f", "g", "h"]
        .iter()
        .flat_map(|p| (0..5).map(move |i| format!("{p}{i}").into_bytes()))
        .collect();
    write_all(&table, &rows, 1).await;
    let s2 = start_tablet_server(&cell, root.path()).await.unwrap();
    assert_eq!(rounds_with(&m1, &s2, 5).await, 0);

    // Failover: the standby leads and still sees the switch off.
    m1.shutdown().await;
    eventually("the standby leads", WAIT, || async { m2.epoch() }).await;
    assert!(!admin.cluster_status().await.unwrap().balancer_enabled);
    assert_eq!(rounds_with(&m2, &s2, 5).await, 0);
    let counts = tablets_per_server(&admin).await;
    assert!(
        counts
            .iter()
            .any(|(id, n)| *id == s2.server_id().0 && *n == 0),
        "{counts:?}"
    );

    // On: the previous setting was off, and the servers even out.
    assert!(!admin.set_balancer(true).await.unwrap());
    assert!(admin.cluster_status().await.unwrap().balancer_enabled);
    let counts = eventually("the servers evened out", WAIT, || async {
        let counts = tablets_per_server(&admin).await;
        let n: Vec<u32> = counts.iter().map(|(_, n)| *n).collect();
        let (lo, hi) = (n.iter().min()?, n.iter().max()?);
        (n.len() == 2 && hi - lo <= 1).then_some(counts)
    })
    .await;
    println!("after the balancer was turned on: {counts:?}");
    all_served(&channels, &m2, 10).await;
    // Reads find every row after the moves.
    assert_eq!(present(&table).await, rows.iter().cloned().collect());

    // The status of a master started with --no-balancer says off even with the switch on.
    let mut config = master_config(&cell, root.path());
    config.balancer.enabled = false;
    let m3 = Master::start(config).await.unwrap();
    m2.shutdown().await;
    eventually("the third master leads", WAIT, || async { m3.epoch() }).await;
    let status = admin.cluster_status().await.unwrap();
    assert!(!status.balancer_enabled, "{status:?}");
    assert!(admin.set_balancer(true).await.unwrap());

    m3.shutdown().await;
    s1.shutdown().await.unwrap();
    s2.shutdown().await.unwrap();
    cell.shutdown().await.unwrap();
}
