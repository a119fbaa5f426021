//! Stopping at the versions a read needs, inside one source.
//!
//! A read that wants the newest `n` cells of each column (`CellFilter::max_versions`, the
//! `latest(1)` every benchmark and most applications use) used to take every version of every
//! column out of each memtable and SSTable and let `resolve_row` drop all but `n`. A hot row
//! written over and over holds thousands of versions until a compaction removes them (YCSB's
//! Zipfian updates give the hottest row 9% of all writes), so its every read walked and cloned
//! them all. HBase's scanner seeks to the next column for the same reason.
//!
//! [`ColumnWalk`] judges one source's entries in forward key order and says when the rest of a
//! column can be skipped. A column is complete in a source once it has handed out `n` distinct
//! timestamps of visible puts (within the time range) and nothing can hide them:
//!
//! - no tombstone of the row was met in this source (tombstones sort before the cells they
//!   cover, so by a column's cells every tombstone of this source that covers them has been
//!   met; any tombstone at all turns the pushdown off for the rest of the row, which is rare and
//!   keeps the rule simple);
//! - every kept put's sequence number is above `others_max_seq`, the largest number any other
//!   source could hide it with: a tombstone hides only entries with a smaller number, so none
//!   elsewhere can hide them. For a source not read yet that is its largest visible number; a
//!   point read, which reads its sources one after another, uses the largest visible tombstone
//!   of a source already read (a walk keeps every tombstone). The active memtable is newer than
//!   everything else, so this holds there, where a hot row's versions pile up.
//!
//! The union over sources of each source's newest `n` distinct timestamps holds the newest `n`
//! of the merged column, so what `resolve_row` returns is unchanged (a property test checks it
//! against reading every entry). Forward reads only: a reverse scan meets tombstones after the
//! cells they cover.

use bytes::Bytes;

use super::key::{CellKey, Seq, Value};
use super::read::in_time_range;

/// What a forward read needs from each column, pushed down into one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionLimit {
    /// The newest cells per column the read returns (after the time range); at least 1.
    pub versions: usize,
    /// Only cells with `start <= timestamp < end` count.
    pub time_range: Option<(i64, i64)>,
    /// Entries above this sequence number are invisible to the read.
    pub snapshot: Seq,
    /// The largest sequence number with which any other source the read merges could hide an
    /// entry (see the module doc).
    pub others_max_seq: Seq,
}

impl VersionLimit {
    /// The limit of a read wanting `max_versions` per column (`None`: every version, so no
    /// limit), in a source whose floor is `others_max_seq`.
    pub fn new(
        max_versions: Option<usize>,
        time_range: Option<(i64, i64)>,
        snapshot: Seq,
        others_max_seq: Seq,
    ) -> Option<VersionLimit> {
        let versions = max_versions.filter(|n| *n > 0)?;
        Some(VersionLimit {
            versions,
            time_range,
            snapshot,
            others_max_seq,
        })
    }

    /// The limits of a read of `sources` (each source's largest sequence number) at
    /// `snapshot`, one for each source in order; `None` for every source when the read wants
    /// every version.
    pub fn per_source(
        max_versions: Option<usize>,
        time_range: Option<(i64, i64)>,
        snapshot: Seq,
        sources_max_seq: &[Seq],
    ) -> Vec<Option<VersionLimit>> {
        let visible: Vec<Seq> = sources_max_seq.iter().map(|s| (*s).min(snapshot)).collect();
        (0..visible.len())
            .map(|i| VersionLimit::new(max_versions, time_range, snapshot, others_max(&visible, i)))
            .collect()
    }
}

/// The largest of `floors` other than source `i`'s: that source's `others_max_seq`.
pub fn others_max(floors: &[Seq], i: usize) -> Seq {
    floors
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != i)
        .map(|(_, s)| *s)
        .max()
        .unwrap_or(0)
}

/// What to do with the entry just judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Hand it to the merge.
    Keep,
    /// Leave it out: invisible at the snapshot, or an older version of a complete column.
    Skip,
}

/// One source's walk, entry by entry in forward key order (see the module doc).
#[derive(Debug)]
pub struct ColumnWalk {
    limit: VersionLimit,
    /// The row, family and qualifier of the column being walked.
    column: Option<(Bytes, Bytes, Bytes)>,
    /// A tombstone of the current row was met: nothing more is skipped in it.
    row_has_tombstone: bool,
    /// Distinct timestamps of visible puts kept in the current column.
    kept: usize,
    last_ts: Option<i64>,
    /// Smallest sequence number among the kept puts.
    min_kept_seq: Seq,
    /// Entries skipped since the current column became complete.
    skipped: usize,
}

impl ColumnWalk {
    pub fn new(limit: VersionLimit) -> ColumnWalk {
        ColumnWalk {
            limit,
            column: None,
            row_has_tombstone: false,
            kept: 0,
            last_ts: None,
            min_kept_seq: Seq::MAX,
            skipped: 0,
        }
    }

    /// Entries skipped one by one since the current column became complete (a source seeks
    /// past the column once this grows: see [`column_end`]).
    pub fn skipped_in_column(&self) -> usize {
        self.skipped
    }

    /// While the current column is complete, the last key it can hold (see [`column_end`]):
    /// everything up to it can be skipped without being judged.
    pub fn seek_target(&self) -> Option<CellKey> {
        let (row, family, qualifier) = self.column.as_ref()?;
        self.complete().then(|| CellKey {
            row: row.clone(),
            family: family.clone(),
            qualifier: Some(qualifier.clone()),
            timestamp: i64::MIN,
            seq: 0,
        })
    }

    /// Judges the next entry of the source.
    pub fn judge(&mut self, key: &CellKey, value: &Value) -> Verdict {
        if key.seq > self.limit.snapshot {
            return Verdict::Skip;
        }
        let same_row = self.column.as_ref().is_some_and(|(r, _, _)| *r == key.row);
        if !same_row {
            self.row_has_tombstone = false;
        }
        let Some(qualifier) = &key.qualifier else {
            // A row or family tombstone.
            self.row_has_tombstone = true;
            self.column = Some((key.row.clone(), key.family.clone(), Bytes::new()));
            self.reset_column();
            return Verdict::Keep;
        };
        let same_column = same_row
            && self
                .column
                .as_ref()
                .is_some_and(|(_, f, q)| *f == key.family && q == qualifier);
        if !same_column {
            self.column = Some((key.row.clone(), key.family.clone(), qualifier.clone()));
            self.reset_column();
        }
        if self.complete() {
            self.skipped += 1;
            return Verdict::Skip;
        }
        match value {
            Value::Put(_) => {
                if in_time_range(self.limit.time_range, key.timestamp)
                    && self.last_ts != Some(key.timestamp)
                {
                    self.kept += 1;
                    self.last_ts = Some(key.timestamp);
                    self.min_kept_seq = self.min_kept_seq.min(key.seq);
                }
            }
            _ => self.row_has_tombstone = true,
        }
        Verdict::Keep
    }

    fn reset_column(&mut self) {
        self.kept = 0;
        self.last_ts = None;
        self.min_kept_seq = Seq::MAX;
        self.skipped = 0;
    }

    fn complete(&self) -> bool {
        self.kept >= self.limit.versions
            && !self.row_has_tombstone
            && self.min_kept_seq > self.limit.others_max_seq
    }
}

/// The last key a column can hold (oldest timestamp, smallest sequence number): a source seeks
/// past it to skip the rest of a complete column at once.
pub fn column_end(key: &CellKey) -> CellKey {
    CellKey {
        row: key.row.clone(),
        family: key.family.clone(),
        qualifier: key.qualifier.clone(),
        timestamp: i64::MIN,
        seq: 0,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::engine::key::Entry;
    use crate::engine::read::{CellFilter, resolve_row};

    /// A put in family `cf`.
    fn put(row: &str, q: &str, ts: i64, seq: Seq) -> Entry {
        crate::engine::sstable::testutil::put(row, "cf", q, ts, seq, "v")
    }

    /// Column `r:a` at timestamps 10, 9 and 8, numbered 9, 8 and 7.
    fn three_versions() -> Vec<Entry> {
        vec![
            put("r", "a", 10, 9),
            put("r", "a", 9, 8),
            put("r", "a", 8, 7),
        ]
    }

    fn limit(versions: usize, others_max_seq: Seq) -> VersionLimit {
        VersionLimit {
            versions,
            time_range: None,
            snapshot: Seq::MAX,
            others_max_seq,
        }
    }

    fn kept(walk: &mut ColumnWalk, entries: &[Entry]) -> Vec<Seq> {
        entries
            .iter()
            .filter(|e| walk.judge(&e.key, &e.value) == Verdict::Keep)
            .map(|e| e.key.seq)
            .collect()
    }

    #[test]
    fn a_hot_column_stops_at_the_versions_asked_for() {
        // Column a: 5 versions, newest first; then column b: 2 versions; then the next row.
        let mut entries: Vec<Entry> = (0..5)
            .map(|i| put("r", "a", 100 - i, 50 - i as Seq))
            .collect();
        entries.push(put("r", "b", 9, 30));
        entries.push(put("r", "b", 8, 29));
        entries.push(put("s", "a", 7, 20));
        let mut walk = ColumnWalk::new(limit(1, 0));
        assert_eq!(kept(&mut walk, &entries), vec![50, 30, 20]);
        let mut walk = ColumnWalk::new(limit(2, 0));
        assert_eq!(kept(&mut walk, &entries), vec![50, 49, 30, 29, 20]);
    }

    #[test]
    fn a_skipped_run_is_counted_for_the_seek() {
        let entries: Vec<Entry> = (0..5)
            .map(|i| put("r", "a", 100 - i, 50 - i as Seq))
            .collect();
        let mut walk = ColumnWalk::new(limit(1, 0));
        kept(&mut walk, &entries);
        assert_eq!(walk.skipped_in_column(), 4);
        walk.judge(&put("r", "b", 1, 1).key, &put("r", "b", 1, 1).value);
        assert_eq!(walk.skipped_in_column(), 0);
        assert!(column_end(&entries[0].key) > entries[4].key);
        assert!(column_end(&entries[0].key) < put("r", "b", i64::MAX, Seq::MAX).key);
    }

    #[test]
    fn a_complete_column_names_where_to_seek() {
        let mut walk = ColumnWalk::new(limit(1, 0));
        let first = put("r", "a", 10, 9);
        assert_eq!(walk.seek_target(), None);
        walk.judge(&first.key, &first.value);
        assert_eq!(walk.seek_target(), Some(column_end(&first.key)));
        let next = put("r", "b", 10, 8);
        walk.judge(&next.key, &next.value);
        assert_eq!(walk.seek_target(), Some(column_end(&next.key)));
        let mut guarded = ColumnWalk::new(limit(1, 9));
        guarded.judge(&first.key, &first.value);
        assert_eq!(guarded.seek_target(), None);
    }

    #[test]
    fn an_older_write_at_the_same_timestamp_is_not_a_version() {
        let entries = vec![
            put("r", "a", 10, 9),
            put("r", "a", 10, 8),
            put("r", "a", 9, 7),
        ];
        let mut walk = ColumnWalk::new(limit(2, 0));
        assert_eq!(kept(&mut walk, &entries), vec![9, 8, 7]);
    }

    #[test]
    fn nothing_is_skipped_that_another_source_could_hide() {
        let entries = vec![put("r", "a", 10, 9), put("r", "a", 9, 8)];
        // Another source holds number 9: a tombstone there could hide the newest version.
        let mut walk = ColumnWalk::new(limit(1, 9));
        assert_eq!(kept(&mut walk, &entries), vec![9, 8]);
        let mut walk = ColumnWalk::new(limit(1, 8));
        assert_eq!(kept(&mut walk, &entries), vec![9]);
    }

    #[test]
    fn a_tombstone_turns_the_row_off_and_the_next_row_on() {
        let mut tomb = put("r", "a", i64::MAX, 20);
        tomb.value = Value::DeleteColumn { start: 10, end: 11 };
        let entries = vec![
            tomb,
            put("r", "a", 10, 9),
            put("r", "a", 9, 8),
            put("r", "b", 5, 7),
            put("r", "b", 4, 6),
            put("s", "a", 3, 5),
            put("s", "a", 2, 4),
        ];
        let mut walk = ColumnWalk::new(limit(1, 0));
        assert_eq!(kept(&mut walk, &entries), vec![20, 9, 8, 7, 6, 5]);
    }

    #[test]
    fn invisible_entries_are_left_out_and_do_not_count() {
        let entries = three_versions();
        let mut walk = ColumnWalk::new(VersionLimit {
            snapshot: 8,
            ..limit(1, 0)
        });
        assert_eq!(kept(&mut walk, &entries), vec![8]);
    }

    #[test]
    fn the_time_range_picks_what_counts() {
        let entries = three_versions();
        let mut walk = ColumnWalk::new(VersionLimit {
            time_range: Some((0, 10)),
            ..limit(1, 0)
        });
        assert_eq!(kept(&mut walk, &entries), vec![9, 8]);
    }

    #[test]
    fn every_version_wanted_means_no_limit() {
        let none = VersionLimit::per_source(None, None, 10, &[5, 9]);
        assert_eq!(none, vec![None, None]);
        let zero = VersionLimit::per_source(Some(0), None, 10, &[5, 9]);
        assert_eq!(zero, vec![None, None]);
        let one = VersionLimit::per_source(Some(1), None, 7, &[5, 9, 3]);
        let floors: Vec<Seq> = one.iter().map(|l| l.unwrap().others_max_seq).collect();
        // Each source's floor is the largest *visible* number of the others (9 is above 7).
        assert_eq!(floors, vec![7, 5, 7]);
    }

    /// Source, row, column, timestamp, kind (row, family or column tombstone, else a put) and
    /// a column tombstone's time range.
    type RawEntry = (u8, u8, u8, i64, u8, (i64, i64));
    /// Each row's cells: qualifier, timestamp, value.
    type RowsRead = Vec<(Bytes, Vec<(Bytes, i64, Bytes)>)>;

    /// An entry of a small row space, so columns repeat, timestamps collide and tombstones
    /// cover cells.
    fn entry() -> impl Strategy<Value = RawEntry> {
        (0u8..3, 0u8..2, 0u8..3, 0i64..6, 0u8..12, (0i64..6, 0i64..7))
    }

    fn build(raw: &[RawEntry]) -> Vec<(usize, Entry)> {
        raw.iter()
            .enumerate()
            .map(|(seq, &(source, row, col, ts, kind, (s, e)))| {
                let seq = seq as Seq + 1;
                let row = Bytes::from(format!("r{row}"));
                let (family, qualifier, timestamp, value) = match kind {
                    0 => (Bytes::new(), None, i64::MAX, Value::DeleteRow),
                    1 => (
                        Bytes::from_static(b"cf"),
                        None,
                        i64::MAX,
                        Value::DeleteFamily,
                    ),
                    2 => (
                        Bytes::from_static(b"cf"),
                        Some(Bytes::from(format!("q{col}"))),
                        i64::MAX,
                        Value::DeleteColumn { start: s, end: e },
                    ),
                    _ => (
                        Bytes::from_static(b"cf"),
                        Some(Bytes::from(format!("q{col}"))),
                        ts,
                        Value::Put(Bytes::from(format!("v{seq}"))),
                    ),
                };
                let key = CellKey {
                    row,
                    family,
                    qualifier,
                    timestamp,
                    seq,
                };
                (source as usize, Entry { key, value })
            })
            .collect()
    }

    /// Every row's cells, reading every entry (`limits` = `None`) or each source through its
    /// walk.
    fn read(
        sources: &[Vec<Entry>],
        filter: &CellFilter,
        limits: Option<&[Option<VersionLimit>]>,
    ) -> RowsRead {
        let mut all: Vec<Entry> = Vec::new();
        for (i, source) in sources.iter().enumerate() {
            let mut walk = limits.and_then(|l| l[i]).map(ColumnWalk::new);
            for e in source {
                if let Some(w) = walk.as_mut()
                    && w.judge(&e.key, &e.value) == Verdict::Skip
                {
                    continue;
                }
                all.push(e.clone());
            }
        }
        all.sort_by(|a, b| a.key.cmp(&b.key));
        let mut out = Vec::new();
        for row in ["r0", "r1"] {
            let mut entries: Vec<Entry> = all
                .iter()
                .filter(|e| e.key.row == row.as_bytes())
                .cloned()
                .collect();
            let cells = resolve_row(&mut entries, filter)
                .into_iter()
                .map(|c| (c.qualifier, c.timestamp, c.value))
                .collect();
            out.push((Bytes::from(row), cells));
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Reading each source through its walk returns exactly what reading every entry
        /// returns, for any mix of puts, tombstones, sources, snapshots, time ranges and limits.
        #[test]
        fn pushdown_returns_what_a_full_read_returns(
            raw in proptest::collection::vec(entry(), 0..40),
            source_count in 1usize..4,
            versions in 1usize..4,
            snapshot_cut in 0usize..45,
            time_range in proptest::option::of((0i64..6, 0i64..7)),
        ) {
            let entries = build(&raw);
            let snapshot = snapshot_cut.min(entries.len()) as Seq;
            let mut sources = vec![Vec::new(); source_count];
            for (s, e) in entries {
                sources[s % source_count].push(e);
            }
            for s in &mut sources {
                s.sort_by(|a, b| a.key.cmp(&b.key));
            }
            let max_seq: Vec<Seq> = sources
                .iter()
                .map(|s| s.iter().map(|e| e.key.seq).max().unwrap_or(0))
                .collect();
            let filter = CellFilter {
                time_range,
                max_versions: Some(versions),
                ..CellFilter::default()
            };
            let visible: Vec<Vec<Entry>> = sources
                .iter()
                .map(|s| s.iter().filter(|e| e.key.seq <= snapshot).cloned().collect())
                .collect();
            let limits = VersionLimit::per_source(Some(versions), time_range, snapshot, &max_seq);
            prop_assert_eq!(
                read(&sources, &filter, Some(&limits)),
                read(&visible, &filter, None)
            );
        }
    }
}
