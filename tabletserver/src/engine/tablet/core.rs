//! The tablet's state and its life: create, open (recovery from manifest + commit logs), close.
//!
//! State is an immutable `State` behind an `RwLock<Arc<_>>`: readers clone the `Arc` (a
//! consistent set of memtables and SSTables) and never block writers for longer than that;
//! writers insert into the active memtable under the read lock, so a freeze (which takes the
//! write lock) never races an insert into the memtable it freezes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::thread::JoinHandle;

use bytes::Bytes;
use parking_lot::{Condvar, Mutex, RwLock};
use tabula_common::TabletId;
use tracing::info;

use crate::engine::commitlog::{ReplayError, ReplayedRecord, replay};
use crate::engine::compaction::GarbageSampler;
use crate::engine::error::EngineError;
use crate::engine::key::Seq;
use crate::engine::manifest::Manifest;
use crate::engine::memtable::Memtable;
use crate::engine::mutation::RowMutation;
use crate::engine::options::Schema;
use crate::engine::sstable::{RowRange, Sstable};

use super::engine::Engine;

/// How far ahead of this server's clock a replayed cell's timestamp may be and still count as
/// one a server handed out (a minute of clock skew between servers); further ahead, it is a
/// caller's own timestamp.
const MAX_CLOCK_LEAD_MICROS: i64 = 60_000_000;
use super::seq::SeqTracker;
use super::write::RowLocks;

/// The memtables and SSTables a reader sees.
#[derive(Debug, Clone)]
pub(crate) struct State {
    pub(crate) active: Arc<Memtable>,
    /// Oldest first.
    pub(crate) frozen: Vec<Arc<Memtable>>,
    /// Newest first.
    pub(crate) sstables: Vec<Arc<Sstable>>,
}

/// Work requests for the background thread.
#[derive(Debug, Default)]
pub(crate) struct Work {
    pub(crate) stop: bool,
    pub(crate) major_requested: bool,
    pub(crate) kicked: bool,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) engine: Arc<Engine>,
    pub(crate) id: TabletId,
    pub(crate) range: RowRange,
    pub(crate) start_row: Bytes,
    pub(crate) schema: RwLock<Arc<Schema>>,
    pub(crate) state: RwLock<Arc<State>>,
    pub(crate) seqs: SeqTracker,
    pub(crate) last_timestamp: AtomicI64,
    /// The manifest as last stored; changed only under `compaction`.
    pub(crate) manifest: Mutex<Manifest>,
    /// Serialises flushes, compactions and the split.
    pub(crate) compaction: Mutex<()>,
    pub(crate) work: Mutex<Work>,
    pub(crate) work_cv: Condvar,
    /// Writers stalled on too many frozen memtables wait here.
    pub(crate) stall: Mutex<()>,
    pub(crate) stall_cv: Condvar,
    pub(crate) row_locks: RowLocks,
    pub(crate) closed: AtomicBool,
    pub(crate) failure: Mutex<Option<String>>,
    /// What sampled reads saw (see `compaction::garbage`).
    pub(crate) garbage: GarbageSampler,
    /// Bytes of SSTables written by flushes since open (what a merging flush added), plus the
    /// SSTables opened with.
    pub(crate) flushed_bytes: AtomicU64,
    /// `written_bytes` when the last major compaction started or was asked for by reads.
    pub(crate) written_at_major: AtomicU64,
}

/// A tablet open for reads and writes. Dropping it stops its background thread.
#[derive(Debug)]
pub struct Tablet {
    pub(crate) inner: Arc<Inner>,
    worker: Option<JoinHandle<()>>,
}

impl Tablet {
    pub(crate) fn create(
        engine: Arc<Engine>,
        id: TabletId,
        start_row: Bytes,
        end_row: Option<Bytes>,
        schema: Schema,
    ) -> Result<Tablet, EngineError> {
        let manifest = Manifest {
            tablet: id,
            start_row,
            end_row,
            redo_seq: 0,
            last_seq: 0,
            sstables: Vec::new(),
            log_dirs: vec![engine.log.server_dir()],
            split_into: Vec::new(),
            timestamp_mark: 0,
        };
        engine.permit_manifest_write(id)?;
        manifest.store(engine.storage.as_ref())?;
        Tablet::start(engine, manifest, Vec::new(), Memtable::new(), schema, 0, 0)
    }

    pub(crate) fn open(
        engine: Arc<Engine>,
        id: TabletId,
        schema: Schema,
    ) -> Result<Tablet, EngineError> {
        let mut manifest = Manifest::load(engine.storage.as_ref(), id)?;
        if !manifest.split_into.is_empty() {
            return Err(EngineError::WasSplit {
                tablet: id,
                children: manifest.split_into,
            });
        }
        let mut sstables = Vec::with_capacity(manifest.sstables.len());
        for file in &manifest.sstables {
            let path = sstable_path(*file);
            let handle = engine.storage.open_read(&path)?;
            sstables.push(Sstable::open(*file, handle, engine.cache.clone())?);
        }
        // Replay what the SSTables do not hold yet, from every log the manifest names.
        let memtable = Memtable::new();
        let mut last = manifest.last_seq;
        let mut replayed = 0u64;
        // Server timestamps handed out since the manifest are only in the log; an entry
        // further ahead of this server's clock than MAX_CLOCK_LEAD_MICROS must be a caller's
        // own timestamp, which must not drag server time along.
        let ts_bound = engine
            .clock
            .now()
            .micros()
            .saturating_add(MAX_CLOCK_LEAD_MICROS);
        let mut timestamp_mark = manifest.timestamp_mark;
        let own = engine.log.replay_view(id, manifest.redo_seq);
        let stats = replay(
            engine.storage.as_ref(),
            &manifest.log_dirs,
            id,
            manifest.redo_seq,
            Some(&own),
            |rec: ReplayedRecord| -> Result<(), EngineError> {
                let m = RowMutation::decode(rec.payload)?;
                let entries = m.into_entries(rec.seq);
                for e in &entries {
                    if e.key.timestamp <= ts_bound {
                        timestamp_mark = timestamp_mark.max(e.key.timestamp);
                    }
                }
                last = last.max(rec.seq + u64::from(rec.entry_count.max(1)) - 1);
                memtable.insert(entries);
                replayed += 1;
                Ok(())
            },
        )
        .map_err(ReplayError::flatten)?;
        info!(tablet = %id, replayed, ?stats, "tablet recovered");
        let own_dir = engine.log.server_dir();
        if !manifest.log_dirs.contains(&own_dir) {
            manifest.log_dirs.push(own_dir);
            engine.permit_manifest_write(id)?;
            manifest.store(engine.storage.as_ref())?;
        }
        let tablet = Tablet::start(
            engine,
            manifest,
            sstables,
            memtable,
            schema,
            last,
            timestamp_mark,
        )?;
        if replayed > 0 {
            // Flush what was replayed so this tablet never needs the older logs again.
            tablet.flush()?;
        }
        tablet.inner.forget_old_logs()?;
        Ok(tablet)
    }

    fn start(
        engine: Arc<Engine>,
        manifest: Manifest,
        sstables: Vec<Arc<Sstable>>,
        active: Memtable,
        schema: Schema,
        last_seq: Seq,
        timestamp_mark: i64,
    ) -> Result<Tablet, EngineError> {
        let opened_bytes: u64 = sstables.iter().map(|s| s.size_bytes()).sum();
        let state = State {
            active: Arc::new(active),
            frozen: Vec::new(),
            sstables,
        };
        let inner = Arc::new(Inner {
            id: manifest.tablet,
            range: manifest.range(),
            start_row: manifest.start_row.clone(),
            schema: RwLock::new(Arc::new(schema)),
            state: RwLock::new(Arc::new(state)),
            seqs: SeqTracker::new(last_seq.max(manifest.last_seq)),
            last_timestamp: AtomicI64::new(timestamp_mark),
            manifest: Mutex::new(manifest),
            compaction: Mutex::new(()),
            work: Mutex::new(Work::default()),
            work_cv: Condvar::new(),
            stall: Mutex::new(()),
            stall_cv: Condvar::new(),
            row_locks: RowLocks::new(),
            closed: AtomicBool::new(false),
            failure: Mutex::new(None),
            garbage: GarbageSampler::default(),
            flushed_bytes: AtomicU64::new(opened_bytes),
            written_at_major: AtomicU64::new(0),
            engine,
        });
        inner
            .engine
            .open_tablets
            .lock()
            .insert(inner.id, Arc::downgrade(&inner));
        let worker_inner = inner.clone();
        let worker = std::thread::Builder::new()
            .name(format!("tablet-{}", inner.id))
            .spawn(move || worker_inner.background_loop())?;
        Ok(Tablet {
            inner,
            worker: Some(worker),
        })
    }

    /// The tablet's id.
    pub fn id(&self) -> TabletId {
        self.inner.id
    }

    /// The tablet's rows: `[start, end)`.
    pub fn range(&self) -> &RowRange {
        &self.inner.range
    }

    /// Whether `row` belongs to this tablet.
    pub fn contains(&self, row: &[u8]) -> bool {
        self.inner.range.contains(row)
    }

    /// The current schema.
    pub fn schema(&self) -> Arc<Schema> {
        self.inner.schema.read().clone()
    }

    /// Replaces the schema (families added, dropped or given new GC policies).
    pub fn set_schema(&self, schema: Schema) {
        *self.inner.schema.write() = Arc::new(schema);
    }

    /// A copy of the manifest as last stored.
    pub fn manifest(&self) -> Manifest {
        self.inner.manifest.lock().clone()
    }

    /// Bytes in memtables and SSTables, approximately; of an SSTable shared with a split
    /// sibling only the blocks that may hold this tablet's rows count.
    pub fn approximate_size_bytes(&self) -> u64 {
        let state = self.inner.state.read().clone();
        let mem: usize = std::iter::once(&state.active)
            .chain(state.frozen.iter())
            .map(|m| m.approximate_bytes())
            .sum();
        let range = &self.inner.range;
        mem as u64
            + state
                .sstables
                .iter()
                .map(|s| s.approximate_bytes_in(range))
                .sum::<u64>()
    }

    /// Bytes in the active and frozen memtables, approximately.
    pub fn memtable_bytes(&self) -> u64 {
        let state = self.inner.state.read().clone();
        let mem: usize = std::iter::once(&state.active)
            .chain(state.frozen.iter())
            .map(|m| m.approximate_bytes())
            .sum();
        mem as u64
    }

    /// Number of SSTables.
    pub fn sstable_count(&self) -> usize {
        self.inner.state.read().sstables.len()
    }

    /// The largest sequence number visible to readers.
    pub fn visible_seq(&self) -> Seq {
        self.inner.seqs.visible()
    }

    /// Stops taking writes and the background thread, leaving memtables unflushed (a crash
    /// from the storage's point of view; `flush` first for a clean handover).
    pub fn close(mut self) {
        self.stop_worker();
    }

    fn stop_worker(&mut self) {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.work.lock().stop = true;
        self.inner.work_cv.notify_all();
        self.inner.stall_cv.notify_all();
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

impl Drop for Tablet {
    fn drop(&mut self) {
        self.stop_worker();
    }
}

impl Inner {
    /// Fails if the tablet is closed or has failed.
    pub(crate) fn check_open(&self) -> Result<(), EngineError> {
        if self.closed.load(Ordering::Acquire) || self.failure.lock().is_some() {
            return Err(EngineError::Closed);
        }
        Ok(())
    }

    /// Records a failure that stops the tablet (a commit-log or manifest write error).
    pub(crate) fn fail(&self, why: String) {
        tracing::error!(tablet = %self.id, %why, "tablet failed");
        self.failure.lock().get_or_insert(why);
        self.stall_cv.notify_all();
    }

    /// Once nothing beyond the redo point lives in another server's log, the manifest names
    /// only this server's log.
    pub(crate) fn forget_old_logs(&self) -> Result<(), EngineError> {
        let _guard = self.compaction.lock();
        let mut manifest = self.manifest.lock();
        let own = self.engine.log.server_dir();
        let state = self.state.read().clone();
        let nothing_unflushed = state.frozen.is_empty()
            && state.active.is_empty()
            && manifest.redo_seq >= manifest.last_seq;
        if nothing_unflushed && manifest.log_dirs != [own.clone()] {
            let mut next = manifest.clone();
            next.log_dirs = vec![own];
            self.engine.permit_manifest_write(self.id)?;
            next.store(self.engine.storage.as_ref())?;
            *manifest = next;
        }
        Ok(())
    }
}

/// Where an SSTable lives on the storage root.
pub(crate) fn sstable_path(id: tabula_common::FileId) -> String {
    format!("sst/{id}.sst")
}
