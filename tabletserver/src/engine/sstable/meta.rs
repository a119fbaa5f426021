//! The properties section: what an SSTable holds, summarised for the engine (manifest, compaction
//! picker, read path) without reading its blocks.
//!
//! ```text
//! entry_count varint | tombstone_count varint | block_count varint
//! first_key | last_key                              (key encoding as in the index)
//! min_seq varint | max_seq varint
//! min_timestamp zigzag | max_timestamp zigzag
//! smallest_row (varint length + bytes) | largest_row (varint length + bytes)
//! raw_data_bytes varint | stored_data_bytes varint
//! ```

use bytes::Bytes;

use super::codec::{Decoder, Malformed, put_bytes, put_key, put_varint, zigzag};
use crate::engine::key::{CellKey, Entry, Seq, Value};

/// What an SSTable holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SstableMeta {
    /// Number of entries (cells and tombstones).
    pub entry_count: u64,
    /// Number of tombstones among them.
    pub tombstone_count: u64,
    /// Number of data blocks.
    pub block_count: u64,
    /// The smallest key.
    pub first_key: CellKey,
    /// The largest key.
    pub last_key: CellKey,
    /// Smallest sequence number of any entry.
    pub min_seq: Seq,
    /// Largest sequence number of any entry.
    pub max_seq: Seq,
    /// Smallest timestamp of a cell (`Value::Put`); tombstones' `i64::MAX` marker is not
    /// counted. With no cells, `min_timestamp = i64::MAX > max_timestamp = i64::MIN`.
    pub min_timestamp: i64,
    /// Largest timestamp of a cell (`Value::Put`).
    pub max_timestamp: i64,
    /// The smallest row (the first key's row).
    pub smallest_row: Bytes,
    /// The largest row (the last key's row).
    pub largest_row: Bytes,
    /// Data block bytes before compression.
    pub raw_data_bytes: u64,
    /// Data block bytes as stored (compressed, with headers and checksums).
    pub stored_data_bytes: u64,
    /// Size of the whole file. Not stored in the section: the writer and reader fill it in.
    pub file_size_bytes: u64,
}

/// Accumulates `SstableMeta` while entries are written.
#[derive(Debug)]
pub(crate) struct MetaBuilder {
    entry_count: u64,
    tombstone_count: u64,
    first_key: Option<CellKey>,
    min_seq: Seq,
    max_seq: Seq,
    min_timestamp: i64,
    max_timestamp: i64,
}

impl Default for MetaBuilder {
    fn default() -> Self {
        MetaBuilder {
            entry_count: 0,
            tombstone_count: 0,
            first_key: None,
            min_seq: Seq::MAX,
            max_seq: 0,
            min_timestamp: i64::MAX,
            max_timestamp: i64::MIN,
        }
    }
}

impl MetaBuilder {
    pub(crate) fn entry_count(&self) -> u64 {
        self.entry_count
    }

    pub(crate) fn add(&mut self, e: &Entry) {
        if self.first_key.is_none() {
            // Copy: the caller's bytes may slice a much larger buffer.
            self.first_key = Some(owned_key(&e.key));
        }
        self.entry_count += 1;
        if let Value::Put(_) = e.value {
            self.min_timestamp = self.min_timestamp.min(e.key.timestamp);
            self.max_timestamp = self.max_timestamp.max(e.key.timestamp);
        } else {
            self.tombstone_count += 1;
        }
        self.min_seq = self.min_seq.min(e.key.seq);
        self.max_seq = self.max_seq.max(e.key.seq);
    }

    /// The summary, given the last key and the data section's totals; `None` with no entries.
    pub(crate) fn finish(
        self,
        last_key: CellKey,
        block_count: u64,
        raw_data_bytes: u64,
        stored_data_bytes: u64,
    ) -> Option<SstableMeta> {
        let first_key = self.first_key?;
        Some(SstableMeta {
            entry_count: self.entry_count,
            tombstone_count: self.tombstone_count,
            block_count,
            smallest_row: first_key.row.clone(),
            largest_row: last_key.row.clone(),
            first_key,
            last_key,
            min_seq: self.min_seq,
            max_seq: self.max_seq,
            min_timestamp: self.min_timestamp,
            max_timestamp: self.max_timestamp,
            raw_data_bytes,
            stored_data_bytes,
            file_size_bytes: 0,
        })
    }
}

/// A copy of `key` that owns its bytes.
pub(crate) fn owned_key(key: &CellKey) -> CellKey {
    CellKey {
        row: Bytes::copy_from_slice(&key.row),
        family: Bytes::copy_from_slice(&key.family),
        qualifier: key.qualifier.as_deref().map(Bytes::copy_from_slice),
        timestamp: key.timestamp,
        seq: key.seq,
    }
}

/// Appends the encoded section (`file_size_bytes` is not stored).
pub(crate) fn encode(m: &SstableMeta, out: &mut Vec<u8>) {
    put_varint(out, m.entry_count);
    put_varint(out, m.tombstone_count);
    put_varint(out, m.block_count);
    put_key(out, &m.first_key);
    put_key(out, &m.last_key);
    put_varint(out, m.min_seq);
    put_varint(out, m.max_seq);
    put_varint(out, zigzag(m.min_timestamp));
    put_varint(out, zigzag(m.max_timestamp));
    put_bytes(out, &m.smallest_row);
    put_bytes(out, &m.largest_row);
    put_varint(out, m.raw_data_bytes);
    put_varint(out, m.stored_data_bytes);
}

/// Decodes the section and checks it is self-consistent.
pub(crate) fn decode(buf: &Bytes, file_size_bytes: u64) -> Result<SstableMeta, Malformed> {
    let mut d = Decoder::new(buf);
    let m = SstableMeta {
        entry_count: d.varint()?,
        tombstone_count: d.varint()?,
        block_count: d.varint()?,
        first_key: d.key()?,
        last_key: d.key()?,
        min_seq: d.varint()?,
        max_seq: d.varint()?,
        min_timestamp: d.zigzag()?,
        max_timestamp: d.zigzag()?,
        smallest_row: d.bytes()?,
        largest_row: d.bytes()?,
        raw_data_bytes: d.varint()?,
        stored_data_bytes: d.varint()?,
        file_size_bytes,
    };
    if !d.is_empty() {
        return Err(Malformed("bytes after the properties"));
    }
    let consistent = m.entry_count > 0
        && m.tombstone_count <= m.entry_count
        && m.block_count > 0
        && m.block_count <= m.entry_count
        && m.first_key <= m.last_key
        && m.min_seq <= m.max_seq
        && m.smallest_row == m.first_key.row
        && m.largest_row == m.last_key.row
        && m.stored_data_bytes <= file_size_bytes;
    if !consistent {
        return Err(Malformed("properties contradict each other"));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(row: &'static [u8], seq: Seq) -> CellKey {
        CellKey {
            row: Bytes::from_static(row),
            family: Bytes::from_static(b"f"),
            qualifier: None,
            timestamp: i64::MAX,
            seq,
        }
    }

    fn sample() -> SstableMeta {
        let mut b = MetaBuilder::default();
        b.add(&Entry {
            key: key(b"a", 5),
            value: Value::DeleteFamily,
        });
        let mut put = Entry {
            key: key(b"b", 3),
            value: Value::Put(Bytes::from_static(b"v")),
        };
        put.key.timestamp = -7;
        b.add(&put);
        put.key.timestamp = 90;
        put.key.seq = 2;
        b.add(&put);
        b.finish(key(b"c", 9), 2, 1000, 400).unwrap()
    }

    #[test]
    fn builder_summarises_entries() {
        let m = sample();
        assert_eq!((m.entry_count, m.tombstone_count, m.block_count), (3, 1, 2));
        assert_eq!((m.min_seq, m.max_seq), (2, 5));
        assert_eq!((m.min_timestamp, m.max_timestamp), (-7, 90));
        assert_eq!(&m.smallest_row[..], b"a");
        assert_eq!(&m.largest_row[..], b"c");
        assert!(
            MetaBuilder::default()
                .finish(key(b"a", 1), 0, 0, 0)
                .is_none()
        );
    }

    #[test]
    fn round_trips_and_rejects_truncation() {
        let mut m = sample();
        let mut out = Vec::new();
        encode(&m, &mut out);
        let buf = Bytes::from(out);
        m.file_size_bytes = 5000;
        assert_eq!(decode(&buf, 5000).unwrap(), m);
        for len in 0..buf.len() {
            assert!(decode(&buf.slice(..len), 5000).is_err(), "len {len}");
        }
        assert!(
            decode(&buf, 10).is_err(),
            "stored bytes larger than the file"
        );
    }

    #[test]
    fn rejects_contradictions() {
        let mut m = sample();
        m.largest_row = Bytes::from_static(b"zz");
        let mut out = Vec::new();
        encode(&m, &mut out);
        assert!(decode(&Bytes::from(out), 5000).is_err());
    }
}
