//! The echo server in a separate process, both ends of it. Every Tabula call a cluster
//! benchmark measures crosses processes (the client in the benchmark, the tablet server in
//! its own process with its own runtime), so the fair raw-tonic baseline has the same layout.
//!
//! - [`serve`] is the hidden `tabula bench echo-server`: the same [`EchoServer`] as in
//!   process, on 127.0.0.1:0 and a multi-threaded runtime of its own; it prints
//!   `listening ADDR` once it listens and stops at EOF on its stdin (so it never outlives
//!   the benchmark, even a SIGKILLed one) or at SIGINT / SIGTERM.
//! - [`EchoChild`] is the benchmark's handle on such a child: started from a given
//!   executable with stdin piped and kept open while measuring; killed and waited for when
//!   dropped, on every path.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use tokio::sync::oneshot;

use super::server::EchoServer;
use crate::signal::StopSignals;

/// What the child prints before its address, once it listens.
const READY_PREFIX: &str = "listening ";
/// How long the child may take to print its address.
const READY_DEADLINE: Duration = Duration::from_secs(10);
/// How long the child may take to exit once its stdin is closed.
const STOP_DEADLINE: Duration = Duration::from_secs(10);
/// Polling interval of the wait for the child's exit.
const POLL: Duration = Duration::from_millis(20);

/// `tabula bench echo-server`: serves [`EchoServer`] on 127.0.0.1:0 until stdin reaches EOF
/// or SIGINT / SIGTERM arrives, on a multi-threaded runtime as a tablet server's.
pub(in crate::bench) fn serve() -> anyhow::Result<()> {
    let runtime = crate::bench::runtime("tabula-echo")?;
    let outcome = runtime.block_on(async {
        let mut signals = StopSignals::install()?;
        let stdin_closed = stdin_closed()?;
        let server = EchoServer::start().await?;
        let announced = announce(server.addr);
        if announced.is_ok() {
            tokio::select! {
                _ = stdin_closed => {}
                _ = signals.recv() => {}
            }
        }
        let stopped = server.stop().await;
        announced?;
        stopped
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    outcome
}

/// Prints `listening ADDR` on stdout, flushed.
fn announce(addr: SocketAddr) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{READY_PREFIX}{addr}").context("printing the echo server's address")?;
    stdout.flush().context("flushing stdout")
}

/// Resolves once stdin reaches EOF (or fails). A thread reads it, because a blocking read of
/// stdin cannot be cancelled: the thread ends at EOF, or with the process.
fn stdin_closed() -> anyhow::Result<oneshot::Receiver<()>> {
    let (closed, on_closed) = oneshot::channel();
    std::thread::Builder::new()
        .name("tabula-echo-stdin".to_owned())
        .spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
            let _ = closed.send(());
        })
        .context("starting the stdin reader")?;
    Ok(on_closed)
}

/// A running `tabula bench echo-server` child.
pub(super) struct EchoChild {
    guard: ChildGuard,
    /// Where it serves.
    pub(super) addr: SocketAddr,
}

/// Kills and waits for the child when dropped; holds its stdin open until then.
struct ChildGuard {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl ChildGuard {
    fn kill(&mut self) {
        self.stdin = None;
        // `try_wait` answers a reaped child's status again, so a child that has exited (whose
        // id the kernel may have reused) is never signalled.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

impl EchoChild {
    /// Starts `exe bench echo-server` and waits (at most [`READY_DEADLINE`]) until it prints
    /// its address.
    pub(super) async fn start(exe: &Path) -> anyhow::Result<EchoChild> {
        let mut child = Command::new(exe)
            .args(["bench", "echo-server"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {} bench echo-server", exe.display()))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let mut guard = ChildGuard { child, stdin };
        let stdout = stdout.context("the echo server's stdout was not piped")?;
        // Ends at the first line, or at EOF once the child has exited (or been killed).
        let mut reading = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        });
        let line = match tokio::time::timeout(READY_DEADLINE, &mut reading).await {
            Ok(read) => read
                .context("the echo server's stdout reader")?
                .context("reading the echo server's stdout")?,
            Err(_) => {
                guard.kill();
                let _ = reading.await;
                bail!("the echo server did not print its address within {READY_DEADLINE:?}");
            }
        };
        let Some(addr) = line.trim_end().strip_prefix(READY_PREFIX) else {
            guard.kill();
            let status = guard.child.wait().context("waiting for the echo server")?;
            bail!("the echo server printed {line:?} instead of its address ({status})");
        };
        let addr = addr
            .parse()
            .map_err(|e| anyhow!("the echo server's address {addr:?}: {e}"))?;
        Ok(EchoChild { guard, addr })
    }

    /// Closes its stdin and waits (at most [`STOP_DEADLINE`]) for it to exit; an error if it
    /// failed or did not exit in time (then it is killed).
    pub(super) async fn stop(mut self) -> anyhow::Result<()> {
        self.guard.stdin = None;
        let started = Instant::now();
        let mut poll = tokio::time::interval(POLL);
        loop {
            poll.tick().await;
            if let Some(status) = self
                .guard
                .child
                .try_wait()
                .context("waiting for the echo server")?
            {
                if !status.success() {
                    bail!("the echo server exited with {status}");
                }
                return Ok(());
            }
            if started.elapsed() > STOP_DEADLINE {
                self.guard.kill();
                bail!("the echo server did not exit within {STOP_DEADLINE:?} of its stdin closing");
            }
        }
    }
}
