//! What part of a compiled filter the engine can apply while reading (`engine::CellFilter`).
//!
//! Invariant: for every row, applying the filter to the cells the engine returns under the
//! pushdown gives exactly what applying it to the unfiltered row gives. We derive the pushdown
//! only from the leading filters of a top-level chain (nested chains flattened) that are:
//! - cell by cell (each cell kept or dropped on its own, or transformed without changing its
//!   family, qualifier or timestamp): such a filter drops the cells the pushdown drops anyway,
//!   so the pushdown cannot change what reaches the rest of the chain; of these, a literal family
//!   list, a column range of one family, and a timestamp range are pushed;
//! - or whole-row (`row_key_regex`, `row_sample`, `pass_all`), which keep all cells or none;
//! - and, once, a `cells_per_column_limit`, pushed as `max_versions` only when every filter
//!   before it that drops cells is expressed exactly (the engine counts versions among the cells
//!   its families, columns and time range admit); the prefix ends there.
//!
//! Anything else (interleave, condition, sink, row limits and offsets) ends the prefix.

use std::collections::BTreeSet;
use std::ops::Bound;

use bytes::Bytes;

use super::compile::Node;
use crate::engine::CellFilter;

#[derive(Default)]
struct Acc {
    families: Option<BTreeSet<Bytes>>,
    columns: Option<BTreeSet<(Bytes, Bytes)>>,
    time: Option<(i64, i64)>,
    max_versions: Option<usize>,
    /// Every cell-dropping filter so far is expressed exactly by the fields above.
    exact: bool,
}

impl Acc {
    fn families(&mut self, fs: impl IntoIterator<Item = Bytes>) {
        let fs: BTreeSet<Bytes> = fs.into_iter().collect();
        self.families = Some(match self.families.take() {
            None => fs,
            Some(old) => old.intersection(&fs).cloned().collect(),
        });
    }

    fn column(&mut self, family: &Bytes, qualifier: &Bytes) {
        let col = (family.clone(), qualifier.clone());
        self.columns = Some(match self.columns.take() {
            None => BTreeSet::from([col]),
            Some(old) => old.into_iter().filter(|c| *c == col).collect(),
        });
    }

    fn time(&mut self, start: i64, end: i64) {
        self.time = Some(match self.time {
            None => (start, end),
            Some((s, e)) => (s.max(start), e.min(end)),
        });
    }

    /// Folds one filter of the chain in; `false` ends the prefix.
    fn push(&mut self, node: &Node) -> bool {
        match node {
            Node::Chain(nodes) => nodes.iter().all(|n| self.push(n)),
            Node::PassAll | Node::RowKeyRegex(_) | Node::RowSample(_) => true,
            Node::StripValue | Node::Label(_) => true,
            Node::BlockAll => {
                self.families(std::iter::empty());
                true
            }
            Node::FamilyRegex { literals, .. } => {
                match literals {
                    Some(fs) => self.families(fs.iter().cloned()),
                    None => self.exact = false,
                }
                true
            }
            Node::ColumnRange { family, start, end } => {
                self.families([family.clone()]);
                match (start, end) {
                    (Bound::Included(s), Bound::Included(e)) if s == e => self.column(family, s),
                    _ => self.exact = false,
                }
                true
            }
            Node::TimestampRange { start, end } => {
                self.time(*start, *end);
                true
            }
            Node::QualifierRegex(_) | Node::ValueRegex(_) | Node::ValueRange { .. } => {
                self.exact = false;
                true
            }
            Node::CellsPerColumnLimit(n) => {
                if self.exact {
                    self.max_versions = Some(*n);
                }
                false
            }
            Node::Interleave(_)
            | Node::Condition { .. }
            | Node::Sink
            | Node::CellsPerRowOffset(_)
            | Node::CellsPerRowLimit(_) => false,
        }
    }
}

/// The pushdown of a compiled filter (see the module doc).
pub(super) fn derive(root: &Node) -> CellFilter {
    let mut acc = Acc {
        exact: true,
        ..Acc::default()
    };
    acc.push(root);
    CellFilter {
        families: acc.families.map(|fs| fs.into_iter().collect()),
        columns: acc.columns.map(|cs| cs.into_iter().collect()),
        time_range: acc.time,
        max_versions: acc.max_versions,
    }
}
