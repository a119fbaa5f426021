//! The fault log `DIR/agitator.jsonl`: one JSON object per line for every fault the agitator
//! fires and every consequence it sees, appended and flushed as it happens (so outages seen
//! by a client can be lined up with faults), plus one human line on stderr.
//!
//! ```json
//! {"time_ms":1764180000000,"kind":"tablet","target":"ts-2","pid":4242,"action":"kill","ok":true,"error":null}
//! ```
//! `kind` is a fault (`master`, `tablet`, `lock`, `pause`, `admin`) or a consequence: `resume`
//! (the paused server was continued) and `restart` (a process came back: `pid` is the new
//! one). `action`: `kill`, `stop`, `cont`, `start`, or the admin operation (`split`, `move`,
//! `merge`, `flush`, `compact`, `major-compact`). `ok` false with `error` when the fault could
//! not be made (an admin operation refused, a signal not sent). An admin entry is stamped with
//! the operation's start and written when it ends, so it may follow later lines.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::json;

/// The log's file name in the cluster directory.
pub(crate) const FILE_NAME: &str = "agitator.jsonl";

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Milliseconds since the Unix epoch.
    pub(crate) time_ms: u64,
    pub(crate) kind: &'static str,
    /// A process name (`ts-2`), or `table/tablet` or a table for admin operations.
    pub(crate) target: String,
    pub(crate) pid: Option<u32>,
    pub(crate) action: &'static str,
    /// Set when the fault could not be made.
    pub(crate) error: Option<String>,
    /// A note for people (stderr only), e.g. the server id of a restarted tablet server.
    pub(crate) note: Option<String>,
}

impl Entry {
    /// A fault (or consequence) that happened.
    pub(crate) fn ok(
        time_ms: u64,
        kind: &'static str,
        target: impl Into<String>,
        pid: Option<u32>,
        action: &'static str,
    ) -> Entry {
        Entry {
            time_ms,
            kind,
            target: target.into(),
            pid,
            action,
            error: None,
            note: None,
        }
    }

    /// The same entry, failed with `error`.
    pub(crate) fn failed(mut self, error: impl Into<String>) -> Entry {
        self.error = Some(error.into());
        self
    }

    /// The same entry with a note for people.
    pub(crate) fn noted(mut self, note: impl Into<String>) -> Entry {
        self.note = Some(note.into());
        self
    }

    /// Its line in the log (no newline).
    pub(crate) fn json(&self) -> String {
        json!({
            "time_ms": self.time_ms,
            "kind": self.kind,
            "target": self.target,
            "pid": self.pid,
            "action": self.action,
            "ok": self.error.is_none(),
            "error": self.error,
        })
        .to_string()
    }

    /// Its line on stderr.
    pub(crate) fn human(&self) -> String {
        let pid = self.pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
        let note = self
            .note
            .as_ref()
            .map(|n| format!(" [{n}]"))
            .unwrap_or_default();
        match &self.error {
            None => format!(
                "agitator: {} {} {}{pid}{note}",
                self.kind, self.action, self.target
            ),
            Some(e) => format!(
                "agitator: {} {} {}{pid} failed: {e}{note}",
                self.kind, self.action, self.target
            ),
        }
    }
}

/// The open log.
#[derive(Debug)]
pub(crate) struct FaultLog {
    path: PathBuf,
    file: File,
}

impl FaultLog {
    /// Opens (creating it if needed) `dir/agitator.jsonl` for appending.
    pub(crate) fn open(dir: &Path) -> anyhow::Result<FaultLog> {
        let path = dir.join(FILE_NAME);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("open the fault log {}", path.display()))?;
        Ok(FaultLog { path, file })
    }

    /// Appends `entry` as one line (one write, flushed) and prints its human line. A log that
    /// cannot be written is reported on stderr; the agitator goes on.
    pub(crate) fn record(&mut self, entry: &Entry) {
        eprintln!("{}", entry.human());
        let line = entry.json() + "\n";
        let written = self
            .file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.flush());
        if let Err(e) = written {
            eprintln!("agitator: cannot append to {}: {e}", self.path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::Value;

    use super::*;

    #[test]
    fn entries_are_one_json_object_per_line_appended() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = FaultLog::open(dir.path()).unwrap();
        log.record(&Entry::ok(17, "tablet", "ts-2", Some(4242), "kill"));
        log.record(&Entry::ok(18, "admin", "t/0000000000000005", None, "merge").failed("refused"));
        drop(log);
        let mut log = FaultLog::open(dir.path()).unwrap();
        log.record(&Entry::ok(19, "restart", "ts-2", Some(5151), "start").noted("ts-2-1-1"));
        let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines[0],
            serde_json::json!({"time_ms": 17, "kind": "tablet", "target": "ts-2",
                "pid": 4242, "action": "kill", "ok": true, "error": null})
        );
        assert_eq!(lines[1]["ok"], false);
        assert_eq!(lines[1]["error"], "refused");
        assert_eq!(lines[1]["pid"], Value::Null);
        assert_eq!(lines[2]["kind"], "restart");
        assert!(!text.contains("ts-2-1-1"), "the note is for people only");
    }

    #[test]
    fn the_human_line_names_the_fault_and_its_outcome() {
        let e = Entry::ok(1, "pause", "ts-1", Some(9), "stop");
        assert_eq!(e.human(), "agitator: pause stop ts-1 (pid 9)");
        let e = Entry::ok(1, "admin", "t", None, "flush").failed("no master");
        assert_eq!(e.human(), "agitator: admin flush t failed: no master");
    }
}
