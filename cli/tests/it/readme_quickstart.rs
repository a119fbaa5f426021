//! The README's Quickstart, run as written: its ```sh block is taken from README.md, every
//! `tabula ...` line runs (a `cargo run ... -p tabula --` prefix would map to the binary too)
//! against one `tabula local` cluster through `TABULA_LOCK`, and must exit 0; every row the
//! block puts shows up in a later `get` or `scan`; a `--output json` line prints JSON; and
//! after `split` the table lists one tablet more than before it. So the README cannot rot.

#![allow(clippy::unwrap_used)]

use std::process::Command;

use crate::support::BIN;
use crate::support::local::{LocalCluster, free_port_block};

const README: &str = include_str!("../../../README.md");

/// The lines of the ```sh block under `## Quickstart`.
fn quickstart_lines() -> Vec<&'static str> {
    let section = README
        .split_once("## Quickstart")
        .expect("README.md has a Quickstart section")
        .1;
    let block = section
        .split_once("```sh\n")
        .expect("the Quickstart has a ```sh block")
        .1;
    let block = block.split_once("\n```").expect("the block ends").0;
    block
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// Splits a shell line into words: blanks separate, '...' quotes literally, a `#` word starts
/// a comment. Enough for the README; anything fancier fails the test.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word: Option<String> = None;
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                word.get_or_insert_with(String::new);
            }
            c if c.is_whitespace() && !quoted => out.extend(word.take()),
            '#' if !quoted && word.is_none() => break,
            c => {
                assert!(
                    quoted || !"\"$`|&;<>(){}*?".contains(c),
                    "the README line {line:?} needs a real shell ({c:?})"
                );
                word.get_or_insert_with(String::new).push(c);
            }
        }
    }
    assert!(!quoted, "unbalanced quote in {line:?}");
    out.extend(word);
    out
}

/// The `tabula` arguments of a README line: after `tabula`, or after `cargo run ... --`.
fn tabula_args(line: &str) -> Vec<String> {
    let words = words(line);
    match words.first().map(String::as_str) {
        Some("tabula") => words[1..].to_vec(),
        Some("cargo") => {
            let dash = words.iter().position(|w| w == "--").unwrap();
            words[dash + 1..].to_vec()
        }
        _ => panic!("the Quickstart line {line:?} is not a tabula command"),
    }
}

#[test]
fn shell_words_split_like_sh() {
    assert_eq!(
        words("tabula put t 'a b\\x00' cf:q v  # note"),
        ["tabula", "put", "t", "a b\\x00", "cf:q", "v"]
    );
    assert_eq!(
        tabula_args("cargo run --release -p tabula -- get t r"),
        ["get", "t", "r"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_quickstart_runs_as_written() {
    let lines = quickstart_lines();
    assert!(lines.len() >= 8, "a short Quickstart: {lines:?}");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cluster");
    let base = free_port_block();
    let mut cluster = LocalCluster::start(&dir, &["--base-port".into(), base.to_string()], 1);
    let lock = cluster.wait_ready().await.join(",");

    let mut put_rows: Vec<(String, usize)> = Vec::new();
    let mut reads: Vec<(usize, String)> = Vec::new();
    let mut tablets_before_split: Option<usize> = None;
    let mut tablets_seen: Vec<(usize, usize)> = Vec::new();
    let mut split_at = None;
    for (i, line) in lines.iter().enumerate() {
        let args = tabula_args(line);
        let out = Command::new(BIN)
            .args(&args)
            .env("TABULA_LOCK", &lock)
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(
            out.status.code(),
            Some(0),
            "README line {line:?} failed\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json = args
            .windows(2)
            .any(|w| w[0] == "--output" && w[1] == "json");
        if json {
            for l in stdout.lines() {
                serde_json::from_str::<serde_json::Value>(l)
                    .unwrap_or_else(|e| panic!("README line {line:?}: {e} in {l:?}"));
            }
        }
        match args[0].as_str() {
            "put" => put_rows.push((args[2].clone(), i)),
            "get" | "scan" => reads.push((i, stdout)),
            "split" => {
                tablets_before_split = tablets_seen.last().map(|(_, n)| *n);
                split_at = Some(i);
            }
            "tablets" if !json => tablets_seen.push((i, stdout.lines().count() - 1)),
            _ => {}
        }
    }
    // Every row put shows up, escaped as typed, in some later read.
    for (row, at) in &put_rows {
        assert!(
            reads
                .iter()
                .any(|(i, out)| i > at && out.contains(row.as_str())),
            "row {row:?} put on README line {} never shows in a later get or scan",
            at + 1
        );
    }
    // A split adds a tablet.
    if let Some(split) = split_at {
        let before = tablets_before_split.expect("`tabula tablets` before the split");
        let after = tablets_seen
            .iter()
            .find(|(i, _)| *i > split)
            .expect("`tabula tablets` after the split")
            .1;
        assert_eq!(
            after,
            before + 1,
            "tablets before the split {before}, after {after}"
        );
    }
    assert_eq!(cluster.terminate().await.code(), Some(0));
}
