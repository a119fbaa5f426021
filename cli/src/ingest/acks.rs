//! The ack log: one JSON line per acknowledged fresh batch,
//! `{"writer":SEED,"from":C,"to":D,"time_ms":T,"latency_us":L}` (nodes `C..D` of that writer,
//! `D` exclusive, acknowledged at unix time `T` ms after `L` µs), appended by `tabula ingest`
//! and read back by `tabula verify`, which regenerates the acknowledged keys from it, and by
//! scripts/soak_report.py, which derives availability and outages from the times.
//!
//! Writing: the writers hand records to a bounded channel; one thread owns the file, appends
//! each record and flushes whenever the channel is empty (no fsync per line: the log survives
//! the ingest process, not the machine). A record is sent only after its batch was
//! acknowledged, so every key the log names was acknowledged; a batch acknowledged just before
//! a SIGKILL may be missing from it, which only makes verify check less.
//!
//! Reading: the file may hold several runs (it is append-only). A last line without its newline
//! is the torn tail of a killed run and is skipped; any other line that does not parse is an
//! error.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use anyhow::{Context, anyhow, bail};
use tokio::sync::mpsc;

use super::node::{NodeKey, node_key};

/// Records waiting for the file thread before writers wait.
const CHANNEL_RECORDS: usize = 1024;
/// Most nodes one record may name (a bound on what a corrupt log makes verify generate).
const MAX_RECORD_NODES: u64 = 100_000_000;

/// One acknowledged batch: nodes `from..to` of `writer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct AckRecord {
    /// The writer's seed.
    pub(super) writer: u64,
    /// First count.
    pub(super) from: u64,
    /// One past the last count.
    pub(super) to: u64,
    /// When the batch was acknowledged, unix milliseconds (0: a log from before times).
    pub(super) time_ms: u64,
    /// From sending the batch to its acknowledgement, microseconds (retries included).
    pub(super) latency_us: u64,
}

impl AckRecord {
    /// Its line, without the newline.
    pub(super) fn to_line(self) -> String {
        serde_json::json!({
            "writer": self.writer,
            "from": self.from,
            "to": self.to,
            "time_ms": self.time_ms,
            "latency_us": self.latency_us,
        })
        .to_string()
    }

    /// Parses one line.
    pub(super) fn parse(line: &str) -> anyhow::Result<AckRecord> {
        let doc: serde_json::Value = serde_json::from_str(line).context("not JSON")?;
        let field = |name: &str| {
            doc.get(name)
                .and_then(serde_json::Value::as_u64)
                .ok_or_else(|| anyhow!("no unsigned integer {name:?}"))
        };
        let record = AckRecord {
            writer: field("writer")?,
            from: field("from")?,
            to: field("to")?,
            time_ms: field("time_ms").unwrap_or(0),
            latency_us: field("latency_us").unwrap_or(0),
        };
        if record.to < record.from || record.to - record.from > MAX_RECORD_NODES {
            bail!("bad range {}..{}", record.from, record.to);
        }
        Ok(record)
    }

    /// The keys it names.
    pub(super) fn keys(self) -> impl Iterator<Item = NodeKey> {
        (self.from..self.to).map(move |count| node_key(self.writer, count))
    }
}

/// Where writers send records.
pub(super) type AckSender = mpsc::Sender<AckRecord>;

/// The open ack log: a channel and the thread appending its records to the file.
#[derive(Debug)]
pub(super) struct AckLog {
    path: PathBuf,
    sender: AckSender,
    thread: JoinHandle<io::Result<u64>>,
}

impl AckLog {
    /// Opens `path` for appending (creating it) and starts its thread.
    pub(super) fn open(path: &Path) -> anyhow::Result<AckLog> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("open the ack log {}", path.display()))?;
        let (sender, receiver) = mpsc::channel(CHANNEL_RECORDS);
        let thread = std::thread::Builder::new()
            .name("ingest-ack-log".to_owned())
            .spawn(move || append(file, receiver))
            .context("start the ack-log thread")?;
        Ok(AckLog {
            path: path.to_owned(),
            sender,
            thread,
        })
    }

    /// A sender for one writer.
    pub(super) fn sender(&self) -> AckSender {
        self.sender.clone()
    }

    /// Waits until every record sent is in the file (every other sender must be dropped);
    /// answers how many records this run appended.
    pub(super) async fn close(self) -> anyhow::Result<u64> {
        let AckLog {
            path,
            sender,
            thread,
        } = self;
        drop(sender);
        let joined = tokio::task::spawn_blocking(move || thread.join())
            .await
            .context("join the ack-log thread")?;
        match joined {
            Ok(result) => result.with_context(|| format!("append to {}", path.display())),
            Err(_) => bail!("the ack-log thread panicked"),
        }
    }
}

/// The file thread: appends every record, flushing when no more are waiting; ends when every
/// sender is gone, after syncing the file.
fn append(file: File, mut receiver: mpsc::Receiver<AckRecord>) -> io::Result<u64> {
    let mut out = BufWriter::new(file);
    let mut written = 0u64;
    while let Some(record) = receiver.blocking_recv() {
        writeln!(out, "{}", record.to_line())?;
        written += 1;
        if receiver.is_empty() {
            out.flush()?;
        }
    }
    out.flush()?;
    out.get_ref().sync_data()?;
    Ok(written)
}

/// The acknowledged keys of an ack log.
#[derive(Debug, Default)]
pub(super) struct Acked {
    /// Every key the log names.
    pub(super) keys: HashSet<NodeKey>,
    /// Records read.
    pub(super) records: u64,
    /// Whether a torn last line was skipped.
    pub(super) torn_tail: bool,
}

/// Reads the ack log `text` (the whole file).
pub(super) fn parse_log(text: &str) -> anyhow::Result<Acked> {
    let mut acked = Acked::default();
    let complete = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match AckRecord::parse(line) {
            Ok(record) => {
                acked.keys.extend(record.keys());
                acked.records += 1;
            }
            Err(_) if i + 1 == lines.len() && !complete => acked.torn_tail = true,
            Err(e) => return Err(e.context(format!("line {}: {line:?}", i + 1))),
        }
    }
    Ok(acked)
}

/// Reads the ack log at `path`.
pub(super) fn read_log(path: &Path) -> anyhow::Result<Acked> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("read the ack log {}", path.display()))?;
    parse_log(&text).with_context(|| format!("ack log {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_through_its_line() {
        let record = AckRecord {
            writer: u64::MAX,
            from: 200,
            to: 400,
            time_ms: 1_700_000_000_123,
            latency_us: 4_567,
        };
        assert_eq!(AckRecord::parse(&record.to_line()).unwrap(), record);
        assert!(AckRecord::parse(r#"{"writer":1,"from":5,"to":4}"#).is_err());
        assert!(AckRecord::parse(r#"{"writer":-1,"from":0,"to":4}"#).is_err());
    }

    #[test]
    fn a_log_names_every_key_of_its_records() {
        let text = "{\"writer\":7,\"from\":0,\"to\":3}\n\n{\"writer\":8,\"from\":10,\"to\":11}\n";
        let acked = parse_log(text).unwrap();
        assert_eq!(acked.records, 2);
        assert!(!acked.torn_tail);
        let want: HashSet<NodeKey> = [
            node_key(7, 0),
            node_key(7, 1),
            node_key(7, 2),
            node_key(8, 10),
        ]
        .into_iter()
        .collect();
        assert_eq!(acked.keys, want);
    }

    #[test]
    fn only_a_torn_last_line_is_skipped() {
        let torn = "{\"writer\":7,\"from\":0,\"to\":1}\n{\"writer\":7,\"fr";
        let acked = parse_log(torn).unwrap();
        assert_eq!((acked.records, acked.torn_tail), (1, true));
        let bad_middle = "{\"writer\":7,\"fr\n{\"writer\":7,\"from\":0,\"to\":1}\n";
        let err = parse_log(bad_middle).unwrap_err();
        assert!(format!("{err:#}").contains("line 1"), "{err:#}");
    }

    #[tokio::test]
    async fn records_sent_are_in_the_file_after_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acks.jsonl");
        std::fs::write(&path, "{\"writer\":1,\"from\":0,\"to\":1}\n").unwrap();
        let log = AckLog::open(&path).unwrap();
        let sender = log.sender();
        for i in 0..10 {
            let record = AckRecord {
                writer: 2,
                from: i * 5,
                to: i * 5 + 5,
                time_ms: 0,
                latency_us: 0,
            };
            sender.send(record).await.unwrap();
        }
        drop(sender);
        assert_eq!(log.close().await.unwrap(), 10);
        let acked = read_log(&path).unwrap();
        assert_eq!(acked.records, 11, "appended after the earlier run's line");
        assert_eq!(acked.keys.len(), 51);
    }
}
