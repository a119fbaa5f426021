//! The agitator's edge: the facts a fault needs (the active master from `/tabula/master`,
//! confirmed by asking it; the lock-service leader from a node's status), the signals it asks
//! the supervisor for, and the admin operations it runs through the client library. Every
//! call is bounded by a timeout; the choices are made in `choose`.

use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use tabula_client::{Admin, Client, TabletState};
use tabula_common::{Error, ServerId};
use tabula_lockservice::client::LockClient;
use tabula_master::election::active_master;
use tabula_proto::tabula::master::v1 as mpb;
use tokio::sync::{mpsc, oneshot, watch};

use super::super::control::{Signal, SignalError, SignalRequest};
use super::super::unix_ms;
use super::choose::{AdminOp, TabletBrief, choose_admin};
use super::log::Entry;

/// Longest wait for one fact (a lock-service read, a master's answer).
const FACT_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest wait for the tablets and servers an admin operation chooses from.
const LIST_TIMEOUT: Duration = Duration::from_secs(20);

/// The cluster as its active master sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClusterFacts {
    /// The active master's id and address.
    pub(crate) master: (String, String),
    /// Tablets not served now.
    pub(crate) unserved: u32,
}

/// The active master as `/tabula/master` names it, if that master answers `ClusterStatus` as
/// the active one (a restarted master can still be named while its dead session holds the
/// lock, and then answers as a standby), with the count of tablets not served.
pub(crate) async fn cluster_now(client: &Client) -> Option<ClusterFacts> {
    let hint = tokio::time::timeout(FACT_TIMEOUT, active_master(client.lock()))
        .await
        .ok()?
        .ok()??;
    let mut master = client.channels().master(&hint.addr).ok()?;
    let answer = tokio::time::timeout(
        FACT_TIMEOUT,
        master.cluster_status(mpb::ClusterStatusRequest {}),
    )
    .await
    .ok()?
    .ok()?
    .into_inner();
    Some(ClusterFacts {
        master: (hint.id, hint.addr),
        unserved: answer.tablets_not_serving,
    })
}

/// The lock-service leader's node id and address, as a node's status says.
pub(crate) async fn lock_leader_now(lock: &LockClient) -> Option<(u64, String)> {
    let status = tokio::time::timeout(FACT_TIMEOUT, lock.status())
        .await
        .ok()?
        .ok()?;
    status.leader
}

/// Asks the supervisor to send `signal` to process `name`; answers the pid signalled.
pub(crate) async fn request_signal(
    requests: &mpsc::Sender<SignalRequest>,
    name: &str,
    signal: Signal,
) -> Result<u32, SignalError> {
    let (reply, answer) = oneshot::channel();
    let request = SignalRequest {
        name: name.to_owned(),
        signal,
        reply,
    };
    // A supervisor that is gone is stopping.
    requests
        .send(request)
        .await
        .map_err(|_| SignalError::Stopping)?;
    answer.await.unwrap_or(Err(SignalError::Stopping))
}

/// Resolves once `stop` says true (or its sender is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// One admin fault: lists the user tablets and live servers, picks an operation with an RNG
/// seeded by `seed`, runs it within `timeout`. Answers its log entry, stamped with its start
/// (a failure, a refusal and a stop before it finished are entries too).
pub(crate) async fn admin_fault(
    client: Client,
    seed: u64,
    timeout: Duration,
    mut stop: watch::Receiver<bool>,
) -> Entry {
    let started_ms = unix_ms();
    let began = Instant::now();
    let admin = client.admin();
    let entry =
        |target: String, action: &'static str| Entry::ok(started_ms, "admin", target, None, action);
    let listing = tokio::select! {
        listing = tokio::time::timeout(LIST_TIMEOUT, list(&admin)) => listing,
        () = stopped(&mut stop) => {
            return entry("-".to_owned(), "choose").failed("the cluster stopped first");
        }
    };
    let (tablets, servers) = match listing {
        Ok(Ok(found)) => found,
        Ok(Err(e)) => return entry("-".to_owned(), "choose").failed(e.to_string()),
        Err(_) => {
            return entry("-".to_owned(), "choose")
                .failed(format!("no tablet listing within {LIST_TIMEOUT:?}"));
        }
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let Some(op) = choose_admin(&tablets, &servers, &mut rng) else {
        return entry("-".to_owned(), "choose").failed("no user tablet to act on");
    };
    let done = entry(op.target(), op.action());
    let outcome = tokio::select! {
        outcome = tokio::time::timeout(timeout, run(&admin, &op)) => outcome,
        () = stopped(&mut stop) => {
            return done.failed("the cluster stopped before it finished (outcome unknown)");
        }
    };
    let done = done.noted(format!("{} ms", began.elapsed().as_millis()));
    match outcome {
        Ok(Ok(())) => done,
        Ok(Err(e)) => done.failed(e.to_string()),
        Err(_) => done.failed(format!("no answer within {timeout:?} (outcome unknown)")),
    }
}

/// The user tablets (not root, not METADATA, not being deleted) and the live servers.
async fn list(admin: &Admin) -> Result<(Vec<TabletBrief>, Vec<ServerId>), Error> {
    let tablets = admin
        .list_tablets(None)
        .await?
        .into_iter()
        .filter(|t| t.record.table.0 >= 2 && t.record.state != TabletState::Deleting)
        .map(|t| TabletBrief {
            table: t.table,
            tablet: t.record.tablet,
            start_row: t.record.start_row,
            has_right: t.record.end_row.is_some(),
            server: t.record.server,
        })
        .collect();
    let servers = admin
        .list_servers()
        .await?
        .into_iter()
        .map(|s| ServerId(s.server_id))
        .collect();
    Ok((tablets, servers))
}

async fn run(admin: &Admin, op: &AdminOp) -> Result<(), Error> {
    match op {
        AdminOp::Split { table, row, .. } => admin.split_tablet(table, row, false).await.map(drop),
        AdminOp::Move { tablet, to, .. } => admin.move_tablet(*tablet, to).await.map(drop),
        AdminOp::Merge { table, row, .. } => admin.merge_tablets(table, row).await.map(drop),
        AdminOp::Flush { table } => admin.flush(table).await,
        AdminOp::Compact { table, major } => admin.compact(table, *major).await,
    }
}
