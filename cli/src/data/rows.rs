//! How rows print, pure: one line per cell in table output (row, column, timestamp in
//! microseconds, the same as a UTC time, value; byte strings escaped), one JSON object per
//! row, and `--raw` values.
//!
//! The JSON object of a row (the schema `get`, `scan` and the README document):
//! `{"row": ESC, "cells": [{"family": STR, "qualifier": ESC, "timestamp_micros": INT,
//! "value": ESC}, ...]}` where ESC is the escaped form (`escape`) and each ESC field `x` is
//! joined by `x_base64` (standard base64 of the bytes) when the bytes are not UTF-8. Cells are
//! ordered by family, qualifier, then timestamp, newest first.

use serde_json::{Map, Value};
use tabula_client::{Cell, Row};

use super::escape::{escape, json_fields};
use super::timestamp::human;

/// The column headers of [`cell_lines`].
pub(crate) const CELL_HEADERS: [&str; 5] = ["ROW", "COLUMN", "TIMESTAMP", "TIME (UTC)", "VALUE"];

/// One table line per cell of `row`, under [`CELL_HEADERS`].
pub(crate) fn cell_lines(row: &Row) -> Vec<Vec<String>> {
    let key = escape(&row.key);
    row.cells
        .iter()
        .map(|c| {
            vec![
                key.clone(),
                format!("{}:{}", c.family, escape(&c.qualifier)),
                c.timestamp_micros.to_string(),
                human(c.timestamp_micros),
                escape(&c.value),
            ]
        })
        .collect()
}

/// The JSON object of `row` (see the module doc).
pub(crate) fn row_json(row: &Row) -> Map<String, Value> {
    let mut object = Map::new();
    json_fields(&mut object, "row", &row.key);
    object.insert(
        "cells".to_owned(),
        Value::Array(row.cells.iter().map(cell_json).collect()),
    );
    object
}

fn cell_json(cell: &Cell) -> Value {
    let mut object = Map::new();
    object.insert("family".to_owned(), cell.family.clone().into());
    json_fields(&mut object, "qualifier", &cell.qualifier);
    object.insert("timestamp_micros".to_owned(), cell.timestamp_micros.into());
    json_fields(&mut object, "value", &cell.value);
    if !cell.labels.is_empty() {
        object.insert("labels".to_owned(), cell.labels.clone().into());
    }
    Value::Object(object)
}

/// Every value of `row`, back to back, as raw bytes (`--raw`).
pub(crate) fn raw_values(row: &Row, out: &mut Vec<u8>) {
    for cell in &row.cells {
        out.extend_from_slice(&cell.value);
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::output::table;

    fn row() -> Row {
        let cell = |q: &'static [u8], ts, v: &'static [u8]| Cell {
            family: "cf".to_owned(),
            qualifier: Bytes::from_static(q),
            timestamp_micros: ts,
            value: Bytes::from_static(v),
            labels: Vec::new(),
        };
        Row {
            key: Bytes::from_static(b"user\\1\xff"),
            cells: vec![
                cell(b"name", 1_764_186_000_000_000, b"Ada"),
                cell(b"n\x00", 5, b"\x00\x00\x00\x00\x00\x00\x00\x2a"),
            ],
        }
    }

    #[test]
    fn cells_print_one_line_each_with_escapes_and_times() {
        let text = table(&CELL_HEADERS, &cell_lines(&row()));
        assert_eq!(
            text,
            "ROW          COLUMN    TIMESTAMP         TIME (UTC)                   VALUE\n\
             user\\\\1\\xff  cf:name   1764186000000000  2025-11-26T19:40:00.000000Z  Ada\n\
             user\\\\1\\xff  cf:n\\x00  5                 1970-01-01T00:00:00.000005Z  \
             \\x00\\x00\\x00\\x00\\x00\\x00\\x00*"
        );
    }

    #[test]
    fn a_row_as_json_escapes_and_adds_base64_for_non_utf8() {
        let json = Value::Object(row_json(&row()));
        assert_eq!(
            json,
            serde_json::json!({
                "row": "user\\\\1\\xff",
                "row_base64": "dXNlclwx/w==",
                "cells": [
                    {"family": "cf", "qualifier": "name", "timestamp_micros": 1_764_186_000_000_000i64,
                     "value": "Ada"},
                    {"family": "cf", "qualifier": "n\\x00", "timestamp_micros": 5,
                     "value": "\\x00\\x00\\x00\\x00\\x00\\x00\\x00*"},
                ],
            })
        );
    }

    #[test]
    fn raw_values_are_the_bytes_back_to_back() {
        let mut out = Vec::new();
        raw_values(&row(), &mut out);
        assert_eq!(out, b"Ada\x00\x00\x00\x00\x00\x00\x00\x2a");
    }
}
