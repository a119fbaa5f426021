//! What every long-running role (`lock serve`, `tablet serve`, `master serve`) shares: logging
//! to stderr (RUST_LOG, else the role's default filter), a multi-threaded runtime, and a stop
//! future that resolves on the first SIGINT or SIGTERM.

use std::future::Future;
use std::pin::Pin;

use anyhow::Context;

use crate::signal::StopSignals;

/// The stop request handed to a role: resolves on the first SIGINT or SIGTERM.
pub(crate) type Stop = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs `serve(stop)` on a fresh runtime whose threads are named `thread_name`, logging with
/// `default_filter` unless RUST_LOG says otherwise.
pub(crate) fn run_until_signal<F, Fut>(
    thread_name: &str,
    default_filter: &str,
    serve: F,
) -> anyhow::Result<()>
where
    F: FnOnce(Stop) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    // A subscriber may already be installed (tests); logging then goes there.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name(thread_name)
        .build()
        .context("start the async runtime")?;
    runtime.block_on(async {
        let mut signals = StopSignals::install()?;
        let stop: Stop = Box::pin(async move {
            let which = signals.recv().await;
            tracing::info!(signal = which, "stopping");
        });
        serve(stop).await
    })
}
