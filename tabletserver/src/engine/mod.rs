//! The storage engine: one tablet's data, knowing nothing of gRPC, the master or the lock
//! service.
//!
//! Write path: `Tablet::apply` validates a `RowMutation`, takes sequence numbers, appends one
//! record to the server's `CommitLog` (group commit: one fdatasync for every waiting writer),
//! inserts the entries into the active `Memtable` and makes them visible at once. A full
//! memtable freezes; the tablet's background thread flushes it to an SSTable (minor compaction,
//! merging small SSTables in when there are many) and replaces the `Manifest` atomically, which
//! advances the redo point. Read path: `read_row` and `scan` merge memtables and SSTables at a
//! snapshot sequence number (`merge`) and resolve each row's tombstones and versions (`read`).
//! Recovery: `Engine::open_tablet` loads the manifest and replays the commit-log records after
//! its redo point from every log it names.
//!
//! Reading order: `key` (entries and their order), `mutation` (what a client asks), `memtable`,
//! `commitlog` (durability), `sstable` (immutable files), `merge`, `read` and `versions` (the read
//! path), `manifest`, `compaction` (the picker, and the read trigger), `gc_policy`, `options`, then
//! `tablet`, which ties them together, and `gc` (deleting files no manifest names); `stats` holds
//! the counters the server's metrics read.

pub mod aggregate;
pub mod commitlog;
pub mod compaction;
pub mod error;
pub mod gc;
pub mod gc_policy;
pub mod key;
pub mod manifest;
pub mod memtable;
pub mod merge;
pub mod mutation;
pub mod options;
pub mod read;
pub mod sstable;
pub mod stats;
pub mod tablet;
pub mod versions;

pub use error::EngineError;
pub use gc::{GcHandle, GcStats};
pub use gc_policy::GcPolicy;
pub use mutation::{Mutation, RowMutation};
pub use options::{EngineOptions, Granularity, ManifestWritePermit, Schema};
pub use read::{Cell, CellFilter, Row};
pub use stats::{CompactionKind, EngineStats, Histogram, HistogramSnapshot};
pub use tablet::{Engine, RowIter, ScanOptions, Tablet};
