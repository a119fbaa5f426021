//! Cell keys and entries: the unit the memtable, SSTables and merging iterator move around.
//!
//! Order: row asc, family asc, qualifier asc (a family-wide entry, `qualifier = None`, sorts
//! before every qualifier), timestamp desc, sequence number desc. Deletes are entries too
//! (tombstones) placed at the start of the scope they cover, so a forward walk over one row meets
//! each tombstone before the cells it hides:
//!
//! | entry            | family   | qualifier | timestamp  | value                     |
//! |------------------|----------|-----------|------------|---------------------------|
//! | cell             | f        | Some(q)   | ts         | `Value::Put(bytes)`       |
//! | DeleteFromColumn | f        | Some(q)   | `i64::MAX` | `Value::DeleteColumn{..}` |
//! | DeleteFromFamily | f        | None      | `i64::MAX` | `Value::DeleteFamily`     |
//! | DeleteFromRow    | empty    | None      | `i64::MAX` | `Value::DeleteRow`        |
//!
//! Family names are never empty, so the row tombstone sorts first in its row. Every entry has
//! its own sequence number (a row mutation of n entries takes n consecutive numbers), so no two
//! entries share a key, and a tombstone hides exactly the entries with a smaller sequence number.

use std::cmp::Ordering;
use std::ops::Bound;

use bytes::Bytes;

/// A tablet-local sequence number; larger = later. 0 is never assigned.
pub type Seq = u64;

/// Where an entry sits in the tablet.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CellKey {
    /// Row key.
    pub row: Bytes,
    /// Column family; empty only for a row tombstone.
    pub family: Bytes,
    /// Qualifier; `None` for family- and row-wide tombstones.
    pub qualifier: Option<Bytes>,
    /// Cell timestamp in microseconds (`i64::MAX` for tombstones).
    pub timestamp: i64,
    /// Sequence number of the mutation that wrote the entry.
    pub seq: Seq,
}

impl Ord for CellKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.row
            .cmp(&other.row)
            .then_with(|| self.family.cmp(&other.family))
            .then_with(|| self.qualifier.cmp(&other.qualifier))
            .then_with(|| other.timestamp.cmp(&self.timestamp))
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

impl PartialOrd for CellKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl CellKey {
    /// The smallest key of `row`: every entry of the row sorts at or after it.
    pub fn row_start(row: Bytes) -> CellKey {
        CellKey {
            row,
            family: Bytes::new(),
            qualifier: None,
            timestamp: i64::MAX,
            seq: Seq::MAX,
        }
    }

    /// Bytes this key occupies, for memory accounting.
    pub fn approximate_size(&self) -> usize {
        self.row.len() + self.family.len() + self.qualifier.as_ref().map_or(0, Bytes::len) + 16
    }
}

/// A row's first 16 bytes, zero-padded, as one big-endian integer. Where two rows' prefixes
/// differ they order the rows as their bytes do (a padding zero meets a real byte only when
/// the shorter row is a prefix of the longer); equal prefixes need the full comparison. One
/// integer comparison thus settles most key comparisons without reading the rows' bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RowPrefix(u128);

impl RowPrefix {
    /// The prefix of `row`.
    pub fn of(row: &[u8]) -> RowPrefix {
        let mut buf = [0u8; 16];
        let n = row.len().min(16);
        buf[..n].copy_from_slice(&row[..n]);
        RowPrefix(u128::from_be_bytes(buf))
    }
}

/// The smallest row after `row` (`row` followed by a zero byte).
pub fn next_row(row: &[u8]) -> Bytes {
    let mut next = Vec::with_capacity(row.len() + 1);
    next.extend_from_slice(row);
    next.push(0);
    Bytes::from(next)
}

/// The key bounds covering every entry of the rows within `start..end` (row bounds).
pub fn key_bounds(start: &Bound<Bytes>, end: &Bound<Bytes>) -> (Bound<CellKey>, Bound<CellKey>) {
    let lower = match start {
        Bound::Included(r) => Bound::Included(CellKey::row_start(r.clone())),
        Bound::Excluded(r) => Bound::Included(CellKey::row_start(next_row(r))),
        Bound::Unbounded => Bound::Unbounded,
    };
    let upper = match end {
        Bound::Included(r) => Bound::Excluded(CellKey::row_start(next_row(r))),
        Bound::Excluded(r) => Bound::Excluded(CellKey::row_start(r.clone())),
        Bound::Unbounded => Bound::Unbounded,
    };
    (lower, upper)
}

/// What an entry says.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Value {
    /// A cell value.
    Put(Bytes),
    /// Deletes the column's cells with `start <= timestamp < end` (`end = i64::MAX`: no end).
    DeleteColumn {
        /// First timestamp deleted.
        start: i64,
        /// First timestamp not deleted.
        end: i64,
    },
    /// Deletes every cell of the family in the row.
    DeleteFamily,
    /// Deletes every cell of the row.
    DeleteRow,
}

impl Value {
    /// Whether this entry deletes rather than writes.
    pub fn is_tombstone(&self) -> bool {
        !matches!(self, Value::Put(_))
    }

    /// Bytes this value occupies, for memory accounting.
    pub fn approximate_size(&self) -> usize {
        match self {
            Value::Put(v) => v.len() + 1,
            Value::DeleteColumn { .. } => 17,
            Value::DeleteFamily | Value::DeleteRow => 1,
        }
    }
}

/// One key and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Where.
    pub key: CellKey,
    /// What.
    pub value: Value,
}

impl Entry {
    /// Bytes this entry occupies, for memory accounting.
    pub fn approximate_size(&self) -> usize {
        self.key.approximate_size() + self.value.approximate_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(row: &str, fam: &str, q: Option<&str>, ts: i64, seq: Seq) -> CellKey {
        CellKey {
            row: Bytes::copy_from_slice(row.as_bytes()),
            family: Bytes::copy_from_slice(fam.as_bytes()),
            qualifier: q.map(|q| Bytes::copy_from_slice(q.as_bytes())),
            timestamp: ts,
            seq,
        }
    }

    #[test]
    fn order_is_row_family_qualifier_ts_desc_seq_desc() {
        let mut keys = vec![
            key("b", "f", Some("a"), 1, 1),
            key("a", "g", Some("a"), 1, 1),
            key("a", "f", Some("b"), 1, 1),
            key("a", "f", Some("a"), 1, 1),
            key("a", "f", Some("a"), 2, 1),
            key("a", "f", Some("a"), 2, 5),
            key("a", "f", None, i64::MAX, 3),
            key("a", "", None, i64::MAX, 2),
            key("a", "f", Some(""), 9, 9),
        ];
        keys.sort();
        let got: Vec<_> = keys
            .iter()
            .map(|k| {
                let q = k
                    .qualifier
                    .as_ref()
                    .map(|q| String::from_utf8_lossy(q).into_owned());
                (
                    String::from_utf8_lossy(&k.row).into_owned(),
                    q,
                    k.timestamp,
                    k.seq,
                )
            })
            .collect();
        let s = |x: &str| Some(x.to_string());
        assert_eq!(
            got,
            vec![
                ("a".into(), None, i64::MAX, 2),
                ("a".into(), None, i64::MAX, 3),
                ("a".into(), s(""), 9, 9),
                ("a".into(), s("a"), 2, 5),
                ("a".into(), s("a"), 2, 1),
                ("a".into(), s("a"), 1, 1),
                ("a".into(), s("b"), 1, 1),
                ("a".into(), s("a"), 1, 1),
                ("b".into(), s("a"), 1, 1),
            ]
        );
        assert!(CellKey::row_start(Bytes::from_static(b"a")) < keys[0]);
    }

    /// Short rows, zero bytes frequent (they are what padding could confuse).
    fn row_bytes() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        proptest::collection::vec(prop_oneof![Just(0u8), any::<u8>()], 0..20)
    }

    proptest::proptest! {
        /// Differing prefixes order rows as their bytes do; equal prefixes mean the rows'
        /// first 16 bytes agree up to trailing zeros.
        #[test]
        fn row_prefixes_order_rows_like_their_bytes(a in row_bytes(), b in row_bytes()        ) {
            let (pa, pb) = (RowPrefix::of(&a), RowPrefix::of(&b));
            if pa != pb {
                proptest::prop_assert_eq!(pa.cmp(&pb), a.cmp(&b));
            } else {
                let n = a.len().max(b.len()).min(16);
                let pad = |r: &[u8]| {
                    let mut v = r[..r.len().min(16)].to_vec();
                    v.resize(n, 0);
                    v
                };
                proptest::prop_assert_eq!(pad(&a), pad(&b));
            }
        }
    }
}
