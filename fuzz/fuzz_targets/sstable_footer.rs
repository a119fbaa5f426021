//! The 96-byte SSTable footer. Input: `footer_offset` (u64 LE), then the footer bytes, decoded as
//! given and again with the footer CRC32C (bytes 84..88, over bytes 0..84) recomputed so the
//! section placement checks behind it are reached.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tabula_tabletserver::engine::sstable::decode::decode_footer;

fuzz_target!(|data: &[u8]| {
    let Some((offset, footer)) = data.split_first_chunk::<8>() else {
        return;
    };
    let offset = u64::from_le_bytes(*offset);
    let _ = decode_footer(footer, offset);
    if footer.len() >= 88 {
        let mut sealed = footer.to_vec();
        let crc = crc32c::crc32c(&footer[..84]);
        sealed[84..88].copy_from_slice(&crc.to_le_bytes());
        let _ = decode_footer(&sealed, offset);
    }
});
