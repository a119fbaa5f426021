//! Cloud Bigtable v2 row filters (`google.bigtable.v2.RowFilter`) for the read path: compile
//! the proto once per request ([`Filter::compile`], which validates it), apply it to each row
//! the engine returns ([`Filter::apply`]), and turn the output into a `Row` message
//! ([`to_proto_row`]). [`Filter::pushdown`] is the part the engine can apply while reading.
//!
//! Semantics follow the comments on `RowFilter` in data.proto, which are the spec: chains run in
//! sequence; interleaves pool every branch's output in (family, qualifier, timestamp newest
//! first) order, keeping duplicates; conditions pick the true or false filter (none: no cells)
//! by whether the predicate outputs anything; sinks send cells straight to the row's output;
//! regexes are RE2 full matches over bytes. Pure code: no I/O, no proto type beyond the edges,
//! randomness injected.
//!
//! Reading order: `compile` (validation and the compiled tree), `regex`, `eval`, `pushdown`,
//! `output`, `error`.

mod compile;
mod error;
mod eval;
mod output;
mod pushdown;
mod regex;

pub use compile::{
    Filter, MAX_COPIES_PER_CELL, MAX_DEPTH, MAX_FILTERS, MAX_LABEL_CHARS, MAX_REGEXES,
};
pub use error::FilterError;
pub use output::{OutCell, encode_row, to_proto_row};
