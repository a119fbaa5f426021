//! The lock service's state machine: a tree of files with generations, sessions, locks and an
//! event history for watches. Deterministic: `apply` reads no clock and no randomness — time
//! arrives inside commands proposed by the leader (session expiry).
//!
//! Reading order: `command` (what the log carries), `machine` (`LockState::apply` dispatch),
//! then one file per concept: `path`, `tree`, `session`, `lock`, `events`, `dedup`, and
//! `snapshot` (the serialized form and its validation on restore).

mod command;
mod dedup;
mod events;
mod lock;
mod machine;
mod path;
#[cfg(test)]
mod proptests;
mod session;
mod snapshot;
#[cfg(test)]
mod testutil;
mod tree;

pub use command::{ClientRef, FailReason, LockMode, Op, Request, Response, Sequencer};
pub use events::{Compacted, Event, EventKind};
pub use lock::LockHolder;
pub use machine::{Limits, LockState};
pub use path::validate as validate_path;
pub use session::SessionView;
pub use snapshot::SnapshotError;
pub use tree::FileView;
