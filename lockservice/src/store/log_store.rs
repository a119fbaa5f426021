//! `LogStore`: openraft's `RaftLogStorage` over the segmented log, and `LogReader`, the
//! cloneable reader replication tasks use.
//!
//! One writer thread (`log_writer.rs`) owns every write: appends, truncations, purges and the
//! vote go through one bounded queue and happen in order, each made durable before its caller
//! hears back (openraft: "all write-IO must be serialized"); the committed id is only noted in
//! the index and rides on the next write. Readers share an in-memory index (`LogIndex`: log index -> segment and offset) and read the frames
//! with `pread` on blocking threads; the writer updates the index under its lock before it
//! cuts bytes off a file, so a reader never sees a truncated entry.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::File;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    Entry, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader, StorageError, Vote,
};
use parking_lot::RwLock;
use tokio::sync::{mpsc, oneshot};

use super::error::{IntoStorage, StoreError};
use super::record::{Decoded, KIND_ENTRY, decode_frame};
use crate::types::{NodeId, TypeConfig};

/// Requests queued for the writer thread at most (openraft issues one at a time).
pub(super) const COMMAND_QUEUE: usize = 16;
/// Reads of adjacent frames are merged into one `pread` up to this many bytes.
const READ_SPAN_BYTES: u64 = 1 << 20;

/// Where one entry's frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Slot {
    /// The entry's id.
    pub(super) log_id: LogId<NodeId>,
    /// Its segment.
    pub(super) segment: u64,
    /// Offset of its frame in the segment.
    pub(super) offset: u64,
    /// Length of its frame.
    pub(super) len: u32,
}

/// What readers see: the live entries, the segments' files and the small state.
#[derive(Debug, Default)]
pub(super) struct LogIndex {
    /// Live entries (index > last purged), contiguous.
    pub(super) entries: BTreeMap<u64, Slot>,
    /// Open segment files by id (read with `pread`; the last one is also written).
    pub(super) segments: BTreeMap<u64, Arc<File>>,
    /// The last purged log id.
    pub(super) last_purged: Option<LogId<NodeId>>,
    /// The durable vote.
    pub(super) vote: Option<Vote<NodeId>>,
    /// The committed log id last saved (durable lazily, see `save_committed`).
    pub(super) committed: Option<LogId<NodeId>>,
}

impl LogIndex {
    /// The last entry's id, or the last purged id if the log is empty.
    pub(super) fn last_log_id(&self) -> Option<LogId<NodeId>> {
        self.entries
            .last_key_value()
            .map(|(_, slot)| slot.log_id)
            .or(self.last_purged)
    }
}

/// State shared by the store, its readers and the writer thread.
#[derive(Debug)]
pub(super) struct LogShared {
    /// The `log/` directory.
    pub(super) dir: PathBuf,
    /// The index.
    pub(super) index: RwLock<LogIndex>,
}

/// A request to the writer thread; `done` answers once the change is durable.
#[derive(Debug)]
pub(super) enum Command {
    Append {
        entries: Vec<Entry<TypeConfig>>,
        done: oneshot::Sender<Result<(), StoreError>>,
    },
    SaveVote {
        vote: Vote<NodeId>,
        done: oneshot::Sender<Result<(), StoreError>>,
    },
    Truncate {
        index: u64,
        done: oneshot::Sender<Result<(), StoreError>>,
    },
    Purge {
        upto: LogId<NodeId>,
        done: oneshot::Sender<Result<(), StoreError>>,
    },
}

/// Reads log entries; cheap to clone, usable while the store writes.
#[derive(Debug, Clone)]
pub struct LogReader {
    shared: Arc<LogShared>,
}

/// The durable Raft log (plus vote, committed id and last purged id) in `<data dir>/log/`.
///
/// Dropping it stops the writer thread after it has made the last saved committed id durable,
/// and waits for that (one `fdatasync`); `close` does the same without blocking the runtime.
#[derive(Debug)]
pub struct LogStore {
    tx: Option<mpsc::Sender<Command>>,
    writer: Option<JoinHandle<Result<(), StoreError>>>,
    reader: LogReader,
}

impl LogStore {
    pub(super) fn new(
        shared: Arc<LogShared>,
        tx: mpsc::Sender<Command>,
        writer: JoinHandle<Result<(), StoreError>>,
    ) -> LogStore {
        LogStore {
            tx: Some(tx),
            writer: Some(writer),
            reader: LogReader { shared },
        }
    }

    /// A reader over this log.
    pub fn reader(&self) -> LogReader {
        self.reader.clone()
    }

    /// Stops the writer thread after flushing the committed id, and releases the data
    /// directory once the state machine store is dropped too.
    pub async fn close(mut self) -> Result<(), StoreError> {
        self.tx = None;
        let Some(writer) = self.writer.take() else {
            return Ok(());
        };
        tokio::task::spawn_blocking(move || join_writer(writer))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }

    async fn call(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<(), StoreError>>) -> Command,
    ) -> Result<(), StoreError> {
        let tx = self.tx.as_ref().ok_or(StoreError::WriterGone)?;
        let (done, answer) = oneshot::channel();
        tx.send(make(done))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }

    fn index(&self) -> &RwLock<LogIndex> {
        &self.reader.shared.index
    }
}

fn join_writer(writer: JoinHandle<Result<(), StoreError>>) -> Result<(), StoreError> {
    writer
        .join()
        .map_err(|_| StoreError::Task("log writer thread panicked".into()))?
}

impl Drop for LogStore {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(writer) = self.writer.take()
            && let Err(e) = join_writer(writer)
        {
            tracing::error!(error = %e, "log writer stopped with an error");
        }
    }
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let Some((start, end)) = index_range(&range) else {
            return Ok(Vec::new());
        };
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || read_entries(&shared, start, end))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))
            .and_then(|r| r)
            .storage(ErrorSubject::Logs, ErrorVerb::Read)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        self.reader.try_get_log_entries(range).await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let index = self.index().read();
        Ok(LogState {
            last_purged_log_id: index.last_purged,
            last_log_id: index.last_log_id(),
        })
    }

    async fn get_log_reader(&mut self) -> LogReader {
        self.reader.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let vote = *vote;
        self.call(|done| Command::SaveVote { vote, done })
            .await
            .storage(ErrorSubject::Vote, ErrorVerb::Write)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(self.index().read().vote)
    }

    /// Records the committed id. It reaches the disk with the next write to the log (an
    /// append, a truncation) or when the store closes, not before this returns: losing the
    /// newest committed id in a crash only means replaying less of the log at restart, and an
    /// `fdatasync` per commit would double the cost of every write.
    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        // The writer thread picks it up from the index at its next write.
        self.index().write().committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self.index().read().committed)
    }

    /// Appends entries and answers `callback` after `fdatasync`. Entries must follow the last
    /// one (`StoreError::NotContiguous` otherwise); entries at or below the purge point are
    /// skipped, as if appended and purged at once (openraft's suite appends such entries).
    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        if entries.is_empty() {
            callback.log_io_completed(Ok(()));
            return Ok(());
        }
        // The writer answers after `fdatasync`, so the callback follows durability.
        match self.call(|done| Command::Append { entries, done }).await {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(io::Error::other(e.to_string())));
                Err(e.into_storage(ErrorSubject::Logs, ErrorVerb::Write))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let index = log_id.index;
        self.call(|done| Command::Truncate { index, done })
            .await
            .storage(ErrorSubject::Log(log_id), ErrorVerb::Delete)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.call(|done| Command::Purge { upto: log_id, done })
            .await
            .storage(ErrorSubject::Log(log_id), ErrorVerb::Delete)
    }
}

/// `[start, end)` of a range of indexes (`end = None`: unbounded); `None` if it is empty.
fn index_range(range: &impl RangeBounds<u64>) -> Option<(u64, Option<u64>)> {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.checked_add(1)?,
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.checked_add(1),
        Bound::Excluded(&e) => Some(e),
        Bound::Unbounded => None,
    };
    match end {
        Some(end) if end <= start => None,
        _ => Some((start, end)),
    }
}

/// Reads the live entries in `[start, end)`, holding the index's read lock so that no
/// truncation cuts them meanwhile.
fn read_entries(
    shared: &LogShared,
    start: u64,
    end: Option<u64>,
) -> Result<Vec<Entry<TypeConfig>>, StoreError> {
    let index = shared.index.read();
    let slots: Vec<Slot> = match end {
        Some(end) => index.entries.range(start..end).map(|(_, s)| *s).collect(),
        None => index.entries.range(start..).map(|(_, s)| *s).collect(),
    };
    let mut out = Vec::with_capacity(slots.len());
    let mut rest = &slots[..];
    while let Some(first) = rest.first() {
        // One pread for a run of frames of one segment, up to READ_SPAN_BYTES.
        let run = rest
            .iter()
            .take_while(|s| {
                s.segment == first.segment
                    && s.offset + u64::from(s.len) - first.offset <= READ_SPAN_BYTES
            })
            .count()
            .max(1);
        let (group, tail) = rest.split_at(run);
        rest = tail;
        read_group(shared, &index, group, &mut out)?;
    }
    Ok(out)
}

fn read_group(
    shared: &LogShared,
    index: &LogIndex,
    group: &[Slot],
    out: &mut Vec<Entry<TypeConfig>>,
) -> Result<(), StoreError> {
    let (Some(first), Some(last)) = (group.first(), group.last()) else {
        return Ok(());
    };
    let path = shared.dir.join(super::segment::file_name(first.segment));
    let file = index.segments.get(&first.segment).ok_or_else(|| {
        StoreError::inconsistent(&path, "the index names a segment that is not open")
    })?;
    let span = usize::try_from(last.offset + u64::from(last.len) - first.offset)
        .map_err(|_| StoreError::inconsistent(&path, "read span too large"))?;
    let mut buf = vec![0u8; span];
    file.read_exact_at(&mut buf, first.offset)
        .map_err(|e| StoreError::io("read", &path, e))?;
    for slot in group {
        let at = (slot.offset - first.offset) as usize;
        let frame = match buf.get(at..).map(decode_frame) {
            Some(Decoded::Frame(frame)) if frame.kind == KIND_ENTRY => frame,
            Some(Decoded::Frame(_)) => {
                return Err(StoreError::corrupt(
                    &path,
                    slot.offset,
                    "not an entry frame",
                ));
            }
            Some(Decoded::Invalid(reason)) => {
                return Err(StoreError::corrupt(&path, slot.offset, reason));
            }
            Some(Decoded::Incomplete) | None => {
                return Err(StoreError::corrupt(&path, slot.offset, "frame cut short"));
            }
        };
        let entry: Entry<TypeConfig> = postcard::from_bytes(frame.body)
            .map_err(|e| StoreError::corrupt(&path, slot.offset, format!("entry: {e}")))?;
        if entry.log_id != slot.log_id {
            return Err(StoreError::inconsistent(
                &path,
                format!(
                    "expected entry {} at byte {}, found {}",
                    slot.log_id, slot.offset, entry.log_id
                ),
            ));
        }
        out.push(entry);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::index_range;

    #[test]
    fn ranges() {
        assert_eq!(index_range(&(3..3)), None);
        let (hi, lo) = (5, 3);
        assert_eq!(index_range(&(hi..lo)), None);
        assert_eq!(index_range(&(3..5)), Some((3, Some(5))));
        assert_eq!(index_range(&(3..=5)), Some((3, Some(6))));
        assert_eq!(index_range(&(3..)), Some((3, None)));
        assert_eq!(index_range(&(..)), Some((0, None)));
        assert_eq!(index_range(&(0..=u64::MAX)), Some((0, None)));
    }
}
