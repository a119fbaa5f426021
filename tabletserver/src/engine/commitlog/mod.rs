//! The commit log: one per tablet server, shared by all its tablets. Every row mutation is
//! appended (as opaque payload bytes, tagged with tablet id and sequence numbers) and
//! fdatasynced before it is acknowledged; on recovery, a tablet replays its records beyond its
//! redo point (DESIGN.md section 4).
//!
//! Layout on the storage root: `logs/<server-id>/<segment number, 20 digits>.log`. A server
//! opening its log always starts a new segment after the highest existing one and never
//! appends to an old one; it rolls to a new segment once the current one would exceed
//! `CommitLogOptions::segment_bytes`.
//!
//! A segment is a header, then records back to back (all integers little-endian):
//!
//! ```text
//! segment header                               record
//! +--------------------------+                 +-------------------------------------------+
//! | magic "TABULACL"      8  |                 | crc32c        4  over every byte after it |
//! | version = 1           4  |                 | payload_len   4  <= 256 MiB               |
//! | flags                 4  |                 | tablet_id     8                           |
//! | segment number        8  |                 | seq           8  first sequence number    |
//! | server_id_len         2  |                 | entry_count   4  sequence numbers used    |
//! | server_id             n  |                 | payload       payload_len bytes           |
//! | crc32c of the above   4  |                 +-------------------------------------------+
//! +--------------------------+
//! ```
//!
//! Invariants:
//! - `append` returns only once its record is durable; concurrent appends share one write and
//!   one fdatasync (group commit). A failed write or fdatasync stops the log for good
//!   (`CommitLogError::Stopped`); nothing is retried.
//! - Every segment except the last of each run of a server was synced in full before the next
//!   one was started, so only those last segments may end in a torn tail.
//! - Decoding never panics and never allocates from an unchecked length.
//!
//! Reading order: `record` (the record codec), `header` (the segment header), `naming`
//! (paths), `scan` (one segment's bytes to records, torn tail vs corruption), `group` (group
//! commit bookkeeping), `writer` (`CommitLog`, segment rolling and GC), `reader` (`replay`).

mod error;
mod group;
mod header;
mod naming;
mod reader;
mod record;
mod scan;
mod writer;

#[cfg(test)]
mod tests;

pub use error::{CommitLogError, ReplayError};
pub use header::SegmentHeader;
pub use naming::server_log_dir;
pub use reader::{OwnLogView, ReplayStats, ReplayedRecord, replay};
pub use record::MAX_PAYLOAD_BYTES;
pub use scan::{DamageKind, ScannedRecord, SegmentDamage, SegmentScanner, scan_segment};
pub use writer::{CommitLog, CommitLogOptions, CommitLogStats, Enqueued, LogPosition};
