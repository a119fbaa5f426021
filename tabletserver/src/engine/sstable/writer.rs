//! `SstableWriter`: streams sorted entries into a new SSTable, one data block at a time.
//!
//! Memory stays bounded by one block plus what the tail needs (one index entry per block and one
//! 8-byte hash per distinct row and per distinct column); the file is never held whole. Keys
//! kept past `add` (index keys, first key) are copied, so the writer never pins the caller's
//! buffers (a compaction's input blocks, a memtable's arena).
//!
//! After any error the writer is unusable: drop it and delete the file.

use tabula_common::AppendFile;

use super::backoff::CompressionBackoff;
use super::block::{BlockBuilder, MAX_RAW_BLOCK_BYTES};
use super::bloom;
use super::error::SstableError;
use super::footer::{Footer, Section};
use super::index::{self, BlockHandle};
use super::meta::{self, MetaBuilder, SstableMeta, owned_key};
use crate::engine::key::{CellKey, Entry};

/// The largest data block size accepted in `SstableOptions`.
const MAX_BLOCK_SIZE_BYTES: usize = 64 << 20;
/// The largest single entry accepted: a block of `MAX_BLOCK_SIZE_BYTES` plus one such entry
/// stays under the readers' `MAX_RAW_BLOCK_BYTES`.
const MAX_ENTRY_BYTES: usize = 128 << 20;
const _: () = assert!(MAX_BLOCK_SIZE_BYTES + MAX_ENTRY_BYTES + 64 < MAX_RAW_BLOCK_BYTES);

/// How an SSTable is laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SstableOptions {
    /// Target uncompressed size of a data block; a block is cut once it reaches this size.
    pub block_size_bytes: usize,
    /// zstd level for data blocks (1..=22); 0 stores blocks uncompressed. A block whose
    /// compressed form is not smaller is stored uncompressed anyway, and the next blocks are
    /// then stored uncompressed without an attempt (see `backoff`). The writer takes this
    /// one; the engine sets it from `flush_zstd_level` for flushes.
    pub zstd_level: i32,
    /// zstd level (0..=22) of the SSTables a memtable flush writes: a flush keeps pace with
    /// the writes, so it takes the fast level, and compactions of SSTables alone (which
    /// write the long-lived files in the background) take `zstd_level`, as RocksDB
    /// compresses its last level harder than its first.
    pub flush_zstd_level: i32,
    /// Bloom filter bits per key (rows and columns); 0 writes no filters.
    pub bloom_bits_per_key: u32,
}

impl Default for SstableOptions {
    fn default() -> Self {
        SstableOptions {
            block_size_bytes: 16 << 10,
            zstd_level: 3,
            flush_zstd_level: 1,
            bloom_bits_per_key: 10,
        }
    }
}

impl SstableOptions {
    /// Checks every field is in range.
    pub fn validate(&self) -> Result<(), SstableError> {
        self.problem()
            .map_or(Ok(()), |p| Err(SstableError::InvalidOptions(p)))
    }

    fn problem(&self) -> Option<&'static str> {
        if self.block_size_bytes == 0 || self.block_size_bytes > MAX_BLOCK_SIZE_BYTES {
            return Some("block_size_bytes must be 1 B to 64 MiB");
        }
        if !(0..=22).contains(&self.zstd_level) {
            return Some("zstd_level must be 0 to 22");
        }
        if !(0..=22).contains(&self.flush_zstd_level) {
            return Some("flush_zstd_level must be 0 to 22");
        }
        if self.bloom_bits_per_key > 100 {
            return Some("bloom_bits_per_key must be at most 100");
        }
        None
    }
}

/// Writes one SSTable.
pub struct SstableWriter {
    out: Box<dyn AppendFile>,
    opts: SstableOptions,
    /// Why `opts` are unusable, reported by every `add`.
    invalid: Option<&'static str>,
    /// Created with the first block (when `zstd_level > 0`).
    compressor: Option<zstd::bulk::Compressor<'static>>,
    /// Which blocks are worth a compression attempt.
    backoff: CompressionBackoff,
    /// Blocks it tried to compress.
    compression_attempts: u64,
    block: BlockBuilder,
    scratch: Vec<u8>,
    index: Vec<BlockHandle>,
    row_hashes: Vec<u64>,
    column_hashes: Vec<u64>,
    meta: MetaBuilder,
    last_key: Option<CellKey>,
    raw_data_bytes: u64,
    stored_data_bytes: u64,
}

impl std::fmt::Debug for SstableWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SstableWriter")
            .field("opts", &self.opts)
            .field("blocks", &self.index.len())
            .field("bytes_written", &self.out.len())
            .finish()
    }
}

impl SstableWriter {
    /// A writer appending to `out` (a new, empty file). Options out of range make `add` fail
    /// with `SstableError::InvalidOptions`.
    pub fn new(out: Box<dyn AppendFile>, opts: SstableOptions) -> SstableWriter {
        SstableWriter {
            out,
            invalid: opts.problem(),
            opts,
            compressor: None,
            backoff: CompressionBackoff::default(),
            compression_attempts: 0,
            block: BlockBuilder::default(),
            scratch: Vec::new(),
            index: Vec::new(),
            row_hashes: Vec::new(),
            column_hashes: Vec::new(),
            meta: MetaBuilder::default(),
            last_key: None,
            raw_data_bytes: 0,
            stored_data_bytes: 0,
        }
    }

    /// Appends `e`, whose key must sort strictly after the previous entry's.
    pub fn add(&mut self, e: &Entry) -> Result<(), SstableError> {
        if let Some(problem) = self.invalid {
            return Err(SstableError::InvalidOptions(problem));
        }
        let (new_row, new_column) = match &self.last_key {
            Some(last) if e.key <= *last => {
                return Err(SstableError::OutOfOrder {
                    previous: Box::new(last.clone()),
                    next: Box::new(e.key.clone()),
                });
            }
            Some(last) => {
                let new_row = last.row != e.key.row;
                let same_column =
                    !new_row && last.family == e.key.family && last.qualifier == e.key.qualifier;
                (new_row, !same_column)
            }
            None => (true, true),
        };
        let size = e.approximate_size() + 32;
        if size > MAX_ENTRY_BYTES {
            return Err(SstableError::EntryTooLarge {
                bytes: size,
                limit: MAX_ENTRY_BYTES,
            });
        }
        let k = &e.key;
        if new_row {
            self.row_hashes.push(bloom::row_hash(&k.row));
        }
        if new_column {
            self.column_hashes.push(bloom::column_hash(
                &k.row,
                &k.family,
                k.qualifier.as_deref(),
            ));
        }
        self.meta.add(e);
        self.block.add(e);
        self.last_key = Some(e.key.clone());
        if self.block.raw_len() >= self.opts.block_size_bytes {
            self.flush_block()?;
        }
        Ok(())
    }

    /// Entries added so far.
    pub fn entry_count(&self) -> u64 {
        self.meta.entry_count()
    }

    /// Data blocks it tried to compress so far (each block is tried unless `backoff` says to
    /// skip it).
    #[cfg(test)]
    pub(crate) fn compression_attempts(&self) -> u64 {
        self.compression_attempts
    }

    /// Bytes written to the file so far (data blocks only until `finish`).
    pub fn bytes_written(&self) -> u64 {
        self.out.len()
    }

    fn flush_block(&mut self) -> Result<(), SstableError> {
        let Some(last) = &self.last_key else {
            return Ok(());
        };
        if self.block.count() == 0 {
            return Ok(());
        }
        if self.compressor.is_none() && self.opts.zstd_level > 0 {
            self.compressor = Some(zstd::bulk::Compressor::new(self.opts.zstd_level)?);
        }
        self.scratch.clear();
        let compressor = match &mut self.compressor {
            Some(c) if self.backoff.try_next() => Some(c),
            _ => None,
        };
        let tried = compressor.is_some();
        let finished = self.block.finish(compressor, &mut self.scratch)?;
        if tried {
            self.compression_attempts += 1;
            self.backoff.record(finished.compressed);
        }
        let offset = self.out.len();
        self.out.append(&self.scratch)?;
        self.index.push(BlockHandle {
            last_key: owned_key(last),
            offset,
            len: self.scratch.len(),
        });
        self.raw_data_bytes += finished.raw_len as u64;
        self.stored_data_bytes += self.scratch.len() as u64;
        Ok(())
    }

    fn append_section(&mut self, bytes: &[u8]) -> Result<Section, SstableError> {
        let section = Section::of(self.out.len(), bytes);
        self.out.append(bytes)?;
        Ok(section)
    }

    /// Writes the filters, index, properties and footer, syncs the file, and returns what it
    /// holds. An SSTable with no entries is not written: that is `SstableError::Empty`.
    pub fn finish(mut self) -> Result<SstableMeta, SstableError> {
        self.flush_block()?;
        let last_key = self.last_key.take().ok_or(SstableError::Empty)?;
        let mut meta = std::mem::take(&mut self.meta)
            .finish(
                owned_key(&last_key),
                self.index.len() as u64,
                self.raw_data_bytes,
                self.stored_data_bytes,
            )
            .ok_or(SstableError::Empty)?;
        let bits = self.opts.bloom_bits_per_key;
        let row_bloom = bloom::build(&self.row_hashes, bits);
        let row_bloom = self.append_section(&row_bloom)?;
        let column_bloom = bloom::build(&self.column_hashes, bits);
        let column_bloom = self.append_section(&column_bloom)?;
        let mut buf = Vec::new();
        index::encode(&self.index, &mut buf);
        let index = self.append_section(&buf)?;
        buf.clear();
        meta::encode(&meta, &mut buf);
        let meta_section = self.append_section(&buf)?;
        let footer = Footer {
            row_bloom,
            column_bloom,
            index,
            meta: meta_section,
        };
        self.out.append(&footer.encode())?;
        self.out.sync()?;
        meta.file_size_bytes = self.out.len();
        Ok(meta)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use tabula_common::{FileId, LocalDir, StorageRoot};

    use super::*;
    use crate::engine::key::Value;
    use crate::engine::sstable::testutil::{
        MemFile, noise, open_bytes, put, rows_of, sample_entries,
    };
    use crate::engine::sstable::{BlockCache, RowRange, Sstable};

    #[test]
    fn out_of_order_and_repeated_keys_are_rejected() {
        let mut w = SstableWriter::new(Box::new(MemFile::default()), SstableOptions::default());
        w.add(&put("b", "f", "q", 5, 5, "v")).unwrap();
        for bad in [
            put("a", "f", "q", 5, 6, "v"),
            put("b", "f", "q", 5, 5, "other"),
        ] {
            assert!(matches!(w.add(&bad), Err(SstableError::OutOfOrder { .. })));
        }
        // Newer timestamp sorts first within a column, so it is out of order too.
        assert!(matches!(
            w.add(&put("b", "f", "q", 6, 1, "v")),
            Err(SstableError::OutOfOrder { .. })
        ));
        w.add(&put("b", "f", "q", 5, 4, "v")).unwrap();
        assert_eq!(w.entry_count(), 2);
    }

    #[test]
    fn an_empty_table_is_an_error() {
        let w = SstableWriter::new(Box::new(MemFile::default()), SstableOptions::default());
        assert!(matches!(w.finish(), Err(SstableError::Empty)));
    }

    #[test]
    fn invalid_options_fail_on_add() {
        for opts in [
            SstableOptions {
                block_size_bytes: 0,
                ..SstableOptions::default()
            },
            SstableOptions {
                zstd_level: 23,
                ..SstableOptions::default()
            },
            SstableOptions {
                flush_zstd_level: -1,
                ..SstableOptions::default()
            },
            SstableOptions {
                bloom_bits_per_key: 1000,
                ..SstableOptions::default()
            },
        ] {
            assert!(opts.validate().is_err());
            let mut w = SstableWriter::new(Box::new(MemFile::default()), opts);
            let e = put("a", "f", "q", 1, 1, "v");
            assert!(matches!(w.add(&e), Err(SstableError::InvalidOptions(_))));
        }
        assert!(SstableOptions::default().validate().is_ok());
    }

    #[test]
    fn blocks_are_cut_near_the_target_size() {
        let file = MemFile::default();
        let opts = SstableOptions {
            block_size_bytes: 1024,
            zstd_level: 0,
            bloom_bits_per_key: 10,
            ..SstableOptions::default()
        };
        let mut w = SstableWriter::new(Box::new(file.clone()), opts);
        let entries = sample_entries(200);
        for e in &entries {
            w.add(e).unwrap();
        }
        assert!(
            w.bytes_written() > 0,
            "blocks are written as they fill, not at finish"
        );
        let meta = w.finish().unwrap();
        assert_eq!(meta.entry_count, entries.len() as u64);
        let per_block = meta.raw_data_bytes / meta.block_count;
        assert!(
            (900..1200).contains(&per_block),
            "{per_block} bytes per block"
        );
        assert_eq!(
            meta.stored_data_bytes,
            meta.raw_data_bytes + 9 * meta.block_count
        );
    }

    #[test]
    fn writes_a_durable_file_through_the_storage_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = LocalDir::open(dir.path()).unwrap();
        let entries = sample_entries(300);
        let mut w = SstableWriter::new(
            root.create_append("sst/0001.sst").unwrap(),
            SstableOptions::default(),
        );
        for e in &entries {
            w.add(e).unwrap();
        }
        let meta = w.finish().unwrap();
        assert_eq!(meta.file_size_bytes, root.size("sst/0001.sst").unwrap());
        assert!(
            meta.stored_data_bytes < meta.raw_data_bytes,
            "zstd shrinks the blocks"
        );
        assert_eq!(
            meta.tombstone_count,
            entries.iter().filter(|e| e.value.is_tombstone()).count() as u64
        );
        let cache = Arc::new(BlockCache::new(1 << 20));
        let t = Sstable::open(FileId(1), root.open_read("sst/0001.sst").unwrap(), cache).unwrap();
        assert_eq!(t.meta(), &meta);
        let got: Vec<_> = t
            .iter(RowRange::all(), false)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(got, entries);
    }

    #[test]
    fn blocks_zstd_cannot_shrink_stop_being_tried_until_the_data_compresses_again() {
        // 400 rows of 1000 bytes zstd cannot shrink, then 1600 rows of one repeated byte:
        // ~25 blocks, then ~100.
        let entries = rows_of(2000, |i| {
            if i < 400 {
                noise(i, 1000)
            } else {
                Bytes::from(vec![b'z'; 1000])
            }
        });
        let file = MemFile::default();
        let mut w = SstableWriter::new(Box::new(file.clone()), SstableOptions::default());
        let mut attempts_in_noise = 0;
        for (i, e) in entries.iter().enumerate() {
            w.add(e).unwrap();
            if i == 399 {
                attempts_in_noise = w.compression_attempts();
            }
        }
        let attempts = w.compression_attempts();
        let meta = w.finish().unwrap();
        let blocks = meta.block_count;
        assert!(blocks > 110, "{blocks} blocks");
        assert!(
            (3..=8).contains(&attempts_in_noise),
            "{attempts_in_noise} attempts over ~25 blocks of noise"
        );
        assert!(
            attempts > blocks - 25 - 20,
            "{attempts} attempts over {blocks} blocks: compressible blocks are tried again"
        );
        assert!(
            meta.stored_data_bytes < meta.raw_data_bytes / 2,
            "{} stored of {} raw",
            meta.stored_data_bytes,
            meta.raw_data_bytes
        );
        let t = open_bytes(file.contents(), Arc::new(BlockCache::new(1 << 20))).unwrap();
        let got: Vec<_> = t
            .iter(RowRange::all(), false)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(got, entries);
    }

    #[test]
    fn index_keys_do_not_pin_the_callers_buffers() {
        let big = Bytes::from(vec![b'r'; 100_000]);
        let file = MemFile::default();
        let mut w = SstableWriter::new(Box::new(file), SstableOptions::default());
        let mut e = put("x", "f", "q", 1, 1, "v");
        e.key.row = big.slice(0..10);
        e.value = Value::Put(big.slice(10..20));
        w.add(&e).unwrap();
        drop(e);
        w.flush_block().unwrap();
        w.last_key = None;
        assert!(
            big.is_unique(),
            "the writer holds no slice of the caller's buffer"
        );
    }
}
