//! `LockState`: the whole state machine and `apply`'s dispatch.

use super::command::{FailReason, Request, Response, Sequencer};
use super::events::{Compacted, Event};
use super::session::SessionView;
use super::snapshot::SnapshotError;
use super::tree::FileView;

/// Bounds on the state; identical on every replica (carried in snapshots).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Largest file contents.
    pub max_contents_bytes: usize,
    /// Number of files, `/` included.
    pub max_files: usize,
    /// Sum of all contents.
    pub max_total_contents_bytes: usize,
    /// Live sessions.
    pub max_sessions: usize,
    /// Longest session TTL.
    pub max_ttl_ms: u64,
    /// Retained watch events.
    pub max_events: usize,
    /// Clients remembered for deduplication.
    pub max_dedup_clients: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_contents_bytes: 1 << 20,
            max_files: 1_000_000,
            max_total_contents_bytes: 256 << 20,
            max_sessions: 100_000,
            max_ttl_ms: 3_600_000,
            max_events: 10_000,
            max_dedup_clients: 100_000,
        }
    }
}

/// The lock service's replicated state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LockState {
    limits: Limits,
    last_applied: u64,
}

impl LockState {
    /// An empty state (only `/`) with these limits.
    pub fn with_limits(limits: Limits) -> Self {
        Self {
            limits,
            last_applied: 0,
        }
    }

    /// Applies the entry at log `index`. Deterministic.
    pub fn apply(&mut self, index: u64, req: &Request) -> Response {
        let _ = req;
        self.last_applied = index;
        Response::Failed(FailReason::Invalid("not implemented".into()))
    }

    /// Serializes everything, dedup table and retained events included.
    pub fn to_snapshot(&self) -> Vec<u8> {
        Vec::new()
    }

    /// Restores a snapshot; never panics on bad bytes.
    pub fn from_snapshot(bytes: &[u8]) -> Result<LockState, SnapshotError> {
        let _ = bytes;
        Err(SnapshotError::Decode("not implemented".into()))
    }

    /// A file.
    pub fn get(&self, path: &str) -> Option<FileView> {
        let _ = path;
        None
    }

    /// A file's children names, sorted.
    pub fn list(&self, path: &str) -> Option<Vec<String>> {
        let _ = path;
        None
    }

    /// Live sessions, by id.
    pub fn sessions(&self) -> impl Iterator<Item = (u64, SessionView)> + '_ {
        std::iter::empty()
    }

    /// Whether the sequencer is still current.
    pub fn check_sequencer(&self, s: &Sequencer) -> bool {
        let _ = s;
        false
    }

    /// Events with `revision >= revision` whose path starts with `prefix`, in log order.
    pub fn events_since(&self, revision: u64, prefix: &str) -> Result<Vec<Event>, Compacted> {
        let _ = (revision, prefix);
        Ok(Vec::new())
    }

    /// The index of the last applied entry.
    pub fn last_applied_index(&self) -> u64 {
        self.last_applied
    }
}
