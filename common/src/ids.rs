//! Identifiers and keys as newtypes, so a tablet id is never mistaken for a table id.

use std::fmt;

use bytes::Bytes;

/// A table's numeric id. 0 is the root tablet (META0), 1 is METADATA, user tables start at 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableId(pub u64);

impl TableId {
    /// The root tablet's table (META0); it never splits.
    pub const ROOT: TableId = TableId(0);
    /// The METADATA table.
    pub const METADATA: TableId = TableId(1);
    /// The first id a user table may have.
    pub const FIRST_USER: TableId = TableId(2);
}

/// A tablet's id, unique in a cluster for its whole life (children of a split get new ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TabletId(pub u64);

impl fmt::Display for TabletId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A tablet server's id (also the name of its commit-log directory).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerId(pub String);

impl fmt::Display for ServerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A fencing epoch (master epoch or tablet epoch); only grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Epoch(pub u64);

/// A row key: 1 byte to 4 KiB of arbitrary bytes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RowKey(pub Bytes);

impl RowKey {
    /// The longest row key accepted.
    pub const MAX_LEN: usize = 4 * 1024;
}

impl From<&[u8]> for RowKey {
    fn from(b: &[u8]) -> Self {
        RowKey(Bytes::copy_from_slice(b))
    }
}

/// The id of an immutable file on the storage root (an SSTable): 48 bits of milliseconds since
/// the Unix epoch then 80 random bits, so ids from different servers never collide and sort
/// roughly by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileId(pub u128);

impl FileId {
    /// A fresh id from the wall clock (milliseconds) and the thread-local random generator.
    pub fn generate(now_millis: u64) -> FileId {
        let random: u128 = rand::random::<u128>() & ((1u128 << 80) - 1);
        FileId((u128::from(now_millis & ((1 << 48) - 1)) << 80) | random)
    }

    /// Parses the 32-hex-digit form written by `Display`.
    pub fn parse(s: &str) -> Option<FileId> {
        if s.len() != 32 {
            return None;
        }
        u128::from_str_radix(s, 16).ok().map(FileId)
    }
}

impl fmt::Display for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_id_round_trips_and_differs() {
        let a = FileId::generate(1_700_000_000_000);
        let b = FileId::generate(1_700_000_000_000);
        assert_ne!(a, b);
        assert_eq!(FileId::parse(&a.to_string()), Some(a));
        assert_eq!(FileId::parse("xyz"), None);
        assert!(FileId::generate(2) > FileId::generate(1));
    }
}
