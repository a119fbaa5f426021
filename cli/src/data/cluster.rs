//! Reaching the cluster from a data or admin command: the lock-service addresses (the global
//! `--lock`, else `TABULA_LOCK`, else the local cluster's cell), the client library's
//! `Client`, and the runtime a command runs on.
//!
//! The default cell is only for these commands (and the human `lock` commands): the server
//! roles must be told their cell, so a forgotten `--lock` never makes a server join the local
//! cluster by accident.

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use tabula_client::{Client, Table};
use tabula_common::Code;

use crate::exit::UsageError;

/// The lock cell `tabula local` starts by default.
pub(crate) const LOCAL_CELL: [&str; 3] = ["127.0.0.1:7101", "127.0.0.1:7102", "127.0.0.1:7103"];

/// The addresses to use: `given` (`--lock` / `TABULA_LOCK`) without blanks, else
/// [`LOCAL_CELL`].
pub(crate) fn lock_addrs(given: &[String]) -> Vec<String> {
    let given: Vec<String> = given
        .iter()
        .map(|a| a.trim().to_owned())
        .filter(|a| !a.is_empty())
        .collect();
    if given.is_empty() {
        LOCAL_CELL.iter().map(|a| (*a).to_owned()).collect()
    } else {
        given
    }
}

/// Connects to the cluster at `lock` (see [`lock_addrs`]) and runs `command` with the client
/// on a small runtime. A malformed address is a usage error. Logs go to stderr only when
/// `RUST_LOG` asks for them.
pub(crate) fn run<F, Fut>(lock: &[String], command: F) -> anyhow::Result<()>
where
    F: FnOnce(Client) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    if std::env::var_os("RUST_LOG").is_some() {
        // A subscriber may already be installed (tests); logging then goes there.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    let addrs = lock_addrs(lock);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("tabula-cli")
        .build()
        .context("start the async runtime")?;
    let result = runtime.block_on(async move {
        let client = match Client::connect(&addrs).await {
            Ok(client) => client,
            Err(e) if e.code == Code::InvalidArgument => {
                return Err(UsageError(format!("--lock: {e}")).into());
            }
            Err(e) => return Err(e.into()),
        };
        command(client).await
    });
    // Background tasks (sessions, channels) end with the runtime; do not wait for them.
    runtime.shutdown_timeout(Duration::from_millis(100));
    result
}

/// The table `name`; an error (`not-found` for no such table) names it.
pub(crate) async fn open_table(client: &Client, name: &str) -> anyhow::Result<Table> {
    client
        .table(name)
        .await
        .with_context(|| format!("table {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_addresses_mean_the_local_cluster() {
        assert_eq!(lock_addrs(&[]), LOCAL_CELL);
        assert_eq!(lock_addrs(&[" ".to_owned()]), LOCAL_CELL);
        assert_eq!(lock_addrs(&[" h:1".to_owned(), String::new()]), ["h:1"]);
    }
}
