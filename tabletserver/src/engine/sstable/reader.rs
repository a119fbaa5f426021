//! `Sstable`: an open SSTable. Opening reads the footer and then the whole tail (filters, index,
//! properties) in one read, checks every checksum and cross-checks the sections; data blocks are
//! read later, one at a time, through the shared `BlockCache`.

use std::sync::Arc;

use bytes::Bytes;
use tabula_common::{FileId, ReadFile};

use super::block::{self, Block};
use super::bloom::{self, Bloom};
use super::cache::{BlockCache, BlockKey};
use super::error::SstableError;
use super::footer::{FOOTER_LEN, Footer, Section};
use super::index::{self, BlockHandle};
use super::iter::SstableIter;
use super::meta::{self, SstableMeta};
use super::range::RowRange;
use super::rows::RowDirectory;
use crate::engine::key::Entry;
use crate::engine::versions::{ColumnWalk, VersionLimit};

/// An open, immutable SSTable.
pub struct Sstable {
    id: FileId,
    file: Arc<dyn ReadFile>,
    cache: Arc<BlockCache>,
    index: Vec<BlockHandle>,
    /// The blocks' last rows, packed for binary search.
    last_rows: RowDirectory,
    row_bloom: Bloom,
    column_bloom: Bloom,
    meta: SstableMeta,
}

impl std::fmt::Debug for Sstable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sstable")
            .field("id", &self.id)
            .field("blocks", &self.index.len())
            .field("meta", &self.meta)
            .finish()
    }
}

impl Sstable {
    /// Opens the SSTable `id` stored in `file`, reading blocks through `cache`.
    pub fn open(
        id: FileId,
        file: Arc<dyn ReadFile>,
        cache: Arc<BlockCache>,
    ) -> Result<Arc<Sstable>, SstableError> {
        let size = file.size();
        let footer_offset = size
            .checked_sub(FOOTER_LEN as u64)
            .ok_or_else(|| SstableError::corrupt(id, "file", "shorter than the footer"))?;
        let footer_bytes = file.read_at(footer_offset, FOOTER_LEN)?;
        let footer = Footer::decode(id, &footer_bytes, footer_offset)?;
        // The footer checked the sections are contiguous from the row filter to the footer.
        let tail_start = footer.row_bloom.offset;
        let tail_len = usize::try_from(footer_offset - tail_start)
            .map_err(|_| SstableError::corrupt(id, "footer", "tail larger than memory"))?;
        let tail = file.read_at(tail_start, tail_len)?;
        let section = |s: Section, what: &'static str| -> Result<Bytes, SstableError> {
            let start = (s.offset - tail_start) as usize;
            let end = start.saturating_add(s.len as usize);
            if end > tail.len() {
                return Err(SstableError::corrupt(id, what, "outside the file tail"));
            }
            let bytes = tail.slice(start..end);
            s.verify(id, what, &bytes)?;
            Ok(bytes)
        };
        let corrupt = |what: &'static str| {
            move |m: super::codec::Malformed| SstableError::corrupt(id, what, m.0)
        };
        let row_bloom = section(footer.row_bloom, "row filter")?;
        let row_bloom = Bloom::decode(row_bloom).map_err(corrupt("row filter"))?;
        let column_bloom = section(footer.column_bloom, "column filter")?;
        let column_bloom = Bloom::decode(column_bloom).map_err(corrupt("column filter"))?;
        let index = section(footer.index, "index")?;
        let index = index::decode(&index, tail_start).map_err(corrupt("index"))?;
        let meta = section(footer.meta, "properties")?;
        let meta = meta::decode(&meta, size).map_err(corrupt("properties"))?;
        let first_offset = index.first().map_or(tail_start, |b| b.offset);
        let agrees = meta.block_count == index.len() as u64
            && index.last().is_some_and(|b| b.last_key == meta.last_key)
            && meta.stored_data_bytes == tail_start - first_offset;
        if !agrees {
            return Err(SstableError::corrupt(
                id,
                "properties",
                "disagree with the index",
            ));
        }
        let row_bytes = index.iter().map(|b| b.last_key.row.len()).sum();
        let mut last_rows = RowDirectory::with_capacity(index.len(), row_bytes);
        for b in &index {
            last_rows
                .push(&b.last_key.row)
                .map_err(|_| SstableError::corrupt(id, "index", "rows too large"))?;
        }
        Ok(Arc::new(Sstable {
            id,
            file,
            cache,
            index,
            last_rows,
            row_bloom,
            column_bloom,
            meta,
        }))
    }

    /// The file's id.
    pub fn id(&self) -> FileId {
        self.id
    }

    /// What the SSTable holds.
    pub fn meta(&self) -> &SstableMeta {
        &self.meta
    }

    /// Size of the file in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.meta.file_size_bytes
    }

    /// The share of the file's bytes holding rows of `range`, estimated by data blocks: the
    /// whole file if all its rows are in `range`, else the blocks that may hold rows of it. A
    /// split child names its parent's SSTables and counts only its own half of them.
    pub fn approximate_bytes_in(&self, range: &RowRange) -> u64 {
        if range.contains(&self.meta.smallest_row) && range.contains(&self.meta.largest_row) {
            return self.size_bytes();
        }
        let blocks = self.block_count();
        if blocks == 0 {
            return 0;
        }
        let from = self.first_block_from(range);
        // The first block past the end may still start with rows of the range.
        let to = (self.first_block_after(range) + 1).min(blocks);
        let share = to.saturating_sub(from) as u64;
        self.size_bytes().saturating_mul(share) / blocks as u64
    }

    /// Memory held while open (index and filters), not counting cached blocks.
    pub fn resident_bytes(&self) -> usize {
        let index: usize = self
            .index
            .iter()
            .map(|b| b.last_key.approximate_size() + std::mem::size_of::<BlockHandle>())
            .sum();
        index
            + self.last_rows.size_bytes()
            + self.row_bloom.size_bytes()
            + self.column_bloom.size_bytes()
    }

    fn row_in_bounds(&self, row: &[u8]) -> bool {
        row >= &self.meta.smallest_row[..] && row <= &self.meta.largest_row[..]
    }

    /// Whether the SSTable may hold an entry of `row` (`false` means it certainly does not).
    pub fn may_contain_row(&self, row: &[u8]) -> bool {
        self.row_in_bounds(row) && self.row_bloom.may_contain(bloom::row_hash(row))
    }

    /// Whether the SSTable may hold an entry a read of column `family:qualifier` in `row` must
    /// see: a cell or column tombstone of that column, or a tombstone of its family or row
    /// (`false` means it certainly holds none).
    pub fn may_contain_column(&self, row: &[u8], family: &[u8], qualifier: &[u8]) -> bool {
        if !self.row_in_bounds(row) {
            return false;
        }
        let b = &self.column_bloom;
        b.may_contain(bloom::column_hash(row, family, Some(qualifier)))
            || b.may_contain(bloom::column_hash(row, family, None))
            || b.may_contain(bloom::column_hash(row, b"", None))
    }

    /// Iterates over the entries whose row is in `range`, in key order or (with `reverse`) in
    /// exactly the opposite order.
    pub fn iter(self: &Arc<Self>, range: RowRange, reverse: bool) -> SstableIter {
        SstableIter::new(self.clone(), range, reverse)
    }

    /// Every entry of `row`, in key order; with a `limit`, only the entries the read needs
    /// (see [`crate::engine::versions`]), and the blocks that hold nothing but older versions
    /// of a complete column are not read. Checks the row filter first, then reads only the
    /// blocks that may hold the row.
    pub fn get_row_entries(
        &self,
        row: &[u8],
        limit: Option<VersionLimit>,
    ) -> Result<Vec<Entry>, SstableError> {
        if !self.may_contain_row(row) {
            return Ok(Vec::new());
        }
        let mut walk = limit.map(ColumnWalk::new);
        let mut i = self.last_rows.partition_point(|r| r < row);
        let mut out = Vec::new();
        while i < self.index.len() {
            let block = self.block(i)?;
            match walk.as_mut() {
                Some(walk) => block.row_entries_walked(row, walk, &mut out),
                None => block.row_entries_into(row, &mut out),
            }
            if self.last_rows.get(i) != Some(row) {
                break;
            }
            i += 1;
            // Blocks ending before the complete column ends hold only more of it.
            if let Some(end) = walk.as_ref().and_then(ColumnWalk::seek_target) {
                i += self.index[i..].partition_point(|b| b.last_key < end);
            }
        }
        Ok(out)
    }

    /// The last row of every data block, in order (a row may repeat): evenly spaced sample
    /// points of the file, e.g. for choosing a split row.
    pub fn block_last_rows(&self) -> impl Iterator<Item = Bytes> + '_ {
        self.index.iter().map(|b| b.last_key.row.clone())
    }

    /// Number of data blocks.
    pub(crate) fn block_count(&self) -> usize {
        self.index.len()
    }

    /// The last row of block `i`.
    pub(crate) fn block_last_row(&self, i: usize) -> Option<&[u8]> {
        self.last_rows.get(i)
    }

    /// The first block whose last row is not before `range`'s start.
    pub(crate) fn first_block_from(&self, range: &RowRange) -> usize {
        self.last_rows.partition_point(|r| range.is_before_start(r))
    }

    /// The first block whose last row is after `range`'s end (`block_count()` if none).
    pub(crate) fn first_block_after(&self, range: &RowRange) -> usize {
        self.last_rows.partition_point(|r| !range.is_after_end(r))
    }

    /// Data block `i`, from the cache or the file.
    pub(crate) fn block(&self, i: usize) -> Result<Arc<Block>, SstableError> {
        let handle = self
            .index
            .get(i)
            .ok_or_else(|| SstableError::corrupt(self.id, "index", "block number out of range"))?;
        let key = BlockKey {
            file: self.id,
            offset: handle.offset,
        };
        if let Some(b) = self.cache.get(&key) {
            return Ok(b);
        }
        let raw = self.file.read_at(handle.offset, handle.len)?;
        let block = block::decode(self.id, handle.offset, raw)?;
        if !block.last_key_is(&handle.last_key) {
            return Err(SstableError::corrupt(
                self.id,
                "data block",
                "last key differs from the index",
            ));
        }
        Ok(self.cache.insert(key, Arc::new(block)))
    }
}

#[cfg(test)]
impl Sstable {
    pub(crate) fn index_offset_for_test(&self, i: usize) -> u64 {
        self.index[i].offset
    }
}

#[cfg(test)]
mod tests {
    use std::panic::{AssertUnwindSafe, catch_unwind};

    use super::*;
    use crate::engine::sstable::SstableOptions;
    use crate::engine::sstable::testutil::{open_bytes, sample_entries, tiny_blocks, write_table};

    fn all(t: &Arc<Sstable>, reverse: bool) -> Result<Vec<Entry>, SstableError> {
        t.iter(RowRange::all(), reverse).collect()
    }

    fn fresh_cache() -> Arc<BlockCache> {
        Arc::new(BlockCache::new(1 << 20))
    }

    #[test]
    fn point_reads_filters_and_meta() {
        let entries = sample_entries(100);
        let t = open_bytes(write_table(&entries, tiny_blocks()), fresh_cache()).unwrap();
        assert!(
            t.meta().block_count > 20,
            "tiny blocks: {}",
            t.meta().block_count
        );
        assert_eq!(t.meta().entry_count, entries.len() as u64);
        assert_eq!(t.meta().first_key, entries[0].key);
        assert_eq!(t.id(), FileId(42));
        assert!(t.resident_bytes() > 0);
        assert_eq!(t.block_last_rows().count() as u64, t.meta().block_count);
        for r in 0..100 {
            let row = format!("row{r:05}");
            let want: Vec<Entry> = entries
                .iter()
                .filter(|e| e.key.row == row.as_bytes())
                .cloned()
                .collect();
            assert_eq!(
                t.get_row_entries(row.as_bytes(), None).unwrap(),
                want,
                "{row}"
            );
            assert!(t.may_contain_row(row.as_bytes()));
            for e in &want {
                let q = e.key.qualifier.as_deref().unwrap_or(b"any");
                assert!(t.may_contain_column(&e.key.row, &e.key.family, q));
            }
        }
        // A row with a row tombstone "may contain" every column (the tombstone hides them).
        assert!(t.may_contain_column(b"row00000", b"nofamily", b"noqualifier"));
        let absent = (0..1000)
            .filter(|i| t.may_contain_row(format!("row{i:05}x").as_bytes()))
            .count();
        assert!(absent < 50, "{absent} false positives in 1000");
        assert!(
            !t.may_contain_row(b"a") && !t.may_contain_row(b"z"),
            "outside the file's rows"
        );
        assert!(t.get_row_entries(b"row00050x", None).unwrap().is_empty());
        assert!(t.get_row_entries(b"zzz", None).unwrap().is_empty());
    }

    #[test]
    fn a_row_spanning_many_blocks_reads_whole() {
        let mut entries = sample_entries(3);
        let big: Vec<Entry> = (0..200u64)
            .map(|i| {
                crate::engine::sstable::testutil::put(
                    "row00001",
                    "wide",
                    &format!("{i:04}"),
                    7,
                    5_000 + i,
                    "v",
                )
            })
            .collect();
        entries.extend(big);
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        let t = open_bytes(write_table(&entries, tiny_blocks()), fresh_cache()).unwrap();
        let want: Vec<Entry> = entries
            .iter()
            .filter(|e| &e.key.row[..] == b"row00001")
            .cloned()
            .collect();
        assert!(want.len() > 200);
        assert_eq!(t.get_row_entries(b"row00001", None).unwrap(), want);
    }

    #[test]
    fn a_limited_row_read_skips_the_blocks_of_older_versions() {
        use crate::engine::sstable::testutil::put;
        use crate::engine::versions::VersionLimit;
        // Row r: column a with 300 versions over many tiny blocks, then column b with 2.
        let value = "v".repeat(100);
        let mut entries: Vec<Entry> = (0..300u64)
            .map(|i| put("r", "cf", "a", i as i64, 1 + i, &value))
            .collect();
        entries.extend((0..2u64).map(|i| put("r", "cf", "b", i as i64, 400 + i, "v")));
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        let cache = fresh_cache();
        let t = open_bytes(write_table(&entries, tiny_blocks()), cache.clone()).unwrap();
        assert!(t.meta().block_count > 20, "{} blocks", t.meta().block_count);
        let limit = VersionLimit::new(Some(1), None, u64::MAX, 0);
        let got: Vec<(Bytes, i64)> = t
            .get_row_entries(b"r", limit)
            .unwrap()
            .into_iter()
            .map(|e| (e.key.qualifier.unwrap(), e.key.timestamp))
            .collect();
        assert_eq!(
            got,
            vec![
                (Bytes::from_static(b"a"), 299),
                (Bytes::from_static(b"b"), 1)
            ]
        );
        // The first block, the seek's landing block and no more than one other were read.
        let read = cache.len();
        assert!(read <= 3, "{read} of {} blocks read", t.meta().block_count);
        // Without a limit, every version.
        assert_eq!(t.get_row_entries(b"r", None).unwrap().len(), 302);
    }

    #[test]
    fn blocks_are_cached_and_shared() {
        let entries = sample_entries(50);
        let cache = fresh_cache();
        let t = open_bytes(write_table(&entries, tiny_blocks()), cache.clone()).unwrap();
        assert_eq!(all(&t, false).unwrap(), entries);
        let misses = cache.misses();
        assert_eq!(misses, t.meta().block_count);
        assert_eq!(all(&t, true).unwrap().len(), entries.len());
        assert_eq!(
            cache.misses(),
            misses,
            "the second pass hits the cache only"
        );
        assert_eq!(cache.hits(), t.meta().block_count);
    }

    /// Opens and reads everything; `Err` anywhere is fine, wrong data is not.
    fn read_all_or_err(bytes: Bytes, entries: &[Entry]) -> bool {
        let Ok(t) = open_bytes(bytes, Arc::new(BlockCache::new(0))) else {
            return false;
        };
        let Ok(got) = all(&t, false) else {
            return false;
        };
        assert_eq!(got, entries, "undetected corruption");
        true
    }

    #[test]
    fn every_bit_flip_is_an_error_never_a_panic() {
        let entries = sample_entries(12);
        let good = write_table(&entries, tiny_blocks());
        assert!(
            good.len() < 4096,
            "keep the sweep fast: {} bytes",
            good.len()
        );
        assert!(read_all_or_err(good.clone(), &entries));
        let mut undetected = 0;
        for i in 0..good.len() {
            for bit in [i % 8, (i + 3) % 8] {
                let mut bad = good.to_vec();
                bad[i] ^= 1 << bit;
                let read = catch_unwind(AssertUnwindSafe(|| {
                    read_all_or_err(Bytes::from(bad), &entries)
                }));
                match read {
                    Ok(true) => undetected += 1,
                    Ok(false) => {}
                    Err(_) => panic!("panic on bit {bit} of byte {i}"),
                }
            }
        }
        // Every byte is under some checksum, so nothing slips through.
        assert_eq!(undetected, 0);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let entries = sample_entries(12);
        let good = write_table(&entries, tiny_blocks());
        for len in 0..good.len() {
            assert!(
                !read_all_or_err(good.slice(..len), &entries),
                "truncated to {len}"
            );
        }
        let mut longer = good.to_vec();
        longer.push(0);
        assert!(
            !read_all_or_err(Bytes::from(longer), &entries),
            "a trailing byte"
        );
    }

    #[test]
    fn errors_name_the_file_and_the_place() {
        let entries = sample_entries(12);
        let good = write_table(&entries, tiny_blocks());
        let mut bad = good.to_vec();
        bad[20] ^= 1;
        let t = open_bytes(Bytes::from(bad), fresh_cache()).unwrap();
        let err = all(&t, false).unwrap_err();
        assert!(
            matches!(
                err,
                SstableError::ChecksumMismatch {
                    file: FileId(42),
                    what: "data block",
                    offset: 0,
                    ..
                }
            ),
            "{err}"
        );
        let mut bad = good.to_vec();
        let n = bad.len();
        bad[n - 1] ^= 1;
        assert!(matches!(
            open_bytes(Bytes::from(bad), fresh_cache()),
            Err(SstableError::BadMagic { .. })
        ));
        let err = open_bytes(good.slice(..50), fresh_cache()).unwrap_err();
        assert!(matches!(err, SstableError::Corrupt { .. }), "{err}");
    }

    fn fixture_path() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/engine/sstable/testdata/v1_sample.sst")
    }

    /// A file written by format version 1 stays readable. Regenerate (only when the format
    /// version changes) with `TABULA_WRITE_FIXTURES=1 cargo test -p tabula-tabletserver fixture`.
    #[test]
    fn version_1_fixture_decodes() {
        let entries = sample_entries(20);
        let opts = SstableOptions {
            block_size_bytes: 512,
            zstd_level: 3,
            bloom_bits_per_key: 10,
            ..SstableOptions::default()
        };
        if std::env::var_os("TABULA_WRITE_FIXTURES").is_some() {
            std::fs::write(fixture_path(), write_table(&entries, opts)).unwrap();
        }
        let bytes = Bytes::from(std::fs::read(fixture_path()).unwrap());
        assert_eq!(&bytes[bytes.len() - 8..], b"TBLA.SST");
        let t = open_bytes(bytes, fresh_cache()).unwrap();
        assert_eq!(all(&t, false).unwrap(), entries);
        assert!(t.meta().stored_data_bytes < t.meta().raw_data_bytes);
        assert!(t.may_contain_row(b"row00007"));
    }
}
