//! `tabula bench`: measure one part of Tabula in isolation, or a whole cluster. One module per
//! benchmark; what they share (the scratch directory, tables, medians and percentiles, the
//! cluster a cluster benchmark runs against, the raw ceilings, plots) has its own module here.

mod ceiling;
mod cluster;
pub(crate) mod engine;
mod gateway;
pub(crate) mod lock;
pub(crate) mod paper;
mod plot;
mod scratch;
mod stats;
mod table;
pub(crate) mod ycsb;

use std::future::Future;
use std::time::Duration;

use anyhow::{Context, anyhow};
use clap::Subcommand;

use crate::output::OutputFormat;
use crate::signal::StopSignals;

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// Write and read records through the storage engine of one tablet, without a cluster.
    Engine(engine::EngineArgs),
    /// Writes, KeepAlives and leader failover of a local 3-node lock-service cell.
    Lock(lock::LockBenchArgs),
    /// A YCSB core workload (a-f) against a cluster, beside this machine's raw gRPC ceilings.
    Ycsb(ycsb::YcsbArgs),
    /// The Bigtable paper's Figure 6 set (1000-byte values) against a cluster, per tablet
    /// server, beside the paper's single-server numbers and this machine's raw ceilings.
    Paper(paper::PaperArgs),
    /// Serve the bare echo service on 127.0.0.1:0 until stdin closes, Ctrl-C or SIGTERM,
    /// after printing `listening ADDR`: the separate-process ceiling of `ycsb` and `paper`.
    #[command(hide = true)]
    EchoServer,
}

/// Runs one benchmark, printing its results in `output`.
pub(crate) fn run(command: BenchCommand, output: OutputFormat) -> anyhow::Result<()> {
    match command {
        BenchCommand::Engine(args) => engine::run(engine::EngineArgs { output, ..args }),
        BenchCommand::Lock(args) => lock::run(lock::LockBenchArgs { output, ..args }),
        BenchCommand::Ycsb(args) => ycsb::run(ycsb::YcsbArgs { output, ..args }),
        BenchCommand::Paper(args) => paper::run(paper::PaperArgs { output, ..args }),
        BenchCommand::EchoServer => ceiling::serve_echo_child(),
    }
}

/// Runs `work` on a fresh multi-threaded runtime until it ends or Ctrl-C / SIGTERM arrives
/// (then its future is dropped and an error says so).
fn block_on_interruptible<T>(work: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    let runtime = runtime("tabula-bench")?;
    let outcome = runtime.block_on(async {
        let mut signals = StopSignals::install()?;
        tokio::select! {
            result = work => result,
            by = signals.recv() => Err(anyhow!("interrupted by {by}")),
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    outcome
}

/// A multi-threaded runtime (as a tablet server's) whose threads are named `thread_name`.
fn runtime(thread_name: &str) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name(thread_name)
        .build()
        .context("starting the async runtime")
}
