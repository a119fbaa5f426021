//! `tabula tablet ...`: the tablet server role. `serve` runs one tablet server until Ctrl-C or
//! SIGTERM (a clean stop: tablets flushed, membership left), or until it loses its
//! lock-service membership (an error exit: it must come back as a new server).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use tabula_tabletserver::server::{ServerError, TabletServerConfig, serve};

use crate::daemon::run_until_signal;
use crate::exit::UsageError;

/// The tablet-server commands.
#[derive(Debug, Subcommand)]
pub(crate) enum TabletCommand {
    /// Run a tablet server until Ctrl-C or SIGTERM; the lock-service cell is the global
    /// --lock (or TABULA_LOCK).
    Serve(ServeArgs),
}

/// `tabula tablet serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address the tablet and admin services listen on; also what the lock service publishes
    /// for the master and clients.
    #[arg(long)]
    pub(crate) listen: SocketAddr,
    /// The storage root shared by every server of the cluster (SSTables, commit logs,
    /// manifests).
    #[arg(long)]
    pub(crate) storage_root: PathBuf,
    /// Address for the plain-HTTP /metrics (Prometheus text) and /healthz endpoints.
    #[arg(long)]
    pub(crate) metrics: Option<SocketAddr>,
    /// This server's id; default a fresh one per start (a restarted server never reuses a
    /// dead server's identity).
    #[arg(long)]
    pub(crate) server_id: Option<String>,
    /// Lease of the lock-service session, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) session_ttl_ms: u64,
    /// Split a tablet automatically once it holds this much data: bytes, or with a suffix
    /// KiB, MiB, GiB (also KB, MB, GB as powers of 1000).
    #[arg(long, default_value = "1GiB", value_parser = parse_bytes)]
    pub(crate) split_threshold: u64,
}

/// `1048576`, `1MiB`, `1 GiB`, `64KB`: a byte count, with an optional binary (KiB, MiB, GiB)
/// or decimal (KB, MB, GB) suffix.
fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a byte count (e.g. 1048576, 64MiB, 1GiB)"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" | "k" => 1 << 10,
        "mib" | "m" => 1 << 20,
        "gib" | "g" => 1 << 30,
        "tib" | "t" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        other => return Err(format!("unknown byte unit {other:?} in {s:?}")),
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Runs one tablet command; the cell is `lock` (`--lock`).
pub(crate) fn run(command: TabletCommand, lock: &[String]) -> anyhow::Result<()> {
    match command {
        TabletCommand::Serve(args) => run_serve(args, lock),
    }
}

/// The server configuration the flags describe.
pub(crate) fn server_config(
    args: ServeArgs,
    lock: &[String],
) -> anyhow::Result<TabletServerConfig> {
    let lock: Vec<String> = lock
        .iter()
        .map(|a| a.trim().to_owned())
        .filter(|a| !a.is_empty())
        .collect();
    if lock.is_empty() {
        return Err(UsageError(
            "no lock-service cell given: pass --lock HOST:PORT[,HOST:PORT...] or set TABULA_LOCK"
                .to_owned(),
        )
        .into());
    }
    let config = TabletServerConfig {
        server_id: args.server_id,
        metrics: args.metrics,
        session_ttl: Duration::from_millis(args.session_ttl_ms),
        split_threshold_bytes: args.split_threshold,
        ..TabletServerConfig::new(lock, args.listen, args.storage_root)
    };
    match config.validate() {
        Ok(()) => Ok(config),
        Err(e @ ServerError::InvalidConfig(_)) => Err(UsageError(e.to_string()).into()),
        Err(e) => Err(e.into()),
    }
}

fn run_serve(args: ServeArgs, lock: &[String]) -> anyhow::Result<()> {
    let config = server_config(args, lock)?;
    run_until_signal("tabula-tablet", "info", |stop| async move {
        serve(config, stop).await.map_err(anyhow::Error::from)
    })
    .context("tablet server")
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::exit;

    #[derive(Debug, Parser)]
    struct Tablet {
        #[command(subcommand)]
        command: TabletCommand,
    }

    fn serve_args(extra: &[&str]) -> ServeArgs {
        let mut argv = vec![
            "tablet",
            "serve",
            "--listen",
            "127.0.0.1:7100",
            "--storage-root",
            "/tmp/root",
        ];
        argv.extend_from_slice(extra);
        let TabletCommand::Serve(args) = Tablet::try_parse_from(argv).unwrap().command;
        args
    }

    #[test]
    fn serve_flags_make_a_valid_config() {
        let args = serve_args(&["--server-id", "ts-1", "--session-ttl-ms", "3000"]);
        let config = server_config(args, &["127.0.0.1:7001".to_owned()]).unwrap();
        assert_eq!(config.server_id.as_deref(), Some("ts-1"));
        assert_eq!(config.session_ttl, Duration::from_secs(3));
        assert_eq!(config.lock, ["127.0.0.1:7001"]);
        assert_eq!(config.split_threshold_bytes, 1 << 30);
        let args = serve_args(&["--split-threshold", "64MiB"]);
        let config = server_config(args, &["127.0.0.1:7001".to_owned()]).unwrap();
        assert_eq!(config.split_threshold_bytes, 64 << 20);
    }

    #[test]
    fn byte_counts_take_plain_numbers_and_suffixes() {
        assert_eq!(parse_bytes("1048576"), Ok(1 << 20));
        assert_eq!(parse_bytes("1MiB"), Ok(1 << 20));
        assert_eq!(parse_bytes("2 GiB"), Ok(2 << 30));
        assert_eq!(parse_bytes("3kb"), Ok(3_000));
        assert!(parse_bytes("MiB").is_err());
        assert!(parse_bytes("1XB").is_err());
        assert!(parse_bytes("-1").is_err());
        assert!(parse_bytes("99999999999TiB").is_err());
        assert!(parse_bytes("0").is_ok_and(|n| n == 0));
    }

    #[test]
    fn serve_without_a_cell_or_with_a_bad_id_is_usage() {
        let err = server_config(serve_args(&[]), &[]).unwrap_err();
        assert_eq!(exit::code(&err), 2, "{err:#}");
        let err = server_config(
            serve_args(&["--server-id", "a/b"]),
            &["127.0.0.1:7001".to_owned()],
        )
        .unwrap_err();
        assert_eq!(exit::code(&err), 2, "{err:#}");
    }
}
