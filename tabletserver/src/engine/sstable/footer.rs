//! The fixed-size footer at the end of every SSTable: where the filters, the index and the
//! properties are, their checksums, the format version and the magic.
//!
//! ```text
//! offset  size
//!      0    20  row filter     offset u64 | length u64 | crc32c u32
//!     20    20  column filter  offset u64 | length u64 | crc32c u32
//!     40    20  index          offset u64 | length u64 | crc32c u32
//!     60    20  properties     offset u64 | length u64 | crc32c u32
//!     80     4  format version u32
//!     84     4  crc32c of bytes 0..84
//!     88     8  magic "TBLA.SST"
//!     96        (end of file)
//! ```
//!
//! All integers little-endian. The four sections must be contiguous, in this order, and end
//! exactly where the footer starts; that is checked before anything else is read.

use tabula_common::FileId;

use super::codec::{Malformed, u32_at, u64_at};
use super::error::SstableError;

/// The last 8 bytes of every SSTable.
pub(crate) const MAGIC: [u8; 8] = *b"TBLA.SST";
/// The format this build writes and reads.
pub(crate) const FORMAT_VERSION: u32 = 1;
/// Size of the footer in bytes.
pub(crate) const FOOTER_LEN: usize = 96;

const SECTION_LEN: usize = 20;
const VERSION_AT: usize = 80;
const CRC_AT: usize = 84;
const MAGIC_AT: usize = 88;

/// One section of the file tail and the checksum of its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Section {
    pub(crate) offset: u64,
    pub(crate) len: u64,
    pub(crate) crc: u32,
}

impl Section {
    /// The section holding `bytes` at `offset`.
    pub(crate) fn of(offset: u64, bytes: &[u8]) -> Section {
        Section {
            offset,
            len: bytes.len() as u64,
            crc: crc32c::crc32c(bytes),
        }
    }

    /// Checks `bytes` (the section as read) against the stored checksum.
    pub(crate) fn verify(
        &self,
        file: FileId,
        what: &'static str,
        bytes: &[u8],
    ) -> Result<(), SstableError> {
        let actual = crc32c::crc32c(bytes);
        if actual != self.crc {
            return Err(SstableError::ChecksumMismatch {
                file,
                what,
                offset: self.offset,
                expected: self.crc,
                actual,
            });
        }
        Ok(())
    }
}

/// The decoded footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Footer {
    pub(crate) row_bloom: Section,
    pub(crate) column_bloom: Section,
    pub(crate) index: Section,
    pub(crate) meta: Section,
}

impl Footer {
    fn sections(&self) -> [Section; 4] {
        [self.row_bloom, self.column_bloom, self.index, self.meta]
    }

    /// The encoded footer.
    pub(crate) fn encode(&self) -> [u8; FOOTER_LEN] {
        let mut out = [0u8; FOOTER_LEN];
        for (chunk, s) in out.chunks_exact_mut(SECTION_LEN).zip(self.sections()) {
            let (offset, rest) = chunk.split_at_mut(8);
            let (len, crc) = rest.split_at_mut(8);
            offset.copy_from_slice(&s.offset.to_le_bytes());
            len.copy_from_slice(&s.len.to_le_bytes());
            crc.copy_from_slice(&s.crc.to_le_bytes());
        }
        let (body, tail) = out.split_at_mut(CRC_AT);
        if let Some(v) = body.get_mut(VERSION_AT..) {
            v.copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        }
        let crc = crc32c::crc32c(body);
        let (crc_bytes, magic) = tail.split_at_mut(4);
        crc_bytes.copy_from_slice(&crc.to_le_bytes());
        magic.copy_from_slice(&MAGIC);
        out
    }

    /// Decodes the last `FOOTER_LEN` bytes of a file whose footer starts at `footer_offset`.
    /// Checks, in order: magic, version, checksum, section placement.
    pub(crate) fn decode(
        file: FileId,
        buf: &[u8],
        footer_offset: u64,
    ) -> Result<Footer, SstableError> {
        let corrupt = |why: &str| SstableError::corrupt(file, "footer", why);
        if buf.len() != FOOTER_LEN {
            return Err(corrupt("wrong length"));
        }
        let mut found = [0u8; 8];
        if let Some(m) = buf.get(MAGIC_AT..) {
            found.copy_from_slice(m);
        }
        if found != MAGIC {
            return Err(SstableError::BadMagic { file, found });
        }
        let version = u32_at(buf, VERSION_AT).ok_or_else(|| corrupt("no version"))?;
        if version != FORMAT_VERSION {
            return Err(SstableError::UnsupportedVersion { file, version });
        }
        let expected = u32_at(buf, CRC_AT).ok_or_else(|| corrupt("no checksum"))?;
        let actual = buf.get(..CRC_AT).map_or(0, crc32c::crc32c);
        if expected != actual {
            return Err(SstableError::ChecksumMismatch {
                file,
                what: "footer",
                offset: footer_offset,
                expected,
                actual,
            });
        }
        let section = |i: usize| -> Result<Section, Malformed> {
            let at = i * SECTION_LEN;
            let get = |o| u64_at(buf, at + o).ok_or(Malformed("short section"));
            let crc = u32_at(buf, at + 16).ok_or(Malformed("short section"))?;
            Ok(Section {
                offset: get(0)?,
                len: get(8)?,
                crc,
            })
        };
        let footer = (|| -> Result<Footer, Malformed> {
            let f = Footer {
                row_bloom: section(0)?,
                column_bloom: section(1)?,
                index: section(2)?,
                meta: section(3)?,
            };
            f.check_placement(footer_offset)?;
            Ok(f)
        })()
        .map_err(|m| corrupt(m.0))?;
        Ok(footer)
    }

    fn check_placement(&self, footer_offset: u64) -> Result<(), Malformed> {
        let mut at = self.row_bloom.offset;
        for s in self.sections() {
            let end = s
                .offset
                .checked_add(s.len)
                .ok_or(Malformed("section overflows"))?;
            if s.offset != at {
                return Err(Malformed("sections are not contiguous"));
            }
            at = end;
        }
        if at != footer_offset {
            return Err(Malformed("sections do not end at the footer"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Footer {
        Footer {
            row_bloom: Section {
                offset: 1000,
                len: 10,
                crc: 1,
            },
            column_bloom: Section {
                offset: 1010,
                len: 20,
                crc: 2,
            },
            index: Section {
                offset: 1030,
                len: 30,
                crc: 3,
            },
            meta: Section {
                offset: 1060,
                len: 40,
                crc: 0xdead_beef,
            },
        }
    }

    #[test]
    fn round_trips_with_magic_at_the_very_end() {
        let f = sample();
        let buf = f.encode();
        assert_eq!(&buf[88..], b"TBLA.SST");
        assert_eq!(&buf[80..84], &1u32.to_le_bytes());
        assert_eq!(Footer::decode(FileId(3), &buf, 1100).unwrap(), f);
    }

    #[test]
    fn every_bit_flip_is_an_error() {
        let buf = sample().encode();
        for i in 0..FOOTER_LEN {
            for bit in 0..8 {
                let mut bad = buf;
                bad[i] ^= 1 << bit;
                assert!(
                    Footer::decode(FileId(3), &bad, 1100).is_err(),
                    "byte {i} bit {bit}"
                );
            }
        }
    }

    #[test]
    fn names_the_failure() {
        let mut buf = sample().encode();
        buf[95] = b'X';
        assert!(matches!(
            Footer::decode(FileId(3), &buf, 1100),
            Err(SstableError::BadMagic { .. })
        ));
        let mut buf = sample().encode();
        buf[80] = 2;
        assert!(matches!(
            Footer::decode(FileId(3), &buf, 1100),
            Err(SstableError::UnsupportedVersion { version: 2, .. })
        ));
        let buf = sample().encode();
        assert!(matches!(
            Footer::decode(FileId(3), &buf, 1101),
            Err(SstableError::Corrupt { .. })
        ));
        assert!(Footer::decode(FileId(3), &buf[1..], 1100).is_err());
    }

    #[test]
    fn overlapping_or_overflowing_sections_are_corrupt() {
        let mut f = sample();
        f.index.offset = 1029;
        assert!(Footer::decode(FileId(3), &f.encode(), 1100).is_err());
        let mut f = sample();
        f.meta.len = u64::MAX;
        assert!(Footer::decode(FileId(3), &f.encode(), 1100).is_err());
    }
}
