//! The lock service's state machine: a tree of files with generations, sessions, locks and an
//! event history for watches. Deterministic: `apply` reads no clock and no randomness — time
//! arrives inside commands proposed by the leader (session expiry).
//!
//! (Being written: see `command.rs` for the commands and their results.)

mod command;

pub use command::{ClientRef, FailReason, LockMode, Op, Request, Response, Sequencer};
