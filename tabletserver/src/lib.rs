//! The tablet server: the storage engine (`engine`) that keeps one tablet's data, the Cloud
//! Bigtable row filters applied to what it reads (`filter`), and (in a later issue) the gRPC
//! service that serves tablets to clients and obeys the master.
//!
//! Reading order: `engine` — its module doc walks the write path, the read path and compaction;
//! then `filter`.

pub mod engine;
pub mod filter;
pub mod server;
