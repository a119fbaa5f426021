//! The commit-log record codec: pure functions over bytes, no I/O.
//!
//! One record per row mutation, all integers little-endian:
//!
//! ```text
//! offset  size  field
//!      0     4  crc32c       CRC-32C of bytes [4, 28 + payload_len)
//!      4     4  payload_len  bytes of payload (at most MAX_PAYLOAD_BYTES)
//!      8     8  tablet_id    the tablet the mutation belongs to
//!     16     8  seq          first sequence number the mutation used (>= 1)
//!     24     4  entry_count  consecutive sequence numbers it used (>= 1)
//!     28     n  payload      the encoded row mutation, opaque to the commit log
//! ```
//!
//! Decoding never panics and never allocates: the payload is a borrowed slice, and
//! `payload_len` is checked against the bytes at hand and against `MAX_PAYLOAD_BYTES` before it
//! is used. The CRC is checked before any other field is believed.

use tabula_common::TabletId;

/// Bytes of the fixed part of a record, before the payload.
pub(crate) const RECORD_HEADER_LEN: usize = 28;

/// The largest payload a record may carry (256 MiB).
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024 * 1024;

/// A decoded record, borrowing its payload from the segment bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordView<'a> {
    pub(crate) tablet: TabletId,
    pub(crate) seq: u64,
    pub(crate) entry_count: u32,
    pub(crate) payload: &'a [u8],
}

/// Why bytes do not decode as a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// Fewer bytes than the record (header or claimed payload) needs.
    Truncated { needed: u64, available: usize },
    /// `payload_len` is beyond `MAX_PAYLOAD_BYTES`.
    TooLarge { payload_len: u64 },
    /// The stored CRC does not match the bytes.
    CrcMismatch { stored: u32, computed: u32 },
    /// The CRC matches but a field is impossible (the writer never produces it).
    Invalid(&'static str),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Truncated { needed, available } => {
                write!(
                    f,
                    "truncated record: needs {needed} bytes, {available} remain"
                )
            }
            DecodeError::TooLarge { payload_len } => {
                write!(
                    f,
                    "payload length {payload_len} exceeds the limit of {MAX_PAYLOAD_BYTES}"
                )
            }
            DecodeError::CrcMismatch { stored, computed } => {
                write!(
                    f,
                    "crc mismatch: stored {stored:#010x}, computed {computed:#010x}"
                )
            }
            DecodeError::Invalid(reason) => write!(f, "invalid record: {reason}"),
        }
    }
}

/// Checks the fields the writer guarantees: `seq >= 1`, `entry_count >= 1`, and the sequence
/// range `[seq, seq + entry_count)` does not overflow.
pub(crate) fn check_fields(seq: u64, entry_count: u32) -> Result<(), &'static str> {
    if seq == 0 {
        return Err("sequence number 0 is never assigned");
    }
    if entry_count == 0 {
        return Err("entry count is zero");
    }
    if seq.checked_add(u64::from(entry_count) - 1).is_none() {
        return Err("sequence range overflows u64");
    }
    Ok(())
}

/// Bytes a record with `payload_len` bytes of payload occupies.
pub(crate) fn encoded_len(payload_len: usize) -> usize {
    RECORD_HEADER_LEN + payload_len
}

/// Appends the encoding of one record to `out`. The caller has checked `payload.len()` against
/// `MAX_PAYLOAD_BYTES` and the fields with `check_fields`.
pub(crate) fn encode_into(
    out: &mut Vec<u8>,
    tablet: TabletId,
    seq: u64,
    entry_count: u32,
    payload: &[u8],
) {
    debug_assert!(payload.len() <= MAX_PAYLOAD_BYTES);
    let start = out.len();
    out.reserve(encoded_len(payload.len()));
    out.extend_from_slice(&[0; 4]);
    // MAX_PAYLOAD_BYTES fits in a u32, so the conversion never saturates for a checked payload.
    out.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    out.extend_from_slice(&tablet.0.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&entry_count.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c(&out[start + 4..]);
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
}

/// Encodes one record into a new buffer.
pub(crate) fn encode(tablet: TabletId, seq: u64, entry_count: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded_len(payload.len()));
    encode_into(&mut out, tablet, seq, entry_count, payload);
    out
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    if let Some(src) = bytes.get(at..at + 4) {
        b.copy_from_slice(src);
    }
    u32::from_le_bytes(b)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    if let Some(src) = bytes.get(at..at + 8) {
        b.copy_from_slice(src);
    }
    u64::from_le_bytes(b)
}

/// The fields of a record's fixed part, read without checking the CRC.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawHeader {
    pub(crate) crc: u32,
    pub(crate) payload_len: u64,
    pub(crate) tablet: u64,
    pub(crate) seq: u64,
    pub(crate) entry_count: u32,
}

/// Reads the fixed part at the start of `bytes`, or `None` if fewer than 28 bytes remain.
pub(crate) fn raw_header(bytes: &[u8]) -> Option<RawHeader> {
    if bytes.len() < RECORD_HEADER_LEN {
        return None;
    }
    Some(RawHeader {
        crc: u32_at(bytes, 0),
        payload_len: u64::from(u32_at(bytes, 4)),
        tablet: u64_at(bytes, 8),
        seq: u64_at(bytes, 16),
        entry_count: u32_at(bytes, 24),
    })
}

/// Decodes the record at the start of `bytes`, returning it and the bytes it occupies.
pub(crate) fn decode(bytes: &[u8]) -> Result<(RecordView<'_>, usize), DecodeError> {
    let Some(h) = raw_header(bytes) else {
        return Err(DecodeError::Truncated {
            needed: RECORD_HEADER_LEN as u64,
            available: bytes.len(),
        });
    };
    if h.payload_len > MAX_PAYLOAD_BYTES as u64 {
        return Err(DecodeError::TooLarge {
            payload_len: h.payload_len,
        });
    }
    // Bounded by MAX_PAYLOAD_BYTES above, so this cannot overflow or truncate.
    let total = RECORD_HEADER_LEN + h.payload_len as usize;
    let Some(record) = bytes.get(..total) else {
        return Err(DecodeError::Truncated {
            needed: total as u64,
            available: bytes.len(),
        });
    };
    let computed = crc32c::crc32c(&record[4..]);
    if computed != h.crc {
        return Err(DecodeError::CrcMismatch {
            stored: h.crc,
            computed,
        });
    }
    check_fields(h.seq, h.entry_count).map_err(DecodeError::Invalid)?;
    let view = RecordView {
        tablet: TabletId(h.tablet),
        seq: h.seq,
        entry_count: h.entry_count,
        payload: &record[RECORD_HEADER_LEN..],
    };
    Ok((view, total))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn fixture_bytes_are_stable() {
        #[rustfmt::skip]
        let expected: &[u8] = &[
            0x30, 0x0b, 0x3b, 0x6e,                         // crc32c 0x6e3b0b30
            3, 0, 0, 0,                                     // payload_len
            0x02, 0x01, 0, 0, 0, 0, 0, 0,                   // tablet_id 0x0102
            7, 0, 0, 0, 0, 0, 0, 0,                         // seq
            3, 0, 0, 0,                                     // entry_count
            b'a', b'b', b'c',                               // payload
        ];
        assert_eq!(encode(TabletId(0x0102), 7, 3, b"abc"), expected);
        assert_eq!(crc32c::crc32c(&expected[4..]), 0x6e3b_0b30);
        // The CRC-32C (Castagnoli) check value, so the algorithm itself is pinned too.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn round_trip_and_length() {
        let bytes = encode(TabletId(42), 100, 5, b"payload");
        let (view, used) = decode(&bytes).unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(used, encoded_len(7));
        assert_eq!(view.tablet, TabletId(42));
        assert_eq!((view.seq, view.entry_count), (100, 5));
        assert_eq!(view.payload, b"payload");
    }

    #[test]
    fn empty_payload_round_trips() {
        let bytes = encode(TabletId(1), 1, 1, b"");
        assert_eq!(bytes.len(), RECORD_HEADER_LEN);
        assert_eq!(decode(&bytes).unwrap().0.payload, b"");
    }

    #[test]
    fn truncation_and_bit_flips_are_errors() {
        let bytes = encode(TabletId(9), 10, 2, b"hello world");
        for cut in 0..bytes.len() {
            assert!(
                matches!(decode(&bytes[..cut]), Err(DecodeError::Truncated { .. })),
                "cut at {cut}"
            );
        }
        for bit in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(decode(&b).is_err(), "bit {bit} flipped still decodes");
        }
    }

    #[test]
    fn oversized_length_is_rejected_without_allocating() {
        let mut bytes = encode(TabletId(1), 1, 1, b"x");
        bytes[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            decode(&bytes),
            Err(DecodeError::TooLarge {
                payload_len: u64::from(u32::MAX)
            })
        );
    }

    #[test]
    fn impossible_fields_with_valid_crc_are_invalid() {
        for (seq, count) in [(0, 1), (1, 0), (u64::MAX, 2)] {
            let bytes = encode(TabletId(1), seq, count, b"x");
            assert!(
                matches!(decode(&bytes), Err(DecodeError::Invalid(_))),
                "{seq} {count}"
            );
        }
        assert!(decode(&encode(TabletId(1), u64::MAX, 1, b"")).is_ok());
    }

    proptest! {
        #[test]
        fn any_record_round_trips(
            tablet in any::<u64>(),
            seq in 1u64..u64::MAX / 2,
            count in 1u32..u32::MAX,
            payload in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let bytes = encode(TabletId(tablet), seq, count, &payload);
            let (view, used) = decode(&bytes).unwrap();
            prop_assert_eq!(used, bytes.len());
            prop_assert_eq!(view.tablet, TabletId(tablet));
            prop_assert_eq!(view.seq, seq);
            prop_assert_eq!(view.entry_count, count);
            prop_assert_eq!(view.payload, &payload[..]);
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&bytes);
        }
    }
}
