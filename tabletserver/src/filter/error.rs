//! The one error of filter compilation. Every variant is the caller's mistake: the service maps
//! all of them to `InvalidArgument`.

/// Why a `RowFilter` was rejected. `path` names the offending part of the filter tree in proto
/// field names, e.g. `chain.filters[2].value_regex_filter`.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// A field holds a value the RowFilter documentation forbids.
    #[error("{path}: {reason}")]
    Invalid {
        /// Where in the filter tree.
        path: String,
        /// What is wrong, in lowercase prose.
        reason: String,
    },
    /// A regular expression that does not parse or is too large.
    #[error("{path}: invalid regex: {message}")]
    Regex {
        /// Where in the filter tree.
        path: String,
        /// The regex engine's explanation.
        message: String,
    },
    /// The filter tree nests deeper than `max` levels.
    #[error("{path}: filter nests deeper than {max} levels")]
    TooDeep {
        /// Where the limit was crossed.
        path: String,
        /// The nesting limit.
        max: usize,
    },
    /// A chain with more than one sub-filter that applies a label: a cell can carry only one.
    #[error(
        "{path}: a chain may have at most one sub-filter containing apply_label_transformer \
         (filters[{first}] and filters[{second}] both do)"
    )]
    MultipleLabels {
        /// The chain.
        path: String,
        /// The first sub-filter with a label.
        first: usize,
        /// The second one.
        second: usize,
    },
    /// A sink inside a condition's predicate, true or false filter.
    #[error("{path}: sink cannot be used within a condition")]
    SinkInCondition {
        /// Where the sink is.
        path: String,
    },
}
