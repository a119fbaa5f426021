//! `tabula ingest` and `tabula verify`: the continuous-ingest linked list (HBase ITBLL, Accumulo
//! continuous ingest) that proves no acknowledged write is lost. `ingest` writes nodes that only
//! ever point at acknowledged nodes and logs every acknowledged batch; `verify` scans the table
//! once and fails if a node points at a missing node, a row is corrupt, or a logged node is
//! missing.
//!
//! Reading order: `node` (keys, cells, checksum, decoding), `chain` (the loop scheme: which
//! batch comes next and where it points), `acks` (the ack log), `stats` (progress and latency),
//! `writer` (one writer task), `run` (an ingest run), `tally` (verify's counting core), `verify`
//! (the scan and report), `duration` (`--duration` values). Everything but `writer`, `run`,
//! `verify` and the ack log's file thread is pure.

mod acks;
mod chain;
mod duration;
mod node;
mod run;
mod stats;
mod tally;
mod verify;
mod writer;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::exit::UsageError;
use crate::output::OutputFormat;

/// Most writers one run starts.
const MAX_WRITERS: u32 = 1024;
/// Most nodes in one batch.
const MAX_BATCH: u64 = 100_000;
/// Most tablets `--splits` creates.
const MAX_SPLITS: u32 = 4096;

/// `tabula ingest`.
#[derive(Debug, Args)]
pub(crate) struct IngestArgs {
    /// The table to write (created with family `ci` if missing).
    #[arg(long)]
    pub(crate) table: String,
    /// Concurrent writers, each with its own random seed and linked lists.
    #[arg(long, default_value_t = 4)]
    pub(crate) writers: u32,
    /// Nodes per batch: a writer sends its next batch only after this one is acknowledged.
    #[arg(long, default_value_t = 1000)]
    pub(crate) batch: u64,
    /// Stop after this long (e.g. 90s, 5m, 1h30m), closing the open loops first.
    #[arg(long, value_parser = duration::parse_duration, conflicts_with = "loops")]
    pub(crate) duration: Option<Duration>,
    /// Stop after each writer closed this many loops of 25 batches.
    #[arg(long)]
    pub(crate) loops: Option<u64>,
    /// Tablets of the table when this run creates it, split evenly over the key space.
    #[arg(long, default_value_t = 1)]
    pub(crate) splits: u32,
    /// The ack log to append to [default: ./ingest-acks-TABLE.jsonl].
    #[arg(long, value_name = "FILE")]
    pub(crate) ack_log: Option<PathBuf>,
}

/// `tabula verify`.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The table an ingest wrote.
    #[arg(long)]
    pub(crate) table: String,
    /// The ack log of the ingest runs [default: ./ingest-acks-TABLE.jsonl; if that is missing,
    /// only the links are checked].
    #[arg(long, value_name = "FILE")]
    pub(crate) ack_log: Option<PathBuf>,
}

/// The ack log of `table` when none is given.
fn default_ack_log(table: &str) -> PathBuf {
    Path::new(".").join(format!("ingest-acks-{table}.jsonl"))
}

/// The lock cell's addresses, or a usage error if none were given.
fn lock_cell(lock: &[String]) -> Result<Vec<String>, UsageError> {
    let lock: Vec<String> = lock
        .iter()
        .map(|a| a.trim().to_owned())
        .filter(|a| !a.is_empty())
        .collect();
    if lock.is_empty() {
        return Err(UsageError(
            "no lock-service cell given: pass --lock HOST:PORT[,HOST:PORT...] or set TABULA_LOCK"
                .to_owned(),
        ));
    }
    Ok(lock)
}

/// The run `args` describe, or a usage error.
fn ingest_plan(args: IngestArgs) -> Result<run::IngestPlan, UsageError> {
    let bad = |what: String| Err(UsageError(what));
    if !(1..=MAX_WRITERS).contains(&args.writers) {
        return bad(format!("--writers must be 1 to {MAX_WRITERS}"));
    }
    if !(1..=MAX_BATCH).contains(&args.batch) {
        return bad(format!("--batch must be 1 to {MAX_BATCH}"));
    }
    if !(1..=MAX_SPLITS).contains(&args.splits) {
        return bad(format!("--splits must be 1 to {MAX_SPLITS}"));
    }
    if args.loops == Some(0) {
        return bad("--loops must be at least 1".to_owned());
    }
    if args.duration == Some(Duration::ZERO) {
        return bad("--duration must be positive".to_owned());
    }
    let ack_log = args.ack_log.unwrap_or_else(|| default_ack_log(&args.table));
    Ok(run::IngestPlan {
        table: args.table,
        writers: args.writers,
        batch: args.batch,
        duration: args.duration,
        loops: args.loops,
        splits: args.splits,
        ack_log,
    })
}

/// A runtime for one command.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tabula-ingest")
        .build()
        .context("start the async runtime")
}

/// Runs `tabula ingest`.
pub(crate) fn ingest(
    args: IngestArgs,
    lock: &[String],
    output: OutputFormat,
) -> anyhow::Result<()> {
    let lock = lock_cell(lock)?;
    let plan = ingest_plan(args)?;
    runtime()?.block_on(run::ingest(&lock, &plan, output))
}

/// Runs `tabula verify`.
pub(crate) fn verify(
    args: VerifyArgs,
    lock: &[String],
    output: OutputFormat,
) -> anyhow::Result<()> {
    let lock = lock_cell(lock)?;
    let explicit = args.ack_log.is_some();
    let ack_log = args.ack_log.unwrap_or_else(|| default_ack_log(&args.table));
    runtime()?.block_on(verify::verify(
        &lock,
        &args.table,
        &ack_log,
        explicit,
        output,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> IngestArgs {
        IngestArgs {
            table: "ci".to_owned(),
            writers: 2,
            batch: 200,
            duration: None,
            loops: Some(2),
            splits: 4,
            ack_log: None,
        }
    }

    #[test]
    fn a_plan_takes_the_flags_and_a_default_ack_log() {
        let plan = ingest_plan(args()).unwrap();
        assert_eq!((plan.writers, plan.batch, plan.splits), (2, 200, 4));
        assert_eq!(plan.ack_log, Path::new("./ingest-acks-ci.jsonl"));
    }

    #[test]
    fn out_of_range_flags_are_usage_errors() {
        let cases = [
            IngestArgs {
                writers: 0,
                ..args()
            },
            IngestArgs { batch: 0, ..args() },
            IngestArgs {
                splits: 0,
                ..args()
            },
            IngestArgs {
                loops: Some(0),
                ..args()
            },
            IngestArgs {
                loops: None,
                duration: Some(Duration::ZERO),
                ..args()
            },
        ];
        for case in cases {
            assert!(ingest_plan(case).is_err());
        }
        assert!(lock_cell(&[" ".to_owned()]).is_err());
    }
}
