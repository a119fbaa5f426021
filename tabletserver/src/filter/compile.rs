//! `RowFilter` (proto) -> [`Filter`] (compiled): validation and the compiled tree.
//!
//! Validation mirrors Cloud Bigtable (data.proto's comments, and the Go emulator where they are
//! silent); every failure is a [`FilterError`] naming the offending field:
//! - chain and interleave need at least two filters;
//! - `sink`, `pass_all_filter`, `block_all_filter` and `strip_value_transformer` must be true
//!   when set;
//! - `sink` cannot appear anywhere under a condition;
//! - a chain may have at most one sub-filter containing `apply_label_transformer`, so a cell
//!   carries at most one label;
//! - labels match `[a-z0-9\-]{1,15}`; `row_key_regex_filter` is not empty;
//!   `family_name_regex_filter` has no `:`; every regex parses (see `regex`);
//! - `row_sample_filter` is in `(0, 1]`; limits are >= 1 and the offset >= 0;
//! - timestamp bounds are >= 0 and `start <= end` unless `end` is 0 (infinity);
//! - a column range names a family;
//! - the tree nests at most [`MAX_DEPTH`] levels, holds at most [`MAX_FILTERS`] filters and
//!   [`MAX_REGEXES`] regexes, and copies a cell at most [`MAX_COPIES_PER_CELL`] times, so that
//!   hostile input costs bounded stack, memory and time.
//!
//! A `RowFilter` with no filter set passes every cell, as data.proto says ("If none are set,
//! this RowFilter returns all cells in the input row"); so does a condition without a predicate.

use std::fmt::Write as _;
use std::ops::Bound;

use bytes::Bytes;
use tabula_proto::google::bigtable::v2::{
    ColumnRange, RowFilter, TimestampRange, ValueRange, column_range, row_filter::Filter as F,
    value_range,
};

use super::error::FilterError;
use super::pushdown;
use super::regex::FullMatch;
use crate::engine::CellFilter;

/// How deep chains, interleaves and conditions may nest.
pub const MAX_DEPTH: usize = 64;
/// The longest label.
pub const MAX_LABEL_CHARS: usize = 15;
/// The most filters (nodes of the tree, at any depth) in one `RowFilter`.
pub const MAX_FILTERS: usize = 4096;
/// The most regexes in one `RowFilter` (each compiles to a bounded program, see `regex`).
pub const MAX_REGEXES: usize = 256;
/// The most copies of one input cell a filter may make (interleaves copy the row once per
/// branch, and a chain of interleaves multiplies the copies), so that a small filter cannot
/// make a row's working set explode.
pub const MAX_COPIES_PER_CELL: u64 = 1024;

/// A compiled, validated row filter: apply it to each row with [`Filter::apply`].
#[derive(Debug, Clone)]
pub struct Filter {
    pub(super) root: Node,
    /// Labels by id (`Node::Label` holds an index into this).
    pub(super) labels: Vec<String>,
    pub(super) pushdown: CellFilter,
}

/// One node of the compiled tree.
#[derive(Debug, Clone)]
pub(super) enum Node {
    Chain(Vec<Node>),
    Interleave(Vec<Node>),
    Condition {
        predicate: Box<Node>,
        true_filter: Option<Box<Node>>,
        false_filter: Option<Box<Node>>,
    },
    Sink,
    PassAll,
    BlockAll,
    RowKeyRegex(FullMatch),
    RowSample(f64),
    FamilyRegex {
        re: FullMatch,
        /// The families it matches when the pattern is a plain `a|b|c` list (for pushdown).
        literals: Option<Vec<Bytes>>,
    },
    QualifierRegex(FullMatch),
    ColumnRange {
        family: Bytes,
        start: Bound<Bytes>,
        end: Bound<Bytes>,
    },
    /// `start <= ts < end`.
    TimestampRange {
        start: i64,
        end: i64,
    },
    ValueRegex(FullMatch),
    ValueRange {
        start: Bound<Bytes>,
        end: Bound<Bytes>,
    },
    CellsPerRowOffset(usize),
    CellsPerRowLimit(usize),
    CellsPerColumnLimit(usize),
    StripValue,
    Label(usize),
}

impl Filter {
    /// Validates and compiles a proto filter.
    pub fn compile(f: &RowFilter) -> Result<Filter, FilterError> {
        let mut c = Compiler {
            path: String::new(),
            labels: Vec::new(),
            filters: 0,
            regexes: 0,
        };
        let (root, _) = c.node(f, 0, false)?;
        let copies = copies_per_cell(&root);
        if copies > MAX_COPIES_PER_CELL {
            return Err(FilterError::Invalid {
                path: "filter".to_owned(),
                reason: format!(
                    "the filter copies each cell up to {copies} times, more than the limit of \
                     {MAX_COPIES_PER_CELL}"
                ),
            });
        }
        let pushdown = pushdown::derive(&root);
        Ok(Filter {
            root,
            labels: c.labels,
            pushdown,
        })
    }

    /// The filter that returns every cell unchanged.
    pub fn pass_all() -> Filter {
        Filter {
            root: Node::PassAll,
            labels: Vec::new(),
            pushdown: CellFilter::default(),
        }
    }

    /// A conservative pushdown for the engine: reading with this `CellFilter` and then applying
    /// the filter gives the same cells as applying it to the unfiltered row. Derived from the
    /// leading cell-by-cell filters of a top-level chain (families, single columns, time ranges,
    /// and a `cells_per_column_limit` when everything before it is expressed exactly);
    /// `CellFilter::default()` when nothing is known.
    pub fn pushdown(&self) -> CellFilter {
        self.pushdown.clone()
    }
}

struct Compiler {
    /// The current field path, e.g. `chain.filters[2]`.
    path: String,
    labels: Vec<String>,
    /// Filters compiled so far.
    filters: usize,
    /// Regexes compiled so far.
    regexes: usize,
}

impl Compiler {
    fn invalid(&self, field: &str, reason: impl Into<String>) -> FilterError {
        FilterError::Invalid {
            path: self.at(field),
            reason: reason.into(),
        }
    }

    fn at(&self, field: &str) -> String {
        match (self.path.is_empty(), field.is_empty()) {
            (true, true) => "filter".to_owned(),
            (true, false) => field.to_owned(),
            (false, true) => self.path.clone(),
            (false, false) => format!("{}.{field}", self.path),
        }
    }

    fn regex(&mut self, field: &str, pattern: &[u8]) -> Result<FullMatch, FilterError> {
        self.regexes += 1;
        if self.regexes > MAX_REGEXES {
            return Err(self.invalid(
                field,
                format!("more than {MAX_REGEXES} regexes in one filter"),
            ));
        }
        FullMatch::new(pattern).map_err(|message| FilterError::Regex {
            path: self.at(field),
            message,
        })
    }

    /// Runs `f` with `segment` appended to the path.
    fn nested<T>(&mut self, segment: &str, f: impl FnOnce(&mut Self) -> T) -> T {
        let len = self.path.len();
        if !self.path.is_empty() {
            self.path.push('.');
        }
        self.path.push_str(segment);
        let out = f(self);
        self.path.truncate(len);
        out
    }

    /// Compiles one filter; the flag says whether it contains a label.
    fn node(
        &mut self,
        f: &RowFilter,
        depth: usize,
        in_condition: bool,
    ) -> Result<(Node, bool), FilterError> {
        if depth >= MAX_DEPTH {
            return Err(FilterError::TooDeep {
                path: self.at(""),
                max: MAX_DEPTH,
            });
        }
        self.filters += 1;
        if self.filters > MAX_FILTERS {
            return Err(self.invalid("", format!("more than {MAX_FILTERS} filters in one filter")));
        }
        let Some(filter) = &f.filter else {
            return Ok((Node::PassAll, false));
        };
        let node = match filter {
            F::Chain(chain) => return self.list("chain", &chain.filters, depth, in_condition),
            F::Interleave(il) => return self.list("interleave", &il.filters, depth, in_condition),
            F::Condition(cond) => {
                return self.nested("condition", |c| {
                    let branch = |c: &mut Self, field: &str, f: Option<&RowFilter>| match f {
                        None => Ok((None, false)),
                        Some(f) => c
                            .nested(field, |c| c.node(f, depth + 1, true))
                            .map(|(n, l)| (Some(Box::new(n)), l)),
                    };
                    let (predicate, l0) =
                        branch(c, "predicate_filter", cond.predicate_filter.as_deref())?;
                    let (true_filter, l1) = branch(c, "true_filter", cond.true_filter.as_deref())?;
                    let (false_filter, l2) =
                        branch(c, "false_filter", cond.false_filter.as_deref())?;
                    let node = Node::Condition {
                        predicate: predicate.unwrap_or(Box::new(Node::PassAll)),
                        true_filter,
                        false_filter,
                    };
                    // A label in the predicate counts too: data.proto forbids chaining filters that
                    // *contain* labels, wherever they are.
                    Ok((node, l0 || l1 || l2))
                });
            }
            F::Sink(set) => {
                if in_condition {
                    return Err(FilterError::SinkInCondition {
                        path: self.at("sink"),
                    });
                }
                self.must_be_true("sink", *set)?;
                Node::Sink
            }
            F::PassAllFilter(set) => {
                self.must_be_true("pass_all_filter", *set)?;
                Node::PassAll
            }
            F::BlockAllFilter(set) => {
                self.must_be_true("block_all_filter", *set)?;
                Node::BlockAll
            }
            F::StripValueTransformer(set) => {
                self.must_be_true("strip_value_transformer", *set)?;
                Node::StripValue
            }
            F::RowKeyRegexFilter(p) => {
                if p.is_empty() {
                    return Err(self.invalid("row_key_regex_filter", "must not be empty"));
                }
                Node::RowKeyRegex(self.regex("row_key_regex_filter", p)?)
            }
            F::RowSampleFilter(p) => {
                if !(*p > 0.0 && *p <= 1.0) {
                    return Err(self.invalid(
                        "row_sample_filter",
                        format!("probability {p} is not in (0, 1]"),
                    ));
                }
                Node::RowSample(*p)
            }
            F::FamilyNameRegexFilter(p) => {
                if p.contains(':') {
                    return Err(self.invalid("family_name_regex_filter", "must not contain ':'"));
                }
                Node::FamilyRegex {
                    re: self.regex("family_name_regex_filter", p.as_bytes())?,
                    literals: literal_families(p),
                }
            }
            F::ColumnQualifierRegexFilter(p) => {
                Node::QualifierRegex(self.regex("column_qualifier_regex_filter", p)?)
            }
            F::ValueRegexFilter(p) => Node::ValueRegex(self.regex("value_regex_filter", p)?),
            F::ColumnRangeFilter(r) => self.column_range(r)?,
            F::TimestampRangeFilter(r) => self.timestamp_range(r)?,
            F::ValueRangeFilter(r) => value_range_node(r),
            F::CellsPerRowOffsetFilter(n) => {
                let n = usize::try_from(*n).map_err(|_| {
                    self.invalid("cells_per_row_offset_filter", "must not be negative")
                })?;
                Node::CellsPerRowOffset(n)
            }
            F::CellsPerRowLimitFilter(n) => {
                Node::CellsPerRowLimit(self.positive("cells_per_row_limit_filter", *n)?)
            }
            F::CellsPerColumnLimitFilter(n) => {
                Node::CellsPerColumnLimit(self.positive("cells_per_column_limit_filter", *n)?)
            }
            F::ApplyLabelTransformer(label) => {
                let valid = !label.is_empty()
                    && label.len() <= MAX_LABEL_CHARS
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
                if !valid {
                    return Err(self.invalid(
                        "apply_label_transformer",
                        format!(
                            "label {label:?} must match [a-z0-9\\-]+ and be at most \
                             {MAX_LABEL_CHARS} characters"
                        ),
                    ));
                }
                let id = match self.labels.iter().position(|l| l == label) {
                    Some(id) => id,
                    None => {
                        self.labels.push(label.clone());
                        self.labels.len() - 1
                    }
                };
                return Ok((Node::Label(id), true));
            }
        };
        Ok((node, false))
    }

    /// A chain or an interleave.
    fn list(
        &mut self,
        field: &str,
        filters: &[RowFilter],
        depth: usize,
        in_condition: bool,
    ) -> Result<(Node, bool), FilterError> {
        if filters.len() < 2 {
            return Err(self.invalid(
                &format!("{field}.filters"),
                format!("needs at least 2 filters, has {}", filters.len()),
            ));
        }
        let mut nodes = Vec::with_capacity(filters.len());
        let mut labelled: Option<usize> = None;
        for (i, f) in filters.iter().enumerate() {
            let mut segment = String::with_capacity(field.len() + 12);
            let _ = write!(segment, "{field}.filters[{i}]");
            let (node, has_label) =
                self.nested(&segment, |c| c.node(f, depth + 1, in_condition))?;
            if has_label {
                match labelled {
                    Some(first) if field == "chain" => {
                        return Err(FilterError::MultipleLabels {
                            path: self.at(field),
                            first,
                            second: i,
                        });
                    }
                    _ => labelled = labelled.or(Some(i)),
                }
            }
            nodes.push(node);
        }
        let node = if field == "chain" {
            Node::Chain(nodes)
        } else {
            Node::Interleave(nodes)
        };
        Ok((node, labelled.is_some()))
    }

    fn must_be_true(&self, field: &str, set: bool) -> Result<(), FilterError> {
        if set {
            Ok(())
        } else {
            Err(self.invalid(field, "must be true if set"))
        }
    }

    fn positive(&self, field: &str, n: i32) -> Result<usize, FilterError> {
        match usize::try_from(n) {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(self.invalid(field, format!("must be positive, is {n}"))),
        }
    }

    fn column_range(&self, r: &ColumnRange) -> Result<Node, FilterError> {
        if r.family_name.is_empty() {
            return Err(self.invalid("column_range_filter.family_name", "must not be empty"));
        }
        let start = match &r.start_qualifier {
            None => Bound::Unbounded,
            Some(column_range::StartQualifier::StartQualifierClosed(q)) => {
                Bound::Included(Bytes::copy_from_slice(q))
            }
            Some(column_range::StartQualifier::StartQualifierOpen(q)) => {
                Bound::Excluded(Bytes::copy_from_slice(q))
            }
        };
        let end = match &r.end_qualifier {
            None => Bound::Unbounded,
            Some(column_range::EndQualifier::EndQualifierClosed(q)) => {
                Bound::Included(Bytes::copy_from_slice(q))
            }
            Some(column_range::EndQualifier::EndQualifierOpen(q)) => {
                Bound::Excluded(Bytes::copy_from_slice(q))
            }
        };
        Ok(Node::ColumnRange {
            family: Bytes::copy_from_slice(r.family_name.as_bytes()),
            start,
            end,
        })
    }

    fn timestamp_range(&self, r: &TimestampRange) -> Result<Node, FilterError> {
        let (start, end) = (r.start_timestamp_micros, r.end_timestamp_micros);
        if start < 0 || end < 0 {
            return Err(self.invalid(
                "timestamp_range_filter",
                format!("timestamps must not be negative, range is [{start}, {end})"),
            ));
        }
        if end != 0 && start > end {
            return Err(self.invalid(
                "timestamp_range_filter",
                format!("start {start} is after end {end}"),
            ));
        }
        let end = if end == 0 { i64::MAX } else { end };
        Ok(Node::TimestampRange { start, end })
    }
}

/// How many copies of one input cell the node may output, or hold at once while it runs.
fn copies_per_cell(node: &Node) -> u64 {
    match node {
        Node::Chain(nodes) => nodes
            .iter()
            .fold(1, |acc, n| acc.saturating_mul(copies_per_cell(n))),
        Node::Interleave(nodes) => nodes
            .iter()
            .fold(0, |acc: u64, n| acc.saturating_add(copies_per_cell(n))),
        Node::Condition {
            predicate,
            true_filter,
            false_filter,
        } => [Some(predicate), true_filter.as_ref(), false_filter.as_ref()]
            .into_iter()
            .flatten()
            .map(|n| copies_per_cell(n))
            .max()
            .unwrap_or(1),
        _ => 1,
    }
}

fn value_range_node(r: &ValueRange) -> Node {
    let start = match &r.start_value {
        None => Bound::Unbounded,
        Some(value_range::StartValue::StartValueClosed(v)) => {
            Bound::Included(Bytes::copy_from_slice(v))
        }
        Some(value_range::StartValue::StartValueOpen(v)) => {
            Bound::Excluded(Bytes::copy_from_slice(v))
        }
    };
    let end = match &r.end_value {
        None => Bound::Unbounded,
        Some(value_range::EndValue::EndValueClosed(v)) => {
            Bound::Included(Bytes::copy_from_slice(v))
        }
        Some(value_range::EndValue::EndValueOpen(v)) => Bound::Excluded(Bytes::copy_from_slice(v)),
    };
    Node::ValueRange { start, end }
}

/// The families a pattern matches when it is a list of plain names (`a|b-c|d_e`), for pushdown.
fn literal_families(pattern: &str) -> Option<Vec<Bytes>> {
    let names: Vec<&str> = pattern.split('|').collect();
    let plain = |n: &&str| {
        !n.is_empty()
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    if !names.iter().all(plain) {
        return None;
    }
    Some(
        names
            .into_iter()
            .map(|n| Bytes::copy_from_slice(n.as_bytes()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_family_lists_are_recognised() {
        let bs = |v: &[&str]| v.iter().map(|s| Bytes::from(s.to_string())).collect();
        assert_eq!(literal_families("cf1"), Some(bs(&["cf1"])));
        assert_eq!(
            literal_families("a|b-c|d_e"),
            Some(bs(&["a", "b-c", "d_e"]))
        );
        assert_eq!(literal_families("cf.1"), None);
        assert_eq!(literal_families("a|"), None);
        assert_eq!(literal_families(""), None);
        assert_eq!(literal_families("a*"), None);
    }
}
