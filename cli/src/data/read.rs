//! `tabula get` and `tabula scan`: rows through the client library, printed as `rows` says.
//!
//! `get` reads one row (`--output json`: one object, with `"found"`); `scan` streams the rows
//! of a range in row order, or descending with `--reverse` (`--output json`: one object per row per line, nothing for no
//! rows; table output: aligned in pages of [`PAGE_ROWS`] rows, the header once). `--column`
//! keeps one family or column, `--versions N` the newest N cells of each column, and `--raw`
//! writes only the values' bytes, back to back, whatever `--output` says.

use std::io::Write;

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use serde_json::Value;
use tabula_client::{Client, Filter, ReadOptions, Row, RowRange, RowSet};

use super::cluster::open_table;
use super::column::{Column, escaped_bytes, family_or_column};
use super::escape::escape;
use super::rows::{CELL_HEADERS, cell_lines, raw_values, row_json};
use crate::output::{OutputFormat, print_flushed, table};

/// Rows aligned together in `scan`'s table output.
const PAGE_ROWS: usize = 100;

/// `tabula get`.
#[derive(Debug, Args)]
pub(crate) struct GetArgs {
    /// The table.
    pub(crate) table: String,
    /// The row key (escaped: `\xNN` for any byte, `\\` for a backslash).
    #[arg(value_parser = escaped_bytes, allow_hyphen_values = true)]
    pub(crate) row: Bytes,
    #[command(flatten)]
    pub(crate) cells: CellOptions,
}

/// `tabula scan`.
#[derive(Debug, Args)]
pub(crate) struct ScanArgs {
    /// The table.
    pub(crate) table: String,
    /// First row (inclusive; escaped like every key).
    #[arg(long, value_parser = escaped_bytes, value_name = "ROW", allow_hyphen_values = true)]
    pub(crate) start: Option<Bytes>,
    /// Row to stop before (exclusive).
    #[arg(long, value_parser = escaped_bytes, value_name = "ROW", allow_hyphen_values = true)]
    pub(crate) end: Option<Bytes>,
    /// Only rows beginning with P.
    #[arg(long, value_parser = escaped_bytes, value_name = "P", conflicts_with_all = ["start", "end"], allow_hyphen_values = true)]
    pub(crate) prefix: Option<Bytes>,
    /// At most N rows (with --reverse: the last N).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) limit: Option<u64>,
    /// Rows in descending row order.
    #[arg(long)]
    pub(crate) reverse: bool,
    #[command(flatten)]
    pub(crate) cells: CellOptions,
}

/// Which cells of each row, and how values print.
#[derive(Debug, Args)]
pub(crate) struct CellOptions {
    /// Only this family (F) or column (F:Q).
    #[arg(long, value_name = "F[:Q]", value_parser = family_or_column)]
    pub(crate) column: Option<Column>,
    /// Only the newest N versions of each column (default: every version).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub(crate) versions: Option<u32>,
    /// Write only the values, as raw bytes back to back (no escapes, no newline).
    #[arg(long)]
    pub(crate) raw: bool,
}

impl CellOptions {
    fn filter(&self) -> Option<Filter> {
        let column = self.column.as_ref().map(Column::filter);
        let versions = self
            .versions
            .map(|n| Filter::latest(i32::try_from(n).unwrap_or(i32::MAX)));
        match (column, versions) {
            (Some(c), Some(v)) => Some(c.and(v)),
            (c, v) => c.or(v),
        }
    }
}

/// The row set of a scan: a prefix, or `[start, end)`.
pub(crate) fn scan_range(
    start: Option<Bytes>,
    end: Option<Bytes>,
    prefix: Option<Bytes>,
) -> RowRange {
    use std::ops::Bound;
    if let Some(prefix) = prefix {
        return RowRange::prefix(prefix);
    }
    RowRange {
        start: start
            .filter(|s| !s.is_empty())
            .map_or(Bound::Unbounded, Bound::Included),
        end: end.map_or(Bound::Unbounded, Bound::Excluded),
    }
}

/// Runs `get`.
pub(crate) async fn get(client: Client, args: GetArgs, output: OutputFormat) -> anyhow::Result<()> {
    let handle = open_table(&client, &args.table).await?;
    let row = handle
        .read_row(args.row.clone(), args.cells.filter())
        .await
        .with_context(|| format!("read row {} of {}", escape(&args.row), args.table))?;
    if args.cells.raw {
        let mut out = Vec::new();
        if let Some(row) = &row {
            raw_values(row, &mut out);
        }
        return write_raw(&out);
    }
    match (output, row) {
        (OutputFormat::Json, row) => {
            let found = row.is_some();
            let row = row.unwrap_or(Row {
                key: args.row,
                cells: Vec::new(),
            });
            let mut object = row_json(&row);
            object.insert("found".to_owned(), found.into());
            print_flushed(&Value::Object(object).to_string())
        }
        (OutputFormat::Table, Some(row)) => print_flushed(&table(&CELL_HEADERS, &cell_lines(&row))),
        (OutputFormat::Table, None) => {
            eprintln!("row {} not found in {}", escape(&args.row), args.table);
            Ok(())
        }
    }
}

/// Runs `scan`.
pub(crate) async fn scan(
    client: Client,
    args: ScanArgs,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let handle = open_table(&client, &args.table).await?;
    let range = scan_range(args.start, args.end, args.prefix);
    let options = ReadOptions {
        filter: args.cells.filter(),
        rows_limit: args.limit,
        reversed: args.reverse,
    };
    let mut rows = handle.read_rows_with(RowSet::new().range(range), options);
    let mut page: Vec<Vec<String>> = Vec::new();
    let mut page_rows = 0;
    let mut header = true;
    while let Some(row) = rows.next_row().await {
        let row = row.with_context(|| format!("scan {}", args.table))?;
        if args.cells.raw {
            let mut out = Vec::new();
            raw_values(&row, &mut out);
            write_raw(&out)?;
            continue;
        }
        match output {
            OutputFormat::Json => print_flushed(&Value::Object(row_json(&row)).to_string())?,
            OutputFormat::Table => {
                page.extend(cell_lines(&row));
                page_rows += 1;
                if page_rows == PAGE_ROWS {
                    print_page(&page, header)?;
                    header = false;
                    page.clear();
                    page_rows = 0;
                }
            }
        }
    }
    if output == OutputFormat::Table && !args.cells.raw && (header || !page.is_empty()) {
        print_page(&page, header)?;
    }
    Ok(())
}

/// Prints cell lines aligned, with the header line if `header`.
fn print_page(lines: &[Vec<String>], header: bool) -> anyhow::Result<()> {
    let text = table(&CELL_HEADERS, lines);
    let text = if header {
        text.as_str()
    } else {
        text.split_once('\n').map_or("", |(_, rest)| rest)
    };
    if text.is_empty() {
        return Ok(());
    }
    print_flushed(text)
}

/// Writes `bytes` to stdout as they are.
fn write_raw(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::ops::Bound;

    use super::*;

    #[test]
    fn a_scan_range_is_a_prefix_or_start_to_end() {
        assert_eq!(scan_range(None, None, None), RowRange::all());
        assert_eq!(
            scan_range(Some(Bytes::from("b")), Some(Bytes::from("d")), None),
            RowRange::closed_open("b", "d")
        );
        assert_eq!(
            scan_range(None, Some(Bytes::from("d")), None),
            RowRange {
                start: Bound::Unbounded,
                end: Bound::Excluded(Bytes::from("d")),
            }
        );
        assert_eq!(
            scan_range(None, None, Some(Bytes::from("user#"))),
            RowRange::prefix("user#")
        );
    }

    #[test]
    fn cell_options_make_a_filter_only_when_asked() {
        let none = CellOptions {
            column: None,
            versions: None,
            raw: false,
        };
        assert!(none.filter().is_none());
        let both = CellOptions {
            column: Some(family_or_column("cf:q").unwrap()),
            versions: Some(2),
            raw: false,
        };
        let want = Filter::family("cf")
            .and(Filter::qualifier("q"))
            .and(Filter::latest(2));
        assert_eq!(
            both.filter().map(Filter::into_proto),
            Some(want.into_proto())
        );
    }
}
