//! Locks: per file, either one exclusive holder or any number of shared holders.

use serde::{Deserialize, Serialize};

use super::command::LockMode;

/// One holder of a file's lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    /// The holding session.
    pub session: u64,
    /// How it holds it.
    pub mode: LockMode,
    /// The log index of its acquisition (its sequencer's generation).
    pub generation: u64,
}
