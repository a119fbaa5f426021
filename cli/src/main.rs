//! The `tabula` binary: one command line for every server role, the local cluster, admin and
//! data commands, and benchmarks.
//!
//! This file parses the command line, dispatches to one module per command group, and turns
//! the outcome into an exit code: 0 success, 1 an error reported by the system, 2 bad usage
//! (clap's own usage errors already exit 2; commands return [`exit::UsageError`] for usage
//! problems clap cannot see). Reading order: this file, `exit`, `output`, then a command group
//! such as `bench`.

mod admin;
mod bench;
mod daemon;
mod data;
mod exit;
mod gateway;
mod ingest;
mod local;
mod lock;
mod master;
mod output;
mod signal;
mod tablet;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::output::OutputFormat;

/// Tabula: an open-source Bigtable.
#[derive(Debug, Parser)]
#[command(name = "tabula", version, propagate_version = true)]
struct Cli {
    /// How to print results and errors.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Table)]
    output: OutputFormat,

    /// The lock-service cell the commands and the servers talk to: HOST:PORT of its nodes,
    /// comma-separated. The data, admin and `lock` commands default to the local cluster's
    /// cell, 127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103; the servers must be given one.
    #[arg(
        long,
        global = true,
        env = "TABULA_LOCK",
        value_delimiter = ',',
        value_name = "ADDRS"
    )]
    lock: Vec<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure parts of Tabula in isolation.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    #[command(flatten)]
    Data(data::DataCommand),
    #[command(flatten)]
    Admin(admin::AdminCommand),
    /// Write linked lists of nodes that only point at acknowledged nodes (continuous ingest),
    /// logging every acknowledged batch, until --loops, --duration, Ctrl-C or SIGTERM.
    Ingest(ingest::IngestArgs),
    /// Serve Cloud Bigtable's data and table admin APIs over the cluster (no state: run any
    /// number) until Ctrl-C or SIGTERM; clients find it with BIGTABLE_EMULATOR_HOST.
    Gateway(gateway::GatewayArgs),
    /// Run a whole cluster on this machine (lock service, tablet servers, masters) as child
    /// processes until Ctrl-C or SIGTERM; data and logs under --dir.
    Local(local::LocalArgs),
    /// The lock service: run a node of a cell; read, write, lock and watch its files.
    #[command(subcommand)]
    Lock(lock::LockCommand),
    /// The master: run one until Ctrl-C or SIGTERM (one of several is active).
    #[command(subcommand)]
    Master(master::MasterCommand),
    /// The tablet server: run one until Ctrl-C or SIGTERM.
    #[command(subcommand)]
    Tablet(tablet::TabletCommand),
    /// Scan a table `tabula ingest` wrote and fail unless no acknowledged node is lost or
    /// corrupt (counts REFERENCED, UNREFERENCED, UNDEFINED, CRC, ACKED-MISSING).
    Verify(ingest::VerifyArgs),
}

/// Every process of a cluster runs this binary; mimalloc makes the many small, short-lived
/// allocations of the request paths (HTTP/2 frames, protobuf messages, cells) cheaper than
/// glibc malloc does across threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bench(command) => bench::run(command, cli.output),
        Command::Data(command) => data::run(command, &cli.lock, cli.output),
        Command::Admin(command) => admin::run(command, &cli.lock, cli.output),
        Command::Ingest(args) => {
            ingest::ingest(args, &data::cluster::lock_addrs(&cli.lock), cli.output)
        }
        Command::Gateway(args) => gateway::run(args, &cli.lock),
        Command::Local(args) => local::run(args),
        Command::Lock(command) => {
            lock::run(command, &data::cluster::lock_addrs(&cli.lock), cli.output)
        }
        Command::Master(command) => master::run(command, &cli.lock),
        Command::Tablet(command) => tablet::run(command, &cli.lock),
        Command::Verify(args) => {
            ingest::verify(args, &data::cluster::lock_addrs(&cli.lock), cli.output)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => exit::report(&err, cli.output),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_output_flag_is_accepted_after_the_subcommand() {
        let cli = Cli::try_parse_from(["tabula", "bench", "engine", "--output", "json"]).unwrap();
        assert_eq!(cli.output, OutputFormat::Json);
        let Command::Bench(bench::BenchCommand::Engine(args)) = cli.command else {
            panic!("parsed {:?}", cli.command);
        };
        assert_eq!(args.records, 1_000_000);
        assert_eq!(args.dir, None);
    }

    #[test]
    fn lock_serve_flags_make_a_valid_node_config() {
        let cli = Cli::try_parse_from([
            "tabula",
            "lock",
            "serve",
            "--id",
            "2",
            "--listen",
            "127.0.0.1:7002",
            "--peers",
            "1=127.0.0.1:7001,2=127.0.0.1:7002,3=lock-3:7003",
            "--data-dir",
            "/tmp/lock-2",
        ])
        .unwrap();
        let Command::Lock(lock::LockCommand::Serve(args)) = cli.command else {
            panic!("parsed {:?}", cli.command);
        };
        let config = lock::node_config(args).unwrap();
        assert_eq!(config.id, 2);
        assert_eq!(config.peers.len(), 3);
        assert_eq!(config.peers[&3], "lock-3:7003");
        assert_eq!(config.cluster_id, "tabula");
    }

    #[test]
    fn lock_serve_rejects_a_node_missing_from_its_peers_as_usage() {
        let cli = Cli::try_parse_from([
            "tabula",
            "lock",
            "serve",
            "--id",
            "4",
            "--listen",
            "127.0.0.1:7004",
            "--peers",
            "1=127.0.0.1:7001",
            "--data-dir",
            "/tmp/lock-4",
        ])
        .unwrap();
        let Command::Lock(lock::LockCommand::Serve(args)) = cli.command else {
            panic!("parsed {:?}", cli.command);
        };
        let err = lock::node_config(args).unwrap_err();
        assert_eq!(exit::code(&err), 2, "{err:#}");
        let bad_peer = Cli::try_parse_from([
            "tabula",
            "lock",
            "serve",
            "--id",
            "1",
            "--listen",
            "127.0.0.1:1",
            "--peers",
            "one=127.0.0.1:1",
            "--data-dir",
            "/tmp/x",
        ])
        .unwrap_err();
        assert_eq!(bad_peer.exit_code(), 2);
    }

    #[test]
    fn global_lock_flag_takes_comma_separated_addresses_anywhere() {
        let cli = Cli::try_parse_from([
            "tabula",
            "lock",
            "get",
            "/a",
            "--lock",
            "127.0.0.1:17101,127.0.0.1:17102",
            "--output",
            "json",
        ])
        .unwrap();
        assert_eq!(cli.lock, ["127.0.0.1:17101", "127.0.0.1:17102"]);
        assert_eq!(cli.output, OutputFormat::Json);
        let Command::Lock(lock::LockCommand::Get(_)) = cli.command else {
            panic!("parsed {:?}", cli.command);
        };
        let cli =
            Cli::try_parse_from(["tabula", "--lock", "h:1", "lock", "hold", "/m", "--shared"])
                .unwrap();
        assert_eq!(cli.lock, ["h:1"]);
        let Command::Lock(lock::LockCommand::Hold(_)) = cli.command else {
            panic!("parsed {:?}", cli.command);
        };
    }

    #[test]
    fn data_and_admin_commands_sit_at_the_top_level_with_the_global_flags() {
        let cli = Cli::try_parse_from([
            "tabula", "get", "t", "r", "--output", "json", "--lock", "h:1,h:2",
        ])
        .unwrap();
        assert_eq!(cli.output, OutputFormat::Json);
        assert_eq!(cli.lock, ["h:1", "h:2"]);
        assert!(matches!(
            cli.command,
            Command::Data(data::DataCommand::Get(_))
        ));
        let cli = Cli::try_parse_from(["tabula", "tables"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Admin(admin::AdminCommand::Tables)
        ));
        assert_eq!(
            data::cluster::lock_addrs(&cli.lock),
            data::cluster::LOCAL_CELL
        );
        let err =
            Cli::try_parse_from(["tabula", "create-table", "t", "--family", "c f"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn missing_subcommand_is_a_usage_error() {
        let err = Cli::try_parse_from(["tabula", "bench"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }
}
