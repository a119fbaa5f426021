//! `tabula bench ycsb`: the YCSB core workloads A-F against a cluster (`--local` starts one,
//! `--lock` names a running one): a load phase, then a run phase of `--ops` operations from
//! `--concurrency` closed-loop clients, reported in YCSB's own format (throughput, per
//! operation count, average and p50/p95/p99/p99.9 latency from HDR histograms) beside this
//! machine's raw ceilings measured in the same run (bare tonic echo and streaming, see
//! `bench::ceiling`), with `--plot FILE.svg` for throughput and latency over time.
//!
//! Reading order: `generator` (YCSB's distributions), `workload` (mixes, keys, records),
//! `driver` (the closed loop, shared with `bench paper`), `ops` (one YCSB client), `load`,
//! `suite` (the run), `report`.

pub(in crate::bench) mod driver;
mod generator;
mod load;
mod ops;
pub(in crate::bench) mod report;
pub(in crate::bench) mod suite;
mod workload;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::cluster::{Cluster, ClusterArgs};
use super::plot;
use crate::exit::UsageError;
use crate::output::OutputFormat;

pub(crate) use generator::Distribution;
pub(crate) use workload::Workload;

/// Most concurrent clients `--concurrency` accepts.
const MAX_CONCURRENCY: usize = 4096;

/// Options of `tabula bench ycsb`.
#[derive(Debug, Args)]
pub(crate) struct YcsbArgs {
    /// The YCSB core workload.
    #[arg(long, value_enum)]
    pub(crate) workload: Workload,
    /// Records loaded before the run.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) records: u64,
    /// Operations of the run phase.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) ops: u64,
    /// Clients with one operation in flight each.
    #[arg(long, default_value_t = 64)]
    pub(crate) concurrency: usize,
    /// Key distribution of reads, updates and scans [default: the workload's: latest for D,
    /// else zipfian].
    #[arg(long, value_enum)]
    pub(crate) distribution: Option<Distribution>,
    /// Seconds each ceiling loop (echo, streaming) runs.
    #[arg(long, default_value_t = 3)]
    pub(crate) ceiling_secs: u64,
    /// Seed of the clients' random choices.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Draw throughput and latency percentiles over time into this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub(crate) plot: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) cluster: ClusterArgs,
    /// How to print the report (the global `--output`, filled in by `bench::run`).
    #[arg(skip = OutputFormat::Table)]
    pub(crate) output: OutputFormat,
}

/// Checks what clap cannot.
fn validate(args: &YcsbArgs) -> Result<(), UsageError> {
    for (flag, value) in [
        ("--records", args.records),
        ("--ops", args.ops),
        ("--concurrency", args.concurrency as u64),
        ("--ceiling-secs", args.ceiling_secs),
    ] {
        if value == 0 {
            return Err(UsageError(format!("{flag} must be at least 1")));
        }
    }
    if args.concurrency > MAX_CONCURRENCY {
        return Err(UsageError(format!(
            "--concurrency must be at most {MAX_CONCURRENCY}"
        )));
    }
    args.cluster.validate()
}

/// Runs `bench ycsb` and prints its report on stdout.
pub(crate) fn run(args: YcsbArgs) -> anyhow::Result<()> {
    validate(&args)?;
    let mut cluster = Cluster::start(&args.cluster, args.cluster.tablet_servers.unwrap_or(3))?;
    cluster.wait_ready()?;
    let config = suite::SuiteConfig {
        workload: args.workload,
        distribution: args
            .distribution
            .unwrap_or(args.workload.default_distribution()),
        records: args.records,
        operations: args.ops,
        concurrency: args.concurrency,
        ceiling_duration: Duration::from_secs(args.ceiling_secs),
        drop_table: !args.cluster.local,
        seed: args.seed,
        progress: true,
    };
    eprintln!(
        "bench ycsb: workload {} ({}), {} records, {} ops, {} clients",
        config.workload.name(),
        config.distribution.name(),
        config.records,
        config.operations,
        config.concurrency
    );
    let outcome = super::block_on_interruptible(suite::run(&config, &cluster.lock));
    let report = match outcome {
        Ok(report) => report,
        Err(e) => {
            if let Some(kept) = cluster.keep_logs() {
                return Err(e.context(format!(
                    "bench ycsb (the local cluster's logs are kept in {})",
                    super::cluster::logs_dir(&kept).display()
                )));
            }
            return Err(e);
        }
    };
    cluster.stop()?;
    if let Some(path) = &args.plot {
        plot::draw(
            path,
            &format!(
                "YCSB workload {} ({} clients)",
                report.workload, report.concurrency
            ),
            &report.run.timeline.seconds(),
        )
        .with_context(|| format!("drawing {}", path.display()))?;
        eprintln!("plot: {}", path.display());
    }
    match args.output {
        OutputFormat::Table => print!("{}", report.to_text()),
        OutputFormat::Json => println!("{:#}", report.to_json()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn parse(args: &[&str]) -> Result<YcsbArgs, clap::Error> {
        let cli = crate::Cli::try_parse_from(args)?;
        let crate::Command::Bench(crate::bench::BenchCommand::Ycsb(args)) = cli.command else {
            panic!("parsed {:?}", cli.command);
        };
        Ok(args)
    }

    #[test]
    fn flags_default_and_parse() {
        let args = parse(&["tabula", "bench", "ycsb", "--workload", "a", "--local"]).unwrap();
        assert_eq!(args.workload, Workload::A);
        assert_eq!(
            (args.records, args.ops, args.concurrency),
            (100_000, 100_000, 64)
        );
        assert_eq!(args.distribution, None);
        assert!(args.cluster.local);
        validate(&args).unwrap();
        let args = parse(&[
            "tabula",
            "bench",
            "ycsb",
            "--workload",
            "e",
            "--records",
            "10",
            "--ops",
            "5",
            "--concurrency",
            "2",
            "--distribution",
            "uniform",
            "--lock",
            "h:1,h:2",
            "--plot",
            "x.svg",
        ])
        .unwrap();
        assert_eq!(args.cluster.lock, ["h:1", "h:2"]);
        assert_eq!(args.distribution, Some(Distribution::Uniform));
        assert_eq!(args.plot.as_deref(), Some(std::path::Path::new("x.svg")));
        validate(&args).unwrap();
    }

    #[test]
    fn bad_arguments_are_usage_errors() {
        assert_eq!(
            parse(&["tabula", "bench", "ycsb", "--workload", "g", "--local"])
                .unwrap_err()
                .exit_code(),
            2
        );
        for bad in [
            &["--records", "0", "--local"][..],
            &["--ops", "0", "--local"],
            &["--concurrency", "0", "--local"],
            &["--concurrency", "5000", "--local"],
            &[],
            &["--local", "--lock", "h:1"],
            &["--local", "--tablet-servers", "0"],
        ] {
            let mut argv = vec!["tabula", "bench", "ycsb", "--workload", "a"];
            argv.extend_from_slice(bad);
            let args = parse(&argv).unwrap();
            let err = anyhow::Error::from(validate(&args).unwrap_err());
            assert_eq!(crate::exit::code(&err), 2, "{bad:?}: {err}");
            // Usage errors come before any process starts.
            let err = run(args).unwrap_err();
            assert_eq!(crate::exit::code(&err), 2, "{bad:?}: {err}");
        }
    }
}
