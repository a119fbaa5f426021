//! The tablet manifest: which SSTables hold a tablet's data, and from where in the commit logs
//! recovery must replay. Replaced atomically (temp + fsync + rename + directory fsync) at
//! `tablets/<tablet-id>/manifest` on the storage root.
//!
//! ```text
//! magic "TBMF" | version:u32le (=3; 1 and 2 are read too) | body_len:u32le | body | crc32c(body):u32le
//! body = tablet_id:u64le | start_row:lenbytes | has_end:u8 | [end_row:lenbytes]
//!      | redo_seq:u64le | last_seq:u64le
//!      | sstable_count:u32le | file_id:u128le*
//!      | log_dir_count:u32le | log_dir:lenbytes*
//!      | split_count:u32le | child_tablet_id:u64le*     (version 2 and later)
//!      | timestamp_mark:i64le                           (version 3)
//! lenbytes = len:u32le | bytes
//! ```
//!
//! A manifest naming children (`split_into`) is the commit point of a split: the children's
//! manifests were stored first, and the tablet can never be opened again — loading it answers
//! its children instead.
//!
//! Invariants: every entry with `seq <= redo_seq` is in one of the SSTables; no SSTable holds
//! an entry with `seq > last_seq`; `redo_seq <= last_seq`. The tablet's range is `[start, end)`
//! (an empty start is the beginning of the table; no end is its end).

use std::ops::Bound;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tabula_common::{FileId, StorageRoot, TabletId};

use super::key::Seq;
use super::sstable::RowRange;

const MAGIC: &[u8; 4] = b"TBMF";
const VERSION: u32 = 3;
/// The first version, without `split_into`; still read.
const VERSION_1: u32 = 1;
/// The second, without `timestamp_mark`; still read.
const VERSION_2: u32 = 2;
/// Largest manifest accepted (a tablet with ~100k SSTables would be a bug anyway).
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// Why a manifest could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The bytes do not form a manifest.
    #[error("corrupt manifest {path}: {reason}")]
    Corrupt {
        /// Where it was read from.
        path: String,
        /// What was wrong.
        reason: &'static str,
    },
    /// The storage root failed.
    #[error("manifest {path}: {source}")]
    Io {
        /// Where.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// A tablet's durable state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The tablet.
    pub tablet: TabletId,
    /// First row (inclusive); empty = the table's beginning.
    pub start_row: Bytes,
    /// Row after the last (exclusive); `None` = the table's end.
    pub end_row: Option<Bytes>,
    /// Every entry with a sequence number up to here is in `sstables`.
    pub redo_seq: Seq,
    /// The largest sequence number any SSTable holds.
    pub last_seq: Seq,
    /// The SSTables, newest first.
    pub sstables: Vec<FileId>,
    /// Commit-log directories that may hold this tablet's entries beyond `redo_seq`.
    pub log_dirs: Vec<String>,
    /// The children this tablet was split into (left, right); empty for a live tablet.
    pub split_into: Vec<TabletId>,
    /// The highest server timestamp (microseconds) handed out for this tablet's writes by the
    /// time of this manifest, so that a server opening it later never hands out a lower one
    /// (0: none known).
    pub timestamp_mark: i64,
}

impl Manifest {
    /// The manifest's path for `tablet`.
    pub fn path(tablet: TabletId) -> String {
        format!("tablets/{tablet}/manifest")
    }

    /// The tablet's row range.
    pub fn range(&self) -> RowRange {
        RowRange {
            start: if self.start_row.is_empty() {
                Bound::Unbounded
            } else {
                Bound::Included(self.start_row.clone())
            },
            end: self
                .end_row
                .clone()
                .map_or(Bound::Unbounded, Bound::Excluded),
        }
    }

    /// Whether `row` is in the tablet's range.
    pub fn contains(&self, row: &[u8]) -> bool {
        row >= &self.start_row[..] && self.end_row.as_ref().is_none_or(|end| row < &end[..])
    }

    /// The encoded bytes.
    pub fn encode(&self) -> Bytes {
        let mut body = BytesMut::new();
        body.put_u64_le(self.tablet.0);
        put_bytes(&mut body, &self.start_row);
        match &self.end_row {
            Some(end) => {
                body.put_u8(1);
                put_bytes(&mut body, end);
            }
            None => body.put_u8(0),
        }
        body.put_u64_le(self.redo_seq);
        body.put_u64_le(self.last_seq);
        body.put_u32_le(self.sstables.len() as u32);
        for id in &self.sstables {
            body.put_u128_le(id.0);
        }
        body.put_u32_le(self.log_dirs.len() as u32);
        for dir in &self.log_dirs {
            put_bytes(&mut body, dir.as_bytes());
        }
        body.put_u32_le(self.split_into.len() as u32);
        for child in &self.split_into {
            body.put_u64_le(child.0);
        }
        body.put_i64_le(self.timestamp_mark);
        let mut out = BytesMut::with_capacity(body.len() + 16);
        out.put_slice(MAGIC);
        out.put_u32_le(VERSION);
        out.put_u32_le(body.len() as u32);
        out.put_slice(&body);
        out.put_u32_le(crc32c::crc32c(&body));
        out.freeze()
    }

    /// Decodes manifest bytes read from `path` (named in errors); never panics.
    pub fn decode(path: &str, mut buf: Bytes) -> Result<Manifest, ManifestError> {
        let corrupt = |reason| ManifestError::Corrupt {
            path: path.to_owned(),
            reason,
        };
        if buf.remaining() < 12 || &buf[..4] != MAGIC {
            return Err(corrupt("bad magic"));
        }
        buf.advance(4);
        let version = buf.get_u32_le();
        if ![VERSION, VERSION_1, VERSION_2].contains(&version) {
            return Err(corrupt("unsupported version"));
        }
        let len = buf.get_u32_le() as usize;
        if len > MAX_BODY_BYTES || buf.remaining() != len + 4 {
            return Err(corrupt("length does not match the file"));
        }
        let mut body = buf.split_to(len);
        if crc32c::crc32c(&body) != buf.get_u32_le() {
            return Err(corrupt("checksum mismatch"));
        }
        let parse = |body: &mut Bytes| -> Option<Manifest> {
            let tablet = TabletId(get_u64(body)?);
            let start_row = get_bytes(body)?;
            let end_row = match get_u8(body)? {
                0 => None,
                1 => Some(get_bytes(body)?),
                _ => return None,
            };
            let redo_seq = get_u64(body)?;
            let last_seq = get_u64(body)?;
            let n = get_u32(body)? as usize;
            if n.checked_mul(16)? > body.remaining() {
                return None;
            }
            let sstables = (0..n).map(|_| FileId(body.get_u128_le())).collect();
            let n = get_u32(body)? as usize;
            let mut log_dirs = Vec::with_capacity(n.min(body.remaining() / 4));
            for _ in 0..n {
                log_dirs.push(String::from_utf8(get_bytes(body)?.to_vec()).ok()?);
            }
            let mut split_into = Vec::new();
            if version >= VERSION_2 {
                let n = get_u32(body)? as usize;
                if n.checked_mul(8)? > body.remaining() {
                    return None;
                }
                split_into = (0..n).map(|_| TabletId(body.get_u64_le())).collect();
            }
            let mut timestamp_mark = 0;
            if version >= VERSION {
                timestamp_mark = i64::from_le_bytes(get_u64(body)?.to_le_bytes());
            }
            body.is_empty().then_some(Manifest {
                tablet,
                start_row,
                end_row,
                redo_seq,
                last_seq,
                sstables,
                log_dirs,
                split_into,
                timestamp_mark,
            })
        };
        let m = parse(&mut body).ok_or(corrupt("malformed body"))?;
        if m.redo_seq > m.last_seq {
            return Err(corrupt("redo point beyond the last sequence number"));
        }
        Ok(m)
    }

    /// Reads the manifest of `tablet`.
    pub fn load(storage: &dyn StorageRoot, tablet: TabletId) -> Result<Manifest, ManifestError> {
        let path = Manifest::path(tablet);
        let bytes = storage
            .read_all(&path)
            .map_err(|source| ManifestError::Io {
                path: path.clone(),
                source,
            })?;
        Manifest::decode(&path, bytes)
    }

    /// Replaces the manifest atomically.
    pub fn store(&self, storage: &dyn StorageRoot) -> Result<(), ManifestError> {
        let path = Manifest::path(self.tablet);
        storage
            .write_atomic(&path, &self.encode())
            .map_err(|source| ManifestError::Io { path, source })
    }
}

fn put_bytes(out: &mut BytesMut, b: &[u8]) {
    out.put_u32_le(b.len() as u32);
    out.put_slice(b);
}

fn get_u8(b: &mut Bytes) -> Option<u8> {
    b.has_remaining().then(|| b.get_u8())
}

fn get_u32(b: &mut Bytes) -> Option<u32> {
    (b.remaining() >= 4).then(|| b.get_u32_le())
}

fn get_u64(b: &mut Bytes) -> Option<u64> {
    (b.remaining() >= 8).then(|| b.get_u64_le())
}

fn get_bytes(b: &mut Bytes) -> Option<Bytes> {
    let len = get_u32(b)? as usize;
    (len <= b.remaining()).then(|| b.split_to(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            tablet: TabletId(42),
            start_row: Bytes::from_static(b"b"),
            end_row: Some(Bytes::from_static(b"m")),
            redo_seq: 10,
            last_seq: 12,
            sstables: vec![FileId(7), FileId(u128::MAX)],
            log_dirs: vec!["logs/s1".into(), "logs/s2".into()],
            split_into: vec![TabletId(43), TabletId(44)],
            timestamp_mark: 1_700_000_000_000_123,
        }
    }

    /// `m`'s encoding as an older `version`: the body without the fields it lacks.
    fn as_version(m: &Manifest, version: u32, drop_tail: usize) -> Bytes {
        let v3 = m.encode();
        let body = &v3[12..v3.len() - 4 - drop_tail];
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&version.to_le_bytes());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
        Bytes::from(out)
    }

    #[test]
    fn older_versions_are_read_without_the_fields_they_lack() {
        let m = Manifest {
            split_into: Vec::new(),
            timestamp_mark: 0,
            ..sample()
        };
        // Version 1: no (empty) child list and no timestamp mark.
        assert_eq!(
            Manifest::decode("x", as_version(&m, VERSION_1, 4 + 8)).unwrap(),
            m
        );
        // Version 2: no timestamp mark.
        let with_children = Manifest {
            timestamp_mark: 0,
            ..sample()
        };
        let v2 = as_version(&with_children, VERSION_2, 8);
        assert_eq!(Manifest::decode("x", v2).unwrap(), with_children);
    }

    #[test]
    fn round_trips_and_knows_its_range() {
        let m = sample();
        assert_eq!(Manifest::decode("x", m.encode()).unwrap(), m);
        assert!(m.contains(b"b") && m.contains(b"lzz") && !m.contains(b"m") && !m.contains(b"a"));
        let all = Manifest {
            start_row: Bytes::new(),
            end_row: None,
            ..m
        };
        assert!(all.contains(b"\0") && all.contains(b"\xff\xff"));
        assert_eq!(Manifest::decode("x", all.encode()).unwrap(), all);
    }

    #[test]
    fn every_truncation_and_bit_flip_is_an_error() {
        let bytes = sample().encode();
        for len in 0..bytes.len() {
            assert!(
                Manifest::decode("x", bytes.slice(..len)).is_err(),
                "truncated to {len}"
            );
        }
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.to_vec();
                b[i] ^= 1 << bit;
                assert!(
                    Manifest::decode("x", Bytes::from(b)).is_err(),
                    "flip {i}:{bit}"
                );
            }
        }
    }
}
