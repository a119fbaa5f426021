//! The log's writer thread and its recovery on open.
//!
//! Appends are group-committed: the writer takes an append from the queue, drains the appends
//! queued behind it (up to `MAX_BATCH_ENTRIES` entries or `MAX_BATCH_BYTES` bytes) and writes
//! them all with one `pwrite` at the end of the active segment and one `fdatasync`; then it
//! moves their entries from `pending` to on-disk slots and calls their callbacks, in queue
//! order. A vote, truncate or purge ends the batch and runs after it, so the queue order is
//! the order of effects. The order of durable effects is chosen so that a crash at any point
//! leaves a log without holes:
//! - append: write + `fdatasync`, then publish the slots (the entries were readable from
//!   `pending` before), then answer;
//! - truncate: unpublish, delete later segments from the last down + directory fsync, then cut
//!   the segment holding the first removed entry + fsync, then rewrite the committed id +
//!   `fdatasync`;
//! - purge: replace `purged` atomically first, then unpublish and delete whole segments from
//!   the first up (a crash in between leaves segments recovery ignores and deletes);
//! - vote: replace `vote` atomically (temp + fsync + rename + directory fsync).
//!
//! Pending entries and truncate/purge: the caller (openraft's `RaftCore`, holding `&mut
//! LogStore`) awaits each truncate or purge, so every append queued before one is finished
//! (durable and answered) when the writer reaches it, and none is queued after it until it is
//! answered: `pending` is empty when a truncate or purge runs, and a truncate of entries that
//! were still pending when it was called cuts them after they became durable (their callback
//! said `Ok`, truthfully, before the cut). Only a caller that drops a truncate or purge future
//! after it was queued can break this; truncate and purge then also drop the pending entries
//! they cover, and the writer re-checks contiguity before writing, so a later append that no
//! longer follows the log fails instead of leaving a hole.
//!
//! A failed write poisons the writer: what reached the disk is unknown, so it drops every
//! pending entry, answers the failed batch and every later command with an error, and `append`
//! refuses at once.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::sync::atomic::Ordering;

use openraft::{Entry, LogId, Vote};
use tokio::sync::mpsc;

use super::durable::{self, DirLock};
use super::error::StoreError;
use super::log_store::{
    AppendCommand, Command, EncodedEntry, LogIndex, LogShared, Slot, unpurged_and_contiguous,
};
use super::record::{FRAME_HEADER_LEN, KIND_COMMITTED, KIND_ENTRY, encode_frame};
use super::segment::{self, SEGMENT_HEADER_LEN, SEGMENT_MAGIC};
use crate::types::{NodeId, TypeConfig};

/// The vote file in `log/`.
pub(super) const VOTE_FILE: &str = "vote";
/// The last purged log id file in `log/`.
pub(super) const PURGED_FILE: &str = "purged";
const VOTE_MAGIC: [u8; 8] = *b"TLKVOTE1";
const PURGED_MAGIC: [u8; 8] = *b"TLKPURG1";
/// A group commit takes queued appends up to this many entries (a single larger append still
/// goes whole).
pub(super) const MAX_BATCH_ENTRIES: usize = 1024;
/// A group commit takes queued appends up to this many bytes of frames (a single larger append
/// still goes whole).
pub(super) const MAX_BATCH_BYTES: u64 = 16 << 20;

/// Owns the active segment and performs every write, in the order the commands arrive.
pub(super) struct Writer {
    dir: PathBuf,
    shared: Arc<LogShared>,
    segment_max_bytes: u64,
    active_id: u64,
    active: Arc<File>,
    active_len: u64,
    /// The committed id as last written to the active segment (the latest saved one is in the
    /// shared index: `save_committed` sets it there without a round trip to this thread).
    committed_on_disk: Option<LogId<NodeId>>,
    /// Set when a write or fsync failed: what is on disk is then unknown, so no more writes.
    failed: Option<String>,
    _lock: Arc<DirLock>,
}

impl Writer {
    /// Serves commands until every sender is gone, then makes the committed id durable.
    pub(super) fn run(mut self, mut rx: mpsc::Receiver<Command>) -> Result<(), StoreError> {
        // A command drained from the queue that ends a batch; it runs next.
        let mut next: Option<Command> = None;
        loop {
            let command = match next.take() {
                Some(command) => command,
                None => match rx.blocking_recv() {
                    Some(command) => command,
                    None => break,
                },
            };
            #[cfg(test)]
            self.shared.hooks.gate.pass();
            match command {
                Command::Append(first) => {
                    let (batch, after) = drain_appends(&mut rx, first);
                    next = after;
                    self.append_batch(batch);
                }
                Command::SaveVote { vote, done } => {
                    let _ = done.send(self.guarded(|w| w.save_vote(vote)));
                }
                Command::Truncate { index, done } => {
                    let _ = done.send(self.guarded(|w| w.truncate(index)));
                }
                Command::Purge { upto, done } => {
                    let _ = done.send(self.guarded(|w| w.purge(upto)));
                }
            }
        }
        if self.failed.is_none() && self.committed() != self.committed_on_disk {
            self.write_frames(&[])?;
        }
        Ok(())
    }

    /// Runs a write unless an earlier one failed; a failure poisons the writer.
    fn guarded(
        &mut self,
        op: impl FnOnce(&mut Writer) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        if let Some(reason) = &self.failed {
            return Err(StoreError::Failed(reason.clone()));
        }
        let result = op(self);
        if let Err(e) = &result {
            self.poison(e);
        }
        result
    }

    /// Refuses every later write and drops the pending entries: none of them will be written.
    fn poison(&mut self, error: &StoreError) {
        tracing::error!(error = %error, "lock-service log write failed; refusing further writes");
        let reason = error.to_string();
        let mut index = self.shared.index.write();
        index.pending.clear();
        index.failed = Some(reason.clone());
        self.failed = Some(reason);
    }

    /// Writes a batch of appends with one write and one `fdatasync`, then answers each, in
    /// order: all `Ok`, or the first the error and the others `StoreError::Failed`.
    fn append_batch(&mut self, batch: Vec<AppendCommand>) {
        let mut entries = Vec::with_capacity(batch.iter().map(|a| a.entries.len()).sum());
        let mut dones = Vec::with_capacity(batch.len());
        for append in batch {
            entries.extend(append.entries);
            dones.push(append.done);
        }
        let result = self.guarded(|w| w.append(entries));
        let reason = result.as_ref().err().map(ToString::to_string);
        let mut first = Some(result);
        for done in dones {
            done(first.take().unwrap_or_else(|| match &reason {
                None => Ok(()),
                Some(reason) => Err(StoreError::Failed(reason.clone())),
            }));
        }
    }

    /// The committed id openraft saved last.
    fn committed(&self) -> Option<LogId<NodeId>> {
        self.shared.index.read().committed
    }

    fn active_path(&self) -> PathBuf {
        self.dir.join(segment::file_name(self.active_id))
    }

    /// Writes the entries of a batch (queued in order, so following each other unless a
    /// cancelled truncate or purge intervened) and moves them from pending to their slots.
    fn append(&mut self, entries: Vec<EncodedEntry>) -> Result<(), StoreError> {
        let (next, purged) = {
            let index = self.shared.index.read();
            (
                index.last_durable_log_id().map(|l| l.index + 1),
                index.last_purged.map(|l| l.index),
            )
        };
        // An entry purged while queued (the purge dropped it from pending) is skipped.
        let live = unpurged_and_contiguous(entries, |e| e.log_id.index, next, purged)?;
        let batch_bytes: u64 = live
            .iter()
            .map(|e| (FRAME_HEADER_LEN + e.body.len()) as u64)
            .sum();
        if self.active_len > SEGMENT_HEADER_LEN
            && self.active_len + batch_bytes > self.segment_max_bytes
        {
            self.roll()?;
        }
        if live.is_empty() {
            return Ok(());
        }
        let slots = self.write_frames(&live)?;
        let mut index = self.shared.index.write();
        for slot in slots {
            index.pending.remove(&slot.log_id.index);
            index.entries.insert(slot.log_id.index, slot);
        }
        Ok(())
    }

    /// Writes the committed id (if it changed, or the segment is new) and `entries` as one
    /// write, then `fdatasync`s. Returns the entries' slots.
    fn write_frames(&mut self, entries: &[EncodedEntry]) -> Result<Vec<Slot>, StoreError> {
        let start = self.active_len;
        let mut buf = Vec::new();
        if start == 0 {
            buf.extend_from_slice(&SEGMENT_MAGIC);
        }
        let fresh_segment = start <= SEGMENT_HEADER_LEN;
        let committed = self.committed();
        if committed != self.committed_on_disk || (fresh_segment && committed.is_some()) {
            let body = postcard::to_stdvec(&committed).map_err(|source| StoreError::Encode {
                what: "committed log id",
                source,
            })?;
            encode_frame(&mut buf, start, KIND_COMMITTED, &body);
        }
        let mut slots = Vec::with_capacity(entries.len());
        for entry in entries {
            let offset = start + buf.len() as u64;
            encode_frame(&mut buf, start, KIND_ENTRY, &entry.body);
            let len = (start + buf.len() as u64 - offset) as u32;
            slots.push(Slot {
                log_id: entry.log_id,
                segment: self.active_id,
                offset,
                len,
            });
        }
        let path = self.active_path();
        #[cfg(test)]
        self.shared.hooks.injected_failure(&path)?;
        if !buf.is_empty() {
            self.active
                .write_all_at(&buf, start)
                .map_err(|e| StoreError::io("write", &path, e))?;
        }
        self.active
            .sync_data()
            .map_err(|e| StoreError::io("fdatasync", &path, e))?;
        self.shared.syncs.fetch_add(1, Ordering::Relaxed);
        self.active_len = start + buf.len() as u64;
        self.committed_on_disk = committed;
        Ok(slots)
    }

    /// Starts a new segment; its first write carries the header and the committed id.
    fn roll(&mut self) -> Result<(), StoreError> {
        let id = self.active_id + 1;
        let file = Arc::new(create_segment(&self.dir, id)?);
        self.shared
            .index
            .write()
            .segments
            .insert(id, Arc::clone(&file));
        self.active_id = id;
        self.active = file;
        self.active_len = 0;
        Ok(())
    }

    fn save_vote(&mut self, vote: Vote<NodeId>) -> Result<(), StoreError> {
        let body = postcard::to_stdvec(&vote).map_err(|source| StoreError::Encode {
            what: "vote",
            source,
        })?;
        durable::write_blob(&self.dir, VOTE_FILE, &VOTE_MAGIC, &body)?;
        self.shared.index.write().vote = Some(vote);
        Ok(())
    }

    fn truncate(&mut self, since: u64) -> Result<(), StoreError> {
        let (cut, doomed) = {
            let mut index = self.shared.index.write();
            // Empty unless a caller dropped this truncate's future after it was queued and
            // appended again (module doc); those entries no longer follow the log.
            index.pending.split_off(&since);
            let Some(cut) = index.entries.range(since..).next().map(|(_, s)| *s) else {
                return Ok(());
            };
            index.entries.split_off(&since);
            let doomed: Vec<u64> = index
                .segments
                .split_off(&(cut.segment + 1))
                .into_keys()
                .collect();
            (cut, doomed)
        };
        for id in doomed.iter().rev() {
            let path = self.dir.join(segment::file_name(*id));
            fs::remove_file(&path).map_err(|e| StoreError::io("remove", &path, e))?;
        }
        if !doomed.is_empty() {
            durable::fsync_dir(&self.dir)?;
        }
        if cut.segment != self.active_id {
            let index = self.shared.index.read();
            let file = index.segments.get(&cut.segment).ok_or_else(|| {
                StoreError::inconsistent(&self.dir, "truncation point in a closed segment")
            })?;
            self.active = Arc::clone(file);
            self.active_id = cut.segment;
        }
        let path = self.active_path();
        self.active
            .set_len(cut.offset)
            .map_err(|e| StoreError::io("truncate", &path, e))?;
        // The cut is durable before new bytes land where the removed frames were: otherwise a
        // crash could leave a half-written new frame followed by intact old ones, which
        // recovery would have to call corruption.
        self.active
            .sync_all()
            .map_err(|e| StoreError::io("fsync", &path, e))?;
        self.shared.syncs.fetch_add(1, Ordering::Relaxed);
        self.active_len = cut.offset;
        // The newest committed frame may have been cut off: write it again (and sync the cut).
        self.committed_on_disk = None;
        self.write_frames(&[])?;
        Ok(())
    }

    fn purge(&mut self, upto: LogId<NodeId>) -> Result<(), StoreError> {
        if self.shared.index.read().last_purged >= Some(upto) {
            return Ok(());
        }
        let body = postcard::to_stdvec(&upto).map_err(|source| StoreError::Encode {
            what: "purged log id",
            source,
        })?;
        durable::write_blob(&self.dir, PURGED_FILE, &PURGED_MAGIC, &body)?;
        let doomed = {
            let mut index = self.shared.index.write();
            index.last_purged = Some(upto);
            let live = index.entries.split_off(&(upto.index + 1));
            index.entries = live;
            // Empty unless a purge future was dropped after it was queued (module doc).
            let pending = index.pending.split_off(&(upto.index + 1));
            index.pending = pending;
            let keep_from = index
                .entries
                .first_key_value()
                .map_or(self.active_id, |(_, s)| s.segment)
                .min(self.active_id);
            let kept = index.segments.split_off(&keep_from);
            std::mem::replace(&mut index.segments, kept)
        };
        remove_segments(&self.dir, doomed.keys().copied())
    }
}

/// Takes `first` and the appends queued right behind it, within the batch bounds. Returns the
/// batch and the command that ended it, if one was taken from the queue.
fn drain_appends(
    rx: &mut mpsc::Receiver<Command>,
    first: AppendCommand,
) -> (Vec<AppendCommand>, Option<Command>) {
    let mut entries = first.entries.len();
    let mut bytes = frame_bytes(&first);
    let mut batch = vec![first];
    while let Ok(command) = rx.try_recv() {
        let Command::Append(more) = command else {
            return (batch, Some(command));
        };
        let more_bytes = frame_bytes(&more);
        if entries + more.entries.len() > MAX_BATCH_ENTRIES || bytes + more_bytes > MAX_BATCH_BYTES
        {
            return (batch, Some(Command::Append(more)));
        }
        entries += more.entries.len();
        bytes += more_bytes;
        batch.push(more);
    }
    (batch, None)
}

fn frame_bytes(append: &AppendCommand) -> u64 {
    append
        .entries
        .iter()
        .map(|e| (FRAME_HEADER_LEN + e.body.len()) as u64)
        .sum()
}

/// Creates an empty segment file durably (directory fsync).
fn create_segment(dir: &Path, id: u64) -> Result<File, StoreError> {
    let path = dir.join(segment::file_name(id));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| StoreError::io("create", &path, e))?;
    durable::fsync_dir(dir)?;
    Ok(file)
}

/// Deletes segments in ascending order, then fsyncs the directory.
fn remove_segments(dir: &Path, ids: impl Iterator<Item = u64>) -> Result<(), StoreError> {
    let mut any = false;
    for id in ids {
        let path = dir.join(segment::file_name(id));
        fs::remove_file(&path).map_err(|e| StoreError::io("remove", &path, e))?;
        any = true;
    }
    if any {
        durable::fsync_dir(dir)?;
    }
    Ok(())
}

/// Opens the log in `dir`: reads the vote and the purged id, scans every segment (cutting a
/// torn tail off the last one), rebuilds the index and checks that the live entries are
/// contiguous. Returns the shared state and the writer to run on its own thread.
pub(super) fn recover(
    dir: &Path,
    segment_max_bytes: u64,
    lock: Arc<DirLock>,
) -> Result<(Arc<LogShared>, Writer), StoreError> {
    durable::create_dir(dir)?;
    durable::remove_leftover_tmp(dir, VOTE_FILE)?;
    durable::remove_leftover_tmp(dir, PURGED_FILE)?;
    let vote: Option<Vote<NodeId>> = read_postcard_blob(dir, VOTE_FILE, &VOTE_MAGIC)?;
    let last_purged: Option<LogId<NodeId>> = read_postcard_blob(dir, PURGED_FILE, &PURGED_MAGIC)?;

    let ids = list_segments(dir)?;
    let mut index = LogIndex {
        last_purged,
        vote,
        ..LogIndex::default()
    };
    let mut all_slots: Vec<Slot> = Vec::new();
    let mut active_len = 0;
    for (i, &id) in ids.iter().enumerate() {
        let is_last = i + 1 == ids.len();
        let (file, len) = recover_segment(dir, id, is_last, &mut all_slots, &mut index.committed)?;
        index.segments.insert(id, Arc::new(file));
        active_len = len;
    }

    // Live entries: above the purge point, contiguous.
    let purged_index = last_purged.map(|l| l.index);
    let mut prev: Option<u64> = None;
    for slot in all_slots {
        let idx = slot.log_id.index;
        if purged_index.is_some_and(|p| idx <= p) {
            continue;
        }
        if let Some(p) = prev
            && idx != p + 1
        {
            return Err(StoreError::inconsistent(
                dir,
                format!("log entry {idx} follows entry {p}: a hole or a duplicate"),
            ));
        }
        prev = Some(idx);
        index.entries.insert(idx, slot);
    }

    // Segments holding only purged entries (a purge interrupted by a crash) go now.
    let (active_id, active) = match index.segments.last_key_value() {
        Some((id, file)) => (*id, Arc::clone(file)),
        None => {
            let file = Arc::new(create_segment(dir, 1)?);
            index.segments.insert(1, Arc::clone(&file));
            active_len = 0;
            (1, file)
        }
    };
    let keep_from = index
        .entries
        .first_key_value()
        .map_or(active_id, |(_, s)| s.segment)
        .min(active_id);
    let kept = index.segments.split_off(&keep_from);
    let stale = std::mem::replace(&mut index.segments, kept);
    remove_segments(dir, stale.keys().copied())?;

    let committed = index.committed;
    let shared = Arc::new(LogShared::new(dir.to_path_buf(), index));
    let writer = Writer {
        dir: dir.to_path_buf(),
        shared: Arc::clone(&shared),
        segment_max_bytes,
        active_id,
        active,
        active_len,
        committed_on_disk: committed,
        failed: None,
        _lock: lock,
    };
    Ok((shared, writer))
}

/// Scans one segment, appending its entries' slots and updating the committed id; cuts a torn
/// tail off. Returns the open file and its (new) length.
fn recover_segment(
    dir: &Path,
    id: u64,
    is_last: bool,
    slots: &mut Vec<Slot>,
    committed: &mut Option<LogId<NodeId>>,
) -> Result<(File, u64), StoreError> {
    let path = dir.join(segment::file_name(id));
    let bytes = fs::read(&path).map_err(|e| StoreError::io("read", &path, e))?;
    let scan = segment::scan(&bytes, is_last)
        .map_err(|(offset, reason)| StoreError::corrupt(&path, offset, reason))?;
    for found in &scan.frames {
        let frame = found.frame;
        match frame.kind {
            KIND_ENTRY => {
                let entry: Entry<TypeConfig> = postcard::from_bytes(frame.body)
                    .map_err(|e| StoreError::corrupt(&path, found.offset, format!("entry: {e}")))?;
                slots.push(Slot {
                    log_id: entry.log_id,
                    segment: id,
                    offset: found.offset,
                    len: frame.len as u32,
                });
            }
            KIND_COMMITTED => {
                *committed = postcard::from_bytes(frame.body).map_err(|e| {
                    StoreError::corrupt(&path, found.offset, format!("committed id: {e}"))
                })?;
            }
            other => {
                return Err(StoreError::corrupt(
                    &path,
                    found.offset,
                    format!("unknown frame kind {other}"),
                ));
            }
        }
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| StoreError::io("open", &path, e))?;
    let mut len = bytes.len() as u64;
    if let Some(cut) = scan.torn_at {
        tracing::warn!(
            segment = %path.display(),
            at = cut,
            dropped_bytes = len - cut,
            "cutting the torn tail of the log"
        );
        file.set_len(cut)
            .map_err(|e| StoreError::io("truncate", &path, e))?;
        file.sync_all()
            .map_err(|e| StoreError::io("fsync", &path, e))?;
        len = cut;
    }
    Ok((file, len))
}

fn list_segments(dir: &Path) -> Result<Vec<u64>, StoreError> {
    let mut ids = Vec::new();
    for dirent in fs::read_dir(dir).map_err(|e| StoreError::io("list", dir, e))? {
        let dirent = dirent.map_err(|e| StoreError::io("list", dir, e))?;
        if let Some(id) = dirent
            .file_name()
            .to_str()
            .and_then(segment::parse_file_name)
        {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    for pair in ids.windows(2) {
        if pair[1] != pair[0] + 1 {
            return Err(StoreError::inconsistent(
                dir,
                format!("segment {} is followed by segment {}", pair[0], pair[1]),
            ));
        }
    }
    Ok(ids)
}

fn read_postcard_blob<T: serde::de::DeserializeOwned>(
    dir: &Path,
    name: &str,
    magic: &[u8; 8],
) -> Result<Option<T>, StoreError> {
    let Some(body) = durable::read_blob(dir, name, magic)? else {
        return Ok(None);
    };
    postcard::from_bytes(&body)
        .map(Some)
        .map_err(|e| StoreError::corrupt(&dir.join(name), 0, format!("{name}: {e}")))
}
