//! The Cloud Bigtable gateway `tabula local` starts: two clusters on different base ports run
//! at once, each printing `BIGTABLE_EMULATOR_HOST=127.0.0.1:BASE+39` after `cluster ready`
//! and serving the Bigtable API there (Cloud Bigtable's generated clients: create a table,
//! write, read back); each cluster's data is its own. SIGTERM stops the gateway with the rest;
//! started again on the same directory, the gateway is back on its port with the rows.
//! `--no-gateway` runs none; a `--gateway-port` on a port of the cluster is a usage error.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use tabula_proto::google::bigtable::admin::v2 as admin;
use tabula_proto::google::bigtable::admin::v2::bigtable_table_admin_client::BigtableTableAdminClient;
use tabula_proto::google::bigtable::v2 as bt;
use tabula_proto::google::bigtable::v2::bigtable_client::BigtableClient;
use tonic::transport::Channel;

use crate::support;
use crate::support::local::{
    DEADLINE, LocalCluster, READY_DEADLINE, alive, die_with_test, free_port_block,
};

use crate::support::{BIN, eventually, poll_until, signal};

const INSTANCE: &str = "projects/p/instances/i";

/// `tabula local` with its stdout in a file (to read the lines it printed); killed on drop.
struct Printing {
    child: Child,
    stdout: std::path::PathBuf,
}

impl Printing {
    fn start(dir: &Path, base: u16) -> Printing {
        let stdout = dir.with_extension("stdout");
        let mut cmd = Command::new(BIN);
        cmd.args(["local", "--base-port", &base.to_string(), "--dir"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(File::create(&stdout).unwrap())
            .stderr(File::create(dir.with_extension("stderr")).unwrap());
        die_with_test(&mut cmd);
        Printing {
            child: cmd.spawn().unwrap(),
            stdout,
        }
    }

    /// The address after `BIGTABLE_EMULATOR_HOST=`, once printed (after `cluster ready`).
    async fn emulator_host(&mut self) -> String {
        let (child, stdout) = (&mut self.child, &self.stdout);
        poll_until("BIGTABLE_EMULATOR_HOST= on stdout", READY_DEADLINE, || {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("tabula local exited before it was ready: {status}");
            }
            let text = std::fs::read_to_string(stdout).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            let ready = lines
                .iter()
                .position(|l| l.starts_with("cluster ready: "))?;
            let host = lines[ready + 1..]
                .iter()
                .find_map(|l| l.strip_prefix("BIGTABLE_EMULATOR_HOST="))?;
            Some(host.to_owned())
        })
        .await
    }
}

impl Drop for Printing {
    fn drop(&mut self) {
        signal(&mut self.child, libc::SIGKILL);
        let _ = self.child.wait();
    }
}

/// A free block of ports other than `taken`'s (whose processes may not have bound yet), below
/// the ephemeral range like `free_port_block`'s.
fn another_block(taken: u16) -> u16 {
    let span = support::local::PORT_SPAN;
    (10_000u16..32_000)
        .step_by(100)
        .map(|k| taken.wrapping_sub(10_000).wrapping_add(k) % 22_000 + 10_000)
        .filter(|base| base.abs_diff(taken) >= span && *base + span < 32_768)
        .find(|base| {
            (*base..*base + span).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
        })
        .expect("a second free block of ports")
}

async fn clients(addr: &str) -> (BigtableClient<Channel>, BigtableTableAdminClient<Channel>) {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    (
        BigtableClient::new(channel.clone()),
        BigtableTableAdminClient::new(channel),
    )
}

fn table_name(table: &str) -> String {
    format!("{INSTANCE}/tables/{table}")
}

/// Creates `table` (family `cf`) through the gateway at `addr` and writes `row` = `value`
/// once its tablet is served.
async fn create_and_write(addr: &str, table: &str, row: &[u8], value: &[u8]) {
    let (mut data, mut tables) = clients(addr).await;
    let created = tables
        .create_table(admin::CreateTableRequest {
            parent: INSTANCE.into(),
            table_id: table.into(),
            table: Some(admin::Table {
                column_families: HashMap::from([("cf".to_owned(), admin::ColumnFamily::default())]),
                ..Default::default()
            }),
            initial_splits: Vec::new(),
        })
        .await;
    if let Err(e) = created {
        assert_eq!(
            e.code(),
            tonic::Code::AlreadyExists,
            "create {table}: {e:?}"
        );
    }
    let request = bt::MutateRowRequest {
        table_name: table_name(table),
        row_key: row.to_vec(),
        mutations: vec![bt::Mutation {
            mutation: Some(bt::mutation::Mutation::SetCell(bt::mutation::SetCell {
                family_name: "cf".into(),
                column_qualifier: b"q".to_vec(),
                timestamp_micros: 1_000,
                value: value.to_vec(),
            })),
        }],
        ..Default::default()
    };
    // The new table's tablet is assigned by the master's next round: retry until served.
    eventually("a write through the gateway", DEADLINE, || {
        let (mut data, request) = (data.clone(), request.clone());
        async move { data.mutate_row(request).await.ok().map(|_| ()) }
    })
    .await;
    data.mutate_row(request).await.unwrap();
}

/// Every row of `table` through the gateway at `addr`: `(key, value of cf:q)`.
async fn read_all(addr: &str, table: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    let (mut data, _) = clients(addr).await;
    let mut stream = data
        .read_rows(bt::ReadRowsRequest {
            table_name: table_name(table),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut rows = Vec::new();
    let mut key = Vec::new();
    while let Some(message) = stream.message().await.unwrap() {
        for chunk in message.chunks {
            if !chunk.row_key.is_empty() {
                key = chunk.row_key.clone();
            }
            if matches!(
                chunk.row_status,
                Some(bt::read_rows_response::cell_chunk::RowStatus::CommitRow(
                    true
                ))
            ) {
                rows.push((key.clone(), chunk.value.clone()));
            }
        }
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_local_clusters_each_serve_the_bigtable_api_on_their_own_port() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir_a, dir_b) = (tmp.path().join("a"), tmp.path().join("b"));
    let base_a = free_port_block();
    let mut a = LocalCluster::start(&dir_a, &["--base-port".into(), base_a.to_string()], 1);
    let base_b = another_block(base_a);
    let mut b = Printing::start(&dir_b, base_b);

    a.wait_ready().await;
    let host_b = b.emulator_host().await;
    let host_a = a.cluster_file()["gateway"].as_str().unwrap().to_owned();
    assert_eq!(host_a, format!("127.0.0.1:{}", base_a + 39));
    assert_eq!(host_b, format!("127.0.0.1:{}", base_b + 39));
    let doc_b: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir_b.join("cluster.json")).unwrap())
            .unwrap();
    assert_eq!(doc_b["gateway"], host_b.as_str());

    create_and_write(&host_a, "t", b"row-a", b"from a").await;
    create_and_write(&host_b, "t", b"row-b", b"from b").await;
    assert_eq!(
        read_all(&host_a, "t").await,
        [(b"row-a".to_vec(), b"from a".to_vec())]
    );
    assert_eq!(
        read_all(&host_b, "t").await,
        [(b"row-b".to_vec(), b"from b".to_vec())]
    );

    // SIGTERM stops the gateway with the rest; the same directory brings it back.
    let doc = a.cluster_file();
    let gateway = doc["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["role"] == "gateway")
        .unwrap_or_else(|| panic!("no gateway process in {doc:#}"));
    assert_eq!(gateway["address"], host_a.as_str());
    let pid = gateway["pid"].as_u64().unwrap();
    assert!(alive(pid), "the gateway {pid} is not running");
    let status = a.terminate().await;
    assert_eq!(status.code(), Some(0), "tabula local stopped with {status}");
    assert!(!alive(pid), "the gateway outlived tabula local");
    drop(a);
    let mut again = LocalCluster::start(&dir_a, &[], 2);
    again.wait_ready().await;
    assert_eq!(again.cluster_file()["gateway"], host_a.as_str());
    assert_eq!(
        read_all(&host_a, "t").await,
        [(b"row-a".to_vec(), b"from a".to_vec())]
    );
}

#[test]
fn gateway_flags_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let base = free_port_block();
    // Master 1's port: refused before anything starts.
    let out = Command::new(BIN)
        .args(["local", "--base-port", &base.to_string()])
        .args(["--gateway-port", &(base + 30).to_string(), "--dir"])
        .arg(tmp.path().join("c"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("master 1"),
        "{out:?}"
    );
    let out = Command::new(BIN)
        .args(["local", "--no-gateway", "--gateway-port", "9999", "--dir"])
        .arg(tmp.path().join("d"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_gateway_runs_none() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("c");
    let base = free_port_block();
    let mut cluster = LocalCluster::start(
        &dir,
        &[
            "--base-port".into(),
            base.to_string(),
            "--no-gateway".into(),
            "--lock-nodes".into(),
            "1".into(),
            "--tablet-servers".into(),
            "1".into(),
            "--masters".into(),
            "1".into(),
        ],
        1,
    );
    cluster.wait_ready().await;
    let doc = cluster.cluster_file();
    assert_eq!(doc["gateway"], serde_json::Value::Null);
    let roles: Vec<&str> = doc["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["lock", "tablet", "master"]);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", base + 39)).is_err(),
        "something listens on the gateway's port"
    );
    assert_eq!(cluster.terminate().await.code(), Some(0));
}
