//! `tabula tablets | split | merge | move | flush | compact`: tablets through the active
//! master, and how a tablet prints.
//!
//! `split`, `merge` and `move` return once the master's view shows the new tablets served
//! (progress on stderr; `--no-wait` returns at the master's answer). A tablet's JSON:
//! `{"tablet": ID, "table": NAME, "start": ESC, "end": ESC|null, "state": "assigned",
//! "server": ID|null, "address": STR, "epoch": N, "size_bytes": N}` (start and end escaped,
//! with `_base64` when not UTF-8; `end: null` is the table's end).

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use serde_json::{Map, Value, json};
use tabula_client::{Client, TabletInfo, TabletRecord, TabletState};
use tabula_common::{ServerId, TabletId};

use super::progress::{served, wait_served, while_running};
use crate::data::column::escaped_bytes;
use crate::data::escape::{escape, json_fields};
use crate::output::{OutputFormat, emit, table};

/// How long `split`, `merge`, `move` and `create-table` wait for tablets to be served.
pub(crate) const WAIT_DEADLINE: Duration = Duration::from_secs(120);

/// Whether to wait for the master's next rounds.
#[derive(Debug, Args)]
pub(crate) struct WaitArgs {
    /// Return at the master's answer, without waiting for the tablets to be served.
    #[arg(long)]
    pub(crate) no_wait: bool,
}

/// `tabula tablets`.
#[derive(Debug, Args)]
pub(crate) struct TabletsArgs {
    /// Only this table's tablets (default: every table's, METADATA's and the root's).
    pub(crate) table: Option<String>,
}

/// `tabula split`.
#[derive(Debug, Args)]
pub(crate) struct SplitArgs {
    /// The table.
    pub(crate) table: String,
    /// The tablet holding ROW splits at ROW (escaped), which starts the right half.
    #[arg(value_parser = escaped_bytes, allow_hyphen_values = true)]
    pub(crate) row: Bytes,
    /// Split the tablet holding ROW at its middle row instead.
    #[arg(long)]
    pub(crate) middle: bool,
    #[command(flatten)]
    pub(crate) wait: WaitArgs,
}

/// `tabula merge`.
#[derive(Debug, Args)]
pub(crate) struct MergeArgs {
    /// The table.
    pub(crate) table: String,
    /// The tablet holding ROW (escaped) merges with its right neighbour.
    #[arg(value_parser = escaped_bytes, allow_hyphen_values = true)]
    pub(crate) row: Bytes,
    #[command(flatten)]
    pub(crate) wait: WaitArgs,
}

/// `tabula move`.
#[derive(Debug, Args)]
pub(crate) struct MoveArgs {
    /// The tablet id (see `tabula tablets`).
    pub(crate) tablet: u64,
    /// The tablet server id to move it to (see `tabula servers`).
    pub(crate) server: String,
    #[command(flatten)]
    pub(crate) wait: WaitArgs,
}

/// `tabula flush`.
#[derive(Debug, Args)]
pub(crate) struct FlushArgs {
    /// The table.
    pub(crate) table: String,
}

/// `tabula compact`.
#[derive(Debug, Args)]
pub(crate) struct CompactArgs {
    /// The table.
    pub(crate) table: String,
    /// Compact each tablet into one SSTable, dropping deleted and expired cells.
    #[arg(long)]
    pub(crate) major: bool,
}

/// The column headers of [`tablet_line`].
pub(crate) const TABLET_HEADERS: [&str; 9] = [
    "TABLET", "TABLE", "START", "END", "STATE", "SERVER", "ADDRESS", "EPOCH", "SIZE",
];

/// One table line of a tablet, under [`TABLET_HEADERS`].
pub(crate) fn tablet_line(t: &TabletInfo) -> Vec<String> {
    let r = &t.record;
    vec![
        r.tablet.0.to_string(),
        t.table.clone(),
        escape(&r.start_row),
        r.end_row
            .as_deref()
            .map_or_else(|| "(end)".to_owned(), escape),
        state_name(r.state).to_owned(),
        r.server
            .as_ref()
            .map_or_else(|| "-".to_owned(), |s| s.0.clone()),
        if r.server_addr.is_empty() {
            "-".to_owned()
        } else {
            r.server_addr.clone()
        },
        r.epoch.0.to_string(),
        human_bytes(t.size_bytes),
    ]
}

/// The JSON object of a tablet (see the module doc).
pub(crate) fn tablet_json(table: &str, r: &TabletRecord, size_bytes: u64) -> Value {
    let mut o = Map::new();
    o.insert("tablet".to_owned(), r.tablet.0.into());
    o.insert("table".to_owned(), table.into());
    json_fields(&mut o, "start", &r.start_row);
    match &r.end_row {
        Some(end) => json_fields(&mut o, "end", end),
        None => {
            o.insert("end".to_owned(), Value::Null);
        }
    }
    o.insert("state".to_owned(), state_name(r.state).into());
    o.insert(
        "server".to_owned(),
        json!(r.server.as_ref().map(|s| s.0.clone())),
    );
    o.insert("address".to_owned(), r.server_addr.clone().into());
    o.insert("epoch".to_owned(), r.epoch.0.into());
    o.insert("size_bytes".to_owned(), size_bytes.into());
    Value::Object(o)
}

/// A tablet state's name.
pub(crate) fn state_name(state: TabletState) -> &'static str {
    match state {
        TabletState::Unassigned => "unassigned",
        TabletState::Assigned => "assigned",
        TabletState::Moving => "moving",
        TabletState::Deleting => "deleting",
    }
}

/// `bytes` for people: `0 B`, `512 B`, `1.5 KiB`, `12.0 MiB`.
pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    #[allow(clippy::cast_precision_loss)]
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Prints a list of tablets.
pub(crate) fn print_tablets(output: OutputFormat, tablets: &[TabletInfo]) -> anyhow::Result<()> {
    emit(
        output,
        || {
            table(
                &TABLET_HEADERS,
                &tablets.iter().map(tablet_line).collect::<Vec<_>>(),
            )
        },
        || {
            Value::Array(
                tablets
                    .iter()
                    .map(|t| tablet_json(&t.table, &t.record, t.size_bytes))
                    .collect(),
            )
        },
    )
}

/// Runs `tablets`.
pub(crate) async fn tablets(
    client: Client,
    args: TabletsArgs,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let tablets = client.admin().list_tablets(args.table.as_deref()).await?;
    print_tablets(output, &tablets)
}

/// The listed tablets among `ids`, with how many of them are served.
fn count_served(tablets: &[TabletInfo], ids: &[TabletId]) -> (usize, usize) {
    let served = tablets
        .iter()
        .filter(|t| ids.contains(&t.record.tablet) && served(t))
        .count();
    (served, ids.len())
}

/// Waits (unless `--no-wait`) until the tablets `ids` of `table` are served; answers what the
/// master lists for them, or `fallback` when not waiting.
async fn served_records(
    client: &Client,
    table: &str,
    what: &str,
    wait: &WaitArgs,
    ids: &[TabletId],
    fallback: Vec<TabletInfo>,
) -> anyhow::Result<Vec<TabletInfo>> {
    if wait.no_wait {
        return Ok(fallback);
    }
    let admin = client.admin();
    let listed = wait_served(&admin, table, what, WAIT_DEADLINE, |t| count_served(t, ids)).await?;
    Ok(ids
        .iter()
        .filter_map(|id| listed.iter().find(|t| t.record.tablet == *id).cloned())
        .collect())
}

/// Runs `split`.
pub(crate) async fn split(
    client: Client,
    args: SplitArgs,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let what = format!("split {} at {}", args.table, escape(&args.row));
    let (left, right) = while_running(
        &what,
        client
            .admin()
            .split_tablet(&args.table, &args.row, !args.middle),
    )
    .await
    .with_context(|| what.clone())?;
    let ids = [left.tablet, right.tablet];
    let fallback = [left, right]
        .into_iter()
        .map(|record| TabletInfo {
            table: args.table.clone(),
            record,
            size_bytes: 0,
        })
        .collect();
    let tablets = served_records(&client, &args.table, &what, &args.wait, &ids, fallback).await?;
    print_tablets(output, &tablets)
}

/// Runs `merge`.
pub(crate) async fn merge(
    client: Client,
    args: MergeArgs,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let what = format!("merge {} at {}", args.table, escape(&args.row));
    let merged = while_running(&what, client.admin().merge_tablets(&args.table, &args.row))
        .await
        .with_context(|| what.clone())?;
    let ids = [merged.tablet];
    let fallback = vec![TabletInfo {
        table: args.table.clone(),
        record: merged,
        size_bytes: 0,
    }];
    let tablets = served_records(&client, &args.table, &what, &args.wait, &ids, fallback).await?;
    print_tablets(output, &tablets)
}

/// Runs `move`.
pub(crate) async fn move_tablet(
    client: Client,
    args: MoveArgs,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let admin = client.admin();
    let what = format!("move tablet {} to {}", args.tablet, args.server);
    let to = ServerId(args.server.clone());
    let moved = while_running(&what, admin.move_tablet(TabletId(args.tablet), &to))
        .await
        .with_context(|| what.clone())?;
    let table = admin
        .list_tablets(None)
        .await?
        .into_iter()
        .find(|t| t.record.tablet == moved.tablet)
        .map_or_else(|| format!("#{}", moved.table.0), |t| t.table);
    let tablets = if args.wait.no_wait {
        vec![TabletInfo {
            table,
            record: moved,
            size_bytes: 0,
        }]
    } else {
        // Done once the master's view has the tablet served at the move's epoch or later:
        // on the target, or on another server if the master has moved it on since (a
        // failure), which no longer waiting would change.
        let id = moved.tablet;
        let landed =
            |t: &TabletInfo| t.record.tablet == id && served(t) && t.record.epoch >= moved.epoch;
        let has_landed = |ts: &[TabletInfo]| (usize::from(ts.iter().any(landed)), 1);
        let listed = wait_served(&admin, &table, &what, WAIT_DEADLINE, has_landed).await?;
        let listed: Vec<TabletInfo> = listed.into_iter().filter(landed).collect();
        if let Some(elsewhere) = listed
            .iter()
            .find(|t| t.record.server.as_ref() != Some(&to))
        {
            anyhow::bail!(
                "{what}: the tablet was moved there at epoch {}, and the master has since \
                 placed it on {} (epoch {})",
                moved.epoch.0,
                elsewhere
                    .record
                    .server
                    .as_ref()
                    .map_or("?", |s| s.0.as_str()),
                elsewhere.record.epoch.0
            );
        }
        listed
    };
    print_tablets(output, &tablets)
}

/// Runs `flush`.
pub(crate) async fn flush(
    client: Client,
    args: FlushArgs,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let what = format!("flush {}", args.table);
    while_running(&what, client.admin().flush(&args.table))
        .await
        .with_context(|| what.clone())?;
    emit(
        output,
        || format!("flushed {}", args.table),
        || json!({ "table": args.table, "flushed": true }),
    )
}

/// Runs `compact`.
pub(crate) async fn compact(
    client: Client,
    args: CompactArgs,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let kind = if args.major { "major" } else { "minor" };
    let what = format!("{kind} compaction of {}", args.table);
    while_running(&what, client.admin().compact(&args.table, args.major))
        .await
        .with_context(|| what.clone())?;
    emit(
        output,
        || format!("compacted {} ({kind})", args.table),
        || json!({ "table": args.table, "compacted": kind }),
    )
}

#[cfg(test)]
mod tests {
    use tabula_common::{Epoch, TableId};

    use super::*;

    fn record(start: &'static [u8], end: Option<&'static [u8]>) -> TabletRecord {
        TabletRecord {
            table: TableId(5),
            tablet: TabletId(42),
            start_row: Bytes::from_static(start),
            end_row: end.map(Bytes::from_static),
            epoch: Epoch(3),
            state: TabletState::Assigned,
            server: Some(ServerId("ts-1".to_owned())),
            server_addr: "127.0.0.1:7111".to_owned(),
            master_epoch: Epoch(1),
            manifest_path: String::new(),
            split_parent: None,
            split_sibling: None,
            created: true,
        }
    }

    #[test]
    fn a_tablet_prints_its_range_server_and_size() {
        let info = TabletInfo {
            table: "t".to_owned(),
            record: record(b"", Some(b"m\xff")),
            size_bytes: 1536,
        };
        assert_eq!(
            tablet_line(&info),
            [
                "42",
                "t",
                "",
                "m\\xff",
                "assigned",
                "ts-1",
                "127.0.0.1:7111",
                "3",
                "1.5 KiB"
            ]
        );
        assert_eq!(
            tablet_json("t", &info.record, 1536),
            json!({
                "tablet": 42, "table": "t", "start": "", "end": "m\\xff", "end_base64": "bf8=",
                "state": "assigned", "server": "ts-1", "address": "127.0.0.1:7111",
                "epoch": 3, "size_bytes": 1536,
            })
        );
        let last = record(b"m", None);
        assert_eq!(tablet_json("t", &last, 0)["end"], Value::Null);
    }

    #[test]
    fn sizes_print_in_binary_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(12 * 1024 * 1024 + 100), "12.0 MiB");
    }
}
