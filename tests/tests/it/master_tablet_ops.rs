//! The master's operations on single tablets, with real tablet servers and a real lock cell in
//! process: `SplitTablet` at a row and at the middle (METADATA tiles the table with the
//! children, every row reads back, the admin view shows them), `MoveTablet` under a writer
//! (how long the tablet is unavailable is printed, not asserted), no tablet ever served by two
//! servers at once while tablets move and a server dies (checked via epochs: a lower-epoch copy
//! must refuse writes), and the error codes of refused splits and of `MergeTablets`.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tabula_client::Channels;
use tabula_client::meta::{MetaTable, TabletState};
use tabula_common::{Code, Error, RowKey, TableId, TabletId};
use tabula_master::Master;
use tabula_proto::google::bigtable::v2 as bt;
use tabula_proto::tabula::master::v1 as mpb;
use tabula_proto::tabula::tablet::v1 as tpb;
use tabula_tests::master_helpers::{
    WAIT, all_served, create_table, get, master_config, put, put_retrying, status,
};
use tabula_tests::{LockCell, eventually, start_tablet_server};
use tokio::time::Instant;

fn rows(n: u32) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("row{i:04}").into_bytes()).collect()
}

async fn split(
    channels: &Channels,
    master: &Master,
    table: &str,
    row: &[u8],
    at_row: bool,
) -> Result<(mpb::TabletRecord, mpb::TabletRecord), Error> {
    let mut client = channels.master(&master.addr().to_string())?;
    let answer = client
        .split_tablet(mpb::SplitTabletRequest {
            table: table.into(),
            row: row.to_vec(),
            at_row,
        })
        .await
        .map_err(Error::from)?
        .into_inner();
    Ok((answer.left.unwrap(), answer.right.unwrap()))
}

async fn listed_tablets(channels: &Channels, master: &Master, table: &str) -> Vec<u64> {
    let mut client = channels.master(&master.addr().to_string()).unwrap();
    client
        .list_tablets(mpb::ListTabletsRequest {
            table: table.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .tablets
        .iter()
        .map(|t| t.record.as_ref().unwrap().tablet_id)
        .collect()
}

async fn read_all_back(meta: &MetaTable, table: TableId, rows: &[Vec<u8>], value: &[u8]) {
    for row in rows {
        let got = eventually("a row to read back", WAIT, || async {
            get(meta, table, row).await.ok()
        })
        .await;
        assert_eq!(got.as_deref(), Some(value), "row {:?} lost", row);
    }
}

/// The records of `table` in METADATA tile it: from the table's beginning to its end, each
/// starting where the previous ends.
async fn assert_tiles(meta: &MetaTable, table: TableId) -> Vec<tabula_client::meta::TabletRecord> {
    let tablets = meta.scan_table(table).await.unwrap();
    assert!(tablets[0].start_row.is_empty(), "{tablets:?}");
    for pair in tablets.windows(2) {
        assert_eq!(pair[0].end_row.as_ref(), Some(&pair[1].start_row));
    }
    assert_eq!(tablets.last().unwrap().end_row, None);
    tablets
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn split_tablet_at_a_row_and_at_the_middle_is_recorded_and_loses_nothing() {
    let cell = LockCell::start(1).await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let s1 = start_tablet_server(&cell, root.path()).await.unwrap();
    let s2 = start_tablet_server(&cell, root.path()).await.unwrap();
    let master = Master::start(master_config(&cell, root.path()))
        .await
        .unwrap();
    let channels = Channels::default();
    all_served(&channels, &master, 2).await;
    let table = create_table(&channels, &master, "t", &[]).await;
    let table_id = TableId(table.table_id);
    let tiny = TableId(create_table(&channels, &master, "tiny", &[]).await.table_id);
    all_served(&channels, &master, 4).await;
    let meta = MetaTable::new(cell.client().unwrap(), channels.clone());

    // A tablet whose few rows are all in its memtable has no middle row: the server refuses.
    put(&meta, tiny, b"a", b"v").await.unwrap();
    let e = split(&channels, &master, "tiny", b"a", false)
        .await
        .unwrap_err();
    assert_eq!(e.code, Code::FailedPrecondition, "{e}");

    // ~200 KiB in 200 rows: past the test memtable size, so some of it is flushed already.
    let value: Vec<u8> = (0..1024).map(|_| rand::random::<u8>()).collect();
    let rows = rows(200);
    for row in &rows {
        put(&meta, table_id, row, &value).await.unwrap();
    }
    let parent = meta.locate(table_id, b"row0100").await.unwrap();
    let (left, right) = split(&channels, &master, "t", b"row0100", true)
        .await
        .unwrap();
    assert_eq!(left.start_row, b"");
    assert_eq!(left.end_row.as_deref(), Some(&b"row0100"[..]));
    assert_eq!(right.start_row, b"row0100");
    assert_eq!(right.end_row, None);
    assert_eq!(left.tablet_epoch, parent.epoch.0 + 1);
    assert_eq!(left.server_id, parent.server.as_ref().unwrap().0);
    let tablets = assert_tiles(&meta, table_id).await;
    let ids: Vec<u64> = tablets.iter().map(|t| t.tablet.0).collect();
    assert_eq!(ids, vec![left.tablet_id, right.tablet_id]);
    assert!(!ids.contains(&parent.tablet.0));
    let storage = tabula_common::storage::LocalDir::open(root.path()).unwrap();
    let manifest = |t: u64| {
        let path = tabula_tabletserver::engine::manifest::Manifest::path(TabletId(t));
        tabula_common::StorageRoot::exists(&storage, &path).unwrap()
    };
    assert!(
        !manifest(parent.tablet.0),
        "the recorded split's parent manifest is forgotten"
    );
    assert!(manifest(left.tablet_id) && manifest(right.tablet_id));
    read_all_back(&meta, table_id, &rows, &value).await;
    eventually("ListTablets to show the children", WAIT, || async {
        let listed = listed_tablets(&channels, &master, "t").await;
        (listed == ids).then_some(())
    })
    .await;

    // The split flushed everything, so the right child has a middle row now.
    let (l2, r2) = split(&channels, &master, "t", b"row0150", false)
        .await
        .unwrap();
    assert_eq!(l2.start_row, b"row0100");
    let middle = l2.end_row.clone().unwrap();
    assert!(&middle[..] > b"row0100".as_slice() && r2.start_row == middle);
    assert_eq!(r2.end_row, None);
    assert_eq!(l2.tablet_epoch, right.tablet_epoch + 1);
    let tablets = assert_tiles(&meta, table_id).await;
    let ids: Vec<u64> = tablets.iter().map(|t| t.tablet.0).collect();
    assert_eq!(ids, vec![left.tablet_id, l2.tablet_id, r2.tablet_id]);
    all_served(&channels, &master, 6).await;
    read_all_back(&meta, table_id, &rows, &value).await;
    // Writes land in the children.
    put_retrying(&meta, table_id, b"row0199", b"new").await;
    assert_eq!(
        get(&meta, table_id, b"row0199").await.unwrap().as_deref(),
        Some(&b"new"[..])
    );

    master.shutdown().await;
    s1.shutdown().await.unwrap();
    s2.shutdown().await.unwrap();
    cell.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn move_tablet_under_a_writer_loses_nothing_and_raises_the_epoch() {
    let cell = LockCell::start(1).await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let s1 = start_tablet_server(&cell, root.path()).await.unwrap();
    let s2 = start_tablet_server(&cell, root.path()).await.unwrap();
    let master = Master::start(master_config(&cell, root.path()))
        .await
        .unwrap();
    let channels = Channels::default();
    all_served(&channels, &master, 2).await;
    let table = create_table(&channels, &master, "m", &[]).await;
    let table_id = TableId(table.table_id);
    all_served(&channels, &master, 3).await;
    let meta = MetaTable::new(cell.client().unwrap(), channels.clone());
    let rows = rows(150);
    let value = vec![7u8; 512];
    for row in &rows {
        put(&meta, table_id, row, &value).await.unwrap();
    }
    let before = meta.locate(table_id, b"row0000").await.unwrap();
    let from = before.server.clone().unwrap();
    let to = if &from == s1.server_id() {
        s2.server_id().clone()
    } else {
        s1.server_id().clone()
    };

    // A writer loops on one row and notes when each acknowledged write completed.
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let writer = {
        let meta = meta.clone();
        let stop = stop.clone();
        let count = count.clone();
        tokio::spawn(async move {
            let mut acked: Vec<Instant> = Vec::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                if put(&meta, table_id, b"hot", &n.to_be_bytes()).await.is_ok() {
                    acked.push(Instant::now());
                    count.fetch_add(1, Ordering::Relaxed);
                }
                tokio::task::yield_now().await;
            }
            acked
        })
    };
    let acks_at_least = |n: u64| {
        let count = count.clone();
        async move {
            eventually("the writer's acknowledgements", WAIT, || async {
                (count.load(Ordering::Relaxed) >= n).then_some(())
            })
            .await;
        }
    };
    acks_at_least(50).await;
    let mut client = channels.master(&master.addr().to_string()).unwrap();
    let started = Instant::now();
    let moved = client
        .move_tablet(mpb::MoveTabletRequest {
            tablet_id: before.tablet.0,
            server_id: to.0.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .tablet
        .unwrap();
    let answered = Instant::now();
    // Let the writer get well going on the new server, then stop it.
    acks_at_least(count.load(Ordering::Relaxed) + 50).await;
    stop.store(true, Ordering::Relaxed);
    let acked = writer.await.unwrap();
    // The longest gap between acknowledged writes around the move.
    let gap = acked
        .windows(2)
        .filter(|w| w[1] >= started && w[0] <= answered)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    let typical = acked
        .windows(2)
        .filter(|w| w[1] < started)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    println!(
        "move unavailability: the longest gap between acknowledged writes across the move was \
         {gap:?} (MoveTablet answered in {:?}; longest gap before the move {typical:?}; {} \
         writes acknowledged)",
        answered - started,
        acked.len()
    );

    assert_eq!(moved.server_id, to.0);
    assert!(moved.tablet_epoch > before.epoch.0, "{moved:?} {before:?}");
    let after = meta.locate(table_id, b"row0000").await.unwrap();
    assert_eq!(after.server.as_ref(), Some(&to));
    assert!(after.epoch > before.epoch);
    read_all_back(&meta, table_id, &rows, &value).await;
    assert!(get(&meta, table_id, b"hot").await.unwrap().is_some());
    // The old epoch is fenced everywhere: on the source (which unloaded it) and on the target
    // (which serves a newer epoch). The same check as the double-serving watch's.
    for addr in [&before.server_addr, &after.server_addr] {
        let refused = write_at(&channels, addr, table_id.0, before.tablet.0, before.epoch.0).await;
        assert!(
            matches!(
                refused.as_ref().map_err(|e| &e.code),
                Err(Code::FailedPrecondition | Code::WrongTablet { .. } | Code::Unavailable)
            ),
            "a write at the old epoch on {addr} answered {refused:?}"
        );
    }

    master.shutdown().await;
    s1.shutdown().await.unwrap();
    s2.shutdown().await.unwrap();
    cell.shutdown().await.unwrap();
}

/// What one poll of every tablet server saw: per tablet, `(server address, table, epoch)`.
type Sightings = BTreeMap<u64, Vec<(String, u64, u64)>>;

/// Polls every address's `ListTablets` (without a master epoch: a pure observer) until `stop`;
/// in every round, a tablet reported by two servers must be at two epochs, and the lower one
/// must refuse a write at once. Answers (rounds, tablets seen twice).
async fn watch_for_double_serving(
    channels: Channels,
    addrs: Vec<String>,
    stop: Arc<AtomicBool>,
) -> (u64, u64) {
    let mut rounds = 0;
    let mut doubles = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let mut seen = Sightings::new();
        for addr in &addrs {
            let Ok(mut admin) = channels.admin(addr) else {
                continue;
            };
            let Ok(answer) = admin
                .list_tablets(tpb::ListTabletsRequest { master_epoch: None })
                .await
            else {
                continue;
            };
            for status in answer.into_inner().tablets {
                let d = status.tablet.unwrap();
                seen.entry(d.tablet_id).or_default().push((
                    addr.clone(),
                    d.table_id,
                    d.tablet_epoch,
                ));
            }
        }
        rounds += 1;
        for (tablet, mut copies) in seen {
            if copies.len() < 2 {
                continue;
            }
            doubles += 1;
            copies.sort_by_key(|c| c.2);
            for pair in copies.windows(2) {
                assert_ne!(
                    pair[0].2, pair[1].2,
                    "tablet {tablet} served by two servers at one epoch: {copies:?}"
                );
            }
            // Every copy but the newest must refuse a write at its own epoch.
            for (addr, table, epoch) in &copies[..copies.len() - 1] {
                let refused = write_at(&channels, addr, *table, tablet, *epoch).await;
                assert!(
                    matches!(
                        refused.as_ref().map_err(|e| &e.code),
                        Err(Code::FailedPrecondition
                            | Code::WrongTablet { .. }
                            | Code::Unavailable)
                    ),
                    "tablet {tablet} at epoch {epoch} on {addr} answered {refused:?} while \
                     another server serves it: {copies:?}"
                );
            }
        }
    }
    (rounds, doubles)
}

async fn write_at(
    channels: &Channels,
    addr: &str,
    table: u64,
    tablet: u64,
    epoch: u64,
) -> Result<(), Error> {
    let mut data = channels.data(addr)?;
    // A row key no test reads; METADATA rows are written only by the master.
    data.mutate_row(tpb::MutateRowRequest {
        tablet: Some(tpb::TabletRef {
            table_id: table,
            tablet_id: tablet,
            tablet_epoch: epoch,
        }),
        row_key: b"zz-double-serving-probe".to_vec(),
        mutations: vec![bt::Mutation {
            mutation: Some(bt::mutation::Mutation::SetCell(bt::mutation::SetCell {
                family_name: "cf".into(),
                column_qualifier: b"probe".to_vec(),
                timestamp_micros: -1,
                value: b"x".to_vec(),
            })),
        }],
    })
    .await
    .map_err(Error::from)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_tablet_is_served_by_two_servers_at_once_through_moves_and_a_server_death() {
    let cell = LockCell::start(1).await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let s1 = start_tablet_server(&cell, root.path()).await.unwrap();
    let s2 = start_tablet_server(&cell, root.path()).await.unwrap();
    let s3 = start_tablet_server(&cell, root.path()).await.unwrap();
    let master = Master::start(master_config(&cell, root.path()))
        .await
        .unwrap();
    let channels = Channels::default();
    all_served(&channels, &master, 2).await;
    let table = create_table(&channels, &master, "d", &[b"g", b"p"]).await;
    let table_id = TableId(table.table_id);
    all_served(&channels, &master, 5).await;
    let meta = MetaTable::new(cell.client().unwrap(), channels.clone());
    let rows: Vec<Vec<u8>> = (0..60u32)
        .map(|i| format!("{}{i:03}", (b'a' + (i % 26) as u8) as char).into_bytes())
        .collect();
    for row in &rows {
        put(&meta, table_id, row, row).await.unwrap();
    }

    let stop = Arc::new(AtomicBool::new(false));
    let addrs: Vec<String> = [&s1, &s2, &s3]
        .iter()
        .map(|s| s.addr().to_string())
        .collect();
    let watcher = tokio::spawn(watch_for_double_serving(
        channels.clone(),
        addrs,
        stop.clone(),
    ));
    let ids = [
        s1.server_id().clone(),
        s2.server_id().clone(),
        s3.server_id().clone(),
    ];
    let mut client = channels.master(&master.addr().to_string()).unwrap();
    // Move every user tablet to the next server, twice.
    for _ in 0..2 {
        for record in meta.scan_table(table_id).await.unwrap() {
            let at = ids
                .iter()
                .position(|id| Some(id) == record.server.as_ref())
                .unwrap();
            client
                .move_tablet(mpb::MoveTabletRequest {
                    tablet_id: record.tablet.0,
                    server_id: ids[(at + 1) % 3].0.clone(),
                })
                .await
                .unwrap();
        }
    }
    // Kill the server serving the first user tablet (a crash: no goodbye).
    let victim = meta.locate(table_id, b"a").await.unwrap().server.unwrap();
    let mut servers = vec![s1, s2, s3];
    let at = servers
        .iter()
        .position(|s| s.server_id() == &victim)
        .unwrap();
    drop(servers.remove(at));
    eventually(
        "the dead server's tablets served elsewhere",
        WAIT,
        || async {
            let tablets = meta.scan_table(table_id).await.ok()?;
            let s = status(&channels, &master).await.ok()?;
            (s.tablets_not_serving == 0
                && tablets.iter().all(|t| t.server.as_ref() != Some(&victim)))
            .then_some(())
        },
    )
    .await;
    // And one more move between the survivors.
    let record = meta.locate(table_id, b"h").await.unwrap();
    let other = servers
        .iter()
        .find(|s| Some(s.server_id()) != record.server.as_ref())
        .unwrap()
        .server_id()
        .clone();
    client
        .move_tablet(mpb::MoveTabletRequest {
            tablet_id: record.tablet.0,
            server_id: other.0,
        })
        .await
        .unwrap();
    all_served(&channels, &master, 5).await;
    stop.store(true, Ordering::Relaxed);
    let (rounds, doubles) = watcher.await.unwrap();
    println!("double-serving watch: {rounds} poll rounds, {doubles} tablets seen on two servers");
    assert!(rounds >= 10, "the watcher polled only {rounds} times");
    for row in &rows {
        let got = eventually("a row to read back", WAIT, || async {
            get(&meta, table_id, row).await.ok()
        })
        .await;
        assert_eq!(got.as_deref(), Some(&row[..]), "row {:?} lost", row);
    }

    master.shutdown().await;
    for s in servers {
        s.shutdown().await.unwrap();
    }
    cell.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_move_that_stopped_after_marking_its_tablet_is_ended_where_the_tablet_is() {
    // A move whose METADATA write's answer was lost (the METADATA tablet's server died under
    // it), or whose master died, leaves the record `Moving` while the source still serves the
    // tablet. The master records it `Assigned` there again, at the same epoch.
    let cell = LockCell::start(1).await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let server = start_tablet_server(&cell, root.path()).await.unwrap();
    let master = Master::start(master_config(&cell, root.path()))
        .await
        .unwrap();
    let channels = Channels::default();
    all_served(&channels, &master, 2).await;
    let table = create_table(&channels, &master, "e", &[]).await;
    let table_id = TableId(table.table_id);
    all_served(&channels, &master, 3).await;
    let meta = MetaTable::new(cell.client().unwrap(), channels.clone());
    put(&meta, table_id, b"row", b"value").await.unwrap();
    let record = meta.locate(table_id, b"row").await.unwrap();
    let mut moving = record.clone();
    moving.state = TabletState::Moving;
    assert!(meta.compare_and_set(Some(&record), &moving).await.unwrap());

    let ended = eventually("the unfinished move ended", WAIT, || async {
        let now = meta.locate(table_id, b"row").await.ok()?;
        let s = status(&channels, &master).await.ok()?;
        (now.state == TabletState::Assigned && s.tablets_not_serving == 0).then_some(now)
    })
    .await;
    assert_eq!(ended.server.as_ref(), Some(server.server_id()));
    assert_eq!(ended.epoch, record.epoch);
    assert_eq!(
        get(&meta, table_id, b"row").await.unwrap(),
        Some(b"value".to_vec())
    );
    master.shutdown().await;
    server.shutdown().await.unwrap();
    cell.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refused_splits_and_merges_answer_the_right_codes() {
    let cell = LockCell::start(1).await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let server = start_tablet_server(&cell, root.path()).await.unwrap();
    let master = Master::start(master_config(&cell, root.path()))
        .await
        .unwrap();
    let channels = Channels::default();
    all_served(&channels, &master, 2).await;
    let table_id = TableId(
        create_table(&channels, &master, "c", &[b"m"])
            .await
            .table_id,
    );
    all_served(&channels, &master, 4).await;

    let code = |table: &'static str, row: Vec<u8>| {
        let channels = channels.clone();
        let master = &master;
        async move {
            split(&channels, master, table, &row, true)
                .await
                .unwrap_err()
                .code
        }
    };
    assert_eq!(
        code("(root)", b"a".to_vec()).await,
        Code::FailedPrecondition
    );
    assert_eq!(code("nope", b"a".to_vec()).await, Code::NotFound);
    // At the table's beginning, at an existing boundary, and a row no tablet can hold.
    assert_eq!(code("c", Vec::new()).await, Code::InvalidArgument);
    assert_eq!(code("c", b"m".to_vec()).await, Code::InvalidArgument);
    assert_eq!(
        code("c", vec![b'x'; RowKey::MAX_LEN + 1]).await,
        Code::InvalidArgument
    );
    // Nothing changed.
    let meta = MetaTable::new(cell.client().unwrap(), channels.clone());
    let tablets = meta.scan_table(table_id).await.unwrap();
    assert_eq!(tablets.len(), 2);
    assert_eq!(tablets[0].end_row.as_deref(), Some(&b"m"[..]));
    assert_eq!(status(&channels, &master).await.unwrap().tablets, 4);

    // The last tablet has no right neighbour; an unknown table is not found.
    let mut client = channels.master(&master.addr().to_string()).unwrap();
    for (table, row, want) in [
        ("c", b"x", tonic::Code::FailedPrecondition),
        ("nope", b"a", tonic::Code::NotFound),
    ] {
        let merge = client
            .merge_tablets(mpb::MergeTabletsRequest {
                table: table.into(),
                row: row.to_vec(),
            })
            .await
            .unwrap_err();
        assert_eq!(merge.code(), want, "{merge:?}");
    }
    assert_eq!(meta.scan_table(table_id).await.unwrap().len(), 2);

    master.shutdown().await;
    server.shutdown().await.unwrap();
    cell.shutdown().await.unwrap();
}
