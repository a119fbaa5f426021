//! The read path: a point read or a scan sees one snapshot (a sequence number) of the tablet,
//! merging its memtables and SSTables and resolving each row.
//!
//! The snapshot number is read *before* the state, so every mutation visible at the snapshot
//! is in one of the state's memtables or SSTables.

use std::sync::Arc;

use bytes::Bytes;

use crate::engine::error::EngineError;
use crate::engine::key::{Entry, Seq};
use crate::engine::memtable::Memtable;
use crate::engine::merge::{EntrySource, MergeIter};
use crate::engine::read::{CellFilter, Row, resolve_row};
use crate::engine::sstable::{RowRange, Sstable};
use crate::engine::versions::{VersionLimit, others_max};

use super::core::{Inner, State, Tablet};

/// What a scan reads.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// Rows to read (intersected with the tablet's range).
    pub range: RowRange,
    /// Which cells of each row.
    pub filter: CellFilter,
    /// Largest row first.
    pub reverse: bool,
    /// At most this many rows (rows with no cell left after filtering do not count).
    pub limit: Option<usize>,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            range: RowRange::all(),
            filter: CellFilter::default(),
            reverse: false,
            limit: None,
        }
    }
}

impl Tablet {
    /// The row's cells that `filter` lets through, or `None` if none are left.
    pub fn read_row(&self, row: &[u8], filter: &CellFilter) -> Result<Option<Row>, EngineError> {
        self.inner.read_row(row, filter, None)
    }

    /// Reads a row at an earlier snapshot (from `visible_seq`).
    pub fn read_row_at(
        &self,
        row: &[u8],
        filter: &CellFilter,
        snapshot: Seq,
    ) -> Result<Option<Row>, EngineError> {
        self.inner.read_row(row, filter, Some(snapshot))
    }

    /// Scans rows in order (or reverse order), all at one snapshot.
    pub fn scan(&self, opts: ScanOptions) -> Result<RowIter, EngineError> {
        self.inner.check_open()?;
        let filter = self.inner.within_schema(&opts.filter);
        let snapshot = self.inner.seqs.visible();
        let state = self.inner.state.read().clone();
        let Some(range) = opts.range.intersect(&self.inner.range) else {
            return Ok(RowIter::empty());
        };
        let merged = MergeIter::new(
            sources(&state, &range, opts.reverse, &filter, snapshot),
            opts.reverse,
            snapshot,
        );
        Ok(RowIter {
            tablet: Some(self.inner.clone()),
            merged: Some(merged),
            pending: None,
            row: Vec::new(),
            reverse: opts.reverse,
            filter,
            remaining: opts.limit.unwrap_or(usize::MAX),
            snapshot,
            examined: 0,
            finished: false,
        })
    }
}

/// The merge's sources: memtables newest first, then SSTables. In a forward scan each memtable
/// stops at the versions `filter` needs (see [`crate::engine::versions`]).
fn sources(
    state: &State,
    range: &RowRange,
    reverse: bool,
    filter: &CellFilter,
    snapshot: Seq,
) -> Vec<EntrySource> {
    let mems: Vec<&Arc<Memtable>> = std::iter::once(&state.active)
        .chain(state.frozen.iter().rev())
        .filter(|m| !m.is_empty())
        .collect();
    let max_seqs: Vec<Seq> = mems
        .iter()
        .map(|m| m.max_seq())
        .chain(state.sstables.iter().map(|s| s.meta().max_seq))
        .collect();
    let limits =
        VersionLimit::per_source(filter.max_versions, filter.time_range, snapshot, &max_seqs);
    let mut sources: Vec<EntrySource> = Vec::new();
    for (mem, limit) in mems.into_iter().zip(limits) {
        let iter = mem.iter(range, reverse);
        let iter = match limit {
            Some(limit) => iter.limited(limit),
            None => iter,
        };
        sources.push(Box::new(iter.map(Ok)));
    }
    for sst in &state.sstables {
        sources.push(Box::new(
            sst.iter(range.clone(), reverse)
                .map(|r| r.map_err(EngineError::from)),
        ));
    }
    sources
}

impl Inner {
    fn read_row(
        &self,
        row: &[u8],
        filter: &CellFilter,
        at: Option<Seq>,
    ) -> Result<Option<Row>, EngineError> {
        self.check_open()?;
        if !self.range.contains(row) {
            return Err(EngineError::OutOfRange {
                row: row.escape_ascii().to_string(),
            });
        }
        let snapshot = at
            .unwrap_or_else(|| self.seqs.visible())
            .min(self.seqs.visible());
        let state: Arc<State> = self.state.read().clone();
        let key = Bytes::copy_from_slice(row);
        // Each source stops at the versions the filter needs (see `versions`). Its floor is
        // the largest number another source could hide it with: the largest visible tombstone
        // of a source already read (the walk keeps every tombstone), else that source's
        // largest number. Newest first, so the floors are exact where versions pile up.
        let mems = std::iter::once(&state.active).chain(state.frozen.iter().rev());
        let mut ssts: Vec<_> = state
            .sstables
            .iter()
            .filter(|sst| sst.may_contain_row(row))
            .collect();
        ssts.sort_by_key(|sst| std::cmp::Reverse(sst.meta().max_seq));
        let sources: Vec<RowSource<'_>> = mems
            .map(RowSource::Memtable)
            .chain(ssts.into_iter().map(RowSource::Sstable))
            .collect();
        let mut floors: Vec<Seq> = sources.iter().map(|s| s.max_seq().min(snapshot)).collect();
        let mut entries: Vec<Entry> = Vec::new();
        for (i, source) in sources.iter().enumerate() {
            let limit = VersionLimit::new(
                filter.max_versions,
                filter.time_range,
                snapshot,
                others_max(&floors, i),
            );
            let got = match source {
                RowSource::Memtable(m) => m.row_entries(&key, limit),
                RowSource::Sstable(t) => t.get_row_entries(row, limit)?,
            };
            floors[i] = got
                .iter()
                .filter(|e| e.value.is_tombstone() && e.key.seq <= snapshot)
                .map(|e| e.key.seq)
                .max()
                .unwrap_or(0);
            entries.extend(got);
        }
        entries.retain(|e| e.key.seq <= snapshot);
        entries.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        entries.dedup_by(|a, b| a.key == b.key);
        self.sample_read(&entries);
        let cells = resolve_row(&mut entries, &self.within_schema(filter));
        Ok((!cells.is_empty()).then_some(Row { key, cells }))
    }

    /// `filter` restricted to the schema's families: cells of a family the schema no longer
    /// has (dropped by `ModifyColumnFamilies`) are never read; major compactions remove them.
    fn within_schema(&self, filter: &CellFilter) -> CellFilter {
        let schema = self.schema.read().clone();
        let families = match &filter.families {
            None => schema.families.keys().cloned().collect(),
            Some(wanted) => wanted
                .iter()
                .filter(|f| schema.families.contains_key(*f))
                .cloned()
                .collect(),
        };
        CellFilter {
            families: Some(families),
            ..filter.clone()
        }
    }
}

/// One source of a point read.
enum RowSource<'a> {
    Memtable(&'a Arc<Memtable>),
    Sstable(&'a Arc<Sstable>),
}

impl RowSource<'_> {
    fn max_seq(&self) -> Seq {
        match self {
            RowSource::Memtable(m) => m.max_seq(),
            RowSource::Sstable(t) => t.meta().max_seq,
        }
    }
}

/// Rows of a scan, at one snapshot. Owns what it reads: it outlives flushes and compactions.
pub struct RowIter {
    /// The tablet, told about the rows read (see `sample_read`).
    tablet: Option<Arc<Inner>>,
    merged: Option<MergeIter>,
    pending: Option<Entry>,
    /// The row being assembled (its allocation is reused row after row).
    row: Vec<Entry>,
    reverse: bool,
    filter: CellFilter,
    remaining: usize,
    snapshot: Seq,
    /// Rows looked at so far, including rows with no cell left.
    examined: u64,
    /// No row is left (the end, the limit, or an error).
    finished: bool,
}

impl RowIter {
    fn empty() -> Self {
        RowIter {
            tablet: None,
            merged: None,
            pending: None,
            row: Vec::new(),
            reverse: false,
            filter: CellFilter::default(),
            remaining: 0,
            snapshot: 0,
            examined: 0,
            finished: true,
        }
    }

    /// Rows looked at so far, including rows left with no cell (deleted, or filtered out by
    /// the scan's `CellFilter`): the work done, which returned rows alone do not show.
    pub fn rows_examined(&self) -> u64 {
        self.examined
    }

    /// The next row with cells, looking at no more than `max_rows` rows (at least one);
    /// `None` if none was found among them, and then [`RowIter::is_finished`] tells whether
    /// rows are left. A caller that may not block for long (an async worker) so bounds its
    /// work even where thousands of deleted or filtered-out rows lie between two returned ones.
    pub fn next_within(&mut self, max_rows: u64) -> Result<Option<Row>, EngineError> {
        let mut looked = 0;
        while !self.finished && looked < max_rows.max(1) {
            if self.remaining == 0 {
                self.finished = true;
                break;
            }
            match self.next_row_entries() {
                Err(e) => {
                    self.merged = None;
                    self.finished = true;
                    return Err(e);
                }
                Ok(false) => self.finished = true,
                Ok(true) => {
                    looked += 1;
                    self.examined += 1;
                    if let Some(tablet) = &self.tablet {
                        tablet.sample_read(&self.row);
                    }
                    // Resolving reads no entry's row: the first entry's moves to the result.
                    let key = std::mem::take(&mut self.row[0].key.row);
                    let cells = resolve_row(&mut self.row, &self.filter);
                    if !cells.is_empty() {
                        self.remaining -= 1;
                        return Ok(Some(Row { key, cells }));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Whether no row is left to return.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The snapshot this scan reads at.
    pub fn snapshot(&self) -> Seq {
        self.snapshot
    }

    /// Fills `self.row` with the next row's entries, in forward key order; `false` at the end.
    fn next_row_entries(&mut self) -> Result<bool, EngineError> {
        let Some(merged) = self.merged.as_mut() else {
            return Ok(false);
        };
        let first = match self.pending.take() {
            Some(e) => e,
            None => match merged.next().transpose()? {
                Some(e) => e,
                None => return Ok(false),
            },
        };
        self.row.clear();
        self.row.push(first);
        for item in merged.by_ref() {
            let e = item?;
            if self.row[0].key.row != e.key.row {
                self.pending = Some(e);
                break;
            }
            self.row.push(e);
        }
        if self.reverse {
            self.row.reverse();
        }
        Ok(true)
    }
}

impl Iterator for RowIter {
    type Item = Result<Row, EngineError>;

    fn next(&mut self) -> Option<Self::Item> {
        // Without a bound, `None` is the end.
        self.next_within(u64::MAX).transpose()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use crate::engine::tablet::scratch::scratch_tablet;
    use crate::engine::{Mutation, RowMutation, ScanOptions, Schema};

    fn row(row: &str, mutation: Mutation) -> RowMutation {
        RowMutation {
            row: Bytes::copy_from_slice(row.as_bytes()),
            mutations: vec![mutation],
        }
    }

    #[test]
    fn a_bounded_step_stops_inside_a_run_of_deleted_rows_and_resumes_there() {
        let (_dir, tablet) = scratch_tablet(Schema::with_families(["cf"]));
        for i in 0..100 {
            let set = Mutation::SetCell {
                family: Bytes::from_static(b"cf"),
                qualifier: Bytes::from_static(b"q"),
                timestamp: 1,
                value: Bytes::from_static(b"v"),
            };
            tablet.apply(row(&format!("r{i:03}"), set)).unwrap();
        }
        for i in 10..90 {
            tablet
                .apply(row(&format!("r{i:03}"), Mutation::DeleteFromRow))
                .unwrap();
        }
        let mut rows = tablet.scan(ScanOptions::default()).unwrap();
        let (mut got, mut empty_steps) = (Vec::new(), 0);
        for _ in 0..1000 {
            match rows.next_within(5).unwrap() {
                Some(r) => got.push(String::from_utf8(r.key.to_vec()).unwrap()),
                None if rows.is_finished() => break,
                None => empty_steps += 1,
            }
        }
        let want: Vec<String> = (0..10).chain(90..100).map(|i| format!("r{i:03}")).collect();
        assert_eq!(got, want);
        assert!(rows.is_finished(), "the scan never reported its end");
        assert_eq!(
            empty_steps, 16,
            "80 deleted rows, 5 a step, should take 16 steps that return nothing"
        );
        assert_eq!(rows.rows_examined(), 100);
    }
}
