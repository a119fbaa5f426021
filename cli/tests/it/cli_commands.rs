//! The `tabula` data and admin commands end to end: one `tabula local` cluster, then the
//! binary run as a user would (`--lock ADDRS --output json`), each JSON answer parsed and
//! checked: create-table with split keys and GC rules, describe, tables, put / get / scan
//! (ranges, prefixes, limits, columns, versions, raw bytes, escaped binary keys), deletes of a
//! cell, a family and a row, increments, reversed scans, tablets / split / merge / move /
//! flush / compact, families added / changed / dropped, drop-rows, servers / status /
//! balancer, delete-table; errors: a missing table exits 1 naming `not-found`, a bad
//! family spec exits 2. Progress lines go to stderr: every stdout here is pure JSON.
//!
//! One cluster start for the whole file (starts are slow on a loaded 2-core machine): one
//! scenario walks through every command.

#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

use serde_json::Value;

use crate::support::BIN;
use crate::support::local::{DEADLINE, LocalCluster, free_port_block};

/// The `tabula` binary against one cluster.
struct Tabula {
    lock: String,
}

impl Tabula {
    /// Runs `tabula --lock ADDRS --output json ARGS...`.
    fn run(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(["--lock", &self.lock, "--output", "json"])
            .args(args)
            .env_remove("TABULA_LOCK")
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    }

    /// Runs `args`, which must succeed; answers its stdout lines parsed as JSON.
    fn lines(&self, args: &[&str]) -> Vec<Value> {
        let out = self.run(args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "tabula {args:?} failed\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
            .lines()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("tabula {args:?}: {e} in stdout line {l:?}"))
            })
            .collect()
    }

    /// Runs `args`, which must succeed with exactly one JSON document on stdout.
    fn json(&self, args: &[&str]) -> Value {
        let mut lines = self.lines(args);
        assert_eq!(lines.len(), 1, "tabula {args:?} printed {lines:?}");
        lines.remove(0)
    }

    /// Runs `args`, which must fail; answers the exit code and the JSON error on stderr.
    fn fails(&self, args: &[&str]) -> (i32, Value) {
        let out = self.run(args);
        assert!(
            out.stdout.is_empty(),
            "tabula {args:?} printed {:?}",
            out.stdout
        );
        let (code, error) = failure(&out);
        assert_ne!(code, 0, "tabula {args:?} succeeded");
        (code, error)
    }

    /// The row keys of a `scan` (escaped, as printed).
    fn scan_keys(&self, args: &[&str]) -> Vec<String> {
        let mut full = vec!["scan"];
        full.extend_from_slice(args);
        self.lines(&full)
            .iter()
            .map(|r| r["row"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The newest value of `family:qualifier` in `row` (escaped), if the row has it.
    fn value(&self, table: &str, row: &str, family: &str, qualifier: &str) -> Option<String> {
        let got = self.json(&["get", table, row]);
        got["cells"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["family"] == family && c["qualifier"] == qualifier)
            .map(|c| c["value"].as_str().unwrap().to_owned())
    }
}

/// The exit code of a run and the JSON error it printed last on stderr (null if none).
fn failure(out: &Output) -> (i32, Value) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let error = stderr
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
        .unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), error)
}

/// The tablets `tabula tablets TABLE` lists as (start, end) pairs (escaped; "" = the end).
fn ranges(tablets: &Value) -> Vec<(String, String)> {
    tablets
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["start"].as_str().unwrap().to_owned(),
                t["end"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_data_and_admin_command_against_a_local_cluster() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cluster");
    let base = free_port_block();
    let mut cluster = LocalCluster::start(&dir, &["--base-port".into(), base.to_string()], 1);
    let addrs = cluster.wait_ready().await;
    let t = Tabula {
        lock: addrs.join(","),
    };

    // create-table: two families with GC rules, three tablets; a just-elected master may
    // answer Unavailable once, which is the cluster's answer and worth one more try.
    let create = [
        "create-table",
        "t",
        "--family",
        "cf:max_versions=3",
        "--family",
        "meta:max_age=7d:max_versions=2",
        "--split-keys",
        "g,p",
    ];
    let deadline = std::time::Instant::now() + DEADLINE;
    let created = loop {
        let out = t.run(&create);
        if out.status.success() {
            break serde_json::from_slice::<Value>(&out.stdout).unwrap();
        }
        let (code, error) = failure(&out);
        assert!(
            code == 1 && error["code"] == "unavailable" && std::time::Instant::now() < deadline,
            "create-table failed: {code} {error}"
        );
    };
    assert_eq!(created["name"], "t");
    assert_eq!(created["tablets"], 3);
    assert_eq!(created["families"][0]["gc"], "max_versions=3");
    assert_eq!(
        created["families"][1]["gc"], "max_versions=2 or max_age=7d",
        "{created}"
    );

    let described = t.json(&["describe", "t"]);
    assert_eq!(described["state"], "ready");
    assert_eq!(
        described["families"][1]["gc_rule"],
        serde_json::json!({"union": [{"max_versions": 2}, {"max_age_micros": 604_800_000_000i64}]})
    );
    assert_eq!(
        ranges(&described["tablets"]),
        [("", "g"), ("g", "p"), ("p", "")].map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    assert!(
        described["tablets"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["state"] == "assigned" && t["server"].is_string()),
        "{described}"
    );
    let tables = t.json(&["tables"]);
    assert!(
        tables.as_array().unwrap().iter().any(|x| x["name"] == "t"),
        "{tables}"
    );

    // put: rows in every tablet, two versions of one cell, a binary row key and value.
    for row in ["a1", "b1", "g1", "h2", "p1", "z9"] {
        let put = t.json(&["put", "t", row, "cf:name", &format!("name-{row}")]);
        assert_eq!(
            (put["row"].as_str(), put["column"].as_str()),
            (Some(row), Some("cf:name"))
        );
    }
    t.json(&["put", "t", "a1", "meta:v", "old", "--timestamp", "1000"]);
    t.json(&["put", "t", "a1", "meta:v", "new", "--timestamp", "2000"]);
    t.json(&["put", "t", "b1", "meta:v", "x"]);
    t.json(&["put", "t", "\\x00bin", "cf:b\\\\q", "\\xff\\xfe"]);

    // get: every version, one column, the newest version, raw bytes, binary, missing.
    let a1 = t.json(&["get", "t", "a1"]);
    assert_eq!(a1["found"], true);
    let cells = a1["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 3, "{a1}");
    let meta: Vec<(&str, i64)> = cells
        .iter()
        .filter(|c| c["family"] == "meta")
        .map(|c| {
            (
                c["value"].as_str().unwrap(),
                c["timestamp_micros"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(meta, [("new", 2000), ("old", 1000)]);
    let newest = t.json(&["get", "t", "a1", "--column", "meta:v", "--versions", "1"]);
    assert_eq!(newest["cells"].as_array().unwrap().len(), 1, "{newest}");
    assert_eq!(newest["cells"][0]["value"], "new");
    let family = t.json(&["get", "t", "a1", "--column", "cf"]);
    assert_eq!(family["cells"].as_array().unwrap().len(), 1, "{family}");
    let raw = t.run(&["get", "t", "\\x00bin", "--column", "cf:b\\\\q", "--raw"]);
    assert_eq!(raw.stdout, b"\xff\xfe", "{raw:?}");
    let bin = t.json(&["get", "t", "\\x00bin"]);
    assert_eq!(bin["row"], "\\x00bin");
    assert_eq!(bin["cells"][0]["qualifier"], "b\\\\q");
    assert_eq!(bin["cells"][0]["value"], "\\xff\\xfe");
    assert_eq!(bin["cells"][0]["value_base64"], "//4=");
    let missing = t.json(&["get", "t", "nobody"]);
    assert_eq!(
        (
            missing["found"].as_bool(),
            missing["cells"].as_array().map(Vec::len)
        ),
        (Some(false), Some(0))
    );
    let human = t.run(&["get", "t", "a1", "--output", "table"]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains("TIME (UTC)") && text.contains("1970-01-01T00:00:00.002000Z"),
        "{text}"
    );

    // scan: across tablets in order, ranges, prefixes, limits, columns.
    let all = ["\\x00bin", "a1", "b1", "g1", "h2", "p1", "z9"];
    assert_eq!(t.scan_keys(&["t"]), strs(&all));
    assert_eq!(
        t.scan_keys(&["t", "--start", "b", "--end", "p1"]),
        strs(&["b1", "g1", "h2"])
    );
    assert_eq!(
        t.scan_keys(&["t", "--start", "h"]),
        strs(&["h2", "p1", "z9"])
    );
    assert_eq!(t.scan_keys(&["t", "--prefix", "h"]), strs(&["h2"]));
    assert_eq!(
        t.scan_keys(&["t", "--limit", "2"]),
        strs(&["\\x00bin", "a1"])
    );
    assert_eq!(
        t.scan_keys(&["t", "--column", "meta:v"]),
        strs(&["a1", "b1"])
    );
    assert!(t.scan_keys(&["t", "--prefix", "nothing"]).is_empty());
    assert_eq!(
        t.scan_keys(&["t", "--reverse", "--limit", "3"]),
        strs(&["z9", "p1", "h2"])
    );
    assert_eq!(
        t.scan_keys(&["t", "--reverse", "--start", "b", "--end", "p1"]),
        strs(&["h2", "g1", "b1"])
    );

    // delete: one column, one family, one row.
    t.json(&["delete", "t", "a1", "meta:v"]);
    assert_eq!(t.value("t", "a1", "meta", "v"), None);
    assert_eq!(t.value("t", "a1", "cf", "name").as_deref(), Some("name-a1"));
    t.json(&["delete", "t", "b1", "meta"]);
    assert_eq!(t.value("t", "b1", "meta", "v"), None);
    assert_eq!(t.value("t", "b1", "cf", "name").as_deref(), Some("name-b1"));
    let deleted = t.json(&["delete", "t", "z9"]);
    assert_eq!(deleted["deleted"], "row");
    assert_eq!(t.json(&["get", "t", "z9"])["found"], false);

    // increment: a counter from nothing, then down.
    assert_eq!(t.json(&["increment", "t", "hits", "cf:n", "5"])["value"], 5);
    assert_eq!(
        t.json(&["increment", "t", "hits", "cf:n", "-2"])["value"],
        3
    );
    assert_eq!(
        t.value("t", "hits", "cf", "n").as_deref(),
        Some("\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x03")
    );

    // split at a row, then merge the two halves back; the rows stay.
    let rows_now = t.scan_keys(&["t"]);
    let split = t.json(&["split", "t", "h"]);
    assert_eq!(
        ranges(&split),
        [("g", "h"), ("h", "p")].map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    assert!(
        split
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["state"] == "assigned"),
        "{split}"
    );
    assert_eq!(ranges(&t.json(&["tablets", "t"])).len(), 4);
    assert_eq!(t.scan_keys(&["t"]), rows_now);
    let merged = t.json(&["merge", "t", "g1"]);
    assert_eq!(
        ranges(&merged),
        [("g".to_owned(), "p".to_owned())],
        "{merged}"
    );
    assert_eq!(ranges(&t.json(&["tablets", "t"])).len(), 3);
    assert_eq!(t.scan_keys(&["t"]), rows_now);

    // move a tablet to the busiest other server: the move leaves the servers uneven, and the
    // balancer (on) must not undo an operator's move.
    let servers = t.json(&["servers"]);
    let servers: Vec<(String, u64)> = servers
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["server"].as_str().unwrap().to_owned(),
                s["tablets"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(servers.len(), 3, "{servers:?}");
    let tablets = t.json(&["tablets", "t"]);
    let first = &tablets[0];
    let (to, _) = servers
        .iter()
        .filter(|(s, _)| first["server"] != s.as_str())
        .max_by_key(|(_, n)| *n)
        .unwrap();
    let id = first["tablet"].as_u64().unwrap().to_string();
    let moved = t.json(&["move", &id, to]);
    assert_eq!(moved[0]["server"].as_str(), Some(to.as_str()), "{moved}");
    assert_eq!(t.scan_keys(&["t"]), rows_now);

    // flush and compactions. A flush takes the master's picture after the round the move
    // woke, so the tablets listed after it show whether that round moved the tablet back.
    assert_eq!(t.json(&["flush", "t"])["flushed"], true);
    let after = t.json(&["tablets", "t"]);
    let stayed = after
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["tablet"] == first["tablet"]);
    assert_eq!(
        stayed.map(|x| &x["server"]),
        Some(&Value::from(to.as_str())),
        "{after}"
    );
    assert_eq!(t.json(&["compact", "t"])["compacted"], "minor");
    assert_eq!(t.json(&["compact", "t", "--major"])["compacted"], "major");
    assert_eq!(t.value("t", "a1", "cf", "name").as_deref(), Some("name-a1"));

    // families: add, change the GC rule, drop; rows dropped by prefix.
    let added = t.json(&["add-family", "t", "extra:max_versions=1"]);
    assert_eq!(added["families"][2]["gc"], "max_versions=1", "{added}");
    let modified = t.json(&["modify-family", "t", "extra:max_age=1d"]);
    assert_eq!(modified["families"][2]["gc"], "max_age=1d", "{modified}");
    t.json(&["put", "t", "x1", "extra:q", "v"]);
    let dropped = t.json(&["drop-family", "t", "extra"]);
    assert_eq!(
        dropped["families"].as_array().unwrap().len(),
        2,
        "{dropped}"
    );
    assert_eq!(t.value("t", "x1", "extra", "q"), None);
    t.json(&["put", "t", "tmp-1", "cf:q", "v"]);
    t.json(&["put", "t", "tmp-2", "cf:q", "v"]);
    assert_eq!(
        t.json(&["drop-rows", "t", "--prefix", "tmp-"])["prefix"],
        "tmp-"
    );
    assert!(t.scan_keys(&["t", "--prefix", "tmp-"]).is_empty());
    assert_eq!(t.scan_keys(&["t"]), rows_now);

    // the balancer switch, seen in the status.
    assert_eq!(t.json(&["balancer", "off"])["balancer"], "off");
    assert_eq!(t.json(&["status"])["balancer_enabled"], false);
    assert_eq!(t.json(&["balancer", "on"])["previous"], "off");
    assert_eq!(t.json(&["status"])["balancer_enabled"], true);

    // status and every tablet listed.
    let status = t.json(&["status"]);
    assert_eq!(status["servers"], 3, "{status}");
    assert!(status["tables"].as_u64().unwrap() >= 1, "{status}");
    assert!(
        status["active_master"]
            .as_str()
            .unwrap()
            .contains("127.0.0.1:"),
        "{status}"
    );
    let every = t.json(&["tablets"]);
    assert!(
        every
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["table"] == "(metadata)"),
        "{every}"
    );

    // errors: a missing table is the cluster's not-found (exit 1), bad usage exits 2.
    let (code, error) = t.fails(&["get", "nope", "r"]);
    assert_eq!(
        (code, error["code"].as_str()),
        (1, Some("not-found")),
        "{error}"
    );
    let (code, error) = t.fails(&["describe", "nope"]);
    assert_eq!(
        (code, error["code"].as_str()),
        (1, Some("not-found")),
        "{error}"
    );
    let (code, _) = t.fails(&["create-table", "u", "--family", "cf:max_age=7w"]);
    assert_eq!(code, 2);
    let (code, error) = t.fails(&["put", "t", "r\\q", "cf:q", "v"]);
    assert_eq!(code, 2, "{error}");

    // delete-table: gone from the list, its rows unreachable.
    assert_eq!(t.json(&["delete-table", "t"])["deleted"], "t");
    let tables = t.json(&["tables"]);
    assert!(
        !tables.as_array().unwrap().iter().any(|x| x["name"] == "t"),
        "{tables}"
    );
    let (code, error) = t.fails(&["get", "t", "a1"]);
    assert_eq!(
        (code, error["code"].as_str()),
        (1, Some("not-found")),
        "{error}"
    );

    assert_eq!(cluster.terminate().await.code(), Some(0));
}
