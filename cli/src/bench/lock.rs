//! `tabula bench lock`: a local 3-node lock-service cell of real `tabula lock serve` processes,
//! measured through the public `LockService` API against baselines taken in the same run.
//!
//! What it measures: `Set` of a 100-byte file from 1 and from `--clients` clients, against a
//! raw append + fdatasync loop on the same file system (Raft fsyncs on every node, so one
//! client stays at or below 1x; many clients show group commit); KeepAlives from `--clients`
//! sessions against the same loop calling `Status` (a raw unary RPC on the same server); and
//! leader failover: the time from SIGKILLing the leader to the first successful `Set`.
//! Progress goes to stderr, the report to stdout. Nothing is judged on timing: the numbers
//! are printed, never compared with a target.
//!
//! Reading order: `cell` (the node processes), `rpc` (clients, leader, waits), `workloads`
//! (the timed loops), `baseline` (fdatasync), `failover`, `suite` (the run), `report` (ratios,
//! table, JSON). The scratch directory, tables and medians are shared with the other
//! benchmarks (`bench::{scratch, table, stats}`).

mod baseline;
mod cell;
mod failover;
mod report;
mod rpc;
mod suite;
mod workloads;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, anyhow};
use clap::Args;
use tokio::signal::unix::{SignalKind, signal};

use crate::exit::UsageError;
use crate::output::OutputFormat;

use self::suite::SuiteConfig;
use super::scratch::Scratch;

/// Most concurrent clients `--clients` accepts (each has its own connection).
const MAX_CLIENTS: usize = 1024;

/// Options of `tabula bench lock`.
#[derive(Debug, Args)]
pub(crate) struct LockBenchArgs {
    /// Seconds each timed phase (writes from 1 client, from --clients, KeepAlives, Status)
    /// runs.
    #[arg(long, default_value_t = 5)]
    pub(crate) duration_secs: u64,

    /// Times to kill the leader and measure the failover (0: no failover).
    #[arg(long, default_value_t = 5)]
    pub(crate) kills: usize,

    /// Concurrent clients of the concurrent write, KeepAlive and Status phases.
    #[arg(long, default_value_t = 64)]
    pub(crate) clients: usize,

    /// Times to run the timed phases; the report shows the median of each number.
    #[arg(long, default_value_t = 1)]
    pub(crate) rounds: usize,

    /// Parent of the scratch directory (the nodes' data and logs), which should be on a
    /// disk-backed file system [default: the current directory].
    #[arg(long, value_name = "PATH")]
    pub(crate) dir: Option<PathBuf>,

    /// How to print the report (the global `--output`, filled in by `bench::run`).
    #[arg(skip = OutputFormat::Table)]
    pub(crate) output: OutputFormat,
}

/// Checks the flags clap cannot: counts that must be positive or bounded.
fn validate(args: &LockBenchArgs) -> Result<(), UsageError> {
    for (flag, value) in [
        ("--duration-secs", args.duration_secs),
        ("--clients", args.clients as u64),
        ("--rounds", args.rounds as u64),
    ] {
        if value == 0 {
            return Err(UsageError(format!("{flag} must be at least 1")));
        }
    }
    if args.clients > MAX_CLIENTS {
        return Err(UsageError(format!(
            "--clients must be at most {MAX_CLIENTS}"
        )));
    }
    Ok(())
}

/// Runs the lock-service benchmark and prints its report on stdout.
pub(crate) fn run(args: LockBenchArgs) -> anyhow::Result<()> {
    validate(&args)?;
    let scratch = Scratch::create(args.dir.as_deref())?;
    if scratch.is_memory_backed() {
        eprintln!(
            "warning: {} is on {}, where fdatasync is a no-op; write numbers mean nothing \
             (use --dir on a disk)",
            scratch.dir.path().display(),
            scratch.filesystem
        );
    }
    let config = SuiteConfig {
        duration: Duration::from_secs(args.duration_secs),
        clients: args.clients,
        rounds: args.rounds,
        kills: args.kills,
        root: scratch.dir.path().to_path_buf(),
        filesystem: scratch.filesystem.clone(),
        progress: true,
    };
    eprintln!(
        "bench lock: {} nodes, {} s per phase, {} clients, {} round(s), {} kill(s), in {} ({})",
        suite::NODES,
        args.duration_secs,
        args.clients,
        args.rounds,
        args.kills,
        config.root.display(),
        config.filesystem
    );
    let runtime = super::runtime("tabula-bench")?;
    let outcome = runtime.block_on(async {
        let mut interrupt = signal(SignalKind::interrupt()).context("listening for Ctrl-C")?;
        let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
        // Whichever way this ends, the suite's future is dropped here, and with it the cell:
        // its nodes are killed before the scratch directory goes.
        tokio::select! {
            report = suite::run(&config) => report.map_err(Failure::Run),
            _ = interrupt.recv() => Err(Failure::Interrupted("Ctrl-C")),
            _ = terminate.recv() => Err(Failure::Interrupted("SIGTERM")),
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    match outcome {
        Ok(report) => {
            match args.output {
                OutputFormat::Table => print!("{}", report.to_table()),
                OutputFormat::Json => println!("{:#}", report.to_json()),
            }
            Ok(())
        }
        Err(Failure::Interrupted(by)) => Err(anyhow!("interrupted by {by}; the cell was stopped")),
        Err(Failure::Run(e)) => {
            // Keep the nodes' logs (and data) for a post-mortem.
            let kept = scratch.dir.keep();
            Err(e.context(format!("bench lock (node logs kept in {})", kept.display())))
        }
    }
}

/// How a run ended without a report.
enum Failure {
    /// A step failed.
    Run(anyhow::Error),
    /// A signal stopped the run.
    Interrupted(&'static str),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Run(e)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn flags_default_and_parse() {
        let cli = crate::Cli::try_parse_from(["tabula", "bench", "lock"]).unwrap();
        let crate::Command::Bench(crate::bench::BenchCommand::Lock(args)) = cli.command else {
            panic!("parsed {:?}", cli.command);
        };
        assert_eq!(
            (args.duration_secs, args.kills, args.clients, args.rounds),
            (5, 5, 64, 1)
        );
        assert_eq!(args.dir, None);
        validate(&args).unwrap();

        let cli = crate::Cli::try_parse_from([
            "tabula",
            "bench",
            "lock",
            "--duration-secs",
            "3",
            "--kills",
            "0",
            "--clients",
            "8",
            "--dir",
            "/data",
            "--output",
            "json",
        ])
        .unwrap();
        assert_eq!(cli.output, OutputFormat::Json);
        let crate::Command::Bench(crate::bench::BenchCommand::Lock(args)) = cli.command else {
            panic!("parsed {:?}", cli.command);
        };
        assert_eq!((args.duration_secs, args.kills, args.clients), (3, 0, 8));
        assert_eq!(args.dir.as_deref(), Some(std::path::Path::new("/data")));
        validate(&args).unwrap();
    }

    #[test]
    fn out_of_range_counts_are_usage_errors() {
        let args = |duration_secs, clients, rounds| LockBenchArgs {
            duration_secs,
            kills: 0,
            clients,
            rounds,
            dir: None,
            output: OutputFormat::Table,
        };
        for bad in [
            args(0, 1, 1),
            args(1, 0, 1),
            args(1, 1, 0),
            args(1, 1025, 1),
        ] {
            let err = anyhow::Error::from(validate(&bad).unwrap_err());
            assert_eq!(crate::exit::code(&err), 2, "{err}");
        }
        // Usage errors come before any process starts.
        let err = run(args(0, 1, 1)).unwrap_err();
        assert_eq!(crate::exit::code(&err), 2, "{err}");
        assert!(
            crate::Cli::try_parse_from(["tabula", "bench", "lock", "--kills", "-1"]).is_err(),
            "negative kills"
        );
    }
}
