//! The lock service's durable Raft storage for openraft 0.9 (`storage-v2`): `LogStore`
//! (`RaftLogStorage`: a segmented, checksummed log plus the vote, the committed id and the last
//! purged id) and `StateMachineStore` (`RaftStateMachine`: the in-memory `LockState` with
//! durable snapshots). `open_storage` opens both from one data directory.
//!
//! On-disk layout of a data directory:
//!
//! ```text
//! <data dir>/
//!   LOCK                        flock'ed while a store has the directory open
//!   log/
//!     vote                      blob TLKVOTE1: the vote (postcard), replaced atomically
//!     purged                    blob TLKPURG1: last purged log id, replaced atomically
//!     00000000000000000001.seg  segment: "TLKLOG01" header, then frames
//!     00000000000000000002.seg  (ids consecutive; only the last one is written)
//!   snapshot/
//!     current                   blob TLKSNAP1: [meta_len u32][SnapshotMeta][LockState bytes]
//! ```
//!
//! A frame is `magic "TLKR" | body_len u32 | crc32c u32 | batch_start u64 | kind u8 | body`
//! (`record.rs`); kind 1 is a log entry (`openraft::Entry`, postcard), kind 2 the committed
//! log id. A blob is `magic [8] | body_len u32 | crc32c u32 | body`. "Atomically" means temp
//! file + fsync + rename + directory fsync.
//!
//! Durability contract (openraft's `storage/v2.rs` requirements):
//! - `append` returns without waiting for the disk: the entries are readable (through
//!   `LogReader` and `get_log_state`) when it returns, held in memory as pending until they are
//!   durable. Its callback is answered only after the `fdatasync` that covers them. The writer
//!   group-commits: every append queued while it was busy goes into one `pwrite` and one
//!   `fdatasync` (bounded by entries and bytes), and the callbacks are answered in queue order.
//!   Caveat: openraft 0.9.25's `RaftCore::append_to_log` awaits each callback before it
//!   runs its next command, so on this version a batch holds one append (one client write on
//!   the leader, one AppendEntries on a follower); the batching pays off once the core
//!   pipelines appends (0.10) or the service packs several requests into one entry.
//! - All writes run in queue order on one writer thread, never on the async runtime; the
//!   queue is bounded (`append` waits for room). `save_vote`, `truncate` and `purge` end a
//!   batch and return after their own durability; `save_vote` returns after the vote file is
//!   renamed into place and the directory is fsynced, so after every append queued before it.
//! - Because openraft awaits each truncate and purge, the appends queued before one are durable
//!   and answered when it runs and no pending entry is left: a truncate of entries that were
//!   pending when it was called cuts them after they became durable (`log_writer.rs`).
//! - A failed write poisons the writer: the pending entries are dropped, the failed batch and
//!   every later write get an error, and `append` refuses at once.
//! - `purge` makes `purged` durable before deleting any segment; it frees whole segments.
//! - `truncate` deletes later segments (last first), then cuts the segment holding the first
//!   removed entry; a crash midway leaves a shorter log, never a hole.
//! - The committed id rides on the next write (or the close), see
//!   `LogStore::save_committed`; losing it only means replaying less at restart.
//! - On open, damage at the end of the last segment that only its last write can have caused
//!   is cut off (a torn write); any other bad checksum is `StoreError::Corrupt`.
//!
//! Encoding: entries, the vote, log ids and snapshot metadata are postcard (compact, not
//! self-describing), so the serde types they contain (`state::Request`, openraft's types) must
//! not use `#[serde(untagged)]`, `flatten` or `skip_serializing_if`; the format fixture test in
//! `tests/store_suite.rs` catches a change of encoding.
//!
//! Reading order: `record` (frame and blob codecs), `segment` (scan and torn-tail rule),
//! `durable` (atomic replace, directory lock), `log_store` (the openraft facade and the read
//! path), `log_writer` (the writer thread and recovery), `snapshot_file`, `state_machine`,
//! `open`, `error`.

mod durable;
mod error;
mod log_store;
mod log_writer;
mod open;
mod record;
mod segment;
mod snapshot_file;
mod state_machine;
#[cfg(test)]
mod test_hooks;
#[cfg(test)]
mod tests;

pub use error::StoreError;
pub use log_store::{LogReader, LogStore};
pub use open::{StorageOptions, open_storage, open_storage_with};
pub use state_machine::{LockSnapshotBuilder, StateHandle, StateMachineStore};
