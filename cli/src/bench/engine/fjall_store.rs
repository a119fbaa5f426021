//! fjall 3 as a benchmark store: one database with one keyspace, default settings except the
//! block cache, which gets the same byte budget as Tabula's so hot reads compare like for like.
//!
//! Durability: by default every fjall write is flushed to the OS (`PersistMode::Buffer`),
//! like Tabula's commit log with `sync: false`; with `sync_each_write` every write is a
//! one-entry batch committed with `PersistMode::SyncData` (an fdatasync per write).

use std::path::Path;

use anyhow::Context;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::store::Store;

/// A fresh fjall database in its own directory.
pub(super) struct FjallStore {
    // Dropped first; the database persists its journal when dropped.
    keyspace: Keyspace,
    db: Database,
    sync_each_write: bool,
}

impl FjallStore {
    /// Creates a database in `dir` with a block cache of `cache_bytes`.
    pub(super) fn create(
        dir: &Path,
        sync_each_write: bool,
        cache_bytes: u64,
    ) -> anyhow::Result<Self> {
        let db = Database::builder(dir)
            .cache_size(cache_bytes)
            .open()
            .with_context(|| format!("opening fjall in {}", dir.display()))?;
        let keyspace = db
            .keyspace("bench", KeyspaceCreateOptions::default)
            .context("creating the fjall keyspace")?;
        Ok(FjallStore {
            keyspace,
            db,
            sync_each_write,
        })
    }
}

impl Store for FjallStore {
    fn put(&self, key: &[u8], value: &[u8]) -> anyhow::Result<()> {
        if self.sync_each_write {
            let mut batch = self.db.batch().durability(Some(PersistMode::SyncData));
            batch.insert(&self.keyspace, key, value);
            batch.commit()?;
        } else {
            self.keyspace.insert(key, value)?;
        }
        Ok(())
    }

    fn get(&self, key: &[u8]) -> anyhow::Result<bool> {
        Ok(self.keyspace.get(key)?.is_some())
    }

    fn scan(&self, start: Option<&[u8]>, limit: Option<usize>) -> anyhow::Result<u64> {
        let iter = match start {
            Some(s) => self.keyspace.range::<&[u8], _>(s..),
            None => self.keyspace.iter(),
        };
        let mut rows = 0u64;
        for guard in iter.take(limit.unwrap_or(usize::MAX)) {
            let (_key, _value) = guard.into_inner()?;
            rows += 1;
        }
        Ok(rows)
    }
}
