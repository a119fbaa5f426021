//! `tabula bench`: measure one part of Tabula in isolation. One module per benchmark.

pub(crate) mod engine;

use clap::Subcommand;

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// Write and read records through the storage engine of one tablet, without a cluster.
    Engine(engine::EngineArgs),
}

/// Runs one benchmark.
pub(crate) fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Engine(args) => engine::run(args),
    }
}
