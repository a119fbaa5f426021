//! `tabula bench ycsb` and `tabula bench paper` end to end with `--local`: each starts a
//! whole cluster as its child, loads and runs a small workload, measures the raw ceilings in
//! the same run and prints one JSON document. The documents are checked for shape and
//! consistency (counts add up, every operation of the workload present, positive latencies,
//! ceilings measured, ratios present) and never for speed. Bad arguments exit 2.
//!
//! Through the Cloud Bigtable API: `--via-gateway` (the benchmark starts a gateway over its
//! local cluster and runs both paths) and `--bigtable-api ADDR` alone (a `tabula local` and a
//! `tabula gateway` the test starts; only the API path runs).

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::local::{LocalCluster, die_with_test, free_port_block};

/// The `tabula` binary under test.
const BIN: &str = env!("CARGO_BIN_EXE_tabula");
/// How long one benchmark run may take on a loaded 2-core machine.
const RUN_DEADLINE: Duration = Duration::from_secs(240);

/// Runs `tabula <args>` in a scratch directory until it exits (killed after the deadline);
/// answers its exit code, stdout and stderr.
fn tabula(args: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let stdout_path = dir.path().join("stdout");
    let stderr_path = dir.path().join("stderr");
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    if args.contains(&"--local") {
        cmd.arg("--dir").arg(dir.path());
    }
    let mut child = cmd
        .current_dir(dir.path())
        .env_remove("TABULA_LOCK")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > RUN_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            let mut err = String::new();
            std::fs::File::open(&stderr_path)
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("tabula {args:?} still running after {RUN_DEADLINE:?}; stderr:\n{err}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let read = |p| std::fs::read_to_string(p).unwrap();
    (
        status.code().unwrap_or(-1),
        read(&stdout_path),
        read(&stderr_path),
    )
}

/// Runs a benchmark that must succeed and answers its JSON document.
fn run_json(args: &[&str]) -> Value {
    let (code, out, err) = tabula(args);
    assert_eq!(code, 0, "tabula {args:?} failed; stderr:\n{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: stdout was\n{out}\nstderr:\n{err}"))
}

fn positive(v: &Value) -> bool {
    v.as_f64().is_some_and(|x| x > 0.0)
}

#[test]
fn ycsb_workload_a_on_a_local_cluster_reports_every_operation_and_its_ceilings() {
    let doc = run_json(&[
        "bench",
        "ycsb",
        "--local",
        "--workload",
        "a",
        "--records",
        "2000",
        "--ops",
        "2000",
        "--concurrency",
        "8",
        "--ceiling-secs",
        "1",
        "--output",
        "json",
    ]);
    assert_eq!(doc["benchmark"], "ycsb");
    assert_eq!(doc["workload"], "a");
    assert_eq!(doc["distribution"], "zipfian");
    assert_eq!(doc["load"]["rows"], 2000, "{doc:#}");
    assert_eq!(doc["load"]["failed_batches"], 0);
    let ops = doc["operations"].as_object().unwrap();
    let mut names: Vec<&str> = ops.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["READ", "UPDATE"], "{doc:#}");
    let mut total = 0;
    for (name, op) in ops {
        let done = op["operations"].as_u64().unwrap();
        total += done + op["failed"].as_u64().unwrap();
        assert!(done > 0, "{name}: {op}");
        for field in [
            "average_latency_us",
            "p50_latency_us",
            "p95_latency_us",
            "p99_latency_us",
            "p999_latency_us",
            "throughput_ops_per_sec",
            "ratio",
        ] {
            assert!(positive(&op[field]), "{name}.{field}: {op}");
        }
        let p = |f: &str| op[f].as_u64().unwrap();
        assert!(p("p50_latency_us") <= p("p95_latency_us"));
        assert!(p("p95_latency_us") <= p("p99_latency_us"));
        assert!(p("p99_latency_us") <= p("p999_latency_us"));
    }
    assert_eq!(total, 2000, "operation counts add up to --ops: {doc:#}");
    let overall = &doc["overall"];
    assert_eq!(
        overall["operations"].as_u64().unwrap() + overall["failed"].as_u64().unwrap(),
        2000
    );
    assert!(positive(&overall["throughput_ops_per_sec"]), "{overall}");
    assert!(positive(&overall["ratio_to_echo"]), "{overall}");
    assert!(positive(&doc["ceilings"]["echo_calls_per_sec"]), "{doc:#}");
    assert!(positive(&doc["ceilings"]["stream_mb_per_sec"]), "{doc:#}");
    assert_eq!(doc["ceilings"]["payload_bytes"], 1000);
    assert_eq!(doc["ceilings"]["concurrency"], 8);
    let timeline: u64 = doc["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["ops"].as_u64().unwrap())
        .sum();
    assert_eq!(timeline, overall["operations"].as_u64().unwrap());
}

#[test]
fn paper_on_a_local_cluster_reports_every_benchmark_beside_the_paper_and_the_ceilings() {
    let doc = run_json(&[
        "bench",
        "paper",
        "--local",
        "--rows",
        "2000",
        "--concurrency",
        "8",
        "--ceiling-secs",
        "1",
        "--output",
        "json",
    ]);
    assert_eq!(doc["benchmark"], "paper");
    assert_eq!(doc["tablet_servers"], 1);
    let results = doc["results"].as_array().unwrap();
    let names: Vec<&str> = results
        .iter()
        .map(|r| r["benchmark"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "sequential writes",
            "random writes",
            "sequential reads",
            "random reads",
            "random reads (mem)",
            "scans"
        ]
    );
    for r in results {
        let want = if r["benchmark"] == "scans" { 20 } else { 2000 };
        assert_eq!(
            r["operations"].as_u64().unwrap() + r["failed"].as_u64().unwrap(),
            want,
            "{r}"
        );
        for field in [
            "rows_per_sec",
            "per_server_rows_per_sec",
            "paper_single_server",
            "ratio_to_paper",
            "ratio_to_ceiling",
            "p50_latency_us",
        ] {
            assert!(positive(&r[field]), "{field}: {r}");
        }
    }
    // Every read found its row: sequential reads read the 2000 rows the writes wrote.
    assert_eq!(results[2]["rows"], 2000);
    assert_eq!(
        results[5]["rows"], 20_000,
        "20 scans of 1000 rows: the 2000 rows read 10 times over"
    );
    assert!(positive(&doc["ceilings"]["echo_calls_per_sec"]));
    assert!(positive(&doc["ceilings"]["stream_mb_per_sec"]));
}

/// Checks one path of a `bench ycsb` document: its load wrote every record, every one of the
/// `ops` operations ran and succeeded, only the workload's `kinds` ran, every read found its
/// row (so data really moved through that path), and its numbers are positive.
fn check_path(doc: &Value, path: &Value, records: u64, ops: u64, kinds: &[&str]) {
    assert_eq!(path["load"]["rows"], records, "{path:#}");
    assert_eq!(path["load"]["failed_batches"], 0, "{path:#}");
    assert_eq!(
        path["overall"]["operations"], ops,
        "ops counted = ops asked: {path:#}"
    );
    assert_eq!(path["overall"]["failed"], 0, "{path:#}");
    assert!(
        positive(&path["overall"]["throughput_ops_per_sec"]),
        "{path}"
    );
    assert!(positive(&path["overall"]["ratio_to_echo"]), "{path}");
    let operations = path["operations"].as_object().unwrap();
    let mut names: Vec<&str> = operations.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, kinds, "{path:#}");
    let mut total = 0;
    for (name, op) in operations {
        let done = op["operations"].as_u64().unwrap();
        total += done;
        assert_eq!(op["failed"], 0, "{name}: {op}");
        assert!(positive(&op["p50_latency_us"]), "{name}: {op}");
        assert!(positive(&op["ratio"]), "{name}: {op}");
        if name == "READ" {
            assert_eq!(op["rows"], done, "every read found its record: {op}");
        }
        if name == "SCAN" {
            assert!(
                op["rows"].as_u64().unwrap() >= done,
                "scans read rows: {op}"
            );
        }
    }
    assert_eq!(total, ops, "{path:#}");
    assert!(positive(&doc["ceilings"]["echo_calls_per_sec"]), "{doc:#}");
}

#[test]
fn ycsb_via_gateway_runs_both_paths_and_reports_the_gateways_cost() {
    let doc = run_json(&[
        "bench",
        "ycsb",
        "--local",
        "--via-gateway",
        "--workload",
        "e",
        "--records",
        "1000",
        "--ops",
        "600",
        "--concurrency",
        "8",
        "--ceiling-secs",
        "1",
        "--output",
        "json",
    ]);
    let paths = doc["paths"].as_array().unwrap();
    let names: Vec<&str> = paths.iter().map(|p| p["path"].as_str().unwrap()).collect();
    assert_eq!(names, ["native", "bigtable-api"], "{doc:#}");
    for path in paths {
        check_path(&doc, path, 1000, 600, &["INSERT", "SCAN"]);
    }
    assert_eq!(doc["path"], "native", "the first path at the top level");
    assert_eq!(doc["overall"], paths[0]["overall"]);
    let endpoint = paths[1]["endpoint"].as_str().unwrap();
    assert!(endpoint.starts_with("127.0.0.1:"), "{endpoint}");
    let comparison = &doc["comparison"];
    assert_eq!(comparison["baseline"], "native");
    assert!(positive(&comparison["throughput_ratio"]), "{comparison}");
    for kind in ["INSERT", "SCAN"] {
        let k = &comparison["operations"][kind];
        assert!(positive(&k["throughput_ratio"]), "{kind}: {comparison}");
        assert!(positive(&k["p50_latency_ratio"]), "{kind}: {comparison}");
    }
}

/// A `tabula gateway` child over the cell at `lock`, on a free port; answers it and the
/// address it printed.
fn start_gateway(lock: &[String]) -> (Child, String) {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "gateway",
        "--lock",
        &lock.join(","),
        "--listen",
        "127.0.0.1:0",
    ])
    .env_remove("TABULA_LOCK")
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    die_with_test(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (send, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if send.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = match lines.recv_timeout(left) {
            Ok(line) => line,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("tabula gateway printed no address ({e})");
            }
        };
        if let Some(addr) = line.strip_prefix("BIGTABLE_EMULATOR_HOST=") {
            return (child, addr.trim().to_owned());
        }
    }
}

#[tokio::test]
async fn ycsb_through_a_bigtable_api_address_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let base = free_port_block();
    let mut cluster = LocalCluster::start(
        &tmp.path().join("cluster"),
        &["--base-port".into(), base.to_string()],
        1,
    );
    let lock = cluster.wait_ready().await;
    let (mut gateway, addr) = start_gateway(&lock);
    let doc = run_json(&[
        "bench",
        "ycsb",
        "--bigtable-api",
        &addr,
        "--table",
        "bench_f",
        "--workload",
        "f",
        "--records",
        "500",
        "--ops",
        "400",
        "--concurrency",
        "4",
        "--ceiling-secs",
        "1",
        "--output",
        "json",
    ]);
    let paths = doc["paths"].as_array().unwrap();
    assert_eq!(paths.len(), 1, "no cell given, so no native path: {doc:#}");
    assert_eq!(doc["path"], "bigtable-api");
    assert_eq!(doc["endpoint"], addr.as_str());
    assert_eq!(doc["table"], "bench_f");
    assert!(doc["tablet_servers"].is_null(), "{doc:#}");
    assert!(doc["comparison"].is_null(), "{doc:#}");
    check_path(&doc, &paths[0], 500, 400, &["READ", "READ-MODIFY-WRITE"]);
    // A named table is kept: a second run finds it and uses it.
    let again = run_json(&[
        "bench",
        "ycsb",
        "--bigtable-api",
        &addr,
        "--table",
        "bench_f",
        "--workload",
        "c",
        "--records",
        "500",
        "--ops",
        "100",
        "--concurrency",
        "2",
        "--ceiling-secs",
        "1",
        "--output",
        "json",
    ]);
    check_path(&again, &again["paths"][0], 500, 100, &["READ"]);
    let _ = gateway.kill();
    let _ = gateway.wait();
    drop(cluster);
}

#[test]
fn bad_arguments_exit_2() {
    for args in [
        &["bench", "ycsb", "--local", "--workload", "z"][..],
        &[
            "bench",
            "ycsb",
            "--local",
            "--workload",
            "a",
            "--records",
            "0",
        ],
        &["bench", "ycsb", "--workload", "a"],
        &["bench", "paper", "--local", "--rows", "0"],
        &[
            "bench",
            "ycsb",
            "--local",
            "--workload",
            "a",
            "--bigtable-api",
            "127.0.0.1:1",
        ],
        &["bench", "ycsb", "--workload", "a", "--via-gateway"],
    ] {
        let (code, _, err) = tabula(args);
        assert_eq!(code, 2, "tabula {args:?}: {err}");
    }
}
