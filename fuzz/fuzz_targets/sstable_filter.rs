//! An SSTable row or column filter section (`num_probes | lines`), decoded and queried.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tabula_tabletserver::engine::sstable::decode::decode_filter;

fuzz_target!(|data: &[u8]| {
    let _ = decode_filter(data);
});
