//! A tablet server's membership in a real 3-node lock cell, in process: its file
//! `/tabula/servers/<id>` (contents: its address) and the exclusive lock on it exist while it
//! runs and go when it stops; a second server cannot take the same id; session jeopardy stops
//! serving before the lease can run out at the cell, and a safe session serves again;
//! deleting the file (what the master does to a server it declared dead) stops the server
//! for good; a stopped gate fences manifest writes (flushes requested or in the background
//! store nothing).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use std::sync::Arc;

use bytes::Bytes;
use tabula_common::{Code, LocalDir, StorageRoot, TabletId};
use tabula_lockservice::client::{ClientOptions, LockClient, SessionState};
use tabula_lockservice::node::{LockNode, NodeConfig, RaftTuning};
use tabula_lockservice::state::LockMode;
use tabula_proto::tabula::tablet::v1 as pb;
use tabula_proto::tabula::tablet::v1::tablet_admin_client::TabletAdminClient;
use tabula_tabletserver::engine::manifest::Manifest;
use tabula_tabletserver::engine::{EngineError, EngineOptions, Mutation, RowMutation};
use tabula_tabletserver::server::membership::server_path;
use tabula_tabletserver::server::{MembershipError, ServerError, TabletServer, TabletServerConfig};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::time::Instant;

const DEADLINE: Duration = Duration::from_secs(30);

async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A 3-node lock cell on 127.0.0.1.
struct Cell {
    configs: BTreeMap<u64, NodeConfig>,
    _dirs: Vec<TempDir>,
    nodes: BTreeMap<u64, LockNode>,
}

impl Cell {
    async fn start() -> Cell {
        let mut listeners = BTreeMap::new();
        for id in 1..=3u64 {
            listeners.insert(id, TcpListener::bind("127.0.0.1:0").await.unwrap());
        }
        let addrs: BTreeMap<u64, SocketAddr> = listeners
            .iter()
            .map(|(id, l)| (*id, l.local_addr().unwrap()))
            .collect();
        let peers: BTreeMap<u64, String> =
            addrs.iter().map(|(id, a)| (*id, a.to_string())).collect();
        let mut dirs = Vec::new();
        let mut configs = BTreeMap::new();
        for id in 1..=3u64 {
            let dir = tempfile::tempdir().unwrap();
            configs.insert(
                id,
                NodeConfig {
                    id,
                    listen: addrs[&id],
                    peers: peers.clone(),
                    data_dir: dir.path().to_path_buf(),
                    cluster_id: "membership-test".into(),
                    raft: RaftTuning::default(),
                },
            );
            dirs.push(dir);
        }
        let mut nodes = BTreeMap::new();
        for (id, listener) in listeners {
            let node = LockNode::start_on(configs[&id].clone(), listener)
                .await
                .unwrap();
            nodes.insert(id, node);
        }
        Cell {
            configs,
            _dirs: dirs,
            nodes,
        }
    }

    fn addrs(&self) -> Vec<String> {
        self.configs
            .values()
            .map(|c| c.listen.to_string())
            .collect()
    }

    fn client(&self) -> LockClient {
        LockClient::new(&self.addrs(), ClientOptions::default()).unwrap()
    }

    async fn stop_all(&mut self) {
        for (_, node) in std::mem::take(&mut self.nodes) {
            node.shutdown().await.unwrap();
        }
    }

    async fn restart_all(&mut self) {
        for (id, config) in &self.configs {
            let node = LockNode::start(config.clone()).await.unwrap();
            self.nodes.insert(*id, node);
        }
    }

    async fn shutdown(mut self) {
        self.stop_all().await;
    }
}

fn config(cell: &Cell, root: &TempDir, ttl: Duration) -> TabletServerConfig {
    TabletServerConfig {
        engine: EngineOptions::for_tests(),
        session_ttl: ttl,
        ..TabletServerConfig::new(
            cell.addrs(),
            "127.0.0.1:0".parse().unwrap(),
            root.path().to_path_buf(),
        )
    }
}

async fn admin(addr: SocketAddr) -> TabletAdminClient<tonic::transport::Channel> {
    TabletAdminClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_server_file_and_lock_exist_while_it_runs_and_go_when_it_stops() {
    let cell = Cell::start().await;
    let root = tempfile::tempdir().unwrap();
    let server = TabletServer::start(config(&cell, &root, Duration::from_secs(3)))
        .await
        .unwrap();
    let path = server_path(server.server_id());
    let client = cell.client();
    let file = client.get(&path).await.unwrap();
    assert_eq!(file.contents, server.addr().to_string().into_bytes());
    let session = server.membership().session_id();
    assert_eq!(file.ephemeral_session, Some(session));
    assert_eq!(file.lock_holders.len(), 1);
    assert_eq!(file.lock_holders[0].session, session);
    assert_eq!(file.lock_holders[0].mode, LockMode::Exclusive);
    assert!(
        client
            .list("/tabula/servers")
            .await
            .unwrap()
            .children
            .contains(&server.server_id().0)
    );
    // The commit log lives under the server's id.
    assert_eq!(
        server.engine().commit_log().server_dir(),
        format!("logs/{}", server.server_id())
    );
    // The admin service answers over gRPC.
    let list = admin(server.addr())
        .await
        .list_tablets(pb::ListTabletsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.server_id, server.server_id().0);
    server.gate().check_serving().unwrap();

    // Another server cannot take the same id while this one lives.
    let mut same = config(&cell, &root, Duration::from_secs(3));
    same.server_id = Some(server.server_id().0.clone());
    let e = TabletServer::start(same).await.unwrap_err();
    assert!(
        matches!(
            e,
            ServerError::Membership(MembershipError::ServerIdTaken { .. })
        ),
        "{e}"
    );
    assert_eq!(
        client.get(&path).await.unwrap().ephemeral_session,
        Some(session)
    );

    server.shutdown().await.unwrap();
    let e = client.get(&path).await.unwrap_err();
    assert_eq!(e.code, Code::NotFound, "{e}");
    cell.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn session_jeopardy_stops_serving_before_the_lease_can_expire() {
    let mut cell = Cell::start().await;
    let root = tempfile::tempdir().unwrap();
    let ttl = Duration::from_secs(2);
    let server = TabletServer::start(config(&cell, &root, ttl))
        .await
        .unwrap();
    let mut admin = admin(server.addr()).await;
    admin
        .load_tablet(pb::LoadTabletRequest {
            master_epoch: Some(pb::MasterEpoch { epoch: 1 }),
            tablet: Some(pb::TabletDescriptor {
                table_id: 2,
                tablet_id: 1,
                start_row: vec![],
                end_row: None,
                tablet_epoch: 1,
            }),
            schema: Some(pb::Schema::default()),
            create: true,
        })
        .await
        .unwrap();
    // Let a few KeepAlives go by, then take the whole cell away. Every KeepAlive the cell
    // granted was received before `cell_gone`, so no lease at the cell ends before a KeepAlive
    // sent before `cut` plus the ttl; the server must refuse by then.
    tokio::time::sleep(ttl).await;
    server.gate().check_serving().unwrap();
    let cut = Instant::now();
    cell.stop_all().await;
    let cell_gone = Instant::now();
    // When did serving stop? A poller records the first refusal it sees; seeing it late (a
    // loaded machine) only makes it later, so it bounds the stop from below.
    let poller = {
        let gate = server.gate().clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = gate.check_serving() {
                    return (Instant::now(), e);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    // Every KeepAlive the cell granted was sent before `cell_gone`, and the local lease ends 1%
    // of the ttl before that send plus the ttl, so at `cell_gone + 0.995 ttl` the server must
    // already refuse; the cell could expire the session from `cell_gone + ttl` on. Checking
    // late (a loaded machine) cannot make this pass wrongly: serving must stay off.
    tokio::time::sleep_until(cell_gone + ttl - ttl / 200).await;
    let e = server
        .gate()
        .check_serving()
        .expect_err("still serving past the local lease");
    assert_eq!(e.code, Code::Unavailable, "{e}");
    assert!(e.message.contains("jeopardy"), "{e}");
    assert_eq!(server.membership().session_state(), SessionState::Jeopardy);
    let (refused_at, _) = poller.await.unwrap();
    let after_cut = refused_at - cut;
    eprintln!(
        "cell stopped in {:?}; serving refused {after_cut:?} after the cut (ttl {ttl:?})",
        cell_gone - cut
    );
    // The last KeepAlive was sent at most ttl/3 (+ one round trip) before the cut, so the local
    // lease lasted past `cut + ttl / 2`.
    assert!(
        after_cut >= ttl / 2,
        "refused {after_cut:?} after the cut: serving stopped before the lease ran out"
    );
    // Lifecycle commands that start serving are refused too.
    let status = admin
        .load_tablet(pb::LoadTabletRequest {
            master_epoch: Some(pb::MasterEpoch { epoch: 1 }),
            tablet: Some(pb::TabletDescriptor {
                table_id: 2,
                tablet_id: 1,
                start_row: vec![],
                end_row: None,
                tablet_epoch: 1,
            }),
            schema: Some(pb::Schema::default()),
            create: true,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);

    // The cell comes back within the grace: the session is safe again and so is serving.
    cell.restart_all().await;
    eventually("serving again", || async {
        server.gate().check_serving().ok()
    })
    .await;
    assert_eq!(server.membership().session_state(), SessionState::Safe);
    server.shutdown().await.unwrap();
    cell.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_the_server_file_stops_the_server_for_good() {
    let cell = Cell::start().await;
    let root = tempfile::tempdir().unwrap();
    let mut server = TabletServer::start(config(&cell, &root, Duration::from_secs(3)))
        .await
        .unwrap();
    let path = server_path(server.server_id());
    cell.client().delete(&path, None).await.unwrap();
    let e = tokio::time::timeout(DEADLINE, server.failed())
        .await
        .unwrap();
    assert!(matches!(e, ServerError::MembershipLost(_)), "{e}");
    assert!(e.to_string().contains(&path), "{e}");
    let refused = server.gate().check_serving().unwrap_err();
    assert_eq!(refused.code, Code::Unavailable);
    assert!(refused.message.contains("membership lost"), "{refused}");
    server.shutdown().await.unwrap();
    cell.shutdown().await;
}

fn put(row: &str, value: &[u8]) -> RowMutation {
    RowMutation {
        row: Bytes::copy_from_slice(row.as_bytes()),
        mutations: vec![Mutation::SetCell {
            family: Bytes::from_static(b"cf"),
            qualifier: Bytes::from_static(b"q"),
            timestamp: 1_000,
            value: Bytes::copy_from_slice(value),
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_gate_fences_flushes_and_background_manifest_writes() {
    let cell = Cell::start().await;
    let root = tempfile::tempdir().unwrap();
    let storage: Arc<dyn StorageRoot> = Arc::new(LocalDir::open(root.path()).unwrap());
    let server = TabletServer::start(config(&cell, &root, Duration::from_secs(3)))
        .await
        .unwrap();
    let mut admin = admin(server.addr()).await;
    admin
        .load_tablet(pb::LoadTabletRequest {
            master_epoch: Some(pb::MasterEpoch { epoch: 1 }),
            tablet: Some(pb::TabletDescriptor {
                table_id: 2,
                tablet_id: 1,
                start_row: vec![],
                end_row: None,
                tablet_epoch: 1,
            }),
            schema: Some(pb::Schema {
                families: vec![pb::ColumnFamily {
                    name: "cf".into(),
                    gc_rule: None,
                    ..Default::default()
                }],
                ..Default::default()
            }),
            create: true,
        })
        .await
        .unwrap();
    let served = server.registry().get(TabletId(1)).unwrap();
    let tablet = served.clone();
    tokio::task::spawn_blocking(move || {
        tablet.tablet.apply(put("a", b"1")).unwrap();
        tablet.tablet.flush().unwrap();
    })
    .await
    .unwrap();
    let path = Manifest::path(TabletId(1));
    let before = storage.read_all(&path).unwrap();

    server.gate().stop("test: fenced");
    let engine = server.engine().clone();
    let refused = engine.manifest_writes_refused();
    let tablet = served.clone();
    let flushed = tokio::task::spawn_blocking(move || {
        // Enough to freeze memtables (64 KiB in tests): the background thread wants to flush.
        let big = vec![b'x'; 1024];
        for i in 0..200 {
            tablet.tablet.apply(put(&format!("r{i:03}"), &big)).unwrap();
        }
        tablet.tablet.flush()
    })
    .await
    .unwrap();
    let e = flushed.unwrap_err();
    assert!(matches!(e, EngineError::NotPermitted(_)), "{e}");
    assert_eq!(tabula_common::Error::from(e).code, Code::Unavailable);
    // The background thread tried too (it is kicked by the frozen memtables) and was refused.
    eventually("a refused background flush", || async {
        (engine.manifest_writes_refused() > refused + 1).then_some(())
    })
    .await;
    assert_eq!(storage.read_all(&path).unwrap(), before);
    // The writes are still in memory, readable.
    let row = served
        .tablet
        .read_row(b"r199", &Default::default())
        .unwrap()
        .unwrap();
    assert_eq!(row.cells[0].value.len(), 1024);
    drop(served);
    // Shutting down a fenced server stores nothing either (its final flush is refused).
    server.shutdown().await.unwrap();
    assert_eq!(storage.read_all(&path).unwrap(), before);
    cell.shutdown().await;
}
