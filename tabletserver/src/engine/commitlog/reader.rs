//! Recovery: replaying one tablet's records from commit-log directories (its own server's, or
//! a dead server's).
//!
//! Order: directories in the order given; within one, segments by number; within a segment,
//! file order. A tablet's records come out in increasing sequence order within one directory.
//!
//! Which damage is tolerated: a torn tail or a zero tail (see `scan`) of a segment that may
//! legitimately have been cut short by a crash — the newest segment of a directory, or one
//! followed by a segment marked `first_after_open` (the server crashed and was restarted; its
//! next run started that segment), or one followed by a segment whose header is itself
//! unreadable (a crash while creating it). A segment the writer rolled away from was synced in full first, so anything
//! bad in it is `CommitLogError::Corrupt`, as is corruption (damage followed by valid data)
//! anywhere, and a header naming another server or segment number than its path.
//!
//! The running server's own directory: its newest segment is being appended to while a tablet
//! opens (a split's children, a reload), so a plain read could meet zeros where a batch is not
//! written yet and records written since behind them: corruption, to the scan. The caller
//! passes what the log knows (`CommitLog::replay_view`, an `OwnLogView`): which of this run's
//! segments hold records of the tablet at all, and how much of each is written. Only those
//! bytes are read.

use std::collections::HashMap;

use bytes::Bytes;
use tabula_common::{StorageRoot, TabletId};

use super::error::{CommitLogError, ReplayError};
use super::header::{MAX_HEADER_LEN, decode_header};
use super::naming::{dir_server_name, parse_segment_file_name, segment_path};
use super::scan::{DamageKind, ScannedRecord, scan_segment};

/// One record handed to the replay function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayedRecord {
    /// The tablet (always the one asked for).
    pub tablet: TabletId,
    /// First sequence number of the row mutation.
    pub seq: u64,
    /// How many consecutive sequence numbers it used.
    pub entry_count: u32,
    /// The encoded row mutation.
    pub payload: Bytes,
    /// The segment it was read from.
    pub segment_path: String,
    /// Its offset in the segment.
    pub offset: u64,
}

/// What a replay read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReplayStats {
    /// Segments read.
    pub segments: u64,
    /// Bytes of segments read.
    pub bytes_read: u64,
    /// Records decoded, of every tablet.
    pub records_read: u64,
    /// Records handed to the replay function.
    pub records_replayed: u64,
    /// Segments whose torn tail was skipped.
    pub torn_tails: u64,
    /// Segments that ended in zeros where they may (a live segment's, or a crashed run's newest).
    pub zero_tails: u64,
    /// Segments of the running log not read: they hold nothing of the tablet.
    pub skipped: u64,
}

/// What a replay may read from the running server's own log directory (built by
/// `CommitLog::replay_view` for one tablet and redo point).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnLogView {
    dir: String,
    /// The first segment of the running log; older ones are earlier runs', read whole.
    first_of_run: u64,
    /// The running log's segments with records to replay, and how many of their bytes are
    /// written (`u64::MAX`: all, the segment is finished).
    readable: HashMap<u64, u64>,
}

/// How much of one segment a replay reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Extent {
    All,
    Prefix(u64),
    Nothing,
}

impl OwnLogView {
    pub(crate) fn new(dir: String, first_of_run: u64, readable: HashMap<u64, u64>) -> Self {
        OwnLogView {
            dir,
            first_of_run,
            readable,
        }
    }

    fn extent(&self, number: u64) -> Extent {
        if number < self.first_of_run {
            return Extent::All;
        }
        match self.readable.get(&number) {
            None => Extent::Nothing,
            Some(&u64::MAX) => Extent::All,
            Some(&len) => Extent::Prefix(len),
        }
    }
}

/// Calls `f` for every record of `tablet` with `seq > after_seq` (the tablet's redo point) in
/// the segments of `log_dirs` (`logs/<server-id>` paths), in log order. A mutation's sequence
/// range never straddles a redo point, so its first number decides. Stops at the first error
/// from `f` (`ReplayError::Apply`) or from the log (`ReplayError::Log`). `own` is the running
/// log's view of its directory, if this server's log is among `log_dirs` (see the module doc).
pub fn replay<E>(
    storage: &dyn StorageRoot,
    log_dirs: &[String],
    tablet: TabletId,
    after_seq: u64,
    own: Option<&OwnLogView>,
    mut f: impl FnMut(ReplayedRecord) -> Result<(), E>,
) -> Result<ReplayStats, ReplayError<E>> {
    let mut stats = ReplayStats::default();
    for dir in log_dirs {
        let own = own.filter(|v| v.dir == *dir);
        let numbers = list_segments(storage, dir)?;
        for (i, &number) in numbers.iter().enumerate() {
            let extent = own.map_or(Extent::All, |v| v.extent(number));
            if extent == Extent::Nothing {
                stats.skipped += 1;
                continue;
            }
            let segment = Segment {
                dir,
                number,
                path: segment_path(dir, number),
                next: numbers.get(i + 1).map(|&n| segment_path(dir, n)),
            };
            let data = match extent {
                Extent::Prefix(len) => {
                    storage.read_range(&segment.path, 0, usize::try_from(len).unwrap_or(usize::MAX))
                }
                _ => storage.read_all(&segment.path),
            }
            .map_err(CommitLogError::io(&segment.path))?;
            stats.segments += 1;
            stats.bytes_read += data.len() as u64;
            let wanted = |r: &ScannedRecord<'_>| r.tablet == tablet && r.seq > after_seq;
            segment.replay(storage, &data, wanted, &mut stats, &mut f)?;
        }
    }
    Ok(stats)
}

/// The segment numbers in `dir`, ascending. Other files are skipped.
fn list_segments(storage: &dyn StorageRoot, dir: &str) -> Result<Vec<u64>, CommitLogError> {
    let names = storage.list(dir).map_err(CommitLogError::io(dir))?;
    let mut numbers = Vec::with_capacity(names.len());
    for name in &names {
        match parse_segment_file_name(name) {
            Some(n) => numbers.push(n),
            None => tracing::warn!(dir = %dir, name = %name, "skipping a non-segment file"),
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

/// A segment being replayed, and the one after it in its directory.
struct Segment<'a> {
    dir: &'a str,
    number: u64,
    path: String,
    next: Option<String>,
}

impl Segment<'_> {
    fn corrupt(&self, offset: u64, reason: String) -> CommitLogError {
        CommitLogError::Corrupt {
            path: self.path.clone(),
            offset,
            reason,
        }
    }

    fn replay<E>(
        &self,
        storage: &dyn StorageRoot,
        data: &Bytes,
        wanted: impl Fn(&ScannedRecord<'_>) -> bool,
        stats: &mut ReplayStats,
        f: &mut impl FnMut(ReplayedRecord) -> Result<(), E>,
    ) -> Result<(), ReplayError<E>> {
        let scanner = scan_segment(data);
        if let Some(h) = scanner.header() {
            let server = dir_server_name(self.dir);
            if h.server.0 != server || h.segment != self.number {
                let reason = format!(
                    "header names server {:?} segment {}, the path says server {server:?} \
                     segment {}",
                    h.server.0, h.segment, self.number
                );
                return Err(self.corrupt(0, reason).into());
            }
        }
        for item in scanner {
            let record = match item {
                Ok(record) => record,
                Err(damage) => {
                    let ends = damage.kind != DamageKind::Corrupt && self.may_tear(storage)?;
                    if !ends {
                        return Err(self.corrupt(damage.offset, damage.reason).into());
                    }
                    if damage.kind == DamageKind::ZeroTail {
                        stats.zero_tails += 1;
                    } else {
                        stats.torn_tails += 1;
                        tracing::warn!(
                            path = %self.path,
                            offset = damage.offset,
                            reason = %damage.reason,
                            "ignoring the torn tail of a commit log segment"
                        );
                    }
                    break;
                }
            };
            stats.records_read += 1;
            if !wanted(&record) {
                continue;
            }
            stats.records_replayed += 1;
            f(ReplayedRecord {
                tablet: record.tablet,
                seq: record.seq,
                entry_count: record.entry_count,
                payload: data.slice_ref(record.payload),
                segment_path: self.path.clone(),
                offset: record.offset,
            })
            .map_err(ReplayError::Apply)?;
        }
        Ok(())
    }

    /// Whether this segment may end in a torn tail (see the module doc).
    fn may_tear(&self, storage: &dyn StorageRoot) -> Result<bool, CommitLogError> {
        let Some(next) = &self.next else {
            return Ok(true);
        };
        let file = storage.open_read(next).map_err(CommitLogError::io(next))?;
        let len = usize::try_from(file.size())
            .unwrap_or(usize::MAX)
            .min(MAX_HEADER_LEN);
        let prefix = file.read_at(0, len).map_err(CommitLogError::io(next))?;
        Ok(decode_header(&prefix).map_or(true, |(h, _)| h.first_after_open))
    }
}
