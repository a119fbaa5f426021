//! `RowDirectory`: sorted row keys packed into one buffer, so a binary search over them touches
//! a few nearby cache lines instead of chasing a pointer per step. The block index keeps one
//! for the blocks' last rows, and every decoded block one for its distinct rows.

/// Rows in sorted order (duplicates allowed), packed end to end.
#[derive(Debug, Default)]
pub(crate) struct RowDirectory {
    bytes: Vec<u8>,
    /// `ends[i]` is where row `i` ends in `bytes` (and row `i + 1` starts).
    ends: Vec<u32>,
}

impl RowDirectory {
    pub(crate) fn with_capacity(rows: usize, bytes: usize) -> Self {
        RowDirectory {
            bytes: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(rows),
        }
    }

    /// Appends `row`, which must not sort before the last one. Fails past 4 GiB of rows.
    pub(crate) fn push(&mut self, row: &[u8]) -> Result<(), TooLarge> {
        self.bytes.extend_from_slice(row);
        let end = u32::try_from(self.bytes.len()).map_err(|_| TooLarge)?;
        self.ends.push(end);
        Ok(())
    }

    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// Row `i`.
    pub(crate) fn get(&self, i: usize) -> Option<&[u8]> {
        let end = *self.ends.get(i)? as usize;
        let start = match i.checked_sub(1) {
            Some(p) => *self.ends.get(p)? as usize,
            None => 0,
        };
        self.bytes.get(start..end)
    }

    /// The number of leading rows for which `pred` holds (`pred` must hold for a prefix only).
    pub(crate) fn partition_point(&self, mut pred: impl FnMut(&[u8]) -> bool) -> usize {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.get(mid).is_some_and(&mut pred) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Memory held.
    pub(crate) fn size_bytes(&self) -> usize {
        self.bytes.capacity() + self.ends.capacity() * 4
    }
}

/// More than 4 GiB of row bytes in one directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooLarge;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_point_matches_a_slice() {
        let rows: Vec<&[u8]> = vec![b"", b"a", b"a", b"ab", b"b", b"\xff"];
        let mut dir = RowDirectory::with_capacity(rows.len(), 8);
        for r in &rows {
            dir.push(r).unwrap();
        }
        assert_eq!(dir.len(), rows.len());
        for (i, r) in rows.iter().enumerate() {
            assert_eq!(dir.get(i), Some(*r));
        }
        assert_eq!(dir.get(rows.len()), None);
        for probe in [
            &b""[..],
            b"a",
            b"aa",
            b"ab",
            b"b",
            b"c",
            b"\xff",
            b"\xff\xff",
        ] {
            assert_eq!(
                dir.partition_point(|r| r < probe),
                rows.partition_point(|r| *r < probe)
            );
            assert_eq!(
                dir.partition_point(|r| r <= probe),
                rows.partition_point(|r| *r <= probe)
            );
        }
        assert_eq!(RowDirectory::default().partition_point(|_| true), 0);
        assert!(dir.size_bytes() >= 6 * 4);
    }
}
