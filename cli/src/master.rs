//! `tabula master ...`: the master role. `serve` runs one master until Ctrl-C or SIGTERM; run
//! two or more against one cell and one is active while the others wait for the master lock.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use tabula_master::MasterConfig;
use tabula_master::plan::BalancerOptions;

use crate::daemon::run_until_signal;
use crate::exit::UsageError;

/// The master commands.
#[derive(Debug, Subcommand)]
pub(crate) enum MasterCommand {
    /// Run a master until Ctrl-C or SIGTERM; the lock-service cell is the global --lock (or
    /// TABULA_LOCK).
    Serve(ServeArgs),
}

/// `tabula master serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address the master service listens on (announced to clients and other masters).
    #[arg(long)]
    pub(crate) listen: SocketAddr,
    /// The storage root shared by every server of the cluster.
    #[arg(long)]
    pub(crate) storage_root: PathBuf,
    /// Address for the plain-HTTP /metrics (Prometheus text) and /healthz endpoints.
    #[arg(long)]
    pub(crate) metrics: Option<SocketAddr>,
    /// This master's id; default a fresh one per start.
    #[arg(long)]
    pub(crate) master_id: Option<String>,
    /// Lease of the lock-service session, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) session_ttl_ms: u64,
    /// Pause between the master's rounds (gather, plan, execute), in milliseconds.
    #[arg(long, default_value_t = 500)]
    pub(crate) round_interval_ms: u64,
    /// Do not move tablets to even out load.
    #[arg(long)]
    pub(crate) no_balancer: bool,
    /// The most balancing moves in flight at once.
    #[arg(long, default_value_t = 2)]
    pub(crate) max_moves: usize,
}

/// Runs one master command; the cell is `lock` (`--lock`).
pub(crate) fn run(command: MasterCommand, lock: &[String]) -> anyhow::Result<()> {
    match command {
        MasterCommand::Serve(args) => {
            let config = master_config(args, lock)?;
            run_until_signal("tabula-master", "info", |stop| async move {
                tabula_master::serve(config, stop)
                    .await
                    .map_err(anyhow::Error::from)
            })
            .context("master")
        }
    }
}

/// The master configuration the flags describe.
pub(crate) fn master_config(args: ServeArgs, lock: &[String]) -> anyhow::Result<MasterConfig> {
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
    if args.max_moves == 0 {
        return Err(UsageError("--max-moves must be at least 1".to_owned()).into());
    }
    Ok(MasterConfig {
        master_id: args.master_id,
        metrics: args.metrics,
        session_ttl: Duration::from_millis(args.session_ttl_ms),
        round_interval: Duration::from_millis(args.round_interval_ms.max(10)),
        balancer: BalancerOptions {
            enabled: !args.no_balancer,
            max_moves: args.max_moves,
        },
        ..MasterConfig::new(lock, args.listen, args.storage_root)
    })
}
