//! `MergeTablets` through the master, with real tablet servers and a real lock cell in
//! process: a table with split keys and rows in every tablet, merged twice until one tablet is
//! left — METADATA tiles the table with one tablet fewer each time, every row reads back, the
//! merged tablets take writes — and merging the last tablet, which has no right neighbour,
//! is `FailedPrecondition`.

#![allow(clippy::unwrap_used)]

use tabula_client::Channels;
use tabula_client::meta::{MetaTable, TabletRecord};
use tabula_common::{Code, Error, TableId, TabletId};
use tabula_master::Master;
use tabula_proto::tabula::master::v1 as mpb;
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
    let cell = LockCell::start(1).await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let server = start_tablet_server(&cell, root.path()).await.unwrap();
    let master = Master::start(master_config(&cell, root.path()))
        .await
        .unwrap();
    let channels = Channels::default();
    all_served(&channels, &master, 2).await;
    let table = TableId(
        create_table(&channels, &master, "r", &[b"m"])
            .await
            .table_id,
    );
    all_served(&channels, &master, 4).await;
    let meta = MetaTable::new(cell.client().unwrap(), channels.clone());
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
