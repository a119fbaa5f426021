//! The log's record frame and the checksummed blob of the small files: pure codecs over bytes.
//!
//! A frame (all integers little-endian):
//!
//! ```text
//!  0       4          8        12            20     21
//!  +-------+----------+--------+-------------+------+---------------------+
//!  | magic | body_len | crc32c | batch_start | kind | body (body_len B)   |
//!  | TLKR  |   u32    |  u32   |     u64     |  u8  | postcard            |
//!  +-------+----------+--------+-------------+------+---------------------+
//! ```
//!
//! `crc32c` covers `body_len`, `batch_start`, `kind` and `body`. `batch_start` is the segment
//! offset at which the write carrying this frame began: every write is one `pwrite` followed by
//! `fdatasync`, so after a crash only the frames of the last write can be damaged, and they all
//! carry the same `batch_start`. That is how recovery tells a torn tail (cut it off) from a bit
//! flip in data that was already durable (an error).
//!
//! A blob (the `vote`, `purged` and `snapshot` files):
//!
//! ```text
//!  0           8          12       16
//!  +-----------+----------+--------+--------------------+
//!  | magic     | body_len | crc32c | body (body_len B)  |
//!  | 8 bytes   |   u32    |  u32   |                    |
//!  +-----------+----------+--------+--------------------+
//! ```

/// Marks the start of every frame.
pub(super) const FRAME_MAGIC: [u8; 4] = *b"TLKR";
/// Bytes before a frame's body.
pub(super) const FRAME_HEADER_LEN: usize = 21;
/// A frame body larger than this is garbage, not data.
pub(super) const MAX_BODY_LEN: usize = 256 << 20;
/// Frame kind: one Raft log entry (`openraft::Entry`, postcard).
pub(super) const KIND_ENTRY: u8 = 1;
/// Frame kind: the committed log id (`Option<LogId>`, postcard).
pub(super) const KIND_COMMITTED: u8 = 2;

/// Bytes before a blob's body.
pub(super) const BLOB_HEADER_LEN: usize = 16;

/// A well-formed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Frame<'a> {
    /// Offset in its segment where the write that carried it began.
    pub(super) batch_start: u64,
    /// `KIND_ENTRY` or `KIND_COMMITTED` (other values are from a newer format).
    pub(super) kind: u8,
    /// The payload.
    pub(super) body: &'a [u8],
    /// Header plus body.
    pub(super) len: usize,
}

/// What the bytes at a frame position hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Decoded<'a> {
    /// A frame whose checksum matches.
    Frame(Frame<'a>),
    /// The header or the body runs past the end of the bytes.
    Incomplete,
    /// Wrong magic, an impossible length or a checksum mismatch.
    Invalid(&'static str),
}

/// Appends one frame to `out`.
pub(super) fn encode_frame(out: &mut Vec<u8>, batch_start: u64, kind: u8, body: &[u8]) {
    // Bodies are entries of at most a few MiB (the state machine limits file contents); a
    // body over u32::MAX cannot be built by this crate.
    let body_len = u32::try_from(body.len()).unwrap_or(u32::MAX).to_le_bytes();
    let batch = batch_start.to_le_bytes();
    let crc = frame_crc(&body_len, &batch, kind, body);
    out.reserve(FRAME_HEADER_LEN + body.len());
    out.extend_from_slice(&FRAME_MAGIC);
    out.extend_from_slice(&body_len);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&batch);
    out.push(kind);
    out.extend_from_slice(body);
}

/// Decodes the frame at the start of `buf`.
pub(super) fn decode_frame(buf: &[u8]) -> Decoded<'_> {
    let Some(header) = buf.get(..FRAME_HEADER_LEN) else {
        return Decoded::Incomplete;
    };
    if header[0..4] != FRAME_MAGIC {
        return Decoded::Invalid("bad frame magic");
    }
    let body_len_bytes = [header[4], header[5], header[6], header[7]];
    let crc = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
    let batch = [
        header[12], header[13], header[14], header[15], header[16], header[17], header[18],
        header[19],
    ];
    let kind = header[20];
    let body_len = u32::from_le_bytes(body_len_bytes) as usize;
    if body_len > MAX_BODY_LEN {
        return Decoded::Invalid("frame length out of range");
    }
    let Some(body) = buf.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + body_len) else {
        return Decoded::Incomplete;
    };
    if frame_crc(&body_len_bytes, &batch, kind, body) != crc {
        return Decoded::Invalid("frame checksum mismatch");
    }
    Decoded::Frame(Frame {
        batch_start: u64::from_le_bytes(batch),
        kind,
        body,
        len: FRAME_HEADER_LEN + body_len,
    })
}

fn frame_crc(body_len: &[u8; 4], batch: &[u8; 8], kind: u8, body: &[u8]) -> u32 {
    let crc = crc32c::crc32c(body_len);
    let crc = crc32c::crc32c_append(crc, batch);
    let crc = crc32c::crc32c_append(crc, &[kind]);
    crc32c::crc32c_append(crc, body)
}

/// The first well-formed frame that starts after `from`, with its offset (a scan for the
/// magic; used only to judge a damaged tail).
pub(super) fn next_valid_frame(buf: &[u8], from: usize) -> Option<(usize, Frame<'_>)> {
    let mut at = from + 1;
    while at + FRAME_HEADER_LEN <= buf.len() {
        let rest = buf.get(at..)?;
        let found = rest
            .windows(FRAME_MAGIC.len())
            .position(|w| w == FRAME_MAGIC)?;
        at += found;
        if let Some(slice) = buf.get(at..)
            && let Decoded::Frame(frame) = decode_frame(slice)
        {
            return Some((at, frame));
        }
        at += 1;
    }
    None
}

/// Encodes a blob.
pub(super) fn encode_blob(magic: &[u8; 8], body: &[u8]) -> Vec<u8> {
    let body_len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(BLOB_HEADER_LEN + body.len());
    out.extend_from_slice(magic);
    out.extend_from_slice(&body_len.to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// Decodes a blob, or says what is wrong with it.
pub(super) fn decode_blob<'a>(magic: &[u8; 8], buf: &'a [u8]) -> Result<&'a [u8], &'static str> {
    let header = buf.get(..BLOB_HEADER_LEN).ok_or("truncated header")?;
    if header[..8] != magic[..] {
        return Err("bad magic");
    }
    let body_len = u32::from_le_bytes([header[8], header[9], header[10], header[11]]) as usize;
    let crc = u32::from_le_bytes([header[12], header[13], header[14], header[15]]);
    if buf.len() != BLOB_HEADER_LEN + body_len {
        return Err("length does not match the file size");
    }
    let body = &buf[BLOB_HEADER_LEN..];
    if crc32c::crc32c(body) != crc {
        return Err("checksum mismatch");
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(batch: u64, kind: u8, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(&mut out, batch, kind, body);
        out
    }

    #[test]
    fn frame_round_trip() {
        let bytes = frame(77, KIND_ENTRY, b"hello");
        assert_eq!(bytes.len(), FRAME_HEADER_LEN + 5);
        assert_eq!(
            decode_frame(&bytes),
            Decoded::Frame(Frame {
                batch_start: 77,
                kind: KIND_ENTRY,
                body: b"hello",
                len: bytes.len()
            })
        );
    }

    #[test]
    fn frame_layout_is_fixed() {
        let bytes = frame(0x0102, KIND_COMMITTED, b"ab");
        assert_eq!(&bytes[0..4], b"TLKR");
        assert_eq!(&bytes[4..8], &2u32.to_le_bytes());
        assert_eq!(&bytes[12..20], &0x0102u64.to_le_bytes());
        assert_eq!(bytes[20], KIND_COMMITTED);
        assert_eq!(&bytes[21..], b"ab");
    }

    #[test]
    fn every_prefix_is_incomplete_and_every_bit_flip_is_caught() {
        let bytes = frame(9, KIND_ENTRY, b"some entry body");
        for cut in 0..bytes.len() {
            assert!(
                matches!(
                    decode_frame(&bytes[..cut]),
                    Decoded::Incomplete | Decoded::Invalid(_)
                ),
                "prefix {cut}"
            );
        }
        for byte in 0..bytes.len() {
            for bit in 0..8 {
                let mut damaged = bytes.clone();
                damaged[byte] ^= 1 << bit;
                assert!(
                    !matches!(decode_frame(&damaged), Decoded::Frame(f) if f.body == b"some entry body" && f.batch_start == 9),
                    "flip {byte}:{bit} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn next_valid_frame_skips_garbage() {
        let mut buf = vec![0xAB; 10];
        buf.extend_from_slice(b"TLKRgarbage");
        let at = buf.len();
        buf.extend_from_slice(&frame(3, KIND_ENTRY, b"x"));
        let (found, f) = next_valid_frame(&buf, 0).expect("a frame");
        assert_eq!(found, at);
        assert_eq!(f.body, b"x");
        assert!(next_valid_frame(&buf, at).is_none());
    }

    #[test]
    fn blob_round_trip_and_damage() {
        let blob = encode_blob(b"TESTBLB1", b"body");
        assert_eq!(decode_blob(b"TESTBLB1", &blob), Ok(&b"body"[..]));
        assert!(decode_blob(b"OTHERBL1", &blob).is_err());
        assert!(decode_blob(b"TESTBLB1", &blob[..blob.len() - 1]).is_err());
        let mut flipped = blob.clone();
        flipped[17] ^= 4;
        assert_eq!(decode_blob(b"TESTBLB1", &flipped), Err("checksum mismatch"));
    }
}
