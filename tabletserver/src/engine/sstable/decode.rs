//! Whole-part decoders over untrusted bytes, for the fuzz targets (`fuzz/` at the repository
//! root) and the corruption fixtures (`tabletserver/tests/corruption.rs`).
//!
//! Each function runs the decoder the reader itself uses on one part of an SSTable (a data
//! block, the index, the footer, the properties, a filter, or a whole file), then walks
//! everything it decoded, and returns a small summary or an `SstableError`. They add no format
//! knowledge and widen nothing: the codecs stay private to `sstable`, and this module is the one
//! door to them from outside. Errors name the file `DECODE_FILE_ID`.
//!
//! Contract, checked by the fuzz targets: no input makes any of these functions panic.
//! Corruption the reader would notice is an `Err`; `decode_block` and `decode_file` also check
//! what the reader takes on trust (key order, counts, filters against the keys), so a "verified"
//! file reads back exactly as written. Inconsistencies that only a bug could cause (the decoded
//! block disagreeing with itself) are `debug_assert!`s, which fuzz builds keep.
//!
//! Reading order: `decode_file` (the whole file), then the parts in file order.

use std::io;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use tabula_common::{FileId, ReadFile};

use super::block;
use super::bloom::{self, Bloom};
use super::cache::BlockCache;
use super::error::SstableError;
use super::footer::{Footer, Section};
use super::index;
use super::meta::{self, SstableMeta};
use super::range::RowRange;
use super::reader::Sstable;
use crate::engine::key::{CellKey, Entry};

/// The file id every error from this module names.
pub const DECODE_FILE_ID: FileId = FileId(0);

/// Block cache budget of `decode_file`: the per-row point reads hit the blocks the scan just
/// decoded instead of decoding them again.
const VERIFY_CACHE_BYTES: usize = 4 << 20;

/// A read-only file held in memory.
#[derive(Debug, Clone)]
pub(crate) struct MemRead(pub(crate) Bytes);

impl ReadFile for MemRead {
    fn read_at(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        match start.checked_add(len) {
            Some(end) if end <= self.0.len() => Ok(self.0.slice(start..end)),
            _ => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past the end",
            )),
        }
    }

    fn size(&self) -> u64 {
        self.0.len() as u64
    }
}

fn corrupt(what: &str, why: &str) -> SstableError {
    SstableError::corrupt(DECODE_FILE_ID, what, why)
}

/// Opens `bytes` as a whole SSTable and reads every entry forward and in reverse, and every row
/// with a point read; returns the number of entries.
///
/// Beyond what a reader checks, it verifies that keys strictly increase through the file, that
/// both scans and the properties agree on the count and on the first and last key, that each
/// row's point read returns the entries the scan saw, and that the filters know every row and
/// column.
pub fn decode_file(bytes: Bytes) -> Result<usize, SstableError> {
    let cache = Arc::new(BlockCache::new(VERIFY_CACHE_BYTES));
    let table = Sstable::open(DECODE_FILE_ID, Arc::new(MemRead(bytes)), cache)?;
    let mut count = 0usize;
    let mut first: Option<CellKey> = None;
    let mut prev: Option<CellKey> = None;
    let mut row_entries = 0usize;
    for e in table.iter(RowRange::all(), false) {
        let e = e?;
        if let Some(p) = &prev {
            if *p >= e.key {
                return Err(corrupt("data block", "keys out of order"));
            }
            if p.row != e.key.row {
                check_row(&table, &p.row, row_entries)?;
                row_entries = 0;
            }
        }
        check_filters(&table, &e)?;
        row_entries += 1;
        count += 1;
        first.get_or_insert_with(|| e.key.clone());
        prev = Some(e.key);
    }
    if let Some(p) = &prev {
        check_row(&table, &p.row, row_entries)?;
    }
    let meta = table.meta();
    let agrees = count as u64 == meta.entry_count
        && first.as_ref() == Some(&meta.first_key)
        && prev.as_ref() == Some(&meta.last_key);
    if !agrees {
        return Err(corrupt("properties", "disagree with the blocks"));
    }
    let mut reverse_count = 0usize;
    let mut next: Option<CellKey> = None;
    for e in table.iter(RowRange::all(), true) {
        let e = e?;
        let in_order = match &next {
            Some(n) => e.key < *n,
            None => e.key == meta.last_key,
        };
        if !in_order {
            return Err(corrupt("data block", "reverse scan out of order"));
        }
        reverse_count += 1;
        next = Some(e.key);
    }
    if reverse_count != count || next.as_ref() != Some(&meta.first_key) {
        return Err(corrupt(
            "data block",
            "reverse scan disagrees with the forward scan",
        ));
    }
    Ok(count)
}

/// The point read of `row` must return the `expected` entries the scan saw.
fn check_row(table: &Sstable, row: &[u8], expected: usize) -> Result<(), SstableError> {
    if table.get_row_entries(row, None)?.len() != expected {
        return Err(corrupt("row filter", "point read disagrees with the scan"));
    }
    Ok(())
}

/// The filters must answer "maybe" for every row and column the file holds.
fn check_filters(table: &Sstable, e: &Entry) -> Result<(), SstableError> {
    let k = &e.key;
    if !table.may_contain_row(&k.row) {
        return Err(corrupt("row filter", "misses a row the file holds"));
    }
    let qualifier = k.qualifier.as_deref().unwrap_or_default();
    if !table.may_contain_column(&k.row, &k.family, qualifier) {
        return Err(corrupt("column filter", "misses a column the file holds"));
    }
    Ok(())
}

/// Checks and decodes one on-disk data block (tag, length, payload, CRC32C) and walks every
/// entry; returns the number of entries. Also checks that keys strictly increase.
pub fn decode_block(bytes: &[u8]) -> Result<usize, SstableError> {
    let block = block::decode(DECODE_FILE_ID, 0, Bytes::copy_from_slice(bytes))?;
    let mut prev: Option<Entry> = None;
    let mut rows = 0usize;
    for i in 0..block.len() {
        let e = block
            .entry(i)
            .ok_or_else(|| corrupt("data block", "entry missing"))?;
        debug_assert_eq!(block.row(i), Some(&e.key.row[..]));
        if let Some(p) = &prev
            && p.key >= e.key
        {
            return Err(corrupt("data block", "keys out of order"));
        }
        if prev.as_ref().is_none_or(|p| p.key.row != e.key.row) {
            rows += 1;
            let row = &e.key.row[..];
            debug_assert_eq!(block.seek(|r| r < row), i, "row search");
            let mut of_row = Vec::new();
            block.row_entries_into(row, &mut of_row);
            debug_assert_eq!(of_row.first(), Some(&e), "row entries");
        }
        prev = Some(e);
    }
    if let Some(last) = &prev {
        debug_assert!(block.last_key_is(&last.key));
        debug_assert_eq!(block.seek(|_| true), block.len());
    }
    debug_assert!(rows <= block.len());
    Ok(block.len())
}

/// Decodes a block index whose blocks must end exactly at `data_end` (where the filters
/// start); returns each data block's byte range in the file, in order.
pub fn decode_index(bytes: &[u8], data_end: u64) -> Result<Vec<Range<u64>>, SstableError> {
    let blocks = index::decode(&Bytes::copy_from_slice(bytes), data_end)
        .map_err(|m| corrupt("index", m.0))?;
    // The decoder checked that every block ends at or before `data_end`.
    Ok(blocks
        .iter()
        .map(|b| b.offset..b.offset.saturating_add(b.len as u64))
        .collect())
}

/// Where the footer says the four tail sections lie: byte ranges of the file, contiguous and in
/// this order, the last ending where the footer starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FooterLayout {
    /// The row filter (its start is where the data blocks end).
    pub row_filter: Range<u64>,
    /// The column filter.
    pub column_filter: Range<u64>,
    /// The block index.
    pub index: Range<u64>,
    /// The properties (`SstableMeta`).
    pub properties: Range<u64>,
}

/// Checks and decodes the 96-byte footer of a file in which it starts at `footer_offset`
/// (the file's size minus 96).
pub fn decode_footer(footer: &[u8], footer_offset: u64) -> Result<FooterLayout, SstableError> {
    let f = Footer::decode(DECODE_FILE_ID, footer, footer_offset)?;
    // The footer checked the sections do not overflow.
    let range = |s: Section| s.offset..s.offset.saturating_add(s.len);
    Ok(FooterLayout {
        row_filter: range(f.row_bloom),
        column_filter: range(f.column_bloom),
        index: range(f.index),
        properties: range(f.meta),
    })
}

/// Decodes the properties section of a file of `file_size_bytes` and checks it is
/// self-consistent.
pub fn decode_properties(bytes: &[u8], file_size_bytes: u64) -> Result<SstableMeta, SstableError> {
    meta::decode(&Bytes::copy_from_slice(bytes), file_size_bytes)
        .map_err(|m| corrupt("properties", m.0))
}

/// Decodes a row or column filter section and queries it; returns the bytes of filter lines
/// (0 for the "no filter" encoding).
pub fn decode_filter(bytes: &[u8]) -> Result<usize, SstableError> {
    let filter =
        Bloom::decode(Bytes::copy_from_slice(bytes)).map_err(|m| corrupt("filter", m.0))?;
    for probe in [&b""[..], b"row", bytes] {
        // Any answer is right for keys that were never added; the query must only not panic.
        let _ = filter.may_contain(bloom::row_hash(probe));
        let _ = filter.may_contain(bloom::column_hash(probe, b"f", Some(probe)));
    }
    Ok(filter.size_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::sstable::SstableOptions;
    use crate::engine::sstable::testutil::{sample_entries, tiny_blocks, write_table};

    #[test]
    fn every_part_of_a_written_table_decodes() {
        let entries = sample_entries(40);
        for opts in [
            tiny_blocks(),
            SstableOptions {
                zstd_level: 0,
                bloom_bits_per_key: 0,
                ..tiny_blocks()
            },
        ] {
            let file = write_table(&entries, opts);
            assert_eq!(decode_file(file.clone()).unwrap(), entries.len());
            let size = file.len() as u64;
            let footer_at = file.len() - 96;
            let layout = decode_footer(&file[footer_at..], size - 96).unwrap();
            let slice = |r: &Range<u64>| &file[r.start as usize..r.end as usize];
            let blocks = decode_index(slice(&layout.index), layout.row_filter.start).unwrap();
            assert!(blocks.len() > 5);
            let in_blocks: usize = blocks.iter().map(|b| decode_block(slice(b)).unwrap()).sum();
            assert_eq!(in_blocks, entries.len());
            let meta = decode_properties(slice(&layout.properties), size).unwrap();
            assert_eq!(meta.block_count, blocks.len() as u64);
            decode_filter(slice(&layout.row_filter)).unwrap();
            decode_filter(slice(&layout.column_filter)).unwrap();
        }
    }

    #[test]
    fn parts_out_of_place_are_errors() {
        let file = write_table(&sample_entries(10), tiny_blocks());
        let footer = &file[file.len() - 96..];
        assert!(decode_footer(footer, 5).is_err());
        assert!(decode_block(footer).is_err());
        assert!(decode_index(footer, 100).is_err());
        assert!(decode_properties(footer, 100).is_err());
        assert!(decode_filter(&[]).is_err());
        assert!(decode_file(file.slice(1..)).is_err());
    }
}
