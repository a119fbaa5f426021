//! Garbage collection of SSTables: a file no tablet manifest names is deleted once it is older
//! than the grace period and no tablet of this engine is writing it. Runs off the write path.
//!
//! Every manifest under `tablets/` counts, including those of tablets served elsewhere and of
//! split parents, so a file shared by split children lives until no child names it. If any
//! manifest cannot be read, nothing is deleted.

use std::collections::HashSet;

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
            live.extend(manifest.sstables);
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
