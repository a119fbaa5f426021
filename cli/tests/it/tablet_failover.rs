//! Tablet-server failover with real processes: a 3-node cell of `tabula lock serve`, two
//! `tabula tablet serve` on one storage root, and the test acting as the master over
//! `TabletAdmin`. Server A gets a new tablet at master epoch 1 and takes a write load from
//! several concurrent writers (`MutateRow` with explicit timestamps; every acknowledged write is
//! recorded); A is SIGKILLed mid-load; once A's session has expired (its server file is gone,
//! as the master would wait for), B loads the tablet at a newer tablet epoch, replaying A's
//! commit log; every acknowledged write is then read back from B.
//!
//! Children are killed when their guard drops (also when the test panics); their logs are files
//! in the temporary directory, printed when a wait times out. Every wait polls a condition with
//! a deadline.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message as _;
use tabula_common::Code;
use tabula_lockservice::client::{ClientOptions, LockClient};
use tabula_proto::google::bigtable::v2 as bt;
use tabula_proto::tabula::tablet::v1 as pb;
use tabula_proto::tabula::tablet::v1::tablet_admin_client::TabletAdminClient;
use tabula_proto::tabula::tablet::v1::tablet_service_client::TabletServiceClient;
use tempfile::TempDir;
use tonic::transport::Channel;

const BIN: &str = env!("CARGO_BIN_EXE_tabula");
const DEADLINE: Duration = Duration::from_secs(60);
const TABLE: u64 = 2;
const TABLET: u64 = 1;
const WRITERS: usize = 8;
const SESSION_TTL_MS: u64 = 3_000;
/// How long the write load runs before the kill.
const STEADY_AFTER: Duration = Duration::from_secs(6);

/// Child processes, killed on drop.
struct Procs {
    dir: TempDir,
    children: Vec<(String, Child)>,
}

impl Procs {
    fn new() -> Procs {
        Procs {
            dir: tempfile::Builder::new()
                .prefix("tabula-failover")
                .tempdir()
                .unwrap(),
            children: Vec::new(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn spawn(&mut self, name: &str, args: &[String]) {
        let log = File::create(self.path().join(format!("{name}.log"))).unwrap();
        let child = Command::new(BIN)
            .args(args)
            .env("RUST_LOG", "info,openraft=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children.push((name.to_owned(), child));
    }

    /// SIGKILL (std's `Child::kill`) and reap.
    fn kill(&mut self, name: &str) {
        let (_, child) = self.children.iter_mut().find(|(n, _)| n == name).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for (name, _) in &self.children {
            let text = std::fs::read_to_string(self.path().join(format!("{name}.log")))
                .unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("---- {name} ----\n"));
            out.push_str(&lines[lines.len().saturating_sub(40)..].join("\n"));
            out.push('\n');
        }
        out
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

async fn eventually<T, F, Fut>(procs: &Procs, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out waiting for {what}\n{}",
            procs.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn start_cell(procs: &mut Procs) -> Vec<String> {
    let ports = free_ports(3);
    let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let peers = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{}={a}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    for (i, addr) in addrs.iter().enumerate() {
        let id = i + 1;
        let data = procs.path().join(format!("lock-{id}"));
        procs.spawn(
            &format!("lock-{id}"),
            &[
                "lock".into(),
                "serve".into(),
                "--id".into(),
                id.to_string(),
                "--listen".into(),
                addr.clone(),
                "--peers".into(),
                peers.clone(),
                "--data-dir".into(),
                data.display().to_string(),
            ],
        );
    }
    addrs
}

fn start_tablet_server(procs: &mut Procs, lock: &[String], root: &Path, id: &str) {
    let port = free_ports(1)[0];
    procs.spawn(
        id,
        &[
            "tablet".into(),
            "serve".into(),
            "--lock".into(),
            lock.join(","),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--storage-root".into(),
            root.display().to_string(),
            "--server-id".into(),
            id.into(),
            "--session-ttl-ms".into(),
            SESSION_TTL_MS.to_string(),
        ],
    );
}

/// The address server `id` published in the lock service, once it has joined.
async fn server_addr(procs: &Procs, lock: &LockClient, id: &str) -> String {
    let path = format!("/tabula/servers/{id}");
    eventually(procs, &format!("{id} to join"), || async {
        let file = lock.get(&path).await.ok()?;
        Some(String::from_utf8(file.contents).unwrap())
    })
    .await
}

fn descriptor(epoch: u64) -> pb::TabletDescriptor {
    pb::TabletDescriptor {
        table_id: TABLE,
        tablet_id: TABLET,
        start_row: vec![],
        end_row: None,
        tablet_epoch: epoch,
    }
}

fn load(master_epoch: u64, tablet_epoch: u64, create: bool) -> pb::LoadTabletRequest {
    pb::LoadTabletRequest {
        master_epoch: Some(pb::MasterEpoch {
            epoch: master_epoch,
        }),
        tablet: Some(descriptor(tablet_epoch)),
        schema: Some(pb::Schema {
            families: vec![pb::ColumnFamily {
                name: "cf".into(),
                gc_rule: None,
                ..Default::default()
            }],
            ..Default::default()
        }),
        create,
    }
}

fn set_cell(timestamp: i64, value: Vec<u8>) -> bt::Mutation {
    bt::Mutation {
        mutation: Some(bt::mutation::Mutation::SetCell(bt::mutation::SetCell {
            family_name: "cf".into(),
            column_qualifier: b"q".to_vec(),
            timestamp_micros: timestamp,
            value,
        })),
    }
}

/// One acknowledged write: row, timestamp, value.
type Acked = (Vec<u8>, i64, Vec<u8>);

/// Writes rows `w<writer>-<n>` (a few versions each) until the first error; every OK answer
/// is recorded. Answers the acknowledged writes and the error that ended the load.
async fn writer(
    mut client: TabletServiceClient<Channel>,
    w: usize,
    acked: Arc<Mutex<Vec<Acked>>>,
) -> tonic::Status {
    let mut n: i64 = 0;
    loop {
        let row = format!("w{w}-{:06}", n / 3).into_bytes();
        let ts = 1_000 + n % 3;
        let value = format!("value {w} {n} {}", "x".repeat(100)).into_bytes();
        let req = pb::MutateRowRequest {
            tablet: Some(pb::TabletRef {
                table_id: TABLE,
                tablet_id: TABLET,
                tablet_epoch: 1,
            }),
            row_key: row.clone(),
            mutations: vec![set_cell(ts, value.clone())],
        };
        match client.mutate_row(req).await {
            Ok(_) => acked.lock().unwrap().push((row, ts, value)),
            Err(status) => return status,
        }
        n += 1;
    }
}

/// Every cell of the tablet on `client`: (row, timestamp) -> value.
async fn read_all(mut client: TabletServiceClient<Channel>) -> BTreeMap<(Vec<u8>, i64), Vec<u8>> {
    let mut stream = client
        .read_rows(pb::ReadRowsRequest {
            tablet: Some(pb::TabletRef {
                table_id: TABLE,
                tablet_id: TABLET,
                tablet_epoch: 2,
            }),
            rows: None,
            filter: None,
            rows_limit: 0,
            reversed: false,
        })
        .await
        .unwrap()
        .into_inner();
    let mut cells = BTreeMap::new();
    while let Some(msg) = stream.message().await.unwrap() {
        for row in msg.encoded_rows().unwrap() {
            let row = bt::Row::decode(row).unwrap();
            for family in row.families {
                for column in family.columns {
                    for cell in column.cells {
                        cells.insert(
                            (row.key.to_vec(), cell.timestamp_micros),
                            cell.value.to_vec(),
                        );
                    }
                }
            }
        }
    }
    cells
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_write_load_loses_no_acknowledged_write() {
    let mut procs = Procs::new();
    let root: PathBuf = procs.path().join("storage-root");
    let lock_addrs = start_cell(&mut procs);
    start_tablet_server(&mut procs, &lock_addrs, &root, "ts-a");
    start_tablet_server(&mut procs, &lock_addrs, &root, "ts-b");
    let lock = LockClient::new(&lock_addrs, ClientOptions::default()).unwrap();
    let addr_a = server_addr(&procs, &lock, "ts-a").await;
    let addr_b = server_addr(&procs, &lock, "ts-b").await;

    // The master's part: a new tablet on A.
    let mut admin_a = TabletAdminClient::connect(format!("http://{addr_a}"))
        .await
        .unwrap();
    admin_a.load_tablet(load(1, 1, true)).await.unwrap();

    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let client = TabletServiceClient::connect(format!("http://{addr_a}"))
            .await
            .unwrap();
        writers.push(tokio::spawn(writer(client, w, acked.clone())));
    }
    // Mid-load: once a good number of writes are acknowledged, and after the cell's new-leader
    // grace (5 s) for sessions opened as it formed has passed, so that A's session ends a ttl
    // after its last KeepAlive, as in a cell that has been up for a while.
    let load_start = Instant::now();
    eventually(&procs, "writes to be acknowledged", || async {
        (acked.lock().unwrap().len() >= 2_000 && load_start.elapsed() >= STEADY_AFTER).then_some(())
    })
    .await;
    procs.kill("ts-a");
    let killed = Instant::now();
    let acked_at_kill = acked.lock().unwrap().len();
    for w in writers {
        let status = w.await.unwrap();
        assert!(
            matches!(
                status.code(),
                tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
            ),
            "a writer ended with {status:?}"
        );
    }
    let acked = acked.lock().unwrap().clone();

    // The master waits until A's session is over (its file goes with it), then reassigns.
    eventually(&procs, "A's server file to go", || async {
        match lock.get("/tabula/servers/ts-a").await {
            Err(e) if e.code == Code::NotFound => Some(()),
            _ => None,
        }
    })
    .await;
    let file_gone = killed.elapsed();
    let mut admin_b = TabletAdminClient::connect(format!("http://{addr_b}"))
        .await
        .unwrap();
    let load_started = Instant::now();
    let status = admin_b
        .load_tablet(load(2, 2, false))
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    let load_took = load_started.elapsed();
    assert_eq!(status.tablet, Some(descriptor(2)));

    let data = TabletServiceClient::connect(format!("http://{addr_b}"))
        .await
        .unwrap();
    let cells = read_all(data).await;
    let mut missing = Vec::new();
    for (row, ts, value) in &acked {
        if cells.get(&(row.clone(), *ts)) != Some(value) {
            missing.push((String::from_utf8_lossy(row).into_owned(), *ts));
        }
    }
    eprintln!(
        "failover: {} writes acknowledged ({acked_at_kill} when A was killed), {} cells on B; \
         A's file gone {file_gone:?} after the kill (ttl {SESSION_TTL_MS} ms); LoadTablet on B \
         took {load_took:?}; service back {:?} after the kill",
        acked.len(),
        cells.len(),
        file_gone + load_took,
    );
    assert!(
        missing.is_empty(),
        "{} acknowledged writes missing on B, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    // Writing through B at the new epoch works.
    let mut data = TabletServiceClient::connect(format!("http://{addr_b}"))
        .await
        .unwrap();
    data.mutate_row(pb::MutateRowRequest {
        tablet: Some(pb::TabletRef {
            table_id: TABLE,
            tablet_id: TABLET,
            tablet_epoch: 2,
        }),
        row_key: b"after".to_vec(),
        mutations: vec![set_cell(1, b"b".to_vec())],
    })
    .await
    .unwrap();
}
