//! Scanning one segment's bytes: its header, then its records in order, then (perhaps) the
//! damage that ended the scan. Pure over bytes, so a fuzz target can feed it anything.
//!
//! Damage is classified, not judged: the caller (`reader`) decides whether a torn tail is
//! acceptable in this segment.
//! - `DamageKind::TornTail`: nothing valid follows the first bad byte — a write cut short by a
//!   crash.
//! - `DamageKind::ZeroTail`: only zeros from a record boundary to the end — the zeros a segment
//!   is kept filled with ahead of its records (the writer's `ZERO_AHEAD_BYTES`), or a file
//!   extended whose data never landed. No part of a record is there.
//! - `DamageKind::Corrupt`: a record or header that is complete with a correct CRC yet
//!   impossible (unknown version, entry count 0), or bad bytes followed by a record that
//!   decodes: a torn write leaves nothing valid behind it, so this is damage to written data.
//!
//! Finding "a record that decodes" after damage means trying every later offset. Offsets whose
//! fixed part is implausible (length past the end, entry count 0, sequence 0) are skipped
//! without a CRC; the CRC work on the rest is capped at `SEARCH_BUDGET_BYTES`, after which the
//! damage is reported as torn. Payload bytes are user data and could embed a valid-looking
//! record; that can only turn a torn tail into `Corrupt` (refusing recovery), never the reverse.

use tabula_common::TabletId;

use super::header::{HeaderError, SegmentHeader, decode_header};
use super::record::{DecodeError, RECORD_HEADER_LEN, check_fields, decode, raw_header};

/// CRC work spent looking for a valid record after damage before giving up (1 GiB).
const SEARCH_BUDGET_BYTES: u64 = 1 << 30;

/// One record found in a segment, borrowing its payload from the segment bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScannedRecord<'a> {
    /// Offset of the record's first byte in the segment.
    pub offset: u64,
    /// The tablet the record belongs to.
    pub tablet: TabletId,
    /// First sequence number of the row mutation.
    pub seq: u64,
    /// How many consecutive sequence numbers the mutation used.
    pub entry_count: u32,
    /// The encoded row mutation.
    pub payload: &'a [u8],
}

/// How bad the damage that ended a scan is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DamageKind {
    /// Nothing valid follows: a write cut short.
    TornTail,
    /// Only zeros from a record boundary (or the header) to the end.
    ZeroTail,
    /// Written data is damaged: valid data follows, or a complete record is impossible.
    Corrupt,
}

/// The damage that ended a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentDamage {
    /// Offset of the first byte that did not decode (0 for a bad header).
    pub offset: u64,
    /// Torn tail or corruption.
    pub kind: DamageKind,
    /// What was wrong, for the error message.
    pub reason: String,
}

/// Scans `bytes`, a whole segment. The iterator yields each record, then at most one
/// `SegmentDamage` (after which it ends); a clean segment yields no damage.
pub fn scan_segment(bytes: &[u8]) -> SegmentScanner<'_> {
    match decode_header(bytes) {
        Ok((header, len)) => SegmentScanner {
            bytes,
            pos: len,
            header: Some(header),
            pending: None,
            done: false,
        },
        Err(e) => {
            let (kind, note) = match e {
                HeaderError::Invalid(_) => (DamageKind::Corrupt, String::new()),
                HeaderError::Truncated
                | HeaderError::Garbled(_)
                | HeaderError::CrcMismatch { .. } => classify(bytes, 0, None),
            };
            let damage = SegmentDamage {
                offset: 0,
                kind,
                reason: format!("{e}{note}"),
            };
            SegmentScanner {
                bytes,
                pos: 0,
                header: None,
                pending: Some(damage),
                done: false,
            }
        }
    }
}

/// Iterator over a segment's records; see `scan_segment`.
#[derive(Debug)]
pub struct SegmentScanner<'a> {
    bytes: &'a [u8],
    pos: usize,
    header: Option<SegmentHeader>,
    pending: Option<SegmentDamage>,
    done: bool,
}

impl SegmentScanner<'_> {
    /// The segment's header, or `None` if it did not decode (the first item is then the damage).
    pub fn header(&self) -> Option<&SegmentHeader> {
        self.header.as_ref()
    }
}

impl<'a> Iterator for SegmentScanner<'a> {
    type Item = Result<ScannedRecord<'a>, SegmentDamage>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if let Some(damage) = self.pending.take() {
            self.done = true;
            return Some(Err(damage));
        }
        let bytes: &'a [u8] = self.bytes;
        let rest = bytes.get(self.pos..).unwrap_or_default();
        if rest.is_empty() {
            self.done = true;
            return None;
        }
        match decode(rest) {
            Ok((view, used)) => {
                let record = ScannedRecord {
                    offset: self.pos as u64,
                    tablet: view.tablet,
                    seq: view.seq,
                    entry_count: view.entry_count,
                    payload: view.payload,
                };
                self.pos += used;
                Some(Ok(record))
            }
            Err(e) => {
                self.done = true;
                let (kind, note) = match &e {
                    DecodeError::Invalid(_) => (DamageKind::Corrupt, String::new()),
                    DecodeError::Truncated { .. }
                    | DecodeError::TooLarge { .. }
                    | DecodeError::CrcMismatch { .. } => {
                        classify(bytes, self.pos, claimed_end(rest).map(|n| self.pos + n))
                    }
                };
                let reason = format!("{e}{note}");
                Some(Err(SegmentDamage {
                    offset: self.pos as u64,
                    kind,
                    reason,
                }))
            }
        }
    }
}

/// Where the record starting at `rest` would end if its length field is right.
fn claimed_end(rest: &[u8]) -> Option<usize> {
    let h = raw_header(rest)?;
    let end = RECORD_HEADER_LEN.checked_add(usize::try_from(h.payload_len).ok()?)?;
    (end <= rest.len()).then_some(end)
}

/// Decides whether the damage at `at` is a torn tail: true when nothing after it decodes.
/// `next` is where the next record starts if the damaged record's length field is right.
/// Returns the kind and a note for the reason.
fn classify(bytes: &[u8], at: usize, next: Option<usize>) -> (DamageKind, String) {
    let rest = bytes.get(at..).unwrap_or_default();
    if !rest.is_empty() && rest.iter().all(|&b| b == 0) {
        return (DamageKind::ZeroTail, " (zero-filled tail)".into());
    }
    if let Some(next) = next.filter(|&n| n > at && n < bytes.len())
        && decode(&bytes[next..]).is_ok()
    {
        return (
            DamageKind::Corrupt,
            format!("; a valid record follows at offset {next}"),
        );
    }
    let mut budget = SEARCH_BUDGET_BYTES;
    let last = bytes.len().saturating_sub(RECORD_HEADER_LEN);
    for q in at + 1..=last {
        let candidate = &bytes[q..];
        let Some(h) = raw_header(candidate) else {
            break;
        };
        let fits = h.payload_len <= (candidate.len() - RECORD_HEADER_LEN) as u64;
        if !fits || check_fields(h.seq, h.entry_count).is_err() {
            continue;
        }
        let cost = RECORD_HEADER_LEN as u64 + h.payload_len;
        if cost > budget {
            return (
                DamageKind::TornTail,
                " (search for later records gave up)".into(),
            );
        }
        budget -= cost;
        if decode(candidate).is_ok() {
            return (
                DamageKind::Corrupt,
                format!("; a valid record follows at offset {q}"),
            );
        }
    }
    (DamageKind::TornTail, String::new())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use tabula_common::ServerId;

    use super::super::header::encode_header;
    use super::super::record::encode_into;
    use super::*;

    type Rec = (u64, u64, u32, Vec<u8>);

    /// A segment of `records`, and each record's offset.
    fn segment(records: &[Rec]) -> (Vec<u8>, Vec<usize>) {
        let mut bytes = encode_header(&ServerId("ts1".into()), 1, true);
        let mut offsets = Vec::new();
        for (tablet, seq, count, payload) in records {
            offsets.push(bytes.len());
            encode_into(&mut bytes, TabletId(*tablet), *seq, *count, payload);
        }
        (bytes, offsets)
    }

    fn collect(bytes: &[u8]) -> (Vec<Rec>, Option<SegmentDamage>) {
        let mut records = Vec::new();
        let mut damage = None;
        for item in scan_segment(bytes) {
            match item {
                Ok(r) => records.push((r.tablet.0, r.seq, r.entry_count, r.payload.to_vec())),
                Err(d) => damage = Some(d),
            }
        }
        (records, damage)
    }

    fn three() -> Vec<Rec> {
        vec![
            (1, 1, 2, b"first".to_vec()),
            (2, 1, 1, b"second".to_vec()),
            (1, 3, 1, vec![7; 40]),
        ]
    }

    #[test]
    fn clean_segment_yields_records_and_header() {
        let (bytes, offsets) = segment(&three());
        let scanner = scan_segment(&bytes);
        assert_eq!(scanner.header().map(|h| h.segment), Some(1));
        let got: Vec<_> = scanner.map(|r| r.unwrap().offset as usize).collect();
        assert_eq!(got, offsets);
        assert_eq!(collect(&bytes), (three(), None));
    }

    #[test]
    fn header_only_segment_is_clean() {
        let (bytes, _) = segment(&[]);
        assert_eq!(collect(&bytes), (vec![], None));
    }

    #[test]
    fn every_truncation_is_a_torn_tail_or_clean() {
        let (bytes, offsets) = segment(&three());
        for cut in 0..bytes.len() {
            let (records, damage) = collect(&bytes[..cut]);
            let complete = offsets.iter().skip(1).filter(|&&o| o <= cut).count()
                + usize::from(cut == bytes.len());
            assert_eq!(records, three()[..complete].to_vec(), "cut {cut}");
            let at_boundary = offsets.contains(&cut);
            match damage {
                None => assert!(at_boundary, "cut {cut} reported clean"),
                Some(d) => {
                    assert!(!at_boundary, "cut {cut}: {d:?}");
                    assert_eq!(d.kind, DamageKind::TornTail, "cut {cut}: {d:?}");
                }
            }
        }
    }

    #[test]
    fn zeros_after_the_last_record_are_a_zero_tail_and_a_half_record_before_them_is_torn() {
        let (mut bytes, offsets) = segment(&three());
        let end = bytes.len();
        bytes.extend_from_slice(&[0; 4096]);
        let (records, damage) = collect(&bytes);
        assert_eq!(records, three());
        let d = damage.unwrap();
        assert_eq!((d.kind, d.offset as usize), (DamageKind::ZeroTail, end));
        assert!(d.reason.contains("zero-filled"), "{}", d.reason);
        // The last record's first half landed, the rest is still zeros: a torn write.
        let half = (offsets[2] + end) / 2;
        bytes[half..end].fill(0);
        let d = collect(&bytes).1.unwrap();
        assert_eq!(
            (d.kind, d.offset as usize),
            (DamageKind::TornTail, offsets[2])
        );
        // A segment whose header never landed.
        let d = collect(&[0; 100]).1.unwrap();
        assert_eq!((d.kind, d.offset), (DamageKind::ZeroTail, 0));
    }

    #[test]
    fn damage_followed_by_a_valid_record_is_corrupt() {
        let (bytes, offsets) = segment(&three());
        // A bit flip in every byte of the first two records: a later record still decodes.
        for at in offsets[0]..offsets[2] {
            let mut b = bytes.clone();
            b[at] ^= 0x10;
            let (_, damage) = collect(&b);
            let d = damage.unwrap();
            assert_eq!(d.kind, DamageKind::Corrupt, "flip at {at}: {d:?}");
            let expected = if at < offsets[1] {
                offsets[0]
            } else {
                offsets[1]
            };
            assert_eq!(d.offset as usize, expected, "flip at {at}");
        }
        // A flip in the last record has nothing valid after it: indistinguishable from a tear.
        let mut b = bytes.clone();
        b[offsets[2] + 30] ^= 1;
        assert_eq!(collect(&b).1.unwrap().kind, DamageKind::TornTail);
    }

    #[test]
    fn zeroed_middle_record_is_corrupt() {
        let (mut bytes, offsets) = segment(&three());
        bytes[offsets[1]..offsets[2]].fill(0);
        let d = collect(&bytes).1.unwrap();
        assert_eq!(
            (d.kind, d.offset as usize),
            (DamageKind::Corrupt, offsets[1])
        );
    }

    #[test]
    fn damaged_header_is_corrupt_when_records_follow() {
        let (mut bytes, _) = segment(&three());
        bytes[3] ^= 1;
        let d = collect(&bytes).1.unwrap();
        assert_eq!((d.kind, d.offset), (DamageKind::Corrupt, 0));
        let (header_only, _) = segment(&[]);
        let mut h = header_only.clone();
        h[10] ^= 1;
        assert_eq!(collect(&h).1.unwrap().kind, DamageKind::TornTail);
        assert_eq!(collect(&[]).1.unwrap().kind, DamageKind::TornTail);
    }

    #[test]
    fn impossible_complete_record_is_corrupt_even_at_the_end() {
        let (mut bytes, _) = segment(&three());
        encode_into(&mut bytes, TabletId(1), 0, 1, b"seq zero");
        let (records, damage) = collect(&bytes);
        assert_eq!(records, three());
        assert_eq!(damage.unwrap().kind, DamageKind::Corrupt);
    }

    fn records() -> impl Strategy<Value = Vec<Rec>> {
        proptest::collection::vec(
            (
                0u64..4,
                1u64..1_000_000,
                1u32..10,
                proptest::collection::vec(any::<u8>(), 0..64),
            ),
            0..12,
        )
    }

    proptest! {
        #[test]
        fn random_records_decode_back(records in records()) {
            let (bytes, _) = segment(&records);
            prop_assert_eq!(collect(&bytes), (records, None));
        }

        #[test]
        fn truncated_segments_yield_a_prefix(records in records(), cut in any::<prop::sample::Index>()) {
            let (bytes, _) = segment(&records);
            let cut = cut.index(bytes.len() + 1);
            let (got, damage) = collect(&bytes[..cut]);
            prop_assert!(records.starts_with(&got));
            if let Some(d) = damage {
                prop_assert_eq!(d.kind, DamageKind::TornTail);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = collect(&bytes);
        }

        #[test]
        fn a_flip_before_the_last_record_is_corrupt(
            records in proptest::collection::vec(
                (0u64..4, 1u64..100, 1u32..4, proptest::collection::vec(any::<u8>(), 0..32)), 2..6),
            pick in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let (mut bytes, offsets) = segment(&records);
            let last = offsets[offsets.len() - 1];
            let at = offsets[0] + pick.index(last - offsets[0]);
            bytes[at] ^= 1 << bit;
            let (got, damage) = collect(&bytes);
            prop_assert!(records.starts_with(&got));
            let d = damage.unwrap();
            prop_assert_eq!(d.kind, DamageKind::Corrupt);
            prop_assert_eq!(d.offset as usize, offsets[got.len()]);
        }
    }
}
