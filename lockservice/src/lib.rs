//! The lock service: a Raft-replicated (openraft), Chubby-like tree of small files with
//! sessions, advisory locks, sequencers and watches (DESIGN.md section 3).
//!
//! Reading order: `state` (the deterministic state machine: what a command does), `types`
//! (openraft's type configuration), then `store` (the durable log store and the state-machine
//! store openraft drives).

pub mod state;
pub mod store;
pub mod types;
