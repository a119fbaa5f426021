//! The SSTable properties section. Input: the file size (u64 LE), then the section bytes (no
//! checksum of their own: the footer holds it).

#![no_main]

use libfuzzer_sys::fuzz_target;
use tabula_tabletserver::engine::sstable::decode::decode_properties;

fuzz_target!(|data: &[u8]| {
    if let Some((size, properties)) = data.split_first_chunk::<8>() {
        let _ = decode_properties(properties, u64::from_le_bytes(*size));
    }
});
