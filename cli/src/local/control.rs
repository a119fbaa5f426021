//! The seam between `tabula local`'s supervisor and its agitator: what the agitator sees of
//! the processes (a [`ProcView`] per process, published by the supervisor after each tick) and
//! the signals it may ask the supervisor to send ([`SignalRequest`] over a bounded channel).
//!
//! Only the supervisor touches the children: it owns each `Child` and reaps it, so a signal is
//! never sent to a recycled pid, and it refuses every request but a resume once the cluster
//! is stopping (no fault after the stop begins).

use std::fmt;
use std::time::Duration;

use tokio::sync::oneshot;

use super::plan::Role;

/// How many signal requests may wait for the supervisor.
pub(crate) const REQUEST_QUEUE: usize = 4;

/// One process as the agitator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProcView {
    /// Its name among the cluster's processes (`lock-1`, `ts-2`, `m-1`).
    pub(crate) name: String,
    pub(crate) role: Role,
    /// Its id in the system (lock node id, server id, master id).
    pub(crate) id: String,
    pub(crate) addr: String,
    /// Its pid while it runs; `None` while it is down (awaiting its restart).
    pub(crate) pid: Option<u32>,
    /// Which start of this process within the run (grows with every restart).
    pub(crate) start: u32,
}

/// A signal the agitator asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// SIGKILL, then start the process again `restart_after` after its exit was noticed
    /// (whatever `--no-restart` says: the restart is part of the fault).
    Kill { restart_after: Duration },
    /// SIGSTOP.
    Stop,
    /// SIGCONT.
    Continue,
}

impl Signal {
    /// Whether it takes a process away (refused once the cluster is stopping).
    pub(crate) fn is_fault(self) -> bool {
        !matches!(self, Signal::Continue)
    }
}

/// Why a signal was not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SignalError {
    /// No process has that name.
    Unknown(String),
    /// The process is down (exited, awaiting its restart).
    NotRunning(String),
    /// The cluster is stopping: no more faults.
    Stopping,
    /// kill(2) failed.
    Os(String),
}

impl fmt::Display for SignalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignalError::Unknown(name) => write!(f, "no process is named {name}"),
            SignalError::NotRunning(name) => write!(f, "{name} is not running"),
            SignalError::Stopping => f.write_str("the cluster is stopping"),
            SignalError::Os(e) => write!(f, "kill(2) failed: {e}"),
        }
    }
}

impl std::error::Error for SignalError {}

/// A request to signal process `name`; answered with the pid signalled.
#[derive(Debug)]
pub(crate) struct SignalRequest {
    pub(crate) name: String,
    pub(crate) signal: Signal,
    pub(crate) reply: oneshot::Sender<Result<u32, SignalError>>,
}
