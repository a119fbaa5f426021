//! What a workload needs of a key-value store, so the same workload code drives Tabula's
//! engine and fjall: put, point get, and a forward scan.

/// A store under test. Shared by reference across writer threads.
pub(super) trait Store: Sync {
    /// Writes `value` under `key`; returns once the store's durability setting is met.
    fn put(&self, key: &[u8], value: &[u8]) -> anyhow::Result<()>;

    /// Reads `key`'s value; returns whether it was found.
    fn get(&self, key: &[u8]) -> anyhow::Result<bool>;

    /// Reads rows in key order from `start` (the first row if `None`), at most `limit` of them
    /// (all if `None`), materialising each row's key and value; returns how many it read.
    fn scan(&self, start: Option<&[u8]>, limit: Option<usize>) -> anyhow::Result<u64>;
}
