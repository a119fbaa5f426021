//! The commands the log carries and what applying them answers.

use serde::{Deserialize, Serialize};

/// Identifies a retried write: `(client_id, seq)` is applied at most once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ClientRef {
    /// A random id the client chose at start.
    pub client_id: u64,
    /// Increases with each write the client sends.
    pub seq: u64,
}

/// Lock mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LockMode {
    /// One holder.
    Exclusive,
    /// Many holders, no exclusive one.
    Shared,
}

/// Proof of holding a lock: valid while the lock's generation is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Sequencer {
    /// The locked file.
    pub path: String,
    /// How it is held.
    pub mode: LockMode,
    /// The log index of the acquisition; only grows.
    pub generation: u64,
}

/// A log entry's application payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// For deduplication of retried writes; `None` for leader-internal commands.
    pub client: Option<ClientRef>,
    /// What to do.
    pub op: Op,
}

/// The operations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Opens a session; its id is the entry's log index.
    OpenSession {
        /// Lease length the client asked for.
        ttl_ms: u64,
    },
    /// Closes a session: its ephemeral files go, its locks are released.
    CloseSession {
        /// The session.
        session: u64,
    },
    /// Expires sessions the leader found overdue (proposed by the leader only).
    ExpireSessions {
        /// The sessions.
        sessions: Vec<u64>,
    },
    /// Creates a file (and no parents: they must exist, `/` always does).
    Create {
        /// Absolute path.
        path: String,
        /// Contents.
        contents: Vec<u8>,
        /// Deleted when this session ends.
        ephemeral_session: Option<u64>,
    },
    /// Replaces a file's contents, optionally only if its generation matches.
    SetContents {
        /// Absolute path.
        path: String,
        /// Contents.
        contents: Vec<u8>,
        /// Compare-and-set.
        if_generation: Option<u64>,
    },
    /// Deletes a file (which must have no children), optionally only if its generation matches.
    Delete {
        /// Absolute path.
        path: String,
        /// Compare-and-set.
        if_generation: Option<u64>,
    },
    /// Tries to take a lock for a session.
    Acquire {
        /// Absolute path of an existing file.
        path: String,
        /// The session that will hold it.
        session: u64,
        /// Exclusive or shared.
        mode: LockMode,
    },
    /// Releases a session's lock.
    Release {
        /// Absolute path.
        path: String,
        /// The holder.
        session: u64,
    },
}

/// What applying a request answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// A session was opened.
    SessionOpened {
        /// Its id.
        session: u64,
    },
    /// The change was applied; the file's new generation (or the entry's index).
    Done {
        /// Generation.
        generation: u64,
    },
    /// The lock is held.
    Acquired(Sequencer),
    /// The lock is held by someone else (try-acquire failed; not an error).
    LockHeld,
    /// The request could not be applied.
    Failed(FailReason),
}

/// Why a request was not applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailReason {
    /// No such file or session.
    NotFound,
    /// The file exists.
    AlreadyExists,
    /// A compare-and-set generation did not match.
    GenerationMismatch {
        /// The file's current generation.
        actual: u64,
    },
    /// The file has children.
    NotEmpty,
    /// The parent does not exist.
    NoParent,
    /// The session is closed or expired.
    SessionGone,
    /// The request is malformed (bad path, zero TTL).
    Invalid(String),
    /// A limit of the state machine would be exceeded (files, sessions, bytes).
    ResourceExhausted(String),
    /// A retry of a write older than the client's last applied one, whose response is no longer
    /// kept: it was applied once and is not applied again.
    StaleRequest {
        /// The client's last applied `seq`.
        last_seq: u64,
    },
}
