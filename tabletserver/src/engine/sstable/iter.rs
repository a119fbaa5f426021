//! `SstableIter`: the entries of one SSTable whose row is in a `RowRange`, forward or reverse.
//!
//! The first call seeks with the block index (binary search for the first block whose last row
//! reaches the range) and then within that block (binary search over its decoded entries); it
//! never scans from the beginning. Blocks come through the block cache. Rows are compared to the
//! range's far end only in a block that may cross it. After an error the iterator yields `None`.

use std::sync::Arc;

use super::block::Block;
use super::error::SstableError;
use super::range::RowRange;
use super::reader::Sstable;
use crate::engine::key::Entry;

/// An iterator over part of an SSTable; see `Sstable::iter`.
pub struct SstableIter {
    table: Arc<Sstable>,
    range: RowRange,
    reverse: bool,
    started: bool,
    done: bool,
    block: Option<Arc<Block>>,
    /// Forward: the next entry to yield. Reverse: one past it.
    pos: usize,
    /// Forward: the next block to load. Reverse: one past it.
    next_block: usize,
    /// Whether rows of the current block may lie beyond the range's far end.
    check_bound: bool,
}

impl std::fmt::Debug for SstableIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SstableIter")
            .field("table", &self.table.id())
            .field("range", &self.range)
            .field("reverse", &self.reverse)
            .field("next_block", &self.next_block)
            .field("pos", &self.pos)
            .finish()
    }
}

impl SstableIter {
    pub(crate) fn new(table: Arc<Sstable>, range: RowRange, reverse: bool) -> SstableIter {
        SstableIter {
            table,
            range,
            reverse,
            started: false,
            done: false,
            block: None,
            pos: 0,
            next_block: 0,
            check_bound: true,
        }
    }

    /// Positions on the first entry to yield.
    fn seek(&mut self) -> Result<(), SstableError> {
        let t = &self.table;
        let m = t.meta();
        let disjoint = self.range.is_empty()
            || self.range.is_after_end(&m.smallest_row)
            || self.range.is_before_start(&m.largest_row);
        if disjoint {
            self.done = true;
            return Ok(());
        }
        if self.reverse {
            let i = t.first_block_after(&self.range);
            self.next_block = i;
            if i < t.block_count() {
                self.load(i)?;
                let range = &self.range;
                self.pos = self
                    .block
                    .as_ref()
                    .map_or(0, |b| b.seek(|r| !range.is_after_end(r)));
            }
        } else {
            let i = t.first_block_from(&self.range);
            self.next_block = i;
            if i < t.block_count() {
                self.load(i)?;
                let range = &self.range;
                self.pos = self
                    .block
                    .as_ref()
                    .map_or(0, |b| b.seek(|r| range.is_before_start(r)));
            }
        }
        Ok(())
    }

    /// Makes block `i` current (position at its start, or its end in reverse).
    fn load(&mut self, i: usize) -> Result<(), SstableError> {
        let block = self.table.block(i)?;
        let t = &self.table;
        if self.reverse {
            self.pos = block.len();
            self.next_block = i;
            self.check_bound = match i.checked_sub(1).and_then(|p| t.block_last_row(p)) {
                Some(prev_last) => self.range.is_before_start(prev_last),
                None => !matches!(self.range.start, std::ops::Bound::Unbounded),
            };
        } else {
            self.pos = 0;
            self.next_block = i + 1;
            self.check_bound = t
                .block_last_row(i)
                .is_none_or(|last| self.range.is_after_end(last));
        }
        self.block = Some(block);
        Ok(())
    }

    /// Loads the next block in iteration order; `false` when there is none left in range.
    fn advance(&mut self) -> Result<bool, SstableError> {
        if self.reverse {
            let Some(i) = self.next_block.checked_sub(1) else {
                return Ok(false);
            };
            if self
                .table
                .block_last_row(i)
                .is_none_or(|last| self.range.is_before_start(last))
            {
                return Ok(false);
            }
            self.load(i)?;
        } else {
            let i = self.next_block;
            if i >= self.table.block_count() {
                return Ok(false);
            }
            self.load(i)?;
        }
        Ok(true)
    }

    fn step(&mut self) -> Result<Option<Entry>, SstableError> {
        if !self.started {
            self.started = true;
            self.seek()?;
        }
        while !self.done {
            let at = if self.reverse {
                self.pos.checked_sub(1)
            } else {
                Some(self.pos)
            };
            if let (Some(block), Some(at)) = (self.block.as_deref(), at)
                && let Some(row) = block.row(at)
            {
                let beyond = if self.reverse {
                    self.range.is_before_start(row)
                } else {
                    self.range.is_after_end(row)
                };
                if self.check_bound && beyond {
                    break;
                }
                if let Some(e) = block.entry(at) {
                    self.pos = if self.reverse { at } else { at + 1 };
                    return Ok(Some(e));
                }
            }
            if !self.advance()? {
                break;
            }
        }
        self.done = true;
        self.block = None;
        Ok(None)
    }
}

impl Iterator for SstableIter {
    type Item = Result<Entry, SstableError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.step() {
            Ok(Some(e)) => Some(Ok(e)),
            Ok(None) => None,
            Err(err) => {
                self.done = true;
                self.block = None;
                Some(Err(err))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::ops::Bound;

    use bytes::Bytes;
    use proptest::prelude::*;

    use super::*;
    use crate::engine::sstable::testutil::{
        b, open_bytes, sample_entries, sorted_entries, tiny_blocks, write_table,
    };
    use crate::engine::sstable::{BlockCache, SstableOptions};

    fn scan(t: &Arc<Sstable>, range: &RowRange, reverse: bool) -> Vec<Entry> {
        t.iter(range.clone(), reverse)
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn expected(entries: &[Entry], range: &RowRange, reverse: bool) -> Vec<Entry> {
        let mut want: Vec<Entry> = entries
            .iter()
            .filter(|e| range.contains(&e.key.row))
            .cloned()
            .collect();
        if reverse {
            want.reverse();
        }
        want
    }

    fn bound() -> impl Strategy<Value = Bound<Bytes>> {
        let row = prop::collection::vec(
            prop::sample::select(vec![b'a', b'b', b'c', 0u8, 0xff]),
            0..4,
        )
        .prop_map(Bytes::from);
        prop_oneof![
            1 => Just(Bound::Unbounded),
            3 => row.clone().prop_map(Bound::Included),
            3 => row.prop_map(Bound::Excluded),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

        #[test]
        fn scans_match_a_filtered_model(
            entries in sorted_entries(300),
            ranges in prop::collection::vec((bound(), bound()), 1..6),
            zstd_level in prop::sample::select(vec![0, 1]),
            cache_bytes in prop::sample::select(vec![0usize, 4096, 1 << 20]),
        ) {
            let opts = SstableOptions {
                block_size_bytes: 256,
                zstd_level,
                bloom_bits_per_key: 10,
                ..SstableOptions::default()
            };
            let t = open_bytes(write_table(&entries, opts), Arc::new(BlockCache::new(cache_bytes)))
                .unwrap();
            prop_assert_eq!(scan(&t, &RowRange::all(), false), entries.clone());
            prop_assert_eq!(scan(&t, &RowRange::all(), true), expected(&entries, &RowRange::all(), true));
            for (start, end) in ranges {
                let range = RowRange { start, end };
                for reverse in [false, true] {
                    prop_assert_eq!(
                        scan(&t, &range, reverse),
                        expected(&entries, &range, reverse),
                        "range {:?} reverse {}", range, reverse
                    );
                }
            }
            for e in &entries {
                let row = &e.key.row;
                prop_assert!(t.may_contain_row(row), "bloom false negative");
                let q = e.key.qualifier.as_deref().unwrap_or(b"");
                prop_assert!(t.may_contain_column(row, &e.key.family, q), "column false negative");
                let want = expected(&entries, &RowRange::single(row.clone()), false);
                prop_assert_eq!(t.get_row_entries(row, None).unwrap(), want);
            }
        }
    }

    #[test]
    fn a_narrow_scan_reads_only_the_blocks_it_needs() {
        let entries = sample_entries(2000);
        let cache = Arc::new(BlockCache::new(64 << 20));
        let opts = SstableOptions {
            block_size_bytes: 512,
            ..tiny_blocks()
        };
        let t = open_bytes(write_table(&entries, opts), cache.clone()).unwrap();
        assert!(t.meta().block_count > 200);
        let range = RowRange::half_open(b("row01500"), b("row01502"));
        let got = scan(&t, &range, false);
        assert_eq!(got, expected(&entries, &range, false));
        assert!(
            cache.misses() <= 3,
            "forward seek read {} blocks",
            cache.misses()
        );
        let before = cache.misses() + cache.hits();
        assert_eq!(scan(&t, &range, true), expected(&entries, &range, true));
        assert!(cache.misses() + cache.hits() - before <= 3, "reverse seek");
        let before = cache.misses() + cache.hits();
        assert!(scan(&t, &RowRange::half_open(b("a"), b("b")), false).is_empty());
        assert!(scan(&t, &RowRange::half_open(b("s"), b("t")), true).is_empty());
        assert_eq!(
            cache.misses() + cache.hits(),
            before,
            "ranges outside the file read nothing"
        );
    }

    #[test]
    fn bounds_on_a_row_shared_by_blocks() {
        // One row split over many blocks, with neighbours: each bound kind on it.
        let mut entries = sample_entries(3);
        entries.extend((0..100u64).map(|i| {
            crate::engine::sstable::testutil::put(
                "row00001",
                "wide",
                &format!("{i:03}"),
                1,
                9_000 + i,
                "v",
            )
        }));
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        let t = open_bytes(
            write_table(&entries, tiny_blocks()),
            Arc::new(BlockCache::new(0)),
        )
        .unwrap();
        let r = || b("row00001");
        let ranges = [
            RowRange {
                start: Bound::Included(r()),
                end: Bound::Included(r()),
            },
            RowRange {
                start: Bound::Excluded(r()),
                end: Bound::Unbounded,
            },
            RowRange {
                start: Bound::Unbounded,
                end: Bound::Excluded(r()),
            },
            RowRange {
                start: Bound::Excluded(b("row00000")),
                end: Bound::Included(r()),
            },
            RowRange {
                start: Bound::Included(r()),
                end: Bound::Excluded(r()),
            },
        ];
        for range in ranges {
            for reverse in [false, true] {
                assert_eq!(
                    scan(&t, &range, reverse),
                    expected(&entries, &range, reverse),
                    "{range:?}"
                );
            }
        }
    }

    #[test]
    fn an_error_ends_the_iteration() {
        let entries = sample_entries(30);
        let mut bytes = write_table(&entries, tiny_blocks()).to_vec();
        // Corrupt the third block's payload: the scan yields the first blocks, then one error.
        let t = open_bytes(Bytes::from(bytes.clone()), Arc::new(BlockCache::new(0))).unwrap();
        let third = t.index_offset_for_test(2);
        bytes[third as usize + 6] ^= 0x10;
        let t = open_bytes(Bytes::from(bytes), Arc::new(BlockCache::new(0))).unwrap();
        let mut it = t.iter(RowRange::all(), false);
        let mut ok = 0;
        let mut errors = 0;
        for item in it.by_ref() {
            match item {
                Ok(_) => ok += 1,
                Err(_) => errors += 1,
            }
        }
        assert!(ok > 0);
        assert_eq!(errors, 1);
        assert!(it.next().is_none());
    }
}
