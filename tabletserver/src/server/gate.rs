//! Fencing: whether this server may serve at all right now, and the newest master epoch it has
//! accepted.
//!
//! Serving needs a lock-service session that is `Safe` *at the moment of the check*: the gate
//! asks a closure that reads the session's local lease from the clock, so a server that was
//! paused past its lease refuses the first request after it resumes, before any background task
//! has run. Data RPCs check before doing anything and writes check again after their commit-log
//! sync, before acknowledging: a write that reached the log after the lease ran out may already
//! be missed by the tablet's next owner, so it is answered `Unavailable` (outcome unknown), never
//! OK.
//!
//! The same check fences manifest writes (`may_write_manifests`, the engine's
//! `ManifestWritePermit`): a server that may have lost its tablets must not rewrite their
//! manifests on the shared storage root. `drain` (shutdown) refuses requests but still lets the
//! final flushes store manifests while the session is safe; `stop` refuses both.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;
use tabula_common::{Code, Epoch, Error};

/// Tells whether the server's lock-service session is safe now.
pub type SafetyCheck = Arc<dyn Fn() -> bool + Send + Sync>;

/// See the module documentation.
pub struct Gate {
    safe: SafetyCheck,
    /// Requests refused; manifest writes still allowed (a clean shutdown's final flushes).
    draining: AtomicBool,
    stopped: AtomicBool,
    stop_reason: Mutex<String>,
    master_epoch: AtomicU64,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("stopped", &self.stopped.load(Ordering::Relaxed))
            .field("master_epoch", &self.master_epoch.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Gate {
    /// A gate that serves while `safe` says so.
    pub fn new(safe: SafetyCheck) -> Gate {
        Gate {
            safe,
            draining: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            stop_reason: Mutex::new(String::new()),
            master_epoch: AtomicU64::new(0),
        }
    }

    /// A gate with no lock-service session behind it (tests of the data path, embedded use).
    pub fn always_open() -> Gate {
        Gate::new(Arc::new(|| true))
    }

    /// `Unavailable` unless the server may serve now.
    pub fn check_serving(&self) -> Result<(), Error> {
        if self.stopped.load(Ordering::Acquire) || self.draining.load(Ordering::Acquire) {
            let reason = self.stop_reason.lock().clone();
            return Err(Error::new(
                Code::Unavailable,
                format!("this tablet server stopped serving: {reason}"),
            ));
        }
        if !(self.safe)() {
            return Err(Error::new(
                Code::Unavailable,
                "this tablet server's lock-service session is in jeopardy; it serves nothing \
                 until the session is safe again",
            ));
        }
        Ok(())
    }

    /// Stops serving for good (lost membership, or the end of a shutdown): requests and
    /// manifest writes are refused.
    pub fn stop(&self, reason: impl Into<String>) {
        *self.stop_reason.lock() = reason.into();
        self.stopped.store(true, Ordering::Release);
    }

    /// Refuses every request from now on, but leaves manifest writes to the safety check (a
    /// shutting-down server flushes its tablets before it leaves); `stop` ends those too.
    pub fn drain(&self, reason: impl Into<String>) {
        *self.stop_reason.lock() = reason.into();
        self.draining.store(true, Ordering::Release);
    }

    /// Whether this server may store tablet manifests now: not stopped, and the session is
    /// safe at the moment of the call. The tablet server's `ManifestWritePermit`.
    pub fn may_write_manifests(&self) -> bool {
        !self.stopped.load(Ordering::Acquire) && (self.safe)()
    }

    /// Accepts a lifecycle command from a master at `epoch`, unless a newer master has been
    /// seen (`FailedPrecondition`). Equal epochs are the same master.
    pub fn accept_master_epoch(&self, epoch: Epoch) -> Result<(), Error> {
        let newest = self.master_epoch.fetch_max(epoch.0, Ordering::AcqRel);
        if epoch.0 < newest {
            return Err(Error::new(
                Code::FailedPrecondition,
                format!(
                    "master epoch {} is older than {newest}, the newest this server has seen",
                    epoch.0
                ),
            ));
        }
        Ok(())
    }

    /// The newest master epoch accepted.
    pub fn master_epoch(&self) -> Epoch {
        Epoch(self.master_epoch.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn serving_follows_the_safety_check_at_call_time() {
        let safe = Arc::new(AtomicBool::new(true));
        let s = safe.clone();
        let gate = Gate::new(Arc::new(move || s.load(Ordering::SeqCst)));
        gate.check_serving().unwrap();
        safe.store(false, Ordering::SeqCst);
        assert_eq!(gate.check_serving().unwrap_err().code, Code::Unavailable);
        safe.store(true, Ordering::SeqCst);
        gate.check_serving().unwrap();
        assert!(gate.may_write_manifests());
        safe.store(false, Ordering::SeqCst);
        assert!(!gate.may_write_manifests());
        safe.store(true, Ordering::SeqCst);
        gate.drain("draining");
        assert!(gate.check_serving().is_err());
        assert!(gate.may_write_manifests());
        gate.stop("shutting down");
        assert!(!gate.may_write_manifests());
        let e = gate.check_serving().unwrap_err();
        assert_eq!(e.code, Code::Unavailable);
        assert!(e.message.contains("shutting down"));
    }

    #[test]
    fn older_master_epochs_are_refused_and_equal_ones_accepted() {
        let gate = Gate::always_open();
        gate.accept_master_epoch(Epoch(5)).unwrap();
        gate.accept_master_epoch(Epoch(5)).unwrap();
        assert_eq!(
            gate.accept_master_epoch(Epoch(4)).unwrap_err().code,
            Code::FailedPrecondition
        );
        gate.accept_master_epoch(Epoch(9)).unwrap();
        assert_eq!(gate.master_epoch(), Epoch(9));
        assert!(gate.accept_master_epoch(Epoch(5)).is_err());
    }
}
