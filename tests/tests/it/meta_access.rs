//! The client's METADATA access against a real lock cell and tablet server, in process: the
//! root record in `/tabula/root`, a root tablet and METADATA tablets loaded by hand (as the
//! master will), records inserted with compare-and-set; `locate` at and around tablet
//! boundaries, `scan_table` in key order and across a METADATA split, compare-and-set and
//! compare-and-delete against stale and current values, and retries while the root location
//! is stale.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;
use tabula_client::{
    Channels, MetaOptions, MetaTable, TabletRecord, TabletState, read_root, write_root,
};
use tabula_common::{Code, Epoch, ServerId, TableId, TabletId, meta};
use tabula_proto::google::bigtable::v2 as bt;
use tabula_proto::tabula::tablet::v1 as tpb;
use tabula_tabletserver::server::TabletServer;
use tabula_tests::{LockCell, eventually, start_tablet_server};

const DEADLINE: Duration = Duration::from_secs(30);

/// A record of `table` served by `server` at epoch 1.
fn record(
    server: &TabletServer,
    table: u64,
    tablet: u64,
    start: &[u8],
    end: Option<&[u8]>,
) -> TabletRecord {
    TabletRecord {
        table: TableId(table),
        tablet: TabletId(tablet),
        start_row: Bytes::copy_from_slice(start),
        end_row: end.map(Bytes::copy_from_slice),
        epoch: Epoch(1),
        state: TabletState::Assigned,
        server: Some(server.server_id().clone()),
        server_addr: server.addr().to_string(),
        master_epoch: Epoch(1),
        manifest_path: format!("tablets/{tablet:016x}"),
        split_parent: None,
        split_sibling: None,
        created: true,
    }
}

/// A user tablet nobody serves (METADATA only describes it here).
fn unassigned(table: u64, tablet: u64, start: &[u8], end: Option<&[u8]>) -> TabletRecord {
    TabletRecord {
        table: TableId(table),
        tablet: TabletId(tablet),
        start_row: Bytes::copy_from_slice(start),
        end_row: end.map(Bytes::copy_from_slice),
        epoch: Epoch(0),
        state: TabletState::Unassigned,
        server: None,
        server_addr: String::new(),
        master_epoch: Epoch(1),
        manifest_path: String::new(),
        split_parent: None,
        split_sibling: None,
        created: false,
    }
}

/// Loads `record`'s tablet, new and empty, with METADATA's schema (family "m", one version),
/// at master epoch 1; waits while the server is not serving yet.
async fn load(channels: &Channels, record: &TabletRecord) {
    let request = tpb::LoadTabletRequest {
        master_epoch: Some(tpb::MasterEpoch { epoch: 1 }),
        tablet: Some(record.descriptor()),
        schema: Some(tpb::Schema {
            families: vec![tpb::ColumnFamily {
                name: meta::FAMILY.to_owned(),
                gc_rule: Some(tpb::GcRule {
                    rule: Some(tpb::gc_rule::Rule::MaxNumVersions(1)),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        create: true,
    };
    eventually("the tablet loads", DEADLINE, || {
        let request = request.clone();
        async move {
            let mut admin = channels.admin(&record.server_addr).unwrap();
            match admin.load_tablet(request).await {
                Ok(_) => Some(()),
                Err(s) if s.code() == tonic::Code::Unavailable => None,
                Err(s) => panic!("loading tablet {}: {s}", record.tablet),
            }
        }
    })
    .await;
}

/// Every version of `m:tablet` in the METADATA row `key` of the tablet `holder`.
async fn versions(channels: &Channels, holder: &TabletRecord, key: &Bytes) -> usize {
    let mut data = channels.data(&holder.server_addr).unwrap();
    let mut stream = data
        .read_rows(tpb::ReadRowsRequest {
            tablet: Some(holder.tablet_ref()),
            rows: Some(bt::RowSet {
                row_keys: vec![key.to_vec()],
                row_ranges: vec![],
            }),
            filter: None,
            rows_limit: 0,
            reversed: false,
        })
        .await
        .unwrap()
        .into_inner();
    let mut cells = 0;
    while let Some(message) = stream.message().await.unwrap() {
        for row in message.encoded_rows().unwrap() {
            let row = bt::Row::decode(row).unwrap();
            for family in row.families {
                for column in family.columns {
                    cells += column.cells.len();
                }
            }
        }
    }
    cells
}

fn tablets(records: &[TabletRecord]) -> Vec<u64> {
    records.iter().map(|r| r.tablet.0).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn locate_scan_and_compare_and_set_through_a_real_tablet_server() {
    let cell = LockCell::start(3).await.unwrap();
    let storage = tempfile::tempdir().unwrap();
    let server = start_tablet_server(&cell, storage.path()).await.unwrap();
    let lock = cell.client().unwrap();
    let channels = Channels::default();
    let metadata = MetaTable::new(lock.clone(), channels.clone());

    // No root yet.
    assert_eq!(read_root(&lock).await.unwrap(), None);
    assert_eq!(metadata.root().await.unwrap_err().code, Code::NotFound);

    let root = record(&server, 0, 1, b"", None);
    let meta_tablet = record(&server, 1, 2, b"", None);
    load(&channels, &root).await;
    load(&channels, &meta_tablet).await;

    let generation = write_root(&lock, &root, None).await.unwrap();
    assert_eq!(
        read_root(&lock).await.unwrap(),
        Some((root.clone(), generation))
    );
    let again = write_root(&lock, &root, None).await.unwrap_err();
    assert_eq!(again.code, Code::AlreadyExists);
    let stale = write_root(&lock, &root, Some(generation + 1000))
        .await
        .unwrap_err();
    assert_eq!(stale.code, Code::Aborted);
    let generation = write_root(&lock, &root, Some(generation)).await.unwrap();
    assert_eq!(read_root(&lock).await.unwrap().unwrap().1, generation);
    assert_eq!(metadata.root().await.unwrap(), root);

    // METADATA's one tablet goes into root; an insert-if-absent of a present row fails.
    assert!(metadata.compare_and_set(None, &meta_tablet).await.unwrap());
    assert!(!metadata.compare_and_set(None, &meta_tablet).await.unwrap());

    // Tables 2 ([.., g) [g, p) [p, ..)) and 3 (one tablet), inserted out of order.
    let t2 = [
        record(&server, 2, 10, b"", Some(b"g")),
        record(&server, 2, 11, b"g", Some(b"p")),
        unassigned(2, 12, b"p", None),
    ];
    let t3 = unassigned(3, 20, b"", None);
    for r in [&t2[2], &t3, &t2[0], &t2[1]] {
        assert!(metadata.compare_and_set(None, r).await.unwrap());
    }

    // locate: table 0 is the root record, table 1 a METADATA tablet, user tables by row.
    assert_eq!(metadata.locate(TableId::ROOT, b"x").await.unwrap(), root);
    assert_eq!(
        metadata.locate(TableId::METADATA, b"").await.unwrap(),
        meta_tablet
    );
    let at = |row: &'static [u8]| {
        let metadata = metadata.clone();
        async move { metadata.locate(TableId(2), row).await.unwrap().tablet.0 }
    };
    assert_eq!(at(b"").await, 10);
    assert_eq!(at(b"\x00").await, 10);
    assert_eq!(at(b"f\xff\xff").await, 10);
    assert_eq!(at(b"g").await, 11, "an end row belongs to the next tablet");
    assert_eq!(at(b"g\x00").await, 11);
    assert_eq!(at(b"o\xff").await, 11);
    assert_eq!(at(b"p").await, 12);
    assert_eq!(at(&[0xff; 4096]).await, 12);
    assert_eq!(metadata.locate(TableId(3), b"anything").await.unwrap(), t3);
    for missing in [TableId(4), TableId(u64::MAX)] {
        let e = metadata.locate(missing, b"row").await.unwrap_err();
        assert_eq!(e.code, Code::NotFound, "{e}");
    }

    // scan_table: key order, whatever the insertion order.
    assert_eq!(metadata.scan_table(TableId(2)).await.unwrap(), t2.to_vec());
    assert_eq!(
        metadata.scan_table(TableId(3)).await.unwrap(),
        vec![t3.clone()]
    );
    assert_eq!(
        metadata.scan_table(TableId::METADATA).await.unwrap(),
        vec![meta_tablet.clone()]
    );
    assert_eq!(
        metadata.scan_table(TableId::ROOT).await.unwrap(),
        vec![root.clone()]
    );
    assert!(metadata.scan_table(TableId(9)).await.unwrap().is_empty());

    // compare_and_set against a stale value changes nothing.
    let current = t2[1].clone();
    let stale = TabletRecord {
        epoch: Epoch(7),
        ..current.clone()
    };
    let moved = TabletRecord {
        epoch: Epoch(2),
        state: TabletState::Moving,
        master_epoch: Epoch(2),
        ..current.clone()
    };
    assert!(
        !metadata
            .compare_and_set(Some(&stale), &moved)
            .await
            .unwrap()
    );
    assert_eq!(metadata.locate(TableId(2), b"h").await.unwrap(), current);
    // Against the current value it writes, and the row keeps one version.
    assert!(
        metadata
            .compare_and_set(Some(&current), &moved)
            .await
            .unwrap()
    );
    assert_eq!(metadata.locate(TableId(2), b"h").await.unwrap(), moved);
    assert_eq!(
        versions(&channels, &meta_tablet, &moved.meta_key()).await,
        1
    );
    // The old value is now stale too; a second step from `moved` works.
    assert!(
        !metadata
            .compare_and_set(Some(&current), &current)
            .await
            .unwrap()
    );
    let assigned = TabletRecord {
        epoch: Epoch(3),
        state: TabletState::Assigned,
        ..moved.clone()
    };
    assert!(
        metadata
            .compare_and_set(Some(&moved), &assigned)
            .await
            .unwrap()
    );
    assert_eq!(
        versions(&channels, &meta_tablet, &moved.meta_key()).await,
        1
    );
    assert_eq!(metadata.locate(TableId(2), b"g").await.unwrap(), assigned);

    // Different keys (an end row changed) and the root record are refused.
    let shrunk = TabletRecord {
        end_row: Some(Bytes::from_static(b"k")),
        ..assigned.clone()
    };
    let e = metadata
        .compare_and_set(Some(&assigned), &shrunk)
        .await
        .unwrap_err();
    assert_eq!(e.code, Code::InvalidArgument);
    let e = metadata.compare_and_set(None, &root).await.unwrap_err();
    assert_eq!(e.code, Code::InvalidArgument);

    // compare_and_delete: only the exact current value deletes.
    assert!(!metadata.compare_and_delete(&moved).await.unwrap());
    assert!(metadata.compare_and_delete(&assigned).await.unwrap());
    assert!(!metadata.compare_and_delete(&assigned).await.unwrap());
    assert_eq!(
        versions(&channels, &meta_tablet, &assigned.meta_key()).await,
        0
    );
    assert_eq!(
        tablets(&metadata.scan_table(TableId(2)).await.unwrap()),
        [10, 12]
    );
    // With [g, p)'s row gone, METADATA's next row (table 2's last tablet) answers for "h".
    assert_eq!(at(b"h").await, 12);

    server.shutdown().await.unwrap();
    cell.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lookups_and_scans_cross_a_metadata_tablet_boundary() {
    let cell = LockCell::start(1).await.unwrap();
    let storage = tempfile::tempdir().unwrap();
    let server = start_tablet_server(&cell, storage.path()).await.unwrap();
    let lock = cell.client().unwrap();
    let channels = Channels::default();
    let metadata = MetaTable::new(lock.clone(), channels.clone());

    // METADATA in two tablets, split at table 2's row for the tablet ending at "m".
    let split = meta::row_key(TableId(2), Some(b"m"));
    let root = record(&server, 0, 1, b"", None);
    let left = record(&server, 1, 2, b"", Some(&split));
    let right = record(&server, 1, 3, &split, None);
    for r in [&root, &left, &right] {
        load(&channels, r).await;
    }
    let generation = write_root(&lock, &root, None).await.unwrap();
    assert!(metadata.compare_and_set(None, &right).await.unwrap());
    assert!(metadata.compare_and_set(None, &left).await.unwrap());
    assert_eq!(
        metadata.scan_table(TableId::METADATA).await.unwrap(),
        vec![left.clone(), right.clone()]
    );

    // Table 2: [.., c) [c, g) in the left METADATA tablet, [g, m) [m, t) [t, ..) in the
    // right one; table 3 in the right one.
    let bounds: [(&[u8], Option<&[u8]>); 5] = [
        (b"", Some(b"c")),
        (b"c", Some(b"g")),
        (b"g", Some(b"m")),
        (b"m", Some(b"t")),
        (b"t", None),
    ];
    let t2: Vec<TabletRecord> = bounds
        .iter()
        .zip(100..)
        .map(|((start, end), id)| unassigned(2, id, start, *end))
        .collect();
    let t3 = unassigned(3, 200, b"", None);
    for r in t2.iter().chain([&t3]) {
        assert!(metadata.compare_and_set(None, r).await.unwrap());
    }
    assert_eq!(
        metadata
            .locate(TableId::METADATA, &t2[1].meta_key())
            .await
            .unwrap(),
        left
    );
    assert_eq!(
        metadata
            .locate(TableId::METADATA, &t2[2].meta_key())
            .await
            .unwrap(),
        right
    );

    assert_eq!(metadata.scan_table(TableId(2)).await.unwrap(), t2);
    assert_eq!(metadata.scan_table(TableId(3)).await.unwrap(), vec![t3]);
    let at = |row: &'static [u8]| {
        let metadata = metadata.clone();
        async move { metadata.locate(TableId(2), row).await.unwrap().tablet.0 }
    };
    assert_eq!(at(b"a").await, 100);
    assert_eq!(at(b"c").await, 101);
    // "h"'s lookup key is in the left METADATA tablet; its row is the right one's first.
    assert_eq!(at(b"h").await, 102);
    assert_eq!(at(b"m").await, 103);
    assert_eq!(at(b"zz").await, 104);
    // A record in either METADATA tablet is written through the tablet that holds it.
    let moved = TabletRecord {
        epoch: Epoch(5),
        ..t2[1].clone()
    };
    assert!(
        metadata
            .compare_and_set(Some(&t2[1]), &moved)
            .await
            .unwrap()
    );
    let moved_right = TabletRecord {
        epoch: Epoch(5),
        ..t2[3].clone()
    };
    assert!(
        metadata
            .compare_and_set(Some(&t2[3]), &moved_right)
            .await
            .unwrap()
    );
    assert_eq!(metadata.locate(TableId(2), b"d").await.unwrap(), moved);
    assert_eq!(
        metadata.locate(TableId(2), b"s").await.unwrap(),
        moved_right
    );

    // A root location at the wrong tablet epoch: the server answers WrongTablet, retried
    // until the deadline...
    let wrong = TabletRecord {
        epoch: Epoch(9),
        ..root.clone()
    };
    let generation = write_root(&lock, &wrong, Some(generation)).await.unwrap();
    let impatient = MetaTable::with_options(
        lock.clone(),
        channels.clone(),
        MetaOptions {
            deadline: Duration::from_millis(300),
            ..MetaOptions::default()
        },
    );
    let e = impatient.locate(TableId(2), b"a").await.unwrap_err();
    assert!(matches!(e.code, Code::WrongTablet { .. }), "{e}");
    assert!(e.message.contains("gave up after"), "{e}");
    // ... and a lookup in progress succeeds once the root location is fixed.
    let pending = tokio::spawn({
        let metadata = metadata.clone();
        async move { metadata.locate(TableId(2), b"a").await }
    });
    write_root(&lock, &root, Some(generation)).await.unwrap();
    assert_eq!(pending.await.unwrap().unwrap().tablet.0, 100);

    server.shutdown().await.unwrap();
    cell.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_record_that_is_not_of_table_zero_is_refused() {
    let cell = LockCell::start(1).await.unwrap();
    let lock = cell.client().unwrap();
    let not_root = unassigned(1, 2, b"", None);
    let e = write_root(&lock, &not_root, None).await.unwrap_err();
    assert_eq!(e.code, Code::InvalidArgument);
    let bad_root = TabletRecord {
        end_row: Some(Bytes::from_static(b"x")),
        ..unassigned(0, 1, b"", None)
    };
    let e = write_root(&lock, &bad_root, None).await.unwrap_err();
    assert_eq!(e.code, Code::InvalidArgument);
    assert_eq!(read_root(&lock).await.unwrap(), None);
    // A root that names a server nobody runs: reads are Unavailable until the deadline.
    let root = TabletRecord {
        state: TabletState::Assigned,
        server: Some(ServerId("gone".into())),
        server_addr: "127.0.0.1:1".into(),
        ..unassigned(0, 1, b"", None)
    };
    write_root(&lock, &root, None).await.unwrap();
    let metadata = MetaTable::with_options(
        lock,
        Channels::default(),
        MetaOptions {
            deadline: Duration::from_millis(200),
            ..MetaOptions::default()
        },
    );
    let e = metadata.scan_table(TableId(2)).await.unwrap_err();
    assert_eq!(e.code, Code::Unavailable, "{e}");
    cell.shutdown().await.unwrap();
}
