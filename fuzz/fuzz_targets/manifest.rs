//! A tablet manifest: `Manifest::decode` on the input as given, then on the input wrapped as a
//! body with a correct magic, version, length and CRC32C, so the body parser behind the checksum
//! is reached. A manifest that decodes must encode and decode back to itself.
//! Seed: `tabletserver/tests/fixtures/manifest`.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tabula_tabletserver::engine::manifest::Manifest;

fn round_trip(bytes: Bytes) {
    if let Ok(m) = Manifest::decode("fuzz", bytes) {
        assert_eq!(Manifest::decode("fuzz", m.encode()).ok(), Some(m));
    }
}

fuzz_target!(|data: &[u8]| {
    round_trip(Bytes::copy_from_slice(data));
    let Ok(len) = u32::try_from(data.len()) else {
        return;
    };
    let mut sealed = Vec::with_capacity(data.len() + 16);
    sealed.extend_from_slice(b"TBMF");
    sealed.extend_from_slice(&1u32.to_le_bytes());
    sealed.extend_from_slice(&len.to_le_bytes());
    sealed.extend_from_slice(data);
    sealed.extend_from_slice(&crc32c::crc32c(data).to_le_bytes());
    round_trip(Bytes::from(sealed));
});
