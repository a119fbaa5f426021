//! A lock-service node: opens its data directory, runs openraft over the `network` module's
//! tonic transport, and forms the cell once.
//!
//! `LockNode::start` is the handle tests use (bind `127.0.0.1:0` with `start_on` and read
//! `addr`); `serve` runs a node until a shutdown future resolves, for the binary.
//!
//! Invariants:
//! - The cell is initialized once: only by the node with the smallest id in `peers`, and only
//!   when its storage has never been initialized (`Raft::is_initialized`). A restarted node
//!   recovers vote, log and membership from its data directory and never initializes again.
//!   (A *wiped* member must be removed from the membership before it comes back; openraft
//!   cannot tell an empty restarted member from a new one.)
//! - Every task a node spawns lives in its `JoinSet` and stops in `shutdown`, which also waits
//!   until the data directory is released, so a node can be restarted in the same process.
//! - Every node runs a `LeaseKeeper` (`lease`); it only acts while its node leads.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{Fatal, InitializeError, RaftError};
use openraft::{BasicNode, Config, ConfigError, Raft, SnapshotPolicy};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::lease::{LeaseKeeper, LeaseOptions};
use crate::network::{NetworkFactory, NetworkOptions, RaftGrpcService};
use crate::service::{LockApi, ServiceOptions};
use crate::state::Limits;
use crate::store::{StateHandle, StorageOptions, StoreError, open_storage_with};
use crate::types::{NodeId, TypeConfig};

/// How long `shutdown` waits for the server to drain and for the storage to be released.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

/// Concurrent requests one peer connection may have in flight on the Raft service.
const CONCURRENT_REQUESTS_PER_CONNECTION: usize = 64;

/// Longest accepted cluster id.
const MAX_CLUSTER_ID_BYTES: usize = 128;

/// One node's configuration (`tabula lock serve` builds it from flags).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeConfig {
    /// This node's Raft id; must be a key of `peers`.
    pub id: NodeId,
    /// Where the Raft service listens.
    pub listen: SocketAddr,
    /// Every voter of the cell, this node included: id to `host:port` as the others reach it.
    pub peers: BTreeMap<NodeId, String>,
    /// The node's storage (log, vote, snapshots); one node per directory.
    pub data_dir: PathBuf,
    /// Names the cell; Raft requests from another cell are refused.
    pub cluster_id: String,
    /// Raft timing and size limits.
    #[serde(default)]
    pub raft: RaftTuning,
}

/// Raft timing and size limits. The defaults assume a LAN and a disk whose `fdatasync`
/// (plus one round trip) stays well under `heartbeat_interval_ms`, which openraft also uses as
/// the timeout of every AppendEntries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RaftTuning {
    /// Leader heartbeat period, and the AppendEntries timeout.
    pub heartbeat_interval_ms: u64,
    /// A follower that hears no leader for a random time in `[min, max)` campaigns.
    pub election_timeout_min_ms: u64,
    /// See `election_timeout_min_ms`.
    pub election_timeout_max_ms: u64,
    /// Timeout of one snapshot chunk (the last one includes installing it).
    pub install_snapshot_timeout_ms: u64,
    /// Take a snapshot after this many log entries since the last one.
    pub snapshot_every_entries: u64,
    /// Log entries kept behind a snapshot, for followers slightly behind.
    pub entries_kept_after_snapshot: u64,
    /// Most entries in one AppendEntries.
    pub max_entries_per_append: u64,
    /// Snapshot chunk size; must leave room in `max_message_bytes`.
    pub snapshot_chunk_bytes: u64,
    /// Largest Raft gRPC message, sent or accepted.
    pub max_message_bytes: u64,
    /// Limit for establishing a connection to a peer.
    pub connect_timeout_ms: u64,
    /// Added to every session's TTL when a node starts leading, before it expires anything.
    /// KeepAlives are answered only within `min(session_grace_ms, election_timeout_min_ms)` of
    /// the start of a confirmed quorum round.
    pub session_grace_ms: u64,
    /// Period of the leader's lease loop (quorum confirmation, expiry); shorter than the quorum
    /// window above.
    pub lease_tick_ms: u64,
    /// Watch events the state machine retains; a watch from an older revision fails with
    /// `Compacted`. Give every node of a cell the same value: it is part of the replicated
    /// state's limits, and a node restored from a snapshot keeps the snapshot's value.
    pub watch_history_events: u64,
}

impl Default for RaftTuning {
    fn default() -> Self {
        RaftTuning {
            heartbeat_interval_ms: 100,
            election_timeout_min_ms: 600,
            election_timeout_max_ms: 1200,
            install_snapshot_timeout_ms: 10_000,
            snapshot_every_entries: 20_000,
            entries_kept_after_snapshot: 1_000,
            max_entries_per_append: 300,
            snapshot_chunk_bytes: 4 << 20,
            max_message_bytes: 16 << 20,
            connect_timeout_ms: 500,
            session_grace_ms: 5_000,
            lease_tick_ms: 100,
            watch_history_events: 10_000,
        }
    }
}

/// Why a node did not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The configuration is inconsistent; nothing was started.
    #[error("invalid lock node configuration: {0}")]
    InvalidConfig(String),
    /// openraft rejected the Raft configuration derived from it.
    #[error("invalid raft configuration: {0}")]
    RaftConfig(Box<ConfigError>),
    /// The data directory did not open.
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    /// The listen address could not be bound.
    #[error("bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The Raft core stopped with a fatal error (storage failure, panic).
    #[error("raft stopped: {0}")]
    Raft(Box<Fatal<NodeId>>),
    /// Forming the cell failed.
    #[error("initialize the cell: {0}")]
    Initialize(Box<RaftError<NodeId, InitializeError<NodeId, BasicNode>>>),
    /// The Raft gRPC server failed.
    #[error("raft server: {0}")]
    Server(#[from] tonic::transport::Error),
    /// The Raft gRPC server stopped although nobody asked it to.
    #[error("raft server stopped unexpectedly")]
    ServerStopped,
    /// A task panicked or the storage was not released in time.
    #[error("{0}")]
    Task(String),
}

impl From<Fatal<NodeId>> for NodeError {
    fn from(e: Fatal<NodeId>) -> Self {
        NodeError::Raft(Box::new(e))
    }
}

impl NodeConfig {
    /// Checks the configuration before anything is opened or bound.
    pub fn validate(&self) -> Result<(), NodeError> {
        let invalid = |msg: String| Err(NodeError::InvalidConfig(msg));
        if self.cluster_id.is_empty() || self.cluster_id.len() > MAX_CLUSTER_ID_BYTES {
            return invalid(format!(
                "cluster id must have 1 to {MAX_CLUSTER_ID_BYTES} bytes, got {:?}",
                self.cluster_id
            ));
        }
        if !self.peers.contains_key(&self.id) {
            return invalid(format!(
                "node {} is not among the peers {:?}",
                self.id,
                self.peers.keys().collect::<Vec<_>>()
            ));
        }
        for (id, addr) in &self.peers {
            let port = addr
                .rsplit_once(':')
                .map(|(host, port)| (host, port.parse::<u16>()));
            if !matches!(port, Some((host, Ok(p))) if !host.is_empty() && p != 0) {
                return invalid(format!("peer {id} address {addr:?} is not host:port"));
            }
        }
        if self.data_dir.as_os_str().is_empty() {
            return invalid("data directory is empty".to_owned());
        }
        let t = &self.raft;
        if t.snapshot_chunk_bytes == 0
            || t.snapshot_chunk_bytes.saturating_mul(2) > t.max_message_bytes
        {
            return invalid(format!(
                "snapshot chunk of {} bytes must be non-zero and at most half the {}-byte message limit",
                t.snapshot_chunk_bytes, t.max_message_bytes
            ));
        }
        if t.install_snapshot_timeout_ms < t.heartbeat_interval_ms {
            return invalid("install snapshot timeout is shorter than the heartbeat".to_owned());
        }
        let leases = t.lease_options();
        if leases.tick.is_zero() || leases.tick >= leases.quorum_window {
            return invalid(format!(
                "lease tick of {:?} must be non-zero and shorter than the quorum window of {:?} \
                 (the smaller of the session grace and the minimum election timeout)",
                leases.tick, leases.quorum_window
            ));
        }
        if t.watch_history_events == 0 {
            return invalid("the watch history must retain at least one event".to_owned());
        }
        self.raft.openraft_config(&self.cluster_id)?;
        Ok(())
    }

    fn network_options(&self) -> NetworkOptions {
        NetworkOptions {
            cluster_id: self.cluster_id.clone(),
            connect_timeout: Duration::from_millis(self.raft.connect_timeout_ms),
            max_message_bytes: self.raft.max_message_bytes_usize(),
            ..NetworkOptions::default()
        }
    }

    fn members(&self) -> BTreeMap<NodeId, BasicNode> {
        self.peers
            .iter()
            .map(|(id, addr)| (*id, BasicNode::new(addr)))
            .collect()
    }
}

impl RaftTuning {
    /// openraft's configuration, validated.
    fn openraft_config(&self, cluster_id: &str) -> Result<Config, NodeError> {
        Config {
            cluster_name: cluster_id.to_owned(),
            heartbeat_interval: self.heartbeat_interval_ms,
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            install_snapshot_timeout: self.install_snapshot_timeout_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every_entries),
            max_in_snapshot_log_to_keep: self.entries_kept_after_snapshot,
            max_payload_entries: self.max_entries_per_append,
            snapshot_max_chunk_size: self.snapshot_chunk_bytes,
            ..Config::default()
        }
        .validate()
        .map_err(|e| NodeError::RaftConfig(Box::new(e)))
    }

    /// The leader's lease timing: the quorum window is `min(grace, election_timeout_min)`.
    pub fn lease_options(&self) -> LeaseOptions {
        let grace = Duration::from_millis(self.session_grace_ms);
        LeaseOptions {
            grace,
            quorum_window: grace.min(Duration::from_millis(self.election_timeout_min_ms)),
            tick: Duration::from_millis(self.lease_tick_ms),
        }
    }

    fn max_message_bytes_usize(&self) -> usize {
        usize::try_from(self.max_message_bytes).unwrap_or(usize::MAX)
    }

    /// The storage options: the default limits but for the watch history.
    fn storage_options(&self) -> StorageOptions {
        let defaults = StorageOptions::default();
        StorageOptions {
            limits: Limits {
                max_events: usize::try_from(self.watch_history_events).unwrap_or(usize::MAX),
                ..defaults.limits
            },
            ..defaults
        }
    }
}

/// A running node: its Raft, its Raft service, its lease keeper, and read access to its
/// applied state.
///
/// Stop it with `shutdown`: dropping it aborts the server task but leaves the Raft core and the
/// data directory lock to openraft's own teardown, with nobody waiting for them.
pub struct LockNode {
    id: NodeId,
    addr: SocketAddr,
    raft: Raft<TypeConfig>,
    state: StateHandle,
    leases: LeaseKeeper,
    cancel: CancellationToken,
    tasks: JoinSet<Result<(), NodeError>>,
    /// The `LockService`'s watch streams; they end on `cancel`.
    watch_tasks: TaskTracker,
}

impl std::fmt::Debug for LockNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockNode")
            .field("id", &self.id)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl LockNode {
    /// Binds `config.listen` and starts the node.
    pub async fn start(config: NodeConfig) -> Result<LockNode, NodeError> {
        config.validate()?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| NodeError::Bind {
                    addr: config.listen,
                    source,
                })?;
        LockNode::start_on(config, listener).await
    }

    /// Starts the node on an already bound listener (`config.listen` is ignored): tests bind
    /// `127.0.0.1:0` for every node first, so that each knows the others' addresses.
    pub async fn start_on(
        config: NodeConfig,
        listener: TcpListener,
    ) -> Result<LockNode, NodeError> {
        config.validate()?;
        let span = tracing::info_span!("lock_node", node_id = config.id);
        LockNode::start_in_span(config, listener)
            .instrument(span)
            .await
    }

    async fn start_in_span(
        config: NodeConfig,
        listener: TcpListener,
    ) -> Result<LockNode, NodeError> {
        let addr = listener.local_addr().map_err(|source| NodeError::Bind {
            addr: config.listen,
            source,
        })?;
        let raft_config = Arc::new(config.raft.openraft_config(&config.cluster_id)?);
        let (log, state_machine) =
            open_storage_with(&config.data_dir, config.raft.storage_options()).await?;
        let state = state_machine.state();
        let network = NetworkFactory::new(config.network_options());
        let raft = Raft::new(config.id, raft_config, network.clone(), log, state_machine).await?;
        let leases = LeaseKeeper::new(raft.clone(), state.clone(), config.raft.lease_options());

        let cancel = CancellationToken::new();
        let mut tasks = JoinSet::new();
        // Finishes only when `cancel` fires, which only `shutdown` does.
        let keeper = leases.clone();
        let stop_leases = cancel.clone();
        tasks.spawn(
            async move {
                keeper.run(stop_leases).await;
                Ok(())
            }
            .in_current_span(),
        );
        let service = RaftGrpcService::new(raft.clone(), config.id, &config.cluster_id)
            .into_server(config.raft.max_message_bytes_usize());
        let api = LockApi::new(
            raft.clone(),
            state.clone(),
            leases.clone(),
            network,
            ServiceOptions::default(),
            cancel.clone(),
        );
        let api_tasks = api.tasks().clone();
        let api = api.into_server(config.raft.max_message_bytes_usize());
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        let stop = cancel.clone().cancelled_owned();
        tasks.spawn(
            async move {
                tonic::transport::Server::builder()
                    .concurrency_limit_per_connection(CONCURRENT_REQUESTS_PER_CONNECTION)
                    .add_service(service)
                    .add_service(api)
                    .serve_with_incoming_shutdown(incoming, stop)
                    .await?;
                tracing::info!("raft server stopped");
                Ok(())
            }
            .in_current_span(),
        );
        tracing::info!(%addr, peers = ?config.peers, "lock node started");

        let node = LockNode {
            id: config.id,
            addr,
            raft,
            state,
            leases,
            cancel,
            tasks,
            watch_tasks: api_tasks,
        };
        if let Err(e) = node.initialize_once(&config).await {
            // Best effort: the node is unusable anyway, report the first error.
            let _ = node.shutdown().await;
            return Err(e);
        }
        Ok(node)
    }

    /// Forms the cell if this node is the one to do it and its storage is pristine.
    async fn initialize_once(&self, config: &NodeConfig) -> Result<(), NodeError> {
        let first = config.peers.keys().next().copied();
        if first != Some(self.id) {
            return Ok(());
        }
        if self.raft.is_initialized().await? {
            tracing::info!("storage already initialized; rejoining the cell");
            return Ok(());
        }
        tracing::info!(voters = ?config.peers.keys().collect::<Vec<_>>(), "initializing the cell");
        match self.raft.initialize(config.members()).await {
            Ok(()) => Ok(()),
            // Raced with a log entry arriving from a leader: the cell exists.
            Err(RaftError::APIError(InitializeError::NotAllowed(e))) => {
                tracing::info!(reason = %e, "cell already initialized");
                Ok(())
            }
            Err(e) => Err(NodeError::Initialize(Box::new(e))),
        }
    }

    /// This node's Raft id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The address the Raft service listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The node's Raft (metrics, `client_write`, `ensure_linearizable`).
    pub fn raft(&self) -> &Raft<TypeConfig> {
        &self.raft
    }

    /// Read access to the state this node has applied.
    pub fn state(&self) -> &StateHandle {
        &self.state
    }

    /// The session leases this node keeps while it leads (KeepAlives, lease status).
    pub fn leases(&self) -> &LeaseKeeper {
        &self.leases
    }

    /// Resolves when the node fails on its own: its server stops or its Raft core hits a fatal
    /// error. Never resolves for a healthy node. (Node tasks end without error only when
    /// `shutdown` cancels them, and `shutdown` consumes the node, so here any ended task is a
    /// failure.)
    pub async fn failed(&mut self) -> NodeError {
        let mut metrics = self.raft.metrics();
        let raft_failed = async {
            loop {
                if let Err(fatal) = &metrics.borrow_and_update().running_state {
                    return NodeError::from(fatal.clone());
                }
                if metrics.changed().await.is_err() {
                    return NodeError::from(Fatal::Stopped);
                }
            }
        };
        let task_failed = async {
            match self.tasks.join_next().await {
                Some(Ok(Ok(()))) => NodeError::ServerStopped,
                Some(Ok(Err(e))) => e,
                Some(Err(e)) => NodeError::Task(format!("node task failed: {e}")),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            e = raft_failed => e,
            e = task_failed => e,
        }
    }

    /// Stops the server and the Raft core, and waits until the data directory is released.
    pub async fn shutdown(mut self) -> Result<(), NodeError> {
        let span = tracing::info_span!("lock_node", node_id = self.id);
        async move {
            self.cancel.cancel();
            self.watch_tasks.close();
            let raft_result = self.raft.shutdown().await;
            let mut first_error = raft_result
                .err()
                .map(|e| NodeError::Task(format!("raft core task failed: {e}")));
            let drained = tokio::time::timeout(SHUTDOWN_WAIT, async {
                let mut errors = Vec::new();
                while let Some(joined) = self.tasks.join_next().await {
                    match joined {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => errors.push(e),
                        Err(e) => errors.push(NodeError::Task(format!("node task failed: {e}"))),
                    }
                }
                errors
            })
            .await;
            match drained {
                Ok(errors) => first_error = first_error.or(errors.into_iter().next()),
                Err(_) => {
                    tracing::warn!("raft server did not drain in time; aborting it");
                    self.tasks.shutdown().await;
                }
            }
            if tokio::time::timeout(SHUTDOWN_WAIT, self.watch_tasks.wait())
                .await
                .is_err()
            {
                first_error = first_error.or(Some(NodeError::Task(
                    "watch streams did not stop in time".to_owned(),
                )));
            }
            // The state machine store (which holds the directory lock with the log store) is
            // dropped by openraft's state-machine worker once the core is gone; its watch
            // closes then.
            let mut applied = self.state.subscribe();
            let released = tokio::time::timeout(SHUTDOWN_WAIT, async {
                while applied.changed().await.is_ok() {}
            })
            .await;
            if released.is_err() {
                first_error = first_error.or(Some(NodeError::Task(
                    "the storage was not released in time".to_owned(),
                )));
            }
            tracing::info!("lock node stopped");
            first_error.map_or(Ok(()), Err)
        }
        .instrument(span)
        .await
    }
}

/// Runs a node until `shutdown` resolves or the node fails, then stops it.
pub async fn serve(
    config: NodeConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NodeError> {
    let mut node = LockNode::start(config).await?;
    let outcome = tokio::select! {
        () = shutdown => Ok(()),
        e = node.failed() => Err(e),
    };
    if let Err(e) = &outcome {
        tracing::error!(node_id = node.id(), error = %e, "lock node failed");
    }
    let stopped = node.shutdown().await;
    outcome.and(stopped)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn config() -> NodeConfig {
        NodeConfig {
            id: 2,
            listen: "127.0.0.1:7002".parse().unwrap(),
            peers: BTreeMap::from([
                (1, "10.0.0.1:7001".to_owned()),
                (2, "10.0.0.2:7002".to_owned()),
                (3, "lock-3.internal:7003".to_owned()),
            ]),
            data_dir: PathBuf::from("/var/lib/tabula/lock"),
            cluster_id: "cell-a".to_owned(),
            raft: RaftTuning::default(),
        }
    }

    fn rejects(change: impl FnOnce(&mut NodeConfig)) -> String {
        let mut c = config();
        change(&mut c);
        match c.validate() {
            Err(e @ (NodeError::InvalidConfig(_) | NodeError::RaftConfig(_))) => e.to_string(),
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }

    #[test]
    fn the_default_tuning_and_a_sane_config_validate() {
        config().validate().unwrap();
        let raft = RaftTuning::default().openraft_config("cell-a").unwrap();
        assert!(raft.election_timeout_min > raft.heartbeat_interval);
        assert!(raft.install_snapshot_timeout >= 1_000);
        let leases = RaftTuning::default().lease_options();
        assert_eq!(leases, LeaseOptions::default());
        assert!(leases.quorum_window <= Duration::from_millis(raft.election_timeout_min));
        // The default watch history is the state machine's default limit.
        assert_eq!(
            RaftTuning::default().storage_options(),
            StorageOptions::default()
        );
    }

    #[test]
    fn inconsistent_configs_are_refused_with_a_reason() {
        assert!(rejects(|c| c.id = 9).contains("not among the peers"));
        assert!(rejects(|c| c.cluster_id.clear()).contains("cluster id"));
        assert!(rejects(|c| c.cluster_id = "x".repeat(200)).contains("cluster id"));
        let bad_addr = rejects(|c| {
            c.peers.insert(3, "no-port".to_owned());
        });
        assert!(bad_addr.contains("peer 3"), "{bad_addr}");
        assert!(
            rejects(|c| {
                c.peers.insert(1, ":7001".to_owned());
            })
            .contains("peer 1")
        );
        assert!(rejects(|c| c.data_dir = PathBuf::new()).contains("data directory"));
        assert!(
            rejects(|c| c.raft.snapshot_chunk_bytes = c.raft.max_message_bytes).contains("chunk")
        );
        // openraft's own checks: the election timeout must exceed the heartbeat.
        rejects(|c| c.raft.election_timeout_min_ms = c.raft.heartbeat_interval_ms);
        rejects(|c| c.raft.election_timeout_max_ms = c.raft.election_timeout_min_ms);
        assert!(rejects(|c| c.raft.lease_tick_ms = 0).contains("lease tick"));
        // The quorum window is the smaller of the grace and the election timeout.
        assert!(rejects(|c| c.raft.session_grace_ms = c.raft.lease_tick_ms).contains("lease tick"));
        assert!(rejects(|c| c.raft.watch_history_events = 0).contains("watch history"));
    }

    #[test]
    fn a_config_without_tuning_deserializes_with_the_defaults() {
        let json = r#"{"id":1,"listen":"127.0.0.1:7001","peers":{"1":"127.0.0.1:7001"},
            "data_dir":"/tmp/x","cluster_id":"c","raft":{"heartbeat_interval_ms":150}}"#;
        let c: NodeConfig = serde_json::from_str(json).unwrap();
        assert_eq!(c.raft.heartbeat_interval_ms, 150);
        assert_eq!(
            c.raft.election_timeout_min_ms,
            RaftTuning::default().election_timeout_min_ms
        );
        c.validate().unwrap();
    }
}
