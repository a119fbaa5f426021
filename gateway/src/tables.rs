//! Resolved tables, kept for a short while: a request names its table by name, and resolving
//! a name (`Client::table`: a read of `/tabula/tables/<name>` from the lock service) on every
//! call cost more than the write it preceded. [`Tables`] keeps each resolved `Table` handle
//! for a TTL ([`TTL`] unless `ServeOptions` says otherwise), at most [`CAPACITY`] of them
//! ([`Slots`], the pure core).
//!
//! What a stale handle can do, and why that is safe: a handle holds its table's *id*, and ids
//! are never reused. After the table is deleted, a call on the old handle reaches none of its
//! tablets (they are unloaded and their METADATA rows removed before `DeleteTable` answers), so
//! it fails with `NOT_FOUND` — it never reaches a table created since under the same name, and
//! it never reports success for a table that is gone. While the deletion is under way a call
//! may still land in the old table, as it could without the cache between the lookup and the
//! write. So [`Tables::run`] treats `NOT_FOUND` from a handle that came from the cache as "the
//! name may mean another table now": it drops the entry, resolves the name again and, only if
//! that gives a different id (the table was dropped and created again), runs the call once
//! more on the new table. A `NOT_FOUND` call was not applied (a write is refused whole), so
//! running it again cannot apply it twice. The TTL only bounds how long a table that is being
//! deleted keeps being tried, and how long memory holds names nobody asks for.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tabula_client::{Client, Table};
use tabula_common::{Code, Error};

/// How long a resolved table is used without asking the lock service again, by default.
pub(crate) const TTL: Duration = Duration::from_secs(5);
/// Most tables kept.
pub(crate) const CAPACITY: usize = 1024;

/// A bounded map whose entries expire: the pure core of [`Tables`], `now` passed in.
#[derive(Debug)]
pub(crate) struct Slots<K, V> {
    entries: HashMap<K, (V, Instant)>,
    ttl: Duration,
    capacity: usize,
}

impl<K: Eq + Hash + Clone, V: Clone> Slots<K, V> {
    /// An empty map keeping at most `capacity` entries for `ttl` each.
    pub(crate) fn new(ttl: Duration, capacity: usize) -> Slots<K, V> {
        Slots {
            entries: HashMap::new(),
            ttl,
            capacity: capacity.max(1),
        }
    }

    /// The value of `key` if it was stored less than the TTL before `now`.
    pub(crate) fn get(&self, key: &K, now: Instant) -> Option<V> {
        let (value, stored) = self.entries.get(key)?;
        (now.saturating_duration_since(*stored) < self.ttl).then(|| value.clone())
    }

    /// Stores `value` under `key` at `now`. When full, expired entries go first, then the
    /// oldest one.
    pub(crate) fn insert(&mut self, key: K, value: V, now: Instant) {
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            let ttl = self.ttl;
            self.entries
                .retain(|_, (_, stored)| now.saturating_duration_since(*stored) < ttl);
            if self.entries.len() >= self.capacity
                && let Some(oldest) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, (_, stored))| *stored)
                    .map(|(k, _)| k.clone())
            {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(key, (value, now));
    }

    /// Removes `key` if `stale` says its value is the stale one (a newer value stored
    /// meanwhile by another call stays).
    pub(crate) fn remove_if(&mut self, key: &K, stale: impl FnOnce(&V) -> bool) {
        if self.entries.get(key).is_some_and(|(v, _)| stale(v)) {
            self.entries.remove(key);
        }
    }

    /// How many entries are held (expired ones included until they are pushed out).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// A table handle and whether it came from the cache (then it may be stale).
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub(crate) table: Table,
    pub(crate) cached: bool,
}

/// The gateway's resolved tables.
#[derive(Debug)]
pub(crate) struct Tables {
    client: Client,
    slots: Mutex<Slots<String, Table>>,
}

impl Tables {
    /// Resolved tables of `client`'s cluster, each used for `ttl`.
    pub(crate) fn new(client: Client, ttl: Duration) -> Tables {
        Tables {
            client,
            slots: Mutex::new(Slots::new(ttl, CAPACITY)),
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Slots<String, Table>> {
        // A panic while holding the lock cannot leave the map half-changed in a way that
        // matters (every operation is one HashMap call): keep using it.
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The table `name`: from the cache, else from the lock service (`NOT_FOUND` if there is
    /// none), then kept.
    pub(crate) async fn resolve(&self, name: &str) -> Result<Resolved, Error> {
        let key = name.to_owned();
        if let Some(table) = self.slots().get(&key, Instant::now()) {
            return Ok(Resolved {
                table,
                cached: true,
            });
        }
        let table = self.client.table(name).await?;
        self.slots().insert(key, table.clone(), Instant::now());
        Ok(Resolved {
            table,
            cached: false,
        })
    }

    /// Forgets `table` (if it is still what its name maps to).
    pub(crate) fn forget(&self, table: &Table) {
        let id = table.id();
        self.slots()
            .remove_if(&table.name().to_owned(), |t| t.id() == id);
    }

    /// After `NOT_FOUND` from the handle `used`: forgets it and, if it came from the cache,
    /// answers the table the name means now if that is another one (dropped and created
    /// again). `Err` if the name means no table now; `Ok(None)` if it is the same table.
    pub(crate) async fn successor(&self, used: &Resolved) -> Result<Option<Table>, Error> {
        self.forget(&used.table);
        if !used.cached {
            return Ok(None);
        }
        let fresh = self.resolve(used.table.name()).await?;
        Ok((fresh.table.id() != used.table.id()).then_some(fresh.table))
    }

    /// Runs `op` on the table `name`; on `NOT_FOUND` from a cached handle, once more on the
    /// table the name means now, if that is another one (see the module doc).
    pub(crate) async fn run<T, F, Fut>(&self, name: &str, op: F) -> Result<T, Error>
    where
        F: Fn(Table) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let used = self.resolve(name).await?;
        match op(used.table.clone()).await {
            Err(e) if e.code == Code::NotFound => match self.successor(&used).await? {
                Some(table) => op(table).await,
                None => Err(e),
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_after_the_ttl() {
        let t0 = Instant::now();
        let mut s: Slots<&str, u32> = Slots::new(Duration::from_secs(5), 4);
        s.insert("a", 1, t0);
        assert_eq!(s.get(&"a", t0), Some(1));
        assert_eq!(s.get(&"a", t0 + Duration::from_millis(4999)), Some(1));
        assert_eq!(s.get(&"a", t0 + Duration::from_secs(5)), None);
        assert_eq!(s.get(&"b", t0), None);
        s.insert("a", 2, t0 + Duration::from_secs(6));
        assert_eq!(s.get(&"a", t0 + Duration::from_secs(7)), Some(2));
    }

    #[test]
    fn a_full_map_drops_expired_entries_then_the_oldest() {
        let t0 = Instant::now();
        let sec = Duration::from_secs(1);
        let mut s: Slots<u32, u32> = Slots::new(Duration::from_secs(5), 3);
        s.insert(1, 1, t0);
        s.insert(2, 2, t0 + sec);
        s.insert(3, 3, t0 + 2 * sec);
        // Full, nothing expired: the oldest (1) goes.
        s.insert(4, 4, t0 + 3 * sec);
        assert_eq!(s.len(), 3);
        assert_eq!(s.get(&1, t0 + 3 * sec), None);
        assert_eq!(s.get(&2, t0 + 3 * sec), Some(2));
        // Replacing a key held never evicts another.
        s.insert(2, 20, t0 + 3 * sec);
        assert_eq!(s.len(), 3);
        // Later, 2, 3 and 4 have expired: all of them go, 5 and 6 stay.
        s.insert(5, 5, t0 + 9 * sec);
        assert_eq!(s.len(), 1);
        s.insert(6, 6, t0 + 9 * sec);
        assert_eq!(s.get(&5, t0 + 9 * sec), Some(5));
        assert_eq!(s.get(&6, t0 + 9 * sec), Some(6));
        for k in 10..100 {
            s.insert(k, k, t0 + 10 * sec);
            assert!(s.len() <= 3, "the map outgrew its capacity");
        }
    }

    #[test]
    fn only_the_stale_value_is_removed() {
        let t0 = Instant::now();
        let mut s: Slots<&str, u32> = Slots::new(Duration::from_secs(5), 4);
        s.insert("t", 7, t0);
        // Another call already stored the new table (id 8): forgetting id 7 keeps it.
        s.insert("t", 8, t0);
        s.remove_if(&"t", |v| *v == 7);
        assert_eq!(s.get(&"t", t0), Some(8));
        s.remove_if(&"t", |v| *v == 8);
        assert_eq!(s.get(&"t", t0), None);
    }
}
