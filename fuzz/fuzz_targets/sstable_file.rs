//! A whole SSTable: opened from memory and read forward, in reverse and row by row
//! (`decode_file`). Decoded as given, then "resealed": every checksum the input's own footer and
//! index lead to is recomputed (the four tail sections, the footer, each data block), so a
//! mutation inside a block or the index reaches the decoders behind the checksums in the context
//! of a whole file. Seed: `tabletserver/tests/fixtures/sstable`.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tabula_tabletserver::engine::sstable::decode::{decode_file, decode_footer, decode_index};

const FOOTER_LEN: usize = 96;
const SECTION_LEN: usize = 20;
const FOOTER_CRC_AT: usize = 84;

fn u64_at(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

/// Recomputes the checksums of the four tail sections and of the footer (format version 1).
fn reseal_tail(file: &mut [u8]) -> Option<()> {
    let footer_at = file.len().checked_sub(FOOTER_LEN)?;
    for i in 0..4 {
        let at = footer_at + i * SECTION_LEN;
        let offset = usize::try_from(u64_at(file, at)).ok()?;
        let len = usize::try_from(u64_at(file, at + 8)).ok()?;
        let end = offset.checked_add(len).filter(|&e| e <= footer_at)?;
        let crc = crc32c::crc32c(&file[offset..end]);
        file[at + 16..at + 20].copy_from_slice(&crc.to_le_bytes());
    }
    let crc = crc32c::crc32c(&file[footer_at..footer_at + FOOTER_CRC_AT]);
    file[footer_at + FOOTER_CRC_AT..footer_at + FOOTER_CRC_AT + 4]
        .copy_from_slice(&crc.to_le_bytes());
    Some(())
}

/// Recomputes every data block's checksum, finding the blocks through the index.
fn reseal_blocks(file: &mut [u8]) -> Option<()> {
    let footer_at = file.len().checked_sub(FOOTER_LEN)?;
    let layout = decode_footer(&file[footer_at..], footer_at as u64).ok()?;
    let index = file.get(layout.index.start as usize..layout.index.end as usize)?;
    let blocks = decode_index(index, layout.row_filter.start).ok()?;
    for b in blocks {
        let block = file.get_mut(b.start as usize..b.end as usize)?;
        let body = block.len().checked_sub(4)?;
        let crc = crc32c::crc32c(&block[..body]);
        block[body..].copy_from_slice(&crc.to_le_bytes());
    }
    Some(())
}

fuzz_target!(|data: &[u8]| {
    let _ = decode_file(Bytes::copy_from_slice(data));
    let mut sealed = data.to_vec();
    if reseal_tail(&mut sealed).is_some() {
        let _ = reseal_blocks(&mut sealed);
        let _ = decode_file(Bytes::from(sealed));
    }
});
