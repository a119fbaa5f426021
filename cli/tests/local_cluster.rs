//! `tabula local` end to end: started as a child on a free block of ports, it prints
//! `cluster ready: --lock ADDRS`; a table is created through the active master and rows are
//! written through METADATA lookups; `cluster.json` lists 3 lock nodes, 3 tablet servers and
//! 2 masters, all alive. SIGTERM stops it with exit code 0; started again on the same directory
//! (without --base-port: the directory keeps its cell) it is ready again and every row reads
//! back. SIGKILLed, its children die with it. Bad flags are a usage error (exit 2).

#![allow(clippy::unwrap_used)]

mod support;

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tabula_client::{Client, Family, Mutation, Table};
use tabula_common::Code;

use support::{BIN, eventually, poll_until, signal};

/// How long `tabula local` may take to say it is ready.
const READY_DEADLINE: Duration = Duration::from_secs(90);
/// How long a stop (tablet servers flush) or a data operation may take.
const DEADLINE: Duration = Duration::from_secs(60);
/// Ports `tabula local` uses above its base port.
const PORT_SPAN: u16 = 40;

/// A base port whose block of `PORT_SPAN` ports is free right now.
fn free_port_block() -> u16 {
    let start = 20_000 + u16::try_from(std::process::id() % 300).unwrap() * 100;
    let mut base = start;
    loop {
        let free = (base..base + PORT_SPAN).all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok());
        if free {
            return base;
        }
        base = if base >= 60_000 { 20_000 } else { base + 100 };
        assert_ne!(base, start, "no free block of {PORT_SPAN} ports");
    }
}

/// A `tabula local` child process, its stdout lines collected.
struct LocalCluster {
    dir: PathBuf,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
    stderr_log: PathBuf,
}

/// Makes the kernel SIGKILL `cmd`'s process when the test's thread that started it exits.
#[allow(unsafe_code)]
fn die_with_test(cmd: &mut Command) {
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
fn alive(pid: u64) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `pid (comm) state ...`: the state follows the last ')'.
    let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
    !state.is_some_and(|s| s.starts_with('Z') || s.starts_with('X'))
}

impl LocalCluster {
    /// Starts `tabula local --dir dir <extra>`; its stderr goes to `dir.stderr-<n>`.
    fn start(dir: &Path, extra: &[String], n: u32) -> LocalCluster {
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
    async fn wait_ready(&mut self) -> Vec<String> {
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
    async fn terminate(&mut self) -> ExitStatus {
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
    fn cluster_file(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.dir.join("cluster.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    /// Its stderr and every child's log, for a failure message.
    fn print_logs(&self) {
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

/// Creates table `t` (family `cf`, split at `m`) through the active master; answers it once
/// all of its tablets are served.
async fn create_table(client: &Client) -> Table {
    let admin = client.admin();
    eventually("a table created by the active master", DEADLINE, || async {
        match admin.create_table("t", &[Family::new("cf")], &[b"m"]).await {
            // A retry after an answer lost on the way: the first attempt made it.
            Err(e) if e.code == Code::AlreadyExists => Some(()),
            r => r.ok().map(|_| ()),
        }
    })
    .await;
    eventually("the table's tablets served", DEADLINE, || async {
        let s = admin.cluster_status().await.ok()?;
        (s.tablets >= 4 && s.tablets_not_serving == 0).then_some(())
    })
    .await;
    client.table("t").await.unwrap()
}

/// The pids in `cluster.json`, after checking it lists 3 lock nodes, 3 tablet servers and 2
/// masters with addresses and logs.
fn listed_pids(doc: &serde_json::Value) -> Vec<u64> {
    assert_eq!(doc["ready"], true, "{doc:#}");
    let procs = doc["processes"].as_array().unwrap();
    let count = |role: &str| procs.iter().filter(|p| p["role"] == role).count();
    assert_eq!(
        (count("lock"), count("tablet"), count("master")),
        (3, 3, 2),
        "{doc:#}"
    );
    for p in procs {
        assert!(p["address"].as_str().unwrap().starts_with("127.0.0.1:"));
        assert!(Path::new(p["log"].as_str().unwrap()).exists(), "{p}");
        assert_eq!(p["metrics"].is_string(), p["role"] == "tablet", "{p}");
    }
    procs.iter().map(|p| p["pid"].as_u64().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_cluster_serves_stops_cleanly_and_keeps_its_rows_across_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cluster");
    let base = free_port_block();
    let mut first = LocalCluster::start(&dir, &["--base-port".into(), base.to_string()], 1);
    let addrs = first.wait_ready().await;
    assert_eq!(addrs.len(), 3);
    assert_eq!(addrs[0], format!("127.0.0.1:{base}"));

    let client = Client::connect(&addrs).await.unwrap();
    let table = create_table(&client).await;
    let rows: Vec<Vec<u8>> = (0..20u8).map(|i| vec![b'a' + i, b'0' + i % 10]).collect();
    for row in &rows {
        table
            .mutate_row(
                row.clone(),
                vec![Mutation::set_cell("cf", "q", row.clone())],
            )
            .await
            .unwrap();
    }
    let pids = listed_pids(&first.cluster_file());
    assert!(pids.iter().all(|p| alive(*p)), "a listed process is gone");

    let status = first.terminate().await;
    assert_eq!(status.code(), Some(0), "tabula local stopped with {status}");
    drop(first);

    // The same directory again, without --base-port: the cell comes back on its ports.
    let mut second = LocalCluster::start(&dir, &[], 2);
    assert_eq!(second.wait_ready().await, addrs);
    let client = Client::connect(&addrs).await.unwrap();
    let table = client.table("t").await.unwrap();
    for row in &rows {
        let got = table.read_row(row.clone(), None).await.unwrap();
        let value = got.as_ref().and_then(|r| r.value("cf", b"q"));
        assert_eq!(value.map(|v| &v[..]), Some(&row[..]), "row {row:?} lost");
    }

    // SIGKILLed, it takes its children with it.
    let pids = listed_pids(&second.cluster_file());
    signal(&mut second.child, libc::SIGKILL);
    second.child.wait().unwrap();
    poll_until("the children to die with tabula local", DEADLINE, || {
        pids.iter().all(|p| !alive(*p)).then_some(())
    })
    .await;
}

#[test]
fn an_even_lock_cell_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["local", "--lock-nodes", "2", "--dir"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("odd number"), "{stderr}");
    assert!(
        !tmp.path().join("cluster.json").exists(),
        "a refused start wrote cluster.json"
    );
}
