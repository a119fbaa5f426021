//! Tabula's storage engine as a benchmark store: one tablet covering every row, with one
//! column family; each record is one cell (family `cf`, empty qualifier, timestamp 1).

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use tabula_common::{LocalDir, ServerId, StorageRoot, SystemClock, TabletId};
use tabula_tabletserver::engine::commitlog::{CommitLog, CommitLogOptions, CommitLogStats};
use tabula_tabletserver::engine::sstable::RowRange;
use tabula_tabletserver::engine::{
    CellFilter, Engine, EngineOptions, Mutation, RowMutation, ScanOptions, Schema, Tablet,
};

use super::store::Store;

/// The column family every record goes to.
const FAMILY: &[u8] = b"cf";
/// The timestamp of every cell (explicit, so writes do not read the clock).
const TIMESTAMP: i64 = 1;

/// One tablet of a fresh engine in its own directory.
pub(super) struct TabulaStore {
    // Dropped first: stops the tablet's background thread before the engine goes.
    tablet: Tablet,
    engine: Arc<Engine>,
}

impl TabulaStore {
    /// Creates an engine in `dir` whose commit log fdatasyncs every group commit if `sync`.
    pub(super) fn create(dir: &Path, sync: bool, opts: EngineOptions) -> anyhow::Result<Self> {
        let storage: Arc<dyn StorageRoot> =
            Arc::new(LocalDir::open(dir).with_context(|| format!("opening {}", dir.display()))?);
        let log_opts = CommitLogOptions {
            sync,
            ..CommitLogOptions::default()
        };
        let log = CommitLog::open(storage.clone(), ServerId("bench".to_owned()), log_opts)
            .context("opening the commit log")?;
        let engine = Engine::new(storage, Arc::new(log), Arc::new(SystemClock), opts);
        let tablet = engine
            .create_tablet(
                TabletId(1),
                Bytes::new(),
                None,
                Schema::with_families(["cf"]),
            )
            .context("creating the tablet")?;
        Ok(TabulaStore { tablet, engine })
    }

    /// The commit log's counters (records, group batches, fdatasyncs) since it opened.
    pub(super) fn log_stats(&self) -> CommitLogStats {
        self.engine.commit_log().stats()
    }
}

impl Store for TabulaStore {
    fn put(&self, key: &[u8], value: &[u8]) -> anyhow::Result<()> {
        let mutation = RowMutation {
            row: Bytes::copy_from_slice(key),
            mutations: vec![Mutation::SetCell {
                family: Bytes::from_static(FAMILY),
                qualifier: Bytes::new(),
                timestamp: TIMESTAMP,
                value: Bytes::copy_from_slice(value),
            }],
        };
        self.tablet.apply(mutation)?;
        Ok(())
    }

    fn get(&self, key: &[u8]) -> anyhow::Result<bool> {
        let row = self.tablet.read_row(key, &CellFilter::default())?;
        Ok(row.is_some_and(|r| !r.cells.is_empty()))
    }

    fn scan(&self, start: Option<&[u8]>, limit: Option<usize>) -> anyhow::Result<u64> {
        let start = start.map_or(Bound::Unbounded, |s| {
            Bound::Included(Bytes::copy_from_slice(s))
        });
        let opts = ScanOptions {
            range: RowRange {
                start,
                end: Bound::Unbounded,
            },
            limit,
            ..ScanOptions::default()
        };
        let mut rows = 0u64;
        for row in self.tablet.scan(opts)? {
            let row = row?;
            if !row.cells.is_empty() {
                rows += 1;
            }
        }
        Ok(rows)
    }
}
