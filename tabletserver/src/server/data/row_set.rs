//! A `RowSet` from the wire -> the engine's row ranges: sorted by start, overlapping and
//! touching ranges merged (so no row is read twice), empty ranges dropped. Row keys become
//! single-row ranges. An inverted range (start after end) is `InvalidArgument`, as is an empty
//! or over-4-KiB row key. Empty bounds follow Bigtable: an empty start is the table's
//! beginning and an empty end its end (the empty row key does not exist). Pure code.

use std::cmp::Ordering;
use std::ops::Bound;

use bytes::Bytes;
use tabula_common::{Error, TableId};
use tabula_proto::google::bigtable::v2 as pb;
use tabula_proto::google::bigtable::v2::row_range::{EndKey, StartKey};

use crate::engine::sstable::RowRange;

/// What a `ReadRows` row set asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Rows {
    /// No keys and no ranges: every row of the tablet.
    All,
    /// These ranges, sorted and disjoint (possibly none: every range was empty).
    Ranges(Vec<RowRange>),
}

/// Checks and normalizes a row set (`rows` in `ReadRowsRequest`).
pub(super) fn rows(set: Option<pb::RowSet>, table: TableId) -> Result<Rows, Error> {
    let max = super::convert::max_row_bytes(table);
    let set = set.unwrap_or_default();
    if set.row_keys.is_empty() && set.row_ranges.is_empty() {
        return Ok(Rows::All);
    }
    let mut ranges = Vec::with_capacity(set.row_keys.len() + set.row_ranges.len());
    for (i, key) in set.row_keys.into_iter().enumerate() {
        if key.is_empty() || key.len() > max {
            return Err(Error::invalid_argument(format!(
                "rows.row_keys[{i}]: a row key must be 1..={max} bytes, got {}",
                key.len()
            )));
        }
        ranges.push(RowRange::single(Bytes::from(key)));
    }
    for (i, r) in set.row_ranges.into_iter().enumerate() {
        let range = range(r)
            .map_err(|why| Error::invalid_argument(format!("rows.row_ranges[{i}]: {why}")))?;
        if !range.is_empty() {
            ranges.push(range);
        }
    }
    Ok(Rows::Ranges(merge(ranges)))
}

fn range(r: pb::RowRange) -> Result<RowRange, String> {
    let start = match r.start_key {
        None => Bound::Unbounded,
        Some(StartKey::StartKeyClosed(k) | StartKey::StartKeyOpen(k)) if k.is_empty() => {
            Bound::Unbounded
        }
        Some(StartKey::StartKeyClosed(k)) => Bound::Included(Bytes::from(k)),
        Some(StartKey::StartKeyOpen(k)) => Bound::Excluded(Bytes::from(k)),
    };
    let end = match r.end_key {
        None => Bound::Unbounded,
        Some(EndKey::EndKeyOpen(k) | EndKey::EndKeyClosed(k)) if k.is_empty() => Bound::Unbounded,
        Some(EndKey::EndKeyOpen(k)) => Bound::Excluded(Bytes::from(k)),
        Some(EndKey::EndKeyClosed(k)) => Bound::Included(Bytes::from(k)),
    };
    if let (Bound::Included(s) | Bound::Excluded(s), Bound::Included(e) | Bound::Excluded(e)) =
        (&start, &end)
        && s > e
    {
        return Err(format!(
            "the range is inverted: its start {:?} sorts after its end {:?}",
            s.escape_ascii().to_string(),
            e.escape_ascii().to_string()
        ));
    }
    Ok(RowRange { start, end })
}

/// Orders starts: unbounded first, and for one key an included start before an excluded one.
fn cmp_start(a: &Bound<Bytes>, b: &Bound<Bytes>) -> Ordering {
    match (a, b) {
        (Bound::Unbounded, Bound::Unbounded) => Ordering::Equal,
        (Bound::Unbounded, _) => Ordering::Less,
        (_, Bound::Unbounded) => Ordering::Greater,
        (Bound::Included(x) | Bound::Excluded(x), Bound::Included(y) | Bound::Excluded(y))
            if x != y =>
        {
            x.cmp(y)
        }
        (Bound::Included(_), Bound::Excluded(_)) => Ordering::Less,
        (Bound::Excluded(_), Bound::Included(_)) => Ordering::Greater,
        _ => Ordering::Equal,
    }
}

/// Orders ends: unbounded last, and for one key an excluded end before an included one.
fn cmp_end(a: &Bound<Bytes>, b: &Bound<Bytes>) -> Ordering {
    match (a, b) {
        (Bound::Unbounded, Bound::Unbounded) => Ordering::Equal,
        (Bound::Unbounded, _) => Ordering::Greater,
        (_, Bound::Unbounded) => Ordering::Less,
        (Bound::Included(x) | Bound::Excluded(x), Bound::Included(y) | Bound::Excluded(y))
            if x != y =>
        {
            x.cmp(y)
        }
        (Bound::Excluded(_), Bound::Included(_)) => Ordering::Less,
        (Bound::Included(_), Bound::Excluded(_)) => Ordering::Greater,
        _ => Ordering::Equal,
    }
}

/// Whether a range ending at `end` and one starting at `start` (not before it) leave no row
/// between them, so they can be read as one.
fn touches(end: &Bound<Bytes>, start: &Bound<Bytes>) -> bool {
    match (end, start) {
        (Bound::Unbounded, _) | (_, Bound::Unbounded) => true,
        (Bound::Included(e), Bound::Included(s) | Bound::Excluded(s)) => s <= e,
        (Bound::Excluded(e), Bound::Included(s)) => s <= e,
        (Bound::Excluded(e), Bound::Excluded(s)) => s < e,
    }
}

/// Sorts ranges and merges those that overlap or touch.
fn merge(mut ranges: Vec<RowRange>) -> Vec<RowRange> {
    ranges.sort_by(|a, b| cmp_start(&a.start, &b.start));
    let mut out: Vec<RowRange> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(last) if touches(&last.end, &r.start) => {
                if cmp_end(&r.end, &last.end) == Ordering::Greater {
                    last.end = r.end;
                }
            }
            _ => out.push(r),
        }
    }
    out
}

/// The smallest range holding all of `ranges` (sorted and disjoint, at least one).
pub(super) fn cover(ranges: &[RowRange]) -> RowRange {
    match (ranges.first(), ranges.last()) {
        (Some(first), Some(last)) => RowRange {
            start: first.start.clone(),
            end: last.end.clone(),
        },
        _ => RowRange::all(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use tabula_common::Code;

    use super::*;
    use crate::engine::mutation::{MAX_ROW_BYTES, MAX_SYSTEM_ROW_BYTES};

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn pr(start: Option<StartKey>, end: Option<EndKey>) -> pb::RowRange {
        pb::RowRange {
            start_key: start,
            end_key: end,
        }
    }

    fn closed(s: &str) -> Option<StartKey> {
        Some(StartKey::StartKeyClosed(s.as_bytes().to_vec()))
    }

    fn open(s: &str) -> Option<StartKey> {
        Some(StartKey::StartKeyOpen(s.as_bytes().to_vec()))
    }

    fn end_open(s: &str) -> Option<EndKey> {
        Some(EndKey::EndKeyOpen(s.as_bytes().to_vec()))
    }

    fn end_closed(s: &str) -> Option<EndKey> {
        Some(EndKey::EndKeyClosed(s.as_bytes().to_vec()))
    }

    /// `super::rows` for a user table.
    fn rows(set: Option<pb::RowSet>) -> Result<Rows, Error> {
        super::rows(set, TableId(2))
    }

    fn set(keys: &[&str], ranges: Vec<pb::RowRange>) -> Option<pb::RowSet> {
        Some(pb::RowSet {
            row_keys: keys.iter().map(|k| k.as_bytes().to_vec()).collect(),
            row_ranges: ranges,
        })
    }

    #[test]
    fn an_empty_set_is_every_row() {
        assert_eq!(rows(None).unwrap(), Rows::All);
        assert_eq!(rows(set(&[], vec![])).unwrap(), Rows::All);
    }

    #[test]
    fn keys_and_ranges_are_sorted_merged_and_deduplicated() {
        let got = rows(set(
            &["z", "b", "b", "c"],
            vec![
                pr(closed("c"), end_open("e")),
                pr(closed("e"), end_closed("f")),
                pr(open("x"), end_open("y")),
                pr(closed("k"), end_open("k")), // empty: dropped
            ],
        ))
        .unwrap();
        assert_eq!(
            got,
            Rows::Ranges(vec![
                RowRange::single(b("b")),
                RowRange {
                    start: Bound::Included(b("c")),
                    end: Bound::Included(b("f")),
                },
                RowRange {
                    start: Bound::Excluded(b("x")),
                    end: Bound::Excluded(b("y")),
                },
                RowRange::single(b("z")),
            ])
        );
    }

    #[test]
    fn an_excluded_end_and_excluded_start_at_one_key_stay_apart() {
        let got = rows(set(
            &[],
            vec![pr(closed("a"), end_open("m")), pr(open("m"), None)],
        ))
        .unwrap();
        let Rows::Ranges(r) = got else { panic!() };
        assert_eq!(r.len(), 2);
        assert!(!r.iter().any(|r| r.contains(b"m")));
        assert_eq!(
            cover(&r),
            RowRange {
                start: Bound::Included(b("a")),
                end: Bound::Unbounded,
            }
        );
    }

    #[test]
    fn empty_bounds_are_open_ends() {
        let got = rows(set(&[], vec![pr(closed(""), end_open(""))])).unwrap();
        assert_eq!(got, Rows::Ranges(vec![RowRange::all()]));
    }

    #[test]
    fn inverted_ranges_and_bad_keys_are_invalid() {
        let e = rows(set(
            &["a"],
            vec![
                pr(closed("b"), end_open("c")),
                pr(closed("z"), end_closed("y")),
            ],
        ))
        .unwrap_err();
        assert_eq!(e.code, Code::InvalidArgument);
        assert!(e.message.starts_with("rows.row_ranges[1]"), "{e}");
        let e = rows(set(&["a", ""], vec![])).unwrap_err();
        assert!(e.message.starts_with("rows.row_keys[1]"), "{e}");
        let long = "x".repeat(MAX_ROW_BYTES + 1);
        assert!(rows(set(&[&long], vec![])).is_err());
        // METADATA keys are a user row behind a 9-byte prefix: longer keys are fine there.
        assert!(super::rows(set(&[&long], vec![]), TableId::METADATA).is_ok());
        let too_long = "x".repeat(MAX_SYSTEM_ROW_BYTES + 1);
        assert!(super::rows(set(&[&too_long], vec![]), TableId::METADATA).is_err());
        // Equal ends are not inverted: an empty range reads nothing.
        assert_eq!(
            rows(set(&[], vec![pr(open("k"), end_closed("k"))])).unwrap(),
            Rows::Ranges(vec![])
        );
    }
}
