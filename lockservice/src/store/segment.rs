//! Log segments: file naming and the recovery scan that validates a segment's frames and decides
//! whether damage at its end is a torn write (cut off) or corruption (an error).
//!
//! A segment is `log/<id:020>.seg`: an 8-byte header `TLKLOG01` followed by frames
//! (`record.rs`). Ids grow by one at each roll; only the highest-id segment is written to.

use super::record::{Decoded, Frame, decode_frame, next_valid_frame};

/// The segment header: magic and format version.
pub(super) const SEGMENT_MAGIC: [u8; 8] = *b"TLKLOG01";
/// Bytes of the segment header.
pub(super) const SEGMENT_HEADER_LEN: u64 = 8;

/// The file name of segment `id`.
pub(super) fn file_name(id: u64) -> String {
    format!("{id:020}.seg")
}

/// The id of a segment file name, or `None` for other files.
pub(super) fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A frame found by the scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ScannedFrame<'a> {
    /// Offset of the frame in the segment.
    pub(super) offset: u64,
    /// The frame.
    pub(super) frame: Frame<'a>,
}

/// The result of scanning a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Scan<'a> {
    /// The frames, in order.
    pub(super) frames: Vec<ScannedFrame<'a>>,
    /// The length the file must be cut to, if its tail is a torn write. `Some(0)` means even
    /// the header is torn.
    pub(super) torn_at: Option<u64>,
}

/// Damage that is not a torn tail: `(offset, reason)`.
pub(super) type ScanError = (u64, String);

/// Scans a whole segment. Damage in a segment other than the last is always an error. In the
/// last one, a damaged frame at offset `p` is a torn tail if no well-formed frame after it was
/// written by a later write (`batch_start > p`); the file is then cut at `p`.
pub(super) fn scan(bytes: &[u8], is_last: bool) -> Result<Scan<'_>, ScanError> {
    let header_len = SEGMENT_HEADER_LEN as usize;
    if bytes.is_empty() && is_last {
        // Created by a roll; the crash came before its first write.
        return Ok(Scan {
            frames: Vec::new(),
            torn_at: None,
        });
    }
    if bytes.get(..header_len) != Some(&SEGMENT_MAGIC[..]) {
        // The header goes to disk in the same write as the segment's first frames.
        let reason = if bytes.len() < header_len {
            "truncated segment header"
        } else {
            "bad segment header"
        };
        return torn_or_corrupt(bytes, 0, is_last, reason).map(|()| Scan {
            frames: Vec::new(),
            torn_at: Some(0),
        });
    }
    let mut frames = Vec::new();
    let mut at = header_len;
    while at < bytes.len() {
        match decode_frame(&bytes[at..]) {
            Decoded::Frame(frame) => {
                frames.push(ScannedFrame {
                    offset: at as u64,
                    frame,
                });
                at += frame.len;
            }
            Decoded::Incomplete => {
                torn_or_corrupt(bytes, at, is_last, "frame runs past the end of the segment")?;
                return Ok(Scan {
                    frames,
                    torn_at: Some(at as u64),
                });
            }
            Decoded::Invalid(reason) => {
                torn_or_corrupt(bytes, at, is_last, reason)?;
                return Ok(Scan {
                    frames,
                    torn_at: Some(at as u64),
                });
            }
        }
    }
    Ok(Scan {
        frames,
        torn_at: None,
    })
}

/// `Ok` if the damage at `at` can only be the torn last write of the last segment.
fn torn_or_corrupt(bytes: &[u8], at: usize, is_last: bool, reason: &str) -> Result<(), ScanError> {
    if !is_last {
        return Err((at as u64, format!("{reason} (not in the last segment)")));
    }
    let mut from = at;
    while let Some((found, frame)) = next_valid_frame(bytes, from) {
        if frame.batch_start > at as u64 {
            return Err((
                at as u64,
                format!("{reason}, but a later write at byte {found} is intact"),
            ));
        }
        from = found;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::record::{KIND_ENTRY, encode_frame};
    use super::*;

    /// A segment of writes, each a list of frame bodies; returns the bytes and the offset at
    /// which each write began.
    fn segment(writes: &[&[&[u8]]]) -> (Vec<u8>, Vec<usize>) {
        let mut bytes = SEGMENT_MAGIC.to_vec();
        let mut starts = Vec::new();
        for write in writes {
            let start = bytes.len();
            starts.push(start);
            for body in *write {
                encode_frame(&mut bytes, start as u64, KIND_ENTRY, body);
            }
        }
        (bytes, starts)
    }

    fn bodies<'a>(scan: &Scan<'a>) -> Vec<&'a [u8]> {
        scan.frames.iter().map(|f| f.frame.body).collect()
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(file_name(7), "00000000000000000007.seg");
        assert_eq!(parse_file_name(&file_name(7)), Some(7));
        assert_eq!(parse_file_name("7.seg"), None);
        assert_eq!(parse_file_name("00000000000000000007.seg.tmp"), None);
        assert_eq!(parse_file_name("LOCK"), None);
    }

    #[test]
    fn clean_segment_scans_whole() {
        let (bytes, _) = segment(&[&[b"a", b"b"], &[b"c"]]);
        for last in [false, true] {
            let scan = scan(&bytes, last).expect("clean");
            assert_eq!(bodies(&scan), vec![&b"a"[..], b"b", b"c"]);
            assert_eq!(scan.torn_at, None);
        }
    }

    #[test]
    fn every_cut_of_the_last_write_is_a_torn_tail() {
        let (bytes, starts) = segment(&[&[b"a", b"b"], &[b"ccc", b"dddd"]]);
        let last_write = starts[1];
        let boundary = last_write + super::super::record::FRAME_HEADER_LEN + 3;
        for cut in last_write + 1..bytes.len() {
            let found = scan(&bytes[..cut], true).expect("torn tail tolerated");
            assert!(bodies(&found).starts_with(&[b"a", b"b"]));
            if cut == boundary {
                // A clean frame boundary inside the write: nothing is torn.
                assert_eq!(found.torn_at, None);
                assert_eq!(bodies(&found).len(), 3);
                continue;
            }
            let torn_at = found.torn_at.expect("torn") as usize;
            assert!(
                torn_at == last_write || torn_at == boundary,
                "cut {cut}: {torn_at}"
            );
            assert!(scan(&bytes[..cut], false).is_err(), "cut {cut} mid-log");
        }
    }

    #[test]
    fn a_hole_inside_the_last_write_is_torn() {
        // The last write's pages reached the disk out of order: its first frame is zeros.
        let (mut bytes, starts) = segment(&[&[b"a"], &[b"bbbb", b"cccc"]]);
        let first_frame_of_last_write = starts[1];
        for b in &mut bytes[first_frame_of_last_write..first_frame_of_last_write + 25] {
            *b = 0;
        }
        let scan = scan(&bytes, true).expect("torn");
        assert_eq!(bodies(&scan), vec![&b"a"[..]]);
        assert_eq!(scan.torn_at, Some(first_frame_of_last_write as u64));
    }

    #[test]
    fn a_bit_flip_before_a_later_write_is_corruption() {
        let (mut bytes, starts) = segment(&[&[b"aaaa"], &[b"bbbb"]]);
        bytes[starts[0] + 22] ^= 0x10;
        let err = scan(&bytes, true).expect_err("corrupt");
        assert_eq!(err.0, starts[0] as u64);
        assert!(err.1.contains("intact"), "{}", err.1);
    }

    proptest::proptest! {
        /// Whatever the bytes, the scan answers (frames, a torn tail or an error); it never
        /// panics, and a torn tail is only reported for the last segment.
        #[test]
        fn scan_never_panics(
            tail in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
            with_header: bool,
            last: bool,
        ) {
            let mut bytes = if with_header { SEGMENT_MAGIC.to_vec() } else { Vec::new() };
            bytes.extend_from_slice(&tail);
            if let Ok(found) = scan(&bytes, last) {
                proptest::prop_assert!(last || found.torn_at.is_none());
            }
        }

        /// Damage to one byte of a clean segment: the scan keeps an intact prefix or errs.
        #[test]
        fn one_damaged_byte_never_passes_silently(at in 0usize..200, bit in 0u8..8) {
            let (mut bytes, _) = segment(&[&[b"first"], &[b"second", b"third"], &[b"fourth"]]);
            let at = at % bytes.len();
            bytes[at] ^= 1 << bit;
            match scan(&bytes, true) {
                Ok(found) => {
                    proptest::prop_assert!(found.torn_at.is_some());
                    proptest::prop_assert!(found.frames.len() < 4);
                }
                Err((offset, _)) => proptest::prop_assert!(offset <= at as u64),
            }
            proptest::prop_assert!(scan(&bytes, false).is_err());
        }
    }

    #[test]
    fn torn_header_and_empty_last_segment() {
        let (bytes, _) = segment(&[&[b"a"]]);
        assert_eq!(scan(&bytes[..5], true).expect("torn").torn_at, Some(0));
        assert!(scan(&bytes[..5], false).is_err());
        assert_eq!(scan(&[], true).expect("empty").torn_at, None);
        assert!(scan(&[], false).is_err());
    }
}
