//! `tabula local`: a whole cluster on loopback from one command. Every role runs as a child
//! process of this binary (lock nodes, then tablet servers, then masters, then one Cloud
//! Bigtable gateway unless `--no-gateway`), with all data under `--dir` and each child's output
//! in `DIR/logs/<name>.log`. Once the cluster can create a table (and the gateway listens),
//! one line `cluster ready: --lock ADDRS` goes to stdout, followed by
//! `BIGTABLE_EMULATOR_HOST=ADDR` when there is a gateway (progress goes to stderr);
//! `DIR/cluster.json` lists every process. Ctrl-C or SIGTERM stops the children in order; a
//! child that exits unexpectedly is reported and restarted (unless `--no-restart`). Started
//! again on the same directory, the lock cell rejoins and every table and row is back.
//!
//! With `--agitate` an agitator (`agitate/`) injects faults once the cluster is ready, through
//! the supervisor (`control`), and is stopped before the children are.
//!
//! Reading order: `plan` (pure: ports, ids, arguments), `procs` (spawn, watch, signal, stop),
//! `ready` (readiness polling), `cluster_file`, `control` and `agitate`, then [`run`] here.

mod agitate;
mod cluster_file;
mod control;
mod plan;
mod procs;
mod ready;

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Args;

use crate::exit::UsageError;
use crate::signal::StopSignals;
use agitate::{AgitateConfig, AgitateSpec, Agitation, Leases};
use control::SignalRequest;
use plan::{GatewayFlag, Role, Shape, Spec};
use procs::Proc;
use ready::{Readiness, Stage};

/// How long the cluster may take to become ready before `tabula local` gives up.
const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// How often children are watched and readiness is checked.
const TICK: Duration = Duration::from_millis(250);
/// How long a process the agitator killed stays down.
const AGITATOR_RESTART_AFTER: Duration = Duration::from_secs(3);
/// How much longer than its session TTL the agitator keeps a tablet server stopped.
const AGITATOR_PAUSE_PAST_TTL: Duration = Duration::from_secs(5);
/// The session TTL of the masters (`tabula master serve`'s default, which `plan` keeps).
const MASTER_SESSION_TTL: Duration = tabula_master::node::DEFAULT_SESSION_TTL;

/// `tabula local`.
#[derive(Debug, Args)]
pub(crate) struct LocalArgs {
    /// Directory holding every process's data and logs, and cluster.json.
    #[arg(long, default_value = "./tabula-data")]
    pub(crate) dir: PathBuf,
    /// Lock-service nodes: an odd number (1, 3, 5). Default 3; a used directory keeps its own.
    #[arg(long)]
    pub(crate) lock_nodes: Option<u32>,
    /// Masters (one is active, the others stand by).
    #[arg(long, default_value_t = 2)]
    pub(crate) masters: u32,
    /// Tablet servers.
    #[arg(long, default_value_t = 3)]
    pub(crate) tablet_servers: u32,
    /// First port: lock nodes on BASE.., tablet servers on BASE+10.. (metrics BASE+20..),
    /// masters on BASE+30... Default 7101; a used directory keeps its own.
    #[arg(long)]
    pub(crate) base_port: Option<u16>,
    /// Port of the Cloud Bigtable gateway (BIGTABLE_EMULATOR_HOST=127.0.0.1:PORT). Default
    /// 8086 with the default base port, else BASE+39 (the last port of the cluster's block).
    #[arg(long, value_name = "PORT", conflicts_with = "no_gateway")]
    pub(crate) gateway_port: Option<u16>,
    /// Run no Cloud Bigtable gateway.
    #[arg(long)]
    pub(crate) no_gateway: bool,
    /// Report a child that exits unexpectedly but do not restart it.
    #[arg(long)]
    pub(crate) no_restart: bool,
    /// Inject faults once the cluster is ready: SPEC is
    /// `master=60s,tablet=45s,lock=90s,pause=120s,admin=20s` or any subset of it (bare
    /// --agitate: all of them, at those periods). master/tablet/lock SIGKILL the active
    /// master, a random tablet server, the lock-service leader (restarted after 3 s); pause
    /// SIGSTOPs a tablet server past its session TTL; admin splits, moves, merges, flushes or
    /// compacts a user tablet. Every fault is a JSON line in DIR/agitator.jsonl.
    #[arg(long, value_name = "SPEC", num_args = 0..=1, default_missing_value = "")]
    pub(crate) agitate: Option<String>,
    /// Seed of the agitator's random choices, to replay a run (default: random, printed).
    #[arg(long, value_name = "N", requires = "agitate")]
    pub(crate) agitate_seed: Option<u64>,
}

/// Runs `tabula local` until Ctrl-C or SIGTERM.
pub(crate) fn run(args: LocalArgs) -> anyhow::Result<()> {
    let agitate = match &args.agitate {
        Some(text) => Some(AgitateConfig {
            spec: AgitateSpec::parse(text).map_err(UsageError)?,
            seed: args.agitate_seed.unwrap_or_else(rand::random),
            restart_after: AGITATOR_RESTART_AFTER,
            pause_for: plan::TABLET_SESSION_TTL + AGITATOR_PAUSE_PAST_TTL,
            leases: Leases {
                session_ttl: plan::TABLET_SESSION_TTL.max(MASTER_SESSION_TTL),
                leader_grace: tabula_lockservice::lease::LeaseOptions::default().grace,
            },
        }),
        None => None,
    };
    let dir = args.dir.clone();
    let saved = cluster_file::saved_cell(&dir)?;
    let gateway = match (args.no_gateway, args.gateway_port) {
        (true, _) => GatewayFlag::Off,
        (false, Some(port)) => GatewayFlag::Port(port),
        (false, None) => GatewayFlag::Default,
    };
    let shape = plan::resolve(
        args.base_port,
        args.lock_nodes,
        args.tablet_servers,
        args.masters,
        gateway,
        saved,
    )
    .map_err(UsageError)?;
    for sub in ["logs", "storage"] {
        let path = dir.join(sub);
        std::fs::create_dir_all(&path).with_context(|| format!("create {}", path.display()))?;
    }
    let dir = dir
        .canonicalize()
        .with_context(|| format!("resolve {}", dir.display()))?;
    let run_unix_ms = unix_ms();
    let specs = plan::processes(&dir, &shape, run_unix_ms);
    check_ports_free(&specs)?;
    let exe = std::env::current_exe().context("find the tabula binary")?;
    // One thread: children are started from the main thread, which lives as long as this
    // process (PR_SET_PDEATHSIG is tied to the forking thread).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    let local = Local {
        exe,
        dir,
        shape,
        run_unix_ms,
        restart: !args.no_restart,
        agitate,
    };
    runtime.block_on(local.supervise(specs))
}

fn unix_ms() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

/// Fails, naming the port, if any process's port is taken (another `tabula local`?).
fn check_ports_free(specs: &[Spec]) -> anyhow::Result<()> {
    for spec in specs {
        let remedy = match spec.role {
            Role::Gateway => "pick another --gateway-port, or --no-gateway",
            Role::Lock | Role::Tablet | Role::Master => "pick another --base-port for a new --dir",
        };
        for addr in std::iter::once(&spec.addr).chain(spec.metrics.as_ref()) {
            TcpListener::bind(addr.as_str()).with_context(|| {
                format!(
                    "{} needs {addr}, which is not free (another tabula local? {remedy})",
                    spec.name
                )
            })?;
        }
    }
    Ok(())
}

/// A running `tabula local`.
struct Local {
    exe: PathBuf,
    dir: PathBuf,
    shape: Shape,
    run_unix_ms: u64,
    restart: bool,
    agitate: Option<AgitateConfig>,
}

/// The agitator's next signal request, if it runs; pending otherwise.
async fn next_request(agitation: &mut Option<Agitation>) -> SignalRequest {
    match agitation {
        Some(a) => a.next_request().await,
        None => std::future::pending().await,
    }
}

/// Answers the agitator's request (refusing every fault once `stopping`).
fn serve(procs: &mut [Proc], request: SignalRequest, stopping: bool) {
    let answer = procs::apply(procs, &request.name, request.signal, stopping);
    // An agitator that stopped waiting no longer needs the answer.
    let _ = request.reply.send(answer);
}

impl Local {
    /// Starts `specs`, waits for readiness, watches the children until a stop signal, then
    /// stops them.
    async fn supervise(&self, specs: Vec<Spec>) -> anyhow::Result<()> {
        let mut signals = StopSignals::install()?;
        let mut procs: Vec<Proc> = Vec::with_capacity(specs.len());
        for spec in specs {
            match procs::spawn(&self.exe, spec, 0) {
                Ok(p) => procs.push(p),
                Err(e) => {
                    procs::kill_all(&mut procs);
                    return Err(e);
                }
            }
        }
        let mut agitation = None;
        let outcome = self
            .watch_until_stop(&mut procs, &mut signals, &mut agitation)
            .await;
        // The agitator ends before the children are stopped: no fault after the stop begins.
        if let Some(agitation) = agitation {
            agitation
                .stop(|request| serve(&mut procs, request, true))
                .await;
        }
        let clean = procs::stop_all(&mut procs).await;
        outcome?;
        if !clean {
            eprintln!(
                "some processes had to be killed; their logs are in {}",
                self.logs()
            );
        }
        Ok(())
    }

    fn logs(&self) -> String {
        self.dir.join("logs").display().to_string()
    }

    /// Watches the children and readiness until a stop signal (Ok) or a readiness timeout;
    /// once ready, starts the agitator (if asked for) into `agitation` and serves it.
    async fn watch_until_stop(
        &self,
        procs: &mut [Proc],
        signals: &mut StopSignals,
        agitation: &mut Option<Agitation>,
    ) -> anyhow::Result<()> {
        let lock_addrs = plan::lock_addrs(&self.shape);
        let gateway = plan::gateway_addr(&self.shape);
        let readiness = Readiness::new(&lock_addrs, gateway.clone())?;
        self.write_file(procs, false)?;
        eprintln!(
            "started {} processes; data and logs in {}",
            procs.len(),
            self.dir.display()
        );
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut announced: Option<Stage> = None;
        let mut ready = false;
        let mut tick = tokio::time::interval(TICK);
        let respawn = |old: &Spec, start: u32| self.respawn_spec(old, start);
        loop {
            tokio::select! {
                which = signals.recv() => {
                    eprintln!("{which}: stopping the cluster");
                    return Ok(());
                }
                request = next_request(agitation) => {
                    serve(procs, request, false);
                    continue;
                }
                _ = tick.tick() => {}
            }
            if procs::watch(&self.exe, procs, &respawn, self.restart) {
                self.write_file(procs, ready)?;
            }
            if let Some(a) = agitation.as_ref() {
                a.publish(procs::views(procs));
            }
            if ready {
                continue;
            }
            let stage = readiness.check().await;
            if stage == Stage::Ready {
                ready = true;
                self.write_file(procs, true)?;
                println!("cluster ready: --lock {}", lock_addrs.join(","));
                if let Some(addr) = &gateway {
                    println!("BIGTABLE_EMULATOR_HOST={addr}");
                }
                if let Some(config) = &self.agitate {
                    let views = procs::views(procs);
                    let started =
                        Agitation::start(config.clone(), &self.dir, &lock_addrs, views).await?;
                    *agitation = Some(started);
                }
                continue;
            }
            if announced.is_none_or(|a| stage > a) {
                eprintln!("{}", stage.waiting_line());
                announced = Some(stage);
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "the cluster was not ready within {READY_TIMEOUT:?} ({}); see the logs in {}",
                    stage.waiting_line(),
                    self.logs()
                );
            }
        }
    }

    /// The arguments of a process's next start: a tablet server or a master gets a fresh id,
    /// a lock node comes back as itself on its data directory, the gateway (no state) as
    /// itself.
    fn respawn_spec(&self, old: &Spec, start: u32) -> Spec {
        match old.role {
            Role::Tablet => {
                plan::tablet_server(&self.dir, &self.shape, old.n, self.run_unix_ms, start)
            }
            Role::Master => plan::master(&self.dir, &self.shape, old.n, self.run_unix_ms, start),
            Role::Lock | Role::Gateway => old.clone(),
        }
    }

    fn write_file(&self, procs: &[Proc], ready: bool) -> anyhow::Result<()> {
        let entries: Vec<(&Spec, Option<u32>)> = procs.iter().map(|p| (&p.spec, p.pid())).collect();
        let doc = cluster_file::document(&self.shape, &entries, ready);
        cluster_file::write(&self.dir, &doc)
    }
}
