//! The real-process harness of the lock-service tests: a cell of `tabula lock serve` child
//! processes on free 127.0.0.1 ports, each with its own data directory under one temporary
//! directory, and `tabula lock hold` child processes whose stdout lines are collected, each
//! with the wall-clock instant it was received.
//!
//! Faults are signals: `kill` (SIGKILL), `stop`/`cont` (SIGSTOP/SIGCONT), `interrupt`
//! (SIGINT). A node restarts on its port and data directory. Every child is killed when its
//! owner drops (also when a test panics), and dies with the test process
//! (`PR_SET_PDEATHSIG`). Node and holder logs are files in the temporary directory; when a
//! test fails, their tails are printed.
//!
//! Waiting is always polling a condition with a deadline (`eventually`, `poll_until`); the
//! deadlines are generous so that a loaded machine is slow, not failing.
#![allow(dead_code, unsafe_code, clippy::unwrap_used)]

pub(crate) mod local;
pub(crate) mod python;

use std::collections::BTreeMap;
use std::fs::File;
use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tabula_common::Error;
use tabula_lockservice::client::{ClientOptions, LockClient};
use tabula_proto::tabula::lock::v1 as pb;
use tabula_proto::tabula::lock::v1::lock_service_client::LockServiceClient;
use tempfile::TempDir;

/// The `tabula` binary under test.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_tabula");

/// Default deadline of a wait: long, because a loaded 2-core machine is slow.
pub(crate) const DEADLINE: Duration = Duration::from_secs(30);

/// Lines of each log printed when a test fails.
const LOG_TAIL_LINES: usize = 60;

/// Microseconds since the Unix epoch, the clock `tabula lock hold` stamps its claims with.
pub(crate) fn unix_us() -> u64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Polls `check` every 20 ms until it returns `Some`, panicking with `what` after `deadline`.
pub(crate) async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = Instant::now() + deadline;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `eventually` for a synchronous check.
pub(crate) async fn poll_until<T>(
    what: &str,
    deadline: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    eventually(what, deadline, || std::future::ready(check())).await
}

/// Sends `signal` to `child` unless it has already exited (and been reaped), so a recycled
/// pid is never signalled. Answers whether the signal was sent.
pub(crate) fn signal(child: &mut Child, signal: libc::c_int) -> bool {
    if child.try_wait().ok().flatten().is_some() {
        return false;
    }
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill(2) has no memory-safety preconditions; `pid` is our unreaped child.
    let rc = unsafe { libc::kill(pid, signal) };
    rc == 0
}

/// A command for the binary under test whose process dies with the test process.
fn command(args: &[String]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent. The signal
    // fires when the forking *thread* exits; tests start children from their main thread.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// The last `n` lines of the file at `path` (empty if it cannot be read).
fn tail(path: &Path, n: usize) -> String {
    let mut text = String::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Free 127.0.0.1 ports, found by binding port 0 (all bound together, so they differ).
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// One `tabula lock serve` node of a `Cell`.
struct Node {
    addr: String,
    data_dir: PathBuf,
    /// The running process, if any.
    child: Option<Child>,
    /// How many times it was started (names the log files).
    starts: u32,
}

/// A cell of `tabula lock serve` processes.
pub(crate) struct Cell {
    root: TempDir,
    nodes: BTreeMap<u64, Node>,
    logs: Vec<PathBuf>,
    /// More `lock serve` flags for every node (tiny limits in tests).
    serve_flags: Vec<String>,
}

impl Cell {
    /// Starts `size` nodes (ids 1..=size) on free ports; does not wait for a leader.
    pub(crate) fn start(size: u64) -> Cell {
        Cell::start_with(size, &[])
    }

    /// `start`, with `serve_flags` added to every node's `lock serve` (also on restarts).
    pub(crate) fn start_with(size: u64, serve_flags: &[&str]) -> Cell {
        let root = tempfile::Builder::new()
            .prefix("tabula-cell")
            .tempdir()
            .unwrap();
        let ports = free_ports(usize::try_from(size).unwrap());
        let mut nodes = BTreeMap::new();
        for (id, port) in (1..=size).zip(ports) {
            let data_dir = root.path().join(format!("node-{id}"));
            std::fs::create_dir_all(&data_dir).unwrap();
            nodes.insert(
                id,
                Node {
                    addr: format!("127.0.0.1:{port}"),
                    data_dir,
                    child: None,
                    starts: 0,
                },
            );
        }
        let mut cell = Cell {
            root,
            nodes,
            logs: Vec::new(),
            serve_flags: serve_flags.iter().map(|f| (*f).to_owned()).collect(),
        };
        let ids: Vec<u64> = cell.nodes.keys().copied().collect();
        for id in ids {
            cell.restart(id);
        }
        cell
    }

    /// The temporary directory holding data directories and logs.
    pub(crate) fn root(&self) -> &Path {
        self.root.path()
    }

    /// Every node's `host:port`, in id order.
    pub(crate) fn addrs(&self) -> Vec<String> {
        self.nodes.values().map(|n| n.addr.clone()).collect()
    }

    /// Node `id`'s `host:port`.
    pub(crate) fn addr(&self, id: u64) -> String {
        self.nodes[&id].addr.clone()
    }

    /// The node ids.
    pub(crate) fn ids(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    /// A client of the whole cell.
    pub(crate) fn client(&self, options: ClientOptions) -> LockClient {
        LockClient::new(&self.addrs(), options).unwrap()
    }

    /// Starts node `id` (again) on its port and data directory. It must not be running.
    pub(crate) fn restart(&mut self, id: u64) {
        let peers = self
            .nodes
            .iter()
            .map(|(id, n)| format!("{id}={}", n.addr))
            .collect::<Vec<_>>()
            .join(",");
        let node = self.nodes.get_mut(&id).unwrap();
        assert!(node.child.is_none(), "node {id} is already running");
        let log = self
            .root
            .path()
            .join(format!("node-{id}.start-{}.log", node.starts));
        node.starts += 1;
        let out = File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let args: Vec<String> = [
            "lock",
            "serve",
            "--id",
            &id.to_string(),
            "--listen",
            &node.addr,
            "--peers",
            &peers,
            "--data-dir",
            node.data_dir.to_str().unwrap(),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .chain(self.serve_flags.iter().cloned())
        .collect();
        let child = command(&args)
            .env("RUST_LOG", "info,openraft=warn")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap();
        node.child = Some(child);
        self.logs.push(log);
    }

    fn child(&mut self, id: u64) -> &mut Child {
        self.nodes
            .get_mut(&id)
            .unwrap()
            .child
            .as_mut()
            .unwrap_or_else(|| panic!("node {id} is not running"))
    }

    /// SIGKILLs node `id` and reaps it.
    pub(crate) fn kill(&mut self, id: u64) {
        let mut child = self.nodes.get_mut(&id).unwrap().child.take().unwrap();
        signal(&mut child, libc::SIGKILL);
        child.wait().unwrap();
    }

    /// SIGSTOPs node `id`.
    pub(crate) fn stop(&mut self, id: u64) {
        assert!(
            signal(self.child(id), libc::SIGSTOP),
            "node {id} has exited"
        );
    }

    /// SIGCONTs node `id`.
    pub(crate) fn cont(&mut self, id: u64) {
        assert!(
            signal(self.child(id), libc::SIGCONT),
            "node {id} has exited"
        );
    }

    /// Panics if a node that should run has exited.
    pub(crate) fn assert_running(&mut self) {
        for (id, node) in &mut self.nodes {
            if let Some(child) = node.child.as_mut()
                && let Some(status) = child.try_wait().unwrap()
            {
                panic!("node {id} exited on its own: {status}");
            }
        }
    }

    /// Node `id`'s own Status answer, if it answers within a second.
    pub(crate) async fn status_of(&self, id: u64) -> Option<pb::StatusResponse> {
        let addr = self.addr(id);
        let call = async {
            let mut rpc = raw_client(&addr).await.ok()?;
            rpc.status(pb::StatusRequest::default()).await.ok()
        };
        let answer = tokio::time::timeout(Duration::from_secs(1), call)
            .await
            .ok()??;
        Some(answer.into_inner())
    }

    /// The leader among `among`: a node that says it leads, in a term no other answering node
    /// of `among` has passed, and that every answering node of `among` names.
    pub(crate) async fn leader_among(&self, among: &[u64]) -> Option<u64> {
        let mut answers = Vec::new();
        for id in among {
            if let Some(s) = self.status_of(*id).await {
                answers.push(s);
            }
        }
        let max_term = answers.iter().map(|s| s.term).max()?;
        let leader = answers
            .iter()
            .find(|s| s.leader_id == s.node_id && s.term == max_term)?
            .node_id;
        answers
            .iter()
            .all(|s| s.leader_id == leader)
            .then_some(leader)
    }

    /// Waits until the nodes of `among` agree on a leader among them; answers it.
    pub(crate) async fn wait_leader(&self, among: &[u64]) -> u64 {
        eventually(&format!("a leader among nodes {among:?}"), DEADLINE, || {
            self.leader_among(among)
        })
        .await
    }

    /// Waits until every node answers, names the same leader in the same term and has applied
    /// what the leader had applied when first asked.
    pub(crate) async fn wait_converged(&self) -> u64 {
        let ids = self.ids();
        eventually("the cell to converge", DEADLINE, || async {
            let mut answers = Vec::new();
            for id in &ids {
                answers.push(self.status_of(*id).await?);
            }
            let leader = answers.iter().find(|s| s.leader_id == s.node_id)?;
            let same = answers
                .iter()
                .all(|s| s.leader_id == leader.node_id && s.term == leader.term);
            let caught_up = answers
                .iter()
                .all(|s| s.applied_index >= leader.applied_index);
            (same && caught_up).then_some(leader.node_id)
        })
        .await
    }

    /// Prints the tail of every node log (called on failure).
    fn print_logs(&self) {
        for log in &self.logs {
            eprintln!(
                "===== {} (last {LOG_TAIL_LINES} lines) =====\n{}",
                log.display(),
                tail(log, LOG_TAIL_LINES)
            );
        }
    }
}

impl Drop for Cell {
    fn drop(&mut self) {
        for node in self.nodes.values_mut() {
            if let Some(mut child) = node.child.take() {
                signal(&mut child, libc::SIGKILL);
                let _ = child.wait();
            }
        }
        if std::thread::panicking() {
            self.print_logs();
        }
        if std::env::var_os("TABULA_TEST_KEEP").is_some() {
            let placeholder = tempfile::tempdir().unwrap();
            let kept = std::mem::replace(&mut self.root, placeholder).keep();
            eprintln!("kept the cell's directory {}", kept.display());
        }
    }
}

/// A raw gRPC client of one node (no retries, no leader following).
pub(crate) async fn raw_client(
    addr: &str,
) -> Result<LockServiceClient<tonic::transport::Channel>, tonic::transport::Error> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(1))
        .connect()
        .await?;
    Ok(LockServiceClient::new(channel))
}

/// One raw KeepAlive of `session` sent straight to `addr`, answered within `timeout`:
/// `Ok(ttl_ms)`, or the error (a transport failure or a timeout counts as `Unavailable`).
pub(crate) async fn raw_keep_alive(
    addr: &str,
    session: u64,
    timeout: Duration,
) -> Result<u64, Error> {
    let call = async {
        let mut rpc = raw_client(addr)
            .await
            .map_err(|e| Error::new(tabula_common::Code::Unavailable, e.to_string()))?;
        rpc.keep_alive(pb::KeepAliveRequest {
            session_id: session,
        })
        .await
        .map(|r| r.into_inner().ttl_ms)
        .map_err(Error::from)
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(r) => r,
        Err(_) => Err(Error::new(
            tabula_common::Code::Unavailable,
            "no answer in time",
        )),
    }
}

/// A line a `hold` process printed, with when the test received it.
#[derive(Debug, Clone)]
pub(crate) struct Line {
    pub(crate) text: String,
    pub(crate) received_unix_us: u64,
}

/// What `tabula lock hold` says, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HoldEvent {
    Acquired { generation: u64, session: u64 },
    Waiting,
    Holding { generation: u64, at_unix_us: u64 },
    State(String),
    Expired,
    Released,
    Other(String),
}

/// The value of `key=` in a `key=value ...` line.
fn field(text: &str, key: &str) -> Option<String> {
    text.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_owned)
}

fn num(text: &str, key: &str) -> u64 {
    field(text, key)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no number {key}= in {text:?}"))
}

impl HoldEvent {
    /// Parses one line of `hold`'s text output.
    pub(crate) fn parse(text: &str) -> HoldEvent {
        let word = text.split_whitespace().next().unwrap_or("");
        match word {
            "acquired" => HoldEvent::Acquired {
                generation: num(text, "generation"),
                session: num(text, "session"),
            },
            "waiting" => HoldEvent::Waiting,
            "holding" => HoldEvent::Holding {
                generation: num(text, "generation"),
                at_unix_us: num(text, "at_unix_us"),
            },
            "state" => HoldEvent::State(text.split_whitespace().nth(1).unwrap_or("").to_owned()),
            "expired:" => HoldEvent::Expired,
            "released" => HoldEvent::Released,
            _ => HoldEvent::Other(text.to_owned()),
        }
    }
}

/// A `tabula lock hold` process.
pub(crate) struct Holder {
    pub(crate) name: String,
    child: Child,
    lines: Arc<Mutex<Vec<Line>>>,
    reader: Option<JoinHandle<()>>,
    stderr_log: PathBuf,
    /// Printed on failure only if set.
    quiet: bool,
}

/// How to start a `hold` process.
#[derive(Debug, Clone)]
pub(crate) struct HoldArgs {
    pub(crate) path: String,
    pub(crate) ttl_ms: u64,
    pub(crate) report_ms: u64,
}

impl Holder {
    /// Starts `tabula lock hold` against `cell`, with its stderr in `dir/<name>.stderr`.
    pub(crate) fn spawn(cell: &Cell, name: &str, args: &HoldArgs) -> Holder {
        let stderr_log = cell.root().join(format!("{name}.stderr"));
        let argv: Vec<String> = vec![
            "lock".into(),
            "hold".into(),
            args.path.clone(),
            "--lock".into(),
            cell.addrs().join(","),
            "--ttl-ms".into(),
            args.ttl_ms.to_string(),
            "--report-ms".into(),
            args.report_ms.to_string(),
        ];
        let mut child = command(&argv)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr_log).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(text) = line else { break };
                sink.lock().unwrap().push(Line {
                    text,
                    received_unix_us: unix_us(),
                });
            }
        });
        Holder {
            name: name.to_owned(),
            child,
            lines,
            reader: Some(reader),
            stderr_log,
            quiet: false,
        }
    }

    /// Every stdout line so far.
    pub(crate) fn lines(&self) -> Vec<Line> {
        self.lines.lock().unwrap().clone()
    }

    /// Every stdout line so far, parsed.
    pub(crate) fn events(&self) -> Vec<HoldEvent> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .map(|l| HoldEvent::parse(&l.text))
            .collect()
    }

    /// The first event `pick` accepts, once it has been printed.
    pub(crate) async fn wait_event<T>(
        &self,
        what: &str,
        deadline: Duration,
        mut pick: impl FnMut(&HoldEvent) -> Option<T>,
    ) -> T {
        poll_until(&format!("{}: {what}", self.name), deadline, || {
            self.events().iter().find_map(&mut pick)
        })
        .await
    }

    /// Its exit status, if it has exited.
    pub(crate) fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Waits for it to exit; answers the status once its stdout has been read to the end.
    pub(crate) async fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        let name = self.name.clone();
        let status = poll_until(&format!("{name} to exit"), deadline, || self.try_exit()).await;
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        status
    }

    /// Sends `sig`; false if the process has already exited.
    pub(crate) fn signal(&mut self, sig: libc::c_int) -> bool {
        signal(&mut self.child, sig)
    }

    /// SIGKILLs it and reaps it.
    pub(crate) fn kill(&mut self) {
        self.signal(libc::SIGKILL);
        self.child.wait().unwrap();
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
    }

    /// Prints nothing on failure (for the many short-lived holders of a randomized run).
    pub(crate) fn quiet(&mut self) {
        self.quiet = true;
    }

    /// Its stdout lines and stderr tail, for a failure message.
    pub(crate) fn dump(&self) -> String {
        let mut out = format!("===== {} stdout =====\n", self.name);
        for l in self.lines.lock().unwrap().iter() {
            out.push_str(&format!("[recv {}] {}\n", l.received_unix_us, l.text));
        }
        out.push_str(&format!(
            "===== {} stderr (last {LOG_TAIL_LINES} lines) =====\n{}\n",
            self.name,
            tail(&self.stderr_log, LOG_TAIL_LINES)
        ));
        out
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        signal(&mut self.child, libc::SIGKILL);
        let _ = self.child.wait();
        if std::thread::panicking() && !self.quiet {
            let _ = std::io::stderr().write_all(self.dump().as_bytes());
        }
    }
}

/// Any other `tabula` server role as a child process (`tablet serve`, `master serve`), logging
/// to a file in `dir`; SIGKILLed when dropped, its log tail printed if the test panics.
pub(crate) struct Daemon {
    name: String,
    log: PathBuf,
    child: Option<Child>,
}

impl Daemon {
    /// Starts `tabula <args>` named `name` (the log file's name).
    pub(crate) fn spawn(dir: &Path, name: &str, args: &[String]) -> Daemon {
        let log = dir.join(format!("{name}.log"));
        let out = File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let child = command(args)
            .env("RUST_LOG", "info,openraft=warn")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap();
        Daemon {
            name: name.to_owned(),
            log,
            child: Some(child),
        }
    }

    /// A free `127.0.0.1:port` for a daemon to listen on.
    pub(crate) fn free_addr() -> String {
        format!("127.0.0.1:{}", free_ports(1)[0])
    }

    /// SIGKILL and reap.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&mut child, libc::SIGKILL);
            let _ = child.wait();
        }
    }

    /// The exit status, if it has exited.
    pub(crate) fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "===== {} (last {LOG_TAIL_LINES} lines) =====\n{}",
                self.name,
                tail(&self.log, LOG_TAIL_LINES)
            );
        }
    }
}
