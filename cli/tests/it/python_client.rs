//! Google's official Python Cloud Bigtable client (`google-cloud-bigtable` from PyPI) against
//! Tabula through the gateway, unchanged: the Python tests in `tests/python/` run with pytest
//! in a virtualenv this test makes once under the target directory
//! (`tests/python/requirements.txt` pins every package), against a `tabula local` it starts on
//! a free block of ports, through the Cloud Bigtable gateway it runs (`BIGTABLE_EMULATOR_HOST`).
//!
//! - `test_classic_client.py`: the classic `Client`/`Instance`/`Table` API;
//! - `test_data_client.py`: the `google.cloud.bigtable.data` API, sync and async;
//! - `test_failover.py` (last, as it kills): a tablet server SIGKILLed under Python readers and
//!   writers; every acknowledged row is read back (it prints the stall and the client's
//!   retries).
//!
//! Python 3 with `venv` and PyPI access are required: without them this test fails, saying so.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::BIN;
use crate::support::local::{LocalCluster, free_port_block};
use crate::support::python::{Venv, run_child};

/// How long the Python tests may run (they take well under a minute on an idle machine).
const PYTEST_DEADLINE: Duration = Duration::from_secs(360);
/// The Python test files, in the order they run (the failover test last).
const TEST_FILES: [&str; 3] = [
    "test_classic_client.py",
    "test_data_client.py",
    "test_failover.py",
];

fn python_tests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("tests")
        .join("python")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_client_works_through_the_gateway_and_rides_out_a_tablet_server_kill() {
    let tests = python_tests_dir();
    let venv = tokio::task::spawn_blocking({
        let requirements = tests.join("requirements.txt");
        move || Venv::ensure(&requirements)
    })
    .await
    .unwrap();
    match venv.installed_in {
        Some(took) => eprintln!("made the virtualenv {} in {took:.1?}", venv.dir.display()),
        None => eprintln!("reusing the virtualenv {}", venv.dir.display()),
    }

    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cluster");
    let base = free_port_block();
    let mut cluster = LocalCluster::start(&dir, &["--base-port".into(), base.to_string()], 1);
    let lock = cluster.wait_ready().await;
    // `tabula local` runs a gateway on its block's last port and names it in cluster.json.
    let gateway_addr = cluster.cluster_file()["gateway"]
        .as_str()
        .expect("cluster.json names tabula local's Cloud Bigtable gateway")
        .to_owned();
    eprintln!(
        "cluster ready with its gateway at {gateway_addr} after {:.1?}",
        started.elapsed()
    );

    let mut pytest = venv.python();
    pytest
        .current_dir(&tests)
        .args(["-m", "pytest", "-v", "-rsxX", "-p", "no:cacheprovider"])
        .args(TEST_FILES)
        .env("BIGTABLE_EMULATOR_HOST", &gateway_addr)
        .env("TABULA_LOCAL_DIR", &dir)
        .env("TABULA_BIN", BIN)
        .env("TABULA_LOCK", lock.join(","))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1");
    let (status, output) =
        tokio::task::spawn_blocking(move || run_child(pytest, "pytest", PYTEST_DEADLINE))
            .await
            .unwrap();
    assert!(
        status.success(),
        "the Python client tests failed ({status}):\n{}\n\
         ---- all that pytest printed ----\n{output}",
        failures_first(&output)
    );
    eprintln!("{output}");
    assert!(
        output.contains("failover through the gateway:"),
        "the failover test printed no figures:\n{output}"
    );
    eprintln!(
        "python client tests passed in {:.1?} (cluster start included)",
        started.elapsed()
    );
    let _ = cluster.terminate().await;
}

/// What a failed pytest run printed about its failures: from its `FAILURES` (or `ERRORS`)
/// section on, else from its short summary, else its last 40 lines. The failure message leads
/// with it, as a truncated CI log keeps the head of a failed test's output.
fn failures_first(output: &str) -> &str {
    let mut lines = Vec::new();
    let mut at = 0;
    for line in output.split_inclusive('\n') {
        lines.push((at, line));
        at += line.len();
    }
    let section = |name: &str| {
        lines
            .iter()
            .find(|(_, line)| line.starts_with('=') && line.contains(name))
            .map(|(at, _)| *at)
    };
    let from = section(" FAILURES ")
        .or_else(|| section(" ERRORS "))
        .or_else(|| section(" short test summary info "))
        .unwrap_or_else(|| lines.len().checked_sub(40).map_or(0, |k| lines[k].0));
    &output[from..]
}

#[test]
fn a_failed_pytest_run_leads_with_its_failures() {
    let failed = "collected 2 items\n\
                  test_a.py::test_one PASSED\n\
                  test_a.py::test_two FAILED\n\
                  =================================== FAILURES ===================================\n\
                  E       AssertionError: 1 writes failed\n\
                  =========================== short test summary info ============================\n\
                  FAILED test_a.py::test_two\n";
    assert!(
        failures_first(failed)
            .trim_start_matches('=')
            .starts_with(" FAILURES ")
    );
    assert!(failures_first(failed).contains("AssertionError: 1 writes failed"));
    let summary_only = "test_a.py::test_one PASSED\n\
                        ========== short test summary info ==========\n\
                        ERROR test_a.py - ImportError\n";
    assert!(failures_first(summary_only).starts_with("========== short test summary info"));
    let lines: String = (0..100).map(|i| format!("line {i}\n")).collect();
    assert!(failures_first(&lines).starts_with("line 60\n"));
    assert_eq!(failures_first(""), "");
}
