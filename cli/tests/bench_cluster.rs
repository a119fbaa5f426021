//! `tabula bench ycsb` and `tabula bench paper` end to end with `--local`: each starts a
//! whole cluster as its child, loads and runs a small workload, measures the raw ceilings in
//! the same run and prints one JSON document. The documents are checked for shape and
//! consistency (counts add up, every operation of the workload present, positive latencies,
//! ceilings measured, ratios present) and never for speed. Bad arguments exit 2.

#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

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
    assert_eq!(results[5]["rows"], 2000, "20 scans of 100 rows");
    assert!(positive(&doc["ceilings"]["echo_calls_per_sec"]));
    assert!(positive(&doc["ceilings"]["stream_mb_per_sec"]));
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
    ] {
        let (code, _, err) = tabula(args);
        assert_eq!(code, 2, "tabula {args:?}: {err}");
    }
}
