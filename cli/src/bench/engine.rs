//! `tabula bench engine`: the storage engine of one tablet, driven directly, against fjall 3
//! (a pure-Rust LSM tree) and, for synced writes, a raw append + fdatasync loop.
//!
//! Workloads (16-byte keys, 100-byte values): fillseq, fillrandom, readrandom (hot point
//! reads of loaded keys), readseq (one full forward scan), scan (short range scans from random
//! keys) and fillsync (every write durable, from many threads). Each prints beside its target
//! ratio: fillrandom and readrandom >= 0.7x fjall, readseq >= 0.5x fjall, fillsync >= 0.75x a
//! single writer's append + fdatasync loop.
//!
//! Reading order: `data` (keys, values, orders), `store` (the interface both stores
//! implement), `tabula_store`, `fjall_store`, `raw`, `workloads`, `progress`, `suite` (the
//! run), `report` (ratios, table, JSON); the scratch directory, tables and medians are shared with
//! the other benchmarks (`bench::{scratch, table, stats}`).

mod data;
mod fjall_store;
mod progress;
mod raw;
mod report;
mod store;
mod suite;
mod tabula_store;
mod workloads;

use std::path::PathBuf;

use clap::Args;
use tabula_tabletserver::engine::EngineOptions;

use crate::exit::UsageError;
use crate::output::OutputFormat;

use self::suite::SuiteConfig;
use super::scratch::Scratch;

/// Rows each range scan of the scan workload reads.
const SCAN_ROWS: usize = 100;

/// Options of `tabula bench engine`.
#[derive(Debug, Args)]
pub(crate) struct EngineArgs {
    /// Number of records for fillseq, fillrandom, readrandom, readseq and scan.
    #[arg(long, default_value_t = 1_000_000)]
    pub(crate) records: u64,

    /// Number of records for fillsync, where every write is fdatasynced.
    #[arg(long, default_value_t = 20_000)]
    pub(crate) sync_records: u64,

    /// Writer threads for fillsync (so group commit has writers to group).
    #[arg(long, default_value_t = 16)]
    pub(crate) threads: usize,

    /// Number of range scans (of 100 rows each) in the scan workload.
    #[arg(long, default_value_t = 1_000)]
    pub(crate) scans: u64,

    /// Times to run every workload; the report shows the median of each number.
    #[arg(long, default_value_t = 1)]
    pub(crate) rounds: usize,

    /// Parent of the scratch directory, which should be on a disk-backed file system
    /// [default: the current directory].
    #[arg(long, value_name = "PATH")]
    pub(crate) dir: Option<PathBuf>,

    /// How to print the report (the global `--output`, filled in by `bench::run`).
    #[arg(skip = OutputFormat::Table)]
    pub(crate) output: OutputFormat,
}

/// Runs the engine benchmark and prints its report on stdout.
pub(crate) fn run(args: EngineArgs) -> anyhow::Result<()> {
    for (flag, value) in [
        ("--records", args.records),
        ("--sync-records", args.sync_records),
        ("--threads", args.threads as u64),
        ("--scans", args.scans),
        ("--rounds", args.rounds as u64),
    ] {
        if value == 0 {
            return Err(UsageError(format!("{flag} must be at least 1")).into());
        }
    }
    let scratch = Scratch::create(args.dir.as_deref())?;
    if scratch.is_memory_backed() {
        eprintln!(
            "warning: {} is on {}, where fdatasync is a no-op; fillsync numbers mean nothing \
             (use --dir on a disk)",
            scratch.dir.path().display(),
            scratch.filesystem
        );
    }
    let config = SuiteConfig {
        records: args.records,
        sync_records: args.sync_records,
        threads: args.threads,
        scans: args.scans,
        scan_rows: SCAN_ROWS,
        rounds: args.rounds,
        root: scratch.dir.path().to_path_buf(),
        filesystem: scratch.filesystem.clone(),
        engine: EngineOptions::default(),
        progress: true,
    };
    eprintln!(
        "bench engine: {} records, {} for fillsync with {} threads, {} round(s), in {} ({})",
        args.records,
        args.sync_records,
        args.threads,
        args.rounds,
        config.root.display(),
        config.filesystem
    );
    let report = suite::run(&config)?;
    match args.output {
        OutputFormat::Table => print!("{}", report.to_table()),
        OutputFormat::Json => println!("{:#}", report.to_json()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_counts_are_usage_errors() {
        for (threads, scans) in [(0, 1), (1, 0)] {
            let args = EngineArgs {
                records: 1,
                sync_records: 1,
                threads,
                scans,
                rounds: 1,
                dir: None,
                output: OutputFormat::Table,
            };
            let err = run(args).unwrap_err();
            assert_eq!(crate::exit::code(&err), 2, "{err}");
        }
    }
}
