//! Background work and compactions: flushing frozen memtables (minor, or merging when the
//! picker adds small SSTables), major compaction, and writing an SSTable from a merged stream.
//!
//! Every compaction holds `Inner::compaction`, writes its output, stores the new manifest
//! (durable), and only then publishes the new state. Inputs stay readable by scans that hold
//! the old state; files nobody names any more are deleted later by garbage collection.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tabula_common::FileId;
use tracing::{debug, warn};

use crate::engine::compaction::{Choice, PickerInput, choose};
use crate::engine::error::EngineError;
use crate::engine::key::{Entry, Seq};
use crate::engine::memtable::Memtable;
use crate::engine::merge::{EntrySource, MergeIter};
use crate::engine::read::{CompactionRules, compact_row};
use crate::engine::sstable::{Sstable, SstableOptions, SstableWriter};
use crate::engine::stats::CompactionKind;

use super::core::{Inner, State, Tablet, sstable_path};

/// How long the background thread sleeps when nobody kicks it.
const IDLE_WAIT: Duration = Duration::from_secs(1);

impl Tablet {
    /// Freezes the active memtable and flushes every frozen memtable before returning.
    pub fn flush(&self) -> Result<(), EngineError> {
        self.inner.freeze(true);
        let _guard = self.inner.compaction.lock();
        self.inner.flush_frozen()
    }

    /// Flushes, then compacts every SSTable into one, dropping deleted cells, tombstones no
    /// longer needed, and cells past their family's GC policy.
    pub fn major_compact(&self) -> Result<(), EngineError> {
        self.flush()?;
        let _guard = self.inner.compaction.lock();
        self.inner.run(Choice::Major)
    }

    /// Asks the background thread for a major compaction and returns at once.
    pub fn request_major_compaction(&self) {
        self.inner.request_major_compaction();
    }
}

impl Inner {
    /// Asks the background thread for a major compaction (it flushes frozen memtables first).
    pub(crate) fn request_major_compaction(&self) {
        self.work.lock().major_requested = true;
        self.kick();
    }

    pub(crate) fn background_loop(self: Arc<Self>) {
        loop {
            let major_requested = {
                let mut work = self.work.lock();
                if !work.stop && !work.kicked {
                    self.work_cv.wait_for(&mut work, IDLE_WAIT);
                }
                if work.stop {
                    return;
                }
                work.kicked = false;
                std::mem::take(&mut work.major_requested)
            };
            if self.failure.lock().is_some() {
                continue;
            }
            let mut major = major_requested;
            loop {
                let _guard = self.compaction.lock();
                let choice = choose(&self.picker_input(major), &self.engine.opts.picker);
                if choice == Choice::Idle {
                    break;
                }
                let was_major = choice == Choice::Major;
                if was_major {
                    major = false;
                }
                match self.run(choice) {
                    Ok(()) => {}
                    Err(EngineError::NotPermitted(_)) => {
                        // Postponed, not failed: retried on the next kick or tick, once the
                        // server may write manifests again.
                        if was_major || major {
                            self.work.lock().major_requested = true;
                        }
                        debug!(tablet = %self.id, "background compaction postponed: manifest writes not permitted");
                        break;
                    }
                    Err(e) => {
                        // Retried on the next kick or tick; reads and writes go on meanwhile.
                        warn!(tablet = %self.id, error = %e, "background compaction failed");
                        break;
                    }
                }
                if self.work.lock().stop {
                    return;
                }
            }
        }
    }

    fn picker_input(&self, major_requested: bool) -> PickerInput {
        let state = self.state.read().clone();
        PickerInput {
            sstables: state
                .sstables
                .iter()
                .map(|s| (s.id(), s.size_bytes()))
                .collect(),
            frozen_memtables: state.frozen.len(),
            major_requested,
            closed: self.closed.load(Ordering::Acquire),
        }
    }

    /// Flushes every frozen memtable (caller holds `compaction`).
    pub(crate) fn flush_frozen(&self) -> Result<(), EngineError> {
        while let c @ Choice::Flush { .. } =
            choose(&self.picker_input(false), &self.engine.opts.picker)
        {
            self.run(c)?;
        }
        Ok(())
    }

    /// Runs one compaction (caller holds `compaction`).
    pub(crate) fn run(&self, choice: Choice) -> Result<(), EngineError> {
        if choice == Choice::Idle {
            return Ok(());
        }
        // Asked early too, so a fenced server does not write SSTables nobody will name.
        self.engine.permit_manifest_write(self.id)?;
        let state = self.state.read().clone();
        match choice {
            Choice::Idle => Ok(()),
            Choice::Flush { merge } => {
                let Some(mem) = state.frozen.first().cloned() else {
                    return Ok(());
                };
                let inputs: Vec<Arc<Sstable>> = state
                    .sstables
                    .iter()
                    .filter(|s| merge.contains(&s.id()))
                    .cloned()
                    .collect();
                let kind = if inputs.is_empty() {
                    CompactionKind::Minor
                } else {
                    CompactionKind::Merging
                };
                let merged_bytes: u64 = inputs.iter().map(|s| s.size_bytes()).sum();
                let started = Instant::now();
                let output_bytes = self.compact(Some(mem), inputs, false)?;
                self.flushed_bytes
                    .fetch_add(output_bytes.saturating_sub(merged_bytes), Ordering::Relaxed);
                self.engine.stats.compaction_done(kind, started.elapsed());
                self.stall_cv.notify_all();
                Ok(())
            }
            Choice::Major => {
                self.written_at_major
                    .store(self.written_bytes(&state), Ordering::Relaxed);
                let started = Instant::now();
                self.compact(None, state.sstables.clone(), true)?;
                let took = started.elapsed();
                self.engine
                    .stats
                    .compaction_done(CompactionKind::Major, took);
                Ok(())
            }
        }
    }

    /// Whether the background thread has work now or is doing it: what the picker would
    /// choose is not `Idle` (for metrics: the compaction queue).
    pub(crate) fn has_pending_work(&self) -> bool {
        let major_requested = self.work.lock().major_requested;
        choose(
            &self.picker_input(major_requested),
            &self.engine.opts.picker,
        ) != Choice::Idle
    }

    /// Merges `mem` (a frozen memtable, oldest) and `inputs` into one SSTable and installs it;
    /// the output's bytes.
    fn compact(
        &self,
        mem: Option<Arc<Memtable>>,
        inputs: Vec<Arc<Sstable>>,
        major: bool,
    ) -> Result<u64, EngineError> {
        let tombstone_gc_below = self.lowest_seq_outside(mem.as_ref());
        let mut sources: Vec<EntrySource> = Vec::new();
        if let Some(m) = &mem {
            sources.push(Box::new(m.iter(&self.range, false).map(Ok)));
        }
        for sst in &inputs {
            sources.push(Box::new(
                sst.iter(self.range.clone(), false)
                    .map(|r| r.map_err(EngineError::from)),
            ));
        }
        let merged = MergeIter::new(sources, false, Seq::MAX);
        let schema = self.schema.read().clone();
        // A family the schema no longer has was dropped: its cells go (at major compactions,
        // which alone apply policies).
        let policy = |family: &[u8]| schema.compaction_policy(family);
        let rules = CompactionRules {
            major,
            tombstone_gc_below,
            policy: &policy,
            now_micros: self.engine.clock.now().micros(),
        };
        let mut sstable = self.engine.opts.sstable.clone();
        if mem.is_some() {
            sstable.zstd_level = sstable.flush_zstd_level;
        }
        let output = self.write_sstable(merged, &rules, sstable)?;
        let output_bytes = output.as_ref().map_or(0, |s| s.size_bytes());
        let input_ids: HashSet<FileId> = inputs.iter().map(|s| s.id()).collect();
        let max_seq = mem.as_ref().map_or(0, |m| m.max_seq());
        self.install(mem.as_ref(), &input_ids, output, max_seq)?;
        debug!(tablet = %self.id, major, inputs = input_ids.len(), "compaction installed");
        Ok(output_bytes)
    }

    /// The smallest sequence number any entry outside this compaction can have: entries in
    /// memtables other than `flushing`, and writes still in flight.
    fn lowest_seq_outside(&self, flushing: Option<&Arc<Memtable>>) -> Seq {
        // Numbers below `lowest_unfinished` are in a memtable already; reading the state after
        // it guarantees that memtable is in the state we look at (a freeze may add one later).
        let mut lowest = self.seqs.lowest_unfinished();
        let state = self.state.read().clone();
        for m in std::iter::once(&state.active).chain(state.frozen.iter()) {
            if flushing.is_some_and(|f| Arc::ptr_eq(f, m)) {
                continue;
            }
            if let Some(min) = m.min_seq() {
                lowest = lowest.min(min);
            }
        }
        lowest
    }

    /// Writes the compacted rows of `merged` to a new SSTable laid out as `options` say;
    /// `None` if nothing survived.
    fn write_sstable(
        &self,
        merged: MergeIter,
        rules: &CompactionRules<'_>,
        options: SstableOptions,
    ) -> Result<Option<Arc<Sstable>>, EngineError> {
        let engine = &self.engine;
        let id = engine.new_file_id();
        let path = sstable_path(id);
        engine.start_writing(id);
        let result = (|| {
            let mut writer: Option<SstableWriter> = None;
            let mut row: Vec<Entry> = Vec::new();
            let emit = |row: Vec<Entry>, writer: &mut Option<SstableWriter>| {
                for e in compact_row(row, rules) {
                    let w = match writer {
                        Some(w) => w,
                        None => writer.insert(SstableWriter::new(
                            engine.storage.create_append(&path)?,
                            options.clone(),
                        )),
                    };
                    w.add(&e)?;
                }
                Ok::<(), EngineError>(())
            };
            for item in merged {
                let e = item?;
                if row.first().is_some_and(|f| f.key.row != e.key.row) {
                    emit(std::mem::take(&mut row), &mut writer)?;
                }
                row.push(e);
            }
            emit(row, &mut writer)?;
            let Some(writer) = writer else {
                return Ok(None);
            };
            writer.finish()?;
            let file = engine.storage.open_read(&path)?;
            Ok(Some(Sstable::open(id, file, engine.cache.clone())?))
        })();
        engine.done_writing(id);
        if result.is_err() {
            let _ = engine.storage.delete(&path);
        }
        result
    }

    /// Stores the manifest naming `output` instead of `inputs` (and `flushed`'s entries), then
    /// publishes the new state.
    fn install(
        &self,
        flushed: Option<&Arc<Memtable>>,
        inputs: &HashSet<FileId>,
        output: Option<Arc<Sstable>>,
        flushed_max_seq: Seq,
    ) -> Result<(), EngineError> {
        let unflushed_min = self.lowest_seq_outside(flushed);
        let mut manifest = self.manifest.lock().clone();
        let mut sstables: Vec<FileId> = output.iter().map(|s| s.id()).collect();
        sstables.extend(manifest.sstables.iter().filter(|id| !inputs.contains(id)));
        manifest.sstables = sstables;
        if flushed.is_some() {
            manifest.redo_seq = manifest.redo_seq.max(unflushed_min.saturating_sub(1));
        }
        manifest.last_seq = manifest
            .last_seq
            .max(flushed_max_seq)
            .max(manifest.redo_seq);
        manifest.timestamp_mark = manifest
            .timestamp_mark
            .max(self.last_timestamp.load(Ordering::Acquire));
        if let Err(e) = self.engine.permit_manifest_write(self.id) {
            // Not a failure of the tablet: the flushed memtable stays frozen and readable, and
            // the output (named by no manifest) is deleted now rather than by file GC.
            if let Some(out) = &output {
                let _ = self.engine.storage.delete(&sstable_path(out.id()));
            }
            return Err(e);
        }
        if let Err(e) = manifest.store(self.engine.storage.as_ref()) {
            self.fail(format!("manifest write failed: {e}"));
            return Err(e.into());
        }
        *self.manifest.lock() = manifest;
        let mut guard = self.state.write();
        let mut next = State::clone(&guard);
        if let Some(f) = flushed {
            next.frozen.retain(|m| !Arc::ptr_eq(m, f));
        }
        next.sstables.retain(|s| !inputs.contains(&s.id()));
        if let Some(out) = output {
            next.sstables.insert(0, out);
        }
        *guard = Arc::new(next);
        Ok(())
    }
}
