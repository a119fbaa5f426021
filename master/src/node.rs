//! One master process: the `MasterService` on its address, and the campaign loop — announce,
//! wait for the master lock, bootstrap what is missing, lead in rounds until the session stops
//! being safe, then start over with a fresh session (and so a new, higher epoch when it wins
//! again). `tabula master serve` runs one.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tabula_client::Channels;
use tabula_client::meta::MetaTable;
use tabula_common::{Epoch, Error};
use tabula_lockservice::client::{ClientOptions, LockClient};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::active::Active;
use crate::bootstrap::{ensure_cluster, ensure_root};
use crate::election::{self, MasterIdentity};
use crate::execute::Executor;
use crate::metrics::MasterMetrics;
use crate::plan::BalancerOptions;
use crate::service::{Leader, MasterApi};
use crate::tables::Catalog;

/// The default session lease.
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(10);
/// The default pause between rounds.
pub const DEFAULT_ROUND_INTERVAL: Duration = Duration::from_millis(500);
/// How long to wait before campaigning again after a failure.
const RETRY_PAUSE: Duration = Duration::from_millis(500);
/// How long `shutdown` waits for the tasks.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

/// A master's configuration.
#[derive(Debug, Clone)]
pub struct MasterConfig {
    /// The lock-service cell: `host:port` of its nodes.
    pub lock: Vec<String>,
    /// Where `MasterService` listens (and the address announced to others).
    pub listen: SocketAddr,
    /// The storage root shared by the cluster (for file garbage collection).
    pub storage_root: PathBuf,
    /// The master id; `None` makes a fresh one.
    pub master_id: Option<String>,
    /// The lock-service session lease.
    pub session_ttl: Duration,
    /// The pause between rounds.
    pub round_interval: Duration,
    /// Balancer settings.
    pub balancer: BalancerOptions,
    /// Where `/metrics` and `/healthz` are served (plain HTTP), if anywhere.
    pub metrics: Option<SocketAddr>,
}

impl MasterConfig {
    /// A configuration with defaults.
    pub fn new(lock: Vec<String>, listen: SocketAddr, storage_root: PathBuf) -> MasterConfig {
        MasterConfig {
            lock,
            listen,
            storage_root,
            master_id: None,
            session_ttl: DEFAULT_SESSION_TTL,
            round_interval: DEFAULT_ROUND_INTERVAL,
            balancer: BalancerOptions::default(),
            metrics: None,
        }
    }

    fn validate(&self) -> Result<(), Error> {
        if self.lock.is_empty() {
            return Err(Error::invalid_argument("no lock-service address (--lock)"));
        }
        if self.session_ttl < Duration::from_millis(300) {
            return Err(Error::invalid_argument(format!(
                "session ttl {:?} is too short (at least 300 ms)",
                self.session_ttl
            )));
        }
        Ok(())
    }
}

/// A fresh master id: `m-<unix milliseconds>-<8 random hex digits>`.
pub fn fresh_master_id() -> String {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("m-{millis}-{:08x}", rand::random::<u32>())
}

/// A running master.
#[derive(Debug)]
pub struct Master {
    addr: SocketAddr,
    id: String,
    leader: Arc<Leader>,
    metrics_addr: Option<SocketAddr>,
    cancel: CancellationToken,
    tasks: JoinSet<()>,
}

impl Master {
    /// Binds, starts serving and starts campaigning.
    pub async fn start(config: MasterConfig) -> Result<Master, Error> {
        config.validate()?;
        let listener = TcpListener::bind(config.listen).await.map_err(|e| {
            Error::new(
                tabula_common::Code::Unavailable,
                format!("cannot listen on {}: {e}", config.listen),
            )
        })?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::internal(format!("the bound address: {e}")))?;
        let id = config.master_id.clone().unwrap_or_else(fresh_master_id);
        let lock = LockClient::new(
            &config.lock,
            ClientOptions {
                session_ttl: config.session_ttl,
                ..ClientOptions::default()
            },
        )?;
        let metrics_listener = match config.metrics {
            Some(addr) => Some(crate::metrics::bind(addr).await.map_err(|e| {
                Error::new(
                    tabula_common::Code::Unavailable,
                    format!("cannot listen on {addr} for metrics: {e}"),
                )
            })?),
            None => None,
        };
        election::prepare(&lock).await?;
        let leader = Arc::new(Leader::default());
        let metrics = Arc::new(MasterMetrics::default());
        let cancel = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let metrics_addr = metrics_listener.as_ref().map(|(_, a)| *a);
        if let Some((listener, _)) = metrics_listener {
            let router = crate::metrics::router(metrics.clone(), leader.clone());
            let stop = cancel.clone();
            tasks.spawn(async move {
                if let Err(e) = crate::metrics::serve(listener, router, stop).await {
                    error!(error = %e, "the metrics endpoint stopped");
                }
            });
        }
        let api = MasterApi::new(leader.clone(), lock.clone(), id.clone()).into_server();
        let stop = cancel.clone();
        tasks.spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            let served = tonic::transport::Server::builder()
                .add_service(api)
                .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
                .await;
            if let Err(e) = served {
                error!(error = %e, "the master service stopped");
            }
        });
        let me = MasterIdentity {
            id: id.clone(),
            addr: addr.to_string(),
        };
        tasks.spawn(campaign_loop(
            config,
            lock,
            me,
            leader.clone(),
            metrics,
            cancel.clone(),
        ));
        info!(master = %id, %addr, "master started");
        Ok(Master {
            addr,
            id,
            leader,
            metrics_addr,
            cancel,
            tasks,
        })
    }

    /// The address `MasterService` listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where `/metrics` and `/healthz` are served, if anywhere.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The master id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The master epoch, while this master leads safely.
    pub fn epoch(&self) -> Option<Epoch> {
        self.leader
            .get()
            .filter(|a| a.exec().leadership.is_safe())
            .map(|a| a.exec().leadership.epoch())
    }

    /// The active part, while this master leads.
    pub fn active(&self) -> Option<Arc<Active>> {
        self.leader.get()
    }

    /// Stops campaigning and serving; a leading master's session is closed so a standby takes
    /// over at once.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        let leader = self.leader.get();
        self.leader.set(None);
        drop(leader);
        let drained = tokio::time::timeout(SHUTDOWN_WAIT, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            warn!("master tasks did not stop in time; aborting them");
            self.tasks.abort_all();
        }
        info!(master = %self.id, "master stopped");
    }
}

async fn campaign_loop(
    config: MasterConfig,
    lock: LockClient,
    me: MasterIdentity,
    leader: Arc<Leader>,
    metrics: Arc<MasterMetrics>,
    cancel: CancellationToken,
) {
    let channels = Channels::default();
    while !cancel.is_cancelled() {
        match lead_once(&config, &lock, &me, &leader, &channels, &metrics, &cancel).await {
            Ok(()) => info!(master = %me.id, "no longer the active master"),
            Err(e) => warn!(master = %me.id, error = %e, "campaign failed"),
        }
        leader.set(None);
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(RETRY_PAUSE) => {}
        }
    }
}

/// One session's campaign and leadership.
async fn lead_once(
    config: &MasterConfig,
    lock: &LockClient,
    me: &MasterIdentity,
    leader: &Leader,
    channels: &Channels,
    metrics: &Arc<MasterMetrics>,
    cancel: &CancellationToken,
) -> Result<(), Error> {
    let session = Arc::new(lock.open_session().await?);
    election::announce(&session, me).await?;
    let result = async {
        let leadership = election::campaign(lock, session.clone(), me, cancel).await?;
        let cluster_id = ensure_cluster(lock).await?;
        ensure_root(lock).await?;
        let catalog = Catalog::new(lock.clone());
        catalog.prepare().await?;
        let storage = tabula_common::LocalDir::open(&config.storage_root).map_err(|e| {
            Error::new(
                tabula_common::Code::Unavailable,
                format!(
                    "cannot open the storage root {}: {e}",
                    config.storage_root.display()
                ),
            )
        })?;
        let exec = Executor {
            lock: lock.clone(),
            meta: MetaTable::new(lock.clone(), channels.clone()),
            channels: channels.clone(),
            leadership,
            storage: Arc::new(storage),
        };
        let active = Arc::new(Active::new(
            exec,
            catalog,
            config.balancer,
            config.round_interval,
            cluster_id,
            metrics.clone(),
        ));
        metrics.became_active();
        leader.set(Some(active.clone()));
        active.run(cancel.clone()).await;
        Ok(())
    }
    .await;
    leader.set(None);
    // Give up the session: its lock and announcement go with it.
    if let Ok(session) = Arc::try_unwrap(session)
        && let Err(e) = session.close().await
    {
        warn!(error = %e, "closing the master's session");
    }
    result
}

/// Runs a master until `shutdown` resolves.
pub async fn serve(
    config: MasterConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Error> {
    let master = Master::start(config).await?;
    shutdown.await;
    master.shutdown().await;
    Ok(())
}
