//! The records every workload writes and reads: 16-byte keys, 100-byte values, and the
//! orders (sequential, a fixed random permutation) in which they are visited.
//!
//! Keys are record numbers as 16 ASCII decimal digits, so key order is number order and a
//! key can be rebuilt from its number without storing it. Values are cut from a pool that is
//! half random bytes and half repeats, so they compress to about 50% like db_bench's.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// Bytes in every key.
pub(super) const KEY_BYTES: usize = 16;
/// Bytes in every value.
pub(super) const VALUE_BYTES: usize = 100;
/// Seed of every random order, so two runs visit keys in the same order.
const SEED: u64 = 0x7ab1_1a5e_ed00_0001;
/// Size of the pool values are cut from.
const POOL_BYTES: usize = 1 << 20;

/// A record's key: `n` as 16 decimal digits.
pub(super) fn key(n: u64) -> [u8; KEY_BYTES] {
    let mut out = [b'0'; KEY_BYTES];
    let mut rest = n;
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    out
}

/// Where values come from: `value(n)` is a 100-byte window of a fixed pool.
pub(super) struct ValuePool {
    bytes: Vec<u8>,
}

impl ValuePool {
    /// A pool whose 100-byte values compress to about half their size.
    pub(super) fn new() -> Self {
        let mut rng = StdRng::seed_from_u64(SEED);
        let mut bytes = vec![0u8; POOL_BYTES + VALUE_BYTES];
        for chunk in bytes.chunks_mut(VALUE_BYTES) {
            let half = chunk.len().div_ceil(2);
            let (random, repeat) = chunk.split_at_mut(half);
            rng.fill(random);
            for (i, b) in repeat.iter_mut().enumerate() {
                *b = random[i % half];
            }
        }
        ValuePool { bytes }
    }

    /// The value of record `n`.
    pub(super) fn value(&self, n: u64) -> &[u8] {
        let start = (n.wrapping_mul(7919) as usize) % POOL_BYTES;
        &self.bytes[start..start + VALUE_BYTES]
    }
}

/// `0..count` in order.
pub(super) fn sequential(count: u64) -> Vec<u64> {
    (0..count).collect()
}

/// `0..count` in a fixed random order: every record exactly once, so every later point read
/// of a loaded key finds it.
pub(super) fn permutation(count: u64, stream: u64) -> Vec<u64> {
    let mut order = sequential(count);
    order.shuffle(&mut StdRng::seed_from_u64(SEED ^ stream));
    order
}

/// `samples` record numbers below `count`, drawn at random with repeats.
pub(super) fn random_picks(count: u64, samples: u64, stream: u64) -> Vec<u64> {
    let mut rng = StdRng::seed_from_u64(SEED ^ stream);
    (0..samples).map(|_| rng.random_range(0..count)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_sixteen_digits_in_number_order() {
        assert_eq!(&key(0), b"0000000000000000");
        assert_eq!(&key(1_234_567), b"0000000001234567");
        assert!(key(9) < key(10));
        assert!(key(999_999) < key(1_000_000));
    }

    #[test]
    fn values_are_fixed_and_compressible() {
        let pool = ValuePool::new();
        assert_eq!(pool.value(3).len(), VALUE_BYTES);
        assert_eq!(pool.value(3), ValuePool::new().value(3));
        let v = pool.value(0);
        assert_eq!(v[..50], v[50..], "a value's second half repeats its first");
    }

    #[test]
    fn a_permutation_visits_every_record_once() {
        let mut order = permutation(1000, 1);
        assert_ne!(order, sequential(1000));
        order.sort_unstable();
        assert_eq!(order, sequential(1000));
        assert!(random_picks(10, 100, 2).iter().all(|&n| n < 10));
    }
}
