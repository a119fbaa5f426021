//! `tabula local --agitate` end to end: a cluster with every fault kind on a short period
//! (master, tablet and lock kills, a pause past the session TTL, admin operations) while a
//! writer keeps writing rows through the client library, each retried until it is
//! acknowledged. Once `DIR/agitator.jsonl` shows every kind fired (and a paused server, once
//! resumed, found its session expired, exited and was restarted), SIGTERM stops it with exit
//! code 0 and no process fault after the stop began (the paused server resumed); started
//! again on the same directory without the agitator, every tablet is served and every
//! acknowledged row reads back. The longest write outage after each fault kind is measured
//! and printed, not asserted. A bad `--agitate` value is a usage error (exit 2).

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tabula_client::{Client, Mutation, RowSet, Table};

use crate::support;
use crate::support::local::{DEADLINE, LocalCluster, create_table, free_port_block};
use crate::support::{BIN, poll_until};

/// Every kind on a period short enough that each fires within about 90 s.
const SPEC: &str = "master=10s,tablet=8s,lock=12s,pause=15s,admin=4s";
/// The kinds that must each have fired.
const KINDS: [&str; 5] = ["master", "tablet", "lock", "pause", "admin"];
/// How long every kind may take to fire at least once.
const FAULTS_DEADLINE: Duration = Duration::from_secs(180);
/// Longest a single row may take to be acknowledged, retries included.
const WRITE_DEADLINE: Duration = Duration::from_secs(150);
/// Window after a fault in which a write outage is attributed to it.
const OUTAGE_WINDOW_MS: u64 = 40_000;

fn unix_ms() -> u64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(d.as_millis()).unwrap()
}

/// Row `i`'s key: successive rows spread over the table's three tablets (split at `k33`, `k66`).
fn row_key(i: u64) -> Vec<u8> {
    format!("k{:02}-{i:07}", i * 37 % 100).into_bytes()
}

/// Writes row after row, each retried until acknowledged, until `stop`; answers the time
/// (unix ms) each row was acknowledged, in row order.
async fn write_rows(table: Table, stop: Arc<AtomicBool>) -> Vec<u64> {
    let mut acked = Vec::new();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let row = row_key(i);
        let began = Instant::now();
        loop {
            let mutation = vec![Mutation::set_cell("cf", "q", row.clone())];
            match table.mutate_row(row.clone(), mutation).await {
                Ok(()) => break,
                Err(e) => {
                    assert!(
                        began.elapsed() < WRITE_DEADLINE,
                        "row {i} not acknowledged within {WRITE_DEADLINE:?}: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        acked.push(unix_ms());
        i += 1;
    }
    acked
}

/// The fault log's lines.
fn fault_log(dir: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join("agitator.jsonl")).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// The kinds that fired successfully at least once.
fn fired(lines: &[Value]) -> BTreeSet<String> {
    lines
        .iter()
        .filter(|l| l["ok"] == true)
        .filter_map(|l| l["kind"].as_str().map(str::to_owned))
        .collect()
}

/// Whether a paused tablet server, once resumed, exited by itself (its session had expired)
/// and was restarted: a `pause`, then a `resume` and a `restart` of the same process.
fn a_resumed_server_restarted(lines: &[Value]) -> bool {
    let at = |l: &Value| l["time_ms"].as_u64().unwrap_or(0);
    lines
        .iter()
        .filter(|p| p["kind"] == "pause" && p["ok"] == true)
        .any(|p| {
            let resumed = lines
                .iter()
                .find(|r| r["kind"] == "resume" && r["target"] == p["target"] && at(r) >= at(p));
            resumed.is_some_and(|r| {
                lines
                    .iter()
                    .any(|s| s["kind"] == "restart" && s["target"] == p["target"] && at(s) >= at(r))
            })
        })
}

/// For each fault kind, the longest gap between successive acknowledged writes (or from the
/// fault to the first one) within [`OUTAGE_WINDOW_MS`] after each of its faults.
fn outages(lines: &[Value], acked: &[u64]) -> BTreeMap<String, u64> {
    let mut worst: BTreeMap<String, u64> = BTreeMap::new();
    for line in lines.iter().filter(|l| l["ok"] == true) {
        let kind = line["kind"].as_str().unwrap();
        if !KINDS.contains(&kind) {
            continue;
        }
        let at = line["time_ms"].as_u64().unwrap();
        let mut previous = at;
        let mut longest = 0;
        for &t in acked
            .iter()
            .filter(|t| **t > at && **t <= at + OUTAGE_WINDOW_MS)
        {
            longest = longest.max(t - previous);
            previous = t;
        }
        let entry = worst.entry(kind.to_owned()).or_default();
        *entry = (*entry).max(longest);
    }
    worst
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_fires_and_no_acknowledged_row_is_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cluster");
    let base = free_port_block();
    let args: Vec<String> = [
        "--base-port",
        &base.to_string(),
        "--agitate",
        SPEC,
        "--agitate-seed",
        "7",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let began = Instant::now();
    let mut first = LocalCluster::start(&dir, &args, 1);
    let addrs = first.wait_ready().await;
    let ready_ms = unix_ms();
    eprintln!("ready after {:?}", began.elapsed());
    let client = Client::connect(&addrs).await.unwrap();
    let table = create_table(&client, "t", &[b"k33", b"k66"]).await;

    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(write_rows(table, Arc::clone(&stop)));
    let end = Instant::now() + FAULTS_DEADLINE;
    // The explicit deadline inside says what is missing; the polling one only backs it up.
    poll_until("every fault kind to fire", FAULTS_DEADLINE * 2, || {
        let lines = fault_log(&dir);
        let seen = fired(&lines);
        let paused_ok = a_resumed_server_restarted(&lines);
        assert!(
            Instant::now() < end,
            "within {FAULTS_DEADLINE:?} only {seen:?} fired of {KINDS:?}; a paused server \
             exited after its resume and restarted: {paused_ok}"
        );
        assert!(!writer.is_finished(), "the writer failed");
        (KINDS.iter().all(|k| seen.contains(*k)) && paused_ok).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let acked = writer.await.unwrap();

    let stop_ms = unix_ms();
    let status = first.terminate().await;
    assert_eq!(status.code(), Some(0), "tabula local stopped with {status}");
    let lines = fault_log(&dir);
    for line in &lines {
        let kind = line["kind"].as_str().unwrap();
        if ["master", "tablet", "lock", "pause"].contains(&kind) {
            assert!(
                line["time_ms"].as_u64().unwrap() < stop_ms,
                "a fault after the stop began: {line}"
            );
        }
    }
    let count = |kind: &str| lines.iter().filter(|l| l["kind"] == kind).count();
    assert_eq!(
        count("pause"),
        count("resume"),
        "a paused server was not resumed"
    );

    for kind in KINDS {
        let first_ms = lines
            .iter()
            .filter(|l| l["kind"] == kind && l["ok"] == true)
            .filter_map(|l| l["time_ms"].as_u64())
            .min()
            .unwrap();
        eprintln!(
            "{kind} first fired {} ms after ready",
            first_ms.saturating_sub(ready_ms)
        );
    }
    eprintln!("agitated and stopped after {:?}", began.elapsed());
    let worst = outages(&lines, &acked);
    eprintln!(
        "{} rows acknowledged under {} faults; longest write outage after a fault, by kind \
         (ms): {worst:?}",
        acked.len(),
        lines.len()
    );
    for kind in KINDS {
        eprintln!(
            "outage after {kind}: {} ms (over {} faults)",
            worst.get(kind).copied().unwrap_or_default(),
            lines.iter().filter(|l| l["kind"] == kind).count()
        );
    }
    drop(first);

    // The same directory again, without the agitator: everything is served, nothing is lost.
    let mut second = LocalCluster::start(&dir, &[], 2);
    assert_eq!(second.wait_ready().await, addrs);
    let client = Client::connect(&addrs).await.unwrap();
    let admin = client.admin();
    support::eventually("every tablet served", DEADLINE, || async {
        let s = admin.cluster_status().await.ok()?;
        (s.tablets >= 3 && s.tablets_not_serving == 0).then_some(())
    })
    .await;
    let table = client.table("t").await.unwrap();
    let rows = table
        .read_rows(RowSet::all(), None)
        .collect_rows()
        .await
        .unwrap();
    let found: BTreeSet<Vec<u8>> = rows.iter().map(|r| r.key.to_vec()).collect();
    for i in 0..acked.len() as u64 {
        let key = row_key(i);
        assert!(
            found.contains(&key),
            "acknowledged row {} lost ({} rows found)",
            String::from_utf8_lossy(&key),
            found.len()
        );
    }
    for row in &rows {
        assert_eq!(row.value("cf", b"q").map(|v| &v[..]), Some(&row.key[..]));
    }
    let status = second.terminate().await;
    assert_eq!(status.code(), Some(0), "tabula local stopped with {status}");
    eprintln!("done after {:?}", began.elapsed());
}

#[test]
fn a_bad_agitate_spec_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    for bad in ["disk=10s", "master=10", "master=0s,tablet=5s"] {
        let out = Command::new(BIN)
            .args(["local", "--agitate", bad, "--dir"])
            .arg(tmp.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--agitate"), "{bad}: {stderr}");
        assert!(
            !tmp.path().join("cluster.json").exists(),
            "a refused start wrote cluster.json"
        );
    }
    let out = Command::new(BIN)
        .args(["local", "--agitate-seed", "5", "--dir"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "a seed without --agitate: {out:?}"
    );
}
