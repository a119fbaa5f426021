//! The commit-log writer: one per tablet server, shared by all its tablets.
//!
//! `append` encodes the record (CRC included) without the lock, then joins the pending group
//! batch (`group`) and blocks until a leader has written and fdatasynced the batch. The leader
//! does its I/O with the mutex released and holds the segment file alone while it does, so
//! appenders keep queueing into the next batch meanwhile. Positions (segment, offset) are
//! assigned under the mutex when a record joins a batch, so they are exact before the write.
//!
//! Segments: `open` always starts a new segment numbered after the highest existing one (it
//! never appends to an old one) and marks it `first_after_open`. A record that would push the
//! current segment past `segment_bytes` goes to a new segment (a segment holds at least one
//! record, so a single larger record makes a larger segment). Before the leader moves to a new
//! segment it syncs the old one, even with `sync: false`, so every segment but the newest of
//! each run of the server is complete on disk — what `reader` relies on.
//!
//! Zeroed segments: a segment file is kept extended with zeros `ZERO_AHEAD_BYTES` ahead of its
//! records (`StorageRoot::create_append_zeroed`), so a group commit's fdatasync writes only
//! the records, not a new file size and new blocks as well (half the time of a sync here). The
//! zeros are cut off when the leader leaves the segment (`AppendFile::finish`, before the next
//! segment exists) and when the log closes; so only the newest segment of a run that crashed
//! ends in zeros, where `reader` takes them as the segment's end.
//!
//! Async appends (`enqueue` + `wait_durable`, what the data service uses): the appender joins
//! the pending batch without blocking and awaits that batch's own signal (a `watch` made for
//! each batch), so finishing a batch wakes only its own appenders, not those already waiting
//! for the next one (64 writers and batches of ~16 woke every writer four times over). The
//! I/O is done by a leader loop on the blocking pool, started by the appender that finds none
//! scheduled: it leads batch after batch while records are pending, then ends. So a write costs
//! a task wake-up, not a blocked thread, and one blocking-pool handoff serves a whole run of
//! batches. Blocking `append` callers and the leader loop share the same `Group`; whoever finds
//! the pending batch unwritten and nobody writing leads it.
//!
//! Failure: a failed write, fdatasync or segment creation stops the log for good. That append
//! and every later one return `CommitLogError::Stopped`; nothing is retried.
//!
//! Segment GC: the log remembers, for each segment it wrote, the highest sequence number each
//! tablet has in it (`segment_tablet_max_seqs`). Segment `s` is no longer needed once every
//! tablet listed there has a durable redo point (in its manifest, wherever the tablet now
//! lives) at or above its max, or has been deleted. The engine then calls
//! `delete_segments_before(s + 1)` once that holds for `s` and every older segment. Segments
//! from earlier runs of the server are listed by `segments` but their contents are unknown
//! (`segment_tablet_max_seqs` returns `None`); they stay until no manifest lists this log
//! directory any more. Deleting never touches the segment being written.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Condvar, Mutex, MutexGuard};
use tabula_common::{AppendFile, ServerId, StorageRoot, TabletId};
use tokio::sync::watch;

use super::error::CommitLogError;
use super::group::{Batch, Group, Turn};
use super::header::{encode_header, header_len};
use super::naming::{check_server_id, parse_segment_file_name, segment_path, server_log_dir};
use super::reader::OwnLogView;
use super::record::{self, MAX_PAYLOAD_BYTES, check_fields};
use crate::engine::stats::{Histogram, HistogramSnapshot};

/// How far ahead of its records a segment file is zero-filled (at most `segment_bytes`).
const ZERO_AHEAD_BYTES: u64 = 1 << 20;

/// How a commit log behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitLogOptions {
    /// Roll to a new segment when a record would make the current one exceed this many bytes
    /// (default 64 MiB).
    pub segment_bytes: u64,
    /// Whether `append` returns only after an fdatasync covering its record (default true).
    /// With `false` it returns once the record is written to the OS (for benchmarks).
    pub sync: bool,
    /// The most record bytes waiting for the next group write; appenders beyond it wait
    /// (default 16 MiB). A single larger record still goes through alone.
    pub max_pending_bytes: usize,
}

impl CommitLogOptions {
    /// How far ahead of the records a segment is zero-filled.
    fn zero_step(&self) -> u64 {
        ZERO_AHEAD_BYTES.min(self.segment_bytes).max(1)
    }
}

impl Default for CommitLogOptions {
    fn default() -> Self {
        CommitLogOptions {
            segment_bytes: 64 * 1024 * 1024,
            sync: true,
            max_pending_bytes: 16 * 1024 * 1024,
        }
    }
}

/// Where a record was written: its segment's number and the offset of its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogPosition {
    /// The segment's number.
    pub segment: u64,
    /// Offset of the record in the segment file.
    pub offset: u64,
}

/// Counters since `open`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CommitLogStats {
    /// Records written.
    pub records: u64,
    /// Bytes of records written (segment headers excluded).
    pub bytes: u64,
    /// fdatasync calls made (one per group batch with `sync`, plus one per segment left behind,
    /// which also cuts off its zeros).
    pub syncs: u64,
    /// Non-empty group batches written.
    pub batches: u64,
    /// Segments created (the one `open` starts included).
    pub segments_created: u64,
}

/// The segment file being appended to; held by the leader while it writes.
struct OpenSegment {
    number: u64,
    path: String,
    file: Box<dyn AppendFile>,
    unsynced: bool,
}

/// Where the next record goes.
#[derive(Debug)]
struct Tail {
    segment: u64,
    len: u64,
    records: u64,
}

/// What the mutex protects.
struct State {
    group: Group,
    /// `None` while a leader writes, and after a failure.
    file: Option<OpenSegment>,
    /// The number of the segment file last handed back by a leader.
    file_segment: u64,
    tail: Tail,
    /// Everything before this position is written to the segment files (every batch led so
    /// far): what a replay of this directory may read while the log runs (`replay_view`).
    written: LogPosition,
    /// Every segment in the directory; `Some` (tablet -> highest seq) for those written here.
    segments: BTreeMap<u64, Option<HashMap<TabletId, u64>>>,
    stats: CommitLogStats,
    /// Whether a leader loop for async appenders is scheduled or running on the blocking pool
    /// (at most one is).
    leader_scheduled: bool,
    /// The signal of the pending batch: set once that batch is written (or the log stops).
    filling_signal: watch::Sender<Option<Outcome>>,
}

/// How a batch ended, as its async appenders learn it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Durable,
    Stopped,
}

impl State {
    /// Assigns the next position to a record of `len` bytes, rolling the tail if needed.
    fn assign(&mut self, len: u64, segment_bytes: u64, header_len: u64) -> LogPosition {
        let tail = &mut self.tail;
        if tail.records > 0 && tail.len.saturating_add(len) > segment_bytes {
            tail.segment += 1;
            tail.len = header_len;
            tail.records = 0;
            self.segments.insert(tail.segment, Some(HashMap::new()));
        }
        let position = LogPosition {
            segment: tail.segment,
            offset: tail.len,
        };
        tail.len += len;
        tail.records += 1;
        position
    }

    /// Moves `written` past a batch a leader wrote.
    fn note_written(&mut self, batch: &Batch, header_len: u64) {
        for chunk in &batch.chunks {
            if chunk.segment != self.written.segment {
                self.written = LogPosition {
                    segment: chunk.segment,
                    offset: header_len,
                };
            }
            self.written.offset += chunk.data.len() as u64;
        }
    }

    /// Whether a record assigned a position is not written yet.
    fn assigned_unwritten(&self) -> bool {
        self.written
            < LogPosition {
                segment: self.tail.segment,
                offset: self.tail.len,
            }
    }

    fn note_seq(&mut self, segment: u64, tablet: TabletId, last_seq: u64) {
        if let Some(Some(tablets)) = self.segments.get_mut(&segment) {
            let max = tablets.entry(tablet).or_insert(last_seq);
            *max = (*max).max(last_seq);
        }
    }
}

/// A record joined to a pending batch by [`CommitLog::enqueue`]; durable once
/// [`CommitLog::wait_durable`] says so.
#[derive(Debug, Clone)]
#[must_use = "an enqueued record is not durable until wait_durable says so"]
pub struct Enqueued {
    /// Where the record goes.
    pub position: LogPosition,
    /// The signal of the record's batch.
    batch: watch::Receiver<Option<Outcome>>,
}

/// Counters a leader gathers while writing a batch.
#[derive(Default)]
struct WriteCounts {
    syncs: u64,
    segments_created: u64,
}

/// A tablet server's commit log. Thread-safe; share it by reference or `Arc`.
pub struct CommitLog {
    storage: Arc<dyn StorageRoot>,
    server: ServerId,
    dir: String,
    opts: CommitLogOptions,
    header_len: u64,
    /// The segment `open` started: this run's segments are it and those after it.
    first_segment: u64,
    state: Mutex<State>,
    wake: Condvar,
    /// Batches finished (written or failed), counted to wake async appenders waiting for
    /// room in a full pending batch.
    batches_finished: watch::Sender<u64>,
    /// How long each fdatasync took.
    sync_latency: Histogram,
}

impl std::fmt::Debug for CommitLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommitLog")
            .field("dir", &self.dir)
            .field("opts", &self.opts)
            .finish()
    }
}

impl CommitLog {
    /// Opens `server`'s log on `storage`, starting a new segment after the existing ones.
    pub fn open(
        storage: Arc<dyn StorageRoot>,
        server: ServerId,
        opts: CommitLogOptions,
    ) -> Result<CommitLog, CommitLogError> {
        check_server_id(&server).map_err(|reason| CommitLogError::InvalidServerId {
            id: server.0.clone(),
            reason,
        })?;
        let dir = server_log_dir(&server);
        let names = storage.list(&dir).map_err(CommitLogError::io(&dir))?;
        let existing: Vec<u64> = names
            .iter()
            .filter_map(|n| parse_segment_file_name(n))
            .collect();
        let number = match existing.iter().max() {
            None => 1,
            Some(&max) => max.checked_add(1).ok_or_else(|| CommitLogError::Io {
                path: dir.clone(),
                source: std::io::Error::other("segment numbers exhausted"),
            })?,
        };
        let path = segment_path(&dir, number);
        let mut file = storage
            .create_append_zeroed(&path, opts.zero_step())
            .map_err(CommitLogError::io(&path))?;
        let header = encode_header(&server, number, true);
        let sync_latency = Histogram::latency();
        file.append(&header)
            .and_then(|()| timed_sync(file.as_mut(), &sync_latency))
            .map_err(CommitLogError::io(&path))?;

        let mut segments: BTreeMap<u64, Option<HashMap<TabletId, u64>>> =
            existing.into_iter().map(|n| (n, None)).collect();
        segments.insert(number, Some(HashMap::new()));
        let header_len = header_len(&server) as u64;
        let state = State {
            group: Group::new(),
            file: Some(OpenSegment {
                number,
                path,
                file,
                unsynced: false,
            }),
            file_segment: number,
            tail: Tail {
                segment: number,
                len: header_len,
                records: 0,
            },
            written: LogPosition {
                segment: number,
                offset: header_len,
            },
            segments,
            stats: CommitLogStats {
                syncs: 1,
                segments_created: 1,
                ..CommitLogStats::default()
            },
            leader_scheduled: false,
            filling_signal: watch::Sender::new(None),
        };
        tracing::info!(server_id = %server, segment = number, "commit log opened");
        Ok(CommitLog {
            storage,
            server,
            dir,
            opts,
            header_len,
            first_segment: number,
            state: Mutex::new(state),
            wake: Condvar::new(),
            batches_finished: watch::Sender::new(0),
            sync_latency,
        })
    }

    /// Appends one row mutation's record and returns where it went, once it is durable
    /// (fdatasynced, or only written to the OS with `sync: false`). Concurrent appends share
    /// one write and fdatasync. `seq` is the mutation's first sequence number and
    /// `entry_count` how many consecutive numbers it used.
    pub fn append(
        &self,
        tablet: TabletId,
        seq: u64,
        entry_count: u32,
        payload: &[u8],
    ) -> Result<LogPosition, CommitLogError> {
        let record = encode_record(tablet, seq, entry_count, payload)?;
        let last_seq = seq + u64::from(entry_count) - 1;
        let mut state = self.state.lock();
        loop {
            if state.group.is_stopped() {
                return Err(CommitLogError::Stopped);
            }
            if state
                .group
                .has_room(record.len(), self.opts.max_pending_bytes)
            {
                break;
            }
            if state.group.is_writing() {
                self.wake.wait(&mut state);
            } else {
                self.lead(&mut state, false);
            }
        }
        let (position, ticket) = self.push(&mut state, tablet, last_seq, &record);
        loop {
            match state.group.turn(ticket) {
                Turn::Done => return Ok(position),
                Turn::Stopped => return Err(CommitLogError::Stopped),
                Turn::Wait => self.wake.wait(&mut state),
                Turn::Lead => self.lead(&mut state, false),
            }
        }
    }

    /// Joins one row mutation's record to the pending batch without waiting for it to be
    /// written, and makes sure a leader loop will write it; [`CommitLog::wait_durable`] then
    /// waits for that. Must be called from within a Tokio runtime (the leader loop runs on
    /// its blocking pool). When the pending batch is full (`max_pending_bytes`), waits for
    /// room first.
    pub async fn enqueue(
        self: &Arc<Self>,
        tablet: TabletId,
        seq: u64,
        entry_count: u32,
        payload: &[u8],
    ) -> Result<Enqueued, CommitLogError> {
        let record = encode_record(tablet, seq, entry_count, payload)?;
        let last_seq = seq + u64::from(entry_count) - 1;
        let mut finished = self.batches_finished.subscribe();
        loop {
            // Marks what is seen now, so a batch finishing from here on wakes the wait below.
            finished.borrow_and_update();
            let (pushed, start_leader) = {
                let mut state = self.state.lock();
                if state.group.is_stopped() {
                    return Err(CommitLogError::Stopped);
                }
                let pushed = state
                    .group
                    .has_room(record.len(), self.opts.max_pending_bytes)
                    .then(|| {
                        let (position, _ticket) = self.push(&mut state, tablet, last_seq, &record);
                        (position, state.filling_signal.subscribe())
                    });
                let start_leader = !state.leader_scheduled;
                state.leader_scheduled = true;
                (pushed, start_leader)
            };
            if start_leader {
                let log = Arc::clone(self);
                tokio::task::spawn_blocking(move || log.lead_while_pending());
            }
            if let Some((position, batch)) = pushed {
                return Ok(Enqueued { position, batch });
            }
            // Full: wait for the batch being written to finish, then try again.
            if finished.changed().await.is_err() {
                return Err(CommitLogError::Stopped);
            }
        }
    }

    /// Waits until `enqueued`'s record is durable (fdatasynced, or written to the OS with
    /// `sync: false`); `Stopped` if the log failed first.
    pub async fn wait_durable(&self, enqueued: &Enqueued) -> Result<LogPosition, CommitLogError> {
        let mut batch = enqueued.batch.clone();
        let outcome = batch
            .wait_for(Option::is_some)
            .await
            .map(|o| *o)
            .map_err(|_| CommitLogError::Stopped)?;
        match outcome {
            Some(Outcome::Durable) => Ok(enqueued.position),
            _ => Err(CommitLogError::Stopped),
        }
    }

    /// Assigns `record` its position and adds it to the pending batch; returns the position
    /// and the batch's ticket.
    fn push(
        &self,
        state: &mut State,
        tablet: TabletId,
        last_seq: u64,
        record: &[u8],
    ) -> (LogPosition, u64) {
        let position = state.assign(
            record.len() as u64,
            self.opts.segment_bytes,
            self.header_len,
        );
        state.note_seq(position.segment, tablet, last_seq);
        let ticket = state.group.push(position.segment, record);
        (position, ticket)
    }

    /// The leader loop of async appenders (on the blocking pool): leads batch after batch
    /// while records are pending, waiting out any other leader, then ends.
    fn lead_while_pending(&self) {
        let mut state = self.state.lock();
        loop {
            if state.group.is_stopped() || !state.group.has_pending() {
                break;
            }
            if state.group.is_writing() {
                self.wake.wait(&mut state);
            } else {
                self.lead(&mut state, false);
            }
        }
        state.leader_scheduled = false;
    }

    /// Writes whatever is pending and fdatasyncs the current segment, even with `sync: false`.
    pub fn sync_now(&self) -> Result<(), CommitLogError> {
        let mut state = self.state.lock();
        loop {
            if state.group.is_stopped() {
                return Err(CommitLogError::Stopped);
            }
            if !state.group.is_writing() {
                break;
            }
            self.wake.wait(&mut state);
        }
        self.lead(&mut state, true);
        if state.group.is_stopped() {
            Err(CommitLogError::Stopped)
        } else {
            Ok(())
        }
    }

    /// Takes the pending batch, writes it with the mutex released, and wakes everyone.
    fn lead(&self, state: &mut MutexGuard<'_, State>, force_sync: bool) {
        let batch = state.group.take();
        let signal = std::mem::replace(&mut state.filling_signal, watch::Sender::new(None));
        let file = state.file.take();
        let mut counts = WriteCounts::default();
        let outcome = MutexGuard::unlocked(state, || {
            self.write_batch(file, &batch, force_sync, &mut counts)
        });
        state.stats.syncs += counts.syncs;
        state.stats.segments_created += counts.segments_created;
        match outcome {
            Ok(file) => {
                state.note_written(&batch, self.header_len);
                state.file_segment = file.number;
                state.file = Some(file);
                state.stats.records += batch.records;
                state.stats.bytes += batch.bytes;
                state.stats.batches += u64::from(batch.records > 0);
                state.group.finish(batch.ticket, true);
            }
            Err(e) => {
                tracing::error!(
                    server_id = %self.server,
                    error = %e,
                    "commit log write failed; the log is stopped"
                );
                state.group.finish(batch.ticket, false);
            }
        }
        if state.group.is_stopped() {
            // The pending batch will never be written either.
            signal.send_replace(Some(Outcome::Stopped));
            state.filling_signal.send_replace(Some(Outcome::Stopped));
        } else {
            signal.send_replace(Some(Outcome::Durable));
        }
        self.batches_finished.send_modify(|n| *n += 1);
        self.wake.notify_all();
    }

    /// Writes `batch` (rolling segments where its chunks say) and syncs if asked.
    fn write_batch(
        &self,
        file: Option<OpenSegment>,
        batch: &Batch,
        force_sync: bool,
        counts: &mut WriteCounts,
    ) -> Result<OpenSegment, CommitLogError> {
        let mut file = file.ok_or(CommitLogError::Stopped)?;
        for chunk in &batch.chunks {
            if chunk.segment != file.number {
                file = self.roll(file, chunk.segment, counts)?;
            }
            file.file
                .append(&chunk.data)
                .map_err(CommitLogError::io(&file.path))?;
            file.unsynced = true;
        }
        if (self.opts.sync || force_sync) && file.unsynced {
            counts.syncs += 1;
            timed_sync(file.file.as_mut(), &self.sync_latency)
                .map_err(CommitLogError::io(&file.path))?;
            file.unsynced = false;
        }
        Ok(file)
    }

    /// Syncs and closes `old`, then creates segment `number` with its header.
    fn roll(
        &self,
        mut old: OpenSegment,
        number: u64,
        counts: &mut WriteCounts,
    ) -> Result<OpenSegment, CommitLogError> {
        counts.syncs += 1;
        finish_segment(&mut old, &self.sync_latency)?;
        drop(old);
        let path = segment_path(&self.dir, number);
        let mut file = self
            .storage
            .create_append_zeroed(&path, self.opts.zero_step())
            .map_err(CommitLogError::io(&path))?;
        counts.segments_created += 1;
        let header = encode_header(&self.server, number, false);
        file.append(&header).map_err(CommitLogError::io(&path))?;
        tracing::debug!(server_id = %self.server, segment = number, "commit log rolled");
        Ok(OpenSegment {
            number,
            path,
            file,
            unsynced: true,
        })
    }

    /// Deletes every segment numbered below `segment`, except the one being written. Returns
    /// how many were deleted. See the module doc for when a segment may go.
    pub fn delete_segments_before(&self, segment: u64) -> Result<usize, CommitLogError> {
        let doomed: Vec<u64> = {
            let state = self.state.lock();
            let limit = segment.min(state.file_segment);
            state.segments.range(..limit).map(|(&n, _)| n).collect()
        };
        let mut deleted = Vec::new();
        let mut result = Ok(());
        for number in doomed {
            let path = segment_path(&self.dir, number);
            match self.storage.delete(&path) {
                Ok(()) => deleted.push(number),
                Err(e) => {
                    result = Err(CommitLogError::Io { path, source: e });
                    break;
                }
            }
        }
        let mut state = self.state.lock();
        for number in &deleted {
            state.segments.remove(number);
        }
        if !deleted.is_empty() {
            tracing::info!(server_id = %self.server, count = deleted.len(), "commit log segments deleted");
        }
        result.map(|()| deleted.len())
    }

    /// For a segment this log wrote: each tablet with records in it, and the highest sequence
    /// number those records used. `None` for segments of earlier runs or unknown numbers.
    pub fn segment_tablet_max_seqs(&self, segment: u64) -> Option<HashMap<TabletId, u64>> {
        self.state.lock().segments.get(&segment).cloned().flatten()
    }

    /// What a replay of `tablet`'s records past `after_seq` may read from this log's own
    /// directory while it runs: none of this run's segments without such records (a fresh or
    /// flushed tablet reads no log at all), and of the others only what is written. Reading
    /// the segment being appended to past that would race the leader: a read can meet zeros
    /// where a batch is not written yet and records behind them that were written since, which
    /// looks like corruption. If such records are still being written, waits until every
    /// record assigned so far is (a tablet being opened takes no writes, so none of its records
    /// can follow).
    pub fn replay_view(&self, tablet: TabletId, after_seq: u64) -> OwnLogView {
        let mut state = self.state.lock();
        let has_records = |s: &State, n: u64| {
            s.segments
                .get(&n)
                .and_then(Option::as_ref)
                .and_then(|tablets| tablets.get(&tablet))
                .is_some_and(|&max| max > after_seq)
        };
        let numbers: Vec<u64> = state
            .segments
            .range(self.first_segment..)
            .map(|(&n, _)| n)
            .collect();
        if numbers.iter().any(|&n| has_records(&state, n)) {
            while state.assigned_unwritten() && !state.group.is_stopped() {
                self.wake.wait(&mut state);
            }
        }
        let written = state.written;
        let readable = numbers
            .into_iter()
            .filter(|&n| has_records(&state, n))
            .filter_map(|n| match n.cmp(&written.segment) {
                std::cmp::Ordering::Less => Some((n, u64::MAX)),
                std::cmp::Ordering::Equal => Some((n, written.offset)),
                // Only if the log stopped: those records were never durable.
                std::cmp::Ordering::Greater => None,
            })
            .collect();
        OwnLogView::new(self.dir.clone(), self.first_segment, readable)
    }

    /// Paths of every segment in this server's log directory, oldest first: earlier runs'
    /// included, deleted ones not, and the one new records go to even before a leader has
    /// created its file.
    pub fn segments(&self) -> Vec<String> {
        let state = self.state.lock();
        state
            .segments
            .keys()
            .map(|&n| segment_path(&self.dir, n))
            .collect()
    }

    /// The number of the segment new records go to.
    pub fn current_segment(&self) -> u64 {
        self.state.lock().tail.segment
    }

    /// This server's log directory, `logs/<server-id>`.
    pub fn server_dir(&self) -> String {
        self.dir.clone()
    }

    /// Counters since `open`.
    pub fn stats(&self) -> CommitLogStats {
        self.state.lock().stats
    }

    /// How long the fdatasyncs since `open` took (failed ones included).
    pub fn sync_latency(&self) -> HistogramSnapshot {
        self.sync_latency.snapshot()
    }
}

/// Checks and encodes one record (CRC included), outside any lock.
fn encode_record(
    tablet: TabletId,
    seq: u64,
    entry_count: u32,
    payload: &[u8],
) -> Result<Vec<u8>, CommitLogError> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(CommitLogError::RecordTooLarge {
            len: payload.len(),
            max: MAX_PAYLOAD_BYTES,
        });
    }
    check_fields(seq, entry_count).map_err(CommitLogError::InvalidRecord)?;
    Ok(record::encode(tablet, seq, entry_count, payload))
}

/// Syncs `segment` and cuts off its zeros, for good (see the module doc).
fn finish_segment(segment: &mut OpenSegment, latency: &Histogram) -> Result<(), CommitLogError> {
    timed(latency, || segment.file.finish()).map_err(CommitLogError::io(&segment.path))?;
    segment.unsynced = false;
    Ok(())
}

/// Syncs `file`, recording how long it took.
fn timed_sync(file: &mut dyn AppendFile, latency: &Histogram) -> std::io::Result<()> {
    timed(latency, || file.sync())
}

/// Runs a sync, recording how long it took.
fn timed(latency: &Histogram, sync: impl FnOnce() -> std::io::Result<()>) -> std::io::Result<()> {
    let started = Instant::now();
    let synced = sync();
    latency.observe(started.elapsed());
    synced
}

impl Drop for CommitLog {
    fn drop(&mut self) {
        if self.state.get_mut().group.is_stopped() {
            return;
        }
        if let Err(e) = self.sync_now() {
            tracing::error!(server_id = %self.server, error = %e, "commit log sync on close failed");
            return;
        }
        let state = self.state.get_mut();
        if let Some(segment) = state.file.as_mut()
            && let Err(e) = finish_segment(segment, &self.sync_latency)
        {
            tracing::error!(server_id = %self.server, error = %e, "commit log close failed");
        }
    }
}
