//! Splitting a tablet at a row: the tablet stops taking writes, flushes everything, and two
//! child manifests are written that name the parent's SSTables (no data is copied). Each child
//! reads only its own half of those files; its compactions write only its own rows.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tabula_common::TabletId;

use crate::engine::error::EngineError;
use crate::engine::manifest::Manifest;

use super::core::Tablet;

/// How long a split waits for writes in flight to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

impl Tablet {
    /// A row near the middle of the tablet's data (by SSTable blocks), or `None` if the tablet
    /// is too small to split.
    pub fn middle_row(&self) -> Result<Option<Bytes>, EngineError> {
        let state = self.inner.state.read().clone();
        let mut rows: Vec<Bytes> = Vec::new();
        for sst in &state.sstables {
            rows.extend(sst.block_last_rows());
        }
        rows.retain(|r| self.inner.range.contains(r) && r[..] > self.inner.start_row[..]);
        rows.sort();
        rows.dedup();
        Ok(rows.get(rows.len() / 2).cloned())
    }

    /// Splits at `at` into `left` (`[start, at)`) and `right` (`[at, end)`), storing both
    /// children's manifests, then the parent's naming them (the commit point). The tablet
    /// takes no more writes; open the children to serve them.
    pub fn split(
        &self,
        at: Bytes,
        left: TabletId,
        right: TabletId,
    ) -> Result<(Manifest, Manifest), EngineError> {
        let inner = &self.inner;
        if at[..] <= inner.start_row[..] || !inner.range.contains(&at) {
            return Err(EngineError::OutOfRange {
                row: at.escape_ascii().to_string(),
            });
        }
        inner.check_open()?;
        // Refused before the parent is closed to writes, so a fenced server keeps it as it was.
        inner.engine.permit_manifest_write(inner.id)?;
        inner.closed.store(true, Ordering::Release);
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while inner.seqs.lowest_unfinished() <= inner.seqs.last_assigned() {
            if Instant::now() > deadline {
                return Err(EngineError::Closed);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        inner.freeze(true);
        let _guard = inner.compaction.lock();
        inner.flush_frozen()?;
        let parent = inner.manifest.lock().clone();
        let timestamp_mark = parent
            .timestamp_mark
            .max(inner.last_timestamp.load(Ordering::Acquire));
        let child = |id: TabletId, start_row: Bytes, end_row: Option<Bytes>| Manifest {
            tablet: id,
            start_row,
            end_row,
            redo_seq: parent.last_seq,
            last_seq: parent.last_seq,
            sstables: parent.sstables.clone(),
            log_dirs: parent.log_dirs.clone(),
            split_into: Vec::new(),
            timestamp_mark,
        };
        let l = child(left, parent.start_row.clone(), Some(at.clone()));
        let r = child(right, at, parent.end_row.clone());
        inner.engine.permit_manifest_write(left)?;
        l.store(inner.engine.storage.as_ref())?;
        inner.engine.permit_manifest_write(right)?;
        r.store(inner.engine.storage.as_ref())?;
        // The commit point: the parent's manifest names its children, so it is never opened
        // again (loading it answers the children) and the split survives any crash from here.
        let mut done = parent.clone();
        done.split_into = vec![left, right];
        inner.engine.permit_manifest_write(inner.id)?;
        done.store(inner.engine.storage.as_ref())?;
        *inner.manifest.lock() = done;
        Ok((l, r))
    }
}
