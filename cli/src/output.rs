//! The `--output` format shared by every command, and the few ways commands print.
//!
//! Every result goes to stdout and is flushed at once: a command that streams (`lock watch`,
//! `lock hold`) prints one line per event, in JSON one object per line (newline-delimited
//! JSON), so a reading process sees each event when it happens.

use std::io::Write;

use clap::ValueEnum;

/// How a command prints its results and errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OutputFormat {
    /// Human-readable text and aligned tables.
    Table,
    /// JSON for scripts: one document, or one object per line for streaming commands.
    Json,
}

/// Prints `text` (a line or several, without the final newline) to stdout and flushes it.
pub(crate) fn print_flushed(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()?;
    Ok(())
}

/// Prints a result: `text` for `--output table`, `json` on one line for `--output json`.
pub(crate) fn emit(
    output: OutputFormat,
    text: impl FnOnce() -> String,
    json: impl FnOnce() -> serde_json::Value,
) -> anyhow::Result<()> {
    match output {
        OutputFormat::Table => print_flushed(&text()),
        OutputFormat::Json => print_flushed(&json().to_string()),
    }
}

/// `rows` under `headers` in left-aligned columns two spaces apart, without trailing spaces
/// or a final newline.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            let width = cell.chars().count();
            match widths.get_mut(i) {
                Some(w) => *w = (*w).max(width),
                None => widths.push(width),
            }
        }
    }
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    std::iter::once(&header)
        .chain(rows)
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(i, cell)| {
                    let width = widths.get(i).copied().unwrap_or(0);
                    format!("{cell:<width$}")
                })
                .collect();
            cells.join("  ").trim_end().to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_aligns_columns_to_the_widest_cell() {
        let rows = vec![
            vec![
                "1".to_owned(),
                "127.0.0.1:17101".to_owned(),
                "voter".to_owned(),
            ],
            vec!["12".to_owned(), "h:1".to_owned(), String::new()],
        ];
        assert_eq!(
            table(&["ID", "ADDR", "ROLE"], &rows),
            "ID  ADDR             ROLE\n\
             1   127.0.0.1:17101  voter\n\
             12  h:1"
        );
    }
}
