//! The master: election, METADATA, tablet assignment, failure handling, splits and balancing
//! (DESIGN.md section 6).
//!
//! Reading order: `plan` (the pure placement function and its view of the cluster), `election`
//! (the master lock and the master epoch), `tables` (the catalog in the lock service),
//! `bootstrap` (a new cluster's first records), `servers` and `view` (one round's picture of the
//! cluster), `execute` (carrying out actions in a crash-safe order), `splits` (recording splits servers
//! made), `active` (rounds and admin
//! operations while leading; `balancer_switch` is the cluster-wide balancer switch), `table_ops` (flushes, compactions and row drops of a table),
//! `tablet_ops` (`SplitTablet`), `merge_ops` (`MergeTablets`; `merge_intents` records merges in flight), `metrics` (`/metrics` and `/healthz`), `service` (`MasterService`)
//! and `node` (`Master`: serving and the campaign loop).

pub mod active;
pub mod balancer_switch;
pub mod bootstrap;
pub mod election;
pub mod execute;
pub mod merge_intents;
pub mod merge_ops;
pub mod metrics;
pub mod node;
pub mod plan;
pub mod servers;
pub mod service;
pub mod splits;
pub mod table_ops;
pub mod tables;
pub mod tablet_ops;
pub mod view;

pub use node::{Master, MasterConfig, serve};
