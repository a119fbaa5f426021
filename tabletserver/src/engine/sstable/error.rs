//! `SstableError`: everything that can go wrong writing or reading an SSTable.
//!
//! Corrupt input is always one of these values, never a panic: a checksum that does not match,
//! a length that points past its section, a footer without the magic, a format version this
//! build does not know.

use tabula_common::FileId;

use crate::engine::key::CellKey;

/// An SSTable write or read failure.
#[derive(Debug, thiserror::Error)]
pub enum SstableError {
    /// A stored CRC32C does not match the bytes it covers.
    #[error(
        "sstable {file}: checksum mismatch in {what} at offset {offset}: stored {expected:#010x}, \
         computed {actual:#010x}"
    )]
    ChecksumMismatch {
        /// The file.
        file: FileId,
        /// Which part of the file (`"data block"`, `"index"`, `"footer"`, ...).
        what: &'static str,
        /// Byte offset of that part in the file.
        offset: u64,
        /// The checksum stored in the file.
        expected: u32,
        /// The checksum of the bytes read.
        actual: u32,
    },
    /// The bytes pass their checksum but do not decode (or do not agree with each other).
    #[error("sstable {file}: corrupt: {reason}")]
    Corrupt {
        /// The file.
        file: FileId,
        /// What was wrong.
        reason: String,
    },
    /// The file does not end with the SSTable magic (not an SSTable, or truncated).
    #[error("sstable {file}: bad magic {found:02x?} (not an sstable, or truncated)")]
    BadMagic {
        /// The file.
        file: FileId,
        /// The last 8 bytes of the file.
        found: [u8; 8],
    },
    /// The footer names a format version this build cannot read.
    #[error("sstable {file}: unsupported format version {version}")]
    UnsupportedVersion {
        /// The file.
        file: FileId,
        /// The version in the footer.
        version: u32,
    },
    /// `SstableWriter::add` was given a key not strictly greater than the previous one.
    #[error("sstable entries out of order: {next:?} after {previous:?}")]
    OutOfOrder {
        /// The key added before.
        previous: Box<CellKey>,
        /// The key that does not sort after it.
        next: Box<CellKey>,
    },
    /// `SstableWriter::finish` was called with no entries; an SSTable is never empty.
    #[error("an sstable needs at least one entry")]
    Empty,
    /// A single entry is larger than a data block may be.
    #[error("entry of {bytes} bytes is larger than the {limit}-byte limit")]
    EntryTooLarge {
        /// Encoded size of the entry.
        bytes: usize,
        /// The largest entry accepted.
        limit: usize,
    },
    /// `SstableOptions` out of range.
    #[error("invalid sstable options: {0}")]
    InvalidOptions(&'static str),
    /// Reading or writing the file failed (a read past the end of a truncated file included).
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl SstableError {
    /// A `Corrupt` error naming the part of the file and what was wrong with it.
    pub(crate) fn corrupt(file: FileId, what: &str, why: &str) -> SstableError {
        SstableError::Corrupt {
            file,
            reason: format!("{what}: {why}"),
        }
    }
}
