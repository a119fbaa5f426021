//! The block index: for each data block, its last key and where it lies in the file, so a reader
//! binary-searches for the first block whose last key is at or after the key it wants.
//!
//! ```text
//! +--------------+--------------------------------------------------+
//! | count varint | count x ( last key | offset varint | len varint ) |
//! +--------------+--------------------------------------------------+
//!   last key = row, family (varint length + bytes each), qualifier tag u8 (0 none, 1 some)
//!              [+ varint length + bytes], zigzag varint timestamp, varint seq
//! ```
//!
//! Decoding checks that the blocks are contiguous, end exactly where the filters start, and that
//! the last keys strictly increase: a reader can then trust the index for binary search.

use bytes::Bytes;

use super::block::{HEADER_LEN, MAX_RAW_BLOCK_BYTES, TRAILER_LEN};
use super::codec::{Decoder, Malformed, put_key, put_varint};
use crate::engine::key::CellKey;

/// Smallest encoding of one index entry (empty row and family, no qualifier, 1-byte varints).
const MIN_ENTRY_LEN: usize = 7;

/// Where one data block lies, and the last key it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BlockHandle {
    /// The largest key in the block.
    pub(crate) last_key: CellKey,
    /// Offset of the block in the file.
    pub(crate) offset: u64,
    /// Length of the block on disk (header, payload and checksum).
    pub(crate) len: usize,
}

/// Appends the encoded index.
pub(crate) fn encode(blocks: &[BlockHandle], out: &mut Vec<u8>) {
    put_varint(out, blocks.len() as u64);
    for b in blocks {
        put_key(out, &b.last_key);
        put_varint(out, b.offset);
        put_varint(out, b.len as u64);
    }
}

/// Decodes an index whose blocks must end exactly at `data_end`.
pub(crate) fn decode(buf: &Bytes, data_end: u64) -> Result<Vec<BlockHandle>, Malformed> {
    let mut d = Decoder::new(buf);
    let count = d.varint()?;
    let count = usize::try_from(count)
        .ok()
        .filter(|&n| n > 0 && n <= d.remaining() / MIN_ENTRY_LEN)
        .ok_or(Malformed("block count does not fit the index"))?;
    let max_block_len = (MAX_RAW_BLOCK_BYTES + HEADER_LEN + TRAILER_LEN) as u64;
    let mut blocks: Vec<BlockHandle> = Vec::with_capacity(count);
    for _ in 0..count {
        let last_key = d.key()?;
        let offset = d.varint()?;
        let len = d.varint()?;
        if len < (HEADER_LEN + TRAILER_LEN) as u64 || len > max_block_len {
            return Err(Malformed("block length out of range"));
        }
        if let Some(prev) = blocks.last() {
            if prev.offset + prev.len as u64 != offset {
                return Err(Malformed("blocks are not contiguous"));
            }
            if prev.last_key >= last_key {
                return Err(Malformed("last keys do not increase"));
            }
        }
        if offset.checked_add(len).is_none_or(|end| end > data_end) {
            return Err(Malformed("block runs past the data section"));
        }
        // len <= max_block_len, which fits usize.
        blocks.push(BlockHandle {
            last_key,
            offset,
            len: len as usize,
        });
    }
    if !d.is_empty() {
        return Err(Malformed("bytes after the last block"));
    }
    if blocks
        .last()
        .is_some_and(|b| b.offset + b.len as u64 != data_end)
    {
        return Err(Malformed("blocks do not end where the filters start"));
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(row: &str, offset: u64, len: usize) -> BlockHandle {
        BlockHandle {
            last_key: CellKey {
                row: Bytes::copy_from_slice(row.as_bytes()),
                family: Bytes::from_static(b"f"),
                qualifier: Some(Bytes::from_static(b"q")),
                timestamp: 3,
                seq: 4,
            },
            offset,
            len,
        }
    }

    fn encoded(blocks: &[BlockHandle]) -> Bytes {
        let mut out = Vec::new();
        encode(blocks, &mut out);
        Bytes::from(out)
    }

    #[test]
    fn round_trips() {
        let blocks = vec![
            handle("a", 0, 100),
            handle("b", 100, 9),
            handle("c", 109, 70_000),
        ];
        assert_eq!(decode(&encoded(&blocks), 70_109).unwrap(), blocks);
        let one = vec![handle("a", 40, 10)];
        assert_eq!(
            decode(&encoded(&one), 50).unwrap(),
            one,
            "first block may start anywhere"
        );
    }

    #[test]
    fn rejects_inconsistent_indexes() {
        let cases: Vec<(Vec<BlockHandle>, u64)> = vec![
            (vec![], 0),
            (vec![handle("a", 0, 100), handle("b", 101, 10)], 111),
            (vec![handle("b", 0, 100), handle("a", 100, 10)], 110),
            (vec![handle("a", 0, 100), handle("a", 100, 10)], 110),
            (vec![handle("a", 0, 100)], 99),
            (vec![handle("a", 0, 100)], 101),
            (vec![handle("a", 0, 3)], 3),
            (vec![handle("a", u64::MAX - 5, 10)], u64::MAX),
        ];
        for (i, (blocks, end)) in cases.into_iter().enumerate() {
            assert!(decode(&encoded(&blocks), end).is_err(), "case {i}");
        }
    }

    #[test]
    fn huge_counts_and_truncation_are_errors_not_allocations() {
        let mut out = Vec::new();
        put_varint(&mut out, u64::MAX);
        assert!(decode(&Bytes::from(out), 0).is_err());
        let full = encoded(&[handle("a", 0, 100), handle("b", 100, 10)]);
        for len in 0..full.len() {
            assert!(decode(&full.slice(..len), 110).is_err(), "len {len}");
        }
        let mut extra = full.to_vec();
        extra.push(0);
        assert!(decode(&Bytes::from(extra), 110).is_err());
    }
}
