//! Leader failover, `kills` times: find the leader, SIGKILL it, and time how long until a
//! `Set` succeeds through any node; then restart the killed node on its port and data
//! directory and wait until it has applied everything the new leader has, so every kill starts
//! from a whole cell.
//!
//! Every node, the dead one included (a client does not know which one died), gets its own
//! retry loop: one `Set` with a short timeout, a short pause, again. The first loop to succeed
//! ends the measurement. All attempts of one measurement carry the same `WriteId`, as a real
//! client's retries would, so the write is applied once. Meanwhile the survivors' `Status` is
//! polled, to tell the election (a node says it leads a newer term) from the rest of the wait.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tabula_common::Error;
use tabula_proto::tabula::lock::v1::SetRequest;
use tokio::task::JoinSet;

use super::cell::Cell;
use super::rpc::{self, WriteIds};
use super::workloads::{BENCH_DIR, FILE_BYTES};

/// How long one `Set` attempt may take before the next.
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(300);
/// Pause between two attempts on one node.
const RETRY_PAUSE: Duration = Duration::from_millis(10);
/// Give up on a failover after this long.
const FAILOVER_DEADLINE: Duration = Duration::from_secs(60);
/// Give up waiting for a leader, or for a restarted node to catch up, after this long.
const WAIT_DEADLINE: Duration = Duration::from_secs(60);

/// One kill and what followed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Failover {
    /// The node killed, and its term as leader.
    pub(super) killed: u64,
    pub(super) old_term: u64,
    /// The node the first successful `Set` went through.
    pub(super) new_leader: u64,
    /// From the SIGKILL to the first successful `Set`.
    pub(super) elapsed: Duration,
    /// From the SIGKILL to a survivor saying it leads a newer term, if seen before the `Set`
    /// succeeded.
    pub(super) elected: Option<Duration>,
    /// `Set` attempts made, over every node.
    pub(super) attempts: u64,
    /// From the restart to the restarted node having caught up.
    pub(super) catch_up: Duration,
}

/// Kills the leader `kills` times, measuring each failover; prints one line per kill if
/// `progress`.
pub(super) async fn measure(
    cell: &mut Cell,
    kills: usize,
    progress: bool,
) -> anyhow::Result<Vec<Failover>> {
    let members = cell.members();
    let path = format!("{BENCH_DIR}/failover");
    let contents = vec![b'f'; FILE_BYTES];
    let leader = rpc::wait_for_leader(&members, WAIT_DEADLINE).await?;
    let mut ids = WriteIds::new();
    rpc::ensure_file(&mut rpc::client(leader.addr)?, &mut ids, &path, &contents).await?;

    let mut out = Vec::new();
    for kill in 1..=kills {
        cell.check_running()?;
        let leader = rpc::wait_for_leader(&members, WAIT_DEADLINE).await?;
        let request = SetRequest {
            write_id: Some(ids.next_id()),
            path: path.clone(),
            contents: contents.clone(),
            if_generation: None,
        };
        cell.kill(leader.id)?;
        let killed_at = Instant::now();
        let set = first_set(&members, request);
        let election = watch_election(&members, leader.id, leader.term, killed_at);
        tokio::pin!(set, election);
        let mut elected = None;
        let outcome = loop {
            tokio::select! {
                outcome = &mut set => break outcome,
                after = &mut election, if elected.is_none() => elected = Some(after),
            }
        };
        let elapsed = killed_at.elapsed();
        let (new_leader, attempts) =
            outcome.with_context(|| format!("kill {kill}: after node {} died", leader.id))?;

        cell.restart(leader.id)?;
        let restarted_at = Instant::now();
        let target = rpc::status(cell.addr(new_leader)?).await?.applied_index;
        rpc::wait_applied(leader.addr, target, WAIT_DEADLINE)
            .await
            .with_context(|| {
                format!(
                    "kill {kill}: restarted node {} (log {})",
                    leader.id,
                    cell.log_path(leader.id)
                        .map_or_else(|_| "?".to_owned(), |p| p.display().to_string())
                )
            })?;
        let failover = Failover {
            killed: leader.id,
            old_term: leader.term,
            new_leader,
            elapsed,
            elected,
            attempts,
            catch_up: restarted_at.elapsed(),
        };
        if progress {
            eprintln!(
                "failover {kill}/{kills}: killed node {} (leader of term {}), a new leader after \
                 {} ms, a Set succeeded through node {} after {} ms ({} attempts); node {} caught \
                 up {} ms after its restart",
                failover.killed,
                failover.old_term,
                failover
                    .elected
                    .map_or_else(|| "?".to_owned(), |d| d.as_millis().to_string()),
                failover.new_leader,
                failover.elapsed.as_millis(),
                failover.attempts,
                failover.killed,
                failover.catch_up.as_millis()
            );
        }
        out.push(failover);
    }
    Ok(out)
}

/// Polls every member but `killed` until one says it leads a term after `old_term`; returns the
/// time since `killed_at`. Never returns if none does (the caller stops polling).
async fn watch_election(
    members: &[(u64, SocketAddr)],
    killed: u64,
    old_term: u64,
    killed_at: Instant,
) -> Duration {
    loop {
        for &(id, addr) in members.iter().filter(|(id, _)| *id != killed) {
            if let Ok(s) = rpc::status(addr).await
                && s.node_id == id
                && s.leader_id == id
                && s.term > old_term
            {
                return killed_at.elapsed();
            }
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

/// Sends `request` to every member in its own retry loop until one succeeds; returns that
/// member's id and the attempts made by all loops until then.
async fn first_set(
    members: &[(u64, SocketAddr)],
    request: SetRequest,
) -> anyhow::Result<(u64, u64)> {
    let deadline = Instant::now() + FAILOVER_DEADLINE;
    let attempts = Arc::new(AtomicU64::new(0));
    let mut loops = JoinSet::new();
    for &(id, addr) in members {
        let request = request.clone();
        let attempts = attempts.clone();
        loops.spawn(async move { (id, retry_set(addr, request, deadline, &attempts).await) });
    }
    let mut failures = Vec::new();
    while let Some(joined) = loops.join_next().await {
        match joined.context("a retry loop failed")? {
            // Dropping `loops` stops the other loops.
            (id, Ok(())) => return Ok((id, attempts.load(Ordering::Relaxed))),
            (id, Err(e)) => failures.push(format!("node {id}: {e}")),
        }
    }
    bail!(
        "no Set succeeded within {:.0} s ({})",
        FAILOVER_DEADLINE.as_secs_f64(),
        failures.join("; ")
    )
}

/// Attempts `request` on one node every `RETRY_PAUSE` until it succeeds or `deadline` passes,
/// counting attempts in `attempts`; the error is the last attempt's.
async fn retry_set(
    addr: SocketAddr,
    request: SetRequest,
    deadline: Instant,
    attempts: &AtomicU64,
) -> Result<(), String> {
    let mut client = rpc::client(addr).map_err(|e| format!("{e:#}"))?;
    let mut last = String::from("no attempt");
    while Instant::now() < deadline {
        attempts.fetch_add(1, Ordering::Relaxed);
        match tokio::time::timeout(ATTEMPT_TIMEOUT, client.set(request.clone())).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(status)) => last = Error::from(status).to_string(),
            Err(_) => last = format!("no answer within {ATTEMPT_TIMEOUT:?}"),
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
    Err(last)
}
