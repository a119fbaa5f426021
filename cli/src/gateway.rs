//! `tabula gateway`: the Cloud Bigtable gateway role. It serves Cloud Bigtable's data and
//! table admin APIs on `--listen` over the cluster whose lock-service cell is the global
//! `--lock`, until Ctrl-C or SIGTERM. It keeps no state, so any number can run; point a
//! Cloud Bigtable client at one with `BIGTABLE_EMULATOR_HOST=ADDR`.

use std::net::SocketAddr;

use anyhow::Context;
use clap::Args;

use crate::daemon::run_until_signal;
use crate::exit::UsageError;

/// `tabula gateway`.
#[derive(Debug, Args)]
pub(crate) struct GatewayArgs {
    /// Address the Cloud Bigtable APIs listen on (what BIGTABLE_EMULATOR_HOST names).
    #[arg(long, default_value = "127.0.0.1:8086")]
    pub(crate) listen: SocketAddr,
}

/// Runs one gateway; the cell is `lock` (`--lock`).
pub(crate) fn run(args: GatewayArgs, lock: &[String]) -> anyhow::Result<()> {
    let lock = lock_addrs(lock)?;
    run_until_signal("tabula-gateway", "info", |stop| async move {
        let client = tabula_client::Client::connect(&lock)
            .await
            .context("connect to the cluster")?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listen on {}", args.listen))?;
        let addr = listener.local_addr().context("the listening address")?;
        tracing::info!(%addr, "serving the Cloud Bigtable APIs");
        println!("BIGTABLE_EMULATOR_HOST={addr}");
        tabula_gateway::serve(listener, client, stop)
            .await
            .context("serve")
    })
    .context("gateway")
}

/// The cell's addresses, trimmed; a usage error if there are none.
fn lock_addrs(lock: &[String]) -> anyhow::Result<Vec<String>> {
    let lock: Vec<String> = lock
        .iter()
        .map(|a| a.trim().to_owned())
        .filter(|a| !a.is_empty())
        .collect();
    if lock.is_empty() {
        return Err(UsageError(
            "no lock-service cell given: pass --lock HOST:PORT[,HOST:PORT...] or set TABULA_LOCK"
                .to_owned(),
        )
        .into());
    }
    Ok(lock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gateway_needs_a_cell() {
        let e = lock_addrs(&[" ".to_owned()]).unwrap_err();
        assert!(e.downcast_ref::<UsageError>().is_some());
        assert_eq!(
            lock_addrs(&["127.0.0.1:7101 ".to_owned()]).unwrap_or_default(),
            vec!["127.0.0.1:7101".to_owned()]
        );
    }
}
