//! What the tablets of one tablet server share: the storage root, the commit log, the block
//! cache, the clock and the settings — and the set of SSTables being written right now, which
//! garbage collection must not delete.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use tabula_common::{Clock, FileId, StorageRoot, TabletId};

use crate::engine::commitlog::CommitLog;
use crate::engine::error::EngineError;
use crate::engine::options::{EngineOptions, Schema};
use crate::engine::sstable::BlockCache;
use crate::engine::stats::EngineStats;

use super::core::{Inner, Tablet};

/// One server's storage engine.
#[derive(Debug)]
pub struct Engine {
    pub(crate) storage: Arc<dyn StorageRoot>,
    pub(crate) log: Arc<CommitLog>,
    pub(crate) cache: Arc<BlockCache>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) opts: EngineOptions,
    pub(crate) writing: Mutex<HashSet<FileId>>,
    /// Tablets open on this engine, for commit-log garbage collection.
    pub(crate) open_tablets: Mutex<HashMap<TabletId, Weak<Inner>>>,
    /// Compaction counters, for metrics.
    pub(crate) stats: EngineStats,
    /// Manifest stores the permit refused, for tests and operators.
    manifest_writes_refused: AtomicU64,
}

impl Engine {
    /// An engine over `storage`, logging to `log`.
    pub fn new(
        storage: Arc<dyn StorageRoot>,
        log: Arc<CommitLog>,
        clock: Arc<dyn Clock>,
        opts: EngineOptions,
    ) -> Arc<Engine> {
        let cache = Arc::new(BlockCache::new(opts.block_cache_bytes));
        Arc::new(Engine {
            storage,
            log,
            cache,
            clock,
            opts,
            writing: Mutex::new(HashSet::new()),
            open_tablets: Mutex::new(HashMap::new()),
            stats: EngineStats::default(),
            manifest_writes_refused: AtomicU64::new(0),
        })
    }

    /// The settings.
    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// The storage root.
    pub fn storage(&self) -> &Arc<dyn StorageRoot> {
        &self.storage
    }

    /// The commit log.
    pub fn commit_log(&self) -> &Arc<CommitLog> {
        &self.log
    }

    /// The shared block cache.
    pub fn block_cache(&self) -> &Arc<BlockCache> {
        &self.cache
    }

    /// Compaction counters since the engine was created.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// How many open tablets have background work pending or running now (frozen memtables
    /// to flush, SSTables to merge, a major compaction asked for): the compaction queue.
    pub fn tablets_with_pending_work(&self) -> usize {
        let open: Vec<Arc<Inner>> = self
            .open_tablets
            .lock()
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        open.iter().filter(|t| t.has_pending_work()).count()
    }

    /// Creates a new, empty tablet for rows `[start, end)` and writes its first manifest.
    pub fn create_tablet(
        self: &Arc<Self>,
        id: TabletId,
        start_row: bytes::Bytes,
        end_row: Option<bytes::Bytes>,
        schema: Schema,
    ) -> Result<Tablet, EngineError> {
        Tablet::create(self.clone(), id, start_row, end_row, schema)
    }

    /// Opens an existing tablet from its manifest, replaying the commit logs it names.
    pub fn open_tablet(
        self: &Arc<Self>,
        id: TabletId,
        schema: Schema,
    ) -> Result<Tablet, EngineError> {
        Tablet::open(self.clone(), id, schema)
    }

    /// How many manifest stores the `ManifestWritePermit` has refused since the engine started.
    pub fn manifest_writes_refused(&self) -> u64 {
        self.manifest_writes_refused.load(Ordering::Relaxed)
    }

    /// `NotPermitted` unless the options' `ManifestWritePermit` allows a manifest store of
    /// `tablet` now. Called immediately before every `Manifest::store`.
    pub(crate) fn permit_manifest_write(&self, tablet: TabletId) -> Result<(), EngineError> {
        match &self.opts.manifest_write_permit {
            Some(permit) if !permit.allows() => {
                self.manifest_writes_refused.fetch_add(1, Ordering::Relaxed);
                Err(EngineError::NotPermitted(tablet.to_string()))
            }
            _ => Ok(()),
        }
    }

    /// Registers an SSTable being written, so garbage collection leaves it alone until
    /// `done_writing`.
    pub(crate) fn start_writing(&self, id: FileId) {
        self.writing.lock().insert(id);
    }

    /// See `start_writing`.
    pub(crate) fn done_writing(&self, id: FileId) {
        self.writing.lock().remove(&id);
    }

    /// The redo point of `tablet` if it is open here.
    pub(crate) fn open_redo_seq(&self, tablet: TabletId) -> Option<u64> {
        let inner = self.open_tablets.lock().get(&tablet)?.upgrade()?;
        let redo = inner.manifest.lock().redo_seq;
        Some(redo)
    }

    /// A fresh SSTable id.
    pub(crate) fn new_file_id(&self) -> FileId {
        let millis = (self.clock.now().micros() / 1000).max(0) as u64;
        FileId::generate(millis)
    }
}
