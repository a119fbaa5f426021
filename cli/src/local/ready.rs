//! When a `tabula local` cluster is ready: the lock cell has a leader, a master holds the
//! master lock, its `ClusterStatus` counts at least the root and first METADATA tablets,
//! every one served, and the Cloud Bigtable gateway (if any) accepts connections (it binds
//! only once it has its client of the cluster, so a connection means it serves). Each check is one bounded attempt; the caller polls it between its other
//! duties (watching children, signals) until a deadline.

use std::time::Duration;

use tokio::net::TcpStream;

use tabula_client::Channels;
use tabula_lockservice::client::{ClientOptions, LockClient};
use tabula_master::election::active_master;
use tabula_proto::tabula::master::v1 as mpb;

/// Longest one readiness attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);

/// How far the cluster has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Stage {
    LockService,
    Master,
    Tablets,
    Gateway,
    Ready,
}

impl Stage {
    /// The progress line printed when the wait for this stage begins.
    pub(crate) fn waiting_line(self) -> &'static str {
        match self {
            Stage::LockService => "waiting for the lock service...",
            Stage::Master => "waiting for a master to become active...",
            Stage::Tablets => "waiting for the root and METADATA tablets to be served...",
            Stage::Gateway => "waiting for the Cloud Bigtable gateway to listen...",
            Stage::Ready => "ready",
        }
    }
}

/// Polls a cluster's readiness.
pub(crate) struct Readiness {
    lock: LockClient,
    channels: Channels,
    gateway: Option<String>,
}

impl Readiness {
    /// A readiness check of the cluster whose lock cell is `lock_addrs` and whose gateway, if
    /// any, listens on `gateway`.
    pub(crate) fn new(lock_addrs: &[String], gateway: Option<String>) -> anyhow::Result<Readiness> {
        let options = ClientOptions {
            rpc_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_millis(500),
            op_deadline: Duration::from_secs(2),
            ..ClientOptions::default()
        };
        Ok(Readiness {
            lock: LockClient::new(lock_addrs, options)?,
            channels: Channels::default(),
            gateway,
        })
    }

    /// One attempt: the first stage not reached yet (`Ready` when all are).
    pub(crate) async fn check(&self) -> Stage {
        tokio::time::timeout(ATTEMPT_TIMEOUT, self.check_once())
            .await
            .unwrap_or(Stage::LockService)
    }

    async fn check_once(&self) -> Stage {
        match self.lock.status().await {
            Ok(status) if status.leader.is_some() => {}
            _ => return Stage::LockService,
        }
        let Ok(Some(master)) = active_master(&self.lock).await else {
            return Stage::Master;
        };
        let Ok(mut client) = self.channels.master(&master.addr) else {
            return Stage::Master;
        };
        match client.cluster_status(mpb::ClusterStatusRequest {}).await {
            Ok(s) => {
                let s = s.into_inner();
                if s.tablets < 2 || s.tablets_not_serving != 0 {
                    return Stage::Tablets;
                }
            }
            Err(_) => return Stage::Master,
        }
        match &self.gateway {
            Some(addr) if TcpStream::connect(addr.as_str()).await.is_err() => Stage::Gateway,
            _ => Stage::Ready,
        }
    }
}
