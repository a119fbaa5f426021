//! `tabula bench engine`: the storage engine of one tablet, driven directly.

use std::path::PathBuf;

use clap::Args;

use crate::exit::UsageError;

/// Options of `tabula bench engine`.
#[derive(Debug, Args)]
pub(crate) struct EngineArgs {
    /// Number of records to write.
    #[arg(long, default_value_t = 1_000_000)]
    pub(crate) records: u64,

    /// Scratch directory for the engine's files [default: a fresh temporary directory].
    #[arg(long, value_name = "PATH")]
    pub(crate) dir: Option<PathBuf>,
}

/// Runs the engine benchmark.
pub(crate) fn run(args: EngineArgs) -> anyhow::Result<()> {
    if args.records == 0 {
        return Err(UsageError("--records must be at least 1".to_owned()).into());
    }
    let dir = args.dir.as_deref().map_or_else(
        || "a temporary directory".to_owned(),
        |d| d.display().to_string(),
    );
    anyhow::bail!(
        "engine bench arrives with the storage engine; nothing was run ({} records in {dir})",
        args.records
    )
}
