//! The data commands, `tabula put | get | scan | delete | increment`: rows of a table through
//! the client library, against the cluster named by the global `--lock` (default: the local
//! cluster's cell, see `cluster`).
//!
//! Byte strings (row keys, qualifiers, values, prefixes) are typed and printed escaped:
//! printable ASCII as is, `\\` for a backslash, `\xNN` for any other byte (`escape`).
//!
//! Reading order: `escape`, `column` (argument parsing), `timestamp`, `rows` (how rows print),
//! `cluster` (reaching the cluster), then the commands: `read` (`get`, `scan`), `write`
//! (`put`, `delete`, `increment`). `cluster` and `escape` are shared with `admin`.

pub(crate) mod cluster;
pub(crate) mod column;
pub(crate) mod escape;
mod read;
mod rows;
pub(crate) mod timestamp;
mod write;

use clap::Subcommand;

use crate::output::OutputFormat;

/// The data commands, flattened into `tabula`'s top level.
#[derive(Debug, Subcommand)]
pub(crate) enum DataCommand {
    /// Write one cell: put TABLE ROW FAMILY:QUALIFIER VALUE (ROW, QUALIFIER and VALUE
    /// escaped: \xNN for any byte, \\ for a backslash).
    Put(write::PutArgs),
    /// Read one row. JSON (--output json): {"row", "found", "cells": [{"family",
    /// "qualifier", "timestamp_micros", "value"}]}, byte strings escaped, plus "<field>_base64"
    /// for bytes that are not UTF-8.
    Get(read::GetArgs),
    /// Read rows in row order (descending with --reverse): [--start ROW] [--end ROW] or
    /// --prefix P, --limit N. JSON: one object per row per line, as `get` prints (without
    /// "found").
    Scan(read::ScanArgs),
    /// Delete a whole row, a family's cells (F) or a column's cells (F:Q) of a row.
    Delete(write::DeleteArgs),
    /// Add N to a counter column (8 bytes, big-endian; absent = 0) atomically; prints the
    /// new value.
    Increment(write::IncrementArgs),
}

/// Runs one data command against the cluster at `lock` (`--lock`).
pub(crate) fn run(
    command: DataCommand,
    lock: &[String],
    output: OutputFormat,
) -> anyhow::Result<()> {
    cluster::run(lock, |client| async move {
        match command {
            DataCommand::Put(args) => write::put(client, args, output).await,
            DataCommand::Get(args) => read::get(client, args, output).await,
            DataCommand::Scan(args) => read::scan(client, args, output).await,
            DataCommand::Delete(args) => write::delete(client, args, output).await,
            DataCommand::Increment(args) => write::increment(client, args, output).await,
        }
    })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use clap::Parser;

    use super::*;

    /// Parses `tabula ARGS...` for the data commands alone.
    #[derive(Debug, Parser)]
    struct Data {
        #[command(subcommand)]
        command: DataCommand,
    }

    fn parse(args: &[&str]) -> Result<DataCommand, clap::Error> {
        Data::try_parse_from(std::iter::once("tabula").chain(args.iter().copied()))
            .map(|d| d.command)
    }

    #[test]
    fn put_takes_escaped_bytes_and_a_timestamp() {
        let DataCommand::Put(put) =
            parse(&["put", "t", "r\\x00", "cf:q", "-v\\\\", "--timestamp", "7"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(put.row, Bytes::from_static(b"r\x00"));
        assert_eq!(put.column.to_string(), "cf:q");
        assert_eq!(put.value, Bytes::from_static(b"-v\\"));
        assert_eq!(put.timestamp, Some(7));
    }

    #[test]
    fn get_scan_delete_and_increment_parse() {
        let DataCommand::Get(get) = parse(&[
            "get",
            "t",
            "r",
            "--column",
            "cf",
            "--versions",
            "2",
            "--raw",
        ])
        .unwrap() else {
            panic!()
        };
        assert_eq!(get.cells.column.unwrap().family, "cf");
        assert_eq!((get.cells.versions, get.cells.raw), (Some(2), true));
        let DataCommand::Scan(scan) = parse(&[
            "scan",
            "t",
            "--start",
            "a",
            "--end",
            "z\\xff",
            "--limit",
            "3",
            "--reverse",
        ])
        .unwrap() else {
            panic!()
        };
        assert_eq!(scan.end, Some(Bytes::from_static(b"z\xff")));
        assert_eq!((scan.limit, scan.reverse), (Some(3), true));
        let DataCommand::Delete(delete) = parse(&["delete", "t", "r"]).unwrap() else {
            panic!()
        };
        assert_eq!(delete.column, None);
        let DataCommand::Increment(inc) = parse(&["increment", "t", "r", "cf:n", "-3"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(inc.by, -3);
    }

    #[test]
    fn bad_data_arguments_are_usage_errors() {
        let usage = |args: &[&str]| {
            let err = parse(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}: {err}");
        };
        usage(&["put", "t", "r", "cf", "v"]);
        usage(&["put", "t", "r\\q", "cf:q", "v"]);
        usage(&["put", "t", "r", "cf:q", "v", "--timestamp", "-5"]);
        usage(&["get", "t", "r", "--versions", "0"]);
        usage(&["get", "t", "r", "--column", "bad family"]);
        usage(&["scan", "t", "--prefix", "a", "--start", "b"]);
        usage(&["scan", "t", "--limit", "0"]);
        usage(&["increment", "t", "r", "cf:n", "x"]);
        usage(&["delete", "t", "r", ":q"]);
    }
}
