//! Linearizability of single-row operations under faults, end to end (issue 7, Jepsen's
//! linearizable-register test): `tabula local --agitate` runs a whole cluster and SIGKILLs the
//! active master, tablet servers and the lock-service leader, SIGSTOPs a tablet server past its
//! session TTL and resumes it (it must not acknowledge anything stale), and splits, moves,
//! merges, flushes and compacts tablets; the test itself also splits the tablets holding the
//! rows and moves them, under load. Six clients, each with its own `Client`, read, write and
//! check-and-mutate four rows (one tablet each at first), every call recorded on one monotonic
//! clock, until every fault kind has fired (`DIR/agitator.jsonl`) and at least 75 s have
//! passed. Then the checker (`tabula_tests::linearizability`) must find every row's history
//! linearizable; a search stopped by its bound fails the test too. As a check of the check, the
//! same history with one read's answer changed to a value nobody wrote must be a violation.
//!
//! Each row's register is the newest cell of `cf:v`, written at the server's time (per tablet
//! strictly increasing microseconds of the wall clock, so the newest cell is the last write).

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::Value;
use tabula_client::{Admin, Client, Family, TabletRecord};
use tabula_common::{Code, ServerId};
use tabula_tests::linearizability::{
    Call, CheckOptions, ClientPlan, ClientStats, Completion, Operation, Recorder, Return,
    RowRegister, Verdict, check, run_client,
};
use tokio::task::JoinSet;

use crate::support::local::{LocalCluster, free_port_block};
use crate::support::{eventually, poll_until};

/// The agitator's periods (each first fires after 75-125% of its period): every kind fires
/// within about a minute, and a master is active often enough for the admin operations.
const SPEC: &str = "master=45s,tablet=25s,lock=40s,pause=35s,admin=8s";
/// The agitator's seed (its choices; the timing still varies from run to run).
const SEED: &str = "11";
/// The fault kinds that must each have fired.
const KINDS: [&str; 5] = ["master", "tablet", "lock", "pause", "admin"];
/// The clients run at least this long, and until every kind fired ...
const MIN_WORKLOAD: Duration = Duration::from_secs(75);
/// ... but not longer than this.
const MAX_WORKLOAD: Duration = Duration::from_secs(150);
/// Concurrent clients, each with its own `Client`.
const CLIENTS: u32 = 6;
/// The registers' rows; the table is split so that each is in its own tablet.
const KEYS: [&str; 4] = ["a5", "b5", "c5", "d5"];
const SPLITS: [&[u8]; 3] = [b"b", b"c", b"d"];
const TABLE: &str = "lin";
/// When the test splits and moves the tablet of a row itself, and which row.
const OWN_SPLITS: [(Duration, usize); 2] =
    [(Duration::from_secs(5), 0), (Duration::from_secs(35), 2)];
/// Deadline of one admin step (the agitator may be killing the master meanwhile).
const ADMIN_DEADLINE: Duration = Duration::from_secs(90);

fn unix_ms() -> u64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(d.as_millis()).unwrap()
}

/// The agitator's fault log, `DIR/agitator.jsonl` (its complete lines: the agitator may be
/// appending one right now).
fn agitator_log(dir: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join("agitator.jsonl")).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
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

/// Creates the table (a master may be killed meanwhile) and waits until it can be opened.
async fn create_table(client: &Client) {
    let admin = client.admin();
    eventually("the table created", ADMIN_DEADLINE, || async {
        let families = [Family::new("cf")];
        match admin.create_table(TABLE, &families, &SPLITS).await {
            // A retry after an answer lost on the way: the first attempt made it.
            Err(e) if e.code == Code::AlreadyExists => Some(()),
            r => r
                .map_err(|e| eprintln!("create table: {e}"))
                .ok()
                .map(|_| ()),
        }
    })
    .await;
    eventually("the table opened", ADMIN_DEADLINE, || async {
        client.table(TABLE).await.ok().map(|_| ())
    })
    .await;
}

/// The record of a served tablet of the table holding `row`.
async fn tablet_of(admin: &Admin, row: &[u8]) -> Option<TabletRecord> {
    let tablets = admin.list_tablets(Some(TABLE)).await.ok()?;
    tablets
        .into_iter()
        .map(|t| t.record)
        .find(|r| r.contains(row) && r.server.is_some() && !r.server_addr.is_empty())
}

/// Splits the tablet holding `row` just after it (`row` lands in a fresh tablet), then moves
/// the tablet holding `row` to another tablet server. Answers what it did.
async fn split_and_move(admin: &Admin, row: &str) -> Vec<String> {
    let point = format!("{row}9");
    let (left, right) = eventually("a split of a row's tablet", ADMIN_DEADLINE, || async {
        admin
            .split_tablet(TABLE, point.as_bytes(), true)
            .await
            .map_err(|e| eprintln!("split at {point}: {e}"))
            .ok()
    })
    .await;
    let split = format!("split at {point}: {} and {}", left.tablet, right.tablet);
    // The master's list may show the parent for a moment: look the row's tablet up afresh
    // on every attempt.
    let (moved, to) = eventually("a move of a row's tablet", ADMIN_DEADLINE, || async {
        let record = tablet_of(admin, row.as_bytes()).await?;
        let from = record.server.clone()?;
        let servers = admin.list_servers().await.ok()?;
        let to = ServerId(
            servers
                .into_iter()
                .find(|s| s.server_id != from.0)?
                .server_id,
        );
        match admin.move_tablet(record.tablet, &to).await {
            Ok(moved) => Some((moved, to)),
            Err(e) => {
                eprintln!("move {} to {to}: {e}", record.tablet);
                None
            }
        }
    })
    .await;
    vec![
        split,
        format!("move of {} (row {row}) to {to}", moved.tablet),
    ]
}

/// The test's own admin faults: at each of [`OWN_SPLITS`] on the recorder's clock, a split and
/// a move of the tablet holding that row. Answers (time, what) for each.
async fn own_faults(addrs: Vec<String>, recorder: Arc<Recorder>) -> Vec<(Duration, String)> {
    let client = Client::connect(&addrs).await.unwrap();
    let admin = client.admin();
    let mut done = Vec::new();
    for (at, key) in OWN_SPLITS {
        // Scheduling, not synchronisation: the workload runs meanwhile.
        poll_until("the own fault's time", MAX_WORKLOAD, || {
            (recorder.now() >= at).then_some(())
        })
        .await;
        let began = recorder.now();
        for what in split_and_move(&admin, KEYS[key]).await {
            eprintln!("own fault from {:.1}s: {what}", began.as_secs_f64());
            done.push((began, what));
        }
    }
    done
}

/// Per key and kind of call: calls, completed and unknown; compare-and-sets that matched; and
/// per key the longest time until `end` without any completed call (the worst outage the
/// clients saw).
fn summary(history: &[Operation], end: Duration) -> String {
    let mut rows: BTreeMap<(String, &str), (u64, u64)> = BTreeMap::new();
    let mut completions: BTreeMap<String, Vec<Duration>> = BTreeMap::new();
    let mut matched = 0u64;
    for op in history {
        let key = op.key.escape_ascii().to_string();
        let kind = match op.call {
            Call::Read => "read",
            Call::Write(_) => "write",
            Call::CompareAndSet { .. } => "cas",
        };
        let e = rows.entry((key.clone(), kind)).or_default();
        e.0 += 1;
        if let Some(c) = &op.completion {
            e.1 += 1;
            completions.entry(key).or_default().push(c.at);
            matched += u64::from(c.ret == Return::CompareAndSet(true));
        }
    }
    let mut out = String::new();
    for ((key, kind), (n, done)) in rows {
        out.push_str(&format!(
            "  {key} {kind}: {n} ({done} completed, {} unknown)\n",
            n - done
        ));
    }
    out.push_str(&format!("  compare-and-sets that matched: {matched}\n"));
    for (key, mut times) in completions {
        times.sort();
        let mut longest = (Duration::ZERO, Duration::ZERO);
        let mut previous = Duration::ZERO;
        for t in times.into_iter().chain([end]) {
            if t.saturating_sub(previous) > longest.1 {
                longest = (previous, t.saturating_sub(previous));
            }
            previous = t;
        }
        out.push_str(&format!(
            "  {key}: longest time without a completed call {:.1}s (from {:.1}s)\n",
            longest.1.as_secs_f64(),
            longest.0.as_secs_f64()
        ));
    }
    out
}

/// `history` with one completed read's answer (the middle one) changed to a value nobody
/// wrote.
fn with_a_corrupt_read(history: &[Operation]) -> Vec<Operation> {
    let mut corrupt = history.to_vec();
    let reads: Vec<usize> = (0..corrupt.len())
        .filter(|&i| {
            matches!(
                corrupt[i].completion,
                Some(Completion {
                    ret: Return::Read(_),
                    ..
                })
            )
        })
        .collect();
    let victim = reads[reads.len() / 2];
    if let Some(c) = corrupt[victim].completion.as_mut() {
        c.ret = Return::Read(Some(Bytes::from_static(b"nobody wrote this")));
    }
    corrupt
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_row_operations_stay_linearizable_while_the_agitator_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cluster");
    let base = free_port_block();
    let args: Vec<String> = [
        "--base-port",
        &base.to_string(),
        "--agitate",
        SPEC,
        "--agitate-seed",
        SEED,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let mut cluster = LocalCluster::start(&dir, &args, 1);
    let addrs = cluster.wait_ready().await;
    let client = Client::connect(&addrs).await.unwrap();
    create_table(&client).await;

    let recorder = Arc::new(Recorder::new(1_000_000));
    let start_unix_ms = unix_ms();
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = JoinSet::new();
    for c in 0..CLIENTS {
        let addrs = addrs.clone();
        let recorder = Arc::clone(&recorder);
        let plan = ClientPlan {
            client: c,
            keys: KEYS
                .iter()
                .map(|k| Bytes::from_static(k.as_bytes()))
                .collect(),
            until: MAX_WORKLOAD,
            stop: Arc::clone(&stop),
            max_pause: Duration::from_millis(60),
            read_percent: 50,
            write_percent: 20,
            seed: 0x5eed + u64::from(c),
        };
        clients.spawn(async move {
            let client = Client::connect(&addrs).await.unwrap();
            let table = client.table(TABLE).await.unwrap();
            run_client(RowRegister::new(table, "cf", b"v"), recorder, plan).await
        });
    }
    let own = tokio::spawn(own_faults(addrs.clone(), Arc::clone(&recorder)));

    // Until every kind fired and the minimum has passed (polling the fault log).
    poll_until("every fault kind to fire", MAX_WORKLOAD, || {
        let seen = fired(&agitator_log(&dir));
        assert!(
            recorder.now() < MAX_WORKLOAD,
            "within {MAX_WORKLOAD:?} only {seen:?} fired of {KINDS:?}"
        );
        let done = KINDS.iter().all(|k| seen.contains(*k))
            && recorder.now() >= MIN_WORKLOAD
            && own.is_finished();
        done.then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let stopped_at = recorder.now();
    let mut stats: Vec<ClientStats> = Vec::new();
    while let Some(done) = clients.join_next().await {
        stats.push(done.unwrap());
    }
    let workload_took = recorder.now();
    let own = own.await.unwrap();

    let history = recorder.history();
    let checking = Instant::now();
    let report = check(&history, &CheckOptions::default()).unwrap();
    let check_took = checking.elapsed();
    let counts = recorder.counts();
    let faults = agitator_log(&dir);
    eprintln!("faults (seconds on the workload's clock):");
    for f in &faults {
        let at = f["time_ms"]
            .as_u64()
            .unwrap_or(0)
            .saturating_sub(start_unix_ms);
        eprintln!(
            "  {:.1}s {} {} {} ok={}",
            at as f64 / 1000.0,
            f["kind"],
            f["action"],
            f["target"],
            f["ok"]
        );
    }
    for (at, what) in &own {
        eprintln!("  {:.1}s own: {what}", at.as_secs_f64());
    }
    eprintln!(
        "workload: stopped at {:.1}s, calls in flight ended by {:.1}s, {CLIENTS} clients; \
         operations: {} completed, {} of unknown outcome, {} failed (dropped); \
         checker: {check_took:?}\n{}{report}",
        stopped_at.as_secs_f64(),
        workload_took.as_secs_f64(),
        counts.completed,
        counts.unknown,
        counts.failed,
        summary(&history, stopped_at),
    );
    for (c, s) in stats.iter().enumerate() {
        if !s.error_samples.is_empty() {
            eprintln!("client {c} failures: {:#?}", s.error_samples);
        }
    }

    // A workload that did nothing would prove nothing.
    assert!(
        counts.completed >= 500,
        "only {} operations completed",
        counts.completed
    );
    assert_eq!(own.len(), 2 * OWN_SPLITS.len(), "{own:?}");
    match report.verdict() {
        Verdict::Ok => {}
        Verdict::Violation => panic!("NOT LINEARIZABLE:\n{report}"),
        Verdict::Unknown => {
            panic!("the checker stopped at its bound (size the workload down):\n{report}")
        }
    }
    // The check of the check: the same history with one read corrupted is caught.
    let corrupt = check(&with_a_corrupt_read(&history), &CheckOptions::default()).unwrap();
    assert_eq!(corrupt.verdict(), Verdict::Violation, "{corrupt}");

    let status = cluster.terminate().await;
    assert_eq!(status.code(), Some(0), "tabula local stopped with {status}");
}
