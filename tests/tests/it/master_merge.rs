//! `MergeTablets` through the master, with real tablet servers and a real lock cell in
//! process: a table with split keys and rows in every tablet, merged twice until one tablet is
//! left — METADATA tiles the table with one tablet fewer each time, every row reads back, the
//! merged tablets take writes — and merging the last tablet, which has no right neighbour,
//! is `FailedPrecondition`. A merge a dead master left behind is finished by the next one:
//! unrecorded in METADATA, interrupted between the tablet server's two marks (settled from
//! its merge intent), or refused (its intent rolled back).

#![allow(clippy::unwrap_used)]

use tabula_client::Channels;
use tabula_client::meta::{MetaTable, TabletRecord};
use tabula_common::storage::LocalDir;
use tabula_common::{Code, Epoch, Error, TableId, TabletId};
use tabula_master::{Master, merge_intents};
use tabula_proto::tabula::master::v1 as mpb;
use tabula_proto::tabula::tablet::v1 as tpb;
use tabula_tabletserver::engine::manifest::Manifest;
use tabula_tabletserver::server::TabletServer;
use tabula_tests::master_helpers::{
    WAIT, all_served, create_table, get, master_config, put, put_retrying,
};
use tabula_tests::{LockCell, eventually, start_tablet_server};

async fn merge(
    channels: &Channels,
    master: &Master,
    table: &str,
    row: &[u8],
) -> Result<mpb::TabletRecord, Error> {
    let mut client = channels.master(&master.addr().to_string())?;
    let answer = client
        .merge_tablets(mpb::MergeTabletsRequest {
            table: table.into(),
            row: row.to_vec(),
        })
        .await
        .map_err(Error::from)?
        .into_inner();
    Ok(answer.merged.unwrap())
}

/// The records of `table` in METADATA, checked to tile it from its beginning to its end.
async fn tiles(meta: &MetaTable, table: TableId) -> Vec<TabletRecord> {
    let tablets = meta.scan_table(table).await.unwrap();
    assert!(tablets[0].start_row.is_empty(), "{tablets:?}");
    for pair in tablets.windows(2) {
        assert_eq!(pair[0].end_row.as_ref(), Some(&pair[1].start_row));
    }
    assert_eq!(tablets.last().unwrap().end_row, None);
    tablets
}

async fn read_back(meta: &MetaTable, table: TableId, rows: &[(Vec<u8>, Vec<u8>)]) {
    for (row, value) in rows {
        let got = eventually("a row to read back", WAIT, || async {
            get(meta, table, row).await.ok()
        })
        .await;
        assert_eq!(
            got.as_ref(),
            Some(value),
            "row {:?} lost",
            row.escape_ascii()
        );
    }
}

/// One lock node, one tablet server and a master over a temporary storage root, with table
/// `name` (split at `splits`) created and every tablet served.
struct OneServer {
    cell: LockCell,
    root: tempfile::TempDir,
    server: TabletServer,
    master: Master,
    channels: Channels,
    meta: MetaTable,
    table: TableId,
}

impl OneServer {
    async fn start(name: &str, splits: &[&[u8]]) -> OneServer {
        let cell = LockCell::start(1).await.unwrap();
        let root = tempfile::tempdir().unwrap();
        let server = start_tablet_server(&cell, root.path()).await.unwrap();
        let master = Master::start(master_config(&cell, root.path()))
            .await
            .unwrap();
        let channels = Channels::default();
        all_served(&channels, &master, 2).await;
        let table = TableId(
            create_table(&channels, &master, name, splits)
                .await
                .table_id,
        );
        let tablets = 3 + u32::try_from(splits.len()).unwrap();
        all_served(&channels, &master, tablets).await;
        let meta = MetaTable::new(cell.client().unwrap(), channels.clone());
        OneServer {
            cell,
            root,
            server,
            master,
            channels,
            meta,
            table,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn merge_tablets_leaves_one_tablet_fewer_and_loses_nothing() {
    let cell = LockCell::start(1).await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let s1 = start_tablet_server(&cell, root.path()).await.unwrap();
    let s2 = start_tablet_server(&cell, root.path()).await.unwrap();
    let master = Master::start(master_config(&cell, root.path()))
        .await
        .unwrap();
    let channels = Channels::default();
    all_served(&channels, &master, 2).await;
    let table = TableId(
        create_table(&channels, &master, "m", &[b"g", b"p"])
            .await
            .table_id,
    );
    all_served(&channels, &master, 5).await;
    let meta = MetaTable::new(cell.client().unwrap(), channels.clone());
    assert_eq!(tiles(&meta, table).await.len(), 3);

    // Rows in every tablet, with ~1 KiB values so some are flushed before the merge.
    let mut rows: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for first in b'a'..=b'z' {
        for i in 0..8 {
            let row = format!("{}{i:02}", first as char).into_bytes();
            let value = format!("{}-{}", row.escape_ascii(), "v".repeat(1000)).into_bytes();
            put(&meta, table, &row, &value).await.unwrap();
            rows.push((row, value));
        }
    }

    // ["g", "p") with ["p", end).
    let before = tiles(&meta, table).await;
    let merged = merge(&channels, &master, "m", b"h").await.unwrap();
    assert_eq!(merged.start_row, b"g".to_vec());
    assert_eq!(merged.end_row, None);
    let after = tiles(&meta, table).await;
    assert_eq!(after.len(), 2, "{after:?}");
    let storage = LocalDir::open(root.path()).unwrap();
    for (t, kept) in [(&before[1], false), (&before[2], false), (&after[1], true)] {
        let exists = tabula_common::StorageRoot::exists(&storage, &Manifest::path(t.tablet));
        assert_eq!(exists.unwrap(), kept, "manifest of tablet {}", t.tablet);
    }
    assert_eq!(
        after[0].tablet, before[0].tablet,
        "the first tablet is untouched"
    );
    assert_eq!(after[1].tablet, TabletId(merged.tablet_id));
    assert!(after[1].epoch.0 > before[1].epoch.0.max(before[2].epoch.0));
    all_served(&channels, &master, 4).await;
    read_back(&meta, table, &rows).await;

    // The merged tablet takes writes on both sides of the old boundary.
    for row in [&b"h99"[..], b"q99", b"zz"] {
        let value = [row, b"-after"].concat();
        put_retrying(&meta, table, row, &value).await;
        rows.push((row.to_vec(), value));
    }
    read_back(&meta, table, &rows).await;

    // Once more: the whole table in one tablet.
    let whole = merge(&channels, &master, "m", b"a").await.unwrap();
    assert_eq!(
        (whole.start_row.as_slice(), whole.end_row),
        (&b""[..], None)
    );
    let last = tiles(&meta, table).await;
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].tablet, TabletId(whole.tablet_id));
    all_served(&channels, &master, 3).await;
    read_back(&meta, table, &rows).await;
    put_retrying(&meta, table, b"b99", b"one tablet").await;
    assert_eq!(
        get(&meta, table, b"b99").await.unwrap().as_deref(),
        Some(&b"one tablet"[..])
    );

    // The last tablet has no right neighbour.
    let e = merge(&channels, &master, "m", b"x").await.unwrap_err();
    assert_eq!(e.code, Code::FailedPrecondition, "{e}");
    assert_eq!(tiles(&meta, table).await.len(), 1);

    master.shutdown().await;
    for s in [s1, s2] {
        s.shutdown().await.unwrap();
    }
    cell.shutdown().await.unwrap();
}

/// A master that dies after the tablet server merged (both tablets unloaded and marked) but
/// before METADATA knew: the next master loads the old tablets, is answered the merged one,
/// and finishes the merge in METADATA.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_merge_the_master_did_not_record_is_finished_by_the_next_master() {
    let OneServer {
        cell,
        root,
        server,
        master,
        channels,
        meta,
        table,
    } = OneServer::start("r", &[b"m"]).await;
    let mut rows = Vec::new();
    for row in [&b"a"[..], b"l", b"m", b"z"] {
        let value = [row, b"-v"].concat();
        put(&meta, table, row, &value).await.unwrap();
        rows.push((row.to_vec(), value));
    }
    let epoch = tabula_tests::master_helpers::status(&channels, &master)
        .await
        .unwrap()
        .master_epoch;
    let tablets = tiles(&meta, table).await;
    master.shutdown().await;

    // What the dead master did: unload both, merge on the server; METADATA untouched.
    let (left, right) = (&tablets[0], &tablets[1]);
    let master_epoch = Some(tabula_proto::tabula::tablet::v1::MasterEpoch { epoch });
    let mut admin = channels.admin(&left.server_addr).unwrap();
    for t in [left, right] {
        admin
            .unload_tablet(tabula_proto::tabula::tablet::v1::UnloadTabletRequest {
                master_epoch,
                tablet_id: t.tablet.0,
                tablet_epoch: t.epoch.0,
            })
            .await
            .unwrap();
    }
    let merged = TabletId((1 << 62) | 0x4d45_5247);
    admin
        .merge_tablets(tabula_proto::tabula::tablet::v1::MergeTabletsRequest {
            master_epoch,
            table_id: table.0,
            left_tablet_id: left.tablet.0,
            right_tablet_id: right.tablet.0,
            merged_tablet_id: merged.0,
            merged_epoch: left.epoch.0.max(right.epoch.0) + 1,
        })
        .await
        .unwrap();

    let next = Master::start(master_config(&cell, root.path()))
        .await
        .unwrap();
    let one = eventually("the merge recorded in METADATA", WAIT, || async {
        let t = meta.scan_table(table).await.ok()?;
        (t.len() == 1).then_some(t)
    })
    .await;
    assert_eq!(one[0].tablet, merged);
    tiles(&meta, table).await;
    all_served(&channels, &next, 3).await;
    read_back(&meta, table, &rows).await;
    put_retrying(&meta, table, b"n", b"after").await;

    next.shutdown().await;
    server.shutdown().await.unwrap();
    cell.shutdown().await.unwrap();
}

/// Unloads `tablets` from the server at `addr` as a master at `epoch` would.
async fn unload(channels: &Channels, addr: &str, epoch: u64, tablets: &[&TabletRecord]) {
    let mut admin = channels.admin(addr).unwrap();
    for t in tablets {
        admin
            .unload_tablet(tpb::UnloadTabletRequest {
                master_epoch: Some(tpb::MasterEpoch { epoch }),
                tablet_id: t.tablet.0,
                tablet_epoch: t.epoch.0,
            })
            .await
            .unwrap();
    }
}

/// The merge intents left in the lock service.
async fn intents(cell: &LockCell) -> Vec<merge_intents::StoredIntent> {
    merge_intents::list(&cell.client().unwrap()).await.unwrap()
}

/// The gap merge intents close: the tablet server died after marking the left tablet as
/// replaced (the commit point) but before marking the right one. Without the intent a master
/// would load the unmarked right tablet and serve writes the merged tablet never sees; with it
/// the next master finishes the merge before assigning anything it names.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_merge_interrupted_between_its_two_marks_is_finished_from_its_intent() {
    let OneServer {
        cell,
        root,
        server,
        master,
        channels,
        meta,
        table,
    } = OneServer::start("gap", &[b"m"]).await;
    let mut rows = Vec::new();
    for row in [&b"a"[..], b"l", b"m", b"z"] {
        let value = [row, b"-v"].concat();
        put(&meta, table, row, &value).await.unwrap();
        rows.push((row.to_vec(), value));
    }
    let epoch = tabula_tests::master_helpers::status(&channels, &master)
        .await
        .unwrap()
        .master_epoch;
    let tablets = tiles(&meta, table).await;
    master.shutdown().await;

    // What the dead master and the dying server did: the intent, both unloaded, the merge,
    // and then the right tablet's mark undone (the server died before storing it).
    let (left, right) = (&tablets[0], &tablets[1]);
    let merged = TabletId((1 << 62) | 0x4741_5050);
    let merged_epoch = left.epoch.0.max(right.epoch.0) + 1;
    merge_intents::write(
        &cell.client().unwrap(),
        &merge_intents::MergeIntent {
            table,
            left: left.tablet,
            right: right.tablet,
            merged,
            merged_epoch: Epoch(merged_epoch),
        },
    )
    .await
    .unwrap();
    unload(&channels, &left.server_addr, epoch, &[left, right]).await;
    channels
        .admin(&left.server_addr)
        .unwrap()
        .merge_tablets(tpb::MergeTabletsRequest {
            master_epoch: Some(tpb::MasterEpoch { epoch }),
            table_id: table.0,
            left_tablet_id: left.tablet.0,
            right_tablet_id: right.tablet.0,
            merged_tablet_id: merged.0,
            merged_epoch,
        })
        .await
        .unwrap();
    let storage = LocalDir::open(root.path()).unwrap();
    let mut unmarked = Manifest::load(&storage, right.tablet).unwrap();
    assert_eq!(unmarked.split_into, [merged]);
    unmarked.split_into.clear();
    unmarked.store(&storage).unwrap();
    assert_eq!(
        Manifest::load(&storage, left.tablet).unwrap().split_into,
        [merged]
    );

    let next = Master::start(master_config(&cell, root.path()))
        .await
        .unwrap();
    let one = eventually("the merge finished and recorded", WAIT, || async {
        let t = meta.scan_table(table).await.ok()?;
        (t.len() == 1).then_some(t)
    })
    .await;
    assert_eq!(one[0].tablet, merged);
    for t in [left.tablet, right.tablet] {
        let exists = tabula_common::StorageRoot::exists(&storage, &Manifest::path(t));
        assert!(
            !exists.unwrap(),
            "tablet {t}'s manifest is forgotten once recorded"
        );
    }
    assert!(intents(&cell).await.is_empty(), "the intent is settled");
    all_served(&channels, &next, 3).await;
    read_back(&meta, table, &rows).await;
    put_retrying(&meta, table, b"n", b"after").await;

    next.shutdown().await;
    server.shutdown().await.unwrap();
    cell.shutdown().await.unwrap();
}

/// A merge intent whose merge the tablet server refuses (here: tablets that are not
/// neighbours) is rolled back: the intent goes and both tablets are served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_merge_intent_is_rolled_back() {
    let OneServer {
        cell,
        root,
        server,
        master,
        channels,
        meta,
        table,
    } = OneServer::start("back", &[b"g", b"p"]).await;
    let mut rows = Vec::new();
    for row in [&b"a"[..], b"h", b"q"] {
        let value = [row, b"-v"].concat();
        put(&meta, table, row, &value).await.unwrap();
        rows.push((row.to_vec(), value));
    }
    let epoch = tabula_tests::master_helpers::status(&channels, &master)
        .await
        .unwrap()
        .master_epoch;
    let tablets = tiles(&meta, table).await;
    master.shutdown().await;

    let (first, last) = (&tablets[0], &tablets[2]);
    merge_intents::write(
        &cell.client().unwrap(),
        &merge_intents::MergeIntent {
            table,
            left: first.tablet,
            right: last.tablet,
            merged: TabletId((1 << 62) | 0x4241_434b),
            merged_epoch: Epoch(first.epoch.0.max(last.epoch.0) + 1),
        },
    )
    .await
    .unwrap();
    unload(&channels, &first.server_addr, epoch, &[first, last]).await;

    let next = Master::start(master_config(&cell, root.path()))
        .await
        .unwrap();
    eventually("the refused merge rolled back", WAIT, || async {
        intents(&cell).await.is_empty().then_some(())
    })
    .await;
    all_served(&channels, &next, 5).await;
    let now = tiles(&meta, table).await;
    assert_eq!(
        now.iter().map(|t| t.tablet).collect::<Vec<_>>(),
        tablets.iter().map(|t| t.tablet).collect::<Vec<_>>(),
        "the same three tablets"
    );
    read_back(&meta, table, &rows).await;

    next.shutdown().await;
    server.shutdown().await.unwrap();
    cell.shutdown().await.unwrap();
}

/// Split siblings share their parent's SSTables. Once one of them is major-compacted, the
/// shared files are named by the other only and still hold the compacted sibling's old rows —
/// here a row deleted since — so the tablet server refuses to merge them; the master then
/// major-compacts both and merges, and the deleted row stays deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn split_siblings_are_compacted_by_the_master_and_merged() {
    let OneServer {
        cell,
        root: _root,
        server,
        master,
        channels,
        meta,
        table,
    } = OneServer::start("sib", &[]).await;
    let mut rows = Vec::new();
    for first in b'a'..=b'z' {
        let row = vec![first];
        let value = [&row[..], b"-v"].concat();
        put(&meta, table, &row, &value).await.unwrap();
        rows.push((row, value));
    }
    let mut admin = channels.master(&master.addr().to_string()).unwrap();
    admin
        .flush(mpb::FlushRequest {
            table: "sib".into(),
        })
        .await
        .unwrap();
    admin
        .split_tablet(mpb::SplitTabletRequest {
            table: "sib".into(),
            row: b"m".to_vec(),
            at_row: true,
        })
        .await
        .unwrap();
    all_served(&channels, &master, 4).await;

    // Delete "b" in the left sibling, then major-compact only that sibling: the SSTable the
    // right sibling still names holds the old "b".
    let client = tabula_client::Client::connect(&cell.addrs()).await.unwrap();
    client
        .table("sib")
        .await
        .unwrap()
        .mutate_row(&b"b"[..], vec![tabula_client::Mutation::delete_row()])
        .await
        .unwrap();
    rows.retain(|(row, _)| row != b"b");
    let siblings = tiles(&meta, table).await;
    assert_eq!(siblings.len(), 2, "{siblings:?}");
    let epoch = tabula_tests::master_helpers::status(&channels, &master)
        .await
        .unwrap()
        .master_epoch;
    channels
        .admin(&siblings[0].server_addr)
        .unwrap()
        .compact_tablet(tpb::CompactTabletRequest {
            master_epoch: Some(tpb::MasterEpoch { epoch }),
            tablet_id: siblings[0].tablet.0,
            tablet_epoch: siblings[0].epoch.0,
            major: true,
        })
        .await
        .unwrap();

    let merged = merge(&channels, &master, "sib", b"a").await.unwrap();
    assert_eq!(
        (merged.start_row.as_slice(), merged.end_row),
        (&b""[..], None)
    );
    assert_eq!(tiles(&meta, table).await.len(), 1);
    all_served(&channels, &master, 3).await;
    read_back(&meta, table, &rows).await;
    assert_eq!(
        get(&meta, table, b"b").await.unwrap(),
        None,
        "a deleted row came back"
    );

    master.shutdown().await;
    server.shutdown().await.unwrap();
    cell.shutdown().await.unwrap();
}
