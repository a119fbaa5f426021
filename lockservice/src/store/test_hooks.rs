//! Test-only hooks into the log writer thread: a gate that holds it before its next command
//! (so that appends pile up in the queue and form one batch) and an injected write failure.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::{Condvar, Mutex};

use super::error::StoreError;

/// Hooks shared with the writer thread (`LogShared::hooks`).
#[derive(Debug, Default)]
pub(super) struct TestHooks {
    /// Closed: the writer waits before it handles the next command it took from the queue.
    pub(super) gate: Gate,
    /// Set: the next segment write fails (before any byte is written), as a full disk would.
    pub(super) fail_next_write: AtomicBool,
}

impl TestHooks {
    /// The injected failure, once, if armed.
    pub(super) fn injected_failure(&self, path: &Path) -> Result<(), StoreError> {
        if self.fail_next_write.swap(false, Ordering::SeqCst) {
            return Err(StoreError::io(
                "write",
                path,
                std::io::Error::other("injected write failure"),
            ));
        }
        Ok(())
    }
}

/// A gate the writer passes only while it is open (open at first).
#[derive(Debug, Default)]
pub(super) struct Gate {
    closed: Mutex<bool>,
    changed: Condvar,
}

impl Gate {
    pub(super) fn close(&self) {
        *self.closed.lock() = true;
    }

    pub(super) fn open(&self) {
        *self.closed.lock() = false;
        self.changed.notify_all();
    }

    /// Waits while the gate is closed.
    pub(super) fn pass(&self) {
        let mut closed = self.closed.lock();
        while *closed {
            self.changed.wait(&mut closed);
        }
    }
}
