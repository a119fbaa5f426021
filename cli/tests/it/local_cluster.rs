//! `tabula local` end to end: started as a child on a free block of ports, it prints
//! `cluster ready: --lock ADDRS`; a table is created through the active master and rows are
//! written through METADATA lookups; `cluster.json` lists 3 lock nodes, 3 tablet servers and
//! 2 masters, all alive. SIGTERM stops it with exit code 0; started again on the same directory
//! (without --base-port: the directory keeps its cell) it is ready again and every row reads
//! back. SIGKILLed, its children die with it. Bad flags are a usage error (exit 2).

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use tabula_client::{Client, Mutation};

use crate::support::local::{DEADLINE, LocalCluster, alive, create_table, free_port_block};
use crate::support::{BIN, poll_until, signal};

/// The pids in `cluster.json`, after checking it lists 3 lock nodes, 3 tablet servers and 2
/// masters with addresses and logs.
fn listed_pids(doc: &serde_json::Value) -> Vec<u64> {
    assert_eq!(doc["ready"], true, "{doc:#}");
    let procs = doc["processes"].as_array().unwrap();
    let count = |role: &str| procs.iter().filter(|p| p["role"] == role).count();
    assert_eq!(
        (count("lock"), count("tablet"), count("master")),
        (3, 3, 2),
        "{doc:#}"
    );
    for p in procs {
        assert!(p["address"].as_str().unwrap().starts_with("127.0.0.1:"));
        assert!(Path::new(p["log"].as_str().unwrap()).exists(), "{p}");
        assert_eq!(p["metrics"].is_string(), p["role"] == "tablet", "{p}");
    }
    procs.iter().map(|p| p["pid"].as_u64().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_cluster_serves_stops_cleanly_and_keeps_its_rows_across_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cluster");
    let base = free_port_block();
    let mut first = LocalCluster::start(&dir, &["--base-port".into(), base.to_string()], 1);
    let addrs = first.wait_ready().await;
    assert_eq!(addrs.len(), 3);
    assert_eq!(addrs[0], format!("127.0.0.1:{base}"));

    let client = Client::connect(&addrs).await.unwrap();
    let table = create_table(&client, "t", &[b"m"]).await;
    let rows: Vec<Vec<u8>> = (0..20u8).map(|i| vec![b'a' + i, b'0' + i % 10]).collect();
    for row in &rows {
        table
            .mutate_row(
                row.clone(),
                vec![Mutation::set_cell("cf", "q", row.clone())],
            )
            .await
            .unwrap();
    }
    let pids = listed_pids(&first.cluster_file());
    assert!(pids.iter().all(|p| alive(*p)), "a listed process is gone");

    let status = first.terminate().await;
    assert_eq!(status.code(), Some(0), "tabula local stopped with {status}");
    drop(first);

    // The same directory again, without --base-port: the cell comes back on its ports.
    let mut second = LocalCluster::start(&dir, &[], 2);
    assert_eq!(second.wait_ready().await, addrs);
    let client = Client::connect(&addrs).await.unwrap();
    let table = client.table("t").await.unwrap();
    for row in &rows {
        let got = table.read_row(row.clone(), None).await.unwrap();
        let value = got.as_ref().and_then(|r| r.value("cf", b"q"));
        assert_eq!(value.map(|v| &v[..]), Some(&row[..]), "row {row:?} lost");
    }

    // SIGKILLed, it takes its children with it.
    let pids = listed_pids(&second.cluster_file());
    signal(&mut second.child, libc::SIGKILL);
    second.child.wait().unwrap();
    poll_until("the children to die with tabula local", DEADLINE, || {
        pids.iter().all(|p| !alive(*p)).then_some(())
    })
    .await;
}

#[test]
fn an_even_lock_cell_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["local", "--lock-nodes", "2", "--dir"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("odd number"), "{stderr}");
    assert!(
        !tmp.path().join("cluster.json").exists(),
        "a refused start wrote cluster.json"
    );
}
