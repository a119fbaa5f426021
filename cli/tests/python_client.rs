//! Google's official Python Cloud Bigtable client (`google-cloud-bigtable` from PyPI) against
//! Tabula through the gateway, unchanged: the Python tests in `tests/python/` run with pytest
//! in a virtualenv this test makes once under the target directory
//! (`tests/python/requirements.txt` pins every package), against a `tabula local` it starts on
//! a free block of ports, through its Cloud Bigtable gateway (`BIGTABLE_EMULATOR_HOST`; a
//! `tabula gateway` of the test's own if that `tabula local` runs none).
//!
//! - `test_classic_client.py`: the classic `Client`/`Instance`/`Table` API;
//! - `test_data_client.py`: the `google.cloud.bigtable.data` API, sync and async;
//! - `test_failover.py` (last, as it kills): a tablet server SIGKILLed under Python readers and
//!   writers; every acknowledged row is read back (it prints the stall and the client's
//!   retries).
//!
//! Python 3 with `venv` and PyPI access are required: without them this test fails, saying so.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::local::{LocalCluster, free_port_block};
use support::python::{Venv, run_streaming};
use support::{BIN, Daemon, poll_until};

/// How long the Python tests may run (they take well under a minute on an idle machine).
const PYTEST_DEADLINE: Duration = Duration::from_secs(360);
/// How long the gateway may take to listen.
const GATEWAY_DEADLINE: Duration = Duration::from_secs(30);
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

/// Starts `tabula gateway` over `lock` on a free port; answers it and its address once it
/// printed `BIGTABLE_EMULATOR_HOST=ADDR`.
async fn start_gateway(dir: &Path, lock: &[String]) -> (Daemon, String) {
    let addr = Daemon::free_addr();
    let args: Vec<String> = ["gateway", "--lock", &lock.join(","), "--listen", &addr]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let mut gateway = Daemon::spawn(dir, "gateway", &args);
    let log = dir.join("gateway.log");
    let want = format!("BIGTABLE_EMULATOR_HOST={addr}");
    poll_until(
        &format!("the gateway to print {want}"),
        GATEWAY_DEADLINE,
        || {
            if let Some(status) = gateway.try_exit() {
                panic!(
                    "tabula gateway exited: {status}\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            text.lines().any(|l| l.trim() == want).then_some(())
        },
    )
    .await;
    (gateway, addr)
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
    // `tabula local` runs a gateway on its block's last port and names it in cluster.json; a
    // build whose `tabula local` runs none gets a `tabula gateway` of the test's own.
    let (mut own_gateway, gateway_addr) = match cluster.cluster_file()["gateway"].as_str() {
        Some(addr) => (None, addr.to_owned()),
        None => {
            let (daemon, addr) = start_gateway(tmp.path(), &lock).await;
            (Some(daemon), addr)
        }
    };
    eprintln!(
        "cluster ready with {} gateway at {gateway_addr} after {:.1?}",
        if own_gateway.is_some() {
            "the test's"
        } else {
            "its own"
        },
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
        tokio::task::spawn_blocking(move || run_streaming(pytest, "pytest", PYTEST_DEADLINE))
            .await
            .unwrap();
    assert!(
        status.success(),
        "the Python client tests failed ({status}):\n{output}"
    );
    assert!(
        output.contains("failover through the gateway:"),
        "the failover test printed no figures:\n{output}"
    );
    if let Some(gateway) = own_gateway.as_mut() {
        assert!(
            gateway.try_exit().is_none(),
            "the gateway exited during the run"
        );
    }
    eprintln!(
        "python client tests passed in {:.1?} (cluster start included)",
        started.elapsed()
    );
    drop(own_gateway);
    let _ = cluster.terminate().await;
}
