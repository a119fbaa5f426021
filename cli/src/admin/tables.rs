//! `tabula create-table | delete-table | tables | describe`: tables through the active master.
//!
//! `create-table` returns once every tablet of the new table is served (progress on stderr;
//! `--no-wait` returns at the master's answer). A table's JSON:
//! `{"name": STR, "id": N, "state": "ready", "families": [{"name": STR, "gc": TEXT,
//! "gc_rule": RULE}]}` (see `family` for the rule's forms), and `describe` adds
//! `"tablets": [TABLET, ...]` (see `tablets`).

use bytes::Bytes;
use clap::Args;
use serde_json::{Map, Value, json};
use tabula_client::{Client, Family, TableInfo};
use tabula_proto::tabula::master::v1 as mpb;

use super::family::{gc_json, gc_text, parse_family};
use super::progress::{served, wait_served};
use super::tablets::{TABLET_HEADERS, WAIT_DEADLINE, WaitArgs, tablet_json, tablet_line};
use crate::data::column::escaped_bytes;
use crate::output::{OutputFormat, emit, table};

/// `tabula create-table`.
#[derive(Debug, Args)]
pub(crate) struct CreateTableArgs {
    /// The table's name.
    pub(crate) name: String,
    /// A column family, NAME[:max_versions=N][:max_age=D] with D like 30s, 15m, 12h, 7d
    /// (repeat for more). With both options a cell goes when either rule drops it (Bigtable's
    /// union): at most N versions, none older than D. No option: keep everything.
    #[arg(long = "family", value_name = "SPEC", required = true, value_parser = parse_family)]
    pub(crate) families: Vec<Family>,
    /// Rows the table is split at from the start (escaped; comma-separated, \x2c for a comma
    /// inside a key): the table starts with one tablet more than keys.
    #[arg(long, value_name = "K1,K2", value_delimiter = ',', value_parser = escaped_bytes)]
    pub(crate) split_keys: Vec<Bytes>,
    #[command(flatten)]
    pub(crate) wait: WaitArgs,
}

/// `tabula delete-table`.
#[derive(Debug, Args)]
pub(crate) struct DeleteTableArgs {
    /// The table to delete with all its data.
    pub(crate) name: String,
}

/// `tabula describe`.
#[derive(Debug, Args)]
pub(crate) struct DescribeArgs {
    /// The table.
    pub(crate) name: String,
}

/// A table state's name.
fn state_name(state: i32) -> &'static str {
    match mpb::TableState::try_from(state) {
        Ok(mpb::TableState::Creating) => "creating",
        Ok(mpb::TableState::Ready) => "ready",
        Ok(mpb::TableState::Deleting) => "deleting",
        _ => "unknown",
    }
}

fn families(info: &TableInfo) -> &[tabula_proto::tabula::tablet::v1::ColumnFamily] {
    info.proto
        .schema
        .as_ref()
        .map_or(&[], |s| s.families.as_slice())
}

/// The JSON object of a table (see the module doc).
pub(crate) fn table_json(info: &TableInfo) -> Map<String, Value> {
    let families: Vec<Value> = families(info)
        .iter()
        .map(|f| {
            json!({
                "name": f.name,
                "gc": gc_text(f.gc_rule.as_ref()),
                "gc_rule": gc_json(f.gc_rule.as_ref()),
            })
        })
        .collect();
    let mut o = Map::new();
    o.insert("name".to_owned(), info.name.clone().into());
    o.insert("id".to_owned(), info.id.0.into());
    o.insert("state".to_owned(), state_name(info.proto.state).into());
    o.insert("families".to_owned(), families.into());
    o
}

/// The families of a table as `name (gc)` text lines.
pub(crate) fn family_lines(info: &TableInfo) -> Vec<Vec<String>> {
    families(info)
        .iter()
        .map(|f| vec![f.name.clone(), gc_text(f.gc_rule.as_ref())])
        .collect()
}

/// Runs `create-table`.
pub(crate) async fn create(
    client: Client,
    args: CreateTableArgs,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let admin = client.admin();
    let keys: Vec<&[u8]> = args.split_keys.iter().map(|k| k.as_ref()).collect();
    let info = admin
        .create_table(&args.name, &args.families, &keys)
        .await?;
    let mut tablets = Vec::new();
    if !args.wait.no_wait {
        let want = args.split_keys.len() + 1;
        let what = format!("create-table {}", args.name);
        tablets = wait_served(&admin, &args.name, &what, WAIT_DEADLINE, |ts| {
            (ts.iter().filter(|t| served(t)).count(), want.max(ts.len()))
        })
        .await?;
    }
    emit(
        output,
        || {
            let served = if args.wait.no_wait {
                "not waiting for them to be served".to_owned()
            } else {
                format!("{} served", tablets.len())
            };
            format!(
                "created table {} (id {}) with {} tablets, {served}\n{}",
                info.name,
                info.id.0,
                args.split_keys.len() + 1,
                table(&["FAMILY", "GC"], &family_lines(&info))
            )
        },
        || {
            let mut o = table_json(&info);
            o.insert("tablets".to_owned(), (args.split_keys.len() + 1).into());
            Value::Object(o)
        },
    )
}

/// Runs `delete-table`.
pub(crate) async fn delete(
    client: Client,
    args: DeleteTableArgs,
    output: OutputFormat,
) -> anyhow::Result<()> {
    client.admin().delete_table(&args.name).await?;
    emit(
        output,
        || format!("deleted table {}", args.name),
        || json!({ "deleted": args.name }),
    )
}

/// Runs `tables`.
pub(crate) async fn list(client: Client, output: OutputFormat) -> anyhow::Result<()> {
    let mut tables = client.admin().list_tables().await?;
    tables.sort_by(|a, b| a.name.cmp(&b.name));
    emit(
        output,
        || {
            let lines: Vec<Vec<String>> = tables
                .iter()
                .map(|t| {
                    let fams: Vec<String> = family_lines(t)
                        .into_iter()
                        .map(|f| format!("{} ({})", f[0], f[1]))
                        .collect();
                    vec![
                        t.name.clone(),
                        t.id.0.to_string(),
                        state_name(t.proto.state).to_owned(),
                        fams.join(", "),
                    ]
                })
                .collect();
            table(&["NAME", "ID", "STATE", "FAMILIES"], &lines)
        },
        || {
            Value::Array(
                tables
                    .iter()
                    .map(|t| Value::Object(table_json(t)))
                    .collect(),
            )
        },
    )
}

/// Runs `describe`.
pub(crate) async fn describe(
    client: Client,
    args: DescribeArgs,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let admin = client.admin();
    let info = admin.get_table(&args.name).await?;
    let tablets = admin.list_tablets(Some(&args.name)).await?;
    emit(
        output,
        || {
            format!(
                "table {} (id {}), {}\n\n{}\n\n{}",
                info.name,
                info.id.0,
                state_name(info.proto.state),
                table(&["FAMILY", "GC"], &family_lines(&info)),
                table(
                    &TABLET_HEADERS,
                    &tablets.iter().map(tablet_line).collect::<Vec<_>>()
                )
            )
        },
        || {
            let mut o = table_json(&info);
            o.insert(
                "tablets".to_owned(),
                tablets
                    .iter()
                    .map(|t| tablet_json(&t.table, &t.record, t.size_bytes))
                    .collect(),
            );
            Value::Object(o)
        },
    )
}

#[cfg(test)]
mod tests {
    use tabula_common::TableId;
    use tabula_proto::tabula::tablet::v1 as tpb;

    use super::*;

    #[test]
    fn a_table_prints_its_families_with_gc_rules() {
        let proto = mpb::Table {
            name: "t".to_owned(),
            table_id: 9,
            schema: Some(tpb::Schema {
                families: vec![
                    tpb::ColumnFamily {
                        name: "cf".to_owned(),
                        gc_rule: None,
                        ..Default::default()
                    },
                    tpb::ColumnFamily {
                        name: "v".to_owned(),
                        gc_rule: Some(tpb::GcRule {
                            rule: Some(tpb::gc_rule::Rule::MaxNumVersions(2)),
                        }),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }),
            state: mpb::TableState::Ready as i32,
        };
        let info = TableInfo {
            name: "t".to_owned(),
            id: TableId(9),
            families: vec!["cf".to_owned(), "v".to_owned()],
            proto,
        };
        assert_eq!(
            Value::Object(table_json(&info)),
            json!({
                "name": "t", "id": 9, "state": "ready",
                "families": [
                    {"name": "cf", "gc": "keep all", "gc_rule": null},
                    {"name": "v", "gc": "max_versions=2", "gc_rule": {"max_versions": 2}},
                ],
            })
        );
        assert_eq!(
            table(&["FAMILY", "GC"], &family_lines(&info)),
            "FAMILY  GC\ncf      keep all\nv       max_versions=2"
        );
    }
}
