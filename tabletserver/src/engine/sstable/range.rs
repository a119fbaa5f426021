//! `RowRange`: a range of row keys, each end included, excluded or open. Scans, tablets and
//! SSTable iterators all speak it; a tablet's own range is `[start, end)`.

use std::ops::Bound;

use bytes::Bytes;

/// A range of rows.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RowRange {
    /// The first row, or no lower limit.
    pub start: Bound<Bytes>,
    /// The last row, or no upper limit.
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

    /// `[start, end)`, the shape of a tablet's range.
    pub fn half_open(start: Bytes, end: Bytes) -> RowRange {
        RowRange {
            start: Bound::Included(start),
            end: Bound::Excluded(end),
        }
    }

    /// Exactly one row.
    pub fn single(row: Bytes) -> RowRange {
        RowRange {
            start: Bound::Included(row.clone()),
            end: Bound::Included(row),
        }
    }

    /// Whether `row` sorts before the start of the range.
    pub fn is_before_start(&self, row: &[u8]) -> bool {
        match &self.start {
            Bound::Unbounded => false,
            Bound::Included(s) => row < &s[..],
            Bound::Excluded(s) => row <= &s[..],
        }
    }

    /// Whether `row` sorts after the end of the range.
    pub fn is_after_end(&self, row: &[u8]) -> bool {
        match &self.end {
            Bound::Unbounded => false,
            Bound::Included(e) => row > &e[..],
            Bound::Excluded(e) => row >= &e[..],
        }
    }

    /// Whether `row` is in the range.
    pub fn contains(&self, row: &[u8]) -> bool {
        !self.is_before_start(row) && !self.is_after_end(row)
    }

    /// Whether no row at all is in the range.
    pub fn is_empty(&self) -> bool {
        let (start, start_inclusive) = match &self.start {
            Bound::Unbounded => return matches!(&self.end, Bound::Excluded(e) if e.is_empty()),
            Bound::Included(s) => (s, true),
            Bound::Excluded(s) => (s, false),
        };
        match (&self.end, start_inclusive) {
            (Bound::Unbounded, _) => false,
            (Bound::Included(e), true) => start > e,
            (Bound::Included(e), false) | (Bound::Excluded(e), true) => start >= e,
            // (s, e) holds nothing when e is s's immediate successor, s + [0].
            (Bound::Excluded(e), false) => {
                start >= e
                    || (e.len() == start.len() + 1 && e.starts_with(start) && e.ends_with(&[0]))
            }
        }
    }

    /// The rows in both ranges, or `None` if there are none.
    pub fn intersect(&self, other: &RowRange) -> Option<RowRange> {
        let start = tighter(&self.start, &other.start, |a, b| a > b);
        let end = tighter(&self.end, &other.end, |a, b| a < b);
        let r = RowRange { start, end };
        if r.is_empty() { None } else { Some(r) }
    }

    /// The one row this range holds, if it holds exactly one: `[k, k]`, or `[k, k\0)` (how a
    /// client spells a row key as a half-open range). A point read can then use the row's
    /// Bloom filters instead of opening an iterator on every SSTable.
    pub fn single_row(&self) -> Option<&Bytes> {
        let Bound::Included(start) = &self.start else {
            return None;
        };
        let one = match &self.end {
            Bound::Included(end) => end == start,
            Bound::Excluded(end) => {
                end.len() == start.len() + 1 && end.starts_with(start) && end.ends_with(&[0])
            }
            Bound::Unbounded => false,
        };
        one.then_some(start)
    }
}

/// The stricter of two bounds on the same side; `further(a, b)` says whether `a` lies further
/// inside than `b`.
fn tighter(
    a: &Bound<Bytes>,
    b: &Bound<Bytes>,
    further: fn(&Bytes, &Bytes) -> bool,
) -> Bound<Bytes> {
    match (a, b) {
        (Bound::Unbounded, x) | (x, Bound::Unbounded) => x.clone(),
        (Bound::Included(x) | Bound::Excluded(x), Bound::Included(y) | Bound::Excluded(y))
            if x != y =>
        {
            if further(x, y) {
                a.clone()
            } else {
                b.clone()
            }
        }
        // Same key: excluding it is stricter.
        (Bound::Excluded(_), _) => a.clone(),
        _ => b.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_row_is_recognised_in_both_spellings() {
        let k = Bytes::from_static(b"k");
        assert_eq!(RowRange::single(k.clone()).single_row(), Some(&k));
        let half_open = RowRange::half_open(k.clone(), Bytes::from_static(b"k\0"));
        assert_eq!(half_open.single_row(), Some(&k));
        for not_one in [
            RowRange::half_open(k.clone(), Bytes::from_static(b"k\0\0")),
            RowRange::half_open(k.clone(), Bytes::from_static(b"k\x01")),
            RowRange::half_open(k.clone(), Bytes::from_static(b"l")),
            RowRange {
                start: Bound::Excluded(k.clone()),
                end: Bound::Included(k.clone()),
            },
            RowRange {
                start: Bound::Included(k.clone()),
                end: Bound::Unbounded,
            },
            RowRange::all(),
        ] {
            assert_eq!(not_one.single_row(), None, "{not_one:?}");
        }
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn range(start: Bound<&str>, end: Bound<&str>) -> RowRange {
        RowRange {
            start: start.map(b),
            end: end.map(b),
        }
    }

    #[test]
    fn contains_respects_each_bound_kind() {
        let r = range(Bound::Included("b"), Bound::Excluded("d"));
        assert!(!r.contains(b"a") && r.contains(b"b") && r.contains(b"c") && !r.contains(b"d"));
        let r = range(Bound::Excluded("b"), Bound::Included("d"));
        assert!(!r.contains(b"b") && r.contains(b"b\0") && r.contains(b"d") && !r.contains(b"d\0"));
        assert!(RowRange::all().contains(b"") && RowRange::all().contains(b"\xff\xff"));
        assert!(
            RowRange::single(b("x")).contains(b"x") && !RowRange::single(b("x")).contains(b"xa")
        );
        assert_eq!(
            RowRange::half_open(b("a"), b("b")),
            range(Bound::Included("a"), Bound::Excluded("b"))
        );
    }

    #[test]
    fn emptiness() {
        use Bound::*;
        assert!(!RowRange::all().is_empty());
        assert!(range(Included("b"), Included("a")).is_empty());
        assert!(!range(Included("a"), Included("a")).is_empty());
        assert!(range(Included("a"), Excluded("a")).is_empty());
        assert!(range(Excluded("a"), Included("a")).is_empty());
        assert!(range(Excluded("a"), Excluded("a\0")).is_empty());
        assert!(!range(Excluded("a"), Excluded("a\0\0")).is_empty());
        assert!(!range(Excluded("a"), Excluded("b")).is_empty());
        assert!(range(Unbounded, Excluded("")).is_empty());
    }

    #[test]
    fn intersect_takes_the_stricter_bounds() {
        use Bound::*;
        let a = range(Included("b"), Excluded("m"));
        let c = range(Excluded("b"), Included("z"));
        assert_eq!(a.intersect(&c), Some(range(Excluded("b"), Excluded("m"))));
        assert_eq!(a.intersect(&RowRange::all()), Some(a.clone()));
        assert_eq!(a.intersect(&range(Included("m"), Unbounded)), None);
        assert_eq!(
            range(Unbounded, Included("k")).intersect(&range(Included("c"), Excluded("k"))),
            Some(range(Included("c"), Excluded("k")))
        );
    }

    #[test]
    fn intersect_agrees_with_contains() {
        use Bound::*;
        let rows = ["", "a", "a\0", "b", "c"];
        let bounds = |s: &'static str| [Unbounded, Included(s), Excluded(s)];
        let mut ranges = Vec::new();
        for s in rows {
            for e in rows {
                for sb in bounds(s) {
                    for eb in bounds(e) {
                        ranges.push(range(sb, eb));
                    }
                }
            }
        }
        for x in &ranges {
            if x.is_empty() {
                assert!(!rows.iter().any(|r| x.contains(r.as_bytes())), "{x:?}");
            }
            for y in &ranges {
                let both = x.intersect(y);
                for r in rows {
                    let want = x.contains(r.as_bytes()) && y.contains(r.as_bytes());
                    let got = both.as_ref().is_some_and(|z| z.contains(r.as_bytes()));
                    assert_eq!(got, want, "{x:?} & {y:?} at {r:?}");
                }
            }
        }
    }
}
