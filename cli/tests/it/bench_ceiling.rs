//! `tabula bench echo-server`, the separate-process echo server of the benchmarks' ceilings:
//! it prints `listening ADDR`, answers a real echo call there, and exits 0 once its stdin
//! closes (so it never outlives the benchmark that started it). The command is hidden.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tabula_proto::tabula::bench::v1::EchoRequest;
use tabula_proto::tabula::bench::v1::echo_service_client::EchoServiceClient;

/// The `tabula` binary under test.
const BIN: &str = env!("CARGO_BIN_EXE_tabula");
/// Generous: a loaded 2-core machine is slow, not failing.
const DEADLINE: Duration = Duration::from_secs(30);

/// Kills and waits for the child when dropped (also when the test panics).
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

#[test]
fn echo_server_answers_and_exits_when_its_stdin_closes() {
    let mut child = Reaped(
        Command::new(BIN)
            .args(["bench", "echo-server"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let stdin = child.0.stdin.take().unwrap();
    let stdout = child.0.stdout.take().unwrap();
    let (line_tx, line_rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut line = String::new();
        let read = BufReader::new(stdout).read_line(&mut line);
        let _ = line_tx.send(read.map(|_| line));
    });
    let line = line_rx.recv_timeout(DEADLINE).unwrap().unwrap();
    reader.join().unwrap();
    let addr = line
        .trim_end()
        .strip_prefix("listening 127.0.0.1:")
        .unwrap_or_else(|| panic!("printed {line:?}"));
    let port: u16 = addr.parse().unwrap();
    assert_ne!(port, 0);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let payload = runtime.block_on(async {
        let mut client = EchoServiceClient::connect(format!("http://127.0.0.1:{port}"))
            .await
            .unwrap();
        client
            .echo(EchoRequest {
                payload: b"ceiling".to_vec(),
            })
            .await
            .unwrap()
            .into_inner()
            .payload
    });
    assert_eq!(payload, b"ceiling");
    drop(runtime);

    drop(stdin);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "tabula bench echo-server still running {DEADLINE:?} after its stdin closed"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
}

#[test]
fn echo_server_is_hidden_from_help() {
    let out = Command::new(BIN)
        .args(["bench", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(
        help.contains("paper") && !help.contains("echo-server"),
        "{help}"
    );
}
