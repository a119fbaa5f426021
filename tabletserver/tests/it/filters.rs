//! Bigtable v2 row filters: every filter kind, and combinations of chains, interleaves,
//! conditions and sinks, against a fixed multi-family, multi-column, multi-version row; row
//! sampling with a seeded RNG; validation (every invalid filter is a `FilterError`, and compiling
//! random trees never panics); the engine pushdown never changes a filter's output; grouping
//! into a `Row` message.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use bytes::Bytes;
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tabula_proto::google::bigtable::v2::row_filter::{Chain, Condition, Filter as F, Interleave};
use tabula_proto::google::bigtable::v2::{
    ColumnRange, RowFilter, TimestampRange, ValueRange, column_range, value_range,
};
use tabula_tabletserver::engine::{Cell, CellFilter};
use tabula_tabletserver::filter::{
    Filter, FilterError, MAX_DEPTH, MAX_FILTERS, MAX_REGEXES, OutCell, to_proto_row,
};

// ---------------------------------------------------------------------------------------------
// Building filters.

fn rf(f: F) -> RowFilter {
    RowFilter { filter: Some(f) }
}
fn chain(fs: Vec<RowFilter>) -> RowFilter {
    rf(F::Chain(Chain { filters: fs }))
}
fn interleave(fs: Vec<RowFilter>) -> RowFilter {
    rf(F::Interleave(Interleave { filters: fs }))
}
fn cond(p: Option<RowFilter>, t: Option<RowFilter>, f: Option<RowFilter>) -> RowFilter {
    rf(F::Condition(Box::new(Condition {
        predicate_filter: p.map(Box::new),
        true_filter: t.map(Box::new),
        false_filter: f.map(Box::new),
    })))
}
fn sink() -> RowFilter {
    rf(F::Sink(true))
}
fn pass() -> RowFilter {
    rf(F::PassAllFilter(true))
}
fn block() -> RowFilter {
    rf(F::BlockAllFilter(true))
}
fn key_re(p: &[u8]) -> RowFilter {
    rf(F::RowKeyRegexFilter(p.to_vec()))
}
fn sample(p: f64) -> RowFilter {
    rf(F::RowSampleFilter(p))
}
fn fam_re(p: &str) -> RowFilter {
    rf(F::FamilyNameRegexFilter(p.into()))
}
fn qual_re(p: &[u8]) -> RowFilter {
    rf(F::ColumnQualifierRegexFilter(p.to_vec()))
}
fn val_re(p: &[u8]) -> RowFilter {
    rf(F::ValueRegexFilter(p.to_vec()))
}
/// A bound: `Some((true, x))` closed, `Some((false, x))` open, `None` unset.
type B<'a> = Option<(bool, &'a [u8])>;
fn col_range(family: &str, start: B<'_>, end: B<'_>) -> RowFilter {
    use column_range::{EndQualifier as E, StartQualifier as S};
    rf(F::ColumnRangeFilter(ColumnRange {
        family_name: family.into(),
        start_qualifier: start.map(|(c, q)| {
            if c {
                S::StartQualifierClosed(q.to_vec())
            } else {
                S::StartQualifierOpen(q.to_vec())
            }
        }),
        end_qualifier: end.map(|(c, q)| {
            if c {
                E::EndQualifierClosed(q.to_vec())
            } else {
                E::EndQualifierOpen(q.to_vec())
            }
        }),
    }))
}
fn val_range(start: B<'_>, end: B<'_>) -> RowFilter {
    use value_range::{EndValue as E, StartValue as S};
    rf(F::ValueRangeFilter(ValueRange {
        start_value: start.map(|(c, v)| {
            if c {
                S::StartValueClosed(v.to_vec())
            } else {
                S::StartValueOpen(v.to_vec())
            }
        }),
        end_value: end.map(|(c, v)| {
            if c {
                E::EndValueClosed(v.to_vec())
            } else {
                E::EndValueOpen(v.to_vec())
            }
        }),
    }))
}
fn ts_range(start: i64, end: i64) -> RowFilter {
    rf(F::TimestampRangeFilter(TimestampRange {
        start_timestamp_micros: start,
        end_timestamp_micros: end,
    }))
}
fn offset(n: i32) -> RowFilter {
    rf(F::CellsPerRowOffsetFilter(n))
}
fn limit(n: i32) -> RowFilter {
    rf(F::CellsPerRowLimitFilter(n))
}
fn col_limit(n: i32) -> RowFilter {
    rf(F::CellsPerColumnLimitFilter(n))
}
fn strip() -> RowFilter {
    rf(F::StripValueTransformer(true))
}
fn label(l: &str) -> RowFilter {
    rf(F::ApplyLabelTransformer(l.into()))
}

// ---------------------------------------------------------------------------------------------
// The fixed row.

const KEY: &[u8] = b"user\n42";

/// `(family, qualifier, timestamp, value)`, sorted as the engine returns them.
const ROW: [(&str, &[u8], i64, &[u8]); 10] = [
    ("cf1", b"a", 30, b"v30a"),      // 0
    ("cf1", b"a", 20, b"v20a"),      // 1
    ("cf1", b"a", 10, b"v10a"),      // 2
    ("cf1", b"b", 25, b"b25"),       // 3
    ("cf1", b"b", 5, b"b5"),         // 4
    ("cf1", b"c\n\xff", 15, b"bin"), // 5
    ("cf2", b"a", 40, b"x"),         // 6
    ("cf2", b"a", 10, b""),          // 7
    ("cf2", b"zz", 1, b"zz1"),       // 8
    ("meta", b"q", 100, b"meta"),    // 9
];

fn row() -> Vec<Cell> {
    ROW.iter()
        .map(|&(f, q, ts, v)| Cell {
            family: Bytes::copy_from_slice(f.as_bytes()),
            qualifier: Bytes::copy_from_slice(q),
            timestamp: ts,
            value: Bytes::copy_from_slice(v),
        })
        .collect()
}

/// An expected output cell: `(family, qualifier, timestamp, value, labels)`.
type Out = (String, Vec<u8>, i64, Vec<u8>, Vec<String>);

fn out(c: &OutCell) -> Out {
    (
        String::from_utf8(c.family.to_vec()).unwrap(),
        c.qualifier.to_vec(),
        c.timestamp,
        c.value.to_vec(),
        c.labels.clone(),
    )
}

/// Fixture cell `i` unchanged.
fn x(i: usize) -> Out {
    let (f, q, ts, v) = ROW[i];
    (f.into(), q.to_vec(), ts, v.to_vec(), vec![])
}
/// Fixture cell `i` with a label.
fn xl(i: usize, l: &str) -> Out {
    let mut o = x(i);
    o.4 = vec![l.into()];
    o
}
/// Fixture cell `i` with its value stripped.
fn xs(i: usize) -> Out {
    let mut o = x(i);
    o.3 = vec![];
    o
}
fn xs_all(is: impl IntoIterator<Item = usize>) -> Vec<Out> {
    is.into_iter().map(x).collect()
}

/// Duplicates of one (family, qualifier, timestamp) come in an unspecified mutual order:
/// compare with them sorted.
fn normalized(mut v: Vec<Out>) -> Vec<Out> {
    v.sort_by(|a, b| {
        (&a.0, &a.1, std::cmp::Reverse(a.2), &a.4, &a.3).cmp(&(
            &b.0,
            &b.1,
            std::cmp::Reverse(b.2),
            &b.4,
            &b.3,
        ))
    });
    v
}

fn run(filter: &RowFilter) -> Vec<Out> {
    let f = Filter::compile(filter).unwrap_or_else(|e| panic!("{filter:?}: {e}"));
    let got: Vec<Out> = f
        .apply(KEY, row(), &mut StdRng::seed_from_u64(7))
        .iter()
        .map(out)
        .collect();
    let keys: Vec<_> = got
        .iter()
        .map(|o| (o.0.clone(), o.1.clone(), std::cmp::Reverse(o.2)))
        .collect();
    assert!(keys.is_sorted(), "output out of order: {got:?}");
    got
}

fn check(cases: Vec<(&str, RowFilter, Vec<Out>)>) {
    for (name, filter, want) in cases {
        assert_eq!(
            normalized(run(&filter)),
            normalized(want),
            "case {name}: {filter:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Every filter kind.

#[test]
fn every_filter_kind_on_the_fixed_row() {
    let all = || xs_all(0..10);
    check(vec![
        ("pass_all", pass(), all()),
        ("unset filter passes all", RowFilter { filter: None }, all()),
        ("block_all", block(), vec![]),
        ("row key \\C wildcard", key_re(b"user\\C42"), all()),
        ("row key dot skips newline", key_re(b"user.42"), vec![]),
        ("row key (?s) dot", key_re(b"(?s)user.42"), all()),
        ("row key is anchored", key_re(b"user"), vec![]),
        ("row key prefix", key_re(b"user\\C*"), all()),
        ("row sample 1.0", sample(1.0), all()),
        ("family literal", fam_re("cf1"), xs_all(0..6)),
        ("family dot", fam_re("cf."), xs_all(0..9)),
        ("family is anchored", fam_re("c"), vec![]),
        ("family alternation", fam_re("meta|cf2"), xs_all(6..10)),
        ("qualifier", qual_re(b"a"), xs_all([0, 1, 2, 6, 7])),
        ("qualifier dot skips newline", qual_re(b"c.*"), vec![]),
        ("qualifier \\C", qual_re(b"c\\C*"), vec![x(5)]),
        ("qualifier byte escape", qual_re(b"c\\n\\xff"), vec![x(5)]),
        ("qualifier raw byte", qual_re(b"c\n\xff"), vec![x(5)]),
        (
            "column range closed-closed",
            col_range("cf1", Some((true, b"a")), Some((true, b"b"))),
            xs_all(0..5),
        ),
        (
            "column range open start, unbounded end",
            col_range("cf1", Some((false, b"a")), None),
            xs_all(3..6),
        ),
        (
            "column range closed-open",
            col_range("cf1", Some((true, b"a")), Some((false, b"b"))),
            xs_all(0..3),
        ),
        (
            "column range open-closed",
            col_range("cf1", Some((false, b"a")), Some((true, b"b"))),
            xs_all(3..5),
        ),
        (
            "column range whole family",
            col_range("cf2", None, None),
            xs_all(6..9),
        ),
        (
            "column range unknown family",
            col_range("nope", None, None),
            vec![],
        ),
        ("timestamp range", ts_range(10, 25), xs_all([1, 2, 5, 7])),
        ("timestamp range all", ts_range(0, 0), all()),
        (
            "timestamp range open end",
            ts_range(25, 0),
            xs_all([0, 3, 6, 9]),
        ),
        ("timestamp range empty", ts_range(7, 7), vec![]),
        ("value regex", val_re(b"v.*"), xs_all(0..3)),
        ("value regex empty", val_re(b""), vec![x(7)]),
        ("value regex wildcard", val_re(b"\\C*"), all()),
        (
            "value range closed-open",
            val_range(Some((true, b"b")), Some((false, b"v20a"))),
            xs_all([2, 3, 4, 5, 9]),
        ),
        ("value range unbounded", val_range(None, None), all()),
        (
            "value range open start",
            val_range(Some((false, b"x")), None),
            vec![x(8)],
        ),
        (
            "value range closed end",
            val_range(None, Some((true, b""))),
            vec![x(7)],
        ),
        ("cells per row offset", offset(3), xs_all(3..10)),
        ("cells per row offset 0", offset(0), all()),
        ("cells per row offset past end", offset(100), vec![]),
        ("cells per row limit", limit(2), xs_all(0..2)),
        ("cells per row limit past end", limit(100), all()),
        (
            "cells per column limit 1",
            col_limit(1),
            xs_all([0, 3, 5, 6, 8, 9]),
        ),
        (
            "cells per column limit 2",
            col_limit(2),
            xs_all([0, 1, 3, 4, 5, 6, 7, 8, 9]),
        ),
        ("strip value", strip(), (0..10).map(xs).collect()),
        (
            "label",
            label("foo"),
            (0..10).map(|i| xl(i, "foo")).collect(),
        ),
    ]);
}

#[test]
fn chains_run_in_sequence() {
    check(vec![
        (
            "family then limit",
            chain(vec![fam_re("cf1"), col_limit(1)]),
            xs_all([0, 3, 5]),
        ),
        (
            "column limit before time range",
            chain(vec![col_limit(1), ts_range(0, 25)]),
            xs_all([5, 8]),
        ),
        (
            "time range before column limit",
            chain(vec![ts_range(0, 25), col_limit(1)]),
            xs_all([1, 4, 5, 7, 8]),
        ),
        (
            "strip then value regex sees empty values",
            chain(vec![fam_re("cf1"), strip(), val_re(b"")]),
            (0..6).map(xs).collect(),
        ),
        (
            "row key mismatch empties the row",
            chain(vec![key_re(b"nope"), pass()]),
            vec![],
        ),
        (
            "offset then limit",
            chain(vec![offset(2), limit(3)]),
            xs_all([2, 3, 4]),
        ),
        (
            "label in one sub-filter",
            chain(vec![qual_re(b"zz|q"), label("l")]),
            vec![xl(8, "l"), xl(9, "l")],
        ),
        (
            "nested chains",
            chain(vec![
                chain(vec![fam_re("cf.*"), qual_re(b"a")]),
                chain(vec![ts_range(0, 25), col_limit(1)]),
            ]),
            xs_all([1, 7]),
        ),
    ]);
}

#[test]
fn interleaves_pool_every_branch_keeping_duplicates() {
    check(vec![
        (
            "union with duplicates",
            interleave(vec![fam_re("cf2"), qual_re(b"a")]),
            xs_all([0, 1, 2, 6, 6, 7, 7, 8]),
        ),
        (
            "each copy has its own label",
            interleave(vec![
                chain(vec![fam_re("cf2"), label("x")]),
                chain(vec![qual_re(b"a"), label("y")]),
            ]),
            vec![
                xl(0, "y"),
                xl(1, "y"),
                xl(2, "y"),
                xl(6, "x"),
                xl(6, "y"),
                xl(7, "x"),
                xl(7, "y"),
                xl(8, "x"),
            ],
        ),
        (
            "row limit counts every copy",
            chain(vec![interleave(vec![pass(), pass()]), limit(3)]),
            xs_all([0, 0, 1]),
        ),
        (
            "row offset counts every copy",
            chain(vec![interleave(vec![pass(), pass()]), offset(17)]),
            xs_all([8, 9, 9]),
        ),
        (
            "column limit counts every copy",
            chain(vec![interleave(vec![pass(), pass()]), col_limit(2)]),
            xs_all([0, 0, 3, 3, 5, 5, 6, 6, 8, 8, 9, 9]),
        ),
        (
            "stripped and unstripped copies",
            interleave(vec![chain(vec![fam_re("meta"), strip()]), fam_re("meta")]),
            vec![xs(9), x(9)],
        ),
        (
            "blocked branches add nothing",
            interleave(vec![block(), fam_re("meta"), block()]),
            vec![x(9)],
        ),
        (
            "the proto's example",
            // f0 keeps foo,bar / foo,blah; f1 foo,bar / far,blah; here with our families.
            interleave(vec![
                chain(vec![fam_re("cf1"), qual_re(b"a"), col_limit(1)]),
                chain(vec![fam_re("cf1|cf2"), qual_re(b"a"), col_limit(1)]),
                fam_re("meta"),
            ]),
            xs_all([0, 0, 6, 9]),
        ),
    ]);
}

#[test]
fn conditions_pick_a_branch_by_the_predicate() {
    let matching = || chain(vec![fam_re("meta"), val_re(b"meta")]);
    let failing = || chain(vec![fam_re("meta"), val_re(b"nope")]);
    check(vec![
        (
            "true branch",
            cond(Some(matching()), Some(fam_re("cf2")), Some(block())),
            xs_all(6..9),
        ),
        (
            "false branch",
            cond(Some(failing()), Some(fam_re("cf2")), Some(fam_re("meta"))),
            vec![x(9)],
        ),
        (
            "missing true branch outputs nothing",
            cond(Some(matching()), None, Some(pass())),
            vec![],
        ),
        (
            "missing false branch outputs nothing",
            cond(Some(failing()), Some(pass()), None),
            vec![],
        ),
        (
            "branches see the input row, not the predicate's output",
            cond(Some(fam_re("meta")), Some(col_limit(1)), None),
            xs_all([0, 3, 5, 6, 8, 9]),
        ),
        (
            "missing predicate: matches a non-empty row",
            cond(None, Some(fam_re("meta")), Some(block())),
            vec![x(9)],
        ),
        (
            "labels on both branches",
            cond(
                Some(failing()),
                Some(label("t")),
                Some(chain(vec![fam_re("meta"), label("f")])),
            ),
            vec![xl(9, "f")],
        ),
        (
            "condition inside a chain sees the chain's intermediate row",
            chain(vec![
                fam_re("cf2"),
                cond(Some(fam_re("meta")), Some(pass()), Some(strip())),
            ]),
            (6..9).map(xs).collect(),
        ),
        (
            "condition inside an interleave",
            interleave(vec![
                cond(Some(qual_re(b"zz")), Some(fam_re("meta")), None),
                fam_re("meta"),
            ]),
            xs_all([9, 9]),
        ),
        (
            "nested conditions",
            cond(
                Some(pass()),
                Some(cond(Some(block()), Some(pass()), Some(qual_re(b"b")))),
                None,
            ),
            xs_all([3, 4]),
        ),
    ]);
}

#[test]
fn sinks_send_cells_straight_to_the_output() {
    check(vec![
        (
            "the proto's example",
            chain(vec![
                fam_re("cf1"),
                interleave(vec![pass(), chain(vec![label("foo"), sink()])]),
                qual_re(b"b"),
            ]),
            (0..6).map(|i| xl(i, "foo")).chain([x(3), x(4)]).collect(),
        ),
        ("a sink alone passes all", sink(), xs_all(0..10)),
        (
            "a sink bypasses the rest of its chain",
            chain(vec![fam_re("meta"), sink(), block()]),
            vec![x(9)],
        ),
        (
            "labelled sink",
            chain(vec![fam_re("cf2"), label("s"), sink()]),
            (6..9).map(|i| xl(i, "s")).collect(),
        ),
        (
            "a sink inside an interleave inside a chain",
            chain(vec![
                interleave(vec![chain(vec![fam_re("meta"), sink()]), pass()]),
                block(),
            ]),
            vec![x(9)],
        ),
        (
            "sunk and passed copies both appear",
            chain(vec![
                qual_re(b"zz"),
                interleave(vec![sink(), pass()]),
                strip(),
            ]),
            vec![x(8), xs(8)],
        ),
        (
            "limits after a sink do not count sunk cells",
            chain(vec![
                interleave(vec![chain(vec![fam_re("cf1"), sink()]), pass()]),
                limit(1),
            ]),
            xs_all([0, 0, 1, 2, 3, 4, 5]),
        ),
        (
            "an empty row reaches no sink",
            chain(vec![block(), sink()]),
            vec![],
        ),
    ]);
}

// ---------------------------------------------------------------------------------------------
// Row sampling.

#[test]
fn row_sample_keeps_about_p_of_the_rows() {
    let cells = row();
    let count = |p: f64, seed: u64| {
        let f = Filter::compile(&chain(vec![sample(p), fam_re("cf1")])).unwrap();
        let mut rng = StdRng::seed_from_u64(seed);
        (0..1000)
            .filter(|_| {
                let out = f.apply(KEY, cells.clone(), &mut rng);
                assert!(out.is_empty() || out.len() == 6, "whole rows only");
                !out.is_empty()
            })
            .count()
    };
    for seed in 0..5 {
        let half = count(0.5, seed);
        assert!(
            (400..=600).contains(&half),
            "seed {seed}: kept {half} of 1000"
        );
        assert_eq!(count(1.0, seed), 1000);
        let tenth = count(0.1, seed);
        assert!(
            (50..=150).contains(&tenth),
            "seed {seed}: kept {tenth} of 1000"
        );
    }
    // The same seed gives the same choices.
    assert_eq!(count(0.5, 42), count(0.5, 42));
}

// ---------------------------------------------------------------------------------------------
// Validation.

fn error_of(f: &RowFilter) -> FilterError {
    match Filter::compile(f) {
        Ok(c) => panic!("{f:?} compiled to {c:?}"),
        Err(e) => e,
    }
}

#[test]
fn invalid_filters_are_errors_naming_the_field() {
    let nest = |mut f: RowFilter, n: usize, wrap: fn(RowFilter) -> RowFilter| {
        for _ in 0..n {
            f = wrap(f);
        }
        f
    };
    let chained = |f: RowFilter| chain(vec![f, pass()]);
    let conditioned = |f: RowFilter| cond(Some(pass()), Some(f), None);
    let cases: Vec<(RowFilter, &str)> = vec![
        (chain(vec![]), "chain.filters: needs at least 2"),
        (chain(vec![pass()]), "chain.filters: needs at least 2"),
        (
            interleave(vec![pass()]),
            "interleave.filters: needs at least 2",
        ),
        (rf(F::Sink(false)), "sink: must be true"),
        (rf(F::PassAllFilter(false)), "pass_all_filter: must be true"),
        (
            rf(F::BlockAllFilter(false)),
            "block_all_filter: must be true",
        ),
        (
            rf(F::StripValueTransformer(false)),
            "strip_value_transformer: must be true",
        ),
        (
            cond(Some(sink()), None, None),
            "condition.predicate_filter.sink",
        ),
        (cond(None, Some(sink()), None), "condition.true_filter.sink"),
        (
            cond(None, None, Some(sink())),
            "condition.false_filter.sink",
        ),
        (
            cond(
                None,
                Some(chain(vec![pass(), interleave(vec![pass(), sink()])])),
                None,
            ),
            "condition.true_filter.chain.filters[1].interleave.filters[1].sink",
        ),
        (key_re(b""), "row_key_regex_filter: must not be empty"),
        (key_re(b"("), "row_key_regex_filter: invalid regex"),
        (key_re(b"a)|(b"), "row_key_regex_filter: invalid regex"),
        (
            fam_re("cf:1"),
            "family_name_regex_filter: must not contain ':'",
        ),
        (fam_re("["), "family_name_regex_filter: invalid regex"),
        (
            qual_re(b"a{2,1}"),
            "column_qualifier_regex_filter: invalid regex",
        ),
        (
            qual_re(b"\\"),
            "column_qualifier_regex_filter: invalid regex",
        ),
        (val_re(b"[\\C]"), "value_regex_filter: invalid regex"),
        (
            val_re(b"((a{100}){100}){100}"),
            "value_regex_filter: invalid regex",
        ),
        (
            chain(vec![pass(), pass(), val_re(b"*")]),
            "chain.filters[2].value_regex_filter: invalid regex",
        ),
        (sample(0.0), "row_sample_filter"),
        (sample(-0.5), "row_sample_filter"),
        (sample(1.5), "row_sample_filter"),
        (sample(f64::NAN), "row_sample_filter"),
        (sample(f64::INFINITY), "row_sample_filter"),
        (
            offset(-1),
            "cells_per_row_offset_filter: must not be negative",
        ),
        (limit(0), "cells_per_row_limit_filter: must be positive"),
        (limit(-3), "cells_per_row_limit_filter: must be positive"),
        (
            col_limit(0),
            "cells_per_column_limit_filter: must be positive",
        ),
        (
            col_limit(i32::MIN),
            "cells_per_column_limit_filter: must be positive",
        ),
        (label(""), "apply_label_transformer"),
        (label("UPPER"), "apply_label_transformer"),
        (label("sixteen-chars-xx"), "apply_label_transformer"),
        (label("a b"), "apply_label_transformer"),
        (label("é"), "apply_label_transformer"),
        (label("under_score"), "apply_label_transformer"),
        (
            chain(vec![label("a"), label("b")]),
            "chain: a chain may have at most one",
        ),
        (
            chain(vec![label("a"), interleave(vec![label("b"), pass()])]),
            "chain: a chain may have at most one",
        ),
        (
            chain(vec![cond(Some(pass()), Some(label("b")), None), label("a")]),
            "chain: a chain may have at most one",
        ),
        (
            chain(vec![
                chain(vec![pass(), label("a")]),
                chain(vec![pass(), label("b")]),
            ]),
            "chain: a chain may have at most one",
        ),
        (
            interleave(vec![pass(), chain(vec![label("a"), strip(), label("b")])]),
            "interleave.filters[1].chain: a chain may have at most one",
        ),
        (ts_range(-1, 0), "timestamp_range_filter"),
        (ts_range(0, -1), "timestamp_range_filter"),
        (
            ts_range(10, 5),
            "timestamp_range_filter: start 10 is after end 5",
        ),
        (
            col_range("", None, None),
            "column_range_filter.family_name: must not be empty",
        ),
        (nest(pass(), MAX_DEPTH, chained), "nests deeper than 64"),
        (nest(pass(), MAX_DEPTH, conditioned), "nests deeper than 64"),
        (nest(pass(), 10_000, chained), "nests deeper than 64"),
    ];
    for (f, want) in cases {
        let e = error_of(&f).to_string();
        assert!(
            e.starts_with(want) || e.contains(want),
            "{e:?} should contain {want:?}"
        );
    }
    let doublings = |n: usize| chain((0..n).map(|_| interleave(vec![pass(), pass()])).collect());
    let e = error_of(&doublings(11)).to_string();
    assert!(e.contains("copies each cell up to 2048 times"), "{e}");
    let e = error_of(&chain(
        (0..64).map(|_| interleave(vec![pass(), pass()])).collect(),
    ));
    assert!(e.to_string().contains("more than the limit"), "{e}");
    let e = error_of(&interleave(vec![pass(); MAX_FILTERS])).to_string();
    assert!(e.contains("more than 4096 filters"), "{e}");
    let e = error_of(&interleave(vec![qual_re(b"a"); MAX_REGEXES + 1])).to_string();
    assert!(
        e.contains("interleave.filters[256].column_qualifier_regex_filter: more than 256"),
        "{e}"
    );
    let f = Filter::compile(&doublings(10)).unwrap();
    assert_eq!(f.apply(KEY, row(), &mut rand::rng()).len(), 10 * 1024);
    Filter::compile(&interleave(vec![qual_re(b"a"); MAX_REGEXES])).unwrap();
    Filter::compile(&chain(vec![pass(); MAX_FILTERS - 1])).unwrap();
    // Just under the limit is fine, and labels in separate interleave branches are too.
    Filter::compile(&nest(pass(), MAX_DEPTH - 1, chained)).unwrap();
    Filter::compile(&interleave(vec![label("a"), label("b")])).unwrap();
    Filter::compile(&chain(vec![
        interleave(vec![label("a"), label("b")]),
        strip(),
    ]))
    .unwrap();
    Filter::compile(&label("fifteen-chars-x")).unwrap();
    Filter::compile(&sample(f64::MIN_POSITIVE)).unwrap();
    Filter::compile(&ts_range(5, 5)).unwrap();
}

#[test]
fn error_paths_name_the_offending_part() {
    let f = chain(vec![pass(), block(), val_re(b"(")]);
    match error_of(&f) {
        FilterError::Regex { path, .. } => assert_eq!(path, "chain.filters[2].value_regex_filter"),
        e => panic!("{e:?}"),
    }
    let f = interleave(vec![
        pass(),
        cond(Some(pass()), Some(chain(vec![pass(), limit(0)])), None),
    ]);
    assert_eq!(
        error_of(&f).to_string(),
        "interleave.filters[1].condition.true_filter.chain.filters[1].cells_per_row_limit_filter: \
         must be positive, is 0"
    );
}

#[test]
fn compiled_filters_are_shareable() {
    fn assert_send_sync<T: Send + Sync + Clone + std::fmt::Debug>() {}
    assert_send_sync::<Filter>();
    let f = Filter::compile(&fam_re("cf1")).unwrap();
    let g = f.clone();
    std::thread::spawn(move || assert_eq!(g.apply(KEY, row(), &mut rand::rng()).len(), 6))
        .join()
        .unwrap();
    assert_eq!(
        Filter::pass_all().apply(KEY, row(), &mut rand::rng()).len(),
        10
    );
    assert_eq!(Filter::pass_all().pushdown(), CellFilter::default());
}

// ---------------------------------------------------------------------------------------------
// Pushdown.

fn bs(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

#[test]
fn pushdown_takes_the_leading_cell_filters_of_a_chain() {
    let pd = |f: RowFilter| Filter::compile(&f).unwrap().pushdown();
    assert_eq!(pd(pass()), CellFilter::default());
    assert_eq!(
        pd(fam_re("cf1|meta")),
        CellFilter {
            families: Some(vec![bs("cf1"), bs("meta")]),
            ..Default::default()
        }
    );
    assert_eq!(
        pd(chain(vec![
            fam_re("cf1"),
            ts_range(5, 0),
            col_limit(2),
            fam_re("zz")
        ])),
        CellFilter {
            families: Some(vec![bs("cf1")]),
            time_range: Some((5, i64::MAX)),
            max_versions: Some(2),
            ..Default::default()
        }
    );
    assert_eq!(
        pd(chain(vec![
            col_range("cf1", Some((true, b"a")), Some((true, b"a"))),
            chain(vec![ts_range(0, 20), ts_range(10, 30)]),
            col_limit(1),
        ])),
        CellFilter {
            families: Some(vec![bs("cf1")]),
            columns: Some(vec![(bs("cf1"), bs("a"))]),
            time_range: Some((10, 20)),
            max_versions: Some(1),
        }
    );
    // A value filter before the limit: the engine would count versions the filter drops.
    assert_eq!(
        pd(chain(vec![fam_re("cf1"), val_re(b"v.*"), col_limit(1)])),
        CellFilter {
            families: Some(vec![bs("cf1")]),
            ..Default::default()
        }
    );
    // A column limit first, then a time range: nothing after the limit is pushed.
    assert_eq!(
        pd(chain(vec![col_limit(1), ts_range(0, 25)])),
        CellFilter {
            max_versions: Some(1),
            ..Default::default()
        }
    );
    // Non-literal family regexes, interleaves, conditions and sinks end the prefix.
    assert_eq!(pd(fam_re("cf.")), CellFilter::default());
    assert_eq!(
        pd(interleave(vec![fam_re("a"), fam_re("b")])),
        CellFilter::default()
    );
    assert_eq!(pd(chain(vec![sink(), fam_re("a")])), CellFilter::default());
    assert_eq!(
        pd(chain(vec![limit(1), fam_re("a")])),
        CellFilter::default()
    );
    assert_eq!(
        pd(block()),
        CellFilter {
            families: Some(vec![]),
            ..Default::default()
        }
    );
}

/// What the engine returns under a `CellFilter` (engine/read.rs `resolve_row`): the cells of
/// wanted families and columns within the time range, then at most `max_versions` per column.
fn emulate_pushdown(cells: &[Cell], f: &CellFilter) -> Vec<Cell> {
    let mut out: Vec<Cell> = Vec::new();
    let mut count = 0;
    for c in cells {
        let family_ok = f.families.as_ref().is_none_or(|fs| fs.contains(&c.family));
        let column_ok = f.columns.as_ref().is_none_or(|cs| {
            cs.iter()
                .any(|(fam, q)| *fam == c.family && *q == c.qualifier)
        });
        let time_ok = f
            .time_range
            .is_none_or(|(s, e)| s <= c.timestamp && c.timestamp < e);
        if !(family_ok && column_ok && time_ok) {
            continue;
        }
        let same_column = out
            .last()
            .is_some_and(|l| l.family == c.family && l.qualifier == c.qualifier);
        count = if same_column { count + 1 } else { 1 };
        if f.max_versions.is_some_and(|m| count > m) {
            continue;
        }
        out.push(c.clone());
    }
    out
}

const FAMS: [&str; 3] = ["a", "b", "c"];
const QUALS: [&[u8]; 3] = [b"", b"x", b"y\n"];
const VALUES: [&[u8]; 4] = [b"", b"1", b"22", b"\xff"];

fn arb_cells() -> impl Strategy<Value = Vec<Cell>> {
    prop::collection::btree_map((0..3usize, 0..3usize, 0..12i64), 0..4usize, 0..25).prop_map(|m| {
        let mut cells: Vec<Cell> = m
            .into_iter()
            .map(|((f, q, ts), v)| Cell {
                family: bs(FAMS[f]),
                qualifier: Bytes::from_static(QUALS[q]),
                timestamp: ts,
                value: Bytes::from_static(VALUES[v]),
            })
            .collect();
        cells.sort_by(|a, b| {
            (&a.family, &a.qualifier, std::cmp::Reverse(a.timestamp)).cmp(&(
                &b.family,
                &b.qualifier,
                std::cmp::Reverse(b.timestamp),
            ))
        });
        cells
    })
}

fn arb_bound(domain: &'static [&'static [u8]]) -> impl Strategy<Value = Option<(bool, Vec<u8>)>> {
    prop::option::of((
        any::<bool>(),
        prop::sample::select(domain).prop_map(<[u8]>::to_vec),
    ))
}

/// Filters over the small domain of `arb_cells`, mostly valid.
fn arb_leaf() -> impl Strategy<Value = RowFilter> {
    const FAM_PATTERNS: [&str; 6] = ["a", "b|c", "a|c", ".", "[ab]", "z"];
    const QUAL_PATTERNS: [&[u8]; 5] = [b"", b"x", b"y\\C", b".*", b"y\n"];
    const VALUE_PATTERNS: [&[u8]; 4] = [b"", b"1|22", b"\\C+", b"\\xff"];
    const KEY_PATTERNS: [&[u8]; 2] = [b"k.*", b"nope"];
    prop_oneof![
        Just(pass()),
        Just(block()),
        Just(sink()),
        Just(strip()),
        prop::sample::select(&["l1", "l2"][..]).prop_map(label),
        prop::sample::select(&KEY_PATTERNS[..]).prop_map(key_re),
        prop::sample::select(&[0.3, 0.7, 1.0][..]).prop_map(sample),
        prop::sample::select(&FAM_PATTERNS[..]).prop_map(fam_re),
        prop::sample::select(&QUAL_PATTERNS[..]).prop_map(qual_re),
        prop::sample::select(&VALUE_PATTERNS[..]).prop_map(val_re),
        (
            prop::sample::select(&FAMS[..]),
            arb_bound(&QUALS),
            arb_bound(&QUALS)
        )
            .prop_map(|(f, s, e)| col_range(
                f,
                s.as_ref().map(|(c, q)| (*c, &q[..])),
                e.as_ref().map(|(c, q)| (*c, &q[..]))
            )),
        (0..8i64, 0..14i64).prop_map(|(s, len)| ts_range(s, if len == 0 { 0 } else { s + len })),
        (arb_bound(&VALUES), arb_bound(&VALUES)).prop_map(|(s, e)| val_range(
            s.as_ref().map(|(c, v)| (*c, &v[..])),
            e.as_ref().map(|(c, v)| (*c, &v[..]))
        )),
        (0..5i32).prop_map(offset),
        (1..5i32).prop_map(limit),
        (1..4i32).prop_map(col_limit),
    ]
}

fn arb_tree(leaf: BoxedStrategy<RowFilter>) -> impl Strategy<Value = RowFilter> {
    leaf.prop_recursive(4, 48, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 2..5).prop_map(chain),
            prop::collection::vec(inner.clone(), 2..4).prop_map(interleave),
            (
                prop::option::of(inner.clone()),
                prop::option::of(inner.clone()),
                prop::option::of(inner)
            )
                .prop_map(|(p, t, f)| cond(p, t, f)),
        ]
    })
}

/// Trees whose root is a chain, so that pushdowns are not trivially empty.
fn arb_chain_tree() -> impl Strategy<Value = RowFilter> {
    prop::collection::vec(
        prop_oneof![3 => arb_leaf(), 1 => arb_tree(arb_leaf().boxed())],
        2..6,
    )
    .prop_map(chain)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn pushdown_never_changes_the_output(
        filter in prop_oneof![3 => arb_chain_tree(), 1 => arb_tree(arb_leaf().boxed())],
        cells in arb_cells(),
        seed in any::<u64>(),
    ) {
        let Ok(f) = Filter::compile(&filter) else { return Ok(()) };
        let pd = f.pushdown();
        let full = f.apply(b"key", cells.clone(), &mut StdRng::seed_from_u64(seed));
        let pushed = f.apply(
            b"key",
            emulate_pushdown(&cells, &pd),
            &mut StdRng::seed_from_u64(seed),
        );
        let n = |v: &[OutCell]| normalized(v.iter().map(out).collect());
        prop_assert_eq!(n(&full), n(&pushed), "pushdown {:?}", pd);
    }
}

/// Any RowFilter at all: random regexes, numbers, labels, bounds, unset fields.
fn arb_any_leaf() -> impl Strategy<Value = RowFilter> {
    let bytes = || {
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..12),
            "[\\\\()\\[\\]{}|.*+?^$a-c:CQEpx0-9,&~-]{0,12}".prop_map(String::into_bytes),
        ]
    };
    let bound = || prop::option::of((any::<bool>(), prop::collection::vec(any::<u8>(), 0..3)));
    prop_oneof![
        Just(RowFilter { filter: None }),
        any::<bool>().prop_map(|b| rf(F::Sink(b))),
        any::<bool>().prop_map(|b| rf(F::PassAllFilter(b))),
        any::<bool>().prop_map(|b| rf(F::BlockAllFilter(b))),
        any::<bool>().prop_map(|b| rf(F::StripValueTransformer(b))),
        bytes().prop_map(|p| rf(F::RowKeyRegexFilter(p))),
        bytes().prop_map(|p| rf(F::FamilyNameRegexFilter(
            String::from_utf8_lossy(&p).into_owned()
        ))),
        bytes().prop_map(|p| rf(F::ColumnQualifierRegexFilter(p))),
        bytes().prop_map(|p| rf(F::ValueRegexFilter(p))),
        any::<f64>().prop_map(sample),
        any::<i32>().prop_map(offset),
        any::<i32>().prop_map(limit),
        any::<i32>().prop_map(col_limit),
        "[a-zA-Z0-9_ é-]{0,20}".prop_map(|l| label(&l)),
        (any::<i64>(), any::<i64>()).prop_map(|(s, e)| ts_range(s, e)),
        ("[a-c:]{0,2}", bound(), bound()).prop_map(|(f, s, e)| col_range(
            &f,
            s.as_ref().map(|(c, q)| (*c, &q[..])),
            e.as_ref().map(|(c, q)| (*c, &q[..]))
        )),
        (bound(), bound()).prop_map(|(s, e)| val_range(
            s.as_ref().map(|(c, v)| (*c, &v[..])),
            e.as_ref().map(|(c, v)| (*c, &v[..]))
        )),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn compiling_any_filter_never_panics(
        filter in arb_tree(arb_any_leaf().boxed()),
        cells in arb_cells(),
    ) {
        if let Ok(f) = Filter::compile(&filter) {
            let out = f.apply(b"key", cells.clone(), &mut StdRng::seed_from_u64(1));
            // Whatever it does, output cells are input cells, in order.
            for o in &out {
                prop_assert!(cells.iter().any(|c| c.family == o.family
                    && c.qualifier == o.qualifier
                    && c.timestamp == o.timestamp));
                prop_assert!(o.labels.len() <= 1);
            }
            let _ = f.pushdown();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Row messages.

/// `(timestamp, value, labels)`.
type CellShape = (i64, Vec<u8>, Vec<String>);
/// `(qualifier, cells)`.
type ColumnShape = (Vec<u8>, Vec<CellShape>);
/// `(family name, columns)`.
type FamilyShape = (String, Vec<ColumnShape>);

#[test]
fn filtered_rows_become_row_messages_grouped_by_family_and_column() {
    let f = Filter::compile(&interleave(vec![
        chain(vec![fam_re("cf1"), col_limit(1), label("newest")]),
        chain(vec![qual_re(b"a"), strip()]),
    ]))
    .unwrap();
    let cells = f.apply(KEY, row(), &mut rand::rng());
    let row = to_proto_row(Bytes::from_static(KEY), cells).unwrap();
    assert_eq!(row.key, KEY);
    let shape: Vec<FamilyShape> = row
        .families
        .into_iter()
        .map(|fam| {
            let cols = fam
                .columns
                .into_iter()
                .map(|c| {
                    let mut cells: Vec<_> = c
                        .cells
                        .into_iter()
                        .map(|c| (c.timestamp_micros, c.value.to_vec(), c.labels))
                        .collect();
                    // Duplicates (same timestamp) in an unspecified order.
                    cells.sort_by(|a, b| b.0.cmp(&a.0).then(a.2.cmp(&b.2)));
                    (c.qualifier.to_vec(), cells)
                })
                .collect();
            (fam.name, cols)
        })
        .collect();
    let s = |l: &str| vec![l.to_owned()];
    assert_eq!(
        shape,
        vec![
            (
                "cf1".into(),
                vec![
                    (
                        b"a".to_vec(),
                        vec![
                            (30, vec![], vec![]),
                            (30, b"v30a".to_vec(), s("newest")),
                            (20, vec![], vec![]),
                            (10, vec![], vec![]),
                        ]
                    ),
                    (b"b".to_vec(), vec![(25, b"b25".to_vec(), s("newest"))]),
                    (
                        b"c\n\xff".to_vec(),
                        vec![(15, b"bin".to_vec(), s("newest"))]
                    ),
                ]
            ),
            (
                "cf2".into(),
                vec![(
                    b"a".to_vec(),
                    vec![(40, vec![], vec![]), (10, vec![], vec![])]
                )]
            ),
        ]
    );
    assert_eq!(
        to_proto_row(
            Bytes::from_static(KEY),
            Filter::compile(&block())
                .unwrap()
                .apply(KEY, row_cells(), &mut rand::rng())
        ),
        None
    );
}

fn row_cells() -> Vec<Cell> {
    row()
}
