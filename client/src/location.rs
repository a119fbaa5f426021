//! `LocationCache`: where the client believes each tablet is, a pure data structure.
//!
//! Per table, a `BTreeMap` from the METADATA key of a tablet (`meta::row_key(table, end_row)`)
//! to its `TabletRecord`, exactly as METADATA orders them: the tablet holding `row` is the
//! first entry whose key is greater than `meta::lookup_key(table, row)`, if that entry's
//! `start_row <= row` (else the cache has a hole there and the caller reads METADATA). For a
//! reversed scan, the tablet holding the rows just before `row` (`start_row < row <=
//! end_row`) is the first entry whose key is at or after `meta::row_key(table, row)`.
//!
//! Invariant: the cached ranges of one table never overlap. Inserting a record first removes
//! every cached record whose range overlaps it, so after a split or a merge the newer record
//! read from METADATA replaces the stale ones. A server's `WrongTablet` (or a failed call)
//! makes the caller `invalidate` the record it used; the next lookup then misses and walks
//! METADATA again.
//!
//! Bounded: at most `max_records` records in all; inserting into a full cache first drops
//! every record of the table being inserted into (then of other tables if still full). A
//! cache that forgets only costs a METADATA read.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use bytes::Bytes;
use tabula_common::{TableId, meta};

use crate::meta::TabletRecord;

/// Cached tablet locations of any number of tables, bounded by a record count.
#[derive(Debug, Clone)]
pub struct LocationCache {
    tables: HashMap<TableId, BTreeMap<Bytes, TabletRecord>>,
    records: usize,
    max_records: usize,
}

impl LocationCache {
    /// An empty cache holding at most `max_records` records (at least 1).
    pub fn new(max_records: usize) -> LocationCache {
        LocationCache {
            tables: HashMap::new(),
            records: 0,
            max_records: max_records.max(1),
        }
    }

    /// Records cached, over all tables.
    pub fn len(&self) -> usize {
        self.records
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// The cached record of the tablet of `table` holding `row`, if the cache knows it.
    pub fn lookup(&self, table: TableId, row: &[u8]) -> Option<&TabletRecord> {
        let map = self.tables.get(&table)?;
        let from = Bound::Excluded(meta::lookup_key(table, row));
        let (_, record) = map.range((from, Bound::Unbounded)).next()?;
        (record.table == table && record.start_row.as_ref() <= row).then_some(record)
    }

    /// The cached record of the tablet of `table` holding the rows just before `row` (`None`:
    /// the table's end), the one with `start_row < row <= end_row`, if the cache knows it.
    /// Its METADATA key is the first at or after `meta::row_key(table, row)`.
    pub fn lookup_before(&self, table: TableId, row: Option<&[u8]>) -> Option<&TabletRecord> {
        let map = self.tables.get(&table)?;
        let from = Bound::Included(meta::row_key(table, row));
        let (_, record) = map.range((from, Bound::Unbounded)).next()?;
        (record.table == table && holds_before(record, row)).then_some(record)
    }

    /// Caches `record`, dropping every cached record of its table whose range overlaps it.
    pub fn insert(&mut self, record: TabletRecord) {
        let table = record.table;
        if self.records >= self.max_records {
            self.clear_table(table);
            while self.records >= self.max_records {
                let Some(other) = self.tables.keys().next().copied() else {
                    break;
                };
                self.clear_table(other);
            }
        }
        let map = self.tables.entry(table).or_default();
        // Entries with key > row_key(start) end after `start`; they overlap while they begin
        // before the new record's end (ranges are disjoint, so starts grow with keys).
        let from = Bound::Excluded(meta::row_key(table, Some(&record.start_row)));
        let overlapping: Vec<Bytes> = map
            .range((from, Bound::Unbounded))
            .take_while(|(_, r)| match &record.end_row {
                Some(end) => r.start_row < *end,
                None => true,
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in overlapping {
            map.remove(&key);
            self.records -= 1;
        }
        map.insert(record.meta_key(), record);
        self.records += 1;
    }

    /// Forgets `record` if the cache still holds exactly that tablet at that epoch; answers
    /// whether it did.
    pub fn invalidate(&mut self, record: &TabletRecord) -> bool {
        let Some(map) = self.tables.get_mut(&record.table) else {
            return false;
        };
        let key = record.meta_key();
        let same = map
            .get(&key)
            .is_some_and(|r| r.tablet == record.tablet && r.epoch == record.epoch);
        if same {
            map.remove(&key);
            self.records -= 1;
        }
        same
    }

    /// Forgets every record of `table`.
    pub fn clear_table(&mut self, table: TableId) {
        if let Some(map) = self.tables.remove(&table) {
            self.records -= map.len();
        }
    }
}

/// Whether `record`'s tablet holds the rows just before `row` (`None`: the table's end): its
/// range starts before `row` and reaches it.
pub(crate) fn holds_before(record: &TabletRecord, row: Option<&[u8]>) -> bool {
    match (row, &record.end_row) {
        (None, end) => end.is_none(),
        (Some(row), end) => {
            record.start_row.as_ref() < row && end.as_ref().is_none_or(|e| row <= e.as_ref())
        }
    }
}

#[cfg(test)]
mod tests {
    use tabula_common::{Epoch, ServerId, TabletId};

    use super::*;
    use crate::meta::TabletState;

    fn rec(table: u64, id: u64, start: &'static [u8], end: Option<&'static [u8]>) -> TabletRecord {
        TabletRecord {
            table: TableId(table),
            tablet: TabletId(id),
            start_row: Bytes::from_static(start),
            end_row: end.map(Bytes::from_static),
            epoch: Epoch(1),
            state: TabletState::Assigned,
            server: Some(ServerId("s".into())),
            server_addr: "127.0.0.1:1".into(),
            master_epoch: Epoch(1),
            manifest_path: String::new(),
            split_parent: None,
            split_sibling: None,
            created: true,
        }
    }

    fn id(cache: &LocationCache, table: u64, row: &[u8]) -> Option<u64> {
        cache.lookup(TableId(table), row).map(|r| r.tablet.0)
    }

    #[test]
    fn lookup_finds_the_tablet_holding_the_row_or_nothing_in_a_hole() {
        let mut c = LocationCache::new(100);
        c.insert(rec(5, 1, b"", Some(b"g")));
        c.insert(rec(5, 3, b"p", None));
        assert_eq!(id(&c, 5, b""), Some(1));
        assert_eq!(id(&c, 5, b"f\xff"), Some(1));
        // "g" is the first row of the uncached middle tablet ["g", "p").
        assert_eq!(id(&c, 5, b"g"), None);
        assert_eq!(id(&c, 5, b"o"), None);
        assert_eq!(id(&c, 5, b"p"), Some(3));
        assert_eq!(id(&c, 5, b"zzz"), Some(3));
        // Other tables see nothing, before or after in key order.
        assert_eq!(id(&c, 4, b"a"), None);
        assert_eq!(id(&c, 6, b"a"), None);
        c.insert(rec(5, 2, b"g", Some(b"p")));
        assert_eq!(id(&c, 5, b"g"), Some(2));
        assert_eq!(c.len(), 3);
    }

    fn before(cache: &LocationCache, table: u64, row: Option<&[u8]>) -> Option<u64> {
        cache.lookup_before(TableId(table), row).map(|r| r.tablet.0)
    }

    #[test]
    fn lookup_before_finds_the_tablet_holding_the_rows_just_before_a_row() {
        let mut c = LocationCache::new(100);
        c.insert(rec(5, 1, b"", Some(b"g")));
        c.insert(rec(5, 3, b"p", None));
        // Rows before "g" are the first tablet's: "g" is its (exclusive) end.
        assert_eq!(before(&c, 5, Some(b"g")), Some(1));
        assert_eq!(before(&c, 5, Some(b"a")), Some(1));
        assert_eq!(before(&c, 5, Some(b"\0")), Some(1));
        // Nothing is before the table's first row.
        assert_eq!(before(&c, 5, Some(b"")), None);
        // Rows before "g\0" and before "p" are the uncached middle tablet's.
        assert_eq!(before(&c, 5, Some(b"g\0")), None);
        assert_eq!(before(&c, 5, Some(b"p")), None);
        assert_eq!(before(&c, 5, Some(b"p\0")), Some(3));
        assert_eq!(before(&c, 5, None), Some(3));
        assert_eq!(before(&c, 4, None), None);
        assert_eq!(before(&c, 6, Some(b"a")), None);
        c.insert(rec(5, 2, b"g", Some(b"p")));
        assert_eq!(before(&c, 5, Some(b"p")), Some(2));
        assert_eq!(before(&c, 5, Some(b"g\0")), Some(2));
        // Without the last tablet, the table's end is unknown.
        let mut c = LocationCache::new(100);
        c.insert(rec(5, 1, b"", Some(b"g")));
        assert_eq!(before(&c, 5, None), None);
        assert!(holds_before(&rec(5, 1, b"", Some(b"g")), Some(b"g")));
        assert!(!holds_before(&rec(5, 1, b"c", Some(b"g")), Some(b"c")));
        assert!(!holds_before(&rec(5, 1, b"c", Some(b"g")), Some(b"h")));
        assert!(!holds_before(&rec(5, 1, b"c", Some(b"g")), None));
    }

    #[test]
    fn a_newer_record_replaces_every_overlapping_one() {
        let mut c = LocationCache::new(100);
        // The parent ["c", "m") split into ["c", "f") and ["f", "m"); a later read sees them.
        c.insert(rec(2, 1, b"", Some(b"c")));
        c.insert(rec(2, 2, b"c", Some(b"m")));
        c.insert(rec(2, 3, b"m", None));
        c.insert(rec(2, 4, b"c", Some(b"f")));
        assert_eq!(id(&c, 2, b"d"), Some(4));
        assert_eq!(id(&c, 2, b"g"), None, "the parent is gone");
        assert_eq!(id(&c, 2, b"b"), Some(1));
        assert_eq!(id(&c, 2, b"m"), Some(3));
        assert_eq!(c.len(), 3);
        // A merge of everything replaces all three.
        c.insert(rec(2, 9, b"", None));
        assert_eq!(c.len(), 1);
        assert_eq!(id(&c, 2, b"a"), Some(9));
        assert_eq!(id(&c, 2, b"z"), Some(9));
    }

    #[test]
    fn invalidate_drops_only_the_same_tablet_at_the_same_epoch() {
        let mut c = LocationCache::new(100);
        let old = rec(2, 1, b"", None);
        let newer = TabletRecord {
            epoch: Epoch(2),
            ..old.clone()
        };
        c.insert(newer.clone());
        assert!(
            !c.invalidate(&old),
            "a stale failure must not drop a fresh record"
        );
        assert_eq!(id(&c, 2, b"x"), Some(1));
        assert!(c.invalidate(&newer));
        assert_eq!(id(&c, 2, b"x"), None);
        assert!(c.is_empty());
        assert!(!c.invalidate(&newer));
    }

    #[test]
    fn a_full_cache_forgets_rather_than_grows() {
        let mut c = LocationCache::new(2);
        c.insert(rec(2, 1, b"", Some(b"b")));
        c.insert(rec(3, 2, b"", None));
        c.insert(rec(2, 3, b"b", None));
        assert!(c.len() <= 2);
        assert_eq!(id(&c, 2, b"c"), Some(3));
        c.clear_table(TableId(2));
        assert_eq!(id(&c, 2, b"c"), None);
        assert!(c.len() <= 1);
    }
}
