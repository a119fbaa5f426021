//! A tablet: a row range's memtables and SSTables, its write path (commit log, then memtable),
//! its read path (merge at a snapshot), its background compactions, its split and the merge of two
//! tablets.
//!
//! Reading order: `engine` (what tablets of one server share), `seq` (sequence numbers and
//! visibility), `core` (the tablet's state and recovery), `write`, `read`, `compact` (and `garbage`, the reads that ask for one), `split`,
//! `merge`.

mod aggregate;
mod compact;
mod core;
mod engine;
mod garbage;
mod merge;
mod read;
#[cfg(test)]
pub(crate) mod scratch;
mod seq;
mod split;
mod write;

pub use core::Tablet;
pub use engine::Engine;
pub use read::{RowIter, ScanOptions};
pub use write::RowGuard;
