//! The segment header codec: the first bytes of every segment, pure over bytes.
//!
//! ```text
//! offset  size  field
//!      0     8  magic          b"TABULACL"
//!      8     4  version        1 (u32 LE)
//!     12     4  flags          bit 0: FIRST_AFTER_OPEN; other bits must be 0 (u32 LE)
//!     16     8  segment        this segment's number, as in its file name (u64 LE)
//!     24     2  server_id_len  1..=255 (u16 LE)
//!     26     n  server_id      UTF-8, the name of the directory holding the segment
//!   26+n     4  crc32c         CRC-32C of bytes [0, 26 + n) (u32 LE)
//! ```
//!
//! `FIRST_AFTER_OPEN` marks the segment a server started when it opened its log (rather than
//! one it rolled to). The segment before such a segment was the last one of an earlier run of
//! the server, which may have crashed mid-write, so recovery tolerates a torn tail there too.

use tabula_common::ServerId;

use super::naming::MAX_SERVER_ID_LEN;

/// The magic bytes a segment starts with.
pub(crate) const MAGIC: [u8; 8] = *b"TABULACL";
/// The segment format version this code writes and reads.
pub(crate) const VERSION: u32 = 1;
const FLAG_FIRST_AFTER_OPEN: u32 = 1;
const FIXED_LEN: usize = 26;
/// The longest a header can be.
pub(crate) const MAX_HEADER_LEN: usize = FIXED_LEN + MAX_SERVER_ID_LEN + 4;

/// What a segment's header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Format version.
    pub version: u32,
    /// The server whose log this segment belongs to.
    pub server: ServerId,
    /// The segment's number.
    pub segment: u64,
    /// Whether the server started this segment when it opened its log (not by rolling).
    pub first_after_open: bool,
}

/// Why bytes do not decode as a segment header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HeaderError {
    /// Fewer bytes than the header needs.
    Truncated,
    /// The bytes do not start with `MAGIC`, or the length field is out of range.
    Garbled(&'static str),
    /// The stored CRC does not match.
    CrcMismatch { stored: u32, computed: u32 },
    /// The CRC matches but the header cannot be read by this code.
    Invalid(String),
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderError::Truncated => f.write_str("truncated segment header"),
            HeaderError::Garbled(what) => write!(f, "garbled segment header: {what}"),
            HeaderError::CrcMismatch { stored, computed } => write!(
                f,
                "segment header crc mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ),
            HeaderError::Invalid(what) => write!(f, "invalid segment header: {what}"),
        }
    }
}

/// Bytes the header of a segment of `server` occupies.
pub(crate) fn header_len(server: &ServerId) -> usize {
    FIXED_LEN + server.0.len() + 4
}

/// Encodes a header. `server` has passed `naming::check_server_id`.
pub(crate) fn encode_header(server: &ServerId, segment: u64, first_after_open: bool) -> Vec<u8> {
    let id = server.0.as_bytes();
    let mut out = Vec::with_capacity(header_len(server));
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    let flags = if first_after_open {
        FLAG_FIRST_AFTER_OPEN
    } else {
        0
    };
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&segment.to_le_bytes());
    // check_server_id bounds the length by 255.
    out.extend_from_slice(&u16::try_from(id.len()).unwrap_or(u16::MAX).to_le_bytes());
    out.extend_from_slice(id);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn array<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = bytes.get(at..at + N) {
        out.copy_from_slice(src);
    }
    out
}

/// Decodes the header at the start of `bytes`, returning it and the bytes it occupies.
pub(crate) fn decode_header(bytes: &[u8]) -> Result<(SegmentHeader, usize), HeaderError> {
    if bytes.len() < FIXED_LEN {
        return Err(HeaderError::Truncated);
    }
    if bytes[..8] != MAGIC {
        return Err(HeaderError::Garbled("bad magic"));
    }
    let id_len = usize::from(u16::from_le_bytes(array(bytes, 24)));
    if id_len == 0 || id_len > MAX_SERVER_ID_LEN {
        return Err(HeaderError::Garbled("server id length out of range"));
    }
    let total = FIXED_LEN + id_len + 4;
    if bytes.len() < total {
        return Err(HeaderError::Truncated);
    }
    let stored = u32::from_le_bytes(array(bytes, FIXED_LEN + id_len));
    let computed = crc32c::crc32c(&bytes[..FIXED_LEN + id_len]);
    if stored != computed {
        return Err(HeaderError::CrcMismatch { stored, computed });
    }
    let version = u32::from_le_bytes(array(bytes, 8));
    if version != VERSION {
        return Err(HeaderError::Invalid(format!(
            "unsupported version {version}"
        )));
    }
    let flags = u32::from_le_bytes(array(bytes, 12));
    if flags & !FLAG_FIRST_AFTER_OPEN != 0 {
        return Err(HeaderError::Invalid(format!("unknown flags {flags:#x}")));
    }
    let segment = u64::from_le_bytes(array(bytes, 16));
    let server = std::str::from_utf8(&bytes[FIXED_LEN..FIXED_LEN + id_len])
        .map_err(|_| HeaderError::Invalid("server id is not UTF-8".into()))?;
    let header = SegmentHeader {
        version,
        server: ServerId(server.to_owned()),
        segment,
        first_after_open: flags & FLAG_FIRST_AFTER_OPEN != 0,
    };
    Ok((header, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> ServerId {
        ServerId("ts1".into())
    }

    #[test]
    fn fixture_bytes_are_stable() {
        let bytes = encode_header(&server(), 5, true);
        let mut expected = Vec::new();
        expected.extend_from_slice(b"TABULACL");
        expected.extend_from_slice(&[1, 0, 0, 0]);
        expected.extend_from_slice(&[1, 0, 0, 0]);
        expected.extend_from_slice(&[5, 0, 0, 0, 0, 0, 0, 0]);
        expected.extend_from_slice(&[3, 0]);
        expected.extend_from_slice(b"ts1");
        let crc = crc32c::crc32c(&expected);
        expected.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(bytes, expected);
        assert_eq!(bytes.len(), header_len(&server()));
    }

    #[test]
    fn round_trip_with_trailing_bytes() {
        for first in [false, true] {
            let mut bytes = encode_header(&server(), u64::MAX, first);
            let len = bytes.len();
            bytes.extend_from_slice(b"records follow");
            let (h, used) = decode_header(&bytes).unwrap();
            assert_eq!(used, len);
            let want = SegmentHeader {
                version: 1,
                server: server(),
                segment: u64::MAX,
                first_after_open: first,
            };
            assert_eq!(h, want);
        }
    }

    #[test]
    fn every_truncation_and_bit_flip_fails() {
        let bytes = encode_header(&server(), 3, false);
        for cut in 0..bytes.len() {
            assert_eq!(
                decode_header(&bytes[..cut]),
                Err(HeaderError::Truncated),
                "cut {cut}"
            );
        }
        for bit in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_header(&b).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn future_versions_are_invalid_not_garbled() {
        let mut bytes = encode_header(&server(), 3, false);
        bytes[8] = 2;
        let end = bytes.len() - 4;
        let crc = crc32c::crc32c(&bytes[..end]);
        bytes[end..].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            decode_header(&bytes),
            Err(HeaderError::Invalid(_))
        ));
    }
}
