//! What the gateway's integration tests share: an in-process cluster (a one-node lock cell,
//! two tablet servers, a master, every tablet served, all on 127.0.0.1 ports of their own)
//! and gateways on free ports over it, stopped when their handle drops.

#![allow(dead_code, clippy::unwrap_used)]

use tabula_client::Client;
use tabula_master::Master;
use tabula_proto::google::bigtable::admin::v2::bigtable_table_admin_client::BigtableTableAdminClient;
use tabula_proto::google::bigtable::v2::bigtable_client::BigtableClient;
use tabula_tabletserver::server::TabletServer;
use tabula_tests::master_helpers::{all_served, master_config};
use tabula_tests::{LockCell, start_tablet_server};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tonic::transport::Channel;

/// A whole cluster in this process. Dropping it stops every part.
pub(crate) struct Cluster {
    /// A client of the cluster's own library, for setup and checks.
    pub(crate) native: Client,
    pub(crate) master: Master,
    servers: Vec<TabletServer>,
    cell: LockCell,
    root: TempDir,
}

impl Cluster {
    /// A lock cell of one node, two tablet servers and a master on a fresh storage root,
    /// answered once root and METADATA are served.
    pub(crate) async fn start() -> Cluster {
        let cell = LockCell::start(1).await.unwrap();
        let root = tempfile::tempdir().unwrap();
        let mut servers = Vec::new();
        for _ in 0..2 {
            servers.push(start_tablet_server(&cell, root.path()).await.unwrap());
        }
        let master = Master::start(master_config(&cell, root.path()))
            .await
            .unwrap();
        let native = Client::connect(&cell.addrs()).await.unwrap();
        all_served(native.channels(), &master, 2).await;
        Cluster {
            native,
            master,
            servers,
            cell,
            root,
        }
    }

    /// Waits until the cluster has at least `tablets` tablets (root and METADATA count) and
    /// serves every one.
    pub(crate) async fn all_served(&self, tablets: u32) {
        all_served(self.native.channels(), &self.master, tablets).await;
    }

    /// Shuts every tablet server down: nothing serves the cluster's tablets any more, so a
    /// data call waits (the client library retrying) until it is given up.
    pub(crate) async fn stop_tablet_servers(&mut self) {
        for server in self.servers.drain(..) {
            server.shutdown().await.unwrap();
        }
    }

    /// A gateway over this cluster on a free port.
    pub(crate) async fn gateway(&self) -> Gateway {
        start_gateway(&self.cell.addrs()).await
    }
}

/// A gateway on a free port over the cluster whose lock cell is at `lock_addrs`.
pub(crate) async fn start_gateway(lock_addrs: &[String]) -> Gateway {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let client = Client::connect(lock_addrs).await.unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        tabula_gateway::serve(listener, client, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    Gateway {
        addr,
        stop: Some(stop),
        task,
    }
}

/// A gateway serving in this process; dropping the handle stops it.
pub(crate) struct Gateway {
    /// `127.0.0.1:PORT`, what `BIGTABLE_EMULATOR_HOST` would name.
    pub(crate) addr: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.abort();
    }
}

/// Cloud Bigtable's generated data and table admin clients on one channel to the gateway at
/// `addr` (the data client accepts answers of up to 64 MiB).
pub(crate) async fn clients(
    addr: &str,
) -> (BigtableClient<Channel>, BigtableTableAdminClient<Channel>) {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    (
        BigtableClient::new(channel.clone()).max_decoding_message_size(64 << 20),
        BigtableTableAdminClient::new(channel),
    )
}
