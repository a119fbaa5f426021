//! Shared harness of the integration tests (`tests/tests/`), and a home for tests that span
//! crates (client, master, tablet servers, lock service) or start real processes.
//!
//! `cluster` starts the parts of a cluster in process: a lock cell (`LockCell`), tablet
//! servers (`start_tablet_server`), and waits on conditions with a deadline (`eventually`);
//! `master_helpers` holds what the master tests share (configuration, status,
//! tables, single-cell reads and writes); `http` is a one-shot GET for `/metrics` and `/healthz`.

pub mod cluster;
pub mod http;
pub mod linearizability;
pub mod master_helpers;

pub use cluster::{LockCell, eventually, start_tablet_server, tablet_server_config};
