//! When an SSTable writer stops trying to compress: data that zstd cannot shrink (values that
//! are already compressed, encrypted or random) costs a whole compression attempt per block —
//! most of a flush's CPU — only for the block to be stored raw. After a block fails to shrink,
//! the writer stores the next blocks raw without trying: one block after the first failure,
//! then twice as many after each further failure in a row, up to `MAX_SKIP`. A block that
//! compresses resets the count, so data that turns compressible again is compressed within
//! `MAX_SKIP + 1` blocks. Pure; the writer asks `try_next` before each block and reports each
//! attempt's outcome to `record`.

/// Most blocks stored raw, untried, between two attempts (16 blocks of ~16 KiB).
pub(crate) const MAX_SKIP: u32 = 16;

/// Whether the writer's next block is worth a compression attempt.
#[derive(Debug, Default)]
pub(crate) struct CompressionBackoff {
    /// Blocks to skip after the next failure (0 until a block fails).
    skip: u32,
    /// Blocks still to store raw without trying.
    left: u32,
}

impl CompressionBackoff {
    /// Whether to try compressing the next block; `false` uses up one skipped block.
    pub(crate) fn try_next(&mut self) -> bool {
        if self.left > 0 {
            self.left -= 1;
            return false;
        }
        true
    }

    /// The outcome of an attempt: `compressed` if the block came out smaller.
    pub(crate) fn record(&mut self, compressed: bool) {
        if compressed {
            self.skip = 0;
        } else {
            self.skip = (self.skip * 2).clamp(1, MAX_SKIP);
            self.left = self.skip;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `b` blocks whose attempts come out as `compresses` says; returns which were tried.
    fn run(b: &mut CompressionBackoff, blocks: usize, compresses: bool) -> Vec<bool> {
        (0..blocks)
            .map(|_| {
                let tried = b.try_next();
                if tried {
                    b.record(compresses);
                }
                tried
            })
            .collect()
    }

    #[test]
    fn compressible_blocks_are_always_tried() {
        let mut b = CompressionBackoff::default();
        assert!(run(&mut b, 100, true).iter().all(|&t| t));
    }

    #[test]
    fn failures_back_off_doubling_up_to_the_cap() {
        let mut b = CompressionBackoff::default();
        let tried = run(&mut b, 200, false);
        let at: Vec<usize> = (0..tried.len()).filter(|&i| tried[i]).collect();
        let gaps: Vec<usize> = at.windows(2).map(|w| w[1] - w[0] - 1).collect();
        assert_eq!(&gaps[..6], &[1, 2, 4, 8, 16, 16]);
        assert!(gaps.iter().all(|&g| g <= MAX_SKIP as usize));
        assert!(at.len() < 200 / 10, "{} attempts in 200 blocks", at.len());
    }

    #[test]
    fn data_turning_compressible_is_compressed_again_within_the_cap() {
        let mut b = CompressionBackoff::default();
        run(&mut b, 500, false);
        let tried = run(&mut b, 100, true);
        let first = tried.iter().position(|&t| t).unwrap();
        assert!(
            first <= MAX_SKIP as usize,
            "first attempt after {first} blocks"
        );
        assert!(
            tried[first..].iter().all(|&t| t),
            "every block after a success is tried"
        );
    }

    #[test]
    fn one_success_resets_the_backoff() {
        let mut b = CompressionBackoff::default();
        run(&mut b, 50, false);
        while !b.try_next() {}
        b.record(true);
        // The next failure skips one block again, not the cap.
        assert!(b.try_next());
        b.record(false);
        assert!(!b.try_next());
        assert!(b.try_next());
    }
}
