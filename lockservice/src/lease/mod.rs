//! Session leases, kept in the leader's memory (DESIGN.md section 3).
//!
//! KeepAlives are not logged: the leader extends a session's deadline in memory and answers
//! only while it has confirmed its leadership with a quorum recently. Expiry *is* logged: the
//! leader proposes `Op::ExpireSessions` for overdue sessions, so every replica ends them at the
//! same log index. A new leader first grants every session it finds `now + ttl + grace`, so a
//! client whose last KeepAlive went to the old leader survives the election.
//!
//! Why a deposed leader cannot undercut the new one: it grants a KeepAlive only within
//! `quorum_window` of the start of a quorum round, and `quorum_window <= min(grace,
//! election_timeout_min)`. A new leader is elected no earlier than the old leader's last
//! confirmed round plus an election timeout and then adds `grace` on top of each TTL, so every
//! lease the old leader granted ends before the new leader may expire the session.
//!
//! Reading order: `table` (the pure core: deadlines, readiness, what is due), then `keeper`
//! (the async driver on the Raft metrics: confirms the quorum, syncs with the applied state,
//! proposes expiries, answers KeepAlives).

mod keeper;
mod table;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use keeper::LeaseKeeper;

/// Timing of the leader's leases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LeaseOptions {
    /// Added to every session's TTL when a node starts leading, before anything expires.
    pub grace: Duration,
    /// KeepAlives are answered only if a quorum confirmed the leadership in a round that started
    /// less than this long ago. Keep it at most `min(grace, election_timeout_min)`.
    pub quorum_window: Duration,
    /// Period of the leader loop: quorum confirmation, sync and expiry.
    pub tick: Duration,
}

impl Default for LeaseOptions {
    fn default() -> Self {
        LeaseOptions {
            grace: Duration::from_secs(5),
            quorum_window: Duration::from_millis(600),
            tick: Duration::from_millis(100),
        }
    }
}

/// Why a KeepAlive was not granted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeepAliveError {
    /// This node does not lead; ask the leader.
    #[error("not the leader")]
    NotLeader,
    /// This node leads but has not yet confirmed its term and synced its leases; retry soon.
    #[error("the leader is not ready to grant leases yet")]
    NotReady,
    /// This node leads but no quorum confirmed it within the quorum window; it may be deposed.
    #[error("the leader has not confirmed a quorum recently")]
    QuorumLost,
    /// The session is not live, or it is already being expired.
    #[error("the session is gone")]
    SessionGone,
}

/// What the leader's lease table looks like, for status pages and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseStatus {
    /// The term this node leads, as the lease table knows it.
    pub leading_term: Option<u64>,
    /// Whether the table is synced with the state and grants leases.
    pub ready: bool,
    /// Sessions the table tracks.
    pub sessions: usize,
}
