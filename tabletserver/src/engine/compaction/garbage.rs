//! Read-triggered major compactions: reads sample the rows they resolve and count the entries a
//! major compaction would drop (older versions past the family's GC policy, hidden cells,
//! tombstones). When a window of samples is mostly such garbage, the tablet asks for a major
//! compaction instead of making every later read wade through it.
//!
//! Why: overwrites leave a row's old version in an older SSTable and its new one in a newer
//! SSTable or the memtable. Within one source, reads skip versions they do not need
//! (`versions`); across sources they read, merge and resolve away both. The file-count
//! trigger of the picker never fires for a tablet of two or three large files, so without this
//! a table overwritten once stays a third slower to scan until someone runs `compact`. Pebble's
//! read-triggered compactions and LevelDB's seek compactions answer the same problem.
//!
//! What stops a compaction storm under steady overwrites: a tablet asks again only after it has
//! taken new writes worth `rewrite_percent` of its SSTables (by default, half of what its last
//! major compaction left) since its last major compaction, so this trigger rewrites each written
//! byte at most a few times.
//!
//! The decision (`worth_major`) is pure; `GarbageSampler` is the atomics the read path bumps.

use std::sync::atomic::{AtomicU64, Ordering};

/// When reads ask for a major compaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadTrigger {
    /// Sample one row (a scanned row or a point read) in this many; 0 turns the trigger off.
    pub sample_every_rows: u64,
    /// A window closes after its samples hold this many entries.
    pub window_entries: u64,
    /// Ask when at least this share (percent) of a window's entries is garbage.
    pub garbage_percent: u64,
    /// ... and the tablet took writes worth at least this share (percent) of its SSTable bytes
    /// since its last major compaction. The SSTables include those writes once flushed, so 33
    /// means new writes worth half of what the last major compaction left.
    pub rewrite_percent: u64,
}

impl Default for ReadTrigger {
    fn default() -> Self {
        ReadTrigger {
            sample_every_rows: 16,
            window_entries: 1024,
            garbage_percent: 20,
            rewrite_percent: 33,
        }
    }
}

impl ReadTrigger {
    /// A trigger that never fires.
    pub fn off() -> Self {
        ReadTrigger {
            sample_every_rows: 0,
            ..ReadTrigger::default()
        }
    }
}

/// A closed window of samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Entries the sampled rows held.
    pub entries: u64,
    /// Of those, entries a major compaction would drop.
    pub garbage: u64,
}

/// The tablet's shape when a window closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrittenSince {
    /// Bytes written to the tablet since its last major compaction (flushed SSTable bytes, and
    /// memtable bytes not flushed yet).
    pub written_bytes: u64,
    /// Bytes of the tablet's SSTables now.
    pub sstable_bytes: u64,
}

/// Whether a closed window of samples is worth a major compaction now.
pub fn worth_major(window: Window, since: WrittenSince, opts: &ReadTrigger) -> bool {
    let garbage =
        window.garbage.saturating_mul(100) >= window.entries.saturating_mul(opts.garbage_percent);
    let rewritten = since.written_bytes.saturating_mul(100)
        >= since.sstable_bytes.saturating_mul(opts.rewrite_percent);
    opts.sample_every_rows > 0 && window.entries > 0 && garbage && rewritten
}

/// What sampled reads saw since the last closed window. Shared by every reader of a tablet:
/// counts may be a few increments off under races, which only moves a window's edge.
#[derive(Debug, Default)]
pub struct GarbageSampler {
    rows: AtomicU64,
    entries: AtomicU64,
    garbage: AtomicU64,
}

impl GarbageSampler {
    /// Counts one row read; whether to sample it.
    pub fn should_sample(&self, opts: &ReadTrigger) -> bool {
        opts.sample_every_rows > 0
            && self
                .rows
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(opts.sample_every_rows)
    }

    /// Adds one sampled row; the window, if this sample closed it (and a new one starts).
    pub fn record(&self, entries: u64, garbage: u64, opts: &ReadTrigger) -> Option<Window> {
        self.garbage.fetch_add(garbage, Ordering::Relaxed);
        let before = self.entries.fetch_add(entries, Ordering::Relaxed);
        if before < opts.window_entries && before + entries >= opts.window_entries {
            // Only the sample that crossed the edge closes the window.
            let entries = self.entries.swap(0, Ordering::Relaxed);
            let garbage = self.garbage.swap(0, Ordering::Relaxed);
            return Some(Window { entries, garbage });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(entries: u64, garbage: u64) -> Window {
        Window { entries, garbage }
    }

    fn since(written_bytes: u64, sstable_bytes: u64) -> WrittenSince {
        WrittenSince {
            written_bytes,
            sstable_bytes,
        }
    }

    #[test]
    fn asks_when_the_window_is_mostly_garbage_and_enough_was_written() {
        let opts = ReadTrigger::default();
        assert!(worth_major(window(1000, 400), since(60, 100), &opts));
        assert!(worth_major(window(1000, 200), since(33, 100), &opts));
        assert!(
            !worth_major(window(1000, 199), since(60, 100), &opts),
            "under 20% garbage"
        );
        assert!(
            !worth_major(window(1000, 400), since(32, 100), &opts),
            "too little written since the last major compaction"
        );
        assert!(
            worth_major(window(10, 10), since(1, 0), &opts),
            "everything still in memtables"
        );
        assert!(!worth_major(window(0, 0), since(60, 100), &opts));
        assert!(!worth_major(
            window(1000, 1000),
            since(100, 100),
            &ReadTrigger::off()
        ));
    }

    #[test]
    fn samples_one_row_in_n_and_never_when_off() {
        let opts = ReadTrigger {
            sample_every_rows: 4,
            ..ReadTrigger::default()
        };
        let s = GarbageSampler::default();
        let picked: Vec<bool> = (0..9).map(|_| s.should_sample(&opts)).collect();
        assert_eq!(
            picked,
            [true, false, false, false, true, false, false, false, true]
        );
        let off = GarbageSampler::default();
        assert!((0..10).all(|_| !off.should_sample(&ReadTrigger::off())));
    }

    #[test]
    fn a_window_closes_once_at_its_edge_and_the_next_starts_empty() {
        let opts = ReadTrigger {
            window_entries: 10,
            ..ReadTrigger::default()
        };
        let s = GarbageSampler::default();
        assert_eq!(s.record(4, 1, &opts), None);
        assert_eq!(s.record(4, 4, &opts), None);
        assert_eq!(s.record(3, 0, &opts), Some(window(11, 5)));
        assert_eq!(s.record(9, 9, &opts), None);
        assert_eq!(s.record(1, 0, &opts), Some(window(10, 9)));
    }
}
