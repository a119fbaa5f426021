//! Byte-level primitives shared by the SSTable codecs: LEB128 varints, zigzag, fixed-width
//! little-endian integers, length-prefixed byte strings and the full `CellKey` encoding used by
//! the index and the properties section.
//!
//! `Decoder` is the only way the codecs read bytes from disk: every read checks the remaining
//! length first and fails with `Malformed` instead of panicking, and byte strings come back as
//! `Bytes::slice`s of the input (no copy).

use bytes::Bytes;

use crate::engine::key::CellKey;

/// Why some bytes do not decode; the caller adds the file and section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed(pub(crate) &'static str);

/// Longest LEB128 encoding of a `u64`.
pub(crate) const MAX_VARINT_LEN: usize = 10;

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub(crate) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

pub(crate) fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Appends the self-delimiting encoding of a full key: row, family, qualifier tag (0 = none,
/// 1 = some) and qualifier, zigzag timestamp, sequence number.
pub(crate) fn put_key(out: &mut Vec<u8>, key: &CellKey) {
    put_bytes(out, &key.row);
    put_bytes(out, &key.family);
    match &key.qualifier {
        None => out.push(0),
        Some(q) => {
            out.push(1);
            put_bytes(out, q);
        }
    }
    put_varint(out, zigzag(key.timestamp));
    put_varint(out, key.seq);
}

/// A bounds-checked reader over a `Bytes` buffer.
pub(crate) struct Decoder<'a> {
    buf: &'a Bytes,
    pos: usize,
}

impl<'a> Decoder<'a> {
    pub(crate) fn new(buf: &'a Bytes) -> Self {
        Decoder { buf, pos: 0 }
    }

    #[inline]
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    #[inline]
    pub(crate) fn u8(&mut self) -> Result<u8, Malformed> {
        let b = *self.buf.get(self.pos).ok_or(Malformed("truncated byte"))?;
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    pub(crate) fn varint(&mut self) -> Result<u64, Malformed> {
        if let Some(&b) = self.buf.get(self.pos)
            && b < 0x80
        {
            self.pos += 1;
            return Ok(u64::from(b));
        }
        let mut v = 0u64;
        for i in 0..MAX_VARINT_LEN {
            let b = self.u8()?;
            if i == MAX_VARINT_LEN - 1 && b > 1 {
                return Err(Malformed("varint overflows u64"));
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Malformed("varint longer than 10 bytes"))
    }

    /// A varint that must fit `usize` and be at most the bytes left (a length of something that
    /// follows).
    #[inline]
    pub(crate) fn len(&mut self) -> Result<usize, Malformed> {
        let v = self.varint()?;
        match usize::try_from(v) {
            Ok(n) if n <= self.remaining() => Ok(n),
            _ => Err(Malformed("length runs past the end")),
        }
    }

    #[inline]
    pub(crate) fn zigzag(&mut self) -> Result<i64, Malformed> {
        Ok(unzigzag(self.varint()?))
    }

    /// How many bytes have been read.
    #[inline]
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// Steps over `n` bytes.
    #[inline]
    pub(crate) fn skip(&mut self, n: usize) -> Result<(), Malformed> {
        match self.pos.checked_add(n) {
            Some(end) if end <= self.buf.len() => {
                self.pos = end;
                Ok(())
            }
            _ => Err(Malformed("byte string runs past the end")),
        }
    }

    /// `n` bytes as a slice of the input buffer.
    #[inline]
    pub(crate) fn take(&mut self, n: usize) -> Result<Bytes, Malformed> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or(Malformed("length overflows"))?;
        if end > self.buf.len() {
            return Err(Malformed("byte string runs past the end"));
        }
        let b = self.buf.slice(self.pos..end);
        self.pos = end;
        Ok(b)
    }

    #[inline]
    pub(crate) fn bytes(&mut self) -> Result<Bytes, Malformed> {
        let n = self.len()?;
        self.take(n)
    }

    pub(crate) fn key(&mut self) -> Result<CellKey, Malformed> {
        let row = self.bytes()?;
        let family = self.bytes()?;
        let qualifier = match self.u8()? {
            0 => None,
            1 => Some(self.bytes()?),
            _ => return Err(Malformed("bad qualifier tag")),
        };
        let timestamp = self.zigzag()?;
        let seq = self.varint()?;
        Ok(CellKey {
            row,
            family,
            qualifier,
            timestamp,
            seq,
        })
    }
}

/// Reads a little-endian `u32` at `at`, if the slice holds it.
pub(crate) fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(s.try_into().ok()?))
}

/// Reads a little-endian `u64` at `at`, if the slice holds it.
pub(crate) fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(s.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_every_width() {
        let mut vals = vec![0u64, 1, 127, 128, 16_383, 16_384, u64::MAX, u64::MAX - 1];
        vals.extend((0..64).map(|s| 1u64 << s));
        for v in vals {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert!(out.len() <= MAX_VARINT_LEN);
            let buf = Bytes::from(out);
            let mut d = Decoder::new(&buf);
            assert_eq!(d.varint(), Ok(v));
            assert!(d.is_empty());
        }
    }

    #[test]
    fn zigzag_round_trips_extremes() {
        for v in [0i64, 1, -1, 63, -64, i64::MAX, i64::MIN, i64::MAX - 1] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        assert_eq!(zigzag(-1), 1);
        assert_eq!(zigzag(1), 2);
    }

    #[test]
    fn overlong_and_truncated_varints_are_errors() {
        let buf = Bytes::from(vec![0xff; 11]);
        assert!(Decoder::new(&buf).varint().is_err());
        let buf = Bytes::from(vec![
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
        ]);
        assert!(Decoder::new(&buf).varint().is_err(), "bit 64 set");
        let buf = Bytes::from(vec![0x80]);
        assert!(Decoder::new(&buf).varint().is_err());
    }

    #[test]
    fn lengths_past_the_end_are_errors() {
        let mut out = Vec::new();
        put_varint(&mut out, 5);
        out.extend_from_slice(b"abcd");
        let buf = Bytes::from(out);
        assert!(Decoder::new(&buf).bytes().is_err());
        let buf = Bytes::from(vec![
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ]);
        assert!(Decoder::new(&buf).bytes().is_err());
    }

    #[test]
    fn keys_round_trip_and_slice_the_input() {
        let keys = [
            CellKey {
                row: Bytes::from_static(b"row"),
                family: Bytes::from_static(b"f"),
                qualifier: Some(Bytes::new()),
                timestamp: -5,
                seq: 9,
            },
            CellKey {
                row: Bytes::from_static(b"r"),
                family: Bytes::new(),
                qualifier: None,
                timestamp: i64::MAX,
                seq: u64::MAX,
            },
        ];
        let mut out = Vec::new();
        for k in &keys {
            put_key(&mut out, k);
        }
        let buf = Bytes::from(out);
        let mut d = Decoder::new(&buf);
        for k in &keys {
            let got = d.key().unwrap();
            assert_eq!(&got, k);
            let base = buf.as_ptr() as usize;
            let p = got.row.as_ptr() as usize;
            assert!(
                p >= base && p < base + buf.len(),
                "row is a slice of the input"
            );
        }
        assert!(d.is_empty());
    }

    #[test]
    fn fixed_width_reads_are_bounds_checked() {
        let b = [1u8, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(u32_at(&b, 0), Some(1));
        assert_eq!(u64_at(&b, 4), Some(2));
        assert_eq!(u32_at(&b, 9), None);
        assert_eq!(u64_at(&b, usize::MAX), None);
    }
}
