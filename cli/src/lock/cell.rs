//! Reaching a lock-service cell from a human command: the `--lock` addresses (or
//! `TABULA_LOCK`), the client, and the runtime the command runs on.

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use tabula_common::Code;
use tabula_lockservice::client::{ClientOptions, LockClient};

use crate::exit::UsageError;

/// The error for a human command run without a cell to talk to.
const NO_CELL: &str = "no lock-service cell given: pass --lock HOST:PORT[,HOST:PORT...] \
                       or set TABULA_LOCK=HOST:PORT[,HOST:PORT...]";

/// A client of the cell at `addrs` (`--lock`), with `options`. No addresses, or an address
/// that is not `host:port`, is a usage error.
pub(crate) fn connect(addrs: &[String], options: ClientOptions) -> anyhow::Result<LockClient> {
    let addrs: Vec<String> = addrs
        .iter()
        .map(|a| a.trim().to_owned())
        .filter(|a| !a.is_empty())
        .collect();
    if addrs.is_empty() {
        return Err(UsageError(NO_CELL.to_owned()).into());
    }
    match LockClient::new(&addrs, options) {
        Ok(client) => Ok(client),
        Err(e) if e.code == Code::InvalidArgument => Err(UsageError(format!("--lock: {e}")).into()),
        Err(e) => Err(e.into()),
    }
}

/// Runs a human command's future on a small multi-threaded runtime (a session's keepalive task
/// keeps running while the command writes to a slow terminal). Logs go to stderr only when
/// `RUST_LOG` asks for them.
pub(crate) fn block_on<F>(fut: F) -> anyhow::Result<()>
where
    F: Future<Output = anyhow::Result<()>>,
{
    if std::env::var_os("RUST_LOG").is_some() {
        // A subscriber may already be installed (tests); logging then goes there.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("tabula-lock-cli")
        .build()
        .context("start the async runtime")?;
    let result = runtime.block_on(fut);
    // Sessions' and watches' background tasks end with the runtime; do not wait for them.
    runtime.shutdown_timeout(Duration::from_millis(100));
    result
}
