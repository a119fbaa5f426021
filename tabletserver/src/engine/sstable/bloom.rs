//! Bloom filters: one on rows, one on columns (row + family + qualifier).
//!
//! Keys are hashed once with xxh3-64 under a fixed seed (stable across builds and machines).
//! The filter is cache-local ("blocked"): the high 32 bits of the hash pick one 512-bit line
//! (one 64-byte cache line), and every probe falls in that line, by double hashing on the low
//! 32 bits: probe `i` tests bit `(h1 + i * h2) mod 512` of the line, `h1` the low 32 bits and
//! `h2` them rotated by 15 (forced odd). A query costs one cache miss, not one per probe.
//!
//! ```text
//! +----------------+------------------------------------------+
//! | num_probes u8  | lines: n x 64 bytes (bit b of a line is  |
//! |                | bit b % 8 of byte b / 8)                 |
//! +----------------+------------------------------------------+
//! ```
//!
//! `num_probes = 0` (with no lines) is the "no filter" encoding: every query answers "maybe".
//! A filter never answers "no" for a key that was added.

use bytes::Bytes;
use xxhash_rust::xxh3::{Xxh3, xxh3_64_with_seed};

use super::codec::Malformed;

const SEED: u64 = 0x7ab1_1a5e_b100_f11e;
/// The most probes a filter may ask for (more is never useful and bounds the query cost).
const MAX_PROBES: u8 = 30;

/// The hash of a row in the row filter.
pub(crate) fn row_hash(row: &[u8]) -> u64 {
    xxh3_64_with_seed(row, SEED)
}

/// The hash of a column in the column filter. `qualifier = None` is the key of a family or row
/// tombstone; it differs from every `Some` (lengths and a tag are hashed in, so no two distinct
/// columns concatenate to the same bytes).
pub(crate) fn column_hash(row: &[u8], family: &[u8], qualifier: Option<&[u8]>) -> u64 {
    let q = qualifier.unwrap_or_default();
    let total = row.len() + family.len() + q.len() + 9;
    let mut stack = [0u8; 256];
    if let Some(buf) = stack.get_mut(..total) {
        let (a, rest) = buf.split_at_mut(4);
        a.copy_from_slice(&(row.len() as u32).to_le_bytes());
        let (b, rest) = rest.split_at_mut(row.len());
        b.copy_from_slice(row);
        let (c, rest) = rest.split_at_mut(4);
        c.copy_from_slice(&(family.len() as u32).to_le_bytes());
        let (d, rest) = rest.split_at_mut(family.len());
        d.copy_from_slice(family);
        let (e, f) = rest.split_at_mut(1);
        e.copy_from_slice(&[u8::from(qualifier.is_some())]);
        f.copy_from_slice(q);
        return xxh3_64_with_seed(buf, SEED);
    }
    let mut h = Xxh3::with_seed(SEED);
    h.update(&(row.len() as u32).to_le_bytes());
    h.update(row);
    h.update(&(family.len() as u32).to_le_bytes());
    h.update(family);
    h.update(&[u8::from(qualifier.is_some())]);
    h.update(q);
    h.digest()
}

fn probes_for(bits_per_key: u32) -> u8 {
    // k = bits_per_key * ln 2 minimises the false-positive rate.
    let k = (f64::from(bits_per_key) * std::f64::consts::LN_2).round() as u32;
    k.clamp(1, u32::from(MAX_PROBES)) as u8
}

/// Bytes in one line of the filter.
const LINE_BYTES: usize = 64;

/// The line a hash falls in, of `lines`.
fn line_of(hash: u64, lines: usize) -> usize {
    ((u128::from(hash >> 32) * lines as u128) >> 32) as usize
}

/// The bits (0..512) a hash sets within its line.
fn probe_bits(hash: u64, probes: u8) -> impl Iterator<Item = usize> {
    let h1 = hash as u32;
    let h2 = h1.rotate_left(15) | 1;
    (0..u32::from(probes)).map(move |i| (h1.wrapping_add(i.wrapping_mul(h2)) % 512) as usize)
}

/// Encodes a filter over the given key hashes (duplicates are harmless).
pub(crate) fn build(hashes: &[u64], bits_per_key: u32) -> Vec<u8> {
    if bits_per_key == 0 || hashes.is_empty() {
        return vec![0];
    }
    let bits = hashes.len().saturating_mul(bits_per_key as usize);
    let lines = bits.div_ceil(LINE_BYTES * 8).max(1);
    let probes = probes_for(bits_per_key);
    let mut out = vec![0u8; 1 + lines * LINE_BYTES];
    let (head, body) = out.split_at_mut(1);
    head.copy_from_slice(&[probes]);
    for &h in hashes {
        let start = line_of(h, lines) * LINE_BYTES;
        if let Some(line) = body.get_mut(start..start + LINE_BYTES) {
            for bit in probe_bits(h, probes) {
                if let Some(byte) = line.get_mut(bit / 8) {
                    *byte |= 1 << (bit % 8);
                }
            }
        }
    }
    out
}

/// A decoded filter; its bits slice the buffer it was read from.
#[derive(Debug, Clone)]
pub(crate) struct Bloom {
    probes: u8,
    lines: Bytes,
}

impl Bloom {
    /// Decodes a filter section.
    pub(crate) fn decode(buf: Bytes) -> Result<Bloom, Malformed> {
        let probes = *buf.first().ok_or(Malformed("empty filter"))?;
        let lines = buf.slice(1..);
        if probes > MAX_PROBES {
            return Err(Malformed("too many probes"));
        }
        if !lines.len().is_multiple_of(LINE_BYTES) || (probes > 0) == lines.is_empty() {
            return Err(Malformed("filter size is not whole lines"));
        }
        Ok(Bloom { probes, lines })
    }

    /// Whether a key with this hash may have been added (never `false` for one that was).
    pub(crate) fn may_contain(&self, hash: u64) -> bool {
        let n = self.lines.len() / LINE_BYTES;
        if self.probes == 0 || n == 0 {
            return true;
        }
        let start = line_of(hash, n) * LINE_BYTES;
        let Some(line) = self.lines.get(start..start + LINE_BYTES) else {
            return true;
        };
        probe_bits(hash, self.probes).all(|bit| {
            line.get(bit / 8)
                .is_some_and(|byte| byte & (1 << (bit % 8)) != 0)
        })
    }

    /// Memory the filter holds.
    pub(crate) fn size_bytes(&self) -> usize {
        self.lines.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_false_negatives_and_few_false_positives() {
        let hashes: Vec<u64> = (0..10_000u32).map(|i| row_hash(&i.to_be_bytes())).collect();
        let bloom = Bloom::decode(Bytes::from(build(&hashes, 10))).unwrap();
        assert!(hashes.iter().all(|&h| bloom.may_contain(h)));
        let false_positives = (10_000..110_000u32)
            .filter(|i| bloom.may_contain(row_hash(&i.to_be_bytes())))
            .count();
        // 10 bits per key gives about 1%.
        assert!(
            false_positives < 2_000,
            "{false_positives} false positives in 100000"
        );
        assert!(bloom.size_bytes() >= 12_500);
    }

    #[test]
    fn empty_and_disabled_filters_answer_maybe() {
        for buf in [build(&[], 10), build(&[1, 2, 3], 0)] {
            let bloom = Bloom::decode(Bytes::from(buf)).unwrap();
            assert!(bloom.may_contain(42));
        }
        assert!(Bloom::decode(Bytes::new()).is_err());
        assert!(Bloom::decode(Bytes::from_static(&[31, 0xff])).is_err());
        assert!(
            Bloom::decode(Bytes::from_static(&[7, 0xff])).is_err(),
            "not whole lines"
        );
        assert!(
            Bloom::decode(Bytes::from_static(&[7])).is_err(),
            "probes but no lines"
        );
        assert!(
            Bloom::decode(Bytes::from(vec![0; 65])).is_err(),
            "lines but no probes"
        );
    }

    #[test]
    fn column_hash_separates_fields_and_matches_the_streaming_path() {
        let h = column_hash(b"ab", b"c", Some(b"d"));
        assert_ne!(h, column_hash(b"a", b"bc", Some(b"d")));
        assert_ne!(h, column_hash(b"ab", b"cd", None));
        assert_ne!(
            column_hash(b"ab", b"c", None),
            column_hash(b"ab", b"c", Some(b""))
        );
        // Long keys take the streaming path; the result is the one-shot hash of the same bytes.
        let row = vec![7u8; 300];
        let mut flat = Vec::new();
        flat.extend_from_slice(&300u32.to_le_bytes());
        flat.extend_from_slice(&row);
        flat.extend_from_slice(&1u32.to_le_bytes());
        flat.extend_from_slice(b"f");
        flat.push(1);
        flat.extend_from_slice(b"q");
        assert_eq!(
            column_hash(&row, b"f", Some(b"q")),
            xxh3_64_with_seed(&flat, SEED)
        );
        let short = column_hash(b"r", b"f", Some(b"q"));
        let mut flat = Vec::new();
        flat.extend_from_slice(&1u32.to_le_bytes());
        flat.extend_from_slice(b"r");
        flat.extend_from_slice(&1u32.to_le_bytes());
        flat.extend_from_slice(b"f");
        flat.push(1);
        flat.extend_from_slice(b"q");
        assert_eq!(short, xxh3_64_with_seed(&flat, SEED));
    }

    #[test]
    fn hashes_are_stable_across_builds() {
        // A filter written by one build is read by another: the hash must never change.
        assert_eq!(row_hash(b"row"), 0x349b_da4d_68b6_9cc1);
        assert_eq!(column_hash(b"r", b"f", Some(b"q")), 0xa4a7_89d0_1a80_91f2);
        assert_eq!(probes_for(10), 7);
        assert_eq!(probes_for(1), 1);
        assert_eq!(probes_for(1000), MAX_PROBES);
    }
}
