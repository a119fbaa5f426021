//! A local lock-service cell of real processes: `tabula lock serve` (this very binary) once per
//! node, each on a free port of 127.0.0.1 with its own data directory and log file under the
//! scratch directory. Nodes can be SIGKILLed and restarted on the same port and directory.
//!
//! Invariant: every process the cell starts is SIGKILLed and reaped when the cell is dropped
//! (on success, on error and while unwinding), so a run leaves no orphans behind. Only the
//! bench itself being SIGKILLed can orphan nodes; a Ctrl-C reaches them directly too, since they
//! stay in the bench's process group.

use std::fs::OpenOptions;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail};

/// Lines of a node's log quoted when it exits unexpectedly.
const LOG_TAIL_LINES: usize = 20;

/// One node: where it listens and keeps its files, and its process while it runs.
struct Node {
    id: u64,
    addr: SocketAddr,
    data_dir: PathBuf,
    log: PathBuf,
    process: Option<Child>,
}

/// The running cell. Node ids are `1..=size`.
pub(super) struct Cell {
    exe: PathBuf,
    /// The `--peers` value every node gets.
    peers: String,
    nodes: Vec<Node>,
}

impl Cell {
    /// Starts `size` nodes under `root` (which must exist), each listening on a port that was
    /// free a moment ago. Does not wait for them to elect a leader.
    pub(super) fn start(root: &Path, size: u64) -> anyhow::Result<Cell> {
        let exe = std::env::current_exe().context("finding the tabula binary")?;
        // Hold every listener until all ports are chosen, so no two nodes get the same one.
        let listeners = (0..size)
            .map(|_| TcpListener::bind("127.0.0.1:0").context("choosing a free port"))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut nodes = Vec::new();
        for (id, listener) in (1..=size).zip(&listeners) {
            nodes.push(Node {
                id,
                addr: listener.local_addr().context("reading a chosen port")?,
                data_dir: root.join(format!("node-{id}")),
                log: root.join(format!("node-{id}.log")),
                process: None,
            });
        }
        drop(listeners);
        let mut cell = Cell {
            exe,
            peers: peers_flag(nodes.iter().map(|n| (n.id, n.addr))),
            nodes,
        };
        for id in 1..=size {
            cell.spawn(id)?;
        }
        Ok(cell)
    }

    /// Every node's id and address, running or not.
    pub(super) fn members(&self) -> Vec<(u64, SocketAddr)> {
        self.nodes.iter().map(|n| (n.id, n.addr)).collect()
    }

    /// The address of node `id`.
    pub(super) fn addr(&self, id: u64) -> anyhow::Result<SocketAddr> {
        Ok(self.node(id)?.addr)
    }

    /// Where node `id` writes its stdout and stderr.
    pub(super) fn log_path(&self, id: u64) -> anyhow::Result<&Path> {
        Ok(&self.node(id)?.log)
    }

    /// SIGKILLs node `id` and reaps it.
    pub(super) fn kill(&mut self, id: u64) -> anyhow::Result<()> {
        let node = self.node_mut(id)?;
        let Some(mut child) = node.process.take() else {
            bail!("node {id} is not running");
        };
        // `Child::kill` is SIGKILL on Unix: no shutdown path runs, like a crash.
        child
            .kill()
            .with_context(|| format!("killing node {id} (pid {})", child.id()))?;
        child
            .wait()
            .with_context(|| format!("reaping node {id} (pid {})", child.id()))?;
        Ok(())
    }

    /// Starts node `id` again, on its port and data directory, appending to its log.
    pub(super) fn restart(&mut self, id: u64) -> anyhow::Result<()> {
        if self.node(id)?.process.is_some() {
            bail!("node {id} is still running");
        }
        self.spawn(id)
    }

    /// Fails if a node that should be running has exited, quoting the end of its log.
    pub(super) fn check_running(&mut self) -> anyhow::Result<()> {
        for node in &mut self.nodes {
            let Some(child) = node.process.as_mut() else {
                continue;
            };
            if let Some(status) = child
                .try_wait()
                .with_context(|| format!("checking node {}", node.id))?
            {
                node.process = None;
                bail!(
                    "lock node {} exited ({status}); the end of {}:\n{}",
                    node.id,
                    node.log.display(),
                    log_tail(&node.log, LOG_TAIL_LINES)
                );
            }
        }
        Ok(())
    }

    fn spawn(&mut self, id: u64) -> anyhow::Result<()> {
        let exe = self.exe.clone();
        let peers = self.peers.clone();
        let node = self.node_mut(id)?;
        std::fs::create_dir_all(&node.data_dir)
            .with_context(|| format!("creating {}", node.data_dir.display()))?;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .with_context(|| format!("opening {}", node.log.display()))?;
        let stderr = log
            .try_clone()
            .with_context(|| format!("opening {}", node.log.display()))?;
        let child = Command::new(&exe)
            .args(serve_args(id, node.addr, &peers, &node.data_dir))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr))
            .spawn()
            .with_context(|| format!("starting lock node {id} ({})", exe.display()))?;
        node.process = Some(child);
        Ok(())
    }

    fn node(&self, id: u64) -> anyhow::Result<&Node> {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .with_context(|| format!("the cell has no node {id}"))
    }

    fn node_mut(&mut self, id: u64) -> anyhow::Result<&mut Node> {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .with_context(|| format!("the cell has no node {id}"))
    }
}

impl Drop for Cell {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.process.take() {
                // Errors here mean the process is already gone.
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// `1=127.0.0.1:7001,2=...`: the `--peers` flag of `tabula lock serve`.
fn peers_flag(members: impl Iterator<Item = (u64, SocketAddr)>) -> String {
    members
        .map(|(id, addr)| format!("{id}={addr}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The arguments that run node `id` with `tabula lock serve`.
fn serve_args(id: u64, addr: SocketAddr, peers: &str, data_dir: &Path) -> Vec<String> {
    vec![
        "lock".to_owned(),
        "serve".to_owned(),
        "--id".to_owned(),
        id.to_string(),
        "--listen".to_owned(),
        addr.to_string(),
        "--peers".to_owned(),
        peers.to_owned(),
        "--data-dir".to_owned(),
        data_dir.display().to_string(),
    ]
}

/// The last `lines` lines of the file at `path` (a note if it cannot be read).
pub(super) fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_node_gets_the_same_peers_and_its_own_id() {
        let a: SocketAddr = "127.0.0.1:7001".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:7002".parse().unwrap();
        let peers = peers_flag([(1, a), (2, b)].into_iter());
        assert_eq!(peers, "1=127.0.0.1:7001,2=127.0.0.1:7002");
        let args = serve_args(2, b, &peers, Path::new("/s/node-2"));
        assert_eq!(
            args,
            [
                "lock",
                "serve",
                "--id",
                "2",
                "--listen",
                "127.0.0.1:7002",
                "--peers",
                "1=127.0.0.1:7001,2=127.0.0.1:7002",
                "--data-dir",
                "/s/node-2"
            ]
        );
    }

    #[test]
    fn the_serve_arguments_parse_as_a_lock_command() {
        use clap::Parser;
        let addr: SocketAddr = "127.0.0.1:7001".parse().unwrap();
        let mut argv = vec!["tabula".to_owned()];
        argv.extend(serve_args(1, addr, "1=127.0.0.1:7001", Path::new("/s/n")));
        let cli = crate::Cli::try_parse_from(argv).unwrap();
        assert!(matches!(cli.command, crate::Command::Lock(_)), "{cli:?}");
    }

    #[test]
    fn a_log_tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.log");
        std::fs::write(&path, "a\nb\nc\n").unwrap();
        assert_eq!(log_tail(&path, 2), "b\nc");
        assert_eq!(log_tail(&path, 9), "a\nb\nc");
        assert!(log_tail(&dir.path().join("none"), 2).starts_with("(cannot read"));
    }
}
