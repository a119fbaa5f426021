//! A whole commit-log segment, scanned to the end (`scan_segment`), every record's payload
//! decoded as a row mutation. Scanned as given, then "resealed": the header CRC and each record's
//! CRC recomputed front to back, so the fuzzer reaches the field checks behind them. Seed:
//! `tabletserver/tests/fixtures/commitlog`.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tabula_tabletserver::engine::RowMutation;
use tabula_tabletserver::engine::commitlog::scan_segment;

/// Fixed part of the segment header before the server id (format version 1).
const HEADER_FIXED_LEN: usize = 26;
/// Fixed part of a record before its payload.
const RECORD_HEADER_LEN: usize = 28;

fn u32_at(b: &[u8], at: usize) -> Option<usize> {
    let s: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    usize::try_from(u32::from_le_bytes(s)).ok()
}

fn reseal(seg: &mut [u8]) -> Option<()> {
    let id_len = usize::from(u16::from_le_bytes(seg.get(24..26)?.try_into().ok()?));
    let crc_at = HEADER_FIXED_LEN + id_len;
    let crc = crc32c::crc32c(seg.get(..crc_at)?);
    seg.get_mut(crc_at..crc_at + 4)?
        .copy_from_slice(&crc.to_le_bytes());
    let mut at = crc_at + 4;
    while at < seg.len() {
        let len = u32_at(seg, at + 4)?;
        let end = (at + RECORD_HEADER_LEN).checked_add(len)?;
        let crc = crc32c::crc32c(seg.get(at + 4..end)?);
        seg.get_mut(at..at + 4)?.copy_from_slice(&crc.to_le_bytes());
        at = end;
    }
    Some(())
}

fn scan(seg: &[u8]) {
    let scanner = scan_segment(seg);
    let _ = scanner.header();
    for item in scanner {
        match item {
            Ok(record) => {
                let _ = RowMutation::decode(Bytes::copy_from_slice(record.payload));
            }
            Err(damage) => {
                assert!(damage.offset as usize <= seg.len(), "{damage:?}");
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    scan(data);
    let mut sealed = data.to_vec();
    let _ = reseal(&mut sealed);
    scan(&sealed);
});
