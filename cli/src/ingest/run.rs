//! `tabula ingest`, one run: create the table if it is missing, open the ack log, start the
//! writers (tokio tasks, each with its own random seed), print a progress line to stderr every
//! few seconds, and stop them on `--loops` (each writer stops by itself), `--duration` (the
//! writers close their open loops) or Ctrl-C/SIGTERM (they finish the batch in flight; a second
//! signal abandons it). Then the ack log is flushed and synced and the summary printed.
//! A writer that fails stops the others and the run exits 1 after the same cleanup.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tabula_client::{Client, Family, Table};
use tabula_common::Code;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::acks::AckLog;
use super::node::{FAMILY, split_keys};
use super::stats::{Sample, Stats, millis, quantile};
use super::writer::{Stop, Writer, WriterOutcome};
use crate::output::{self, OutputFormat};
use crate::signal::StopSignals;

/// How often the progress line is printed.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// What one run is asked to do.
#[derive(Debug, Clone)]
pub(super) struct IngestPlan {
    /// The table.
    pub(super) table: String,
    /// Writer tasks.
    pub(super) writers: u32,
    /// Nodes per batch.
    pub(super) batch: u64,
    /// Stop after this long (closing open loops).
    pub(super) duration: Option<Duration>,
    /// Stop after each writer closed this many loops.
    pub(super) loops: Option<u64>,
    /// Tablets of a table this run creates.
    pub(super) splits: u32,
    /// The ack log.
    pub(super) ack_log: PathBuf,
}

/// Runs `plan` against the cluster whose lock cell is `lock`.
pub(super) async fn ingest(
    lock: &[String],
    plan: &IngestPlan,
    format: OutputFormat,
) -> anyhow::Result<()> {
    let mut signals = StopSignals::install()?;
    let client = Client::connect(lock).await.context("connect")?;
    let table = ensure_table(&client, &plan.table, plan.splits).await?;
    let log = AckLog::open(&plan.ack_log)?;
    let stats = Arc::new(Stats::default());
    let (stop, stop_rx) = watch::channel(Stop::Running);
    let mut writers = JoinSet::new();
    for seed in seeds(plan.writers) {
        let writer = Writer {
            table: table.clone(),
            seed,
            width: plan.batch,
            loops: plan.loops,
            stop: stop_rx.clone(),
            acks: log.sender(),
            stats: Arc::clone(&stats),
        };
        writers.spawn(writer.run());
    }
    drop(stop_rx);
    eprintln!(
        "ingest: table {:?}, {} writers x {} nodes per batch, ack log {}",
        plan.table,
        plan.writers,
        plan.batch,
        plan.ack_log.display()
    );
    let started = Instant::now();
    let mut deadline = plan.duration.map(|d| started + d);
    let mut ticker = tokio::time::interval_at(started + PROGRESS_EVERY, PROGRESS_EVERY);
    let mut last = (started, stats.sample());
    let mut stopped_by = match (plan.loops, plan.duration) {
        (Some(_), _) => "loops",
        (None, Some(_)) => "duration",
        (None, None) => "signal",
    };
    let mut outcomes: Vec<WriterOutcome> = Vec::new();
    let mut failure: Option<anyhow::Error> = None;
    let raise = |level: Stop| {
        stop.send_if_modified(|s| {
            let raised = level > *s;
            *s = (*s).max(level);
            raised
        })
    };
    loop {
        tokio::select! {
            joined = writers.join_next() => match joined {
                None => break,
                Some(Ok(Ok(outcome))) => outcomes.push(outcome),
                Some(Ok(Err(e))) => {
                    eprintln!("ingest: a writer failed: {e:#}; stopping the others");
                    failure.get_or_insert(e);
                    raise(Stop::Finish);
                }
                Some(Err(e)) => {
                    failure.get_or_insert(anyhow::Error::new(e).context("a writer task died"));
                    raise(Stop::Finish);
                }
            },
            _ = ticker.tick() => {
                let now = stats.sample();
                let line = now.since(&last.1).progress_line(last.0.elapsed(), &now);
                eprintln!("{line}");
                last = (Instant::now(), now);
            }
            () = sleep_until(deadline) => {
                deadline = None;
                eprintln!("ingest: --duration is over: closing the open loops");
                raise(Stop::Close);
            }
            name = signals.recv() => {
                stopped_by = name;
                if raise(Stop::Finish) {
                    eprintln!("ingest: {name}: finishing the batches in flight (again to abandon them)");
                } else {
                    eprintln!("ingest: {name} again: abandoning the batches in flight");
                    raise(Stop::Abandon);
                }
            }
        }
    }
    let elapsed = started.elapsed();
    let records = log.close().await?;
    if let Some(e) = failure {
        return Err(e.context(format!(
            "ingest into {:?} failed (acknowledged batches are in {})",
            plan.table,
            plan.ack_log.display()
        )));
    }
    let summary = Summary {
        plan,
        total: stats.sample(),
        elapsed,
        records,
        abandoned: outcomes.iter().filter(|o| o.abandoned).count(),
        stopped_by,
    };
    output::emit(format, || summary.to_text(), || summary.to_json())
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// `count` distinct random seeds.
fn seeds(count: u32) -> Vec<u64> {
    let mut seen = HashSet::new();
    let mut seeds = Vec::new();
    while seeds.len() < usize::try_from(count).unwrap_or(usize::MAX) {
        let seed: u64 = rand::random();
        if seen.insert(seed) {
            seeds.push(seed);
        }
    }
    seeds
}

/// The table `name`, created with the ingest family over `splits` tablets if it is missing
/// (another creator winning the race is fine).
async fn ensure_table(client: &Client, name: &str, splits: u32) -> anyhow::Result<Table> {
    match client.table(name).await {
        Ok(table) => return Ok(table),
        Err(e) if e.code == Code::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("look up table {name:?}")),
    }
    let keys = split_keys(splits);
    let keys: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    match client
        .admin()
        .create_table(name, &[Family::new(FAMILY)], &keys)
        .await
    {
        Ok(_) => eprintln!("ingest: created table {name:?} with {splits} tablets"),
        Err(e) if e.code == Code::AlreadyExists => {
            eprintln!("ingest: table {name:?} was created meanwhile; using it");
        }
        Err(e) => return Err(e).with_context(|| format!("create table {name:?}")),
    }
    client
        .table(name)
        .await
        .with_context(|| format!("look up table {name:?} after creating it"))
}

/// The end of a run.
struct Summary<'a> {
    plan: &'a IngestPlan,
    total: Sample,
    elapsed: Duration,
    records: u64,
    abandoned: usize,
    stopped_by: &'static str,
}

impl Summary<'_> {
    fn to_text(&self) -> String {
        let t = &self.total;
        let rows: Vec<Vec<String>> = [
            ("table", format!("{:?}", self.plan.table)),
            ("writers", self.plan.writers.to_string()),
            ("acked nodes", t.acked_nodes.to_string()),
            ("relinked nodes", t.relinked_nodes.to_string()),
            ("batches", t.batches.to_string()),
            ("loops closed", t.loops_closed.to_string()),
            ("retries", t.retries.to_string()),
            ("elapsed", format!("{:.1} s", self.elapsed.as_secs_f64())),
            (
                "nodes/s",
                format!("{:.0}", t.nodes_per_second(self.elapsed)),
            ),
            ("batch p50", millis(quantile(&t.latency, 0.50))),
            ("batch p99", millis(quantile(&t.latency, 0.99))),
            ("abandoned batches", self.abandoned.to_string()),
            ("stopped by", self.stopped_by.to_owned()),
            (
                "ack log",
                format!(
                    "{} (+{} records)",
                    self.plan.ack_log.display(),
                    self.records
                ),
            ),
        ]
        .into_iter()
        .map(|(k, v)| vec![k.to_owned(), v])
        .collect();
        output::table(&["INGEST", ""], &rows)
    }

    fn to_json(&self) -> serde_json::Value {
        let t = &self.total;
        let ms = |q: f64| quantile(&t.latency, q).map(|d| d.as_secs_f64() * 1000.0);
        serde_json::json!({
            "table": self.plan.table,
            "writers": self.plan.writers,
            "batch": self.plan.batch,
            "acked_nodes": t.acked_nodes,
            "relinked_nodes": t.relinked_nodes,
            "batches": t.batches,
            "loops_closed": t.loops_closed,
            "retries": t.retries,
            "elapsed_seconds": self.elapsed.as_secs_f64(),
            "nodes_per_second": t.nodes_per_second(self.elapsed),
            "batch_latency_ms": { "p50": ms(0.50), "p99": ms(0.99) },
            "abandoned_batches": self.abandoned,
            "stopped_by": self.stopped_by,
            "ack_log": self.plan.ack_log.display().to_string(),
            "ack_records": self.records,
        })
    }
}
