//! The master's table-wide admin commands with real tablet servers and a real lock cell, in
//! process: `Flush` empties every tablet's memtable into SSTables, `Compact` (major) leaves one
//! SSTable per tablet, and `DropRowRange` deletes exactly the rows with a prefix spanning two
//! tablets on two servers, then every row of the table.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use tabula_client::Channels;
use tabula_client::meta::MetaTable;
use tabula_common::{Code, Error, TableId};
use tabula_master::Master;
use tabula_proto::tabula::master::v1 as mpb;
use tabula_proto::tabula::tablet::v1 as tpb;
use tabula_tabletserver::server::TabletServer;
use tabula_tests::master_helpers::{WAIT, all_served, get, master_config, put};
use tabula_tests::{LockCell, eventually, start_tablet_server};

/// Writes every row (value = the row key and `round`), retrying while a location moves.
async fn write_all(meta: &MetaTable, table: TableId, rows: &[Vec<u8>], round: u8) {
    for row in rows {
        let mut value = row.clone();
        value.push(round);
        eventually("a write to succeed", WAIT, || async {
            put(meta, table, row, &value).await.ok()
        })
        .await;
    }
}

/// The rows of `rows` that read back with a value.
async fn present(meta: &MetaTable, table: TableId, rows: &[Vec<u8>]) -> BTreeSet<Vec<u8>> {
    let mut out = BTreeSet::new();
    for row in rows {
        let got = eventually("a read to succeed", WAIT, || async {
            get(meta, table, row).await.ok()
        })
        .await;
        if got.is_some() {
            out.insert(row.clone());
        }
    }
    out
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

/// Runs an admin command until it is not `Unavailable` (a tablet of the table may be moving
/// between servers while the balancer settles); panics on any other error.
async fn admin_call<F, Fut>(what: &str, call: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), tonic::Status>>,
{
    eventually(what, WAIT, || async {
        match call().await {
            Ok(()) => Some(()),
            Err(e) if e.code() == tonic::Code::Unavailable => None,
            Err(e) => panic!("{what}: {e:?}"),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flush_compact_and_drop_row_range_reach_every_tablet_of_the_table() {
    let cell = LockCell::start(1).await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let s1 = start_tablet_server(&cell, root.path()).await.unwrap();
    let s2 = start_tablet_server(&cell, root.path()).await.unwrap();
    let master = Master::start(master_config(&cell, root.path()))
        .await
        .unwrap();
    let channels = Channels::default();
    all_served(&channels, &master, 2).await;
    let addr = master.addr().to_string();
    let mut client = channels.master(&addr).unwrap();
    let table = client
        .create_table(mpb::CreateTableRequest {
            name: "t".into(),
            schema: Some(tpb::Schema {
                families: vec![tpb::ColumnFamily {
                    name: "cf".into(),
                    gc_rule: None,
                }],
            }),
            split_keys: vec![b"g".to_vec(), b"k5".to_vec(), b"p".to_vec()],
        })
        .await
        .unwrap()
        .into_inner()
        .table
        .unwrap();
    let table_id = TableId(table.table_id);
    all_served(&channels, &master, 6).await;
    let meta = MetaTable::new(cell.client().unwrap(), channels.clone());
    let servers = [&s1, &s2];
    // Tablets [-, g) [g, k5) [k5, p) [p, -): the prefix "k" spans the middle two.
    let tablets = meta.scan_table(table_id).await.unwrap();
    assert_eq!(tablets.len(), 4);
    let rows: Vec<Vec<u8>> = ["a", "g", "k", "p", "z"]
        .iter()
        .flat_map(|p| (0..10).map(move |i| format!("{p}{i}").into_bytes()))
        .collect();
    write_all(&meta, table_id, &rows, 1).await;

    // Flush: every tablet's memtable becomes an SSTable.
    admin_call("Flush", || {
        let mut client = client.clone();
        async move {
            client
                .flush(mpb::FlushRequest { table: "t".into() })
                .await
                .map(|_| ())
        }
    })
    .await;
    let flushed = tablet_statuses(&channels, &servers, table_id, 4).await;
    assert_eq!(flushed.len(), 4, "{flushed:?}");
    for t in &flushed {
        assert_eq!(t.memtable_bytes, 0, "{t:?}");
        assert!(t.sstable_count >= 1, "{t:?}");
    }

    // A second round of writes and a minor compaction: two SSTables; a major one: one.
    write_all(&meta, table_id, &rows, 2).await;
    admin_call("Compact (minor)", || {
        let mut client = client.clone();
        async move {
            client
                .compact(mpb::CompactRequest {
                    table: "t".into(),
                    major: false,
                })
                .await
                .map(|_| ())
        }
    })
    .await;
    for t in tablet_statuses(&channels, &servers, table_id, 4).await {
        assert_eq!(t.memtable_bytes, 0, "{t:?}");
    }
    admin_call("Compact (major)", || {
        let mut client = client.clone();
        async move {
            client
                .compact(mpb::CompactRequest {
                    table: "t".into(),
                    major: true,
                })
                .await
                .map(|_| ())
        }
    })
    .await;
    let compacted = tablet_statuses(&channels, &servers, table_id, 4).await;
    assert_eq!(compacted.len(), 4, "{compacted:?}");
    for t in &compacted {
        assert_eq!(t.sstable_count, 1, "{t:?}");
        assert_eq!(t.memtable_bytes, 0, "{t:?}");
    }
    let all: BTreeSet<Vec<u8>> = rows.iter().cloned().collect();
    assert_eq!(present(&meta, table_id, &rows).await, all);
    let mut last = b"a3".to_vec();
    last.push(2);
    assert_eq!(get(&meta, table_id, b"a3").await.unwrap(), Some(last));

    // Bad requests.
    let e = client
        .drop_row_range(mpb::DropRowRangeRequest {
            name: "t".into(),
            target: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    let e = Error::from(
        client
            .flush(mpb::FlushRequest {
                table: "nope".into(),
            })
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, Code::NotFound, "{e}");

    // DropRowRange by a prefix spanning two tablets.
    use mpb::drop_row_range_request::Target;
    admin_call("DropRowRange (prefix)", || {
        let mut client = client.clone();
        async move {
            client
                .drop_row_range(mpb::DropRowRangeRequest {
                    name: "t".into(),
                    target: Some(Target::RowKeyPrefix(b"k".to_vec())),
                })
                .await
                .map(|_| ())
        }
    })
    .await;
    let kept: BTreeSet<Vec<u8>> = rows.iter().filter(|r| r[0] != b'k').cloned().collect();
    assert_eq!(present(&meta, table_id, &rows).await, kept);

    // And everything.
    admin_call("DropRowRange (all)", || {
        let mut client = client.clone();
        async move {
            client
                .drop_row_range(mpb::DropRowRangeRequest {
                    name: "t".into(),
                    target: Some(Target::DeleteAllDataFromTable(true)),
                })
                .await
                .map(|_| ())
        }
    })
    .await;
    assert_eq!(present(&meta, table_id, &rows).await, BTreeSet::new());
    // The table still takes writes.
    write_all(&meta, table_id, &rows[..1], 3).await;
    assert_eq!(present(&meta, table_id, &rows[..1]).await.len(), 1);

    master.shutdown().await;
    s1.shutdown().await.unwrap();
    s2.shutdown().await.unwrap();
    cell.shutdown().await.unwrap();
}
