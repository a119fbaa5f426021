//! `tabula bench paper`: the Bigtable paper's Figure 6 benchmarks (random reads, random reads
//! from memory, random writes, sequential reads, sequential writes, scans; 1000-byte values)
//! against a cluster (`--local` or `--lock`), as rows per second per tablet server beside the
//! paper's single-server numbers and this machine's raw ceilings measured in the same run.
//!
//! Reading order: `workloads` (the operations), `suite` (the run), `report`.

mod report;
mod suite;
mod workloads;

use std::time::Duration;

use clap::Args;

use super::cluster::{Cluster, ClusterArgs};
use crate::exit::UsageError;
use crate::output::OutputFormat;

/// Largest in-memory table (rows).
const MEM_ROWS: u64 = 1000;

/// Options of `tabula bench paper`.
#[derive(Debug, Args)]
pub(crate) struct PaperArgs {
    /// Rows of the table (and operations of each benchmark; a scan reads 1000 rows, and the
    /// scans read the table 10 times over).
    #[arg(long, default_value_t = 100_000)]
    pub(crate) rows: u64,
    /// Clients with one operation in flight each.
    #[arg(long, default_value_t = 64)]
    pub(crate) concurrency: usize,
    /// Seconds each ceiling loop (echo, streaming) runs.
    #[arg(long, default_value_t = 3)]
    pub(crate) ceiling_secs: u64,
    #[command(flatten)]
    pub(crate) cluster: ClusterArgs,
    /// How to print the report (the global `--output`, filled in by `bench::run`).
    #[arg(skip = OutputFormat::Table)]
    pub(crate) output: OutputFormat,
}

fn validate(args: &PaperArgs) -> Result<(), UsageError> {
    for (flag, value) in [
        ("--rows", args.rows),
        ("--concurrency", args.concurrency as u64),
        ("--ceiling-secs", args.ceiling_secs),
    ] {
        if value == 0 {
            return Err(UsageError(format!("{flag} must be at least 1")));
        }
    }
    if args.concurrency > 4096 {
        return Err(UsageError("--concurrency must be at most 4096".into()));
    }
    args.cluster.validate()
}

/// Runs `bench paper` and prints its report on stdout.
pub(crate) fn run(args: PaperArgs) -> anyhow::Result<()> {
    validate(&args)?;
    let mut cluster = Cluster::start(&args.cluster, args.cluster.tablet_servers.unwrap_or(1))?;
    cluster.wait_ready()?;
    let config = suite::SuiteConfig {
        rows: args.rows,
        mem_rows: args.rows.min(MEM_ROWS),
        concurrency: args.concurrency,
        ceiling_duration: Duration::from_secs(args.ceiling_secs),
        drop_tables: !args.cluster.local,
        progress: true,
    };
    eprintln!(
        "bench paper: {} rows, {} clients",
        config.rows, config.concurrency
    );
    let report = match super::block_on_interruptible(suite::run(&config, &cluster.lock)) {
        Ok(report) => report,
        Err(e) => {
            if let Some(kept) = cluster.keep_logs() {
                return Err(e.context(format!(
                    "bench paper (the local cluster's logs are kept in {})",
                    super::cluster::logs_dir(&kept).display()
                )));
            }
            return Err(e);
        }
    };
    cluster.stop()?;
    match args.output {
        OutputFormat::Table => print!("{}", report.to_table()),
        OutputFormat::Json => println!("{:#}", report.to_json()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn bad_arguments_are_usage_errors() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["tabula", "bench", "paper"];
            argv.extend_from_slice(extra);
            let cli = crate::Cli::try_parse_from(argv).unwrap();
            let crate::Command::Bench(crate::bench::BenchCommand::Paper(args)) = cli.command else {
                panic!("parsed {:?}", cli.command);
            };
            args
        };
        let args = parse(&["--local"]);
        assert_eq!((args.rows, args.concurrency), (100_000, 64));
        validate(&args).unwrap();
        for bad in [
            &["--rows", "0", "--local"][..],
            &["--concurrency", "0", "--local"],
            &[],
        ] {
            let err = run(parse(bad)).unwrap_err();
            assert_eq!(crate::exit::code(&err), 2, "{bad:?}: {err}");
        }
    }
}
