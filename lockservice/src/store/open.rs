//! Opening a data directory: lock it, recover the log, restore the state machine, start the
//! log writer thread.

use std::path::Path;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::durable::{self, DirLock};
use super::error::StoreError;
use super::log_store::{COMMAND_QUEUE, LogStore};
use super::log_writer;
use super::state_machine::StateMachineStore;
use crate::state::Limits;

/// The `log/` directory under the data directory.
pub(super) const LOG_DIR: &str = "log";
/// The `snapshot/` directory under the data directory.
pub(super) const SNAPSHOT_DIR: &str = "snapshot";

/// Storage tuning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageOptions {
    /// A log segment is rolled once a write would take it past this size (a single larger
    /// write still goes to one segment). Purging frees whole segments only.
    pub segment_max_bytes: u64,
    /// The state machine's limits when it starts empty (a snapshot carries its own).
    pub limits: Limits,
}

impl Default for StorageOptions {
    fn default() -> Self {
        StorageOptions {
            segment_max_bytes: 64 << 20,
            limits: Limits::default(),
        }
    }
}

/// Opens (or creates) the storage in `dir` with default options.
pub async fn open_storage(dir: &Path) -> Result<(LogStore, StateMachineStore), StoreError> {
    open_storage_with(dir, StorageOptions::default()).await
}

/// Opens (or creates) the storage in `dir`. Fails with `StoreError::Locked` while another
/// store has it open (a dropped `LogStore` releases it once its writer thread has stopped,
/// which its `Drop` waits for, and the `StateMachineStore` is dropped too).
pub async fn open_storage_with(
    dir: &Path,
    options: StorageOptions,
) -> Result<(LogStore, StateMachineStore), StoreError> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || open_blocking(&dir, options))
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
}

fn open_blocking(
    dir: &Path,
    options: StorageOptions,
) -> Result<(LogStore, StateMachineStore), StoreError> {
    durable::create_dir(dir)?;
    let lock = Arc::new(DirLock::acquire(dir)?);
    let (shared, writer) = log_writer::recover(
        &dir.join(LOG_DIR),
        options.segment_max_bytes.max(1),
        Arc::clone(&lock),
    )?;
    let state_machine = StateMachineStore::open(&dir.join(SNAPSHOT_DIR), options.limits, lock)?;
    let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
    let thread = std::thread::Builder::new()
        .name("lock-log-writer".into())
        .spawn(move || writer.run(rx))
        .map_err(|e| StoreError::io("spawn log writer for", dir, e))?;
    Ok((LogStore::new(shared, tx, thread), state_machine))
}
