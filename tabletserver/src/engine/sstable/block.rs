//! Data blocks: encode a run of sorted entries, compress and checksum it; decode it back into a
//! `Vec<Entry>` whose byte strings slice the decompressed buffer.
//!
//! A block on disk:
//!
//! ```text
//! +-----+-------------+---------------------------+---------+
//! | tag | raw_len u32 | payload (raw_len bytes    | crc32c  |
//! | u8  | LE          |  uncompressed, or a zstd  | u32 LE  |
//! |     |             |  frame of them)           |         |
//! +-----+-------------+---------------------------+---------+
//!   tag 0 = stored uncompressed, 1 = zstd; the crc covers tag, raw_len and payload.
//! ```
//!
//! The uncompressed bytes are the entries one after another, then the entry count (u32 LE).
//! One entry:
//!
//! ```text
//! flags u8: 0x01 row same as previous entry   0x02 family same as previous entry
//!           0x04 qualifier present            0x08 timestamp is i64::MAX (not stored)
//!           0x30 value kind: 0x00 Put, 0x10 DeleteColumn, 0x20 DeleteFamily, 0x30 DeleteRow
//! [varint len, row]            unless 0x01 (then a new row, sorting after the previous one)
//! [varint len, family]         unless 0x02
//! [varint len, qualifier]      if 0x04
//! [zigzag varint ts - prev ts] unless 0x08 (prev ts starts at 0 in each block)
//! zigzag varint seq - prev seq (wrapping; prev seq starts at 0 in each block)
//! Put: varint len, value | DeleteColumn: zigzag start, zigzag end | other kinds: nothing
//! ```
//!
//! A decoded block is a `Vec<Entry>` sorted by key, so a reader binary-searches it directly.

use std::cell::RefCell;
use std::io;

use bytes::Bytes;
use tabula_common::FileId;

use super::codec::{Decoder, Malformed, put_bytes, put_varint, u32_at, zigzag};
use super::error::SstableError;
use super::rows::RowDirectory;
use crate::engine::key::{CellKey, Entry, Value};
use crate::engine::versions::{ColumnWalk, Verdict};

/// Bytes before the payload: tag and raw length.
pub(crate) const HEADER_LEN: usize = 5;
/// Bytes after the payload: the CRC32C.
pub(crate) const TRAILER_LEN: usize = 4;
/// The largest uncompressed block a reader accepts (and so the largest a writer may produce).
pub(crate) const MAX_RAW_BLOCK_BYTES: usize = 256 << 20;

/// The most a zstd frame can inflate per byte of input: a zstd block regenerates at most 128 KiB
/// and takes at least 4 bytes (an RLE block). A claimed raw length beyond this is corrupt, and
/// is refused before the output buffer is allocated.
const MAX_ZSTD_EXPANSION: usize = 32 << 10;

const TAG_RAW: u8 = 0;
const TAG_ZSTD: u8 = 1;

const ROW_SAME: u8 = 0x01;
const FAMILY_SAME: u8 = 0x02;
const HAS_QUALIFIER: u8 = 0x04;
const TS_MAX: u8 = 0x08;
const KIND_MASK: u8 = 0x30;
const KIND_PUT: u8 = 0x00;
const KIND_DELETE_COLUMN: u8 = 0x10;
const KIND_DELETE_FAMILY: u8 = 0x20;
const KIND_DELETE_ROW: u8 = 0x30;
const KNOWN_FLAGS: u8 = ROW_SAME | FAMILY_SAME | HAS_QUALIFIER | TS_MAX | KIND_MASK;

/// Accumulates the uncompressed bytes of one block.
#[derive(Debug, Default)]
pub(crate) struct BlockBuilder {
    buf: Vec<u8>,
    count: u32,
    prev_row: Bytes,
    prev_family: Bytes,
    prev_ts: i64,
    prev_seq: u64,
}

impl BlockBuilder {
    /// Appends `e`; the caller guarantees key order.
    pub(crate) fn add(&mut self, e: &Entry) {
        let k = &e.key;
        let mut flags = match &e.value {
            Value::Put(_) => KIND_PUT,
            Value::DeleteColumn { .. } => KIND_DELETE_COLUMN,
            Value::DeleteFamily => KIND_DELETE_FAMILY,
            Value::DeleteRow => KIND_DELETE_ROW,
        };
        let first = self.count == 0;
        if !first && k.row == self.prev_row {
            flags |= ROW_SAME;
        }
        if !first && k.family == self.prev_family {
            flags |= FAMILY_SAME;
        }
        if k.qualifier.is_some() {
            flags |= HAS_QUALIFIER;
        }
        if k.timestamp == i64::MAX {
            flags |= TS_MAX;
        }
        self.buf.push(flags);
        if flags & ROW_SAME == 0 {
            put_bytes(&mut self.buf, &k.row);
            self.prev_row = k.row.clone();
        }
        if flags & FAMILY_SAME == 0 {
            put_bytes(&mut self.buf, &k.family);
            self.prev_family = k.family.clone();
        }
        if let Some(q) = &k.qualifier {
            put_bytes(&mut self.buf, q);
        }
        if flags & TS_MAX == 0 {
            put_varint(
                &mut self.buf,
                zigzag(k.timestamp.wrapping_sub(self.prev_ts)),
            );
            self.prev_ts = k.timestamp;
        }
        put_varint(
            &mut self.buf,
            zigzag(k.seq.wrapping_sub(self.prev_seq) as i64),
        );
        self.prev_seq = k.seq;
        match &e.value {
            Value::Put(v) => put_bytes(&mut self.buf, v),
            Value::DeleteColumn { start, end } => {
                put_varint(&mut self.buf, zigzag(*start));
                put_varint(&mut self.buf, zigzag(*end));
            }
            Value::DeleteFamily | Value::DeleteRow => {}
        }
        self.count += 1;
    }

    /// Entries added since the last `finish`.
    pub(crate) fn count(&self) -> u32 {
        self.count
    }

    /// Uncompressed size of the block if finished now.
    pub(crate) fn raw_len(&self) -> usize {
        self.buf.len() + 4
    }

    /// Appends the finished on-disk block to `out` (compressed with `compressor` when that makes
    /// it smaller), resets the builder, and says what it wrote.
    pub(crate) fn finish(
        &mut self,
        compressor: Option<&mut zstd::bulk::Compressor<'static>>,
        out: &mut Vec<u8>,
    ) -> io::Result<Finished> {
        self.buf.extend_from_slice(&self.count.to_le_bytes());
        let raw_len = self.buf.len();
        let raw_len_u32 = u32::try_from(raw_len)
            .ok()
            .filter(|_| raw_len <= MAX_RAW_BLOCK_BYTES)
            .ok_or_else(|| io::Error::other("data block exceeds the block size limit"))?;
        let start = out.len();
        let compressed = match compressor {
            Some(c) => compress_into(c, &self.buf, raw_len_u32, out).inspect_err(|_| {
                out.truncate(start);
            })?,
            None => false,
        };
        if !compressed {
            out.truncate(start);
            out.push(TAG_RAW);
            out.extend_from_slice(&raw_len_u32.to_le_bytes());
            out.extend_from_slice(&self.buf);
        }
        let crc = out.get(start..).map_or(0, crc32c::crc32c);
        out.extend_from_slice(&crc.to_le_bytes());
        self.buf.clear();
        self.count = 0;
        self.prev_row = Bytes::new();
        self.prev_family = Bytes::new();
        self.prev_ts = 0;
        self.prev_seq = 0;
        Ok(Finished {
            raw_len,
            compressed,
        })
    }
}

/// What `BlockBuilder::finish` wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Finished {
    /// The block's uncompressed size.
    pub(crate) raw_len: usize,
    /// Whether it was stored compressed.
    pub(crate) compressed: bool,
}

/// Appends a zstd block of `raw` to `out`, compressed straight into `out`'s spare capacity
/// (no buffer of its own, no copy); whether that made it smaller than `raw`. When it did not,
/// `out` holds a partial block the caller truncates.
fn compress_into(
    compressor: &mut zstd::bulk::Compressor<'static>,
    raw: &[u8],
    raw_len: u32,
    out: &mut Vec<u8>,
) -> io::Result<bool> {
    out.push(TAG_ZSTD);
    out.extend_from_slice(&raw_len.to_le_bytes());
    let body = out.len();
    out.reserve(zstd::zstd_safe::compress_bound(raw.len()));
    let mut at = io::Cursor::new(&mut *out);
    at.set_position(body as u64);
    let n = compressor.compress_to_buffer(raw, &mut at)?;
    Ok(n < raw.len())
}

/// Where a byte string lies in a block's buffer (validated when the block is decoded).
#[derive(Debug, Clone, Copy, Default)]
struct Span {
    start: u32,
    len: u32,
}

impl Span {
    const NONE: Span = Span {
        start: u32::MAX,
        len: 0,
    };

    fn is_none(self) -> bool {
        self.start == u32::MAX
    }

    fn range(self) -> std::ops::Range<usize> {
        let start = self.start as usize;
        start..start + self.len as usize
    }
}

/// One decoded entry, as offsets into the block's buffer: no allocation and no reference
/// count per entry until an `Entry` is handed out.
#[derive(Debug, Clone, Copy)]
struct EntryRef {
    row: Span,
    family: Span,
    /// `Span::NONE` for no qualifier.
    qualifier: Span,
    timestamp: i64,
    seq: u64,
    value: ValueRef,
}

#[derive(Debug, Clone, Copy)]
enum ValueRef {
    Put(Span),
    DeleteColumn { start: i64, end: i64 },
    DeleteFamily,
    DeleteRow,
}

/// A decoded data block: its uncompressed buffer, where each entry's fields lie in it, and a
/// directory of its distinct rows for binary search. `Entry`s handed out slice the buffer.
#[derive(Debug)]
pub(crate) struct Block {
    data: Bytes,
    entries: Vec<EntryRef>,
    rows: RowDirectory,
    /// `row_starts[i]` is the index of the first entry of row `i` of `rows`.
    row_starts: Vec<u32>,
    charge_bytes: usize,
}

impl Block {
    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    fn bytes(&self, span: Span) -> Bytes {
        let r = span.range();
        if r.end <= self.data.len() {
            self.data.slice(r)
        } else {
            Bytes::new()
        }
    }

    fn slice(&self, span: Span) -> &[u8] {
        self.data.get(span.range()).unwrap_or_default()
    }

    /// Entry `i` (entries are sorted by key).
    pub(crate) fn entry(&self, i: usize) -> Option<Entry> {
        let e = self.entries.get(i)?;
        let qualifier = if e.qualifier.is_none() {
            None
        } else {
            Some(self.bytes(e.qualifier))
        };
        let value = match e.value {
            ValueRef::Put(v) => Value::Put(self.bytes(v)),
            ValueRef::DeleteColumn { start, end } => Value::DeleteColumn { start, end },
            ValueRef::DeleteFamily => Value::DeleteFamily,
            ValueRef::DeleteRow => Value::DeleteRow,
        };
        let key = CellKey {
            row: self.bytes(e.row),
            family: self.bytes(e.family),
            qualifier,
            timestamp: e.timestamp,
            seq: e.seq,
        };
        Some(Entry { key, value })
    }

    /// The row of entry `i`.
    pub(crate) fn row(&self, i: usize) -> Option<&[u8]> {
        self.entries.get(i).map(|e| self.slice(e.row))
    }

    /// Whether the last entry's key is `key`.
    pub(crate) fn last_key_is(&self, key: &CellKey) -> bool {
        let Some(e) = self.entries.last() else {
            return false;
        };
        let qualifier_matches = match &key.qualifier {
            None => e.qualifier.is_none(),
            Some(q) => !e.qualifier.is_none() && self.slice(e.qualifier) == &q[..],
        };
        self.slice(e.row) == &key.row[..]
            && self.slice(e.family) == &key.family[..]
            && qualifier_matches
            && e.timestamp == key.timestamp
            && e.seq == key.seq
    }

    /// The index of the first entry whose row fails `before` (a predicate true for a prefix of
    /// the rows, such as "sorts before the row sought"); `len()` if there is none.
    pub(crate) fn seek(&self, before: impl FnMut(&[u8]) -> bool) -> usize {
        let i = self.rows.partition_point(before);
        self.row_starts
            .get(i)
            .map_or(self.entries.len(), |&s| s as usize)
    }

    /// Appends the entries of `row` to `out`.
    pub(crate) fn row_entries_into(&self, row: &[u8], out: &mut Vec<Entry>) {
        let start = self.seek(|r| r < row);
        for i in start..self.entries.len() {
            if self.row(i) != Some(row) {
                break;
            }
            out.extend(self.entry(i));
        }
    }

    /// Appends the entries of `row` that `walk` keeps to `out` (see
    /// [`crate::engine::versions`]).
    pub(crate) fn row_entries_walked(
        &self,
        row: &[u8],
        walk: &mut ColumnWalk,
        out: &mut Vec<Entry>,
    ) {
        let start = self.seek(|r| r < row);
        for i in start..self.entries.len() {
            if self.row(i) != Some(row) {
                break;
            }
            if let Some(e) = self.entry(i)
                && walk.judge(&e.key, &e.value) == Verdict::Keep
            {
                out.push(e);
            }
        }
    }

    /// Memory this block holds, for the cache's byte budget.
    pub(crate) fn charge_bytes(&self) -> usize {
        self.charge_bytes
    }
}

thread_local! {
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

/// Decompresses a zstd frame that must inflate to exactly `raw_len` bytes, reusing a per-thread
/// context.
fn decompress(payload: &[u8], raw_len: usize) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(raw_len);
    DECOMPRESSOR.with(|cell| match cell.try_borrow_mut() {
        Ok(mut slot) => {
            if slot.is_none() {
                *slot = Some(zstd::bulk::Decompressor::new()?);
            }
            match slot.as_mut() {
                Some(d) => d.decompress_to_buffer(payload, &mut out),
                None => zstd::bulk::Decompressor::new()?.decompress_to_buffer(payload, &mut out),
            }
        }
        Err(_) => zstd::bulk::Decompressor::new()?.decompress_to_buffer(payload, &mut out),
    })?;
    Ok(out)
}

/// Checks and decodes one on-disk block (`raw` as read, `offset` its position in the file).
pub(crate) fn decode(file: FileId, offset: u64, raw: Bytes) -> Result<Block, SstableError> {
    const WHAT: &str = "data block";
    let corrupt = |why: &str| SstableError::corrupt(file, WHAT, why);
    let body_len = raw
        .len()
        .checked_sub(TRAILER_LEN)
        .filter(|&n| n >= HEADER_LEN)
        .ok_or_else(|| corrupt("shorter than its header"))?;
    let expected = u32_at(&raw, body_len).ok_or_else(|| corrupt("no checksum"))?;
    let actual = raw.get(..body_len).map_or(0, crc32c::crc32c);
    if expected != actual {
        return Err(SstableError::ChecksumMismatch {
            file,
            what: WHAT,
            offset,
            expected,
            actual,
        });
    }
    let tag = *raw.first().ok_or_else(|| corrupt("empty"))?;
    let raw_len = u32_at(&raw, 1).ok_or_else(|| corrupt("no length"))? as usize;
    let payload = raw.slice(HEADER_LEN..body_len);
    let data = match tag {
        TAG_RAW if payload.len() == raw_len => payload,
        TAG_RAW => return Err(corrupt("stored length does not match")),
        TAG_ZSTD if raw_len > MAX_RAW_BLOCK_BYTES => return Err(corrupt("raw length too large")),
        TAG_ZSTD if raw_len > payload.len().saturating_mul(MAX_ZSTD_EXPANSION) => {
            return Err(corrupt(
                "raw length larger than the zstd frame can inflate to",
            ));
        }
        TAG_ZSTD => {
            let out = decompress(&payload, raw_len).map_err(|e| corrupt(&format!("zstd: {e}")))?;
            if out.len() != raw_len {
                return Err(corrupt("decompressed length does not match"));
            }
            Bytes::from(out)
        }
        _ => return Err(corrupt("unknown compression tag")),
    };
    let mut block = decode_entries(data).map_err(|m| corrupt(m.0))?;
    block.charge_bytes = block.data.len()
        + HEADER_LEN
        + TRAILER_LEN
        + block.entries.capacity() * std::mem::size_of::<EntryRef>()
        + block.rows.size_bytes()
        + block.row_starts.capacity() * 4
        + std::mem::size_of::<Block>();
    Ok(block)
}

/// Decodes the uncompressed bytes of a block (`charge_bytes` left for the caller).
fn decode_entries(data: Bytes) -> Result<Block, Malformed> {
    let body_len = data
        .len()
        .checked_sub(4)
        .ok_or(Malformed("no entry count"))?;
    let count = u32_at(&data, body_len).ok_or(Malformed("no entry count"))? as usize;
    // Every entry takes at least two bytes (flags and seq), which bounds the allocation.
    if count == 0 || count > body_len / 2 || u32::try_from(data.len()).is_err() {
        return Err(Malformed("entry count does not fit the block"));
    }
    let body = data.slice(..body_len);
    let mut d = Decoder::new(&body);
    let mut entries = Vec::with_capacity(count);
    let mut rows = RowDirectory::with_capacity(count, 0);
    let mut row_starts = Vec::with_capacity(count);
    let mut row = Span::default();
    let mut family = Span::default();
    let mut timestamp = 0i64;
    let mut seq = 0u64;
    for i in 0..count {
        let flags = d.u8()?;
        if flags & !KNOWN_FLAGS != 0 {
            return Err(Malformed("unknown entry flags"));
        }
        if i == 0 && flags & (ROW_SAME | FAMILY_SAME) != 0 {
            return Err(Malformed("first entry refers to a previous one"));
        }
        if flags & ROW_SAME == 0 {
            let prev = body.get(row.range()).unwrap_or_default();
            row = span(&mut d)?;
            let new = body.get(row.range()).unwrap_or_default();
            // A row not marked "same" is a new row: it sorts after the previous one.
            if i > 0 && new <= prev {
                return Err(Malformed("rows out of order"));
            }
            rows.push(new).map_err(|_| Malformed("rows too large"))?;
            row_starts.push(i as u32);
        }
        if flags & FAMILY_SAME == 0 {
            family = span(&mut d)?;
        }
        let qualifier = if flags & HAS_QUALIFIER != 0 {
            span(&mut d)?
        } else {
            Span::NONE
        };
        let ts = if flags & TS_MAX != 0 {
            i64::MAX
        } else {
            timestamp = timestamp.wrapping_add(d.zigzag()?);
            timestamp
        };
        seq = seq.wrapping_add(d.zigzag()? as u64);
        let value = match flags & KIND_MASK {
            KIND_PUT => ValueRef::Put(span(&mut d)?),
            KIND_DELETE_COLUMN => ValueRef::DeleteColumn {
                start: d.zigzag()?,
                end: d.zigzag()?,
            },
            KIND_DELETE_FAMILY => ValueRef::DeleteFamily,
            _ => ValueRef::DeleteRow,
        };
        entries.push(EntryRef {
            row,
            family,
            qualifier,
            timestamp: ts,
            seq,
            value,
        });
    }
    if !d.is_empty() {
        return Err(Malformed("bytes after the last entry"));
    }
    Ok(Block {
        data,
        entries,
        rows,
        row_starts,
        charge_bytes: 0,
    })
}

/// A length-prefixed byte string's place in the buffer (the buffer is under 4 GiB).
fn span(d: &mut Decoder<'_>) -> Result<Span, Malformed> {
    let len = d.len()?;
    let start = d.position();
    d.skip(len)?;
    Ok(Span {
        start: start as u32,
        len: len as u32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::sstable::testutil::{noise, rows_of};

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn sample() -> Vec<Entry> {
        let e = |row: &str, fam: &str, q: Option<&str>, ts: i64, seq: u64, value: Value| Entry {
            key: CellKey {
                row: b(row),
                family: b(fam),
                qualifier: q.map(b),
                timestamp: ts,
                seq,
            },
            value,
        };
        vec![
            e("a", "", None, i64::MAX, 7, Value::DeleteRow),
            e("a", "f", None, i64::MAX, 6, Value::DeleteFamily),
            e("a", "f", Some(""), 5, 5, Value::Put(Bytes::new())),
            e(
                "a",
                "f",
                Some("q"),
                i64::MAX,
                4,
                Value::DeleteColumn {
                    start: -3,
                    end: i64::MAX,
                },
            ),
            e(
                "a",
                "f",
                Some("q"),
                1_700_000_000_000_000,
                3,
                Value::Put(b("v1")),
            ),
            e("a", "f", Some("q"), i64::MIN, 1, Value::Put(b("v0"))),
            e("b", "f", Some("q"), -1, u64::MAX, Value::Put(b("x"))),
            e(
                "bb",
                "g",
                Some("q"),
                0,
                2,
                Value::DeleteColumn {
                    start: i64::MIN,
                    end: 0,
                },
            ),
        ]
    }

    fn all(block: &Block) -> Vec<Entry> {
        (0..block.len()).filter_map(|i| block.entry(i)).collect()
    }

    fn encode(entries: &[Entry], level: i32) -> Vec<u8> {
        let mut builder = BlockBuilder::default();
        for e in entries {
            builder.add(e);
        }
        assert_eq!(builder.count() as usize, entries.len());
        let mut compressor = if level > 0 {
            Some(zstd::bulk::Compressor::new(level).unwrap())
        } else {
            None
        };
        let mut out = Vec::new();
        let finished = builder.finish(compressor.as_mut(), &mut out).unwrap();
        assert!(finished.raw_len > 0);
        assert_eq!(builder.count(), 0, "finish resets the builder");
        out
    }

    #[test]
    fn round_trips_every_field_raw_and_compressed() {
        let entries = sample();
        for level in [0, 1, 19] {
            let out = encode(&entries, level);
            let block = decode(FileId(1), 0, Bytes::from(out)).unwrap();
            assert_eq!(all(&block), entries, "level {level}");
            assert!(block.last_key_is(&entries[entries.len() - 1].key));
            assert!(!block.last_key_is(&entries[0].key));
            assert!(block.charge_bytes() > 0);
        }
    }

    #[test]
    fn compressible_blocks_are_compressed_and_slices_share_the_buffer() {
        let value = Bytes::from(vec![b'z'; 1000]);
        let entries: Vec<Entry> = (0..20u64)
            .map(|i| Entry {
                key: CellKey {
                    row: b(&format!("row{i:03}")),
                    family: b("f"),
                    qualifier: Some(b("q")),
                    timestamp: 10,
                    seq: i + 1,
                },
                value: Value::Put(value.clone()),
            })
            .collect();
        let out = encode(&entries, 3);
        assert_eq!(out[0], TAG_ZSTD);
        assert!(out.len() < 2000);
        let block = decode(FileId(1), 0, Bytes::from(out)).unwrap();
        assert_eq!(all(&block), entries);
        let (e0, e1) = (block.entry(0).unwrap(), block.entry(1).unwrap());
        let Value::Put(v0) = &e0.value else {
            panic!("put")
        };
        let Value::Put(v1) = &e1.value else {
            panic!("put")
        };
        let gap = (v1.as_ptr() as usize).abs_diff(v0.as_ptr() as usize);
        assert!(gap < 1100, "values are slices of one decompressed buffer");
    }

    #[test]
    fn blocks_are_appended_after_what_out_holds_compressed_or_raw() {
        let incompressible = rows_of(40, |i| noise(i, 1000));
        let compressible = rows_of(40, |_| Bytes::from(vec![b'z'; 1000]));
        for (entries, tag) in [(incompressible, TAG_RAW), (compressible, TAG_ZSTD)] {
            let mut builder = BlockBuilder::default();
            for e in &entries {
                builder.add(e);
            }
            let mut compressor = zstd::bulk::Compressor::new(1).unwrap();
            let mut out = b"earlier block".to_vec();
            let finished = builder.finish(Some(&mut compressor), &mut out).unwrap();
            let raw_len = finished.raw_len;
            assert_eq!(finished.compressed, tag == TAG_ZSTD);
            assert_eq!(&out[..13], b"earlier block");
            assert_eq!(out[13], tag);
            assert_eq!(u32_at(&out, 14).unwrap() as usize, raw_len);
            if tag == TAG_RAW {
                assert_eq!(out.len() - 13, HEADER_LEN + raw_len + TRAILER_LEN);
            } else {
                assert!(out.len() - 13 < raw_len / 10, "{} of {raw_len}", out.len());
            }
            let block = decode(FileId(1), 0, Bytes::copy_from_slice(&out[13..])).unwrap();
            assert_eq!(all(&block), entries, "tag {tag}");
        }
    }

    #[test]
    fn the_most_compressible_blocks_are_within_the_expansion_bound() {
        // Runs of zeros are zstd's best case (RLE blocks): they must still decode.
        let entries: Vec<Entry> = (0..4u64)
            .map(|i| Entry {
                key: CellKey {
                    row: b(&format!("r{i}")),
                    family: b("f"),
                    qualifier: None,
                    timestamp: 1,
                    seq: i + 1,
                },
                value: Value::Put(Bytes::from(vec![0u8; 2 << 20])),
            })
            .collect();
        for level in [1, 19] {
            let out = encode(&entries, level);
            assert_eq!(out[0], TAG_ZSTD);
            let raw_len = u32_at(&out, 1).unwrap() as usize;
            let payload_len = out.len() - HEADER_LEN - TRAILER_LEN;
            assert!(
                raw_len / payload_len > 1000,
                "{raw_len} from {payload_len} bytes"
            );
            let block = decode(FileId(1), 0, Bytes::from(out)).unwrap();
            assert_eq!(all(&block), entries, "level {level}");
        }
        let lying = {
            let mut out = vec![TAG_ZSTD];
            out.extend_from_slice(&(160u32 << 20).to_le_bytes());
            out.push(0x82);
            let crc = crc32c::crc32c(&out);
            out.extend_from_slice(&crc.to_le_bytes());
            Bytes::from(out)
        };
        let err = decode(FileId(1), 0, lying).unwrap_err();
        assert!(
            err.to_string().contains("zstd frame can inflate to"),
            "{err}"
        );
    }

    #[test]
    fn row_search_finds_each_rows_entries() {
        let entries = sample();
        let block = decode(FileId(1), 0, Bytes::from(encode(&entries, 0))).unwrap();
        for row in [&b"a"[..], b"b", b"bb", b"", b"ab", b"c"] {
            let want: Vec<Entry> = entries
                .iter()
                .filter(|e| e.key.row == row)
                .cloned()
                .collect();
            let mut got = Vec::new();
            block.row_entries_into(row, &mut got);
            assert_eq!(got, want, "{row:?}");
        }
        assert_eq!(block.seek(|r| r < &b"b"[..]), 6);
        assert_eq!(block.seek(|r| r <= &b"b"[..]), 7);
        assert_eq!(block.seek(|_| true), entries.len());
        assert_eq!(block.seek(|_| false), 0);
    }

    #[test]
    fn every_bit_flip_is_detected() {
        let out = encode(&sample(), 1);
        for i in 0..out.len() {
            for bit in 0..8 {
                let mut bad = out.clone();
                bad[i] ^= 1 << bit;
                let err = decode(FileId(1), 64, Bytes::from(bad)).unwrap_err();
                assert!(
                    matches!(
                        err,
                        SstableError::ChecksumMismatch { offset: 64, .. }
                            | SstableError::Corrupt { .. }
                    ),
                    "{err}"
                );
            }
        }
    }

    #[test]
    fn truncation_is_detected() {
        let out = encode(&sample(), 0);
        for len in 0..out.len() {
            assert!(decode(FileId(1), 0, Bytes::copy_from_slice(&out[..len])).is_err());
        }
    }

    #[test]
    fn malformed_payloads_with_valid_checksums_are_errors() {
        let seal = |tag: u8, raw_len: u32, payload: &[u8]| {
            let mut out = vec![tag];
            out.extend_from_slice(&raw_len.to_le_bytes());
            out.extend_from_slice(payload);
            let crc = crc32c::crc32c(&out);
            out.extend_from_slice(&crc.to_le_bytes());
            Bytes::from(out)
        };
        let cases = [
            seal(TAG_RAW, 4, &0u32.to_le_bytes()),
            seal(TAG_RAW, 4, &u32::MAX.to_le_bytes()),
            seal(TAG_RAW, 9, &[0; 4]),
            seal(7, 4, &[0; 4]),
            seal(TAG_ZSTD, u32::MAX, b"not zstd"),
            seal(TAG_ZSTD, 100, b"not zstd"),
            // found by fuzzing (sstable_block): 1 payload byte claiming 160 MiB, which was
            // allocated before zstd failed
            seal(TAG_ZSTD, 160 << 20, &[0x82]),
            // one entry with an unknown flag bit
            seal(TAG_RAW, 7, &[0x40, 0, 0, 1, 0, 0, 0]),
            // first entry claims "row same as previous"
            seal(
                TAG_RAW,
                6,
                &[
                    ROW_SAME | FAMILY_SAME | KIND_DELETE_ROW | TS_MAX,
                    0,
                    1,
                    0,
                    0,
                    0,
                ],
            ),
            // a second entry repeating the row without the "row same" flag
            seal(
                TAG_RAW,
                13,
                &[0x38, 1, b'a', 0, 2, 0x3a, 1, b'a', 2, 2, 0, 0, 0],
            ),
            // a row length past the end
            seal(
                TAG_RAW,
                8,
                &[KIND_DELETE_ROW | TS_MAX, 9, b'a', 0, 1, 0, 0, 0],
            ),
        ];
        for (i, raw) in cases.into_iter().enumerate() {
            assert!(
                matches!(decode(FileId(1), 0, raw), Err(SstableError::Corrupt { .. })),
                "case {i}"
            );
        }
    }
}
