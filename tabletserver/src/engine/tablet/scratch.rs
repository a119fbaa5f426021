//! Unit-test scaffolding shared by the engine and the server around it: an engine over a
//! storage root, a whole-range tablet on a fresh temp directory, and waiting for a condition.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tabula_common::{Clock, LocalDir, ManualClock, ServerId, StorageRoot, TabletId, Timestamp};

use crate::engine::commitlog::{CommitLog, CommitLogOptions};
use crate::engine::{Engine, EngineOptions, Schema, Tablet};

/// How long a condition a test waits for may take on a loaded machine.
pub(crate) const PATIENCE: Duration = Duration::from_secs(10);

/// Polls `done` until it holds; fails after [`PATIENCE`].
pub(crate) fn wait_until(what: &str, done: impl Fn() -> bool) {
    let end = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < end, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// An engine (test options) whose commit log is `server`'s on `storage`.
pub(crate) fn engine_on(
    storage: &Arc<dyn StorageRoot>,
    server: &str,
    clock: Arc<dyn Clock>,
) -> Arc<Engine> {
    engine_with(storage, server, clock, EngineOptions::for_tests())
}

/// An engine with `opts` whose commit log is `server`'s on `storage`.
pub(crate) fn engine_with(
    storage: &Arc<dyn StorageRoot>,
    server: &str,
    clock: Arc<dyn Clock>,
    opts: EngineOptions,
) -> Arc<Engine> {
    let log = CommitLog::open(
        storage.clone(),
        ServerId(server.into()),
        CommitLogOptions::default(),
    )
    .unwrap();
    Engine::new(storage.clone(), Arc::new(log), clock, opts)
}

/// Tablet 1 over every row with `schema`, on a new temp directory (keep it alive) and a
/// manual clock standing at 2023-11-14.
pub(crate) fn scratch_tablet(schema: Schema) -> (tempfile::TempDir, Tablet) {
    scratch_tablet_with(schema, EngineOptions::for_tests())
}

/// [`scratch_tablet`] on an engine with `opts`.
pub(crate) fn scratch_tablet_with(
    schema: Schema,
    opts: EngineOptions,
) -> (tempfile::TempDir, Tablet) {
    let dir = tempfile::tempdir().unwrap();
    let storage: Arc<dyn StorageRoot> = Arc::new(LocalDir::open(dir.path()).unwrap());
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(Timestamp(1_700_000_000_000_000)));
    let tablet = engine_with(&storage, "s1", clock, opts)
        .create_tablet(TabletId(1), Bytes::new(), None, schema)
        .unwrap();
    (dir, tablet)
}
