//! Ergonomic builders for what a caller sends: row sets (`RowSet`, `RowRange`), filters
//! (`Filter`, whose wire form is Cloud Bigtable v2's `RowFilter`), mutations (`Mutation`) and
//! read-modify-write rules (`Rule`).
//!
//! ```ignore
//! let rows = RowSet::new().key("a").range(RowRange::prefix("user#"));
//! let filter = Filter::family("cf").and(Filter::qualifier("name")).and(Filter::latest(1));
//! let m = vec![Mutation::set_cell("cf", "name", "ada"), Mutation::set_cell("cf", "n", "1").at(7)];
//! ```
//!
//! `Filter::family` and `Filter::qualifier` match a literal name: the name is escaped byte by
//! byte (every byte that is not an ASCII letter or digit becomes `\xNN`), so `a.b` matches only
//! `a.b`. `Filter::family_regex` / `qualifier_regex` / `row_regex` take a pattern as is.

use std::ops::Bound;

use bytes::Bytes;
use tabula_proto::google::bigtable::v2 as bt;

/// Rows `[start, end)` in general form: each side included, excluded or unbounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowRange {
    /// Where the range begins.
    pub start: Bound<Bytes>,
    /// Where it ends.
    pub end: Bound<Bytes>,
}

impl RowRange {
    /// Every row.
    pub fn all() -> RowRange {
        RowRange {
            start: Bound::Unbounded,
            end: Bound::Unbounded,
        }
    }

    /// `[start, end)`.
    pub fn closed_open(start: impl Into<Bytes>, end: impl Into<Bytes>) -> RowRange {
        RowRange {
            start: Bound::Included(start.into()),
            end: Bound::Excluded(end.into()),
        }
    }

    /// `[start, end]`.
    pub fn closed(start: impl Into<Bytes>, end: impl Into<Bytes>) -> RowRange {
        RowRange {
            start: Bound::Included(start.into()),
            end: Bound::Included(end.into()),
        }
    }

    /// `[start, ..)`.
    pub fn starting_at(start: impl Into<Bytes>) -> RowRange {
        RowRange {
            start: Bound::Included(start.into()),
            end: Bound::Unbounded,
        }
    }

    /// Every row beginning with `prefix` (every row for an empty prefix).
    pub fn prefix(prefix: impl Into<Bytes>) -> RowRange {
        let prefix: Bytes = prefix.into();
        let end = match prefix_successor(&prefix) {
            Some(end) => Bound::Excluded(end),
            None => Bound::Unbounded,
        };
        let start = if prefix.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Included(prefix)
        };
        RowRange { start, end }
    }

    /// Whether `row` is in the range.
    pub fn contains(&self, row: &[u8]) -> bool {
        let after_start = match &self.start {
            Bound::Included(s) => row >= s.as_ref(),
            Bound::Excluded(s) => row > s.as_ref(),
            Bound::Unbounded => true,
        };
        let before_end = match &self.end {
            Bound::Included(e) => row <= e.as_ref(),
            Bound::Excluded(e) => row < e.as_ref(),
            Bound::Unbounded => true,
        };
        after_start && before_end
    }

    /// The wire form.
    pub fn to_proto(&self) -> bt::RowRange {
        use bt::row_range::{EndKey, StartKey};
        bt::RowRange {
            start_key: match &self.start {
                Bound::Included(s) => Some(StartKey::StartKeyClosed(s.to_vec())),
                Bound::Excluded(s) => Some(StartKey::StartKeyOpen(s.to_vec())),
                Bound::Unbounded => None,
            },
            end_key: match &self.end {
                Bound::Included(e) => Some(EndKey::EndKeyClosed(e.to_vec())),
                Bound::Excluded(e) => Some(EndKey::EndKeyOpen(e.to_vec())),
                Bound::Unbounded => None,
            },
        }
    }
}

/// The smallest key greater than every key beginning with `prefix`; `None` if there is none
/// (empty or all `0xff`).
fn prefix_successor(prefix: &[u8]) -> Option<Bytes> {
    let last = prefix.iter().rposition(|b| *b != 0xff)?;
    let mut end = prefix[..=last].to_vec();
    end[last] += 1;
    Some(Bytes::from(end))
}

/// A set of rows: single keys and ranges (their union). An empty set means no rows; use
/// `RowSet::all()` for every row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RowSet {
    /// Single rows.
    pub keys: Vec<Bytes>,
    /// Row ranges.
    pub ranges: Vec<RowRange>,
}

impl RowSet {
    /// The empty set.
    pub fn new() -> RowSet {
        RowSet::default()
    }

    /// Every row.
    pub fn all() -> RowSet {
        RowSet::new().range(RowRange::all())
    }

    /// Adds the row `key`.
    pub fn key(mut self, key: impl Into<Bytes>) -> RowSet {
        self.keys.push(key.into());
        self
    }

    /// Adds `range`.
    pub fn range(mut self, range: RowRange) -> RowSet {
        self.ranges.push(range);
        self
    }

    /// Whether it names no row.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.ranges.is_empty()
    }
}

/// A row filter; its wire form is Cloud Bigtable v2's `RowFilter`, which the tablet servers
/// evaluate (DESIGN.md section 2).
#[derive(Debug, Clone, PartialEq)]
pub struct Filter(bt::RowFilter);

impl Filter {
    fn of(f: bt::row_filter::Filter) -> Filter {
        Filter(bt::RowFilter { filter: Some(f) })
    }

    /// Cells of the family named exactly `name`.
    pub fn family(name: &str) -> Filter {
        Filter::family_regex(&escape_regex(name.as_bytes()))
    }

    /// Cells whose family fully matches the RE2 pattern `pattern`.
    pub fn family_regex(pattern: &str) -> Filter {
        Filter::of(bt::row_filter::Filter::FamilyNameRegexFilter(
            pattern.to_owned(),
        ))
    }

    /// Cells whose qualifier is exactly `qualifier`.
    pub fn qualifier(qualifier: impl AsRef<[u8]>) -> Filter {
        Filter::qualifier_regex(escape_regex(qualifier.as_ref()).as_bytes())
    }

    /// Cells whose qualifier fully matches the RE2 pattern `pattern`.
    pub fn qualifier_regex(pattern: impl AsRef<[u8]>) -> Filter {
        Filter::of(bt::row_filter::Filter::ColumnQualifierRegexFilter(
            pattern.as_ref().to_vec(),
        ))
    }

    /// Rows whose key fully matches the RE2 pattern `pattern`.
    pub fn row_regex(pattern: impl AsRef<[u8]>) -> Filter {
        Filter::of(bt::row_filter::Filter::RowKeyRegexFilter(
            pattern.as_ref().to_vec(),
        ))
    }

    /// The newest `n` cells of each column.
    pub fn latest(n: i32) -> Filter {
        Filter::of(bt::row_filter::Filter::CellsPerColumnLimitFilter(n))
    }

    /// Cells with timestamps in `[start_micros, end_micros)` (0 for an open end).
    pub fn timestamps(start_micros: i64, end_micros: i64) -> Filter {
        Filter::of(bt::row_filter::Filter::TimestampRangeFilter(
            bt::TimestampRange {
                start_timestamp_micros: start_micros,
                end_timestamp_micros: end_micros,
            },
        ))
    }

    /// Every cell, values emptied.
    pub fn strip_value() -> Filter {
        Filter::of(bt::row_filter::Filter::StripValueTransformer(true))
    }

    /// Every cell (the identity filter).
    pub fn pass_all() -> Filter {
        Filter::of(bt::row_filter::Filter::PassAllFilter(true))
    }

    /// No cell.
    pub fn block_all() -> Filter {
        Filter::of(bt::row_filter::Filter::BlockAllFilter(true))
    }

    /// `self` then `next` (a chain: both must pass a cell). Chains flatten.
    pub fn and(self, next: Filter) -> Filter {
        let mut filters = match self.0.filter {
            Some(bt::row_filter::Filter::Chain(c)) => c.filters,
            other => vec![bt::RowFilter { filter: other }],
        };
        filters.push(next.0);
        Filter::of(bt::row_filter::Filter::Chain(bt::row_filter::Chain {
            filters,
        }))
    }

    /// The same as `and`.
    pub fn chain(self, next: Filter) -> Filter {
        self.and(next)
    }

    /// Cells that pass `self` or `other` (an interleave). Interleaves flatten.
    pub fn or(self, other: Filter) -> Filter {
        let mut filters = match self.0.filter {
            Some(bt::row_filter::Filter::Interleave(i)) => i.filters,
            other => vec![bt::RowFilter { filter: other }],
        };
        filters.push(other.0);
        Filter::of(bt::row_filter::Filter::Interleave(
            bt::row_filter::Interleave { filters },
        ))
    }

    /// A filter given in wire form.
    pub fn from_proto(filter: bt::RowFilter) -> Filter {
        Filter(filter)
    }

    /// The wire form.
    pub fn into_proto(self) -> bt::RowFilter {
        self.0
    }
}

/// An RE2 pattern matching exactly `literal`: ASCII letters and digits as themselves, every
/// other byte as `\xNN`.
pub fn escape_regex(literal: &[u8]) -> String {
    let mut out = String::with_capacity(literal.len());
    for &b in literal {
        if b.is_ascii_alphanumeric() {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    out
}

/// One change to a row; a list of them is applied atomically, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    /// Writes one cell.
    SetCell {
        /// Its family.
        family: String,
        /// Its qualifier.
        qualifier: Bytes,
        /// Microseconds; `-1` lets the server choose.
        timestamp_micros: i64,
        /// Its value.
        value: Bytes,
    },
    /// Deletes a column's cells with timestamps in `[start, end)` (`None`: unbounded).
    DeleteColumn {
        /// Its family.
        family: String,
        /// Its qualifier.
        qualifier: Bytes,
        /// First timestamp deleted, if bounded.
        start_micros: Option<i64>,
        /// Timestamp after the last deleted, if bounded.
        end_micros: Option<i64>,
    },
    /// Deletes every cell of a family.
    DeleteFamily {
        /// The family.
        family: String,
    },
    /// Deletes every cell of the row.
    DeleteRow,
    /// Adds `input` into the cell at exactly `timestamp_micros` of an aggregate (Sum of Int64)
    /// family, an absent cell counting as 0; its cells read as 8-byte big-endian integers.
    /// Not repeated after an ambiguous failure (it could add twice).
    AddToCell {
        /// An aggregate family.
        family: String,
        /// Its qualifier.
        qualifier: Bytes,
        /// The cell's timestamp: 0 or more (a multiple of 1000 on a millisecond table).
        timestamp_micros: i64,
        /// What to add.
        input: i64,
    },
}

impl Mutation {
    /// Sets `family:qualifier` to `value` at the server's time.
    pub fn set_cell(
        family: impl Into<String>,
        qualifier: impl Into<Bytes>,
        value: impl Into<Bytes>,
    ) -> Mutation {
        Mutation::SetCell {
            family: family.into(),
            qualifier: qualifier.into(),
            timestamp_micros: -1,
            value: value.into(),
        }
    }

    /// The same `SetCell` at timestamp `micros`; other mutations are returned unchanged.
    pub fn at(self, micros: i64) -> Mutation {
        match self {
            Mutation::SetCell {
                family,
                qualifier,
                value,
                ..
            } => Mutation::SetCell {
                family,
                qualifier,
                timestamp_micros: micros,
                value,
            },
            other => other,
        }
    }

    /// Deletes every version of `family:qualifier`.
    pub fn delete_column(family: impl Into<String>, qualifier: impl Into<Bytes>) -> Mutation {
        Mutation::DeleteColumn {
            family: family.into(),
            qualifier: qualifier.into(),
            start_micros: None,
            end_micros: None,
        }
    }

    /// Deletes every cell of `family`.
    pub fn delete_family(family: impl Into<String>) -> Mutation {
        Mutation::DeleteFamily {
            family: family.into(),
        }
    }

    /// Deletes the whole row.
    pub fn delete_row() -> Mutation {
        Mutation::DeleteRow
    }

    /// Adds `input` into the aggregate cell `family:qualifier` at `timestamp_micros`.
    pub fn add_to_cell(
        family: impl Into<String>,
        qualifier: impl Into<Bytes>,
        timestamp_micros: i64,
        input: i64,
    ) -> Mutation {
        Mutation::AddToCell {
            family: family.into(),
            qualifier: qualifier.into(),
            timestamp_micros,
            input,
        }
    }

    /// The wire form.
    pub fn to_proto(&self) -> bt::Mutation {
        use bt::mutation as m;
        let mutation = match self {
            Mutation::SetCell {
                family,
                qualifier,
                timestamp_micros,
                value,
            } => m::Mutation::SetCell(m::SetCell {
                family_name: family.clone(),
                column_qualifier: qualifier.to_vec(),
                timestamp_micros: *timestamp_micros,
                value: value.to_vec(),
            }),
            Mutation::DeleteColumn {
                family,
                qualifier,
                start_micros,
                end_micros,
            } => m::Mutation::DeleteFromColumn(m::DeleteFromColumn {
                family_name: family.clone(),
                column_qualifier: qualifier.to_vec(),
                time_range: (start_micros.is_some() || end_micros.is_some()).then(|| {
                    bt::TimestampRange {
                        start_timestamp_micros: start_micros.unwrap_or(0),
                        end_timestamp_micros: end_micros.unwrap_or(0),
                    }
                }),
            }),
            Mutation::DeleteFamily { family } => {
                m::Mutation::DeleteFromFamily(m::DeleteFromFamily {
                    family_name: family.clone(),
                })
            }
            Mutation::DeleteRow => m::Mutation::DeleteFromRow(m::DeleteFromRow {}),
            Mutation::AddToCell {
                family,
                qualifier,
                timestamp_micros,
                input,
            } => {
                let value = |kind| {
                    Some(bt::Value {
                        kind: Some(kind),
                        ..bt::Value::default()
                    })
                };
                m::Mutation::AddToCell(m::AddToCell {
                    family_name: family.clone(),
                    column_qualifier: value(bt::value::Kind::RawValue(qualifier.to_vec())),
                    timestamp: value(bt::value::Kind::RawTimestampMicros(*timestamp_micros)),
                    input: value(bt::value::Kind::IntValue(*input)),
                })
            }
        };
        bt::Mutation {
            mutation: Some(mutation),
        }
    }
}

/// One read-modify-write rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// Appends bytes to the newest value of a cell (an absent cell counts as empty).
    Append {
        /// Its family.
        family: String,
        /// Its qualifier.
        qualifier: Bytes,
        /// What to append.
        value: Bytes,
    },
    /// Adds to the newest value read as a big-endian i64 (absent: 0).
    Increment {
        /// Its family.
        family: String,
        /// Its qualifier.
        qualifier: Bytes,
        /// What to add.
        by: i64,
    },
}

impl Rule {
    /// Appends `value` to `family:qualifier`.
    pub fn append(
        family: impl Into<String>,
        qualifier: impl Into<Bytes>,
        value: impl Into<Bytes>,
    ) -> Rule {
        Rule::Append {
            family: family.into(),
            qualifier: qualifier.into(),
            value: value.into(),
        }
    }

    /// Adds `by` to `family:qualifier`.
    pub fn increment(family: impl Into<String>, qualifier: impl Into<Bytes>, by: i64) -> Rule {
        Rule::Increment {
            family: family.into(),
            qualifier: qualifier.into(),
            by,
        }
    }

    /// The wire form.
    pub fn to_proto(&self) -> bt::ReadModifyWriteRule {
        use bt::read_modify_write_rule::Rule as R;
        match self {
            Rule::Append {
                family,
                qualifier,
                value,
            } => bt::ReadModifyWriteRule {
                family_name: family.clone(),
                column_qualifier: qualifier.to_vec(),
                rule: Some(R::AppendValue(value.to_vec())),
            },
            Rule::Increment {
                family,
                qualifier,
                by,
            } => bt::ReadModifyWriteRule {
                family_name: family.clone(),
                column_qualifier: qualifier.to_vec(),
                rule: Some(R::IncrementAmount(*by)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_to_cell_names_its_cell_and_input() {
        let wire = Mutation::add_to_cell("sum", "q", 2000, -7).to_proto();
        let Some(bt::mutation::Mutation::AddToCell(a)) = wire.mutation else {
            panic!("not an AddToCell: {wire:?}");
        };
        assert_eq!(a.family_name, "sum");
        let kind = |v: Option<bt::Value>| v.and_then(|v| v.kind);
        assert_eq!(
            kind(a.column_qualifier),
            Some(bt::value::Kind::RawValue(b"q".to_vec()))
        );
        assert_eq!(
            kind(a.timestamp),
            Some(bt::value::Kind::RawTimestampMicros(2000))
        );
        assert_eq!(kind(a.input), Some(bt::value::Kind::IntValue(-7)));
    }

    #[test]
    fn prefix_ranges_end_at_the_prefix_successor() {
        let r = RowRange::prefix("ab");
        assert_eq!(r, RowRange::closed_open("ab", "ac"));
        assert!(r.contains(b"ab") && r.contains(b"ab\xff\xff") && !r.contains(b"ac"));
        assert!(!r.contains(b"aa\xff"));
        let r = RowRange::prefix(&b"a\xff\xff"[..]);
        assert_eq!(r, RowRange::closed_open(&b"a\xff\xff"[..], "b"));
        let r = RowRange::prefix(&b"\xff"[..]);
        assert_eq!(r.end, Bound::Unbounded);
        assert_eq!(RowRange::prefix(""), RowRange::all());
    }

    #[test]
    fn row_sets_collect_keys_and_ranges() {
        let s = RowSet::new().key("a").range(RowRange::prefix("p"));
        assert_eq!(s.keys, vec![Bytes::from("a")]);
        assert_eq!(s.ranges.len(), 1);
        assert!(RowSet::new().is_empty() && !RowSet::all().is_empty());
        let wire = RowRange::closed_open("a", "b").to_proto();
        assert_eq!(
            wire.start_key,
            Some(bt::row_range::StartKey::StartKeyClosed(b"a".to_vec()))
        );
        assert_eq!(
            wire.end_key,
            Some(bt::row_range::EndKey::EndKeyOpen(b"b".to_vec()))
        );
    }

    #[test]
    fn literal_names_are_escaped_byte_by_byte() {
        assert_eq!(escape_regex(b"cf1"), "cf1");
        assert_eq!(escape_regex(b"a.b*"), "a\\x2Eb\\x2A");
        assert_eq!(escape_regex(b"\x00\xff"), "\\x00\\xFF");
        assert_eq!(
            Filter::family("c.f").into_proto().filter,
            Some(bt::row_filter::Filter::FamilyNameRegexFilter(
                "c\\x2Ef".into()
            ))
        );
    }

    #[test]
    fn and_builds_one_flat_chain() {
        let f = Filter::family("cf")
            .and(Filter::qualifier("q"))
            .chain(Filter::latest(1))
            .into_proto();
        let Some(bt::row_filter::Filter::Chain(c)) = f.filter else {
            panic!("a chain: {f:?}")
        };
        assert_eq!(c.filters.len(), 3);
        assert_eq!(
            c.filters[1].filter,
            Some(bt::row_filter::Filter::ColumnQualifierRegexFilter(
                b"q".to_vec()
            ))
        );
        let or = Filter::family("a")
            .or(Filter::family("b"))
            .or(Filter::family("c"));
        let Some(bt::row_filter::Filter::Interleave(i)) = or.into_proto().filter else {
            panic!("an interleave")
        };
        assert_eq!(i.filters.len(), 3);
    }

    #[test]
    fn mutations_convert_with_server_time_unless_given() {
        let m = Mutation::set_cell("cf", "q", "v").to_proto();
        let Some(bt::mutation::Mutation::SetCell(s)) = m.mutation else {
            panic!("a SetCell")
        };
        assert_eq!(s.timestamp_micros, -1);
        let m = Mutation::set_cell("cf", "q", "v").at(42).to_proto();
        let Some(bt::mutation::Mutation::SetCell(s)) = m.mutation else {
            panic!("a SetCell")
        };
        assert_eq!((s.family_name.as_str(), s.timestamp_micros), ("cf", 42));
        assert_eq!(
            Mutation::delete_row().to_proto().mutation,
            Some(bt::mutation::Mutation::DeleteFromRow(
                bt::mutation::DeleteFromRow {}
            ))
        );
        let Some(bt::mutation::Mutation::DeleteFromColumn(d)) =
            Mutation::delete_column("cf", "q").to_proto().mutation
        else {
            panic!("a DeleteFromColumn")
        };
        assert_eq!(d.time_range, None);
        let r = Rule::increment("cf", "n", 3).to_proto();
        assert_eq!(
            r.rule,
            Some(bt::read_modify_write_rule::Rule::IncrementAmount(3))
        );
    }
}
