//! The cluster a cluster benchmark runs against: one it starts itself (`--local`: `tabula
//! local` as a child of this executable, in a scratch directory, on a free block of ports,
//! ready once it prints `cluster ready: --lock ADDRS`) or a running one (the global `--lock`).
//!
//! The child is started from the calling thread (its `PR_SET_PDEATHSIG` is tied to that
//! thread: call [`Cluster::start`] from the main thread) and stopped by SIGTERM (`tabula local`
//! stops its children in order), SIGKILL after a deadline or when the handle is dropped.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;

use super::scratch::Scratch;
use crate::exit::UsageError;

/// Ports `tabula local` uses above its base port.
const PORT_SPAN: u16 = 40;
/// How long `tabula local` may take to say it is ready.
const READY_DEADLINE: Duration = Duration::from_secs(180);
/// How long `tabula local` may take to stop after SIGTERM before it is killed.
const STOP_DEADLINE: Duration = Duration::from_secs(60);
/// Polling interval of the waits.
const POLL: Duration = Duration::from_millis(100);
/// The line `tabula local` prints once ready, before the addresses.
const READY_PREFIX: &str = "cluster ready: --lock ";
/// Most stdout lines of `tabula local` buffered before the reader waits.
const LINE_BUFFER: usize = 64;

/// Where a cluster benchmark runs (flags shared by `bench ycsb` and `bench paper`).
#[derive(Debug, Clone, Args)]
pub(crate) struct ClusterArgs {
    /// Start a whole cluster (`tabula local`) in a scratch directory for this run and stop it
    /// afterwards, instead of using the cell given by the global --lock.
    #[arg(long)]
    pub(crate) local: bool,
    /// Tablet servers of the --local cluster [default: 3 for ycsb, 1 for paper].
    #[arg(long, value_name = "N", requires = "local")]
    pub(crate) tablet_servers: Option<u32>,
    /// Parent of the --local cluster's scratch directory, on a disk-backed file system
    /// [default: the current directory].
    #[arg(long, value_name = "PATH", requires = "local")]
    pub(crate) dir: Option<PathBuf>,
    /// The global --lock (a running cluster's lock cell).
    #[arg(from_global)]
    pub(crate) lock: Vec<String>,
}

impl ClusterArgs {
    /// Checks the combination: either --local or --lock.
    pub(crate) fn validate(&self) -> Result<(), UsageError> {
        let lock_given = self.lock.iter().any(|a| !a.trim().is_empty());
        match (self.local, lock_given) {
            (true, true) => Err(UsageError(
                "--local and --lock both given (TABULA_LOCK counts as --lock): pick one".into(),
            )),
            (false, false) => Err(UsageError(
                "no cluster: give --local (start one) or --lock ADDRS (a running one)".into(),
            )),
            _ => Ok(()),
        }
        .and_then(|()| match self.tablet_servers {
            Some(0) => Err(UsageError("--tablet-servers must be at least 1".into())),
            _ => Ok(()),
        })
    }
}

/// A `tabula local` child, its stdout lines arriving on a channel.
struct LocalChild {
    child: Child,
    lines: Receiver<String>,
    scratch: Scratch,
    stderr_log: PathBuf,
}

/// The cluster of one run.
pub(super) struct Cluster {
    /// The lock cell's addresses.
    pub(super) lock: Vec<String>,
    local: Option<LocalChild>,
}

impl Cluster {
    /// Starts `tabula local` (with `tablet_servers` servers) if `args.local`, else names the
    /// cell of `--lock`. Call from the main thread; then [`Cluster::wait_ready`].
    pub(super) fn start(args: &ClusterArgs, tablet_servers: u32) -> anyhow::Result<Cluster> {
        if !args.local {
            let lock = args
                .lock
                .iter()
                .map(|a| a.trim().to_owned())
                .filter(|a| !a.is_empty())
                .collect();
            return Ok(Cluster { lock, local: None });
        }
        let scratch = Scratch::create(args.dir.as_deref())?;
        let base_port = free_port_block()?;
        let exe = std::env::current_exe().context("finding the tabula binary")?;
        let dir = scratch.dir.path().join("cluster");
        let stderr_log = scratch.dir.path().join("local.stderr");
        let mut cmd = Command::new(&exe);
        cmd.arg("local")
            .arg("--dir")
            .arg(&dir)
            .arg("--base-port")
            .arg(base_port.to_string())
            .arg("--tablet-servers")
            .arg(tablet_servers.to_string())
            .args(without_gateway(&exe))
            .env_remove("TABULA_LOCK")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr_log).context("creating local.stderr")?);
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().context("starting tabula local")?;
        let stdout = child
            .stdout
            .take()
            .context("tabula local's stdout was not piped")?;
        let (send, lines) = mpsc::sync_channel(LINE_BUFFER);
        // Ends when the child closes its stdout (it exits) or nobody listens any more.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        eprintln!(
            "local cluster: {tablet_servers} tablet server(s) on ports {base_port}.. in {} ({})",
            dir.display(),
            scratch.filesystem
        );
        Ok(Cluster {
            lock: Vec::new(),
            local: Some(LocalChild {
                child,
                lines,
                scratch,
                stderr_log,
            }),
        })
    }

    /// Waits for a `--local` cluster's `cluster ready` line (at once for `--lock`).
    pub(super) fn wait_ready(&mut self) -> anyhow::Result<()> {
        let Some(local) = self.local.as_mut() else {
            return Ok(());
        };
        let started = Instant::now();
        loop {
            match local.lines.recv_timeout(POLL) {
                Ok(line) => {
                    if let Some(addrs) = line.strip_prefix(READY_PREFIX) {
                        self.lock = addrs.split(',').map(str::to_owned).collect();
                        eprintln!(
                            "local cluster ready after {:.1} s: --lock {addrs}",
                            started.elapsed().as_secs_f64()
                        );
                        return Ok(());
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    let status = local.child.wait().context("waiting for tabula local")?;
                    bail!(
                        "tabula local exited before it was ready ({status}); see {}",
                        local.stderr_log.display()
                    );
                }
            }
            if let Some(status) = local.child.try_wait().context("polling tabula local")? {
                bail!(
                    "tabula local exited before it was ready ({status}); see {}",
                    local.stderr_log.display()
                );
            }
            if started.elapsed() > READY_DEADLINE {
                bail!(
                    "tabula local was not ready after {} s; see {}",
                    READY_DEADLINE.as_secs(),
                    local.stderr_log.display()
                );
            }
        }
    }

    /// The --local cluster's logs directory, if any (kept after a failure).
    pub(super) fn keep_logs(mut self) -> Option<PathBuf> {
        let mut local = self.local.take()?;
        kill(&mut local.child);
        Some(local.scratch.dir.keep())
    }

    /// Stops a `--local` cluster: SIGTERM, then SIGKILL after a deadline. Its scratch
    /// directory goes with it.
    pub(super) fn stop(mut self) -> anyhow::Result<()> {
        let Some(mut local) = self.local.take() else {
            return Ok(());
        };
        if local.child.try_wait().ok().flatten().is_some() {
            bail!(
                "tabula local exited during the run; see {}",
                local.stderr_log.display()
            );
        }
        send(&local.child, libc::SIGTERM);
        let started = Instant::now();
        while started.elapsed() < STOP_DEADLINE {
            if local.child.try_wait().ok().flatten().is_some() {
                return Ok(());
            }
            std::thread::sleep(POLL);
        }
        kill(&mut local.child);
        eprintln!("warning: tabula local did not stop within {STOP_DEADLINE:?}; killed it");
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(local) = self.local.as_mut() {
            kill(&mut local.child);
        }
    }
}

/// `--no-gateway` if this binary's `tabula local` has that flag: a benchmark's cluster needs
/// no gateway on a fixed port (two runs at once would fight over it); `bench ycsb
/// --via-gateway` starts its own on a free port.
fn without_gateway(exe: &Path) -> Vec<&'static str> {
    let help = Command::new(exe)
        .args(["local", "--help"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    match help {
        Ok(out) if String::from_utf8_lossy(&out.stdout).contains("--no-gateway") => {
            vec!["--no-gateway"]
        }
        _ => Vec::new(),
    }
}

/// SIGKILLs `child` and reaps it.
pub(super) fn kill(child: &mut Child) {
    send(child, libc::SIGKILL);
    let _ = child.wait();
}

/// Sends `signal` to `child` (ignored if it has exited).
#[allow(unsafe_code)]
pub(super) fn send(child: &Child, signal: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(child.id()) else {
        return;
    };
    // SAFETY: kill(2) has no memory-safety preconditions; `pid` is our own unreaped child.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// Makes the kernel SIGKILL the child when the thread that started it exits.
#[allow(unsafe_code)]
pub(super) fn die_with_parent(cmd: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec; prctl(2) is async-signal-safe
    // and touches no memory shared with the parent.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A base port whose `PORT_SPAN` ports are all free now, from a block chosen by the process
/// id (so concurrent runs rarely collide) between 20,000 and 60,000.
fn free_port_block() -> anyhow::Result<u16> {
    let start = 20_000 + (std::process::id() % 400) as u16 * 100;
    let mut base = start;
    loop {
        if (base..base + PORT_SPAN).all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return Ok(base);
        }
        base = if base >= 59_900 { 20_000 } else { base + 100 };
        if base == start {
            bail!("no free block of {PORT_SPAN} ports on 127.0.0.1");
        }
    }
}

/// Whether `path` is where a kept --local cluster left its logs (for messages).
pub(super) fn logs_dir(kept: &Path) -> PathBuf {
    kept.join("cluster").join("logs")
}

/// How long a new table's tablets may take to be served.
const TABLE_DEADLINE: Duration = Duration::from_secs(120);

/// Tablet servers the cluster has now.
pub(super) async fn tablet_servers(client: &tabula_client::Client) -> anyhow::Result<usize> {
    let servers = client
        .admin()
        .list_servers()
        .await
        .context("listing the tablet servers")?;
    Ok(servers.len().max(1))
}

/// Creates table `name` (one family, `family`, keeping one version) split at `split_keys`,
/// and answers it once no tablet of the cluster is waiting to be served.
pub(super) async fn create_table(
    client: &tabula_client::Client,
    name: &str,
    family: &str,
    split_keys: &[String],
) -> anyhow::Result<tabula_client::Table> {
    use tabula_client::{Family, GcRule};
    let admin = client.admin();
    let splits: Vec<&[u8]> = split_keys.iter().map(|k| k.as_bytes()).collect();
    let families = [Family::new(family).gc(GcRule::MaxVersions(1))];
    match admin.create_table(name, &families, &splits).await {
        Ok(_) => {}
        // A retry after a lost answer: the first attempt made it.
        Err(e) if e.code == tabula_common::Code::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("creating table {name}")),
    }
    let started = Instant::now();
    loop {
        let served = match admin.list_tablets(Some(name)).await {
            Ok(tablets) => tablets.len() > split_keys.len() && admin_all_served(&admin).await,
            Err(_) => false,
        };
        if served {
            break;
        }
        if started.elapsed() > TABLE_DEADLINE {
            bail!("table {name}'s tablets not all served after {TABLE_DEADLINE:?}");
        }
        tokio::time::sleep(POLL).await;
    }
    client
        .table(name)
        .await
        .with_context(|| format!("opening table {name}"))
}

/// Whether the cluster reports no tablet waiting to be served.
async fn admin_all_served(admin: &tabula_client::Admin) -> bool {
    admin
        .cluster_status()
        .await
        .is_ok_and(|s| s.tablets_not_serving == 0)
}
