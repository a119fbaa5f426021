//! A `tabula gateway` child over a cluster's cell, for `bench ycsb --via-gateway`: started
//! from this executable on `127.0.0.1:0`, ready once it prints `BIGTABLE_EMULATOR_HOST=ADDR`
//! (the address it bound), stopped by SIGTERM (SIGKILL after a deadline, or when the handle
//! is dropped). Its stderr goes to a file in a temporary directory, whose tail an error
//! quotes.
//!
//! Like [`super::cluster::Cluster::start`], start it from the main thread: its
//! `PR_SET_PDEATHSIG` is tied to the thread that spawned it.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tempfile::TempDir;

use super::cluster::{die_with_parent, kill, send};

/// How long the gateway may take to print its address.
const READY_DEADLINE: Duration = Duration::from_secs(60);
/// How long it may take to stop after SIGTERM.
const STOP_DEADLINE: Duration = Duration::from_secs(20);
/// Polling interval of the waits.
const POLL: Duration = Duration::from_millis(100);
/// The line the gateway prints once it listens.
const READY_PREFIX: &str = "BIGTABLE_EMULATOR_HOST=";
/// Lines of its stderr an error quotes.
const TAIL_LINES: usize = 20;

/// A running `tabula gateway` child.
pub(super) struct GatewayChild {
    child: Child,
    /// The address it serves the Cloud Bigtable APIs on.
    pub(super) addr: String,
    logs: TempDir,
}

impl GatewayChild {
    /// Starts `tabula gateway` over the cell at `lock` and waits until it listens.
    pub(super) fn start(lock: &[String]) -> anyhow::Result<GatewayChild> {
        let logs = tempfile::Builder::new()
            .prefix("tabula-bench-gateway-")
            .tempdir()
            .context("creating the gateway's log directory")?;
        let stderr_log = logs.path().join("gateway.stderr");
        let exe = std::env::current_exe().context("finding the tabula binary")?;
        let mut cmd = Command::new(exe);
        cmd.arg("gateway")
            .arg("--lock")
            .arg(lock.join(","))
            .arg("--listen")
            .arg("127.0.0.1:0")
            .env_remove("TABULA_LOCK")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr_log).context("creating gateway.stderr")?);
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().context("starting tabula gateway")?;
        let stdout = child
            .stdout
            .take()
            .context("tabula gateway's stdout was not piped")?;
        let (send_line, lines) = mpsc::sync_channel(16);
        // Ends when the child closes its stdout (it exits) or nobody listens any more.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if send_line.send(line).is_err() {
                    break;
                }
            }
        });
        let mut gateway = GatewayChild {
            child,
            addr: String::new(),
            logs,
        };
        let started = Instant::now();
        loop {
            match lines.recv_timeout(POLL) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix(READY_PREFIX) {
                        gateway.addr = addr.trim().to_owned();
                        eprintln!(
                            "gateway ready after {:.1} s: {}",
                            started.elapsed().as_secs_f64(),
                            gateway.addr
                        );
                        return Ok(gateway);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    let status = gateway.child.wait().context("waiting for tabula gateway")?;
                    bail!(
                        "tabula gateway exited before it listened ({status}):\n{}",
                        gateway.stderr_tail()
                    );
                }
            }
            if started.elapsed() > READY_DEADLINE {
                bail!(
                    "tabula gateway did not listen within {READY_DEADLINE:?}:\n{}",
                    gateway.stderr_tail()
                );
            }
        }
    }

    /// The last lines of its stderr.
    pub(super) fn stderr_tail(&self) -> String {
        let text =
            std::fs::read_to_string(self.logs.path().join("gateway.stderr")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
    }

    /// Stops it: SIGTERM, then SIGKILL after a deadline. An error if it had exited already.
    pub(super) fn stop(mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait().ok().flatten() {
            bail!(
                "tabula gateway exited during the run ({status}):\n{}",
                self.stderr_tail()
            );
        }
        send(&self.child, libc::SIGTERM);
        let started = Instant::now();
        while started.elapsed() < STOP_DEADLINE {
            if self.child.try_wait().ok().flatten().is_some() {
                return Ok(());
            }
            std::thread::sleep(POLL);
        }
        kill(&mut self.child);
        eprintln!("warning: tabula gateway did not stop within {STOP_DEADLINE:?}; killed it");
        Ok(())
    }
}

impl Drop for GatewayChild {
    fn drop(&mut self) {
        // `try_wait` answers a reaped child's status again, so a stopped child's id (which
        // the kernel may have given to another process) is never signalled.
        if let Ok(None) = self.child.try_wait() {
            kill(&mut self.child);
        }
    }
}
