//! `LogStore`: openraft's `RaftLogStorage` over the segmented log, and `LogReader`, the
//! cloneable reader replication tasks use.
//!
//! One writer thread (`log_writer.rs`) owns every write: appends, truncations, purges and the
//! vote go through one bounded queue and take effect in queue order (openraft: "all write-IO
//! must be serialized"); the committed id is only noted in the index and rides on the next
//! write.
//!
//! `append` does not wait for the disk (group commit): it checks that the entries follow the
//! log, encodes them, publishes them in the index's `pending` map (readable at once, as
//! openraft requires when `append` returns), queues them for the writer with the `LogFlushed`
//! callback and returns. The writer writes every append waiting in the queue with one `pwrite`
//! and one `fdatasync`, moves the entries from `pending` to on-disk slots, and only then calls
//! the callbacks, in queue order. `save_vote`, `truncate` and `purge` wait for their own
//! durability.
//!
//! Readers share the index (`LogIndex`: log index -> segment and offset for durable entries,
//! log index -> entry for pending ones) and read frames with `pread` on blocking threads; the
//! writer updates the index under its lock before it cuts bytes off a file, so a reader never
//! sees a truncated entry.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::File;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    Entry, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader, StorageError, Vote,
};
use parking_lot::RwLock;
use tokio::sync::{mpsc, oneshot};

use super::error::{IntoStorage, StoreError};
use super::record::{Decoded, KIND_ENTRY, MAX_BODY_LEN, decode_frame};
use crate::types::{NodeId, TypeConfig};

/// Requests queued for the writer thread at most; `append` waits for room beyond that. Each
/// queued append holds at most one openraft batch of entries (`max_payload_entries`).
pub(super) const COMMAND_QUEUE: usize = 256;
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
///
/// Invariant: `entries` then `pending` are contiguous, every `pending` index is above every
/// `entries` index, and both are above the last purged index. `pending` holds exactly the
/// entries of the appends queued for the writer and not yet finished; the writer moves them to
/// `entries` after their `fdatasync`, or drops them all when it fails.
#[derive(Debug, Default)]
pub(super) struct LogIndex {
    /// Durable live entries (index > last purged), contiguous.
    pub(super) entries: BTreeMap<u64, Slot>,
    /// Entries `append` accepted that are not durable yet, contiguous after `entries`.
    pub(super) pending: BTreeMap<u64, Arc<Entry<TypeConfig>>>,
    /// Open segment files by id (read with `pread`; the last one is also written).
    pub(super) segments: BTreeMap<u64, Arc<File>>,
    /// The last purged log id.
    pub(super) last_purged: Option<LogId<NodeId>>,
    /// The durable vote.
    pub(super) vote: Option<Vote<NodeId>>,
    /// The committed log id last saved (durable lazily, see `save_committed`).
    pub(super) committed: Option<LogId<NodeId>>,
    /// Why the writer refuses writes, once a write failed (`append` then refuses at once).
    pub(super) failed: Option<String>,
}

impl LogIndex {
    /// The last entry's id (pending or durable), or the last purged id if the log is empty.
    pub(super) fn last_log_id(&self) -> Option<LogId<NodeId>> {
        self.pending
            .last_key_value()
            .map(|(_, entry)| entry.log_id)
            .or_else(|| self.last_durable_log_id())
    }

    /// The last durable entry's id, or the last purged id if no entry is durable.
    pub(super) fn last_durable_log_id(&self) -> Option<LogId<NodeId>> {
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
    /// `fsync`/`fdatasync` calls on segment files since open.
    pub(super) syncs: AtomicU64,
    /// Test hooks into the writer thread.
    #[cfg(test)]
    pub(super) hooks: super::test_hooks::TestHooks,
}

impl LogShared {
    pub(super) fn new(dir: PathBuf, index: LogIndex) -> LogShared {
        LogShared {
            dir,
            index: RwLock::new(index),
            syncs: AtomicU64::new(0),
            #[cfg(test)]
            hooks: super::test_hooks::TestHooks::default(),
        }
    }
}

/// Called once with the outcome of a queued append: `Ok` only after its `fdatasync`.
pub(super) type Done = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// One entry, encoded for its frame.
#[derive(Debug)]
pub(super) struct EncodedEntry {
    /// The entry's id.
    pub(super) log_id: LogId<NodeId>,
    /// The entry, postcard.
    pub(super) body: Vec<u8>,
}

/// An append waiting for the writer; its entries are in `LogIndex::pending`.
pub(super) struct AppendCommand {
    /// The entries, in order, following the log (none at or below the purge point).
    pub(super) entries: Vec<EncodedEntry>,
    /// Answered after the entries are durable (or the write failed).
    pub(super) done: Done,
}

impl Debug for AppendCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppendCommand")
            .field("entries", &self.entries.len())
            .finish_non_exhaustive()
    }
}

/// A request to the writer thread; `done` answers once the change is durable.
#[derive(Debug)]
pub(super) enum Command {
    Append(AppendCommand),
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

    /// `fsync`/`fdatasync` calls on log segment files since the store was opened: one per
    /// group commit of appends, two per truncation. The fsyncs of the vote and purged files
    /// and of the directory are not counted.
    pub fn sync_count(&self) -> u64 {
        self.reader.shared.syncs.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    pub(super) fn shared(&self) -> &Arc<LogShared> {
        &self.reader.shared
    }

    /// The body of `append`: checks and encodes `entries`, publishes them as pending, queues
    /// them for the writer with `done` and returns without waiting for the disk. Entries at or
    /// below the purge point are skipped. On an error nothing is published or queued, and
    /// `done` is dropped uncalled.
    pub(super) async fn submit_append(
        &mut self,
        entries: Vec<Entry<TypeConfig>>,
        done: Done,
    ) -> Result<(), StoreError> {
        let tx = self.tx.as_ref().ok_or(StoreError::WriterGone)?;
        // Room in the queue first: publishing and queueing then happen with no await between
        // them, so every published entry is queued and in the order of publication.
        let permit = tx.reserve().await.map_err(|_| StoreError::WriterGone)?;
        let shared = &self.reader.shared;
        let mut index = shared.index.write();
        if let Some(reason) = &index.failed {
            return Err(StoreError::Failed(reason.clone()));
        }
        let accepted = unpurged_and_contiguous(
            entries,
            |e| e.log_id.index,
            index.last_log_id().map(|l| l.index + 1),
            index.last_purged.map(|l| l.index),
        )?;
        let mut encoded = Vec::with_capacity(accepted.len());
        for entry in &accepted {
            let body = postcard::to_stdvec(entry).map_err(|source| StoreError::Encode {
                what: "log entry",
                source,
            })?;
            if body.len() > MAX_BODY_LEN {
                return Err(StoreError::inconsistent(
                    &shared.dir,
                    format!(
                        "entry {} is {} bytes, over the frame limit",
                        entry.log_id,
                        body.len()
                    ),
                ));
            }
            encoded.push(EncodedEntry {
                log_id: entry.log_id,
                body,
            });
        }
        for entry in accepted {
            index.pending.insert(entry.log_id.index, Arc::new(entry));
        }
        permit.send(Command::Append(AppendCommand {
            entries: encoded,
            done,
        }));
        Ok(())
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

    /// Publishes the entries (readable when this returns) and queues them; the writer answers
    /// `callback` after the `fdatasync` that made them durable, together with every other
    /// append queued meanwhile (group commit). Entries must follow the last one
    /// (`StoreError::NotContiguous` otherwise); entries at or below the purge point are
    /// skipped, as if appended and purged at once (openraft's suite appends such entries).
    /// When this returns an error, `callback` is dropped uncalled (openraft stops on it).
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
        // Even an append with nothing to write goes through the queue: its callback must not
        // overtake those of earlier appends that are not durable yet.
        let done: Done =
            Box::new(move |result| callback.log_io_completed(result.map_err(io::Error::other)));
        self.submit_append(entries, done)
            .await
            .storage(ErrorSubject::Logs, ErrorVerb::Write)
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

/// Reads the live entries in `[start, end)`, durable ones from their segments and pending ones
/// from memory, holding the index's read lock so that no truncation cuts them meanwhile and
/// no pending entry moves to disk unseen.
fn read_entries(
    shared: &LogShared,
    start: u64,
    end: Option<u64>,
) -> Result<Vec<Entry<TypeConfig>>, StoreError> {
    let index = shared.index.read();
    let range = (
        Bound::Included(start),
        end.map_or(Bound::Unbounded, Bound::Excluded),
    );
    let slots: Vec<Slot> = index.entries.range(range).map(|(_, s)| *s).collect();
    let pending: Vec<Arc<Entry<TypeConfig>>> = index
        .pending
        .range(range)
        .map(|(_, e)| Arc::clone(e))
        .collect();
    let mut out = Vec::with_capacity(slots.len() + pending.len());
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
    // Pending entries all follow the durable ones.
    out.extend(pending.iter().map(|e| Entry::clone(e)));
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

/// `items` without those at or below the purge point (already covered by the snapshot it stands
/// for: as if appended and purged at once), checked to continue at `next` without a gap.
pub(super) fn unpurged_and_contiguous<T>(
    items: Vec<T>,
    index_of: impl Fn(&T) -> u64,
    mut next: Option<u64>,
    purged: Option<u64>,
) -> Result<Vec<T>, StoreError> {
    let mut kept = Vec::with_capacity(items.len());
    for item in items {
        let index = index_of(&item);
        if purged.is_some_and(|p| index <= p) {
            continue;
        }
        if let Some(want) = next
            && index != want
        {
            return Err(StoreError::NotContiguous {
                expected: want,
                got: index,
            });
        }
        next = Some(index + 1);
        kept.push(item);
    }
    Ok(kept)
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
