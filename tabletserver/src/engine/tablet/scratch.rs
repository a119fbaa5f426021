//! Unit-test scaffolding shared by the engine and the server around it: an engine over a
//! storage root, and a whole-range tablet on a fresh temp directory.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::sync::Arc;

use bytes::Bytes;
use tabula_common::{Clock, LocalDir, ManualClock, ServerId, StorageRoot, TabletId, Timestamp};

use crate::engine::commitlog::{CommitLog, CommitLogOptions};
use crate::engine::{Engine, EngineOptions, Schema, Tablet};

/// An engine (test options) whose commit log is `server`'s on `storage`.
pub(crate) fn engine_on(
    storage: &Arc<dyn StorageRoot>,
    server: &str,
    clock: Arc<dyn Clock>,
) -> Arc<Engine> {
    let log = CommitLog::open(
        storage.clone(),
        ServerId(server.into()),
        CommitLogOptions::default(),
    )
    .unwrap();
    Engine::new(
        storage.clone(),
        Arc::new(log),
        clock,
        EngineOptions::for_tests(),
    )
}

/// Tablet 1 over every row with `schema`, on a new temp directory (keep it alive) and a
/// manual clock standing at 2023-11-14.
pub(crate) fn scratch_tablet(schema: Schema) -> (tempfile::TempDir, Tablet) {
    let dir = tempfile::tempdir().unwrap();
    let storage: Arc<dyn StorageRoot> = Arc::new(LocalDir::open(dir.path()).unwrap());
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(Timestamp(1_700_000_000_000_000)));
    let tablet = engine_on(&storage, "s1", clock)
        .create_tablet(TabletId(1), Bytes::new(), None, schema)
        .unwrap();
    (dir, tablet)
}
