//! A tablet server's `/metrics` and `/healthz` over plain HTTP, in process with a one-node lock
//! cell: after loading a tablet, writes, reads and a flush, the scrape reports the requests per
//! RPC, the commit-log syncs, the served tablet with its SSTable, the compaction and the
//! block-cache lookups; `ListTablets` reports the memtable bytes; `/healthz` is 200 while the
//! server serves and 503 with the reason once its gate is stopped; other paths are 404.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;

use tabula_common::TabletId;
use tabula_lockservice::node::{LockNode, NodeConfig, RaftTuning};
use tabula_proto::google::bigtable::v2 as bt;
use tabula_proto::google::bigtable::v2::mutation::{Mutation as M, SetCell};
use tabula_proto::tabula::tablet::v1 as pb;
use tabula_proto::tabula::tablet::v1::tablet_admin_client::TabletAdminClient;
use tabula_proto::tabula::tablet::v1::tablet_service_client::TabletServiceClient;
use tabula_tabletserver::engine::EngineOptions;
use tabula_tabletserver::server::{TabletServer, TabletServerConfig};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const TABLE: u64 = 3;
const TABLET: u64 = 7;
const WRITES: usize = 5;
const READS: usize = 3;

/// A one-node lock cell on 127.0.0.1.
async fn lock_cell() -> (LockNode, SocketAddr, TempDir) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = NodeConfig {
        id: 1,
        listen: addr,
        peers: BTreeMap::from([(1, addr.to_string())]),
        data_dir: dir.path().to_path_buf(),
        cluster_id: "metrics-test".into(),
        raft: RaftTuning::default(),
    };
    let node = LockNode::start_on(config, listener).await.unwrap();
    (node, addr, dir)
}

/// A plain HTTP/1.1 GET: the status code, the `Content-Type` and the body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let content_type = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default();
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "a small answer comes with a length: {head}"
    );
    (status, content_type, body.to_owned())
}

/// The value of one series (`name` or `name{labels}`, exactly as exposed) in a scrape.
fn value(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no series {series} in:\n{scrape}"))
        .parse()
        .unwrap()
}

async fn scrape(addr: SocketAddr) -> String {
    let (status, content_type, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    body
}

fn put(row: &str) -> pb::MutateRowRequest {
    pb::MutateRowRequest {
        tablet: Some(pb::TabletRef {
            table_id: TABLE,
            tablet_id: 0,
            tablet_epoch: 0,
        }),
        row_key: row.as_bytes().to_vec(),
        mutations: vec![bt::Mutation {
            mutation: Some(M::SetCell(SetCell {
                family_name: "cf".into(),
                column_qualifier: b"q".to_vec(),
                timestamp_micros: -1,
                value: vec![b'v'; 100],
            })),
        }],
    }
}

/// Reads every row of the table; returns how many came back.
async fn read_all(data: &mut TabletServiceClient<tonic::transport::Channel>) -> usize {
    let mut stream = data
        .read_rows(pb::ReadRowsRequest {
            tablet: Some(pb::TabletRef {
                table_id: TABLE,
                tablet_id: 0,
                tablet_epoch: 0,
            }),
            rows: None,
            filter: None,
            rows_limit: 0,
            reversed: false,
        })
        .await
        .unwrap()
        .into_inner();
    let mut rows = 0;
    while let Some(message) = stream.message().await.unwrap() {
        rows += message.encoded_rows().unwrap().len();
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_report_requests_storage_and_health() {
    let (lock, lock_addr, _lock_dir) = lock_cell().await;
    let root = tempfile::tempdir().unwrap();
    let config = TabletServerConfig {
        engine: EngineOptions::for_tests(),
        metrics: Some("127.0.0.1:0".parse().unwrap()),
        ..TabletServerConfig::new(
            vec![lock_addr.to_string()],
            "127.0.0.1:0".parse().unwrap(),
            root.path().to_path_buf(),
        )
    };
    let server = TabletServer::start(config).await.unwrap();
    let http = server.metrics_addr().unwrap();
    assert_ne!(http.port(), 0);

    let mut admin = TabletAdminClient::connect(format!("http://{}", server.addr()))
        .await
        .unwrap();
    admin
        .load_tablet(pb::LoadTabletRequest {
            master_epoch: Some(pb::MasterEpoch { epoch: 1 }),
            tablet: Some(pb::TabletDescriptor {
                table_id: TABLE,
                tablet_id: TABLET,
                start_row: vec![],
                end_row: None,
                tablet_epoch: 1,
            }),
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
    let mut data = TabletServiceClient::connect(format!("http://{}", server.addr()))
        .await
        .unwrap();
    for i in 0..WRITES {
        data.mutate_row(put(&format!("row{i:02}"))).await.unwrap();
    }
    for _ in 0..READS {
        assert_eq!(read_all(&mut data).await, WRITES);
    }
    // A write to a table served nowhere here: counted under its code.
    let mut wrong = put("x");
    if let Some(t) = wrong.tablet.as_mut() {
        t.table_id = TABLE + 1;
    }
    let refused = data.mutate_row(wrong).await.unwrap_err();

    // Before the flush the memtable holds the writes, in the scrape and in ListTablets.
    let label = format!("{{tablet=\"{}\"}}", TabletId(TABLET));
    let before = scrape(http).await;
    let memtable = value(
        &before,
        &format!("tabula_tablet_tablet_memtable_bytes{label}"),
    );
    assert!(memtable > 0.0, "{before}");
    assert_eq!(value(&before, "tabula_tablet_memtable_bytes"), memtable);
    let listed = admin
        .list_tablets(pb::ListTabletsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.tablets.len(), 1);
    assert!(listed.tablets[0].memtable_bytes > 0, "{listed:?}");

    let served = server.registry().get(TabletId(TABLET)).unwrap();
    tokio::task::spawn_blocking(move || served.tablet.flush().unwrap())
        .await
        .unwrap();
    // Read from the SSTable twice: the first read misses the block cache, the second hits.
    for _ in 0..2 {
        assert_eq!(read_all(&mut data).await, WRITES);
    }

    let after = scrape(http).await;
    let code = |rpc: &str, code: &str| {
        value(
            &after,
            &format!("tabula_tablet_requests_total{{rpc=\"{rpc}\",code=\"{code}\"}}"),
        )
    };
    assert!(code("MutateRow", "OK") >= WRITES as f64, "{after}");
    assert!(code("ReadRows", "OK") >= (READS + 2) as f64, "{after}");
    assert!(code("LoadTablet", "OK") >= 1.0, "{after}");
    assert!(code("ListTablets", "OK") >= 1.0, "{after}");
    let refused_code = format!("{:?}", refused.code());
    assert!(code("MutateRow", &refused_code) >= 1.0, "{after}");
    let mutate_count = value(
        &after,
        "tabula_tablet_request_duration_seconds_count{rpc=\"MutateRow\"}",
    );
    assert!(mutate_count >= (WRITES + 1) as f64, "{after}");
    assert_eq!(
        value(
            &after,
            "tabula_tablet_request_duration_seconds_bucket{rpc=\"MutateRow\",le=\"+Inf\"}"
        ),
        mutate_count
    );

    assert!(value(&after, "tabula_tablet_commitlog_syncs_total") > 0.0);
    assert!(value(&after, "tabula_tablet_commitlog_sync_seconds_count") > 0.0);
    assert!(value(&after, "tabula_tablet_commitlog_records_total") >= WRITES as f64);
    assert!(value(&after, "tabula_tablet_commitlog_bytes_total") >= (WRITES * 100) as f64);

    assert_eq!(value(&after, "tabula_tablet_tablets_served"), 1.0);
    assert!(value(&after, &format!("tabula_tablet_sstables{label}")) >= 1.0);
    assert!(value(&after, &format!("tabula_tablet_tablet_size_bytes{label}")) > 0.0);
    assert!(
        value(
            &after,
            &format!("tabula_tablet_tablet_memtable_bytes{label}")
        ) < memtable
    );
    assert!(value(&after, "tabula_tablet_compactions_total{kind=\"minor\"}") >= 1.0);
    assert_eq!(
        value(&after, "tabula_tablet_compactions_total{kind=\"major\"}"),
        0.0
    );
    assert_eq!(
        value(&after, "tabula_tablet_read_triggered_compactions_total"),
        0.0
    );
    assert!(value(&after, "tabula_tablet_compaction_seconds_total") > 0.0);
    value(&after, "tabula_tablet_compaction_queue");

    assert!(
        value(&after, "tabula_tablet_block_cache_misses_total") >= 1.0,
        "{after}"
    );
    assert!(
        value(&after, "tabula_tablet_block_cache_hits_total") >= 1.0,
        "{after}"
    );
    assert!(
        value(&after, "tabula_tablet_block_cache_bytes") > 0.0,
        "{after}"
    );

    // Health: ok while serving; unknown paths are 404.
    assert_eq!(
        get(http, "/healthz").await,
        (200, "text/plain; charset=utf-8".into(), "ok\n".into())
    );
    assert_eq!(get(http, "/nope").await.0, 404);

    // A stopped gate makes the server unhealthy, with the reason.
    server.gate().stop("stopped by the metrics test");
    let (status, _, body) = get(http, "/healthz").await;
    assert_eq!(status, 503);
    assert!(body.contains("stopped by the metrics test"), "{body}");
    assert_eq!(body.lines().count(), 1, "{body}");

    server.shutdown().await.unwrap();
    // The endpoint stops with the server.
    assert!(TcpStream::connect(http).await.is_err());
    lock.shutdown().await.unwrap();
}
