//! The in-process cell harness shared by the integration tests: nodes over real gRPC on
//! 127.0.0.1 ephemeral ports, each with its own temporary data directory, and `eventually`,
//! which polls a condition with a deadline.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use openraft::ServerState;
use tabula_lockservice::node::{LockNode, NodeConfig, RaftTuning};
use tabula_lockservice::state::{Op, Request, Response};
use tempfile::TempDir;
use tokio::net::TcpListener;

pub(crate) const DEADLINE: Duration = Duration::from_secs(20);
pub(crate) const CLUSTER: &str = "test-cell";

/// Polls `check` until it returns `Some`, failing the test after `DEADLINE`.
pub(crate) async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A cell of nodes, some of which may be stopped.
pub(crate) struct Cell {
    pub(crate) tuning: RaftTuning,
    pub(crate) peers: BTreeMap<u64, String>,
    pub(crate) addrs: BTreeMap<u64, SocketAddr>,
    pub(crate) dirs: BTreeMap<u64, TempDir>,
    pub(crate) nodes: BTreeMap<u64, LockNode>,
}

impl Cell {
    pub(crate) async fn start(size: u64) -> Cell {
        Cell::start_tuned(size, RaftTuning::default()).await
    }

    pub(crate) async fn start_tuned(size: u64, tuning: RaftTuning) -> Cell {
        let mut listeners = BTreeMap::new();
        for id in 1..=size {
            listeners.insert(id, TcpListener::bind("127.0.0.1:0").await.unwrap());
        }
        let addrs: BTreeMap<u64, SocketAddr> = listeners
            .iter()
            .map(|(id, l)| (*id, l.local_addr().unwrap()))
            .collect();
        let peers = addrs.iter().map(|(id, a)| (*id, a.to_string())).collect();
        let dirs = (1..=size)
            .map(|id| (id, tempfile::tempdir().unwrap()))
            .collect();
        let mut cell = Cell {
            tuning,
            peers,
            addrs,
            dirs,
            nodes: BTreeMap::new(),
        };
        for (id, listener) in listeners {
            let node = LockNode::start_on(cell.config(id), listener).await.unwrap();
            assert_eq!(node.addr(), cell.addrs[&id]);
            cell.nodes.insert(id, node);
        }
        cell
    }

    pub(crate) fn config(&self, id: u64) -> NodeConfig {
        NodeConfig {
            id,
            listen: self.addrs[&id],
            peers: self.peers.clone(),
            data_dir: self.dirs[&id].path().to_path_buf(),
            cluster_id: CLUSTER.to_owned(),
            raft: self.tuning.clone(),
        }
    }

    /// Restarts a stopped node from its data directory on its old address.
    pub(crate) async fn restart(&mut self, id: u64) {
        assert!(!self.nodes.contains_key(&id));
        let node = LockNode::start(self.config(id)).await.unwrap();
        self.nodes.insert(id, node);
    }

    pub(crate) async fn stop(&mut self, id: u64) {
        self.nodes.remove(&id).unwrap().shutdown().await.unwrap();
    }

    /// Waits until every running node names the same running leader, which knows it leads.
    pub(crate) async fn leader(&self) -> u64 {
        eventually("a leader all running nodes agree on", || async {
            let mut leaders = self
                .nodes
                .values()
                .map(|n| n.raft().metrics().borrow().current_leader);
            let first = leaders.next()??;
            if !leaders.all(|l| l == Some(first)) {
                return None;
            }
            let node = self.nodes.get(&first)?;
            (node.raft().metrics().borrow().state == ServerState::Leader).then_some(first)
        })
        .await
    }

    /// Opens a session through `id`'s Raft and returns its id and log index.
    pub(crate) async fn open_session(&self, id: u64) -> (u64, u64) {
        self.open_session_with_ttl(id, 10_000).await
    }

    /// Opens a session with a `ttl_ms` lease through `id`'s Raft; its id and log index.
    pub(crate) async fn open_session_with_ttl(&self, id: u64, ttl_ms: u64) -> (u64, u64) {
        let written = self.nodes[&id]
            .raft()
            .client_write(Request {
                client: None,
                op: Op::OpenSession { ttl_ms },
            })
            .await
            .unwrap();
        let Response::SessionOpened { session } = written.data else {
            panic!("unexpected response {:?}", written.data);
        };
        (session, written.log_id.index)
    }

    /// Waits until every running node has applied `index` and sees `session` live.
    pub(crate) async fn applied_everywhere(&self, index: u64, session: u64) {
        for (id, node) in &self.nodes {
            let applied = tokio::time::timeout(DEADLINE, node.state().wait_applied(index))
                .await
                .unwrap_or_else(|_| panic!("node {id} did not apply index {index}"));
            assert!(applied, "node {id}'s state machine is gone");
            assert!(
                node.state().read(|s| s.session_is_live(session)),
                "node {id} does not see session {session}"
            );
        }
    }

    pub(crate) async fn shutdown(self) {
        for node in self.nodes.into_values() {
            node.shutdown().await.unwrap();
        }
    }
}
