//! The lock service's client library: `LockClient` (files, sequencers, cell status and
//! membership), `Session` (a lease kept alive in the background, with ephemeral files and
//! locks) and `WatchStream` (events that survive broken streams).
//!
//! Reading order: `options`, `types` (what calls answer), `connection` (nodes, leader cache,
//! the retry loop, write numbering), `lock_client`, `local_lease` (the lease arithmetic),
//! `session`, `watch`.

mod connection;
mod local_lease;
mod lock_client;
mod options;
mod session;
mod types;
mod watch;

pub use lock_client::LockClient;
pub use options::ClientOptions;
pub use session::Session;
pub use types::{CellStatus, FileInfo, Listing, MemberApplied, MemberStatus, SessionState};
pub use watch::WatchStream;
