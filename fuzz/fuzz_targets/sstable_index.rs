//! The SSTable block index. Input: `data_end` (u64 LE, where the data blocks must end), then the
//! index bytes. The index has no checksum of its own (the footer holds it), so every input
//! reaches the parser.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tabula_tabletserver::engine::sstable::decode::decode_index;

fuzz_target!(|data: &[u8]| {
    if let Some((end, index)) = data.split_first_chunk::<8>() {
        let _ = decode_index(index, u64::from_le_bytes(*end));
    }
});
