//! In-process cluster parts for integration tests: a lock-service cell of `n` nodes over real
//! gRPC on `127.0.0.1:0` ports (each node with its own temporary data directory), tablet
//! servers against it, and `eventually`, which polls a condition until a deadline instead of
//! sleeping for a guessed time.
//!
//! ```ignore
//! let cell = LockCell::start(3).await?;
//! let root = tempfile::tempdir()?;
//! let server = start_tablet_server(&cell, root.path()).await?;
//! let lock = cell.client()?;
//! // ... talk to server.addr() ...
//! server.shutdown().await?;
//! cell.shutdown().await?;
//! ```

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tabula_lockservice::client::{ClientOptions, LockClient};
use tabula_lockservice::node::{LockNode, NodeConfig, RaftTuning};
use tabula_tabletserver::engine::EngineOptions;
use tabula_tabletserver::server::{TabletServer, TabletServerConfig};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::time::Instant;

/// The session lease of tablet servers started by `start_tablet_server`: short, so a stopped
/// server's tablets free up quickly in failover tests, long enough for a loaded CI machine.
pub const TEST_SESSION_TTL: Duration = Duration::from_secs(3);

/// Polls `check` every 20 ms until it returns `Some`, and answers that value; panics with
/// `what` if `deadline` passes first.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = Instant::now() + deadline;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A lock-service cell of nodes `1..=n` on loopback, with temporary storage. Dropping it
/// without `shutdown` aborts the nodes' tasks with the runtime.
pub struct LockCell {
    configs: BTreeMap<u64, NodeConfig>,
    nodes: BTreeMap<u64, LockNode>,
    _dirs: Vec<TempDir>,
}

impl LockCell {
    /// Starts `n` nodes (at least 1) that form one cell; the cell elects a leader by itself
    /// (clients wait for it: their calls retry).
    pub async fn start(n: u64) -> anyhow::Result<LockCell> {
        anyhow::ensure!(n >= 1, "a cell needs at least one node");
        let mut listeners = BTreeMap::new();
        for id in 1..=n {
            listeners.insert(id, TcpListener::bind("127.0.0.1:0").await?);
        }
        let mut addrs: BTreeMap<u64, SocketAddr> = BTreeMap::new();
        for (id, l) in &listeners {
            addrs.insert(*id, l.local_addr()?);
        }
        let peers: BTreeMap<u64, String> =
            addrs.iter().map(|(id, a)| (*id, a.to_string())).collect();
        let mut dirs = Vec::new();
        let mut configs = BTreeMap::new();
        for (id, addr) in &addrs {
            let dir = tempfile::tempdir()?;
            configs.insert(
                *id,
                NodeConfig {
                    id: *id,
                    listen: *addr,
                    peers: peers.clone(),
                    data_dir: dir.path().to_path_buf(),
                    cluster_id: "tabula-tests".into(),
                    raft: RaftTuning::default(),
                },
            );
            dirs.push(dir);
        }
        let mut nodes = BTreeMap::new();
        for (id, listener) in listeners {
            let config = configs
                .get(&id)
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("no config for node {id}"))?;
            nodes.insert(id, LockNode::start_on(config, listener).await?);
        }
        Ok(LockCell {
            configs,
            nodes,
            _dirs: dirs,
        })
    }

    /// `host:port` of every node, by node id.
    pub fn addrs(&self) -> Vec<String> {
        self.configs
            .values()
            .map(|c| c.listen.to_string())
            .collect()
    }

    /// A lock-service client of the cell with default options.
    pub fn client(&self) -> anyhow::Result<LockClient> {
        Ok(LockClient::new(&self.addrs(), ClientOptions::default())?)
    }

    /// The running node `id`, if any (e.g. to inspect its Raft metrics).
    pub fn node(&self, id: u64) -> Option<&LockNode> {
        self.nodes.get(&id)
    }

    /// Stops node `id` (its data stays, `restart` brings it back on the same address).
    pub async fn stop(&mut self, id: u64) -> anyhow::Result<()> {
        if let Some(node) = self.nodes.remove(&id) {
            node.shutdown().await?;
        }
        Ok(())
    }

    /// Restarts a stopped node from its data directory.
    pub async fn restart(&mut self, id: u64) -> anyhow::Result<()> {
        anyhow::ensure!(!self.nodes.contains_key(&id), "node {id} is running");
        let config = self
            .configs
            .get(&id)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no node {id}"))?;
        self.nodes.insert(id, LockNode::start(config).await?);
        Ok(())
    }

    /// Stops every node.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        for (_, node) in std::mem::take(&mut self.nodes) {
            node.shutdown().await?;
        }
        Ok(())
    }
}

/// A tablet-server configuration for `cell` and `storage_root`: a fresh server id, an
/// ephemeral port, the engine's test sizes and `TEST_SESSION_TTL`. Change fields before
/// `TabletServer::start` for anything else.
pub fn tablet_server_config(cell: &LockCell, storage_root: &Path) -> TabletServerConfig {
    TabletServerConfig {
        engine: EngineOptions::for_tests(),
        session_ttl: TEST_SESSION_TTL,
        ..TabletServerConfig::new(
            cell.addrs(),
            SocketAddr::from(([127, 0, 0, 1], 0)),
            storage_root.to_path_buf(),
        )
    }
}

/// Starts a tablet server with `tablet_server_config(cell, storage_root)`; it has joined the
/// cell (its file and lock exist) when this returns. It serves only what a `LoadTablet` gives
/// it.
pub async fn start_tablet_server(
    cell: &LockCell,
    storage_root: &Path,
) -> anyhow::Result<TabletServer> {
    Ok(TabletServer::start(tablet_server_config(cell, storage_root)).await?)
}
