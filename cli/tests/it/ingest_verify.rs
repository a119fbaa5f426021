//! `tabula ingest` and `tabula verify` end to end against `tabula local` (3 tablet servers):
//!
//! - an ingest of 2 writers x 2 loops into a table pre-split in 4, while one tablet server is
//!   SIGKILLed (and restarted by `tabula local`), exits 0 having closed every loop, and verify
//!   passes with every node referenced; then a referenced node's row is deleted through the
//!   client library, and verify exits 1 naming it as undefined and acknowledged-but-missing;
//! - an ingest stopped by SIGTERM exits 0 after its batches in flight; the whole cluster is
//!   stopped with SIGTERM and started again on its directory, and verify finds every
//!   acknowledged node back;
//! - an ingest of about two minutes under `tabula local --agitate` (active master, tablet
//!   server and lock-leader kills, a tablet server paused past its session, splits, moves,
//!   merges, flushes and compactions) loses nothing: after the cluster is stopped and started
//!   again without the agitator, verify passes.
//!
//! All wait on conditions with generous deadlines; no timing is asserted.

#![allow(clippy::unwrap_used)]

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use tabula_client::{Client, Mutation, ReadOptions, RowSet};

use crate::support::local::{LocalCluster, die_with_test, free_port_block};
use crate::support::{BIN, poll_until, signal};

/// How long an ingest or a verify may take on a loaded 2-core machine.
const RUN_DEADLINE: Duration = Duration::from_secs(240);
/// The agitator's faults and periods while the agitated ingest runs.
const AGITATE: &str = "master=40s,tablet=30s,lock=60s,pause=50s,admin=15s";
/// How long the agitated ingest writes.
const AGITATED_INGEST: &str = "110s";

/// A `tabula` child with its stdout collected and its stderr in a file.
struct Run {
    name: String,
    child: Child,
    stdout: Option<JoinHandle<String>>,
    stderr_log: PathBuf,
}

impl Run {
    fn spawn(dir: &Path, name: &str, lock: &[String], args: &[&str]) -> Run {
        let stderr_log = dir.join(format!("{name}.stderr"));
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .arg("--lock")
            .arg(lock.join(","))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr_log).unwrap());
        die_with_test(&mut cmd);
        let mut child = cmd.spawn().unwrap();
        let mut out = child.stdout.take().unwrap();
        let stdout = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = out.read_to_string(&mut text);
            text
        });
        Run {
            name: name.to_owned(),
            child,
            stdout: Some(stdout),
            stderr_log,
        }
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits for the exit; answers the status and stdout.
    async fn finish(&mut self) -> (ExitStatus, String) {
        let name = self.name.clone();
        let child = &mut self.child;
        let status = poll_until(&format!("{name} to exit"), RUN_DEADLINE, || {
            child.try_wait().unwrap()
        })
        .await;
        let stdout = self.stdout.take().unwrap().join().unwrap();
        (status, stdout)
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        signal(&mut self.child, libc::SIGKILL);
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("===== {} stderr =====\n{}", self.name, self.stderr());
        }
    }
}

/// Runs `tabula verify` on `table`; answers its exit code and JSON report.
async fn verify(dir: &Path, lock: &[String], ack_log: &Path, n: u32) -> (i32, serde_json::Value) {
    let ack_log = ack_log.to_str().unwrap();
    let mut run = Run::spawn(
        dir,
        &format!("verify-{n}"),
        lock,
        &[
            "verify",
            "--table",
            "ci",
            "--ack-log",
            ack_log,
            "--output",
            "json",
        ],
    );
    let (status, stdout) = run.finish().await;
    let report = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "verify printed no JSON report ({e}): {stdout:?}\n{}",
            run.stderr()
        )
    });
    (status.code().unwrap(), report)
}

/// Lines in the ack log so far.
fn ack_lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// The pid of a running tablet server listed in `cluster.json`.
fn a_tablet_server_pid(cluster: &LocalCluster) -> Option<u64> {
    let doc = cluster.cluster_file();
    doc["processes"]
        .as_array()?
        .iter()
        .filter(|p| p["role"] == "tablet")
        .find_map(|p| p["pid"].as_u64())
}

/// The tablet servers' pids in `cluster.json` once all are running.
fn tablet_server_pids(cluster: &LocalCluster) -> Option<Vec<u64>> {
    let doc = cluster.cluster_file();
    doc["processes"]
        .as_array()?
        .iter()
        .filter(|p| p["role"] == "tablet")
        .map(|p| p["pid"].as_u64())
        .collect()
}

fn sigkill(pid: u64) {
    let status = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -KILL {pid}: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_survives_a_tablet_server_kill_and_verify_catches_a_lost_node() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cluster");
    let base = free_port_block();
    let mut cluster = LocalCluster::start(&dir, &["--base-port".into(), base.to_string()], 1);
    let lock = cluster.wait_ready().await;
    let ack_log = tmp.path().join("acks.jsonl");

    let mut ingest = Run::spawn(
        tmp.path(),
        "ingest",
        &lock,
        &[
            "ingest",
            "--table",
            "ci",
            "--writers",
            "2",
            "--batch",
            "200",
            "--loops",
            "2",
            "--splits",
            "4",
            "--ack-log",
            ack_log.to_str().unwrap(),
            "--output",
            "json",
        ],
    );
    // Some batches are acknowledged: kill a tablet server under the running ingest.
    poll_until("10 acknowledged batches", RUN_DEADLINE, || {
        (ack_lines(&ack_log) >= 10).then_some(())
    })
    .await;
    let victim = a_tablet_server_pid(&cluster).expect("a running tablet server");
    assert!(
        ingest.running(),
        "the ingest finished before the kill: raise --loops"
    );
    sigkill(victim);
    let acked_at_kill = ack_lines(&ack_log);
    poll_until(
        "tabula local to restart the tablet server",
        RUN_DEADLINE,
        || {
            let pids = tablet_server_pids(&cluster)?;
            (pids.len() == 3 && !pids.contains(&victim)).then_some(())
        },
    )
    .await;

    let (status, stdout) = ingest.finish().await;
    assert_eq!(status.code(), Some(0), "ingest: {status}\n{stdout}");
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    // 2 writers x 2 loops x 25 batches x 200 nodes, every loop closed.
    assert_eq!(summary["acked_nodes"], 20_000, "{summary:#}");
    assert_eq!(summary["loops_closed"], 4, "{summary:#}");
    assert_eq!(summary["stopped_by"], "loops", "{summary:#}");
    assert!(
        ack_lines(&ack_log) > acked_at_kill,
        "no batch after the kill"
    );
    eprintln!(
        "ingest under a tablet-server kill: {} nodes/s, batch p99 {} ms, {} retries",
        summary["nodes_per_second"], summary["batch_latency_ms"]["p99"], summary["retries"]
    );

    let (code, report) = verify(tmp.path(), &lock, &ack_log, 1).await;
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["undefined"], 0, "{report:#}");
    assert_eq!(report["crc"], 0, "{report:#}");
    assert_eq!(report["acked_missing"], 0, "{report:#}");
    assert_eq!(report["acked"], 20_000, "{report:#}");
    // Closed loops: every node is pointed at.
    assert_eq!(report["referenced"], 20_000, "{report:#}");
    assert_eq!(report["unreferenced"], 0, "{report:#}");

    // Lose a node: delete the first row (in a closed loop, so something points at it).
    let client = Client::connect(&lock).await.unwrap();
    let table = client.table("ci").await.unwrap();
    let first = table
        .read_rows_with(
            RowSet::all(),
            ReadOptions {
                rows_limit: Some(1),
                ..ReadOptions::default()
            },
        )
        .collect_rows()
        .await
        .unwrap();
    let lost = first[0].key.clone();
    table
        .mutate_row(lost.clone(), vec![Mutation::delete_row()])
        .await
        .unwrap();
    let lost_hex: String = lost.iter().map(|b| format!("{b:02x}")).collect();

    let (code, report) = verify(tmp.path(), &lock, &ack_log, 2).await;
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["passed"], false, "{report:#}");
    assert_eq!(report["undefined"], 1, "{report:#}");
    assert_eq!(report["undefined_keys"][0]["key"], lost_hex, "{report:#}");
    assert_eq!(report["acked_missing"], 1, "{report:#}");
    assert_eq!(report["acked_missing_keys"][0], lost_hex, "{report:#}");
    assert_eq!(report["crc"], 0, "{report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_node_is_back_after_a_whole_cluster_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cluster");
    let base = free_port_block();
    let mut first = LocalCluster::start(&dir, &["--base-port".into(), base.to_string()], 1);
    let lock = first.wait_ready().await;
    let ack_log = tmp.path().join("acks.jsonl");

    // An ingest without an end, stopped by SIGTERM: it finishes its batches and exits 0.
    let mut ingest = Run::spawn(
        tmp.path(),
        "ingest",
        &lock,
        &[
            "ingest",
            "--table",
            "ci",
            "--writers",
            "2",
            "--batch",
            "100",
            "--splits",
            "3",
            "--ack-log",
            ack_log.to_str().unwrap(),
            "--output",
            "json",
        ],
    );
    poll_until("30 acknowledged batches", RUN_DEADLINE, || {
        (ack_lines(&ack_log) >= 30).then_some(())
    })
    .await;
    assert!(signal(&mut ingest.child, libc::SIGTERM), "ingest exited");
    let (status, stdout) = ingest.finish().await;
    assert_eq!(status.code(), Some(0), "ingest: {status}\n{stdout}");
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(summary["stopped_by"], "SIGTERM", "{summary:#}");
    let acked = summary["acked_nodes"].as_u64().unwrap();
    assert_eq!(acked, 100 * ack_lines(&ack_log) as u64, "{summary:#}");

    // The whole cluster down and up again on its directory.
    let status = first.terminate().await;
    assert_eq!(status.code(), Some(0), "tabula local stopped with {status}");
    drop(first);
    let mut second = LocalCluster::start(&dir, &[], 2);
    assert_eq!(second.wait_ready().await, lock);

    let (code, report) = verify(tmp.path(), &lock, &ack_log, 1).await;
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["acked"], acked, "{report:#}");
    assert_eq!(report["acked_missing"], 0, "{report:#}");
    assert_eq!(report["undefined"], 0, "{report:#}");
    assert_eq!(report["crc"], 0, "{report:#}");
    assert!(
        report["rows"].as_u64().unwrap() >= acked,
        "fewer rows than acknowledged nodes: {report:#}"
    );
    drop(second);
}

/// The agitator's fault log, one JSON object per line.
fn fault_log(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("agitator.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_under_the_agitator_loses_no_acknowledged_node() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cluster");
    let base = free_port_block();
    let args: Vec<String> = ["--base-port", &base.to_string(), "--agitate", AGITATE]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let mut first = LocalCluster::start(&dir, &args, 1);
    let lock = first.wait_ready().await;
    let ack_log = tmp.path().join("acks.jsonl");

    let mut ingest = Run::spawn(
        tmp.path(),
        "ingest",
        &lock,
        &[
            "ingest",
            "--table",
            "ci",
            "--writers",
            "2",
            "--batch",
            "100",
            "--splits",
            "4",
            "--duration",
            AGITATED_INGEST,
            "--ack-log",
            ack_log.to_str().unwrap(),
            "--output",
            "json",
        ],
    );
    let (status, stdout) = ingest.finish().await;
    assert_eq!(status.code(), Some(0), "ingest: {status}\n{stdout}");
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(summary["stopped_by"], "duration", "{summary:#}");
    let acked = summary["acked_nodes"].as_u64().unwrap();
    assert!(acked > 0, "{summary:#}");
    let faults = fault_log(&dir);
    let fired: Vec<String> = faults
        .iter()
        .filter(|f| f["ok"] == true)
        .filter_map(|f| f["kind"].as_str().map(str::to_owned))
        .collect();
    assert!(
        fired
            .iter()
            .any(|k| ["master", "tablet", "lock", "pause"].contains(&k.as_str())),
        "no process fault fired during the ingest: {faults:?}"
    );
    eprintln!(
        "agitated ingest: {acked} nodes, {} nodes/s, batch p99 {} ms, {} retries, faults {fired:?}",
        summary["nodes_per_second"], summary["batch_latency_ms"]["p99"], summary["retries"]
    );

    // Verify on a quiet cluster: the same directory again, without the agitator.
    let status = first.terminate().await;
    assert_eq!(status.code(), Some(0), "tabula local stopped with {status}");
    drop(first);
    let mut second = LocalCluster::start(&dir, &[], 2);
    assert_eq!(second.wait_ready().await, lock);
    let (code, report) = verify(tmp.path(), &lock, &ack_log, 1).await;
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["acked"], acked, "{report:#}");
    assert_eq!(report["acked_missing"], 0, "{report:#}");
    assert_eq!(report["undefined"], 0, "{report:#}");
    assert_eq!(report["crc"], 0, "{report:#}");
    eprintln!(
        "verify after the agitation: {} referenced, {} unreferenced",
        report["referenced"], report["unreferenced"]
    );
    drop(second);
}
