//! Counters the engine keeps for the tablet server's metrics: compactions by kind and the time
//! they took (`EngineStats`). The latency histogram the commit log uses for its fdatasyncs and
//! the server for its requests is `tabula_common::metrics::Histogram`, re-exported here.
//!
//! Everything here is atomics: bumping a counter never takes a lock, and a reader gets a
//! snapshot that may be a few increments behind another thread's (good enough for metrics,
//! never used for decisions).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use tabula_common::metrics::{Histogram, HistogramSnapshot, LATENCY_BUCKETS_SECONDS};

/// Which compaction ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompactionKind {
    /// A frozen memtable to a new SSTable.
    Minor,
    /// A frozen memtable and a few small SSTables to one SSTable.
    Merging,
    /// Every SSTable to one.
    Major,
}

impl CompactionKind {
    /// Every kind, in a fixed order.
    pub const ALL: [CompactionKind; 3] = [
        CompactionKind::Minor,
        CompactionKind::Merging,
        CompactionKind::Major,
    ];

    /// The kind's name in metrics and logs: `minor`, `merging`, `major`.
    pub fn name(self) -> &'static str {
        match self {
            CompactionKind::Minor => "minor",
            CompactionKind::Merging => "merging",
            CompactionKind::Major => "major",
        }
    }

    fn index(self) -> usize {
        match self {
            CompactionKind::Minor => 0,
            CompactionKind::Merging => 1,
            CompactionKind::Major => 2,
        }
    }
}

/// One engine's counters since it was created; read them with the accessors.
#[derive(Debug, Default)]
pub struct EngineStats {
    compactions: [AtomicU64; 3],
    compaction_nanos: AtomicU64,
    read_triggered: AtomicU64,
}

impl EngineStats {
    /// Counts one completed compaction of `kind` that took `took`.
    pub(crate) fn compaction_done(&self, kind: CompactionKind, took: Duration) {
        if let Some(c) = self.compactions.get(kind.index()) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.compaction_nanos
            .fetch_add(duration_nanos(took), Ordering::Relaxed);
    }

    /// Completed compactions of `kind` (flushes included, as minor or merging compactions).
    pub fn compactions(&self, kind: CompactionKind) -> u64 {
        self.compactions
            .get(kind.index())
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Counts one major compaction that reads asked for (see `compaction::garbage`).
    pub(crate) fn read_triggered(&self) {
        self.read_triggered.fetch_add(1, Ordering::Relaxed);
    }

    /// Major compactions reads asked for because they resolved away much garbage (each also
    /// counts as a major compaction once it ran).
    pub fn read_triggered_compactions(&self) -> u64 {
        self.read_triggered.load(Ordering::Relaxed)
    }

    /// Time spent in completed compactions of every kind.
    pub fn compaction_time(&self) -> Duration {
        Duration::from_nanos(self.compaction_nanos.load(Ordering::Relaxed))
    }
}

fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compactions_are_counted_by_kind_with_their_time() {
        let stats = EngineStats::default();
        stats.compaction_done(CompactionKind::Minor, Duration::from_millis(3));
        stats.compaction_done(CompactionKind::Minor, Duration::from_millis(4));
        stats.compaction_done(CompactionKind::Major, Duration::from_millis(5));
        assert_eq!(stats.compactions(CompactionKind::Minor), 2);
        assert_eq!(stats.compactions(CompactionKind::Merging), 0);
        assert_eq!(stats.compactions(CompactionKind::Major), 1);
        assert_eq!(stats.compaction_time(), Duration::from_millis(12));
    }
}
