//! SSTables: immutable, sorted files of `Entry`s (cells and tombstones), written once by a
//! flush or a compaction and then only read.
//!
//! # File layout (format version 1)
//!
//! ```text
//! offset 0
//! +-------------------------------------------------------------+
//! | data block 0   tag u8 | raw_len u32 | payload | crc32c u32   |  tag 0 raw, 1 zstd;
//! | data block 1   ...                                          |  ~16 KiB uncompressed each,
//! | ...                                                         |  entries in key order
//! | data block n-1                                              |
//! +-------------------------------------------------------------+  <- row filter offset
//! | row filter      num_probes u8 | bits                        |  bloom on row
//! | column filter   num_probes u8 | bits                        |  bloom on row+family+qualifier
//! +-------------------------------------------------------------+
//! | block index     count | (last key, offset, len) x count     |  binary-searched by key
//! +-------------------------------------------------------------+
//! | properties      counts, first/last key, seq and timestamp   |  `SstableMeta`
//! |                 bounds, smallest/largest row, sizes         |
//! +-------------------------------------------------------------+  <- file size - 96
//! | footer (96 B)   4 x (offset u64, len u64, crc32c u32)       |  row filter, column filter,
//! |                 version u32 | crc32c u32 | magic "TBLA.SST" |  index, properties
//! +-------------------------------------------------------------+  <- end of file
//! ```
//!
//! Every byte is covered by a CRC32C: each data block by its own, the four tail sections by
//! those in the footer, the footer by its own. Integers are little-endian (fixed width) or LEB128
//! varints; signed values are zigzag-encoded. The per-module docs give each part byte by byte.
//!
//! Invariants: an SSTable holds at least one entry; keys strictly increase through the file;
//! decoding never panics and never allocates more than the bytes it was given justify — corrupt
//! or truncated input is an `SstableError`.
//!
//! # Reading order
//!
//! `codec` (varints, keys), the pure codecs `block`, `bloom`, `index`, `meta`, `footer`; then
//! `writer` (`SstableWriter`, streaming block by block, with `backoff` deciding which blocks it
//! tries to compress), `reader` (`Sstable::open`, point
//! reads), `iter` (range scans, forward and reverse), `rows` (packed rows for binary search),
//! `cache` (the shared `BlockCache`), and `range` (`RowRange`, shared with the rest of the
//! engine). Errors are in `error`. `decode` is the door for fuzz targets and corruption
//! fixtures: each part's decoder over untrusted bytes.

mod backoff;
mod block;
mod bloom;
mod cache;
mod codec;
pub mod decode;
mod error;
mod footer;
mod index;
mod iter;
mod meta;
mod range;
mod reader;
mod rows;
#[cfg(test)]
pub(crate) mod testutil;
mod writer;

pub use cache::BlockCache;
pub use error::SstableError;
pub use iter::SstableIter;
pub use meta::SstableMeta;
pub use range::RowRange;
pub use reader::Sstable;
pub use writer::{SstableOptions, SstableWriter};
