//! Ctrl-C and SIGTERM as a stop request, shared by `serve`, `hold` and `watch`.

use anyhow::Context;
use tokio::signal::unix::{Signal, SignalKind, signal};

/// The process's SIGINT and SIGTERM handlers. Installed eagerly, so a signal that arrives
/// before anybody waits on it is kept (not the default action of killing the process).
#[derive(Debug)]
pub(crate) struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
}

impl StopSignals {
    /// Installs the handlers; needs a running tokio runtime.
    pub(crate) fn install() -> anyhow::Result<StopSignals> {
        Ok(StopSignals {
            interrupt: signal(SignalKind::interrupt()).context("listen for SIGINT (Ctrl-C)")?,
            terminate: signal(SignalKind::terminate()).context("listen for SIGTERM")?,
        })
    }

    /// Resolves at the next SIGINT or SIGTERM with the signal's name. Cancel-safe.
    pub(crate) async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}
