//! The `--output` format shared by every command.

use clap::ValueEnum;

/// How a command prints its results and errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OutputFormat {
    /// Human-readable text and aligned tables.
    Table,
    /// One JSON document, for scripts.
    Json,
}
