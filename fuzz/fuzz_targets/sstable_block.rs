//! One SSTable data block (`tag | raw_len | payload | crc32c`): decoded as given, then with its
//! last four bytes replaced by the CRC32C of the rest, so the fuzzer also reaches the entry
//! decoder behind the checksum. Seed: `tabletserver/tests/fixtures/block`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tabula_tabletserver::engine::sstable::decode::decode_block;

fuzz_target!(|data: &[u8]| {
    let _ = decode_block(data);
    if let Some(body) = data.len().checked_sub(4) {
        let mut sealed = data.to_vec();
        let crc = crc32c::crc32c(&data[..body]);
        sealed[body..].copy_from_slice(&crc.to_le_bytes());
        let _ = decode_block(&sealed);
    }
});
