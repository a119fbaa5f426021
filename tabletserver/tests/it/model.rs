//! Model test: random mutations, reads, scans, flushes, compactions and crash/reopen cycles
//! against a tablet behave exactly like a `BTreeMap` oracle. Tiny thresholds (64 KiB memtables,
//! 1 KiB blocks) make flushes and merging compactions happen in every case, and reads ask for a
//! major compaction whenever a tenth of what they sample is garbage, so background majors run
//! between and during the other operations.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use tabula_common::{LocalDir, ServerId, StorageRoot, SystemClock, TabletId};
use tabula_tabletserver::engine::commitlog::{CommitLog, CommitLogOptions};
use tabula_tabletserver::engine::compaction::ReadTrigger;
use tabula_tabletserver::engine::sstable::RowRange;
use tabula_tabletserver::engine::{
    CellFilter, Engine, EngineOptions, Mutation, RowMutation, ScanOptions, Schema, Tablet,
};

const FAMILIES: [&str; 2] = ["a", "b"];
const TABLET: TabletId = TabletId(7);

type Column = (Bytes, Bytes, Bytes); // row, family, qualifier
/// A row as compared: its key and its cells (family, qualifier, timestamp, value).
type RowCells = (Bytes, Vec<(Bytes, Bytes, i64, Bytes)>);

/// The oracle: every live cell.
#[derive(Default, Debug)]
struct Model {
    cells: BTreeMap<Column, BTreeMap<i64, Bytes>>,
}

impl Model {
    fn apply(&mut self, m: &RowMutation) {
        for mu in &m.mutations {
            match mu {
                Mutation::SetCell {
                    family,
                    qualifier,
                    timestamp,
                    value,
                } => {
                    let col = (m.row.clone(), family.clone(), qualifier.clone());
                    self.cells
                        .entry(col)
                        .or_default()
                        .insert(*timestamp, value.clone());
                }
                Mutation::DeleteFromColumn {
                    family,
                    qualifier,
                    start,
                    end,
                } => {
                    let col = (m.row.clone(), family.clone(), qualifier.clone());
                    if let Some(versions) = self.cells.get_mut(&col) {
                        versions.retain(|ts, _| !(*start <= *ts && *ts < *end));
                    }
                }
                Mutation::DeleteFromFamily { family } => {
                    self.cells
                        .retain(|(r, f, _), _| !(r == &m.row && f == family));
                }
                Mutation::DeleteFromRow => self.cells.retain(|(r, _, _), _| r != &m.row),
                // The engine refuses an unresolved add; the model's workload has none.
                Mutation::AddToCell { .. } => unreachable!("the model writes no AddToCell"),
            }
        }
        self.cells.retain(|_, v| !v.is_empty());
    }

    /// Rows in `range` as (row, [(family, qualifier, ts, value)]) in the engine's cell order.
    fn rows(&self, range: &RowRange, filter: &CellFilter) -> Vec<RowCells> {
        let mut out: Vec<RowCells> = Vec::new();
        for ((row, fam, q), versions) in &self.cells {
            if !range.contains(row) || !filter.wants_family(fam) {
                continue;
            }
            let mut n = 0;
            for (ts, v) in versions.iter().rev() {
                if filter.time_range.is_some_and(|(s, e)| *ts < s || *ts >= e) {
                    continue;
                }
                if filter.max_versions.is_some_and(|m| n >= m) {
                    break;
                }
                n += 1;
                if out.last().is_none_or(|(r, _)| r != row) {
                    out.push((row.clone(), Vec::new()));
                }
                if let Some((_, cells)) = out.last_mut() {
                    cells.push((fam.clone(), q.clone(), *ts, v.clone()));
                }
            }
        }
        out
    }
}

#[derive(Debug, Clone)]
enum Op {
    Apply(RowMutation),
    Read(Bytes, CellFilter),
    Scan(RowRange, bool, Option<usize>, CellFilter),
    Flush,
    Major,
    Reopen,
}

fn row() -> impl Strategy<Value = Bytes> {
    (0u8..12).prop_map(|i| Bytes::from(format!("row{i:02}")))
}

fn family() -> impl Strategy<Value = Bytes> {
    prop::sample::select(FAMILIES.to_vec()).prop_map(|f| Bytes::from_static(f.as_bytes()))
}

fn qualifier() -> impl Strategy<Value = Bytes> {
    prop::sample::select(vec!["", "x", "y"]).prop_map(|q| Bytes::from_static(q.as_bytes()))
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        8 => (family(), qualifier(), 0i64..6, 0usize..1500).prop_map(|(family, qualifier, timestamp, len)| {
            Mutation::SetCell { family, qualifier, timestamp, value: Bytes::from(vec![b'v'; len]) }
        }),
        2 => (family(), qualifier(), 0i64..6, 1i64..4).prop_map(|(family, qualifier, start, width)| {
            Mutation::DeleteFromColumn { family, qualifier, start, end: start + width }
        }),
        1 => family().prop_map(|family| Mutation::DeleteFromFamily { family }),
        1 => Just(Mutation::DeleteFromRow),
    ]
}

fn filter() -> impl Strategy<Value = CellFilter> {
    (
        prop::option::of(family()),
        prop::option::of((0i64..6, 1i64..6)),
        prop::option::of(1usize..3),
    )
        .prop_map(|(fam, time, versions)| CellFilter {
            families: fam.map(|f| vec![f]),
            columns: None,
            time_range: time.map(|(s, w)| (s, s + w)),
            max_versions: versions,
        })
}

fn range() -> impl Strategy<Value = RowRange> {
    let bound = || {
        prop_oneof![
            Just(Bound::Unbounded),
            row().prop_map(Bound::Included),
            row().prop_map(Bound::Excluded),
        ]
    };
    (bound(), bound()).prop_map(|(start, end)| RowRange { start, end })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        30 => (row(), prop::collection::vec(mutation(), 1..4))
            .prop_map(|(row, mutations)| Op::Apply(RowMutation { row, mutations })),
        6 => (row(), filter()).prop_map(|(r, f)| Op::Read(r, f)),
        4 => (range(), any::<bool>(), prop::option::of(1usize..5), filter())
            .prop_map(|(r, rev, lim, f)| Op::Scan(r, rev, lim, f)),
        1 => Just(Op::Flush),
        1 => Just(Op::Major),
        1 => Just(Op::Reopen),
    ]
}

struct Harness {
    _dir: tempfile::TempDir,
    storage: Arc<dyn StorageRoot>,
    generation: u32,
    tablet: Option<Tablet>,
}

impl Harness {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let storage: Arc<dyn StorageRoot> = Arc::new(LocalDir::open(dir.path()).unwrap());
        let engine = Self::engine(&storage, 0);
        let tablet = engine
            .create_tablet(TABLET, Bytes::new(), None, schema())
            .unwrap();
        Harness {
            _dir: dir,
            storage,
            generation: 0,
            tablet: Some(tablet),
        }
    }

    fn engine(storage: &Arc<dyn StorageRoot>, generation: u32) -> Arc<Engine> {
        // Each reopen is a new server (a new commit-log directory), as after a real failover.
        let server = ServerId(format!("server-{generation}"));
        let opts = CommitLogOptions {
            sync: false,
            ..CommitLogOptions::default()
        };
        let log = Arc::new(CommitLog::open(storage.clone(), server, opts).unwrap());
        let read_trigger = ReadTrigger {
            sample_every_rows: 1,
            window_entries: 16,
            garbage_percent: 10,
            rewrite_percent: 0,
        };
        Engine::new(
            storage.clone(),
            log,
            Arc::new(SystemClock),
            EngineOptions {
                read_trigger,
                ..EngineOptions::for_tests()
            },
        )
    }

    fn tablet(&self) -> &Tablet {
        self.tablet.as_ref().unwrap()
    }

    fn reopen(&mut self) {
        if let Some(t) = self.tablet.take() {
            t.close(); // memtables are lost; the commit log must bring them back
        }
        self.generation += 1;
        let engine = Self::engine(&self.storage, self.generation);
        self.tablet = Some(engine.open_tablet(TABLET, schema()).unwrap());
    }
}

fn schema() -> Schema {
    Schema::with_families(FAMILIES)
}

fn engine_rows(rows: Vec<tabula_tabletserver::engine::Row>) -> Vec<RowCells> {
    rows.into_iter()
        .map(|r| {
            let cells = r
                .cells
                .into_iter()
                .map(|c| (c.family, c.qualifier, c.timestamp, c.value))
                .collect();
            (r.key, cells)
        })
        .collect()
}

fn run(ops: Vec<Op>) {
    let mut h = Harness::new();
    let mut model = Model::default();
    for (i, op) in ops.into_iter().enumerate() {
        match op {
            Op::Apply(m) => {
                h.tablet().apply(m.clone()).unwrap();
                model.apply(&m);
            }
            Op::Read(row, f) => {
                let got = h.tablet().read_row(&row, &f).unwrap();
                let want = model.rows(
                    &RowRange {
                        start: Bound::Included(row.clone()),
                        end: Bound::Included(row),
                    },
                    &f,
                );
                assert_eq!(engine_rows(got.into_iter().collect()), want, "op {i}: read");
            }
            Op::Scan(range, reverse, limit, f) => {
                let opts = ScanOptions {
                    range: range.clone(),
                    filter: f.clone(),
                    reverse,
                    limit,
                };
                let got: Vec<_> = h.tablet().scan(opts).unwrap().map(|r| r.unwrap()).collect();
                let mut want = model.rows(&range, &f);
                if reverse {
                    want.reverse();
                }
                want.truncate(limit.unwrap_or(usize::MAX));
                assert_eq!(
                    engine_rows(got),
                    want,
                    "op {i}: scan {range:?} reverse={reverse}"
                );
            }
            Op::Flush => h.tablet().flush().unwrap(),
            Op::Major => h.tablet().major_compact().unwrap(),
            Op::Reopen => h.reopen(),
        }
    }
    // Whatever happened, a final crash and reopen loses nothing.
    h.reopen();
    let got: Vec<_> = h
        .tablet()
        .scan(ScanOptions::default())
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(
        engine_rows(got),
        model.rows(&RowRange::all(), &CellFilter::default()),
        "after reopen"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn tablet_behaves_like_a_btreemap(ops in prop::collection::vec(op(), 1..300)) {
        run(ops);
    }
}
