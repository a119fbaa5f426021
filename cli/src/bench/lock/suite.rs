//! The whole run against one cell: start it, wait for a leader, then per round the fdatasync
//! baseline, `Set` from one client and from `clients`, KeepAlives and their `Status` baseline
//! (each against the leader of the moment); then the failovers, which leave the cell whole
//! again after every kill. The cell is stopped when the run ends, however it ends.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use super::baseline;
use super::cell::Cell;
use super::failover;
use super::report::{Report, Throughput};
use super::rpc::{self, Leader};
use super::workloads::{self, AskStatus, KeepSessionAlive, SetFile};
use crate::bench::stats::median;

/// Nodes in the cell.
pub(super) const NODES: u64 = 3;
/// How long the fdatasync baseline loop runs.
const BASELINE_DURATION: Duration = Duration::from_secs(2);
/// How long a fresh cell may take to elect its first leader.
const FIRST_LEADER_DEADLINE: Duration = Duration::from_secs(30);
/// How long a leader may take to emerge between phases.
const LEADER_DEADLINE: Duration = Duration::from_secs(10);

/// What to run, and where.
#[derive(Debug, Clone)]
pub(super) struct SuiteConfig {
    /// How long each timed phase runs.
    pub(super) duration: Duration,
    /// Concurrent clients of the concurrent phases.
    pub(super) clients: usize,
    /// Times to run the timed phases; the report holds medians.
    pub(super) rounds: usize,
    /// Leader kills after the timed phases.
    pub(super) kills: usize,
    /// Where the nodes' data directories and logs go; must exist.
    pub(super) root: PathBuf,
    pub(super) filesystem: String,
    /// Print progress on stderr.
    pub(super) progress: bool,
}

/// Every timed number of one round.
struct Round {
    fdatasyncs_per_sec: f64,
    set_single: Throughput,
    set_concurrent: Throughput,
    keepalive: Throughput,
    status: Throughput,
}

/// Starts a cell under `config.root`, runs every phase, and stops the cell.
pub(super) async fn run(config: &SuiteConfig) -> anyhow::Result<Report> {
    let mut cell = Cell::start(&config.root, NODES)?;
    let leader = leader(&mut cell, FIRST_LEADER_DEADLINE).await?;
    if config.progress {
        eprintln!(
            "cell up: node {} leads (term {}) at {}",
            leader.id, leader.term, leader.addr
        );
    }
    let mut rounds = Vec::new();
    for round in 1..=config.rounds {
        let tag = if config.rounds > 1 {
            format!(" (round {round}/{})", config.rounds)
        } else {
            String::new()
        };
        rounds.push(run_round(config, &mut cell, &tag).await?);
    }
    let failovers = failover::measure(&mut cell, config.kills, config.progress).await?;
    cell.check_running()?;
    drop(cell);

    let throughput = |f: &dyn Fn(&Round) -> &Throughput| {
        let each: Vec<Throughput> = rounds.iter().map(|r| f(r).clone()).collect();
        Throughput::median_of(&each).context("no round ran")
    };
    Ok(Report {
        nodes: NODES,
        duration_secs: config.duration.as_secs(),
        rounds: config.rounds,
        dir: config.root.display().to_string(),
        filesystem: config.filesystem.clone(),
        fdatasyncs_per_sec: median(rounds.iter().map(|r| r.fdatasyncs_per_sec).collect()),
        set_single: throughput(&|r| &r.set_single)?,
        set_concurrent: throughput(&|r| &r.set_concurrent)?,
        keepalive: throughput(&|r| &r.keepalive)?,
        status: throughput(&|r| &r.status)?,
        failovers,
        notes: notes(config),
    })
}

async fn run_round(config: &SuiteConfig, cell: &mut Cell, tag: &str) -> anyhow::Result<Round> {
    let root = config.root.clone();
    let fdatasyncs_per_sec =
        tokio::task::spawn_blocking(move || baseline::fdatasyncs_per_sec(&root, BASELINE_DURATION))
            .await
            .context("the fdatasync loop panicked")??;
    if config.progress {
        eprintln!("fdatasync{tag}: {fdatasyncs_per_sec:.0} per second");
    }
    let clients = config.clients;
    let set_single = phase(config, cell, &format!("set/1{tag}"), 1, SetFile::create).await?;
    let set_concurrent = phase(
        config,
        cell,
        &format!("set/{clients}{tag}"),
        clients,
        SetFile::create,
    )
    .await?;

    let label = format!("keepalive/{clients}{tag}");
    let leader = leader(cell, LEADER_DEADLINE).await?;
    let mut sessions = Vec::new();
    for _ in 0..clients {
        sessions.push(KeepSessionAlive::open(leader.addr).await?);
    }
    let (measured, sessions) =
        workloads::drive(&label, sessions, config.duration, config.progress).await?;
    let keepalive = Throughput::of(clients, &measured);
    // Closed now, so that their expiry cannot disturb a later phase.
    for session in sessions {
        session.close().await?;
    }

    let status = phase(
        config,
        cell,
        &format!("status/{clients}{tag}"),
        clients,
        |l, _| std::future::ready(AskStatus::new(l)),
    )
    .await?;
    Ok(Round {
        fdatasyncs_per_sec,
        set_single,
        set_concurrent,
        keepalive,
        status,
    })
}

/// Builds `clients` ops against the current leader with `make`, then drives them.
async fn phase<O, F, Fut>(
    config: &SuiteConfig,
    cell: &mut Cell,
    label: &str,
    clients: usize,
    make: F,
) -> anyhow::Result<Throughput>
where
    O: workloads::Op,
    F: Fn(std::net::SocketAddr, usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<O>>,
{
    let leader = leader(cell, LEADER_DEADLINE).await?;
    let mut ops = Vec::with_capacity(clients);
    for n in 0..clients {
        ops.push(
            make(leader.addr, n)
                .await
                .with_context(|| label.to_owned())?,
        );
    }
    let (measured, _) = workloads::drive(label, ops, config.duration, config.progress).await?;
    Ok(Throughput::of(clients, &measured))
}

/// The leader, after checking that every node still runs.
async fn leader(cell: &mut Cell, deadline: Duration) -> anyhow::Result<Leader> {
    cell.check_running()?;
    match rpc::wait_for_leader(&cell.members(), deadline).await {
        Ok(leader) => Ok(leader),
        // A node that died explains more than the missing leader.
        Err(e) => Err(cell.check_running().err().unwrap_or(e)),
    }
}

/// How the cell and the loads were set up, printed below the tables.
fn notes(config: &SuiteConfig) -> Vec<String> {
    vec![
        format!(
            "cell: {NODES} `tabula lock serve` processes on 127.0.0.1, default Raft tuning \
             (election timeout 600-1200 ms), data directories under {}",
            config.root.display()
        ),
        format!(
            "fdatasync: 1 thread appending {} bytes + fdatasync for {} s on the cell's file \
             system; a Raft write waits for fdatasyncs on the leader and a follower",
            baseline::RECORD_BYTES,
            BASELINE_DURATION.as_secs()
        ),
        format!(
            "set: Set of a {}-byte file (one per client), each with a fresh WriteId, sent to \
             the leader; every client has its own connection",
            workloads::FILE_BYTES
        ),
        "keepalive: KeepAlive of the client's own session (TTL 10 s); status: the same loop \
         calling Status on the leader, the raw-RPC baseline"
            .to_owned(),
        "failover: SIGKILL the leader, then a Set (300 ms timeout, 10 ms pause) through every \
         node until one succeeds; the killed node restarts and catches up before the next kill"
            .to_owned(),
    ]
}
