//! The admin commands: tables (`create-table`, `delete-table`, `tables`, `describe`), their
//! families and rows (`add-family`, `modify-family`, `drop-family`, `drop-rows`), tablets
//! (`tablets`, `split`, `merge`, `move`, `flush`, `compact`) and the cluster (`servers`,
//! `status`, `balancer`), through the active master (the client library's `Admin`), against the cluster
//! named by the global `--lock` (default: the local cluster's cell).
//!
//! Long operations print progress on stderr, never on stdout (`progress`). Reading order:
//! `family` (the `--family` spec and GC rules), `progress`, `tablets`, `tables`, `schema`,
//! `servers`.

mod family;
mod progress;
mod schema;
mod servers;
mod tables;
mod tablets;

use clap::Subcommand;

use crate::data::cluster;
use crate::output::OutputFormat;

/// The admin commands, flattened into `tabula`'s top level.
#[derive(Debug, Subcommand)]
pub(crate) enum AdminCommand {
    /// Create a table: create-table NAME --family cf[:max_versions=N][:max_age=7d] ...
    /// [--split-keys k1,k2]; waits until its tablets are served.
    CreateTable(tables::CreateTableArgs),
    /// Delete a table and all its data.
    DeleteTable(tables::DeleteTableArgs),
    /// List the tables with their families.
    Tables,
    /// Show a table: families with GC rules, state, tablets with ranges, servers and sizes.
    Describe(tables::DescribeArgs),
    /// Add column families to a table: add-family TABLE NAME[:max_versions=N][:max_age=D]...
    AddFamily(schema::FamiliesArgs),
    /// Change the GC rules of existing families (same SPEC as add-family).
    ModifyFamily(schema::FamiliesArgs),
    /// Drop column families with all their cells.
    DropFamily(schema::DropFamilyArgs),
    /// Delete every row starting with a prefix (--prefix P) or every row (--all).
    DropRows(schema::DropRowsArgs),
    /// List tablets (of one table, or all): range, state, server, epoch, size.
    Tablets(tablets::TabletsArgs),
    /// Split the tablet holding ROW at ROW (or at its middle with --middle); waits until the
    /// two new tablets are served.
    Split(tablets::SplitArgs),
    /// Merge the tablet holding ROW with its right neighbour; waits until the merged tablet
    /// is served.
    Merge(tablets::MergeArgs),
    /// Move a tablet to a tablet server; waits until it is served there.
    Move(tablets::MoveArgs),
    /// Write every memtable of a table to SSTables.
    Flush(tablets::FlushArgs),
    /// Compact every tablet of a table (--major: into one SSTable each).
    Compact(tablets::CompactArgs),
    /// List the live tablet servers with their load.
    Servers,
    /// Show the cluster: masters, lock leader, counts of servers, tables and tablets, balancer.
    Status,
    /// Turn the balancer on or off cluster-wide (it survives master failover).
    Balancer(servers::BalancerArgs),
}

/// Runs one admin command against the cluster at `lock` (`--lock`).
pub(crate) fn run(
    command: AdminCommand,
    lock: &[String],
    output: OutputFormat,
) -> anyhow::Result<()> {
    cluster::run(lock, |client| async move {
        match command {
            AdminCommand::CreateTable(args) => tables::create(client, args, output).await,
            AdminCommand::DeleteTable(args) => tables::delete(client, args, output).await,
            AdminCommand::Tables => tables::list(client, output).await,
            AdminCommand::Describe(args) => tables::describe(client, args, output).await,
            AdminCommand::AddFamily(args) => {
                schema::families(client, schema::Change::Add, args, output).await
            }
            AdminCommand::ModifyFamily(args) => {
                schema::families(client, schema::Change::Modify, args, output).await
            }
            AdminCommand::DropFamily(args) => schema::drop_families(client, args, output).await,
            AdminCommand::DropRows(args) => schema::drop_rows(client, args, output).await,
            AdminCommand::Tablets(args) => tablets::tablets(client, args, output).await,
            AdminCommand::Split(args) => tablets::split(client, args, output).await,
            AdminCommand::Merge(args) => tablets::merge(client, args, output).await,
            AdminCommand::Move(args) => tablets::move_tablet(client, args, output).await,
            AdminCommand::Flush(args) => tablets::flush(client, args, output).await,
            AdminCommand::Compact(args) => tablets::compact(client, args, output).await,
            AdminCommand::Servers => servers::servers(client, output).await,
            AdminCommand::Status => servers::status(client, output).await,
            AdminCommand::Balancer(args) => servers::balancer(client, args, output).await,
        }
    })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use clap::Parser;
    use tabula_client::GcRule;

    use super::*;

    /// Parses `tabula ARGS...` for the admin commands alone.
    #[derive(Debug, Parser)]
    struct AdminCli {
        #[command(subcommand)]
        command: AdminCommand,
    }

    fn parse(args: &[&str]) -> Result<AdminCommand, clap::Error> {
        AdminCli::try_parse_from(std::iter::once("tabula").chain(args.iter().copied()))
            .map(|a| a.command)
    }

    #[test]
    fn create_table_takes_families_and_escaped_split_keys() {
        let AdminCommand::CreateTable(args) = parse(&[
            "create-table",
            "t",
            "--family",
            "cf:max_versions=2",
            "--family",
            "raw",
            "--split-keys",
            "g,p\\x2cq,\\xff",
        ])
        .unwrap() else {
            panic!()
        };
        assert_eq!(args.name, "t");
        assert_eq!(args.families.len(), 2);
        assert_eq!(args.families[0].gc, GcRule::MaxVersions(2));
        assert_eq!(
            args.split_keys,
            [
                Bytes::from_static(b"g"),
                Bytes::from_static(b"p,q"),
                Bytes::from_static(b"\xff")
            ]
        );
        assert!(!args.wait.no_wait);
    }

    #[test]
    fn tablet_commands_parse() {
        let AdminCommand::Split(split) = parse(&["split", "t", "m\\x00", "--no-wait"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(split.row, Bytes::from_static(b"m\x00"));
        assert!(split.wait.no_wait && !split.middle);
        let AdminCommand::Move(mv) = parse(&["move", "17", "ts-2"]).unwrap() else {
            panic!()
        };
        assert_eq!((mv.tablet, mv.server.as_str()), (17, "ts-2"));
        let AdminCommand::Compact(c) = parse(&["compact", "t", "--major"]).unwrap() else {
            panic!()
        };
        assert!(c.major);
        let AdminCommand::Tablets(all) = parse(&["tablets"]).unwrap() else {
            panic!()
        };
        assert_eq!(all.table, None);
    }

    #[test]
    fn family_row_and_balancer_commands_parse() {
        let AdminCommand::AddFamily(add) =
            parse(&["add-family", "t", "a", "b:max_versions=1"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(add.families.len(), 2);
        let AdminCommand::DropFamily(drop) = parse(&["drop-family", "t", "a"]).unwrap() else {
            panic!()
        };
        assert_eq!(drop.names, ["a"]);
        let AdminCommand::DropRows(rows) =
            parse(&["drop-rows", "t", "--prefix", "u\\x00"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(rows.prefix, Some(Bytes::from_static(b"u\x00")));
        let AdminCommand::Balancer(b) = parse(&["balancer", "off"]).unwrap() else {
            panic!()
        };
        assert_eq!(b.state, servers::Switch::Off);
    }

    #[test]
    fn bad_admin_arguments_are_usage_errors() {
        let usage = |args: &[&str]| {
            let err = parse(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}: {err}");
        };
        usage(&["create-table", "t"]);
        usage(&["create-table", "t", "--family", "cf:max_age=7w"]);
        usage(&["create-table", "t", "--family", "cf", "--split-keys", "a\\"]);
        usage(&["move", "tablet-1", "ts"]);
        usage(&["split", "t"]);
        usage(&["drop-rows", "t"]);
        usage(&["drop-rows", "t", "--all", "--prefix", "a"]);
        usage(&["drop-family", "t"]);
        usage(&["add-family", "t", "cf:max_versions=0"]);
        usage(&["balancer", "maybe"]);
    }
}
