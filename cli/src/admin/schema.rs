//! `tabula add-family | modify-family | drop-family | drop-rows`: a table's column families
//! and bulk row deletion through the active master.
//!
//! The family commands send one `ModifyColumnFamilies` (all or nothing) and print the table
//! with its new families (the JSON of `tables`). A dropped family's cells are hidden at once
//! and removed by the next major compaction. `drop-rows` deletes every row starting with a
//! prefix (`--prefix`, escaped) or every row (`--all`), tablet by tablet on their servers.

use bytes::Bytes;
use clap::Args;
use serde_json::{Value, json};
use tabula_client::{Client, Family, FamilyChange};

use super::family::parse_family;
use super::tables::{family_lines, table_json};
use crate::data::column::{check_family, escaped_bytes};
use crate::data::escape::{escape, json_fields};
use crate::exit::UsageError;
use crate::output::{OutputFormat, emit, table};

/// `tabula add-family` and `tabula modify-family`.
#[derive(Debug, Args)]
pub(crate) struct FamiliesArgs {
    /// The table.
    pub(crate) table: String,
    /// NAME[:max_versions=N][:max_age=D], as `create-table --family` takes (one or more).
    #[arg(value_name = "SPEC", required = true, value_parser = parse_family)]
    pub(crate) families: Vec<Family>,
}

/// `tabula drop-family`.
#[derive(Debug, Args)]
pub(crate) struct DropFamilyArgs {
    /// The table.
    pub(crate) table: String,
    /// The families to drop, with all their cells.
    #[arg(value_name = "NAME", required = true, value_parser = family_name)]
    pub(crate) names: Vec<String>,
}

/// `tabula drop-rows`.
#[derive(Debug, Args)]
pub(crate) struct DropRowsArgs {
    /// The table.
    pub(crate) table: String,
    /// Delete every row starting with P (escaped; not empty).
    #[arg(
        long,
        value_name = "P",
        value_parser = escaped_bytes,
        allow_hyphen_values = true,
        conflicts_with = "all",
        required_unless_present = "all"
    )]
    pub(crate) prefix: Option<Bytes>,
    /// Delete every row of the table.
    #[arg(long)]
    pub(crate) all: bool,
}

fn family_name(text: &str) -> Result<String, UsageError> {
    check_family(text).map(|()| text.to_owned())
}

/// Which change a family command makes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Change {
    /// `add-family`.
    Add,
    /// `modify-family`.
    Modify,
}

/// Runs `add-family` or `modify-family`.
pub(crate) async fn families(
    client: Client,
    change: Change,
    args: FamiliesArgs,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let changes: Vec<FamilyChange> = args
        .families
        .into_iter()
        .map(|f| match change {
            Change::Add => FamilyChange::Create(f),
            Change::Modify => FamilyChange::Update(f),
        })
        .collect();
    apply(client, &args.table, &changes, output).await
}

/// Runs `drop-family`.
pub(crate) async fn drop_families(
    client: Client,
    args: DropFamilyArgs,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let changes: Vec<FamilyChange> = args.names.into_iter().map(FamilyChange::Drop).collect();
    apply(client, &args.table, &changes, output).await
}

async fn apply(
    client: Client,
    table_name: &str,
    changes: &[FamilyChange],
    output: OutputFormat,
) -> anyhow::Result<()> {
    let info = client
        .admin()
        .modify_column_families(table_name, changes)
        .await?;
    emit(
        output,
        || table(&["FAMILY", "GC"], &family_lines(&info)),
        || Value::Object(table_json(&info)),
    )
}

/// Runs `drop-rows`.
pub(crate) async fn drop_rows(
    client: Client,
    args: DropRowsArgs,
    output: OutputFormat,
) -> anyhow::Result<()> {
    if args.prefix.as_ref().is_some_and(Bytes::is_empty) {
        return Err(
            UsageError("--prefix must not be empty; use --all for every row".into()).into(),
        );
    }
    let what = format!("drop rows of {}", args.table);
    super::progress::while_running(
        &what,
        client
            .admin()
            .drop_row_range(&args.table, args.prefix.as_deref()),
    )
    .await?;
    emit(
        output,
        || match &args.prefix {
            Some(p) => format!(
                "dropped the rows of {} starting with {}",
                args.table,
                escape(p)
            ),
            None => format!("dropped every row of {}", args.table),
        },
        || {
            let mut o = serde_json::Map::new();
            o.insert("table".to_owned(), args.table.clone().into());
            match &args.prefix {
                Some(p) => json_fields(&mut o, "prefix", p),
                None => {
                    o.insert("all".to_owned(), json!(true));
                }
            }
            Value::Object(o)
        },
    )
}
