//! `tabula verify`: reads the ack log, scans the whole table once through `Table::read_rows`
//! (newest version of each cell of the ingest family), feeds every decoded row to the
//! [`Tally`], and reports the counts: a table or one JSON object on stdout, then exit 1 unless
//! nothing acknowledged is lost and nothing is corrupt. Rows/s go to stderr every few seconds.
//!
//! Run it while no ingest writes the table: a node written after the scan passed its key but
//! pointing at one written before would look fine, the reverse would not (Accumulo's verify
//! has the same rule).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use tabula_client::{Client, Filter, RowSet};
use tokio::time::Instant;

use super::acks::{self, Acked};
use super::node::{FAMILY, decode, hex};
use super::tally::{Counts, Tally};
use crate::output::{self, OutputFormat};

/// How often a long scan reports its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Verifies `table` against the ack log at `ack_log` (`explicit`: the user named it, so it must
/// exist; else a missing file means nothing was acknowledged through it).
pub(super) async fn verify(
    lock: &[String],
    table: &str,
    ack_log: &Path,
    explicit: bool,
    format: OutputFormat,
) -> anyhow::Result<()> {
    let acked = if explicit || ack_log.exists() {
        acks::read_log(ack_log)?
    } else {
        eprintln!(
            "verify: no ack log at {}: checking links only",
            ack_log.display()
        );
        Acked::default()
    };
    if acked.torn_tail {
        eprintln!("verify: skipped the torn last line of the ack log (a killed ingest)");
    }
    eprintln!(
        "verify: {} acknowledged nodes in {} records of {}",
        acked.keys.len(),
        acked.records,
        ack_log.display()
    );
    let client = Client::connect(lock).await.context("connect")?;
    let handle = client
        .table(table)
        .await
        .with_context(|| format!("open table {table:?}"))?;
    let filter = Filter::family(FAMILY).and(Filter::latest(1));
    let mut rows = handle.read_rows(RowSet::all(), Some(filter));
    let mut tally = Tally::default();
    let started = Instant::now();
    let mut reported = (started, 0u64);
    while let Some(row) = rows.next_row().await {
        let row = row.with_context(|| format!("scan {table:?} after {} rows", tally.rows()))?;
        tally.add(&decode(&row));
        if reported.0.elapsed() >= PROGRESS_EVERY {
            let rate = (tally.rows() - reported.1) as f64 / reported.0.elapsed().as_secs_f64();
            eprintln!("verify: {} rows scanned, {rate:.0} rows/s", tally.rows());
            reported = (Instant::now(), tally.rows());
        }
    }
    eprintln!(
        "verify: scanned {} rows in {:.1} s",
        tally.rows(),
        started.elapsed().as_secs_f64()
    );
    let counts = tally.finish(&acked.keys);
    output::emit(format, || to_text(&counts), || to_json(&counts))?;
    if !counts.passed() {
        bail!(
            "verify failed: {} undefined, {} corrupt, {} acknowledged but missing",
            counts.undefined,
            counts.crc,
            counts.acked_missing
        );
    }
    Ok(())
}

/// The report as a table of counts, then the keys named.
fn to_text(c: &Counts) -> String {
    let rows: Vec<Vec<String>> = [
        ("ROWS", c.rows),
        ("REFERENCED", c.referenced),
        ("UNREFERENCED", c.unreferenced),
        ("UNDEFINED", c.undefined),
        ("CRC", c.crc),
        ("ACKED", c.acked),
        ("ACKED-MISSING", c.acked_missing),
    ]
    .iter()
    .map(|(name, n)| vec![(*name).to_owned(), n.to_string()])
    .collect();
    let mut text = output::table(&["COUNT", "NODES"], &rows);
    for (key, by) in &c.undefined_keys {
        text.push_str(&format!("\nundefined {key} (pointed at by {by})"));
    }
    for (row, why) in &c.crc_rows {
        text.push_str(&format!("\ncorrupt {}: {why}", hex(row)));
    }
    for key in &c.acked_missing_keys {
        text.push_str(&format!("\nacked but missing {key}"));
    }
    text.push_str(if c.passed() {
        "\nOK: no acknowledged node lost"
    } else {
        "\nFAILED"
    });
    text
}

/// The report as one JSON object (keys in lowercase hex).
fn to_json(c: &Counts) -> serde_json::Value {
    serde_json::json!({
        "passed": c.passed(),
        "rows": c.rows,
        "referenced": c.referenced,
        "unreferenced": c.unreferenced,
        "undefined": c.undefined,
        "crc": c.crc,
        "acked": c.acked,
        "acked_missing": c.acked_missing,
        "undefined_keys": c.undefined_keys.iter()
            .map(|(key, by)| serde_json::json!({ "key": key.to_string(), "referenced_by": by.to_string() }))
            .collect::<Vec<_>>(),
        "crc_rows": c.crc_rows.iter()
            .map(|(row, why)| serde_json::json!({ "row": hex(row), "error": why.to_string() }))
            .collect::<Vec<_>>(),
        "acked_missing_keys": c.acked_missing_keys.iter().map(ToString::to_string).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::ingest::node::{Corruption, node_key};

    fn failing() -> Counts {
        Counts {
            rows: 10,
            referenced: 8,
            unreferenced: 2,
            undefined: 1,
            crc: 1,
            acked: 9,
            acked_missing: 1,
            undefined_keys: vec![(node_key(1, 1), node_key(1, 2))],
            crc_rows: vec![(
                Bytes::from_static(b"\x01\xff"),
                Corruption::ChecksumMismatch,
            )],
            acked_missing_keys: vec![node_key(1, 1)],
        }
    }

    #[test]
    fn the_text_report_names_the_keys() {
        let text = to_text(&failing());
        assert!(
            text.starts_with("COUNT          NODES\nROWS           10\n"),
            "{text}"
        );
        assert!(text.contains(&format!(
            "undefined {} (pointed at by {})",
            node_key(1, 1),
            node_key(1, 2)
        )));
        assert!(text.contains("corrupt 01ff: checksum mismatch"), "{text}");
        assert!(text.ends_with("FAILED"), "{text}");
    }

    #[test]
    fn the_json_report_has_every_count_and_key() {
        let doc = to_json(&failing());
        assert_eq!(doc["passed"], false);
        assert_eq!(doc["undefined"], 1);
        assert_eq!(doc["acked_missing"], 1);
        assert_eq!(doc["crc"], 1);
        assert_eq!(doc["undefined_keys"][0]["key"], node_key(1, 1).to_string());
        assert_eq!(doc["crc_rows"][0]["row"], "01ff");
        assert_eq!(doc["acked_missing_keys"][0], node_key(1, 1).to_string());
    }
}
