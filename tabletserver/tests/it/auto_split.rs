//! Automatic splits on a real tablet server (in process, with a one-node lock cell): a tablet
//! past the split threshold (1 MiB here, checked every 100 ms) is split at its middle row into
//! children served at the next epoch, every written row stays readable through the data
//! service at the children's `TabletRef`s from `ListTablets`, each split reaches the listener,
//! the root tablet (table 0) never splits, and a tablet holding one huge row is left alone
//! instead of being tried over and over.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use prost::Message as _;
use tabula_common::{TableId, TabletId};
use tabula_lockservice::node::{LockNode, NodeConfig, RaftTuning};
use tabula_proto::google::bigtable::v2 as bt;
use tabula_proto::google::bigtable::v2::mutation::{Mutation as M, SetCell};
use tabula_proto::google::bigtable::v2::row_range::{EndKey, StartKey};
use tabula_proto::tabula::tablet::v1 as pb;
use tabula_proto::tabula::tablet::v1::tablet_admin_client::TabletAdminClient;
use tabula_proto::tabula::tablet::v1::tablet_service_client::TabletServiceClient;
use tabula_tabletserver::engine::EngineOptions;
use tabula_tabletserver::server::{SplitEvent, TabletServer, TabletServerConfig};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::transport::Channel;

const DEADLINE: Duration = Duration::from_secs(60);
const THRESHOLD: u64 = 1024 * 1024;
const USER: u64 = 2;
const HUGE_ROW_TABLE: u64 = 3;

async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A one-node lock cell on 127.0.0.1.
async fn lock_cell() -> (LockNode, TempDir, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = NodeConfig {
        id: 1,
        listen: addr,
        peers: BTreeMap::from([(1, addr.to_string())]),
        data_dir: dir.path().to_path_buf(),
        cluster_id: "auto-split-test".into(),
        raft: RaftTuning::default(),
    };
    let node = LockNode::start_on(config, listener).await.unwrap();
    (node, dir, addr.to_string())
}

fn descriptor(table: u64, id: u64, start: &[u8]) -> pb::TabletDescriptor {
    pb::TabletDescriptor {
        table_id: table,
        tablet_id: id,
        start_row: start.to_vec(),
        end_row: None,
        tablet_epoch: 1,
    }
}

async fn load(admin: &mut TabletAdminClient<Channel>, desc: pb::TabletDescriptor) {
    admin
        .load_tablet(pb::LoadTabletRequest {
            master_epoch: Some(pb::MasterEpoch { epoch: 1 }),
            tablet: Some(desc),
            schema: Some(pb::Schema {
                families: vec![pb::ColumnFamily {
                    name: "cf".into(),
                    gc_rule: None,
                    ..Default::default()
                }],
                ..Default::default()
            }),
            create: true,
        })
        .await
        .unwrap();
}

fn set(q: &str, value: Vec<u8>) -> bt::Mutation {
    bt::Mutation {
        mutation: Some(M::SetCell(SetCell {
            family_name: "cf".into(),
            column_qualifier: q.as_bytes().to_vec(),
            timestamp_micros: -1,
            value,
        })),
    }
}

/// The value written to `row`: 4 KiB of pseudo-random bytes (SSTables are compressed), derived
/// from the row.
fn value_of(row: &str) -> Vec<u8> {
    noise(
        row.bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b))),
        4096,
    )
}

/// `len` incompressible bytes from `seed` (splitmix64).
fn noise(mut seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Writes `rows` to `table` with `MutateRows`, routed by row (the table may split meanwhile:
/// an entry refused by a tablet that just split is written again).
async fn write_rows(c: &mut TabletServiceClient<Channel>, table: u64, rows: &[String]) {
    for batch in rows.chunks(64) {
        let mut pending: Vec<&String> = batch.iter().collect();
        let end = Instant::now() + DEADLINE;
        while !pending.is_empty() {
            assert!(Instant::now() < end, "writes to table {table} keep failing");
            let entries = pending
                .iter()
                .map(|row| pb::mutate_rows_request::Entry {
                    row_key: row.as_bytes().to_vec(),
                    mutations: vec![set("q", value_of(row))],
                })
                .collect();
            let answer = c
                .mutate_rows(pb::MutateRowsRequest {
                    tablet: Some(pb::TabletRef {
                        table_id: table,
                        tablet_id: 0,
                        tablet_epoch: 0,
                    }),
                    entries,
                })
                .await
                .unwrap()
                .into_inner();
            let failed: BTreeSet<usize> = answer
                .entries
                .iter()
                .filter(|e| e.code != 0)
                .map(|e| usize::try_from(e.index).unwrap())
                .collect();
            pending = pending
                .into_iter()
                .enumerate()
                .filter(|(i, _)| failed.contains(i))
                .map(|(_, r)| r)
                .collect();
            if !pending.is_empty() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// The served tablets of `table` (id, epoch, start, end) as `ListTablets` reports them.
async fn tablets_of(
    admin: &mut TabletAdminClient<Channel>,
    table: u64,
) -> Vec<pb::TabletDescriptor> {
    admin
        .list_tablets(pb::ListTabletsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tablets
        .into_iter()
        .filter_map(|s| s.tablet)
        .filter(|d| d.table_id == table)
        .collect()
}

/// Every row of `tablet` with its `cf:q` value, read at its `TabletRef`.
async fn read_tablet(
    c: &mut TabletServiceClient<Channel>,
    tablet: &pb::TabletDescriptor,
) -> BTreeMap<String, Vec<u8>> {
    let range = bt::RowRange {
        start_key: Some(StartKey::StartKeyClosed(tablet.start_row.clone())),
        end_key: tablet.end_row.clone().map(EndKey::EndKeyOpen),
    };
    let mut stream = c
        .read_rows(pb::ReadRowsRequest {
            tablet: Some(pb::TabletRef {
                table_id: tablet.table_id,
                tablet_id: tablet.tablet_id,
                tablet_epoch: tablet.tablet_epoch,
            }),
            rows: Some(bt::RowSet {
                row_keys: vec![],
                row_ranges: vec![range],
            }),
            filter: None,
            rows_limit: 0,
            reversed: false,
        })
        .await
        .unwrap()
        .into_inner();
    let mut out = BTreeMap::new();
    while let Some(m) = stream.message().await.unwrap() {
        for row in m.encoded_rows().unwrap() {
            let row = bt::Row::decode(row).unwrap();
            let cell = row.families[0].columns[0].cells[0].value.to_vec();
            out.insert(String::from_utf8(row.key.to_vec()).unwrap(), cell);
        }
    }
    out
}

/// Waits until the splitter has finished two more checks and returns the tablet set it saw
/// unchanged over them.
async fn settled(server: &TabletServer, admin: &mut TabletAdminClient<Channel>, table: u64) {
    let end = Instant::now() + DEADLINE;
    loop {
        let before = tablets_of(admin, table).await;
        let checks = server.split_checks();
        eventually("two split checks", || async {
            (server.split_checks() >= checks + 2).then_some(())
        })
        .await;
        if tablets_of(admin, table).await == before {
            return;
        }
        assert!(Instant::now() < end, "table {table} keeps splitting");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tablet_past_the_threshold_splits_and_every_row_stays_readable() {
    let (node, _lock_dir, lock_addr) = lock_cell().await;
    let root = tempfile::tempdir().unwrap();
    let (events_tx, mut events) = mpsc::channel::<SplitEvent>(64);
    let config = TabletServerConfig {
        engine: EngineOptions::for_tests(),
        session_ttl: Duration::from_secs(3),
        split_threshold_bytes: THRESHOLD,
        split_check_interval: Duration::from_millis(100),
        split_listener: Some(events_tx),
        ..TabletServerConfig::new(
            vec![lock_addr],
            "127.0.0.1:0".parse().unwrap(),
            root.path().to_path_buf(),
        )
    };
    let server = TabletServer::start(config).await.unwrap();
    let endpoint = format!("http://{}", server.addr());
    let mut admin = TabletAdminClient::connect(endpoint.clone()).await.unwrap();
    let mut data = TabletServiceClient::connect(endpoint)
        .await
        .unwrap()
        .max_decoding_message_size(64 * 1024 * 1024)
        .max_encoding_message_size(64 * 1024 * 1024);
    load(&mut admin, descriptor(0, 100, b"")).await;
    load(&mut admin, descriptor(USER, 1, b"")).await;
    // A tablet whose only row is its first: it has no middle row however large it grows.
    load(&mut admin, descriptor(HUGE_ROW_TABLE, 3, b"huge")).await;

    // ~3 MiB into the user table and into the root tablet.
    let rows: Vec<String> = (0..768).map(|i| format!("row{i:05}")).collect();
    write_rows(&mut data, USER, &rows).await;
    write_rows(&mut data, 0, &rows).await;
    // ~3 MiB in one row.
    let cells = (0..48)
        .map(|i| set(&format!("q{i:02}"), noise(i, 64 * 1024)))
        .collect();
    data.mutate_row(pb::MutateRowRequest {
        tablet: Some(pb::TabletRef {
            table_id: HUGE_ROW_TABLE,
            tablet_id: 3,
            tablet_epoch: 1,
        }),
        row_key: b"huge".to_vec(),
        mutations: cells,
    })
    .await
    .unwrap();
    // Flush what is served now, so sizes and middle rows count SSTables (a tablet split
    // meanwhile refuses: its children hold the data).
    let served = server.registry().list();
    tokio::task::spawn_blocking(move || {
        for t in served {
            let _ = t.tablet.flush();
        }
    })
    .await
    .unwrap();

    eventually("the user table to be split", || async {
        let n = server
            .registry()
            .list()
            .iter()
            .filter(|t| t.table == TableId(USER))
            .count();
        (n >= 2).then_some(())
    })
    .await;
    settled(&server, &mut admin, USER).await;

    // Every row is readable through the children's TabletRefs, from the child that holds it.
    let children = tablets_of(&mut admin, USER).await;
    assert!(children.len() >= 2, "{children:?}");
    let mut seen = BTreeMap::new();
    for child in &children {
        assert!(child.tablet_epoch >= 2, "{child:?}");
        assert_ne!(child.tablet_id, 1);
        for (row, value) in read_tablet(&mut data, child).await {
            assert!(seen.insert(row, value).is_none(), "a row served twice");
        }
    }
    assert_eq!(seen.len(), rows.len(), "rows read from {children:?}");
    for row in &rows {
        assert_eq!(seen.get(row), Some(&value_of(row)), "{row}");
    }
    // The children cover the table without gaps.
    let mut ranges: Vec<_> = children
        .iter()
        .map(|c| (c.start_row.clone(), c.end_row.clone()))
        .collect();
    ranges.sort();
    assert!(ranges[0].0.is_empty());
    assert!(ranges.last().unwrap().1.is_none());
    for w in ranges.windows(2) {
        assert_eq!(w[0].1.as_ref(), Some(&w[1].0));
    }

    // The first split reached the listener: tablet 1 into two children at epoch 2.
    let first = tokio::time::timeout(DEADLINE, events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.table, TableId(USER));
    assert_eq!(first.parent, TabletId(1));
    assert_eq!(first.left.epoch.0, 2);
    assert_eq!(first.right.epoch.0, 2);
    assert!(first.left.start_row.is_empty());
    assert_eq!(first.left.end_row.as_ref(), Some(&first.right.start_row));
    assert_eq!(first.right.end_row, None);
    let mut all = vec![first];
    while let Ok(e) = events.try_recv() {
        all.push(e);
    }
    // One event per split: n tablets came from n - 1 splits.
    assert_eq!(all.len(), children.len() - 1, "{all:?}");

    // Neither the root tablet nor the one-huge-row tablet split, however often checked.
    settled(&server, &mut admin, HUGE_ROW_TABLE).await;
    let root_tablets = tablets_of(&mut admin, 0).await;
    assert_eq!(root_tablets.len(), 1, "{root_tablets:?}");
    assert_eq!(root_tablets[0].tablet_id, 100);
    let huge = tablets_of(&mut admin, HUGE_ROW_TABLE).await;
    assert_eq!(huge.len(), 1, "{huge:?}");
    let huge_size = server
        .registry()
        .get(TabletId(3))
        .unwrap()
        .tablet
        .approximate_size_bytes();
    assert!(huge_size >= THRESHOLD, "{huge_size}");
    let root_size = server
        .registry()
        .get(TabletId(100))
        .unwrap()
        .tablet
        .approximate_size_bytes();
    assert!(root_size >= THRESHOLD, "{root_size}");
    assert!(
        all.iter().all(|e| e.table == TableId(USER)),
        "only the user table split: {all:?}"
    );

    server.shutdown().await.unwrap();
    node.shutdown().await.unwrap();
}
