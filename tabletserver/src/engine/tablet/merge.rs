//! Merging two adjacent tablets into one: no data is copied. The merged tablet's manifest
//! names both tablets' SSTables (each may hold rows outside the merged range, as a split
//! child's do; reads and compactions are restricted to the tablet's range), and both are
//! marked as replaced by it.
//!
//! Order of stores: the merged manifest, then the left's manifest naming the merged tablet in
//! `split_into` (the commit point: from here a retry finishes the merge whatever it finds), then
//! the right's. A tablet marked so is never opened again; loading it answers the merged tablet.
//!
//! Preconditions, checked: neither tablet is open in this engine, both manifests are live,
//! adjacent (`left.end_row == Some(right.start_row)`) and fully flushed (`redo_seq ==
//! last_seq`: the merged tablet replays no commit log, and its sequence numbers start after
//! the larger of the two — their rows are disjoint, so the two tablets' numbers never meet on
//! one row). And no SSTable named by only one of the two holds rows of the other's range:
//! after a split child compacted a shared SSTable away, its sibling's copy still holds the
//! child's old (maybe deleted) rows, which the merged range would bring back; such a merge is
//! refused until both tablets are major-compacted.

use std::collections::HashSet;
use std::sync::Arc;

use tabula_common::{FileId, TabletId};

use crate::engine::commitlog::{ReplayError, replay};
use crate::engine::error::EngineError;
use crate::engine::manifest::Manifest;
use crate::engine::sstable::{RowRange, Sstable};

use super::core::sstable_path;
use super::engine::Engine;

impl Engine {
    /// Merges the adjacent tablets `left` and `right` into a new tablet `merged` (see the module
    /// documentation); answers the merged tablet's manifest. Idempotent: a retry after any
    /// crash finishes the merge.
    pub fn merge_tablets(
        self: &Arc<Self>,
        left: TabletId,
        right: TabletId,
        merged: TabletId,
    ) -> Result<Manifest, EngineError> {
        if left == right || merged == left || merged == right || merged.0 == 0 {
            return Err(EngineError::MergeRefused(format!(
                "merging {left} and {right} into {merged} needs three distinct non-zero ids"
            )));
        }
        for id in [left, right] {
            if self.is_open(id) {
                return Err(EngineError::MergeRefused(format!(
                    "tablet {id} is open here: unload it before merging"
                )));
            }
        }
        let storage = self.storage.as_ref();
        let l = Manifest::load(storage, left)?;
        let r = Manifest::load(storage, right)?;
        let replaced_by_merged = |m: &Manifest| m.split_into == [merged];
        if replaced_by_merged(&l) {
            // Past the commit point: finish.
            let m = Manifest::load(storage, merged)?;
            if !replaced_by_merged(&r) {
                check_live_and_flushed(&r)?;
                self.check_nothing_to_replay(&r)?;
                mark_replaced(self, r, merged)?;
            }
            return Ok(m);
        }
        let m = merged_manifest(&l, &r, merged)?;
        self.check_nothing_to_replay(&l)?;
        self.check_nothing_to_replay(&r)?;
        self.check_no_foreign_rows(&l, &r)?;
        if storage.exists(&Manifest::path(merged))? {
            let existing = Manifest::load(storage, merged)?;
            if existing != m {
                return Err(EngineError::MergeRefused(format!(
                    "tablet {merged} exists already and is not the merge of {left} and {right}"
                )));
            }
        } else {
            self.permit_manifest_write(merged)?;
            m.store(storage)?;
        }
        mark_replaced(self, l, merged)?;
        mark_replaced(self, r, merged)?;
        tracing::info!(%left, %right, %merged, sstables = m.sstables.len(), "tablets merged");
        Ok(m)
    }

    fn is_open(&self, id: TabletId) -> bool {
        self.open_tablets
            .lock()
            .get(&id)
            .is_some_and(|weak| weak.strong_count() > 0)
    }

    /// `MergeRefused` if a commit log `m` names holds entries of its tablet past its redo point
    /// (its server died before it was flushed; loading it elsewhere recovers and flushes them).
    fn check_nothing_to_replay(&self, m: &Manifest) -> Result<(), EngineError> {
        let mut records = 0u64;
        let own = self.log.replay_view(m.tablet, m.redo_seq);
        replay(
            self.storage.as_ref(),
            &m.log_dirs,
            m.tablet,
            m.redo_seq,
            Some(&own),
            |_| -> Result<(), EngineError> {
                records += 1;
                Ok(())
            },
        )
        .map_err(ReplayError::flatten)?;
        if records > 0 {
            return Err(EngineError::MergeRefused(format!(
                "tablet {} has {records} commit-log records past its redo point {}: load it \
                 (recovery flushes them) and unload it before merging",
                m.tablet, m.redo_seq
            )));
        }
        Ok(())
    }

    /// `MergeRefused` if an SSTable only one of the two names holds a row of the other's range.
    fn check_no_foreign_rows(&self, l: &Manifest, r: &Manifest) -> Result<(), EngineError> {
        let in_l: HashSet<FileId> = l.sstables.iter().copied().collect();
        let in_r: HashSet<FileId> = r.sstables.iter().copied().collect();
        for (own, other, other_ids) in [(l, r, &in_r), (r, l, &in_l)] {
            for file in own.sstables.iter().filter(|f| !other_ids.contains(f)) {
                if self.holds_rows_in(*file, &other.range())? {
                    return Err(EngineError::MergeRefused(format!(
                        "SSTable {file} of tablet {} holds rows of tablet {}'s range that \
                         {} no longer reads (compacted away after a split); {}",
                        own.tablet,
                        other.tablet,
                        other.tablet,
                        tabula_common::error::MERGE_NEEDS_MAJOR_COMPACTION
                    )));
                }
            }
        }
        Ok(())
    }

    fn holds_rows_in(&self, file: FileId, range: &RowRange) -> Result<bool, EngineError> {
        let handle = self.storage.open_read(&sstable_path(file))?;
        let sst = Sstable::open(file, handle, self.cache.clone())?;
        match sst.iter(range.clone(), false).next() {
            None => Ok(false),
            Some(Ok(_)) => Ok(true),
            Some(Err(e)) => Err(e.into()),
        }
    }
}

/// The manifest of the merge of `l` and `r` (checked: live, adjacent, flushed).
fn merged_manifest(l: &Manifest, r: &Manifest, merged: TabletId) -> Result<Manifest, EngineError> {
    check_live_and_flushed(l)?;
    check_live_and_flushed(r)?;
    if l.end_row.as_ref() != Some(&r.start_row) {
        return Err(EngineError::MergeRefused(format!(
            "tablets {} and {} are not adjacent: {} ends at {:?}, {} starts at {:?}",
            l.tablet,
            r.tablet,
            l.tablet,
            l.end_row.as_ref().map(|e| e.escape_ascii().to_string()),
            r.tablet,
            r.start_row.escape_ascii().to_string()
        )));
    }
    let mut sstables = l.sstables.clone();
    sstables.extend(r.sstables.iter().filter(|f| !l.sstables.contains(f)));
    let mut log_dirs = l.log_dirs.clone();
    log_dirs.extend(
        r.log_dirs
            .iter()
            .filter(|d| !l.log_dirs.contains(d))
            .cloned(),
    );
    let seq = l.last_seq.max(r.last_seq);
    Ok(Manifest {
        tablet: merged,
        start_row: l.start_row.clone(),
        end_row: r.end_row.clone(),
        redo_seq: seq,
        last_seq: seq,
        sstables,
        log_dirs,
        split_into: Vec::new(),
        timestamp_mark: l.timestamp_mark.max(r.timestamp_mark),
    })
}

fn check_live_and_flushed(m: &Manifest) -> Result<(), EngineError> {
    if !m.split_into.is_empty() {
        return Err(EngineError::WasSplit {
            tablet: m.tablet,
            children: m.split_into.clone(),
        });
    }
    if m.redo_seq != m.last_seq {
        return Err(EngineError::MergeRefused(format!(
            "tablet {} is not fully flushed (redo point {} < last sequence number {}): load \
             and unload it (which flushes) before merging",
            m.tablet, m.redo_seq, m.last_seq
        )));
    }
    Ok(())
}

/// Stores `m` as replaced by `merged`.
fn mark_replaced(engine: &Engine, mut m: Manifest, merged: TabletId) -> Result<(), EngineError> {
    m.split_into = vec![merged];
    engine.permit_manifest_write(m.tablet)?;
    m.store(engine.storage.as_ref())?;
    Ok(())
}
