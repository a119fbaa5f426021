//! Sessions: opened by a log entry (id = its index), ended by close or leader-proposed expiry.

/// What the leader needs to track a session's lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionView {
    /// The lease length the client asked for.
    pub ttl_ms: u64,
}
