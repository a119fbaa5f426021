//! `tabula local`: a whole cluster on loopback from one command. Every role runs as a child
//! process of this binary (lock nodes, then tablet servers, then masters), with all data under
//! `--dir` and each child's output in `DIR/logs/<name>.log`. Once the cluster can create a
//! table, one line `cluster ready: --lock ADDRS` goes to stdout (progress goes to stderr);
//! `DIR/cluster.json` lists every process. Ctrl-C or SIGTERM stops the children in order; a
//! child that exits unexpectedly is reported and restarted (unless `--no-restart`). Started
//! again on the same directory, the lock cell rejoins and every table and row is back.
//!
//! Reading order: `plan` (pure: ports, ids, arguments), `procs` (spawn, watch, stop),
//! `ready` (readiness polling), `cluster_file`, then [`run`] here.

mod cluster_file;
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
use plan::{Role, Shape, Spec};
use procs::{Proc, Respawn};
use ready::{Readiness, Stage};

/// How long the cluster may take to become ready before `tabula local` gives up.
const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// How often children are watched and readiness is checked.
const TICK: Duration = Duration::from_millis(250);

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
    /// Report a child that exits unexpectedly but do not restart it.
    #[arg(long)]
    pub(crate) no_restart: bool,
}

/// Runs `tabula local` until Ctrl-C or SIGTERM.
pub(crate) fn run(args: LocalArgs) -> anyhow::Result<()> {
    let dir = args.dir.clone();
    let saved = cluster_file::saved_cell(&dir)?;
    let shape = plan::resolve(
        args.base_port,
        args.lock_nodes,
        args.tablet_servers,
        args.masters,
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
        for addr in std::iter::once(&spec.addr).chain(spec.metrics.as_ref()) {
            TcpListener::bind(addr.as_str()).with_context(|| {
                format!(
                    "{} needs {addr}, which is not free (another tabula local? pick another \
                     --base-port for a new --dir)",
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
        let outcome = self.watch_until_stop(&mut procs, &mut signals).await;
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

    /// Watches the children and readiness until a stop signal (Ok) or a readiness timeout.
    async fn watch_until_stop(
        &self,
        procs: &mut [Proc],
        signals: &mut StopSignals,
    ) -> anyhow::Result<()> {
        let lock_addrs = plan::lock_addrs(&self.shape);
        let readiness = Readiness::new(&lock_addrs)?;
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
        let restart = |old: &Spec, start: u32| self.respawn_spec(old, start);
        loop {
            tokio::select! {
                which = signals.recv() => {
                    eprintln!("{which}: stopping the cluster");
                    return Ok(());
                }
                _ = tick.tick() => {}
            }
            let restart: Option<Respawn<'_>> = self.restart.then_some(&restart);
            if procs::watch(&self.exe, procs, restart) {
                self.write_file(procs, ready)?;
            }
            if ready {
                continue;
            }
            let stage = readiness.check().await;
            if stage == Stage::Ready {
                ready = true;
                self.write_file(procs, true)?;
                println!("cluster ready: --lock {}", lock_addrs.join(","));
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

    /// The arguments of a process's next start: a tablet server gets a fresh server id.
    fn respawn_spec(&self, old: &Spec, start: u32) -> Spec {
        match old.role {
            Role::Tablet => {
                plan::tablet_server(&self.dir, &self.shape, old.n, self.run_unix_ms, start)
            }
            Role::Lock | Role::Master => old.clone(),
        }
    }

    fn write_file(&self, procs: &[Proc], ready: bool) -> anyhow::Result<()> {
        let entries: Vec<(&Spec, Option<u32>)> = procs.iter().map(|p| (&p.spec, p.pid())).collect();
        let doc = cluster_file::document(&self.shape, &entries, ready);
        cluster_file::write(&self.dir, &doc)
    }
}
