//! The watch history: events emitted by `apply`, tagged with the entry's log index.

use serde::{Deserialize, Serialize};

use super::command::LockMode;

/// One change to the tree or to a lock, in log order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The log index of the entry that caused it (several events may share one).
    pub revision: u64,
    /// The file concerned.
    pub path: String,
    /// What happened.
    pub kind: EventKind,
}

/// What happened to a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// The file was created.
    Created {
        /// The session it dies with, if ephemeral.
        ephemeral_session: Option<u64>,
    },
    /// Its contents were replaced.
    Changed,
    /// It was deleted.
    Deleted,
    /// A session took its lock.
    Locked {
        /// The new holder.
        session: u64,
        /// How.
        mode: LockMode,
        /// The sequencer generation (= `revision`).
        generation: u64,
    },
    /// A session's lock on it went away (release, session end, or file deletion).
    Unlocked {
        /// The former holder.
        session: u64,
        /// How it was held.
        mode: LockMode,
    },
}

/// The requested revision is older than the retained history: reread, then watch again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("revision compacted: the oldest revision still watchable is {oldest}")]
pub struct Compacted {
    /// The smallest revision `events_since` accepts now.
    pub oldest: u64,
}
