//! `tabula lock ...`: the lock service. `serve` runs one node of a cell until Ctrl-C or
//! SIGTERM; the human commands talk to a cell named by the global `--lock` flag (or the
//! `TABULA_LOCK` environment variable) through `tabula_lockservice::client`.
//!
//! Reading order: `serve`, `cell` (reaching the cell), `signal`, then one file per command
//! family: `status` (with `add-node`, `remove-node`), `files` (`ls`, `get`, `set`, `rm`),
//! `watch`, `hold`.

mod cell;
mod files;
mod hold;
mod serve;
mod status;
mod watch;

use clap::Subcommand;

pub(crate) use self::serve::ServeArgs;
#[cfg(test)]
pub(crate) use self::serve::node_config;
use crate::output::OutputFormat;

/// The lock-service commands.
#[derive(Debug, Subcommand)]
pub(crate) enum LockCommand {
    /// Run one node of a lock-service cell until Ctrl-C or SIGTERM.
    Serve(ServeArgs),
    /// Show the cell's leader, term and members.
    Status,
    /// Add a node to the cell (a learner until it has caught up, then a voter).
    AddNode(status::AddNodeArgs),
    /// Remove a node from the cell.
    RemoveNode(status::RemoveNodeArgs),
    /// List a file's children.
    Ls(files::LsArgs),
    /// Show a file: contents, generation, ephemeral session, lock holders.
    Get(files::GetArgs),
    /// Write a file's contents, creating it if missing (`set PATH ""` makes a directory).
    Set(files::SetArgs),
    /// Delete a file without children.
    Rm(files::RmArgs),
    /// Take a file's lock and hold it until Ctrl-C, printing the sequencer.
    Hold(hold::HoldArgs),
    /// Print the events of files under a path until Ctrl-C.
    Watch(watch::WatchArgs),
}

/// Runs one lock command; the human commands talk to the cell at `cell_addrs` (`--lock`).
pub(crate) fn run(
    command: LockCommand,
    cell_addrs: &[String],
    output: OutputFormat,
) -> anyhow::Result<()> {
    match command {
        LockCommand::Serve(args) => serve::run(args),
        LockCommand::Status => status::status(cell_addrs, output),
        LockCommand::AddNode(args) => status::add_node(cell_addrs, args, output),
        LockCommand::RemoveNode(args) => status::remove_node(cell_addrs, args, output),
        LockCommand::Ls(args) => files::ls(cell_addrs, args, output),
        LockCommand::Get(args) => files::get(cell_addrs, args, output),
        LockCommand::Set(args) => files::set(cell_addrs, args, output),
        LockCommand::Rm(args) => files::rm(cell_addrs, args, output),
        LockCommand::Hold(args) => hold::run(cell_addrs, args, output),
        LockCommand::Watch(args) => watch::run(cell_addrs, args, output),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::exit;

    /// Parses `tabula lock ARGS...`.
    #[derive(Debug, Parser)]
    struct Lock {
        #[command(subcommand)]
        command: LockCommand,
    }

    fn parse(args: &[&str]) -> LockCommand {
        Lock::try_parse_from(std::iter::once("lock").chain(args.iter().copied()))
            .unwrap()
            .command
    }

    #[test]
    fn file_commands_take_a_path_and_optional_generation() {
        let LockCommand::Ls(ls) = parse(&["ls"]) else {
            panic!()
        };
        assert_eq!(ls.path, "/");
        let LockCommand::Get(get) = parse(&["get", "/a/b"]) else {
            panic!()
        };
        assert_eq!(get.path, "/a/b");
        let LockCommand::Set(set) = parse(&["set", "/a", "-1", "--if-generation", "9"]) else {
            panic!()
        };
        assert_eq!((set.path.as_str(), set.value.as_str()), ("/a", "-1"));
        assert_eq!(set.if_generation, Some(9));
        let LockCommand::Set(mkdir) = parse(&["set", "/dir", ""]) else {
            panic!()
        };
        assert_eq!((mkdir.value.as_str(), mkdir.if_generation), ("", None));
        let LockCommand::Rm(rm) = parse(&["rm", "/a", "--if-generation", "3"]) else {
            panic!()
        };
        assert_eq!((rm.path.as_str(), rm.if_generation), ("/a", Some(3)));
        assert!(Lock::try_parse_from(["lock", "set", "/a"]).is_err());
    }

    #[test]
    fn hold_defaults_to_exclusive_ten_second_sessions_waiting_forever() {
        let LockCommand::Hold(hold) = parse(&["hold", "/m"]) else {
            panic!()
        };
        assert_eq!(hold.path, "/m");
        assert!(!hold.shared);
        assert_eq!(
            (hold.ttl_ms, hold.wait_secs, hold.report_ms),
            (10_000, None, 0)
        );
        let LockCommand::Hold(hold) = parse(&[
            "hold",
            "/m",
            "--shared",
            "--ttl-ms",
            "2000",
            "--wait-secs",
            "5",
            "--report-ms",
            "100",
        ]) else {
            panic!()
        };
        assert!(hold.shared);
        assert_eq!(
            (hold.ttl_ms, hold.wait_secs, hold.report_ms),
            (2000, Some(5), 100)
        );
    }

    #[test]
    fn watch_status_and_membership_parse() {
        let LockCommand::Watch(w) = parse(&["watch", "/cell", "--from-revision", "12"]) else {
            panic!()
        };
        assert_eq!((w.path.as_str(), w.from_revision), ("/cell", Some(12)));
        assert!(matches!(parse(&["status"]), LockCommand::Status));
        let LockCommand::AddNode(add) = parse(&["add-node", "4", "127.0.0.1:17104"]) else {
            panic!()
        };
        assert_eq!((add.id, add.addr.as_str()), (4, "127.0.0.1:17104"));
        let LockCommand::RemoveNode(rm) = parse(&["remove-node", "4"]) else {
            panic!()
        };
        assert_eq!(rm.id, 4);
    }

    #[test]
    fn serve_keeps_ten_thousand_watch_events_unless_told_otherwise() {
        let serve = |extra: &[&str]| {
            let mut args = vec![
                "serve",
                "--id",
                "1",
                "--listen",
                "127.0.0.1:17101",
                "--peers",
                "1=127.0.0.1:17101",
                "--data-dir",
                "/tmp/lock-1",
            ];
            args.extend_from_slice(extra);
            let LockCommand::Serve(args) = parse(&args) else {
                panic!()
            };
            node_config(args)
        };
        assert_eq!(serve(&[]).unwrap().raft.watch_history_events, 10_000);
        let small = serve(&["--watch-history-events", "5"]).unwrap();
        assert_eq!(small.raft.watch_history_events, 5);
        let err = serve(&["--watch-history-events", "0"]).unwrap_err();
        assert_eq!(exit::code(&err), 2, "{err:#}");
        assert!(err.to_string().contains("watch history"), "{err:#}");
    }

    #[test]
    fn a_human_command_without_a_cell_is_a_usage_error_naming_the_flag() {
        for command in [
            LockCommand::Status,
            parse(&["get", "/a"]),
            parse(&["hold", "/a"]),
            parse(&["watch", "/a"]),
        ] {
            let err = run(command, &[], OutputFormat::Table).unwrap_err();
            assert_eq!(exit::code(&err), 2, "{err:#}");
            let message = err.to_string();
            assert!(
                message.contains("--lock") && message.contains("TABULA_LOCK"),
                "{message}"
            );
        }
        let err = run(
            LockCommand::Status,
            &["not an address".to_owned()],
            OutputFormat::Json,
        )
        .unwrap_err();
        assert_eq!(exit::code(&err), 2, "{err:#}");
    }

    #[test]
    fn hold_rejects_a_zero_ttl_as_usage() {
        let err = run(
            parse(&["hold", "/a", "--ttl-ms", "0"]),
            &["127.0.0.1:1".to_owned()],
            OutputFormat::Table,
        )
        .unwrap_err();
        assert_eq!(exit::code(&err), 2, "{err:#}");
    }
}
