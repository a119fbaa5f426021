//! `tabula lock serve`: one node of a lock-service cell, until Ctrl-C or SIGTERM.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use tabula_lockservice::node::{NodeConfig, NodeError, RaftTuning, serve};

use crate::daemon::run_until_signal;
use crate::exit::UsageError;

/// `tabula lock serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// This node's id; must appear in --peers.
    #[arg(long)]
    pub(crate) id: u64,
    /// Address the node's Raft service listens on.
    #[arg(long)]
    pub(crate) listen: SocketAddr,
    /// Every node of the cell, this one included, as the others reach it: ID=HOST:PORT,...
    #[arg(long, value_delimiter = ',', value_parser = parse_peer, required = true)]
    pub(crate) peers: Vec<(u64, String)>,
    /// The node's data directory (Raft log, vote, snapshots); one node per directory.
    #[arg(long)]
    pub(crate) data_dir: PathBuf,
    /// Names the cell; nodes refuse Raft traffic from another cell.
    #[arg(long, default_value = "tabula")]
    pub(crate) cluster_id: String,
    /// Watch events the node retains; `lock watch --from-revision` older than them fails with
    /// `compacted`. Give every node of a cell the same value (a node restored from a snapshot
    /// keeps the snapshot's).
    #[arg(long, value_name = "N", default_value_t = RaftTuning::default().watch_history_events)]
    pub(crate) watch_history_events: u64,
}

/// Parses one `--peers` entry, `ID=HOST:PORT`.
fn parse_peer(s: &str) -> Result<(u64, String), String> {
    let (id, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not ID=HOST:PORT"))?;
    let id = id
        .trim()
        .parse::<u64>()
        .map_err(|e| format!("peer id {id:?}: {e}"))?;
    Ok((id, addr.trim().to_owned()))
}

/// The node configuration the flags describe.
pub(crate) fn node_config(args: ServeArgs) -> anyhow::Result<NodeConfig> {
    let mut peers = BTreeMap::new();
    for (id, addr) in args.peers {
        if peers.insert(id, addr).is_some() {
            return Err(UsageError(format!("--peers names node {id} twice")).into());
        }
    }
    let config = NodeConfig {
        id: args.id,
        listen: args.listen,
        peers,
        data_dir: args.data_dir,
        cluster_id: args.cluster_id,
        raft: RaftTuning {
            watch_history_events: args.watch_history_events,
            ..RaftTuning::default()
        },
    };
    match config.validate() {
        Ok(()) => Ok(config),
        Err(e @ (NodeError::InvalidConfig(_) | NodeError::RaftConfig(_))) => {
            Err(UsageError(e.to_string()).into())
        }
        Err(e) => Err(e.into()),
    }
}

/// Runs the node the flags describe until Ctrl-C or SIGTERM.
pub(crate) fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = node_config(args)?;
    let id = config.id;
    run_until_signal("tabula-lock", "info,openraft=warn", |stop| async move {
        serve(config, stop).await.map_err(anyhow::Error::from)
    })
    .with_context(|| format!("lock node {id}"))
}
