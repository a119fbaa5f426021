//! The lock service: a Raft-replicated (openraft), Chubby-like tree of small files with
//! sessions, advisory locks, sequencers and watches (DESIGN.md section 3).
//!
//! Reading order: `state` (the deterministic state machine: what a command does), `types`
//! (openraft's type configuration), `store` (the durable log store and the state-machine
//! store openraft drives), `network` (Raft RPCs between nodes over tonic), then `node` (one
//! node: storage + Raft + its Raft service, and forming the cell once).

pub mod api;
pub mod client;
pub mod lease;
pub mod network;
pub mod node;
pub mod service;
pub mod state;
pub mod store;
pub mod types;
