//! `SampleRowKeys`: row keys that cut the tablet into pieces of roughly equal size, each with
//! the approximate number of bytes of the tablet's rows before it (Cloud Bigtable's
//! `offset_bytes`).
//!
//! The candidates are the last rows of the SSTables' data blocks (what `Tablet::middle_row`
//! also uses), each block weighing its SSTable's size over its block count; blocks whose last
//! row is outside the tablet (a split child shares its parent's files) are left out. Samples
//! are thinned to at most `MAX_SAMPLES`, keys strictly increasing and offsets never
//! decreasing. The last sample is the tablet's end row with the tablet's whole size (memtables
//! included): every row of the tablet sorts before it. For the table's last tablet that key is
//! empty, Cloud Bigtable's "end of table", so a client that concatenates the tablets' samples
//! gets Bigtable's shape.

use bytes::Bytes;
use tabula_common::Error;
use tabula_proto::tabula::tablet::v1 as api;

use crate::engine::Tablet;

use super::{Shared, blocking, route};

/// Most samples per tablet, the end included.
const MAX_SAMPLES: usize = 128;

/// `SampleRowKeys`.
pub(super) async fn sample_row_keys(
    shared: &Shared,
    req: api::SampleRowKeysRequest,
) -> Result<Vec<api::sample_row_keys_response::Sample>, Error> {
    shared.gate.check_serving()?;
    let route = route(req.tablet)?;
    let served = shared.route_whole_tablet(&route)?;
    served.count_read();
    let samples = blocking(move || Ok(tablet_samples(&served.tablet))).await?;
    Ok(samples
        .into_iter()
        .map(|(row_key, offset)| api::sample_row_keys_response::Sample {
            row_key: row_key.to_vec(),
            offset_bytes: i64::try_from(offset).unwrap_or(i64::MAX),
        })
        .collect())
}

/// The tablet's samples, read from its current SSTables.
fn tablet_samples(tablet: &Tablet) -> Vec<(Bytes, u64)> {
    // The SSTable list is the engine's; only this module reads it from outside the engine.
    let state = tablet.inner.state.read().clone();
    let mut blocks: Vec<(Bytes, u64)> = Vec::new();
    let mut sstable_bytes = 0u64;
    for sst in &state.sstables {
        sstable_bytes += sst.size_bytes();
        let count = sst.block_last_rows().count().max(1) as u64;
        let per_block = sst.size_bytes() / count;
        blocks.extend(
            sst.block_last_rows()
                .filter(|r| tablet.contains(r))
                .map(|r| (r, per_block)),
        );
    }
    let memtable_bytes = tablet
        .approximate_size_bytes()
        .saturating_sub(sstable_bytes);
    let end = match &tablet.range().end {
        std::ops::Bound::Excluded(e) | std::ops::Bound::Included(e) => e.clone(),
        std::ops::Bound::Unbounded => Bytes::new(),
    };
    samples(blocks, memtable_bytes, end)
}

/// Samples from block candidates `(last row, bytes)` in any order, plus `extra_bytes` not in
/// any block, ending with `end`. Pure.
fn samples(mut blocks: Vec<(Bytes, u64)>, extra_bytes: u64, end: Bytes) -> Vec<(Bytes, u64)> {
    blocks.sort();
    let mut merged: Vec<(Bytes, u64)> = Vec::with_capacity(blocks.len());
    for (row, bytes) in blocks {
        match merged.last_mut() {
            Some((last, b)) if *last == row => *b += bytes,
            _ => merged.push((row, bytes)),
        }
    }
    let total_blocks: u64 = merged.iter().map(|(_, b)| b).sum();
    let step = (total_blocks / MAX_SAMPLES as u64).max(1);
    let mut out = Vec::new();
    let mut offset = 0u64;
    let mut last_emitted = 0u64;
    for (row, bytes) in merged {
        offset += bytes;
        if offset - last_emitted >= step && out.len() + 1 < MAX_SAMPLES {
            out.push((row, offset));
            last_emitted = offset;
        }
    }
    out.push((end, total_blocks + extra_bytes));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn samples_increase_and_end_with_the_tablet_end() {
        let got = samples(
            vec![(b("c"), 10), (b("a"), 10), (b("c"), 5), (b("b"), 10)],
            7,
            b("m"),
        );
        assert_eq!(
            got,
            vec![(b("a"), 10), (b("b"), 20), (b("c"), 35), (b("m"), 42)]
        );
        assert_eq!(samples(vec![], 3, Bytes::new()), vec![(Bytes::new(), 3)]);
    }

    #[test]
    fn many_blocks_are_thinned() {
        let blocks = (0..10_000u32)
            .map(|i| (Bytes::from(format!("{i:06}")), 100))
            .collect();
        let got = samples(blocks, 0, Bytes::new());
        assert!(got.len() <= MAX_SAMPLES);
        assert!(got.windows(2).all(|w| w[0].1 <= w[1].1));
        assert!(got[..got.len() - 1].windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(got.last(), Some(&(Bytes::new(), 1_000_000)));
    }
}
