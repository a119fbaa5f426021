//! How a `LockClient` times its calls and keeps its sessions.

use std::time::Duration;

/// Timeouts, retry budget and session lease settings of a `LockClient`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// Longest wait for the answer to one attempt of one call (a blocking `acquire` adds its
    /// wait to it).
    pub rpc_timeout: Duration,
    /// Longest wait for a TCP connection to a node.
    pub connect_timeout: Duration,
    /// Total time an operation keeps retrying across nodes before it gives up with the last
    /// error.
    pub op_deadline: Duration,
    /// Session lease length asked for by `open_session` (the cell may grant less).
    pub session_ttl: Duration,
    /// How long a session stays in jeopardy after its local lease ends (KeepAlives still
    /// being retried) before the client gives it up as expired.
    pub grace: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            rpc_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(1),
            op_deadline: Duration::from_secs(15),
            session_ttl: Duration::from_secs(10),
            grace: Duration::from_secs(10),
        }
    }
}
