//! `BlockCache`: decoded data blocks shared by every SSTable of a server, under a byte budget.
//!
//! Keyed by (file id, block offset). The key space is split over up to 32 shards, each a
//! `parking_lot::Mutex` around a map and a CLOCK ring (second-chance eviction: a hit sets a
//! block's reference bit; the hand clears set bits and evicts the first block it finds clear).
//! A shard never holds more than its share of the budget; a block larger than a shard's share
//! is handed back to the caller but not kept. No lock is held while a block is read or decoded.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use parking_lot::Mutex;
use tabula_common::FileId;

use super::block::Block;

const MAX_SHARDS: usize = 32;
/// A shard gets at least this much of the budget (fewer shards for small caches).
const MIN_SHARD_BYTES: usize = 1 << 20;

/// Which block: the file and the block's offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct BlockKey {
    pub(crate) file: FileId,
    pub(crate) offset: u64,
}

impl BlockKey {
    fn mix(&self) -> u64 {
        let id = self.file.0;
        fmix64((id as u64) ^ ((id >> 64) as u64).rotate_left(17) ^ self.offset.wrapping_mul(K))
    }
}

const K: u64 = 0x9e37_79b9_7f4a_7c15;

/// MurmurHash3's 64-bit finaliser.
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// A cheap hasher for `BlockKey` (the std SipHash costs more than the rest of a lookup).
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        fmix64(self.0)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0 ^ v).wrapping_mul(K).rotate_left(29);
    }
    fn write_u128(&mut self, v: u128) {
        self.write_u64(v as u64);
        self.write_u64((v >> 64) as u64);
    }
}

struct Slot {
    key: BlockKey,
    block: Arc<Block>,
    charge_bytes: usize,
    referenced: bool,
}

struct Shard {
    map: HashMap<BlockKey, usize, BuildHasherDefault<KeyHasher>>,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    hand: usize,
    used_bytes: usize,
    capacity_bytes: usize,
    hits: u64,
    misses: u64,
}

impl Shard {
    fn new(capacity_bytes: usize) -> Shard {
        Shard {
            map: HashMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            hand: 0,
            used_bytes: 0,
            capacity_bytes,
            hits: 0,
            misses: 0,
        }
    }

    fn get(&mut self, key: &BlockKey) -> Option<Arc<Block>> {
        let slot = self
            .map
            .get(key)
            .and_then(|&i| self.slots.get_mut(i))
            .and_then(Option::as_mut);
        match slot {
            Some(s) => {
                s.referenced = true;
                self.hits += 1;
                Some(s.block.clone())
            }
            None => {
                self.misses += 1;
                None
            }
        }
    }

    fn insert(&mut self, key: BlockKey, block: Arc<Block>) -> Arc<Block> {
        if let Some(s) = self
            .map
            .get(&key)
            .and_then(|&i| self.slots.get(i))
            .and_then(Option::as_ref)
        {
            // Another reader loaded the same block meanwhile; keep one copy.
            return s.block.clone();
        }
        let charge_bytes = block.charge_bytes();
        if charge_bytes > self.capacity_bytes {
            return block;
        }
        self.used_bytes += charge_bytes;
        self.evict_to_budget();
        let slot = Slot {
            key,
            block: block.clone(),
            charge_bytes,
            referenced: false,
        };
        let i = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        if let Some(s) = self.slots.get_mut(i) {
            *s = Some(slot);
            self.map.insert(key, i);
        }
        block
    }

    /// Runs the CLOCK hand until the shard fits its budget (counting a block about to go in).
    fn evict_to_budget(&mut self) {
        // Two sweeps clear every reference bit and evict; the bound is a guard, not the rule.
        let mut steps = 2 * self.slots.len() + 1;
        while self.used_bytes > self.capacity_bytes && steps > 0 && !self.slots.is_empty() {
            steps -= 1;
            let i = self.hand % self.slots.len();
            self.hand = i + 1;
            let Some(entry) = self.slots.get_mut(i) else {
                continue;
            };
            match entry.as_mut() {
                None => continue,
                Some(s) if s.referenced => {
                    s.referenced = false;
                    continue;
                }
                Some(_) => {}
            }
            if let Some(s) = entry.take() {
                self.map.remove(&s.key);
                self.used_bytes -= s.charge_bytes;
                self.free.push(i);
                steps = 2 * self.slots.len() + 1;
            }
        }
    }
}

/// Decoded blocks of every SSTable of a server, within a byte budget.
pub struct BlockCache {
    shards: Vec<Mutex<Shard>>,
    capacity_bytes: usize,
}

impl std::fmt::Debug for BlockCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockCache")
            .field("capacity_bytes", &self.capacity_bytes)
            .field("used_bytes", &self.used_bytes())
            .field("shards", &self.shards.len())
            .finish()
    }
}

impl BlockCache {
    /// A cache holding at most `capacity_bytes` of decoded blocks (0 caches nothing).
    pub fn new(capacity_bytes: usize) -> BlockCache {
        let n = (capacity_bytes / MIN_SHARD_BYTES).clamp(1, MAX_SHARDS);
        let per_shard = capacity_bytes / n;
        BlockCache {
            shards: (0..n).map(|_| Mutex::new(Shard::new(per_shard))).collect(),
            capacity_bytes,
        }
    }

    fn shard(&self, key: &BlockKey) -> Option<&Mutex<Shard>> {
        let n = self.shards.len() as u64;
        self.shards
            .get(((u128::from(key.mix()) * u128::from(n)) >> 64) as usize)
    }

    /// The cached block, counting a hit or a miss.
    pub(crate) fn get(&self, key: &BlockKey) -> Option<Arc<Block>> {
        self.shard(key)?.lock().get(key)
    }

    /// Caches `block` (unless it is bigger than a shard's budget) and returns the cached copy.
    pub(crate) fn insert(&self, key: BlockKey, block: Arc<Block>) -> Arc<Block> {
        match self.shard(&key) {
            Some(s) => s.lock().insert(key, block),
            None => block,
        }
    }

    /// The byte budget.
    pub fn capacity_bytes(&self) -> usize {
        self.capacity_bytes
    }

    /// Bytes of blocks held now.
    pub fn used_bytes(&self) -> usize {
        self.shards.iter().map(|s| s.lock().used_bytes).sum()
    }

    /// Number of blocks held now.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map.len()).sum()
    }

    /// Whether no block is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Lookups that found their block.
    pub fn hits(&self) -> u64 {
        self.shards.iter().map(|s| s.lock().hits).sum()
    }

    /// Lookups that did not.
    pub fn misses(&self) -> u64 {
        self.shards.iter().map(|s| s.lock().misses).sum()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::super::block::{self, BlockBuilder};
    use super::*;
    use crate::engine::key::{CellKey, Entry, Value};

    fn block_of(value_len: usize) -> Arc<Block> {
        let mut b = BlockBuilder::default();
        b.add(&Entry {
            key: CellKey {
                row: Bytes::from_static(b"r"),
                family: Bytes::from_static(b"f"),
                qualifier: None,
                timestamp: 1,
                seq: 1,
            },
            value: Value::Put(Bytes::from(vec![0u8; value_len])),
        });
        let mut out = Vec::new();
        b.finish(None, &mut out).unwrap();
        Arc::new(block::decode(FileId(0), 0, Bytes::from(out)).unwrap())
    }

    fn key(offset: u64) -> BlockKey {
        BlockKey {
            file: FileId(7),
            offset,
        }
    }

    #[test]
    fn hits_misses_and_shared_copies() {
        let cache = BlockCache::new(1 << 20);
        assert!(cache.get(&key(0)).is_none());
        let a = cache.insert(key(0), block_of(100));
        let b = cache.insert(key(0), block_of(100));
        assert!(
            Arc::ptr_eq(&a, &b),
            "a racing insert returns the cached copy"
        );
        let c = cache.get(&key(0)).unwrap();
        assert!(Arc::ptr_eq(&a, &c));
        assert!(
            cache
                .get(&BlockKey {
                    file: FileId(8),
                    offset: 0
                })
                .is_none()
        );
        assert_eq!((cache.hits(), cache.misses()), (1, 2));
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.used_bytes(), a.charge_bytes());
    }

    #[test]
    fn stays_within_budget_and_keeps_referenced_blocks() {
        let one = block_of(1000).charge_bytes();
        let cache = BlockCache::new(10 * one);
        assert_eq!(cache.shards.len(), 1);
        cache.insert(key(0), block_of(1000));
        for i in 1..100 {
            assert!(
                cache.get(&key(0)).is_some(),
                "a hot block survives at step {i}"
            );
            cache.insert(key(i * 4096), block_of(1000));
            assert!(cache.used_bytes() <= cache.capacity_bytes());
        }
        assert_eq!(cache.len(), 10);
    }

    #[test]
    fn zero_capacity_and_oversized_blocks_are_not_kept() {
        let cache = BlockCache::new(0);
        let b = cache.insert(key(0), block_of(10));
        assert_eq!(b.len(), 1);
        assert!(cache.is_empty());
        let cache = BlockCache::new(1000);
        cache.insert(key(0), block_of(5000));
        assert!(cache.is_empty());
    }

    #[test]
    fn many_shards_for_large_budgets_and_concurrent_use() {
        let cache = Arc::new(BlockCache::new(64 << 20));
        assert_eq!(cache.shards.len(), MAX_SHARDS);
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let cache = cache.clone();
                std::thread::spawn(move || {
                    for i in 0..200u64 {
                        let k = key((i % 50) * 4096 + t);
                        if cache.get(&k).is_none() {
                            cache.insert(k, block_of(64));
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(cache.len(), 200);
        assert_eq!(cache.hits() + cache.misses(), 800);
    }
}
