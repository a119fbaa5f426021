//! `tabula put`, `tabula delete` and `tabula increment`: one row changed atomically through
//! the client library.
//!
//! `put` writes one cell (at `--timestamp` or the server's time); `delete` removes a whole
//! row, a family's cells or a column's cells; `increment` adds N to a column read as a
//! big-endian signed 64-bit integer (an absent cell counts as 0) with `ReadModifyWriteRow`,
//! and prints the new value as a number. An increment is not retried after an ambiguous
//! failure: the error then says the outcome is unknown.

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use serde_json::{Map, Value, json};
use tabula_client::{Client, Mutation, Rule};

use super::cluster::open_table;
use super::column::{Column, escaped_bytes, family_and_qualifier, family_or_column};
use super::escape::{escape, json_fields};
use crate::output::{OutputFormat, emit};

/// `tabula put`.
#[derive(Debug, Args)]
pub(crate) struct PutArgs {
    /// The table.
    pub(crate) table: String,
    /// The row key (escaped: `\xNN` for any byte, `\\` for a backslash).
    #[arg(value_parser = escaped_bytes, allow_hyphen_values = true)]
    pub(crate) row: Bytes,
    /// The column, FAMILY:QUALIFIER (the qualifier escaped).
    #[arg(value_parser = family_and_qualifier)]
    pub(crate) column: Column,
    /// The value (escaped).
    #[arg(value_parser = escaped_bytes, allow_hyphen_values = true)]
    pub(crate) value: Bytes,
    /// The cell's timestamp in microseconds since the Unix epoch (default: the server's time).
    #[arg(long, value_name = "MICROS", value_parser = clap::value_parser!(i64).range(0..))]
    pub(crate) timestamp: Option<i64>,
}

/// `tabula delete`.
#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    /// The table.
    pub(crate) table: String,
    /// The row key (escaped).
    #[arg(value_parser = escaped_bytes, allow_hyphen_values = true)]
    pub(crate) row: Bytes,
    /// What to delete: a family F (its cells in this row) or a column F:Q; default the row.
    #[arg(value_name = "F[:Q]", value_parser = family_or_column)]
    pub(crate) column: Option<Column>,
}

/// `tabula increment`.
#[derive(Debug, Args)]
pub(crate) struct IncrementArgs {
    /// The table.
    pub(crate) table: String,
    /// The row key (escaped).
    #[arg(value_parser = escaped_bytes, allow_hyphen_values = true)]
    pub(crate) row: Bytes,
    /// The counter's column, FAMILY:QUALIFIER.
    #[arg(value_parser = family_and_qualifier)]
    pub(crate) column: Column,
    /// What to add (may be negative).
    #[arg(allow_negative_numbers = true)]
    pub(crate) by: i64,
}

/// Runs `put`.
pub(crate) async fn put(client: Client, args: PutArgs, output: OutputFormat) -> anyhow::Result<()> {
    let table = open_table(&client, &args.table).await?;
    let mut cell = Mutation::set_cell(
        args.column.family.clone(),
        args.column.qualifier_bytes(),
        args.value.clone(),
    );
    if let Some(ts) = args.timestamp {
        cell = cell.at(ts);
    }
    table
        .mutate_row(args.row.clone(), vec![cell])
        .await
        .with_context(|| format!("put {} of {}", escape(&args.row), args.table))?;
    emit(
        output,
        || {
            format!(
                "put {} {} in {}",
                escape(&args.row),
                args.column,
                args.table
            )
        },
        || {
            let mut o = target(&args.table, &args.row);
            o.insert("column".to_owned(), args.column.to_string().into());
            o.insert("timestamp_micros".to_owned(), json!(args.timestamp));
            Value::Object(o)
        },
    )
}

/// Runs `delete`.
pub(crate) async fn delete(
    client: Client,
    args: DeleteArgs,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let table = open_table(&client, &args.table).await?;
    let mutation = match &args.column {
        None => Mutation::delete_row(),
        Some(Column {
            family,
            qualifier: None,
        }) => Mutation::delete_family(family.clone()),
        Some(Column {
            family,
            qualifier: Some(q),
        }) => Mutation::delete_column(family.clone(), q.clone()),
    };
    table
        .mutate_row(args.row.clone(), vec![mutation])
        .await
        .with_context(|| format!("delete from {} of {}", escape(&args.row), args.table))?;
    let what = args
        .column
        .as_ref()
        .map_or_else(|| "the row".to_owned(), Column::to_string);
    emit(
        output,
        || format!("deleted {what} of {} in {}", escape(&args.row), args.table),
        || {
            let mut o = target(&args.table, &args.row);
            o.insert(
                "deleted".to_owned(),
                match &args.column {
                    None => "row".into(),
                    Some(c) => c.to_string().into(),
                },
            );
            Value::Object(o)
        },
    )
}

/// Runs `increment`.
pub(crate) async fn increment(
    client: Client,
    args: IncrementArgs,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let table = open_table(&client, &args.table).await?;
    let rule = Rule::increment(
        args.column.family.clone(),
        args.column.qualifier_bytes(),
        args.by,
    );
    let row = table
        .read_modify_write_row(args.row.clone(), vec![rule])
        .await
        .with_context(|| format!("increment {} of {}", escape(&args.row), args.table))?;
    let cell = row
        .value(&args.column.family, &args.column.qualifier_bytes())
        .cloned()
        .unwrap_or_default();
    let value = counter(&cell).with_context(|| {
        format!(
            "the new value of {} is not an 8-byte counter: {}",
            args.column,
            escape(&cell)
        )
    })?;
    emit(
        output,
        || value.to_string(),
        || {
            let mut o = target(&args.table, &args.row);
            o.insert("column".to_owned(), args.column.to_string().into());
            o.insert("value".to_owned(), value.into());
            Value::Object(o)
        },
    )
}

/// A counter cell's value: 8 bytes, big-endian, signed.
pub(crate) fn counter(cell: &[u8]) -> anyhow::Result<i64> {
    let bytes: [u8; 8] = cell
        .try_into()
        .map_err(|_| anyhow::anyhow!("{} bytes, not 8", cell.len()))?;
    Ok(i64::from_be_bytes(bytes))
}

/// `{"table": .., "row": ..}` (with `row_base64` for a non-UTF-8 key).
fn target(table: &str, row: &[u8]) -> Map<String, Value> {
    let mut o = Map::new();
    o.insert("table".to_owned(), table.into());
    json_fields(&mut o, "row", row);
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_eight_big_endian_bytes() {
        assert_eq!(counter(&42i64.to_be_bytes()).unwrap(), 42);
        assert_eq!(counter(&(-7i64).to_be_bytes()).unwrap(), -7);
        assert!(counter(b"1").is_err());
    }
}
