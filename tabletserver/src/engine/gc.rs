//! Garbage collection, off the write path.
//!
//! SSTables: a file no tablet manifest names is deleted once it is older than the grace period
//! and no tablet of this engine is writing it.
//! Every live manifest under `tablets/` counts, including those of tablets served elsewhere, so
//! a file shared by split children lives until no child names it; a split parent's manifest
//! (naming its children) is not a root, as it is never opened again. If any
//! manifest cannot be read, nothing is deleted.
//!
//! Commit-log segments (this server's own): a segment may go once every tablet with records in
//! it has a redo point at or past those records — or no longer names this server's log at all
//! (it was moved, split or deleted after a flush). Segments are deleted oldest first, up to the
//! first one still needed; segments of earlier runs, whose contents this log did not track, are
//! kept.

use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use tabula_common::{FileId, TabletId};

use super::error::EngineError;
use super::manifest::Manifest;
use super::tablet::Engine;

/// What a collection did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcStats {
    /// Manifests read.
    pub manifests: usize,
    /// SSTables still named by a manifest.
    pub live: usize,
    /// SSTables deleted.
    pub deleted: usize,
    /// Unnamed SSTables kept because they are young or being written.
    pub spared: usize,
}

impl Engine {
    /// Deletes this server's commit-log segments that no tablet needs any more; returns how many.
    pub fn collect_log_garbage(&self) -> Result<usize, EngineError> {
        let own_dir = self.log.server_dir();
        let current = self.log.current_segment();
        let mut first_needed = current;
        for path in self.log.segments() {
            let Some(number) = segment_number(&path) else {
                continue;
            };
            if number >= current {
                break;
            }
            let Some(tablets) = self.log.segment_tablet_max_seqs(number) else {
                first_needed = number;
                break;
            };
            let mut needed = false;
            for (tablet, max_seq) in tablets {
                needed |= self.tablet_needs_log(tablet, max_seq, &own_dir)?;
            }
            if needed {
                first_needed = number;
                break;
            }
        }
        Ok(self.log.delete_segments_before(first_needed)?)
    }

    fn tablet_needs_log(
        &self,
        tablet: TabletId,
        max_seq: u64,
        own_dir: &str,
    ) -> Result<bool, EngineError> {
        if let Some(redo) = self.open_redo_seq(tablet) {
            return Ok(redo < max_seq);
        }
        let storage = self.storage.as_ref();
        if !storage.exists(&Manifest::path(tablet))? {
            return Ok(false);
        }
        let m = Manifest::load(storage, tablet)?;
        Ok(m.redo_seq < max_seq && m.log_dirs.iter().any(|d| d == own_dir))
    }

    /// Deletes SSTables that no manifest names.
    pub fn collect_garbage(&self) -> Result<GcStats, EngineError> {
        let storage = self.storage.as_ref();
        let mut stats = GcStats::default();
        let mut live: HashSet<FileId> = HashSet::new();
        for dir in storage.list("tablets")? {
            let Some(id) = u64::from_str_radix(&dir, 16).ok().map(TabletId) else {
                continue;
            };
            if !storage.exists(&Manifest::path(id))? {
                continue;
            }
            let manifest = Manifest::load(storage, id)?;
            stats.manifests += 1;
            // A split (or merged-away) tablet is never opened again: its children's manifests,
            // stored before its own named them, are the roots of whatever it still shares.
            if manifest.split_into.is_empty() {
                live.extend(manifest.sstables);
            }
        }
        stats.live = live.len();
        let now_millis = (self.clock.now().micros() / 1000).max(0) as u128;
        let grace_millis = self.opts.file_gc_grace.as_millis();
        for name in storage.list("sst")? {
            let Some(id) = name.strip_suffix(".sst").and_then(FileId::parse) else {
                continue;
            };
            if live.contains(&id) {
                continue;
            }
            let born_millis = id.0 >> 80;
            if self.writing.lock().contains(&id) || born_millis + grace_millis > now_millis {
                stats.spared += 1;
                continue;
            }
            storage.delete(&format!("sst/{name}"))?;
            stats.deleted += 1;
        }
        Ok(stats)
    }
}

/// Runs both collections every `interval` on a thread of its own; dropping the handle stops
/// and joins it.
#[derive(Debug)]
pub struct GcHandle {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Engine {
    /// Starts periodic garbage collection for this engine.
    pub fn start_gc(self: &Arc<Self>, interval: Duration) -> Result<GcHandle, EngineError> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let engine: Weak<Engine> = Arc::downgrade(self);
        let signal = stop.clone();
        let thread = std::thread::Builder::new()
            .name("engine-gc".into())
            .spawn(move || {
                loop {
                    {
                        let mut stopped = signal.0.lock();
                        if !*stopped {
                            signal.1.wait_for(&mut stopped, interval);
                        }
                        if *stopped {
                            return;
                        }
                    }
                    let Some(engine) = engine.upgrade() else {
                        return;
                    };
                    match engine.collect_garbage() {
                        Ok(stats) => tracing::debug!(?stats, "sstable garbage collected"),
                        Err(e) => tracing::warn!(error = %e, "sstable garbage collection failed"),
                    }
                    if let Err(e) = engine.collect_log_garbage() {
                        tracing::warn!(error = %e, "commit log garbage collection failed");
                    }
                }
            })?;
        Ok(GcHandle {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for GcHandle {
    fn drop(&mut self) {
        *self.stop.0.lock() = true;
        self.stop.1.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The segment number in a path like `logs/<server>/<number>.log`.
fn segment_number(path: &str) -> Option<u64> {
    path.rsplit('/').next()?.strip_suffix(".log")?.parse().ok()
}
