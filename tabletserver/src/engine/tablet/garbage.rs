//! Reads that resolve away much garbage ask for a major compaction: the I/O edge of
//! `compaction::garbage`, which says when and why.

use std::sync::atomic::Ordering;

use tracing::debug;

use crate::engine::compaction::{WrittenSince, worth_major};
use crate::engine::key::{Entry, Seq};
use crate::engine::read::{CompactionRules, garbage_in_row};

use super::core::{Inner, State};

impl Inner {
    /// Called with each row a read resolves (its entries sorted forward). Samples one row in
    /// `read_trigger.sample_every_rows`, counts the entries a major compaction would drop, and
    /// when a window of samples says so, freezes the memtable and asks the background thread
    /// for a major compaction (which flushes first). Never blocks on I/O.
    pub(crate) fn sample_read(&self, entries: &[Entry]) {
        let opts = &self.engine.opts.read_trigger;
        // A closed tablet (split or unloaded) takes no more writes and is never compacted: a
        // scan still draining it must not ask.
        if entries.is_empty() || self.closed.load(Ordering::Acquire) {
            return;
        }
        if !self.garbage.should_sample(opts) {
            return;
        }
        let schema = self.schema.read().clone();
        let policy = |family: &[u8]| schema.compaction_policy(family);
        let rules = CompactionRules {
            major: true,
            // A major compaction after the flush it starts with has nothing outside it, so
            // every tombstone it reads goes.
            tombstone_gc_below: Seq::MAX,
            policy: &policy,
            now_micros: self.engine.clock.now().micros(),
        };
        let garbage = garbage_in_row(entries, &rules) as u64;
        let Some(window) = self.garbage.record(entries.len() as u64, garbage, opts) else {
            return;
        };
        let state = self.state.read().clone();
        let written = self.written_bytes(&state);
        let since = WrittenSince {
            written_bytes: written.saturating_sub(self.written_at_major.load(Ordering::Relaxed)),
            sstable_bytes: state.sstables.iter().map(|s| s.size_bytes()).sum(),
        };
        if !worth_major(window, since, opts) {
            return;
        }
        // Counted as done now, so the windows that close before the compaction runs do not
        // ask again.
        self.written_at_major.store(written, Ordering::Relaxed);
        self.engine.stats.read_triggered();
        debug!(
            tablet = %self.id,
            sampled = window.entries,
            garbage = window.garbage,
            written = since.written_bytes,
            sstables = since.sstable_bytes,
            "reads resolve away much garbage: major compaction requested"
        );
        self.freeze(true);
        self.request_major_compaction();
    }

    /// Bytes this tablet has taken since it was opened (counting the SSTables it opened with
    /// as written): what its flushes wrote, and the memtables of `state` (its current state).
    pub(crate) fn written_bytes(&self, state: &State) -> u64 {
        let in_memory: u64 = std::iter::once(&state.active)
            .chain(state.frozen.iter())
            .map(|m| m.approximate_bytes() as u64)
            .sum();
        self.flushed_bytes.load(Ordering::Relaxed) + in_memory
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

    use bytes::Bytes;
    use tabula_common::TabletId;

    use crate::engine::compaction::ReadTrigger;
    use crate::engine::tablet::scratch::{scratch_tablet_with, wait_until};
    use crate::engine::{
        CellFilter, CompactionKind, EngineOptions, GcPolicy, Mutation, RowMutation, ScanOptions,
        Schema, Tablet,
    };

    const ROWS: usize = 200;

    /// A tablet of family `cf` keeping one version, sampling every row read, in windows of
    /// 64 entries (the other thresholds are the defaults).
    fn tablet() -> (tempfile::TempDir, Tablet) {
        let mut schema = Schema::with_families(["cf"]);
        schema
            .families
            .insert(Bytes::from_static(b"cf"), GcPolicy::MaxVersions(1));
        let opts = EngineOptions {
            read_trigger: ReadTrigger {
                sample_every_rows: 1,
                window_entries: 64,
                ..ReadTrigger::default()
            },
            ..EngineOptions::for_tests()
        };
        scratch_tablet_with(schema, opts)
    }

    fn key(i: usize) -> String {
        format!("r{i:03}")
    }

    /// Writes `value` at `timestamp` into every row in `rows`.
    fn write(t: &Tablet, rows: impl Iterator<Item = usize>, timestamp: i64, value: &str) {
        for i in rows {
            t.apply(RowMutation {
                row: Bytes::from(key(i)),
                mutations: vec![Mutation::SetCell {
                    family: Bytes::from_static(b"cf"),
                    qualifier: Bytes::from_static(b"q"),
                    timestamp,
                    value: Bytes::copy_from_slice(value.as_bytes()),
                }],
            })
            .unwrap();
        }
    }

    /// Every row's key and value, by a full scan.
    fn scan(t: &Tablet) -> Vec<(String, String)> {
        t.scan(ScanOptions::default())
            .unwrap()
            .map(|r| {
                let r = r.unwrap();
                let value = &r.cells[0].value;
                (
                    String::from_utf8(r.key.to_vec()).unwrap(),
                    String::from_utf8(value.to_vec()).unwrap(),
                )
            })
            .collect()
    }

    fn read_triggered(t: &Tablet) -> u64 {
        t.inner.engine.stats.read_triggered_compactions()
    }

    fn majors(t: &Tablet) -> u64 {
        t.inner.engine.stats.compactions(CompactionKind::Major)
    }

    fn sstables(t: &Tablet) -> usize {
        t.inner.state.read().sstables.len()
    }

    /// Every row in one SSTable, then every even row overwritten in a second one: a third of
    /// the entries a scan reads are older versions past the family's one.
    fn overwritten() -> (tempfile::TempDir, Tablet, Vec<(String, String)>) {
        let (dir, t) = tablet();
        write(&t, 0..ROWS, 1, "old");
        t.flush().unwrap();
        write(&t, (0..ROWS).step_by(2), 2, "new");
        t.flush().unwrap();
        let want: Vec<(String, String)> = (0..ROWS)
            .map(|i| (key(i), if i % 2 == 0 { "new" } else { "old" }.to_owned()))
            .collect();
        (dir, t, want)
    }

    #[test]
    fn scans_through_overwritten_rows_ask_for_one_major_compaction() {
        let (_dir, t, want) = overwritten();
        assert_eq!(sstables(&t), 2);
        assert_eq!(scan(&t), want);
        assert_eq!(read_triggered(&t), 1);
        wait_until("the requested major compaction ran", || majors(&t) == 1);
        assert_eq!(sstables(&t), 1);
        assert_eq!(scan(&t), want, "the compaction changed what a scan sees");
        for _ in 0..5 {
            assert_eq!(scan(&t), want);
        }
        assert_eq!(
            read_triggered(&t),
            1,
            "no new writes since the compaction, so no new request"
        );
    }

    #[test]
    fn point_reads_through_overwritten_rows_ask_too() {
        let (_dir, t, want) = overwritten();
        let latest = CellFilter {
            max_versions: Some(1),
            ..CellFilter::default()
        };
        for (k, v) in &want {
            let row = t.read_row(k.as_bytes(), &latest).unwrap().unwrap();
            assert_eq!(row.cells[0].value, v.as_bytes());
        }
        assert_eq!(read_triggered(&t), 1);
        wait_until("the requested major compaction ran", || majors(&t) == 1);
        assert_eq!(sstables(&t), 1);
    }

    #[test]
    fn a_scan_draining_a_split_parent_asks_for_nothing() {
        let (_dir, t, want) = overwritten();
        let rows = t.scan(ScanOptions::default()).unwrap();
        t.split(Bytes::from(key(ROWS / 2)), TabletId(2), TabletId(3))
            .unwrap();
        assert_eq!(rows.count(), want.len());
        assert_eq!(read_triggered(&t), 0);
        assert_eq!(sstables(&t), 2);
    }

    #[test]
    fn reads_of_single_versions_ask_for_nothing() {
        let (_dir, t) = tablet();
        write(&t, 0..ROWS, 1, "a");
        t.flush().unwrap();
        write(&t, ROWS..2 * ROWS, 1, "b");
        for _ in 0..3 {
            assert_eq!(scan(&t).len(), 2 * ROWS);
        }
        assert_eq!(read_triggered(&t), 0);
        assert_eq!(majors(&t), 0);
        assert_eq!(sstables(&t), 1);
    }

    #[test]
    fn asking_again_waits_for_new_writes_worth_half_the_tablet() {
        let (_dir, t, _) = overwritten();
        scan(&t);
        wait_until("the requested major compaction ran", || majors(&t) == 1);
        // A tenth of the rows overwritten: garbage, but little written since the compaction.
        write(&t, 0..ROWS / 10, 3, "third");
        t.flush().unwrap();
        for _ in 0..5 {
            scan(&t);
        }
        assert_eq!(read_triggered(&t), 1);
        // Every row overwritten: new writes worth the tablet.
        write(&t, 0..ROWS, 4, "fourth");
        t.flush().unwrap();
        let rows = scan(&t);
        assert!(rows.iter().all(|(_, v)| v == "fourth"));
        assert_eq!(read_triggered(&t), 2);
        wait_until("the second major compaction ran", || majors(&t) == 2);
    }
}
