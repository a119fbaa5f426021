//! The memtable: a lock-free sorted map (crossbeam-skiplist) of the newest entries, with byte
//! accounting so the tablet knows when to freeze it.
//!
//! Skiplist keys carry the row's first 16 bytes inline (a `RowPrefix`), so most
//! comparisons during a search never follow the row's pointer (a cache miss per node).
//!
//! Writers insert concurrently; readers iterate concurrently with writers. Iterators own an
//! `Arc<Memtable>` and refill a small buffer by re-seeking after the last key they returned, so
//! they borrow nothing and can live inside a scan that outlasts a freeze. The skiplist is used
//! through crossbeam's `base` API so that one epoch pin covers a whole insert batch or refill
//! (the `SkipMap` wrapper pins and reference-counts at every step).
//!
//! Each entry's row, family, qualifier and value are copied into one allocation as it is
//! inserted ([`pack`]). A write arrives with each in its own buffer, and a scan clones every
//! entry it passes: with one buffer, its four clones (and drops) count on one reference count
//! instead of four scattered ones, and reading the row's bytes brings the start of the value
//! into the cache with it. The copy is about the size of the entry, once per write.

use std::collections::VecDeque;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;
use crossbeam_epoch as epoch;
use crossbeam_skiplist::base::SkipList;

use super::key::{CellKey, Entry, RowPrefix, Seq, Value, key_bounds};
use super::sstable::RowRange;
use super::versions::{ColumnWalk, Verdict, VersionLimit, column_end};

/// Per-entry overhead of a skiplist node, for accounting.
const NODE_OVERHEAD_BYTES: usize = 64;
/// Entries an iterator takes in its first refill (short scans stay cheap)...
const FIRST_REFILL_ENTRIES: usize = 16;
/// ...and at most per refill, as each refill doubles.
const MAX_REFILL_ENTRIES: usize = 512;
/// Older versions a limited read steps over one by one before it seeks past their column: a
/// step is one node, a seek about one per level of the list.
const SEEK_AFTER_SKIPPED: usize = 8;

/// A skiplist key: the cell key behind an inline prefix of its row.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MemKey {
    prefix: RowPrefix,
    key: CellKey,
}

impl MemKey {
    fn new(key: CellKey) -> MemKey {
        MemKey {
            prefix: RowPrefix::of(&key.row),
            key,
        }
    }
}

impl Ord for MemKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.prefix
            .cmp(&other.prefix)
            .then_with(|| self.key.cmp(&other.key))
    }
}

impl PartialOrd for MemKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

fn mem_bound(b: Bound<CellKey>) -> Bound<MemKey> {
    match b {
        Bound::Included(k) => Bound::Included(MemKey::new(k)),
        Bound::Excluded(k) => Bound::Excluded(MemKey::new(k)),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// A memtable.
#[derive(Debug)]
pub struct Memtable {
    map: SkipList<MemKey, Value>,
    bytes: AtomicUsize,
    min_seq: AtomicU64,
    max_seq: AtomicU64,
}

impl Default for Memtable {
    fn default() -> Self {
        Memtable {
            map: SkipList::new(epoch::default_collector().clone()),
            bytes: AtomicUsize::new(0),
            min_seq: AtomicU64::new(u64::MAX),
            max_seq: AtomicU64::new(0),
        }
    }
}

impl Memtable {
    /// An empty memtable.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts entries (keys are unique: every entry has its own sequence number; re-inserting
    /// an identical entry during replay is harmless).
    pub fn insert(&self, entries: Vec<Entry>) {
        let mut bytes = 0;
        let guard = &epoch::pin();
        for e in entries {
            bytes += e.approximate_size() + NODE_OVERHEAD_BYTES;
            self.min_seq.fetch_min(e.key.seq, Ordering::AcqRel);
            self.max_seq.fetch_max(e.key.seq, Ordering::AcqRel);
            let (key, value) = pack(e.key, e.value);
            self.map
                .insert(MemKey::new(key), value, guard)
                .release(guard);
        }
        self.bytes.fetch_add(bytes, Ordering::AcqRel);
    }

    /// Bytes held, approximately.
    pub fn approximate_bytes(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing was inserted.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Smallest sequence number held.
    pub fn min_seq(&self) -> Option<Seq> {
        let s = self.min_seq.load(Ordering::Acquire);
        (s != u64::MAX).then_some(s)
    }

    /// Largest sequence number held (0 when empty).
    pub fn max_seq(&self) -> Seq {
        self.max_seq.load(Ordering::Acquire)
    }

    /// Every entry of `row`, in key order; with a `limit`, only the entries the read needs
    /// (see [`super::versions`] and [`Memtable::walk_forward`]).
    pub fn row_entries(&self, row: &Bytes, limit: Option<VersionLimit>) -> Vec<Entry> {
        let (lo, hi) = key_bounds(&Bound::Included(row.clone()), &Bound::Included(row.clone()));
        let (lower, upper) = (mem_bound(lo), mem_bound(hi));
        if let Some(limit) = limit {
            let mut out = Vec::new();
            let mut walk = ColumnWalk::new(limit);
            self.walk_forward(lower, &upper, &mut walk, usize::MAX, |e| out.push(e));
            return out;
        }
        let guard = &epoch::pin();
        self.map
            .range((lower, upper), guard)
            .map(|e| to_entry(&e))
            .collect()
    }

    /// Walks `(lower, upper)` forward through `walk`, handing each entry it keeps to `keep`
    /// until `max` are kept. Older versions of a complete column are passed over without being
    /// cloned, and a long run of them is skipped with one seek past the column. Returns the
    /// bound to resume from, or `None` when the range is exhausted.
    fn walk_forward(
        &self,
        mut lower: Bound<MemKey>,
        upper: &Bound<MemKey>,
        walk: &mut ColumnWalk,
        max: usize,
        mut keep: impl FnMut(Entry),
    ) -> Option<Bound<MemKey>> {
        let guard = &epoch::pin();
        let mut kept = 0;
        'seek: loop {
            for e in self.map.range((lower, upper.clone()), guard) {
                let key = &e.key().key;
                if walk.judge(key, e.value()) == Verdict::Keep {
                    keep(to_entry(&e));
                    kept += 1;
                    if kept >= max {
                        return Some(Bound::Excluded(MemKey::new(key.clone())));
                    }
                } else if walk.skipped_in_column() >= SEEK_AFTER_SKIPPED {
                    lower = Bound::Excluded(MemKey::new(column_end(key)));
                    continue 'seek;
                }
            }
            return None;
        }
    }

    /// Entries of rows in `range`, in key order (or reverse key order).
    pub fn iter(self: &Arc<Self>, range: &RowRange, reverse: bool) -> MemtableIter {
        let (lower, upper) = key_bounds(&range.start, &range.end);
        MemtableIter {
            mem: self.clone(),
            lower: mem_bound(lower),
            upper: mem_bound(upper),
            reverse,
            buf: VecDeque::new(),
            refill: FIRST_REFILL_ENTRIES,
            done: false,
            walk: None,
        }
    }
}

/// A skiplist entry's key and value, cloned out.
fn to_entry(e: &crossbeam_skiplist::base::Entry<'_, '_, MemKey, Value>) -> Entry {
    Entry {
        key: e.key().key.clone(),
        value: e.value().clone(),
    }
}

/// `key` and `value` with their row, family, qualifier and value bytes in one new buffer (see
/// the module doc).
fn pack(key: CellKey, value: Value) -> (CellKey, Value) {
    let put = match &value {
        Value::Put(v) => Some(v),
        _ => None,
    };
    let qualifier_len = key.qualifier.as_ref().map_or(0, Bytes::len);
    let mut buf = Vec::with_capacity(
        key.row.len() + key.family.len() + qualifier_len + put.map_or(0, Bytes::len),
    );
    buf.extend_from_slice(&key.row);
    buf.extend_from_slice(&key.family);
    if let Some(q) = &key.qualifier {
        buf.extend_from_slice(q);
    }
    if let Some(v) = put {
        buf.extend_from_slice(v);
    }
    let buf = Bytes::from(buf);
    let mut at = 0;
    let mut next = |len: usize| {
        at += len;
        buf.slice(at - len..at)
    };
    let row = next(key.row.len());
    let family = next(key.family.len());
    let qualifier = key.qualifier.as_ref().map(|q| next(q.len()));
    let value = match value {
        Value::Put(v) => Value::Put(next(v.len())),
        other => other,
    };
    (
        CellKey {
            row,
            family,
            qualifier,
            ..key
        },
        value,
    )
}

/// An owned iterator over a memtable range.
#[derive(Debug)]
pub struct MemtableIter {
    mem: Arc<Memtable>,
    lower: Bound<MemKey>,
    upper: Bound<MemKey>,
    reverse: bool,
    buf: VecDeque<Entry>,
    refill: usize,
    done: bool,
    /// Set by [`MemtableIter::limited`]: the walk that passes over versions the read does not
    /// need.
    walk: Option<ColumnWalk>,
}

impl MemtableIter {
    /// This (forward) iterator, handing out only the entries a read limited by `limit` needs
    /// (see [`super::versions`]); a reverse iterator is returned unchanged.
    pub fn limited(mut self, limit: VersionLimit) -> MemtableIter {
        if !self.reverse {
            self.walk = Some(ColumnWalk::new(limit));
        }
        self
    }

    fn refill(&mut self) {
        if let Some(walk) = self.walk.as_mut() {
            let buf = &mut self.buf;
            let next =
                self.mem
                    .walk_forward(self.lower.clone(), &self.upper, walk, self.refill, |e| {
                        buf.push_back(e)
                    });
            match next {
                Some(lower) => self.lower = lower,
                None => self.done = true,
            }
            self.refill = (self.refill * 2).min(MAX_REFILL_ENTRIES);
            return;
        }
        let guard = &epoch::pin();
        let range = self
            .mem
            .map
            .range((self.lower.clone(), self.upper.clone()), guard);
        if self.reverse {
            self.buf
                .extend(range.rev().take(self.refill).map(|e| to_entry(&e)));
            if let Some(last) = self.buf.back() {
                self.upper = Bound::Excluded(MemKey::new(last.key.clone()));
            }
        } else {
            self.buf
                .extend(range.take(self.refill).map(|e| to_entry(&e)));
            if let Some(last) = self.buf.back() {
                self.lower = Bound::Excluded(MemKey::new(last.key.clone()));
            }
        }
        if self.buf.len() < self.refill {
            self.done = true;
        }
        self.refill = (self.refill * 2).min(MAX_REFILL_ENTRIES);
    }
}

impl Iterator for MemtableIter {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        if self.buf.is_empty() && !self.done {
            self.refill();
        }
        self.buf.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(row: &str, q: &str, ts: i64, seq: Seq) -> Entry {
        Entry {
            key: CellKey {
                row: Bytes::copy_from_slice(row.as_bytes()),
                family: Bytes::from_static(b"cf"),
                qualifier: Some(Bytes::copy_from_slice(q.as_bytes())),
                timestamp: ts,
                seq,
            },
            value: Value::Put(Bytes::from_static(b"v")),
        }
    }

    #[test]
    fn an_entry_is_stored_in_one_buffer_and_reads_back_unchanged() {
        let mem = Arc::new(Memtable::new());
        let cell = put("row7", "qual", 5, 1);
        let mut column = put("row7", "gone", 0, 2);
        column.value = Value::DeleteColumn { start: 3, end: 9 };
        let mut row = put("row8", "", 0, 3);
        row.key.family = Bytes::new();
        row.key.qualifier = None;
        row.value = Value::DeleteRow;
        mem.insert(vec![cell.clone(), column.clone(), row.clone()]);
        let all = RowRange {
            start: Bound::Unbounded,
            end: Bound::Unbounded,
        };
        let read: Vec<Entry> = mem.iter(&all, false).collect();
        assert_eq!(read, vec![column, cell, row]);
        // The put's pieces lie one after the other in one buffer.
        let e = &read[1];
        let q = e.key.qualifier.as_ref().unwrap();
        let Value::Put(v) = &e.value else { panic!() };
        let end = |b: &Bytes| b.as_ptr().wrapping_add(b.len());
        assert_eq!(end(&e.key.row), e.key.family.as_ptr());
        assert_eq!(end(&e.key.family), q.as_ptr());
        assert_eq!(end(q), v.as_ptr());
    }

    #[test]
    fn iterates_ranges_both_ways_across_refills() {
        let mem = Arc::new(Memtable::new());
        let entries: Vec<_> = (0..500)
            .map(|i| put(&format!("r{i:04}"), "q", 1, i + 1))
            .collect();
        mem.insert(entries);
        assert_eq!(mem.len(), 500);
        assert_eq!((mem.min_seq(), mem.max_seq()), (Some(1), 500));
        assert!(mem.approximate_bytes() > 500 * 64);
        let range = RowRange {
            start: Bound::Excluded(Bytes::from_static(b"r0010")),
            end: Bound::Included(Bytes::from_static(b"r0400")),
        };
        let fwd: Vec<_> = mem.iter(&range, false).map(|e| e.key.seq).collect();
        assert_eq!(fwd, (12..=401).collect::<Vec<_>>());
        let rev: Vec<_> = mem.iter(&range, true).map(|e| e.key.seq).collect();
        assert_eq!(rev, (12..=401).rev().collect::<Vec<_>>());
        assert_eq!(
            mem.row_entries(&Bytes::from_static(b"r0007"), None).len(),
            1
        );
    }

    #[test]
    fn a_limited_row_read_stops_at_the_newest_versions_and_seeks_past_the_rest() {
        let mem = Memtable::new();
        // Column a of row r: 100 versions (enough for the seek); column b: 3; then row s.
        let mut entries: Vec<Entry> = (0..100).map(|i| put("r", "a", i, 1 + i as Seq)).collect();
        entries.extend((0..3).map(|i| put("r", "b", i, 200 + i as Seq)));
        entries.push(put("s", "a", 1, 300));
        mem.insert(entries);
        let limit = VersionLimit {
            versions: 2,
            time_range: None,
            snapshot: Seq::MAX,
            others_max_seq: 0,
        };
        let read = |row: &'static str, limit| -> Vec<(Bytes, i64)> {
            mem.row_entries(&Bytes::from_static(row.as_bytes()), limit)
                .into_iter()
                .map(|e| (e.key.qualifier.unwrap(), e.key.timestamp))
                .collect()
        };
        let q = |q: &'static str| Bytes::from_static(q.as_bytes());
        assert_eq!(
            read("r", Some(limit)),
            vec![(q("a"), 99), (q("a"), 98), (q("b"), 2), (q("b"), 1)]
        );
        assert_eq!(read("r", None).len(), 103);
        assert_eq!(read("s", Some(limit)), vec![(q("a"), 1)]);
        // Another source with newer numbers could hide these versions: nothing is skipped.
        let guarded = VersionLimit {
            others_max_seq: 250,
            ..limit
        };
        assert_eq!(read("r", Some(guarded)).len(), 103);
    }

    #[test]
    fn a_limited_scan_keeps_the_newest_versions_across_refills_and_seeks() {
        let mem = Arc::new(Memtable::new());
        let mut seq = 0;
        let mut entries = Vec::new();
        // 40 rows of 3 columns with 1 to 20 versions each: refills end mid-column and seeks
        // cross refill boundaries.
        for r in 0..40 {
            for q in ["a", "b", "c"] {
                for ts in 0..(1 + (r * 7 + q.len() as i64) % 20) {
                    seq += 1;
                    entries.push(put(&format!("r{r:02}"), q, ts, seq));
                }
            }
        }
        mem.insert(entries);
        let limit = VersionLimit {
            versions: 1,
            time_range: None,
            snapshot: Seq::MAX,
            others_max_seq: 0,
        };
        let all = RowRange::all();
        let scanned: Vec<Entry> = mem.iter(&all, false).limited(limit).collect();
        let by_row: Vec<Entry> = (0..40)
            .flat_map(|r| mem.row_entries(&Bytes::from(format!("r{r:02}")), Some(limit)))
            .collect();
        assert_eq!(scanned, by_row);
        // One entry per column: the newest.
        assert_eq!(scanned.len(), 120);
        assert!(scanned.iter().all(|e| {
            let newest = mem
                .row_entries(&e.key.row, None)
                .into_iter()
                .filter(|o| o.key.qualifier == e.key.qualifier)
                .map(|o| o.key.timestamp)
                .max();
            newest == Some(e.key.timestamp)
        }));
        // A reverse scan meets tombstones after the cells they cover: it is not limited.
        assert_eq!(mem.iter(&all, true).limited(limit).count(), mem.len());
    }

    #[test]
    fn inline_prefixes_order_rows_like_their_bytes() {
        let rows: [&[u8]; 9] = [
            b"",
            b"\0",
            b"a",
            b"a\0",
            b"a\0\0",
            b"a\x01",
            b"abcdefghijklmnop",
            b"abcdefghijklmnop\0",
            b"abcdefghijklmnopq",
        ];
        for x in rows {
            for y in rows {
                let k = |r: &[u8]| MemKey::new(CellKey::row_start(Bytes::copy_from_slice(r)));
                assert_eq!(k(x).cmp(&k(y)), x.cmp(y), "{x:?} vs {y:?}");
            }
        }
    }

    #[test]
    fn iterator_sees_a_consistent_prefix_while_writers_insert() {
        let mem = Arc::new(Memtable::new());
        mem.insert(vec![put("a", "q", 1, 1), put("c", "q", 1, 2)]);
        let mut it = mem.iter(&RowRange::all(), false);
        assert_eq!(it.next().map(|e| e.key.seq), Some(1));
        mem.insert(vec![put("b", "q", 1, 3)]);
        // The buffer was filled before the insert; the iterator is still in order.
        let rest: Vec<_> = it.map(|e| e.key.seq).collect();
        assert_eq!(rest, vec![2]);
    }
}
