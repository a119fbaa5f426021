//! Crash test: a child process writes with synced commits from several threads and is
//! SIGKILLed at a random moment; after reopening (as a new server, like a failover), every
//! acknowledged write is present and every row mutation is whole or absent.
//!
//! The child is this test binary run again with `TABULA_CRASH_CHILD` set; it prints `ACK <row>`
//! after each acknowledged write.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::Rng;
use tabula_common::{LocalDir, ServerId, StorageRoot, SystemClock, TabletId};
use tabula_tabletserver::engine::commitlog::{CommitLog, CommitLogOptions};
use tabula_tabletserver::engine::manifest::Manifest;
use tabula_tabletserver::engine::{
    CellFilter, Engine, EngineOptions, Mutation, RowMutation, ScanOptions, Schema, Tablet,
};

const TABLET: TabletId = TabletId(1);
const CHILD_ENV: &str = "TABULA_CRASH_CHILD";
const CELLS_PER_ROW: usize = 3;
const ROUNDS: usize = 6;

fn open(dir: &Path, server: &str) -> Tablet {
    let storage: Arc<dyn StorageRoot> = Arc::new(LocalDir::open(dir).unwrap());
    let log = CommitLog::open(
        storage.clone(),
        ServerId(server.into()),
        CommitLogOptions::default(),
    )
    .unwrap();
    let engine = Engine::new(
        storage.clone(),
        Arc::new(log),
        Arc::new(SystemClock),
        EngineOptions::for_tests(),
    );
    let schema = Schema::with_families(["cf"]);
    if storage.exists(&Manifest::path(TABLET)).unwrap() {
        engine.open_tablet(TABLET, schema).unwrap()
    } else {
        engine
            .create_tablet(TABLET, Bytes::new(), None, schema)
            .unwrap()
    }
}

fn row_mutation(row: &str) -> RowMutation {
    let value = Bytes::from(format!("{row}-{}", "x".repeat(200)));
    RowMutation {
        row: Bytes::from(row.to_owned()),
        mutations: (0..CELLS_PER_ROW)
            .map(|i| Mutation::SetCell {
                family: Bytes::from_static(b"cf"),
                qualifier: Bytes::from(format!("c{i}")),
                timestamp: 1,
                value: value.clone(),
            })
            .collect(),
    }
}

/// The child: write forever from 4 threads, acknowledging each write on stdout.
fn child(dir: &str, round: &str) {
    let tablet = Arc::new(open(Path::new(dir), &format!("server-{round}")));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let tablet = tablet.clone();
            let round = round.to_owned();
            std::thread::spawn(move || {
                for n in 0.. {
                    let row = format!("r{round}-t{t}-{n:06}");
                    tablet.apply(row_mutation(&row)).unwrap();
                    println!("ACK {row}");
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        let (dir, round) = spec.rsplit_once('|').unwrap();
        child(dir, round);
        return;
    }
    // The name the harness knows this test by: its module path within the test binary.
    let test_name = match module_path!().split_once("::") {
        Some((_, module)) => format!("{module}::acknowledged_writes_survive_sigkill"),
        None => "acknowledged_writes_survive_sigkill".to_owned(),
    };
    let dir = tempfile::tempdir().unwrap();
    let mut acked: Vec<String> = Vec::new();
    let mut rng = rand::rng();
    for round in 0..ROUNDS {
        let mut proc = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", &test_name, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, format!("{}|{round}", dir.path().display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = proc.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| l.strip_prefix("ACK ").map(str::to_owned))
                .collect::<Vec<_>>()
        });
        // Wait until the child is writing, then kill it at a random moment.
        let started = Instant::now();
        std::thread::sleep(Duration::from_millis(rng.random_range(150..700)));
        assert!(started.elapsed() < Duration::from_secs(30));
        proc.kill().unwrap(); // SIGKILL
        proc.wait().unwrap();
        let round_acked = reader.join().unwrap();
        acked.extend(round_acked);
    }
    eprintln!("{} acknowledged writes over {ROUNDS} kills", acked.len());
    assert!(
        acked.len() > 50,
        "the children wrote too little to test anything: {}",
        acked.len()
    );
    let tablet = open(dir.path(), "verifier");
    let rows: Vec<_> = tablet
        .scan(ScanOptions::default())
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    for row in &rows {
        assert_eq!(
            row.cells.len(),
            CELLS_PER_ROW,
            "row {:?} is half-applied",
            row.key
        );
        let want = row_mutation(std::str::from_utf8(&row.key).unwrap());
        for (cell, m) in row.cells.iter().zip(&want.mutations) {
            let Mutation::SetCell { value, .. } = m else {
                unreachable!()
            };
            assert_eq!(&cell.value, value);
        }
    }
    let present: std::collections::HashSet<_> = rows.iter().map(|r| r.key.clone()).collect();
    let lost: Vec<_> = acked
        .iter()
        .filter(|r| !present.contains(r.as_bytes()))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    // Point reads agree with the scan.
    for r in acked.iter().step_by(97) {
        assert!(
            tablet
                .read_row(r.as_bytes(), &CellFilter::default())
                .unwrap()
                .is_some()
        );
    }
}
