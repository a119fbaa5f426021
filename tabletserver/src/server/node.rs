//! One tablet server process's parts, started and stopped together: lock-service membership,
//! the commit log (one per server, shared by all its tablets), the engine and its file
//! garbage collection, the served-tablet registry behind the gate, and the gRPC services on
//! one address.
//!
//! Start order: bind the address (the lock service is told it), join the cluster (so a server
//! id in use by a live server is refused before its commit log is touched), open the commit
//! log under `logs/<server-id>/`, then serve. A server that loses its membership (session
//! expired, its file deleted by the master) stops serving at once and `failed` resolves: it
//! must exit, and a new process comes back under a new id. `shutdown` stops serving, flushes
//! every tablet while the session is still safe (so their next owners replay almost nothing),
//! and leaves the cluster.
//!
//! Manifest fencing: the engine may store a tablet manifest only while the gate allows it
//! (`Gate::may_write_manifests`: not stopped, session safe at that moment), so background
//! flushes, compactions and splits of a server in jeopardy or out of the cluster are postponed
//! instead of overwriting what a new owner writes. The splitter (`splitter`) splits tablets past
//! `split_threshold_bytes` while the gate is open.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tabula_common::{Coalescing, LocalDir, ServerId, StorageRoot, SystemClock};
use tabula_lockservice::client::SessionState;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, warn};

use super::admin::TabletAdminService;
use super::data::{DataOptions, TabletDataService};
use super::gate::Gate;
use super::membership::{Membership, MembershipError};
use super::metrics::{self, Metrics, RequestMetrics, RequestMetricsLayer};
use super::registry::Registry;
use super::splitter::{
    DEFAULT_SPLIT_CHECK_INTERVAL, DEFAULT_SPLIT_THRESHOLD_BYTES, SplitEvent, Splitter,
    SplitterOptions,
};
use crate::engine::commitlog::{CommitLog, CommitLogError, CommitLogOptions};
use crate::engine::{Engine, EngineError, EngineOptions, GcHandle, ManifestWritePermit};

/// How often unreferenced SSTables and commit-log segments are collected.
const GC_INTERVAL: Duration = Duration::from_secs(60);
/// How long `shutdown` waits for the gRPC server and the tasks to stop.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);
/// The default session lease.
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(10);

/// A tablet server's configuration.
#[derive(Debug, Clone)]
pub struct TabletServerConfig {
    /// The lock-service cell: `host:port` of its nodes.
    pub lock: Vec<String>,
    /// Where the gRPC services listen (and the address given to the master and clients).
    pub listen: SocketAddr,
    /// The storage root shared by every server of the cluster.
    pub storage_root: PathBuf,
    /// The server id; `None` makes a fresh one for this start (a restarted server must never
    /// reuse a dead server's identity).
    pub server_id: Option<String>,
    /// Where `/metrics` and `/healthz` are served over plain HTTP (`None`: not served; port 0
    /// picks a free port, see `TabletServer::metrics_addr`).
    pub metrics: Option<SocketAddr>,
    /// Engine settings.
    pub engine: EngineOptions,
    /// The lock-service session lease.
    pub session_ttl: Duration,
    /// A tablet at least this large (approximately) is split automatically.
    pub split_threshold_bytes: u64,
    /// How often tablet sizes are checked against `split_threshold_bytes`.
    pub split_check_interval: Duration,
    /// Told of every automatic split (bounded; a full channel drops events). The master issue
    /// commits them to METADATA and notifies the master.
    pub split_listener: Option<mpsc::Sender<SplitEvent>>,
}

impl TabletServerConfig {
    /// A configuration with default engine settings, a fresh server id and the default lease.
    pub fn new(lock: Vec<String>, listen: SocketAddr, storage_root: PathBuf) -> Self {
        TabletServerConfig {
            lock,
            listen,
            storage_root,
            server_id: None,
            metrics: None,
            engine: EngineOptions::default(),
            session_ttl: DEFAULT_SESSION_TTL,
            split_threshold_bytes: DEFAULT_SPLIT_THRESHOLD_BYTES,
            split_check_interval: DEFAULT_SPLIT_CHECK_INTERVAL,
            split_listener: None,
        }
    }

    /// Checks the settings before anything starts.
    pub fn validate(&self) -> Result<(), ServerError> {
        let bad = |m: String| Err(ServerError::InvalidConfig(m));
        if self.lock.is_empty() {
            return bad("no lock-service address (--lock)".to_owned());
        }
        if self.storage_root.as_os_str().is_empty() {
            return bad("no storage root".to_owned());
        }
        if self.session_ttl < Duration::from_millis(300) {
            return bad(format!(
                "session ttl {:?} is too short (at least 300 ms)",
                self.session_ttl
            ));
        }
        if self.split_threshold_bytes == 0 {
            return bad("the split threshold must be positive".to_owned());
        }
        if self.split_check_interval.is_zero() {
            return bad("the split check interval must be positive".to_owned());
        }
        if let Some(id) = &self.server_id
            && !valid_server_id(id)
        {
            return bad(format!(
                "server id {id:?} must be 1 to 128 characters of [A-Za-z0-9._-], not starting \
                 with a dot"
            ));
        }
        Ok(())
    }
}

fn valid_server_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// A fresh server id: `ts-<unix milliseconds>-<8 random hex digits>`.
pub fn fresh_server_id() -> ServerId {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    ServerId(format!("ts-{millis}-{:08x}", rand::random::<u32>()))
}

/// Why a tablet server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration is inconsistent.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The listen address could not be bound.
    #[error("bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The storage root could not be opened.
    #[error("storage root {path}: {source}")]
    Storage {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The commit log could not be opened.
    #[error(transparent)]
    CommitLog(#[from] CommitLogError),
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Joining the cluster failed.
    #[error(transparent)]
    Membership(#[from] MembershipError),
    /// The gRPC server failed.
    #[error("grpc server: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The server lost its membership and must exit; it may come back only under a new id.
    #[error("membership lost: {0}")]
    MembershipLost(String),
    /// A task failed or did not stop.
    #[error("{0}")]
    Task(String),
}

/// A running tablet server; see the module documentation. Stop it with `shutdown`.
pub struct TabletServer {
    server_id: ServerId,
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    registry: Arc<Registry>,
    gate: Arc<Gate>,
    engine: Arc<Engine>,
    membership: Arc<Membership>,
    gc: Option<GcHandle>,
    cancel: CancellationToken,
    tasks: JoinSet<Result<(), ServerError>>,
    /// Set (once) when membership is lost, with the reason.
    lost: watch::Receiver<Option<String>>,
    /// Split checks the splitter has finished.
    split_passes: Arc<AtomicU64>,
}

impl std::fmt::Debug for TabletServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TabletServer")
            .field("server_id", &self.server_id)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl TabletServer {
    /// Starts a tablet server; see the module documentation for the order.
    pub async fn start(config: TabletServerConfig) -> Result<TabletServer, ServerError> {
        config.validate()?;
        let server_id = config
            .server_id
            .clone()
            .map_or_else(fresh_server_id, ServerId);
        let span = tracing::info_span!("tablet_server", server_id = %server_id);
        TabletServer::start_in_span(config, server_id)
            .instrument(span)
            .await
    }

    async fn start_in_span(
        config: TabletServerConfig,
        server_id: ServerId,
    ) -> Result<TabletServer, ServerError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: config.listen,
            source,
        })?;
        let metrics_listener = match config.metrics {
            Some(at) => Some(
                metrics::http::bind(at)
                    .await
                    .map_err(|source| ServerError::Bind { addr: at, source })?,
            ),
            None => None,
        };
        let membership = Arc::new(
            Membership::join(
                &config.lock,
                &server_id,
                &addr.to_string(),
                config.session_ttl,
            )
            .await?,
        );
        let gate = Arc::new(Gate::new(membership.safety_check()));
        let fence = gate.clone();
        let permit = ManifestWritePermit::new(move || fence.may_write_manifests());
        let opened = open_engine(&config, &server_id, permit).await;
        let (engine, gc) = match opened {
            Ok(parts) => parts,
            Err(e) => {
                leave(membership).await;
                return Err(e);
            }
        };
        let registry = Arc::new(Registry::new());

        let cancel = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let requests = Arc::new(RequestMetrics::default());
        let metrics_addr = metrics_listener.map(|(listener, bound)| {
            let scrape = Metrics::new(engine.clone(), registry.clone(), requests.clone());
            let router = metrics::http::router(scrape, gate.clone());
            let stop = cancel.clone();
            tasks.spawn(
                async move {
                    metrics::http::serve(listener, router, stop)
                        .await
                        .map_err(|e| ServerError::Task(format!("metrics endpoint: {e}")))
                }
                .in_current_span(),
            );
            info!(metrics = %bound, "serving /metrics and /healthz");
            bound
        });
        let admin = Arc::new(TabletAdminService::new(
            engine.clone(),
            registry.clone(),
            gate.clone(),
        ));
        let split_passes = Arc::new(AtomicU64::new(0));
        let splitter = Splitter {
            admin: admin.clone(),
            registry: registry.clone(),
            gate: gate.clone(),
            storage: engine.storage().clone(),
            options: SplitterOptions {
                threshold_bytes: config.split_threshold_bytes,
                interval: config.split_check_interval,
            },
            listener: config.split_listener.clone(),
            passes: split_passes.clone(),
        };
        let stop_splitting = cancel.clone();
        tasks.spawn(
            async move {
                splitter.run(stop_splitting).await;
                Ok(())
            }
            .in_current_span(),
        );
        let admin = TabletAdminService::shared_server(admin);
        let data = TabletDataService::new(registry.clone(), gate.clone(), DataOptions::default())
            .into_server();
        // Responses' frames leave in one write per turn of the scheduler (`Coalescing`).
        let incoming = tonic::transport::server::TcpIncoming::from(listener)
            .with_nodelay(Some(true))
            .map(|conn| conn.map(Coalescing::new));
        let stop = cancel.clone().cancelled_owned();
        tasks.spawn(
            async move {
                tonic::transport::Server::builder()
                    .layer(RequestMetricsLayer::new(requests))
                    .add_service(data)
                    .add_service(admin)
                    .serve_with_incoming_shutdown(incoming, stop)
                    .await?;
                Ok(())
            }
            .in_current_span(),
        );
        let (lost_tx, lost) = watch::channel(None);
        let watched = membership.clone();
        let fenced = gate.clone();
        let stop_watching = cancel.clone();
        tasks.spawn(
            async move {
                tokio::select! {
                    () = stop_watching.cancelled() => {}
                    why = watched.lost() => {
                        error!(reason = %why, "membership lost; serving stopped for good");
                        fenced.stop(format!("membership lost: {why}"));
                        let _ = lost_tx.send(Some(why));
                    }
                }
                Ok(())
            }
            .in_current_span(),
        );
        info!(%addr, storage_root = %config.storage_root.display(), "tablet server started");
        Ok(TabletServer {
            server_id,
            addr,
            metrics_addr,
            registry,
            gate,
            engine,
            membership,
            gc: Some(gc),
            cancel,
            tasks,
            lost,
            split_passes,
        })
    }

    /// The address the services listen on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address `/metrics` and `/healthz` are served on, if they are.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// This server's id (its file in the lock service, its commit-log directory).
    pub fn server_id(&self) -> &ServerId {
        &self.server_id
    }

    /// The served tablets.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The serving gate.
    pub fn gate(&self) -> &Arc<Gate> {
        &self.gate
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// How many split checks the splitter has finished (tests wait for it to have looked).
    pub fn split_checks(&self) -> u64 {
        self.split_passes.load(Ordering::Acquire)
    }

    /// The lock-service membership.
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// Resolves when the server fails on its own: membership lost, or the gRPC server stopped.
    /// Never resolves for a healthy server.
    pub async fn failed(&mut self) -> ServerError {
        let mut lost = self.lost.clone();
        let lost = async move {
            loop {
                if let Some(why) = lost.borrow_and_update().clone() {
                    return ServerError::MembershipLost(why);
                }
                if lost.changed().await.is_err() {
                    return std::future::pending().await;
                }
            }
        };
        let tasks = &mut self.tasks;
        let ended = async {
            loop {
                match tasks.join_next().await {
                    // The watcher ends only after reporting a loss (or on cancel).
                    Some(Ok(Ok(()))) => continue,
                    Some(Ok(Err(e))) => return e,
                    Some(Err(e)) => return ServerError::Task(format!("server task failed: {e}")),
                    None => return std::future::pending().await,
                }
            }
        };
        tokio::select! {
            e = lost => e,
            e = ended => e,
        }
    }

    /// Stops serving, flushes every tablet if the session is still safe, and leaves the
    /// cluster.
    pub async fn shutdown(mut self) -> Result<(), ServerError> {
        let span = tracing::info_span!("tablet_server", server_id = %self.server_id);
        async move {
            // Requests stop now; manifest writes only after the final flushes below.
            self.gate.drain("the tablet server is shutting down");
            self.cancel.cancel();
            let mut first_error = None;
            let drained = tokio::time::timeout(SHUTDOWN_WAIT, async {
                while let Some(joined) = self.tasks.join_next().await {
                    match joined {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return Some(e),
                        Err(e) => return Some(ServerError::Task(format!("task failed: {e}"))),
                    }
                }
                None
            })
            .await;
            match drained {
                Ok(e) => first_error = e,
                Err(_) => {
                    warn!("server tasks did not stop in time; aborting them");
                    self.tasks.shutdown().await;
                }
            }
            let safe = self.membership.session_state() == SessionState::Safe;
            let tablets: Vec<_> = self
                .registry
                .list()
                .into_iter()
                .filter_map(|t| self.registry.remove(t.id()))
                .collect();
            let count = tablets.len();
            let closed = tokio::task::spawn_blocking(move || {
                for served in tablets {
                    // Without a safe session another server may own the tablet by now: write
                    // nothing more to its manifest.
                    if safe && let Err(e) = served.tablet.flush() {
                        warn!(tablet_id = %served.id(), error = %e, "final flush failed");
                    }
                    drop(served);
                }
            })
            .await;
            self.gate.stop("the tablet server is shutting down");
            if let Err(e) = closed {
                first_error.get_or_insert(ServerError::Task(format!("closing tablets: {e}")));
            }
            self.gc.take();
            // Also after a loss: closing ends the session at once instead of at its expiry.
            if tokio::time::timeout(SHUTDOWN_WAIT, leave(self.membership))
                .await
                .is_err()
            {
                warn!("leaving the cluster timed out; the session expires on its own");
            }
            info!(tablets = count, flushed = safe, "tablet server stopped");
            first_error.map_or(Ok(()), Err)
        }
        .instrument(span)
        .await
    }
}

async fn open_engine(
    config: &TabletServerConfig,
    server_id: &ServerId,
    permit: ManifestWritePermit,
) -> Result<(Arc<Engine>, GcHandle), ServerError> {
    let root = config.storage_root.clone();
    let id = server_id.clone();
    let opts = EngineOptions {
        manifest_write_permit: Some(permit),
        ..config.engine.clone()
    };
    tokio::task::spawn_blocking(move || {
        let storage: Arc<dyn StorageRoot> =
            Arc::new(
                LocalDir::open(&root).map_err(|source| ServerError::Storage {
                    path: root.clone(),
                    source,
                })?,
            );
        let log = Arc::new(CommitLog::open(
            storage.clone(),
            id,
            CommitLogOptions::default(),
        )?);
        let engine = Engine::new(storage, log, Arc::new(SystemClock), opts);
        let gc = engine.start_gc(GC_INTERVAL)?;
        Ok((engine, gc))
    })
    .await
    .map_err(|e| ServerError::Task(format!("opening the engine: {e}")))?
}

async fn leave(membership: Arc<Membership>) {
    match Arc::try_unwrap(membership) {
        Ok(m) => {
            if let Err(e) = m.leave().await {
                warn!(error = %e, "leaving the cluster failed; the session expires on its own");
            }
        }
        Err(_) => warn!("membership still shared; the session expires on its own"),
    }
}

/// Runs a tablet server until `shutdown` resolves (then stops it cleanly) or it fails on its
/// own (membership lost: an error, the process must exit).
pub async fn serve(
    config: TabletServerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let mut server = TabletServer::start(config).await?;
    let outcome = tokio::select! {
        () = shutdown => Ok(()),
        e = server.failed() => Err(e),
    };
    if let Err(e) = &outcome {
        error!(server_id = %server.server_id(), error = %e, "tablet server failed");
    }
    let stopped = server.shutdown().await;
    outcome.and(stopped)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn configs_are_validated() {
        let ok = TabletServerConfig::new(
            vec!["127.0.0.1:1".into()],
            "127.0.0.1:0".parse().unwrap(),
            PathBuf::from("/tmp/x"),
        );
        ok.validate().unwrap();
        let mut c = ok.clone();
        c.lock.clear();
        assert!(c.validate().is_err());
        let mut c = ok.clone();
        c.server_id = Some("a/b".into());
        assert!(c.validate().is_err());
        let mut c = ok.clone();
        c.server_id = Some("ts-1.a_b-C".into());
        c.validate().unwrap();
        let mut c = ok;
        c.session_ttl = Duration::from_millis(10);
        assert!(c.validate().is_err());
    }

    #[test]
    fn fresh_ids_differ_and_are_valid() {
        let a = fresh_server_id();
        let b = fresh_server_id();
        assert_ne!(a, b);
        assert!(valid_server_id(&a.0), "{a}");
    }
}
