//! `tabula bench`: measure one part of Tabula in isolation. One module per benchmark; what they
//! share (the scratch directory, tables, medians and percentiles) has its own module here.

pub(crate) mod engine;
pub(crate) mod lock;
mod scratch;
mod stats;
mod table;

use clap::Subcommand;

use crate::output::OutputFormat;

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// Write and read records through the storage engine of one tablet, without a cluster.
    Engine(engine::EngineArgs),
    /// Writes, KeepAlives and leader failover of a local 3-node lock-service cell.
    Lock(lock::LockBenchArgs),
}

/// Runs one benchmark, printing its results in `output`.
pub(crate) fn run(command: BenchCommand, output: OutputFormat) -> anyhow::Result<()> {
    match command {
        BenchCommand::Engine(args) => engine::run(engine::EngineArgs { output, ..args }),
        BenchCommand::Lock(args) => lock::run(lock::LockBenchArgs { output, ..args }),
    }
}
