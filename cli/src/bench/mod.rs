//! `tabula bench`: measure one part of Tabula in isolation. One module per benchmark.

pub(crate) mod engine;

use clap::Subcommand;

use crate::output::OutputFormat;

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// Write and read records through the storage engine of one tablet, without a cluster.
    Engine(engine::EngineArgs),
}

/// Runs one benchmark, printing its results in `output`.
pub(crate) fn run(command: BenchCommand, output: OutputFormat) -> anyhow::Result<()> {
    match command {
        BenchCommand::Engine(args) => engine::run(engine::EngineArgs { output, ..args }),
    }
}
