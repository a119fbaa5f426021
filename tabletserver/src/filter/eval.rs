//! Applying a compiled [`Filter`] to one row.
//!
//! The working row is a list of [`Item`]s: an index into the input cells plus the
//! transformations applied so far (value stripped, label). Items are small and `Copy`, so
//! filtering, copying for an interleave and sorting never touch the cells' bytes; [`OutCell`]s
//! are built once at the end. Every filter keeps items in input order (an interleave re-sorts
//! its union), and the input is sorted by family, qualifier, then timestamp newest first, so
//! "sorted by index" is the output order Bigtable wants, with duplicates next to each other.
//!
//! Cells that reach a `sink` leave the tree at once and join the row's output at the end.

use std::ops::Bound;

use rand::{Rng, RngCore};

use super::compile::{Filter, Node};
use super::output::OutCell;
use crate::engine::Cell;

/// One cell of the working row.
#[derive(Debug, Clone, Copy)]
struct Item {
    /// Index into the input cells.
    idx: usize,
    /// Label id, if a label was applied.
    label: Option<usize>,
    stripped: bool,
}

/// What every node sees while the row is evaluated.
struct Ctx<'a> {
    row_key: &'a [u8],
    cells: &'a [Cell],
    rng: &'a mut dyn RngCore,
    /// Items that reached a sink.
    sunk: Vec<Item>,
}

impl Filter {
    /// The cells of the row `row_key` that pass the filter, in output order. Takes the cells:
    /// each output cell moves out of them (cloning only a cell that is output more than once,
    /// as an interleave may), so the scan path does not count references up and down again
    /// for every byte string of every cell.
    pub fn apply(&self, row_key: &[u8], cells: Vec<Cell>, rng: &mut dyn RngCore) -> Vec<OutCell> {
        if matches!(self.root, Node::PassAll) {
            return cells
                .into_iter()
                .map(|c| out_cell(c, None, false))
                .collect();
        }
        let mut items: Vec<Item> = (0..cells.len())
            .map(|idx| Item {
                idx,
                label: None,
                stripped: false,
            })
            .collect();
        let mut ctx = Ctx {
            row_key,
            cells: &cells,
            rng,
            sunk: Vec::new(),
        };
        eval(&self.root, &mut items, &mut ctx);
        if !ctx.sunk.is_empty() {
            items.append(&mut ctx.sunk);
            items.sort_by_key(|it| it.idx); // stable: runs of sorted items merge cheaply
        }
        // Each cell output at most once (indices strictly increasing) can be moved out.
        let once = items.windows(2).all(|w| w[0].idx < w[1].idx);
        let mut cells: Vec<Option<Cell>> = cells.into_iter().map(Some).collect();
        items
            .into_iter()
            .filter_map(|it| {
                let slot = cells.get_mut(it.idx)?;
                let cell = if once { slot.take() } else { slot.clone() }?;
                let label = it.label.and_then(|l| self.labels.get(l));
                Some(out_cell(cell, label, it.stripped))
            })
            .collect()
    }
}

fn out_cell(c: Cell, label: Option<&String>, stripped: bool) -> OutCell {
    OutCell {
        family: c.family,
        qualifier: c.qualifier,
        timestamp: c.timestamp,
        value: if stripped {
            bytes::Bytes::new()
        } else {
            c.value
        },
        labels: label.map(|l| vec![l.clone()]).unwrap_or_default(),
    }
}

fn eval(node: &Node, items: &mut Vec<Item>, ctx: &mut Ctx<'_>) {
    if items.is_empty() {
        return; // no filter makes cells out of nothing
    }
    let cells = ctx.cells;
    let cell = |it: &Item| cells.get(it.idx);
    match node {
        Node::Chain(nodes) => {
            for n in nodes {
                eval(n, items, ctx);
                if items.is_empty() {
                    break;
                }
            }
        }
        Node::Interleave(nodes) => {
            let input = std::mem::take(items);
            let mut branch = Vec::with_capacity(input.len());
            for n in nodes {
                branch.clear();
                branch.extend_from_slice(&input);
                eval(n, &mut branch, ctx);
                items.extend_from_slice(&branch);
            }
            items.sort_by_key(|it| it.idx);
        }
        Node::Condition {
            predicate,
            true_filter,
            false_filter,
        } => {
            let mut probe = items.clone();
            eval(predicate, &mut probe, ctx);
            let branch = if probe.is_empty() {
                false_filter
            } else {
                true_filter
            };
            match branch {
                Some(n) => eval(n, items, ctx),
                None => items.clear(),
            }
        }
        Node::Sink => ctx.sunk.append(items),
        Node::PassAll => {}
        Node::BlockAll => items.clear(),
        Node::RowKeyRegex(re) => {
            if !re.is_match(ctx.row_key) {
                items.clear();
            }
        }
        Node::RowSample(p) => {
            if ctx.rng.random::<f64>() >= *p {
                items.clear();
            }
        }
        Node::FamilyRegex { re, .. } => {
            items.retain(|it| cell(it).is_some_and(|c| re.is_match(&c.family)))
        }
        Node::QualifierRegex(re) => {
            items.retain(|it| cell(it).is_some_and(|c| re.is_match(&c.qualifier)))
        }
        Node::ColumnRange { family, start, end } => items.retain(|it| {
            cell(it).is_some_and(|c| c.family == family && in_range(&c.qualifier, start, end))
        }),
        Node::TimestampRange { start, end } => {
            items.retain(|it| cell(it).is_some_and(|c| *start <= c.timestamp && c.timestamp < *end))
        }
        Node::ValueRegex(re) => items.retain(|it| {
            cell(it).is_some_and(|c| re.is_match(if it.stripped { b"" } else { &c.value }))
        }),
        Node::ValueRange { start, end } => items.retain(|it| {
            cell(it).is_some_and(|c| in_range(if it.stripped { b"" } else { &c.value }, start, end))
        }),
        Node::CellsPerRowOffset(n) => {
            items.drain(..(*n).min(items.len()));
        }
        Node::CellsPerRowLimit(n) => items.truncate(*n),
        Node::CellsPerColumnLimit(n) => {
            let mut prev: Option<usize> = None;
            let mut count = 0;
            items.retain(|it| {
                let same = prev.is_some_and(|p| {
                    p == it.idx
                        || matches!((cells.get(p), cell(it)), (Some(a), Some(b))
                            if a.family == b.family && a.qualifier == b.qualifier)
                });
                count = if same { count + 1 } else { 1 };
                prev = Some(it.idx);
                count <= *n
            });
        }
        Node::StripValue => items.iter_mut().for_each(|it| it.stripped = true),
        Node::Label(id) => items.iter_mut().for_each(|it| it.label = Some(*id)),
    }
}

fn in_range(v: &[u8], start: &Bound<bytes::Bytes>, end: &Bound<bytes::Bytes>) -> bool {
    let above = match start {
        Bound::Unbounded => true,
        Bound::Included(s) => v >= &s[..],
        Bound::Excluded(s) => v > &s[..],
    };
    let below = match end {
        Bound::Unbounded => true,
        Bound::Included(e) => v <= &e[..],
        Bound::Excluded(e) => v < &e[..],
    };
    above && below
}
