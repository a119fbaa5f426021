//! The storage engine: one tablet's data, knowing nothing of gRPC, the master or the lock
//! service.
//!
//! Reading order: `key` (entries and their order), `mutation` (what a client asks), `memtable`,
//! `commitlog` (durability), `sstable` (immutable files), `merge` and `read` (the read path),
//! `manifest`, `compaction`, then `tablet`, which ties them together.

pub mod commitlog;
pub mod key;
pub mod sstable;
