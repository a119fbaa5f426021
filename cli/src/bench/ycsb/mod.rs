//! `tabula bench ycsb`: the YCSB core workloads A-F against a cluster (`--local` starts one,
//! `--lock` names a running one), through Tabula's client library, through the Cloud
//! Bigtable API of any server at `--bigtable-api ADDR`, or through both (`--via-gateway`
//! starts a `tabula gateway` over the cluster; `--bigtable-api ADDR --lock ADDRS` names a
//! running one) with the API path's cost against the native one: a load phase, then a run
//! phase of `--ops` operations from `--concurrency` closed-loop clients, reported in YCSB's
//! own format (throughput, per operation count, average and p50/p95/p99/p99.9 latency from
//! HDR histograms) beside this machine's raw ceilings measured in the same run (bare tonic
//! echo and streaming, see `bench::ceiling`), with `--plot FILE.svg` for throughput and
//! latency over time.
//!
//! Reading order: `generator` (YCSB's distributions), `workload` (mixes, keys, records),
//! `driver` (the closed loop, shared with `bench paper`), `backend` (native or Cloud
//! Bigtable API), `ops` (one YCSB client), `load`, `suite` (the run), `compare`, `report`.

mod backend;
mod compare;
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
use super::gateway::GatewayChild;
use super::plot;
use crate::exit::UsageError;
use crate::output::OutputFormat;

pub(crate) use generator::Distribution;
pub(crate) use workload::Workload;

/// Most concurrent clients `--concurrency` accepts.
const MAX_CONCURRENCY: usize = 4096;
/// Longest table id Cloud Bigtable accepts.
const MAX_TABLE_ID_CHARS: usize = 50;

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
    /// Draw throughput and latency percentiles over time into this SVG file (with two
    /// paths, the second path's goes to FILE-bigtable-api.svg).
    #[arg(long, value_name = "FILE.svg")]
    pub(crate) plot: Option<PathBuf>,
    /// Run the workload through the Cloud Bigtable data API at ADDR (HOST:PORT: Tabula's
    /// gateway, Google's emulator, any server speaking it), the table made through its table
    /// admin API; with --lock as well (a gateway over that cell), also through the client
    /// library, and compare the two.
    #[arg(long, value_name = "ADDR", conflicts_with = "via_gateway")]
    pub(crate) bigtable_api: Option<String>,
    /// Also start a `tabula gateway` over the cluster and run the workload both through the
    /// client library and through the gateway's Cloud Bigtable API, with the gateway's cost
    /// (throughput and latency ratios) in the report.
    #[arg(long)]
    pub(crate) via_gateway: bool,
    /// The Cloud Bigtable API path's table: used if it exists (it needs column family cf),
    /// else made; never dropped [default: a fresh usertable-<ms>-api, dropped afterwards
    /// unless --local].
    #[arg(long, value_name = "NAME")]
    pub(crate) table: Option<String>,
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
    if let Some(name) = &args.table {
        if args.bigtable_api.is_none() && !args.via_gateway {
            return Err(UsageError(
                "--table names the Cloud Bigtable API path's table: give --bigtable-api ADDR \
                 or --via-gateway"
                    .into(),
            ));
        }
        validate_table_id(name)?;
    }
    if let Some(addr) = &args.bigtable_api {
        if addr.trim().is_empty() {
            return Err(UsageError("--bigtable-api needs HOST:PORT".into()));
        }
        if args.cluster.local {
            return Err(UsageError(
                "--local with --bigtable-api: a local cluster gets its own gateway with \
                 --via-gateway"
                    .into(),
            ));
        }
        // A cell (--lock) is optional: with one, the native path runs too.
        return match args.cluster.tablet_servers {
            Some(0) => Err(UsageError("--tablet-servers must be at least 1".into())),
            _ => Ok(()),
        };
    }
    args.cluster.validate()
}

/// Checks a Cloud Bigtable table id: `[_a-zA-Z0-9][-_.a-zA-Z0-9]*`, at most 50 characters.
fn validate_table_id(name: &str) -> Result<(), UsageError> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c == '-' || c == '_' || c == '.' || c.is_ascii_alphanumeric());
    if !first_ok || !rest_ok || name.len() > MAX_TABLE_ID_CHARS {
        return Err(UsageError(format!(
            "--table {name:?} is not a table id ([_a-zA-Z0-9][-_.a-zA-Z0-9]*, at most \
             {MAX_TABLE_ID_CHARS} characters)"
        )));
    }
    Ok(())
}

/// Runs `bench ycsb` and prints its report on stdout.
pub(crate) fn run(args: YcsbArgs) -> anyhow::Result<()> {
    validate(&args)?;
    let mut cluster = Cluster::start(&args.cluster, args.cluster.tablet_servers.unwrap_or(3))?;
    cluster.wait_ready()?;
    let gateway = match args.via_gateway {
        true => Some(GatewayChild::start(&cluster.lock)?),
        false => None,
    };
    let api_addr = match &gateway {
        Some(gateway) => Some(gateway.addr.clone()),
        None => args.bigtable_api.as_ref().map(|a| a.trim().to_owned()),
    };
    let targets = suite::Targets {
        lock: cluster.lock.clone(),
        bigtable_api: api_addr.map(|addr| suite::ApiTarget {
            addr,
            table: args.table.clone(),
        }),
    };
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
        "bench ycsb: workload {} ({}), {} records, {} ops, {} clients, {}",
        config.workload.name(),
        config.distribution.name(),
        config.records,
        config.operations,
        config.concurrency,
        match (targets.lock.is_empty(), &targets.bigtable_api) {
            (false, Some(api)) => format!("native and Cloud Bigtable API ({})", api.addr),
            (true, Some(api)) => format!("Cloud Bigtable API ({})", api.addr),
            _ => "native".to_owned(),
        }
    );
    let outcome = super::block_on_interruptible(suite::run(&config, &targets));
    let report = match outcome {
        Ok(report) => report,
        Err(mut e) => {
            if let Some(gateway) = &gateway {
                e = e.context(format!(
                    "the gateway's stderr ends:\n{}",
                    gateway.stderr_tail()
                ));
            }
            if let Some(kept) = cluster.keep_logs() {
                return Err(e.context(format!(
                    "bench ycsb (the local cluster's logs are kept in {})",
                    super::cluster::logs_dir(&kept).display()
                )));
            }
            return Err(e);
        }
    };
    if let Some(gateway) = gateway {
        gateway.stop()?;
    }
    cluster.stop()?;
    if let Some(path) = &args.plot {
        for (i, p) in report.paths.iter().enumerate() {
            let file = match i {
                0 => path.clone(),
                _ => suffixed(path, p.path.name()),
            };
            plot::draw(
                &file,
                &format!(
                    "YCSB workload {} ({} clients, {})",
                    report.workload,
                    report.concurrency,
                    p.path.name()
                ),
                &p.run.timeline.seconds(),
            )
            .with_context(|| format!("drawing {}", file.display()))?;
            eprintln!("plot: {}", file.display());
        }
    }
    match args.output {
        OutputFormat::Table => print!("{}", report.to_text()),
        OutputFormat::Json => println!("{:#}", report.to_json()),
    }
    Ok(())
}

/// `dir/name.svg` -> `dir/name-<suffix>.svg`.
fn suffixed(path: &std::path::Path, suffix: &str) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match path.extension() {
        Some(ext) => format!("{stem}-{suffix}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{suffix}"),
    };
    path.with_file_name(name)
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
        assert_eq!(
            suffixed(std::path::Path::new("d/x.svg"), "bigtable-api"),
            std::path::Path::new("d/x-bigtable-api.svg")
        );

        // The Cloud Bigtable API alone, with a cell, or through a gateway of our own.
        let base = ["tabula", "bench", "ycsb", "--workload", "c"];
        let with = |extra: &[&str]| {
            let mut argv = base.to_vec();
            argv.extend_from_slice(extra);
            parse(&argv).unwrap()
        };
        let args = with(&["--bigtable-api", "127.0.0.1:8086", "--table", "t_1.x-y"]);
        assert_eq!(args.bigtable_api.as_deref(), Some("127.0.0.1:8086"));
        assert_eq!(args.table.as_deref(), Some("t_1.x-y"));
        validate(&args).unwrap();
        validate(&with(&["--bigtable-api", "h:1", "--lock", "h:2"])).unwrap();
        let args = with(&["--local", "--via-gateway"]);
        assert!(args.via_gateway);
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
        let both = [
            "tabula",
            "bench",
            "ycsb",
            "--workload",
            "a",
            "--lock",
            "h:1",
            "--via-gateway",
            "--bigtable-api",
            "h:2",
        ];
        assert_eq!(parse(&both).unwrap_err().exit_code(), 2);
        for bad in [
            &["--records", "0", "--local"][..],
            &["--ops", "0", "--local"],
            &["--concurrency", "0", "--local"],
            &["--concurrency", "5000", "--local"],
            &[],
            &["--local", "--lock", "h:1"],
            &["--local", "--tablet-servers", "0"],
            &["--local", "--bigtable-api", "127.0.0.1:8086"],
            &["--bigtable-api", " "],
            &["--via-gateway"],
            &["--local", "--table", "t"],
            &["--local", "--via-gateway", "--table=-t"],
            &["--bigtable-api", "h:1", "--table", "a/b"],
            &["--bigtable-api", "h:1", "--table", &"t".repeat(51)],
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
