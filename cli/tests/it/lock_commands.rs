//! The lock service's human commands end to end: a real 3-node cell of `tabula lock serve`
//! children (`support::Cell`), then the binary run as a user would (`tabula --lock ADDRS lock
//! ...`), each answer checked exactly as the commands print it, in table and JSON form:
//!
//! - `set` (creating, overwriting, compare-and-set with `--if-generation`), `get`, `ls`, `rm`
//!   (also `--if-generation`), and their errors: a missing parent, a stale generation, a file
//!   with children, a missing file (`{"error","kind","code"}` on stderr with `--output json`),
//!   a relative path, a missing argument.
//! - `status` (every member's own applied index, a paused member `unreachable`), and
//!   `add-node` / `remove-node` with a fourth `lock serve` process.
//! - `watch` as a child printing `created` / `changed` / `locked` / `unlocked` lines while other
//!   processes write and lock; `hold` as a child (acquired, seen by `get` and by the watch),
//!   a second `hold --wait-secs 0` failing while the first holds, SIGTERM / SIGINT releasing.
//! - `watch --from-revision` before the retained history (`serve --watch-history-events 4`):
//!   `compacted` with the oldest watchable revision.
//! - `hold --output json` until SIGINT; a command with only `TABULA_LOCK` naming the cell.
//!
//! No run may panic: every stderr is checked for "panicked". No sleep synchronizes anything:
//! every wait polls a condition with a deadline.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde_json::{Value, json};

use crate::support::{
    BIN, Cell, DEADLINE, Daemon, HoldArgs, HoldEvent, Holder, eventually, poll_until, signal,
};

/// What one finished run of the binary printed.
#[derive(Debug)]
struct Run {
    args: Vec<String>,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Panics with everything the run printed.
    fn fail(&self, why: &str) -> ! {
        panic!(
            "tabula {:?}: {why}\nexit code: {:?}\nstdout: {}\nstderr: {}",
            self.args, self.code, self.stdout, self.stderr
        )
    }
}

/// The `tabula` binary against one cell.
struct Tabula {
    lock: String,
}

impl Tabula {
    fn new(cell: &Cell) -> Tabula {
        Tabula {
            lock: cell.addrs().join(","),
        }
    }

    /// `tabula --lock ADDRS ARGS...`, with no cell or log level from the environment.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(["--lock", &self.lock])
            .args(args)
            .env_remove("TABULA_LOCK")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `args` to the end. A panic is never an answer.
    fn run(&self, args: &[&str]) -> Run {
        let out = self.command(args).output().unwrap();
        let run = Run {
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        if run.stderr.contains("panicked") {
            run.fail("panicked");
        }
        run
    }

    /// Runs `args`, which must succeed silently on stderr; answers stdout without the final
    /// newline.
    fn ok(&self, args: &[&str]) -> String {
        let run = self.run(args);
        if run.code != Some(0) || !run.stderr.is_empty() {
            run.fail("expected success and an empty stderr");
        }
        match run.stdout.strip_suffix('\n') {
            Some(text) => text.to_owned(),
            None => run.fail("stdout does not end with a newline"),
        }
    }

    /// Runs `args --output json`, which must succeed with one JSON document on stdout.
    fn json(&self, args: &[&str]) -> Value {
        let args = [args, &["--output", "json"]].concat();
        let text = self.ok(&args);
        assert_eq!(text.lines().count(), 1, "tabula {args:?} printed {text:?}");
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("tabula {args:?}: {e} in stdout {text:?}"))
    }

    /// Runs `args`, which must fail with exit code `code` and nothing on stdout; answers
    /// stderr without the final newline.
    fn fails(&self, args: &[&str], code: i32) -> String {
        let run = self.run(args);
        if run.code != Some(code) || !run.stdout.is_empty() {
            run.fail(&format!("expected exit code {code} and an empty stdout"));
        }
        run.stderr.trim_end().to_owned()
    }

    /// Runs `args --output json`, which must fail with exit code `code`; answers the one JSON
    /// error document on stderr.
    fn fails_json(&self, args: &[&str], code: i32) -> Value {
        let args = [args, &["--output", "json"]].concat();
        let text = self.fails(&args, code);
        assert_eq!(text.lines().count(), 1, "tabula {args:?} printed {text:?}");
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("tabula {args:?}: {e} in stderr {text:?}"))
    }
}

/// The generation in `set`'s answer `<verb> path=<path> generation=<g>`.
fn written(line: &str, verb: &str, path: &str) -> u64 {
    line.strip_prefix(&format!("{verb} path={path} generation="))
        .and_then(|g| g.parse().ok())
        .unwrap_or_else(|| panic!("not a `{verb} path={path} generation=G` line: {line:?}"))
}

/// A JSON number that must be there.
fn number(doc: &Value, key: &str) -> u64 {
    doc[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not a number in {doc}"))
}

/// The JSON error of a failed system call with the public code `code`.
fn system_error(message: &str, code: &str) -> Value {
    json!({ "error": message, "kind": "system", "code": code })
}

/// Lines read from a child's pipe by a thread, as they come.
type Lines = Arc<Mutex<Vec<String>>>;

fn collect(pipe: impl Read + Send + 'static) -> (Lines, JoinHandle<()>) {
    let lines = Lines::default();
    let sink = Arc::clone(&lines);
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(text) = line else { break };
            sink.lock().unwrap().push(text);
        }
    });
    (lines, reader)
}

/// A long-running `tabula` child (`lock watch`) whose stdout and stderr lines are collected;
/// SIGKILLed and reaped when dropped, its output printed if the test panics.
struct Streaming {
    name: String,
    child: Child,
    stdout: Lines,
    stderr: Lines,
    readers: Vec<JoinHandle<()>>,
}

impl Streaming {
    fn spawn(tabula: &Tabula, name: &str, args: &[&str]) -> Streaming {
        let mut child = tabula
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (stdout, out_reader) = collect(child.stdout.take().unwrap());
        let (stderr, err_reader) = collect(child.stderr.take().unwrap());
        Streaming {
            name: name.to_owned(),
            child,
            stdout,
            stderr,
            readers: vec![out_reader, err_reader],
        }
    }

    fn stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// The first stderr line `pick` accepts, once printed.
    async fn wait_stderr<T>(&self, what: &str, pick: impl Fn(&str) -> Option<T>) -> T {
        poll_until(&format!("{}: {what}", self.name), DEADLINE, || {
            self.stderr().iter().find_map(|l| pick(l))
        })
        .await
    }

    /// Waits until stdout has at least `n` lines; answers them all.
    async fn wait_stdout_lines(&self, n: usize) -> Vec<String> {
        poll_until(
            &format!("{}: {n} stdout lines", self.name),
            DEADLINE,
            || {
                let lines = self.stdout();
                (lines.len() >= n).then_some(lines)
            },
        )
        .await
    }

    /// Waits for it to exit and for its pipes to be read to the end.
    async fn wait_exit(&mut self) -> ExitStatus {
        let name = self.name.clone();
        let status = poll_until(&format!("{name} to exit"), DEADLINE, || {
            self.child.try_wait().unwrap()
        })
        .await;
        for reader in self.readers.drain(..) {
            reader.join().unwrap();
        }
        status
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        signal(&mut self.child, libc::SIGKILL);
        let _ = self.child.wait();
        if std::thread::panicking() {
            let dump = format!(
                "===== {} stdout =====\n{}\n===== {} stderr =====\n{}\n",
                self.name,
                self.stdout().join("\n"),
                self.name,
                self.stderr().join("\n"),
            );
            let _ = std::io::stderr().write_all(dump.as_bytes());
        }
    }
}

/// `watch`'s text lines as (revision, the rest), checking revisions grow from `from`.
fn watch_lines(lines: &[String], from: u64) -> Vec<String> {
    let mut last = from.saturating_sub(1);
    lines
        .iter()
        .map(|line| {
            let (revision, rest) = line
                .strip_prefix("revision=")
                .and_then(|l| l.split_once(' '))
                .unwrap_or_else(|| panic!("not a watch line: {line:?}"));
            let revision: u64 = revision.parse().unwrap();
            assert!(
                revision > last,
                "revision {revision} after {last}: {lines:?}"
            );
            last = revision;
            rest.to_owned()
        })
        .collect()
}

/// `watch --output json`'s lines without their revisions, checking they grow from `from`.
fn watch_docs(lines: &[String], from: u64) -> Vec<Value> {
    let mut last = from.saturating_sub(1);
    lines
        .iter()
        .map(|line| {
            let mut doc: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{e} in a watch line {line:?}"));
            let revision = number(&doc, "revision");
            assert!(
                revision > last,
                "revision {revision} after {last}: {lines:?}"
            );
            last = revision;
            doc.as_object_mut().unwrap().remove("revision");
            doc
        })
        .collect()
}

/// `ls`, `get`, `set`, `rm` and their errors, in both output formats.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_written_read_listed_and_deleted_with_exact_answers() {
    let cell = Cell::start(3);
    cell.wait_leader(&cell.ids()).await;
    let tabula = Tabula::new(&cell);

    // A file needs its parent; `set PATH ""` makes one.
    assert_eq!(
        tabula.fails(&["lock", "set", "/t/a", "hello"], 1),
        "error: failed-precondition: the parent directory does not exist"
    );
    written(&tabula.ok(&["lock", "set", "/t", ""]), "created", "/t");
    let g1 = written(
        &tabula.ok(&["lock", "set", "/t/a", "hello"]),
        "created",
        "/t/a",
    );

    // `get` as a table and as JSON.
    let text = tabula.ok(&["lock", "get", "/t/a"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[..5],
        [
            "path        /t/a".to_owned(),
            "contents    hello".to_owned(),
            format!("generation  {g1}"),
            "ephemeral   no".to_owned(),
            "holders     none".to_owned(),
        ],
        "{text}"
    );
    assert_eq!(lines.len(), 6, "{text}");
    let revision: u64 = lines[5]
        .strip_prefix("revision    ")
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no revision line in {text}"));
    let doc = tabula.json(&["lock", "get", "/t/a"]);
    assert_eq!(doc["contents"], "hello");
    assert_eq!(doc["path"], "/t/a");
    assert_eq!(number(&doc, "generation"), g1);
    assert!(number(&doc, "revision") >= revision, "{doc}");
    assert_eq!(
        doc,
        json!({
            "path": "/t/a",
            "contents": "hello",
            "encoding": "utf8",
            "generation": g1,
            "ephemeral_session": null,
            "lock_holders": [],
            "revision": doc["revision"],
        })
    );

    // Compare-and-set: the current generation wins, a stale one is refused.
    let g2 = written(
        &tabula.ok(&[
            "lock",
            "set",
            "/t/a",
            "world",
            "--if-generation",
            &g1.to_string(),
        ]),
        "set",
        "/t/a",
    );
    assert!(g2 > g1, "generation {g2} after {g1}");
    let mismatch = format!("aborted: generation mismatch: the file's generation is {g2}");
    assert_eq!(
        tabula.fails(
            &[
                "lock",
                "set",
                "/t/a",
                "stale",
                "--if-generation",
                &g1.to_string()
            ],
            1
        ),
        format!("error: {mismatch}")
    );
    assert_eq!(
        tabula.fails_json(
            &[
                "lock",
                "set",
                "/t/a",
                "stale",
                "--if-generation",
                &g1.to_string()
            ],
            1
        ),
        system_error(&mismatch, "aborted")
    );
    let doc = tabula.json(&["lock", "get", "/t/a"]);
    assert_eq!(
        (doc["contents"].as_str(), number(&doc, "generation")),
        (Some("world"), g2)
    );
    // With --if-generation a missing file is not created.
    let err = tabula.fails_json(&["lock", "set", "/t/none", "x", "--if-generation", "1"], 1);
    assert_eq!(err["code"], "not-found", "{err}");
    // A value that looks like a flag is a value; `set` as JSON.
    let doc = tabula.json(&["lock", "set", "/t/b", "-1"]);
    assert_eq!(
        doc,
        json!({ "path": "/t/b", "generation": number(&doc, "generation"), "created": true })
    );
    assert_eq!(tabula.json(&["lock", "get", "/t/b"])["contents"], "-1");

    // `ls`, sorted names.
    assert_eq!(tabula.ok(&["lock", "ls", "/t"]), "a\nb");
    assert_eq!(tabula.ok(&["lock", "ls"]), "t");
    let doc = tabula.json(&["lock", "ls", "/t"]);
    assert_eq!(
        doc,
        json!({ "path": "/t", "children": ["a", "b"], "revision": number(&doc, "revision") })
    );

    // `rm`: not a file with children, not at a stale generation.
    assert_eq!(
        tabula.fails(&["lock", "rm", "/t"], 1),
        "error: failed-precondition: the file has children"
    );
    assert_eq!(
        tabula.fails_json(
            &["lock", "rm", "/t/a", "--if-generation", &g1.to_string()],
            1
        ),
        system_error(&mismatch, "aborted")
    );
    let deleted = tabula.ok(&["lock", "rm", "/t/a"]);
    let rm_revision: u64 = deleted
        .strip_prefix("deleted path=/t/a revision=")
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("not a `deleted` line: {deleted:?}"));
    assert!(rm_revision > revision, "{deleted}");
    assert_eq!(
        tabula.fails(&["lock", "get", "/t/a"], 1),
        "error: not-found: no file /t/a"
    );
    assert_eq!(
        tabula.fails_json(&["lock", "get", "/t/a"], 1),
        system_error("not-found: no file /t/a", "not-found")
    );
    assert_eq!(tabula.json(&["lock", "ls", "/t"])["children"], json!(["b"]));
    let doc = tabula.json(&["lock", "rm", "/t/b"]);
    assert_eq!(
        doc,
        json!({ "path": "/t/b", "deleted": true, "revision": number(&doc, "revision") })
    );
    assert!(number(&doc, "revision") > rm_revision, "{doc}");
    assert_eq!(tabula.ok(&["lock", "ls", "/t"]), "");

    // Bad input: a clear message, never a panic (`run` checks every stderr).
    for args in [
        ["lock", "get", "relative/path"].as_slice(),
        ["lock", "set", "relative/path", "x"].as_slice(),
        ["lock", "ls", "relative/path"].as_slice(),
    ] {
        let run = tabula.run(args);
        if !matches!(run.code, Some(1 | 2))
            || !run.stdout.is_empty()
            || !run.stderr.contains("\"relative/path\" is not absolute")
        {
            run.fail("expected exit code 1 or 2 naming the relative path");
        }
    }
    let err = tabula.fails_json(&["lock", "get", "relative/path"], 1);
    assert_eq!(
        err,
        system_error(
            "invalid-argument: path \"relative/path\" is not absolute",
            "invalid-argument"
        )
    );
    let usage = tabula.fails(&["lock", "get"], 2);
    assert!(usage.contains("<PATH>"), "{usage}");
    let usage = tabula.fails(&["lock", "set", "/t/a", "x", "--if-generation", "soon"], 2);
    assert!(usage.contains("--if-generation"), "{usage}");
}

/// `status`, then a fourth node added and removed with `add-node` / `remove-node`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_the_cell_and_membership_changes() {
    let mut cell = Cell::start(3);
    cell.wait_converged().await;
    let tabula = Tabula::new(&cell);

    let doc = tabula.json(&["lock", "status"]);
    let leader = number(&doc, "leader_id");
    assert!((1..=3).contains(&leader), "{doc}");
    assert_eq!(doc["leader_addr"], cell.addr(leader), "{doc}");
    assert!((1..=3).contains(&number(&doc, "node_id")), "{doc}");
    assert!(number(&doc, "term") >= 1, "{doc}");
    number(&doc, "applied_index");
    let members: Vec<(u64, String, String)> = doc["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                number(m, "id"),
                m["addr"].as_str().unwrap().to_owned(),
                m["role"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let voters: Vec<(u64, String, String)> = (1..=3)
        .map(|id| (id, cell.addr(id), "voter".to_owned()))
        .collect();
    assert_eq!(members, voters, "{doc}");

    // The table: the leader, term and applied index, then one row per member.
    let text = tabula.ok(&["lock", "status"]);
    let lines: Vec<&str> = text.lines().collect();
    let (id, addr) = lines[0]
        .strip_prefix("leader   ")
        .and_then(|l| l.split_once(' '))
        .unwrap_or_else(|| panic!("no leader line in {text}"));
    let id: u64 = id.parse().unwrap();
    assert!((1..=3).contains(&id), "{text}");
    assert_eq!(addr, cell.addr(id), "{text}");
    assert!(lines[1].starts_with("term     "), "{text}");
    assert!(lines[2].starts_with("applied  "), "{text}");
    assert_eq!(lines[3], "", "{text}");
    assert_eq!(
        lines[4].split_whitespace().collect::<Vec<_>>(),
        ["ID", "ADDR", "ROLE", "MATCHED", "APPLIED"],
        "{text}"
    );
    let rows: Vec<(u64, String, String)> = lines[5..]
        .iter()
        .map(|row| {
            let cells: Vec<&str> = row.split_whitespace().collect();
            assert_eq!(cells.len(), 5, "{text}");
            (
                cells[0].parse().unwrap(),
                cells[1].to_owned(),
                cells[2].to_owned(),
            )
        })
        .collect();
    assert_eq!(rows, voters, "{text}");

    every_member_reports_its_applied_index(&mut cell, &tabula).await;

    // A fourth node with a fresh directory knows the cell by its peers; it joins as a voter.
    let addr4 = Daemon::free_addr();
    let dir4 = cell.root().join("node-4");
    std::fs::create_dir_all(&dir4).unwrap();
    let peers = (1..=3)
        .map(|id| format!("{id}={}", cell.addr(id)))
        .chain(std::iter::once(format!("4={addr4}")))
        .collect::<Vec<_>>()
        .join(",");
    let serve: Vec<String> = [
        "lock",
        "serve",
        "--id",
        "4",
        "--listen",
        &addr4,
        "--peers",
        &peers,
        "--data-dir",
        dir4.to_str().unwrap(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let mut node4 = Daemon::spawn(cell.root(), "node-4", &serve);
    poll_until("node 4 to listen", DEADLINE, || {
        TcpStream::connect(&addr4).ok().map(drop)
    })
    .await;
    let doc = tabula.json(&["lock", "add-node", "4", &addr4]);
    let joined = doc["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == 4)
        .unwrap_or_else(|| panic!("no node 4 in {doc}"));
    assert_eq!(
        (joined["addr"].as_str(), joined["role"].as_str()),
        (Some(addr4.as_str()), Some("voter"))
    );
    assert_eq!(doc["members"].as_array().unwrap().len(), 4, "{doc}");
    assert_eq!(
        tabula.json(&["lock", "status"])["members"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    let err = tabula.fails_json(&["lock", "add-node", "4", &addr4], 1);
    assert_eq!(err["code"], "already-exists", "{err}");

    // Removing it answers the status after the change, as a table here.
    let text = tabula.ok(&["lock", "remove-node", "4"]);
    node4.kill();
    let ids: Vec<&str> = text
        .lines()
        .skip(5)
        .map(|row| row.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(ids, ["1", "2", "3"], "{text}");
    let err = tabula.fails_json(&["lock", "remove-node", "9"], 1);
    assert_eq!(err["code"], "not-found", "{err}");
    let usage = tabula.fails(&["lock", "add-node", "four", &addr4], 2);
    assert!(usage.contains("<ID>"), "{usage}");
}

/// Each member's `(id, applied_index, unreachable)` in `status --output json`.
fn members_applied(doc: &Value) -> Vec<(u64, Option<u64>, Option<String>)> {
    doc["members"]
        .as_array()
        .unwrap_or_else(|| panic!("no members in {doc}"))
        .iter()
        .map(|m| {
            (
                number(m, "id"),
                m["applied_index"].as_u64(),
                m["unreachable"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

/// `status` reports every member's own applied index, up to what the leader has applied after
/// some writes (APPLIED in the table, `applied_index` in JSON); a SIGSTOPped member is
/// `unreachable` (with the reason in JSON) while the others still report theirs.
async fn every_member_reports_its_applied_index(cell: &mut Cell, tabula: &Tabula) {
    written(
        &tabula.ok(&["lock", "set", "/applied", ""]),
        "created",
        "/applied",
    );
    for i in 0..3 {
        tabula.ok(&["lock", "set", "/applied", &format!("v{i}")]);
    }
    let leader = cell.wait_leader(&cell.ids()).await;
    let target = cell.status_of(leader).await.unwrap().applied_index;
    let doc = eventually(
        "every member to report the leader's applied index",
        DEADLINE,
        || {
            let doc = tabula.json(&["lock", "status"]);
            let caught_up = members_applied(&doc)
                .iter()
                .all(|(_, applied, _)| applied.is_some_and(|a| a >= target));
            std::future::ready(caught_up.then_some(doc))
        },
    )
    .await;
    assert!(
        members_applied(&doc)
            .iter()
            .all(|(_, _, why)| why.is_none()),
        "{doc}"
    );
    let text = eventually("every APPLIED cell to reach the target", DEADLINE, || {
        let text = tabula.ok(&["lock", "status"]);
        let applied: Vec<Option<u64>> = text
            .lines()
            .skip(5)
            .map(|row| row.split_whitespace().nth(4).and_then(|a| a.parse().ok()))
            .collect();
        let caught_up =
            applied.len() == 3 && applied.iter().all(|a| a.is_some_and(|a| a >= target));
        std::future::ready(caught_up.then_some(text))
    })
    .await;
    assert_eq!(text.lines().count(), 8, "{text}");

    // A paused follower answers nobody: it is unreachable, the others are not.
    let paused = *cell.ids().iter().find(|id| **id != leader).unwrap();
    cell.stop(paused);
    let doc = tabula.json(&["lock", "status"]);
    for (id, applied, why) in members_applied(&doc) {
        if id == paused {
            assert_eq!(applied, None, "{doc}");
            assert_eq!(why.as_deref(), Some("no answer within 500ms"), "{doc}");
        } else {
            assert!(
                applied.is_some_and(|a| a >= target) && why.is_none(),
                "{doc}"
            );
        }
    }
    let text = tabula.ok(&["lock", "status"]);
    let row = text
        .lines()
        .skip(5)
        .find(|row| row.split_whitespace().next() == Some(&paused.to_string()))
        .unwrap_or_else(|| panic!("no row for node {paused} in {text}"));
    assert_eq!(row.split_whitespace().nth(4), Some("unreachable"), "{text}");
    cell.cont(paused);
    cell.wait_converged().await;
}

/// `watch` children see the writes and locks of other processes; `hold` holds until SIGTERM
/// or SIGINT while a second `hold --wait-secs 0` is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_sees_writes_and_locks_and_hold_holds_until_a_signal() {
    let cell = Cell::start(3);
    cell.wait_leader(&cell.ids()).await;
    let tabula = Tabula::new(&cell);
    written(&tabula.ok(&["lock", "set", "/t", ""]), "created", "/t");

    // Two watches of the prefix /t/b, one as text and one as JSON; each says on stderr where
    // it starts once it is open, and sees every event from there on.
    let mut text_watch = Streaming::spawn(&tabula, "watch", &["lock", "watch", "/t/b"]);
    let mut json_watch = Streaming::spawn(
        &tabula,
        "watch-json",
        &["lock", "watch", "/t/b", "--output", "json"],
    );
    let text_from: u64 = text_watch
        .wait_stderr("the watching note", |l| {
            l.strip_prefix("watching \"/t/b\" from revision ")?
                .strip_suffix("; Ctrl-C to stop")?
                .parse()
                .ok()
        })
        .await;
    let note: Value = json_watch
        .wait_stderr("the watching note", |l| serde_json::from_str(l).ok())
        .await;
    let json_from = number(&note, "from_revision");
    assert_eq!(
        note,
        json!({ "event": "watching", "prefix": "/t/b", "from_revision": json_from })
    );

    written(&tabula.ok(&["lock", "set", "/t/b", "x"]), "created", "/t/b");
    let lines = text_watch.wait_stdout_lines(1).await;
    assert_eq!(watch_lines(&lines, text_from), ["path=/t/b kind=created"]);
    // A file outside the prefix is not shown; events come in log order, so by the time the
    // change of /t/b is shown, /t/c's creation would have been.
    written(&tabula.ok(&["lock", "set", "/t/c", "z"]), "created", "/t/c");
    written(&tabula.ok(&["lock", "set", "/t/b", "y"]), "set", "/t/b");
    let lines = text_watch.wait_stdout_lines(2).await;
    assert_eq!(
        watch_lines(&lines, text_from),
        ["path=/t/b kind=created", "path=/t/b kind=changed"]
    );

    // `hold`: acquired with a sequencer that `get` shows as the holder.
    let hold_args = HoldArgs {
        path: "/t/b".to_owned(),
        ttl_ms: 10_000,
        report_ms: 0,
    };
    let mut first = Holder::spawn(&cell, "holder-1", &hold_args);
    let (g1, s1) = acquired(&mut first).await;
    assert_eq!(
        first.lines()[0].text,
        format!("acquired path=/t/b mode=exclusive generation={g1} session={s1}")
    );
    let doc = tabula.json(&["lock", "get", "/t/b"]);
    assert_eq!(
        doc["lock_holders"],
        json!([{ "session": s1, "mode": "exclusive", "generation": g1 }]),
        "{doc}"
    );
    assert!(tabula.ok(&["lock", "get", "/t/b"]).contains(&format!(
        "holders     session={s1} mode=exclusive generation={g1}"
    )));

    // A second holder that will not wait is refused while the first holds.
    assert_eq!(
        tabula.fails(&["lock", "hold", "/t/b", "--wait-secs", "0"], 1),
        "error: deadline-exceeded: /t/b not acquired within 0s"
    );
    assert_eq!(
        tabula.fails_json(&["lock", "hold", "/t/b", "--wait-secs", "0"], 1),
        system_error(
            "deadline-exceeded: /t/b not acquired within 0s",
            "deadline-exceeded"
        )
    );
    assert_eq!(
        tabula.fails(&["lock", "hold", "/t/b", "--ttl-ms", "0"], 2),
        "error: --ttl-ms must be positive"
    );

    // SIGTERM releases: `released`, exit 0, no holder left.
    assert!(first.signal(libc::SIGTERM));
    let status = first.wait_exit(DEADLINE).await;
    assert!(status.success(), "holder-1 exited with {status}");
    // (A loaded machine may print `state jeopardy` / `state safe` lines in between.)
    assert_eq!(
        first
            .lines()
            .iter()
            .map(|l| l.text.as_str())
            .filter(|l| !l.starts_with("state "))
            .collect::<Vec<_>>(),
        [
            format!("acquired path=/t/b mode=exclusive generation={g1} session={s1}"),
            "released path=/t/b".to_owned(),
        ]
    );
    assert_eq!(
        tabula.json(&["lock", "get", "/t/b"])["lock_holders"],
        json!([])
    );

    // The lock is free again: a new holder gets a later generation; SIGINT releases too.
    let mut second = Holder::spawn(&cell, "holder-2", &hold_args);
    let (g2, s2) = acquired(&mut second).await;
    assert!(
        g2 > g1 && s2 != s1,
        "generation {g2} session {s2} after {g1} {s1}"
    );
    assert!(second.signal(libc::SIGINT));
    let status = second.wait_exit(DEADLINE).await;
    assert!(status.success(), "holder-2 exited with {status}");
    assert_eq!(second.events().last(), Some(&HoldEvent::Released));

    // Both watches saw every event of /t/b, in order, and nothing else.
    let expected = [
        "path=/t/b kind=created".to_owned(),
        "path=/t/b kind=changed".to_owned(),
        format!("path=/t/b kind=locked session={s1} mode=exclusive generation={g1}"),
        format!("path=/t/b kind=unlocked session={s1} mode=exclusive"),
        format!("path=/t/b kind=locked session={s2} mode=exclusive generation={g2}"),
        format!("path=/t/b kind=unlocked session={s2} mode=exclusive"),
    ];
    let lines = text_watch.wait_stdout_lines(expected.len()).await;
    assert_eq!(watch_lines(&lines, text_from), expected);
    let lines = json_watch.wait_stdout_lines(expected.len()).await;
    assert_eq!(
        watch_docs(&lines, json_from),
        [
            json!({ "path": "/t/b", "kind": "created", "ephemeral_session": null }),
            json!({ "path": "/t/b", "kind": "changed" }),
            json!({ "path": "/t/b", "kind": "locked", "session": s1, "mode": "exclusive", "generation": g1 }),
            json!({ "path": "/t/b", "kind": "unlocked", "session": s1, "mode": "exclusive" }),
            json!({ "path": "/t/b", "kind": "locked", "session": s2, "mode": "exclusive", "generation": g2 }),
            json!({ "path": "/t/b", "kind": "unlocked", "session": s2, "mode": "exclusive" }),
        ]
    );

    // A watch stops on SIGTERM with exit 0 and prints nothing more.
    for watch in [&mut text_watch, &mut json_watch] {
        assert!(signal(&mut watch.child, libc::SIGTERM));
        let status = watch.wait_exit().await;
        assert!(status.success(), "{} exited with {status}", watch.name);
        assert_eq!(watch.stdout().len(), expected.len(), "{:?}", watch.stdout());
        assert_eq!(watch.stderr().len(), 1, "{:?}", watch.stderr());
    }
}

/// Waits for `holder`'s `acquired` line: its generation and session.
async fn acquired(holder: &mut Holder) -> (u64, u64) {
    holder
        .wait_event("acquired", DEADLINE, |e| match e {
            HoldEvent::Acquired {
                generation,
                session,
            } => Some((*generation, *session)),
            _ => None,
        })
        .await
}

/// A watch from a revision older than the retained history (here 4 events, `lock serve
/// --watch-history-events 4`) fails at once with `compacted` and the oldest watchable revision,
/// in both output formats; watching from that revision shows the retained events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_a_compacted_revision_fails_naming_the_oldest_watchable_one() {
    let cell = Cell::start_with(3, &["--watch-history-events", "4"]);
    cell.wait_leader(&cell.ids()).await;
    let tabula = Tabula::new(&cell);
    // Eight creations, one event each: the history keeps the last four.
    let generations: Vec<u64> = (1..=8)
        .map(|i| {
            let path = format!("/w{i}");
            written(&tabula.ok(&["lock", "set", &path, ""]), "created", &path)
        })
        .collect();
    let oldest = generations[3] + 1;
    let message = format!(
        "compacted: watch from revision {}: revision compacted: the oldest revision still \
         watchable is {oldest}; read again, then watch from the read's revision + 1",
        generations[0]
    );
    let from = generations[0].to_string();
    let watch = ["lock", "watch", "/w", "--from-revision", from.as_str()];
    assert_eq!(tabula.fails(&watch, 1), format!("error: {message}"));
    assert_eq!(
        tabula.fails_json(&watch, 1),
        system_error(&message, "compacted")
    );

    // From the oldest watchable revision: the four retained creations, in order.
    let oldest_arg = oldest.to_string();
    let mut retained = Streaming::spawn(
        &tabula,
        "watch-oldest",
        &["lock", "watch", "/w", "--from-revision", &oldest_arg],
    );
    let lines = retained.wait_stdout_lines(4).await;
    let expected: Vec<String> = (5..=8)
        .map(|i| format!("revision={} path=/w{i} kind=created", generations[i - 1]))
        .collect();
    assert_eq!(lines, expected);
    assert!(signal(&mut retained.child, libc::SIGTERM));
    let status = retained.wait_exit().await;
    assert!(status.success(), "watch-oldest exited with {status}");
}

/// With no `--lock`, a lock command reaches the cell named by `TABULA_LOCK`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_commands_find_the_cell_in_tabula_lock_without_the_flag() {
    let cell = Cell::start(3);
    cell.wait_leader(&cell.ids()).await;
    let from_env = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .env("TABULA_LOCK", cell.addrs().join(","))
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let run = Run {
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        if run.code != Some(0) || !run.stderr.is_empty() {
            run.fail("expected success with only TABULA_LOCK naming the cell");
        }
        run.stdout
    };
    let set = from_env(&["lock", "set", "/env", "from the environment"]);
    let generation = written(set.trim_end(), "created", "/env");
    let doc: Value =
        serde_json::from_str(&from_env(&["lock", "get", "/env", "--output", "json"])).unwrap();
    assert_eq!(
        (doc["contents"].as_str(), number(&doc, "generation")),
        (Some("from the environment"), generation),
        "{doc}"
    );
    // The same file through `--lock`: the environment named this cell.
    let tabula = Tabula::new(&cell);
    assert_eq!(
        tabula.json(&["lock", "get", "/env"])["contents"],
        "from the environment"
    );
}

/// `hold --output json`: the sequencer as a JSON line, `holding` lines while it holds (another
/// holder is refused meanwhile), and on SIGINT `released`, exit 0, after which another holder
/// acquires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_as_json_prints_the_sequencer_and_holds_until_interrupted() {
    let cell = Cell::start(3);
    cell.wait_leader(&cell.ids()).await;
    let tabula = Tabula::new(&cell);
    let mut holder = Streaming::spawn(
        &tabula,
        "hold-json",
        &[
            "lock",
            "hold",
            "/j",
            "--report-ms",
            "100",
            "--output",
            "json",
        ],
    );
    let first: Value = serde_json::from_str(&holder.wait_stdout_lines(1).await[0]).unwrap();
    let generation = number(&first, "generation");
    let session = number(&first, "session");
    assert_eq!(
        first,
        json!({
            "event": "acquired",
            "path": "/j",
            "mode": "exclusive",
            "generation": generation,
            "session": session,
        })
    );

    // It keeps holding: three `holding` reports of that generation, the cell naming it the
    // holder, a second holder refused, and the process still running.
    let holding = |lines: &[String]| {
        lines
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|doc| doc["event"] == "holding")
            .count()
    };
    poll_until("three holding reports", DEADLINE, || {
        (holding(&holder.stdout()) >= 3).then_some(())
    })
    .await;
    for line in holder.stdout() {
        let doc: Value = serde_json::from_str(&line).unwrap();
        if doc["event"] == "holding" {
            assert_eq!(number(&doc, "generation"), generation, "{line}");
        } else {
            assert!(
                doc["event"] == "acquired" || doc["event"] == "state",
                "{line}"
            );
        }
    }
    assert_eq!(
        tabula.json(&["lock", "get", "/j"])["lock_holders"],
        json!([{ "session": session, "mode": "exclusive", "generation": generation }])
    );
    assert_eq!(
        tabula.fails_json(&["lock", "hold", "/j", "--wait-secs", "0"], 1)["code"],
        "deadline-exceeded"
    );
    assert!(
        holder.child.try_wait().unwrap().is_none(),
        "hold-json exited"
    );

    // Interrupted: `released`, exit 0, and the lock is free for the next holder.
    assert!(signal(&mut holder.child, libc::SIGINT));
    let status = holder.wait_exit().await;
    assert!(status.success(), "hold-json exited with {status}");
    let last: Value = serde_json::from_str(holder.stdout().last().unwrap()).unwrap();
    assert_eq!(last, json!({ "event": "released", "path": "/j" }));
    assert_eq!(
        tabula.json(&["lock", "get", "/j"])["lock_holders"],
        json!([])
    );
    let mut next = Streaming::spawn(
        &tabula,
        "hold-next",
        &[
            "lock",
            "hold",
            "/j",
            "--wait-secs",
            "10",
            "--output",
            "json",
        ],
    );
    let acquired: Value = serde_json::from_str(&next.wait_stdout_lines(1).await[0]).unwrap();
    assert_eq!(acquired["event"], "acquired", "{acquired}");
    assert!(number(&acquired, "generation") > generation, "{acquired}");
    assert!(signal(&mut next.child, libc::SIGTERM));
    assert!(next.wait_exit().await.success());
}
