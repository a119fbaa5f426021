//! `tabula local` as a child process for end-to-end tests: [`LocalCluster::start`] on a free
//! block of ports ([`free_port_block`]), [`LocalCluster::wait_ready`] for the
//! `cluster ready: --lock ADDRS` line, SIGTERM or SIGKILL, `cluster.json`, and every log's
//! tail printed when a test fails.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tabula_client::{Client, Family, Table};
use tabula_common::Code;

use super::{BIN, eventually, poll_until, signal};

/// How long `tabula local` may take to say it is ready.
pub(crate) const READY_DEADLINE: Duration = Duration::from_secs(90);
/// How long a stop (tablet servers flush) or a data operation may take.
pub(crate) const DEADLINE: Duration = Duration::from_secs(60);
/// Ports `tabula local` uses above its base port.
pub(crate) const PORT_SPAN: u16 = 40;

/// A base port whose block of `PORT_SPAN` ports is free right now and lies below the kernel's
/// ephemeral port range: `tabula local` restarts children on their ports, and a port in that
/// range can be taken meanwhile by any outgoing connection's local end (then the restart
/// cannot bind it).
pub(crate) fn free_port_block() -> u16 {
    let low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768);
    let (first, last) = (10_000u16, low.saturating_sub(PORT_SPAN).max(10_100));
    let blocks = (last - first) / 100;
    let start = u16::try_from(std::process::id() % u32::from(blocks)).unwrap();
    (0..blocks)
        .map(|i| first + (start + i) % blocks * 100)
        .find(|base| {
            (*base..*base + PORT_SPAN).all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok())
        })
        .expect("a free block of ports below the ephemeral range")
}

/// A `tabula local` child process, its stdout lines collected.
pub(crate) struct LocalCluster {
    pub(crate) dir: PathBuf,
    pub(crate) child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
    stderr_log: PathBuf,
}

/// Makes the kernel SIGKILL `cmd`'s process when the test's thread that started it exits.
#[allow(unsafe_code)]
pub(crate) fn die_with_test(cmd: &mut Command) {
    // SAFETY: prctl(2) is async-signal-safe and touches no memory of the parent.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Whether process `pid` runs (a zombie nobody reaped does not count).
pub(crate) fn alive(pid: u64) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `pid (comm) state ...`: the state follows the last ')'.
    let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
    !state.is_some_and(|s| s.starts_with('Z') || s.starts_with('X'))
}

impl LocalCluster {
    /// Starts `tabula local --dir dir <extra>`; its stderr goes to `dir.stderr-<n>`.
    pub(crate) fn start(dir: &Path, extra: &[String], n: u32) -> LocalCluster {
        let stderr_log = dir.with_extension(format!("stderr-{n}"));
        let mut cmd = Command::new(BIN);
        cmd.arg("local")
            .arg("--dir")
            .arg(dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr_log).unwrap());
        die_with_test(&mut cmd);
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        LocalCluster {
            dir: dir.to_owned(),
            child,
            lines,
            reader: Some(reader),
            stderr_log,
        }
    }

    /// Waits for `cluster ready: --lock ADDRS`; answers the addresses.
    pub(crate) async fn wait_ready(&mut self) -> Vec<String> {
        let lines = Arc::clone(&self.lines);
        let child = &mut self.child;
        poll_until("cluster ready: on stdout", READY_DEADLINE, || {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("tabula local exited before it was ready: {status}");
            }
            let lines = lines.lock().unwrap();
            let addrs = lines
                .iter()
                .find_map(|l| l.strip_prefix("cluster ready: --lock "))?;
            Some(addrs.split(',').map(str::to_owned).collect())
        })
        .await
    }

    /// Sends SIGTERM and waits for the exit.
    pub(crate) async fn terminate(&mut self) -> ExitStatus {
        assert!(
            signal(&mut self.child, libc::SIGTERM),
            "tabula local had exited"
        );
        let child = &mut self.child;
        let status = poll_until("tabula local to stop", DEADLINE * 2, || {
            child.try_wait().unwrap()
        })
        .await;
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        status
    }

    /// The parsed `cluster.json`.
    pub(crate) fn cluster_file(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.dir.join("cluster.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    /// Its stderr and every child's log, for a failure message.
    pub(crate) fn print_logs(&self) {
        let mut files = vec![self.stderr_log.clone()];
        if let Ok(entries) = std::fs::read_dir(self.dir.join("logs")) {
            let mut logs: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
            logs.sort();
            files.extend(logs);
        }
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!(
                "===== {} (last 60 lines) =====\n{}",
                file.display(),
                lines[lines.len().saturating_sub(60)..].join("\n")
            );
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        signal(&mut self.child, libc::SIGKILL);
        let _ = self.child.wait();
        if std::thread::panicking() {
            self.print_logs();
        }
    }
}

/// Creates table `name` (family `cf`, split at `splits`) through the active master; answers
/// it once every tablet of the cluster is served.
pub(crate) async fn create_table(client: &Client, name: &str, splits: &[&[u8]]) -> Table {
    let admin = client.admin();
    eventually("a table created by the active master", DEADLINE, || async {
        match admin.create_table(name, &[Family::new("cf")], splits).await {
            // A retry after an answer lost on the way: the first attempt made it.
            Err(e) if e.code == Code::AlreadyExists => Some(()),
            r => r.ok().map(|_| ()),
        }
    })
    .await;
    let want = u32::try_from(splits.len()).unwrap() + 3;
    eventually("the table's tablets served", DEADLINE, || async {
        let s = admin.cluster_status().await.ok()?;
        (s.tablets >= want && s.tablets_not_serving == 0).then_some(())
    })
    .await;
    client.table(name).await.unwrap()
}
