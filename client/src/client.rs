//! `Client`: the entry point. It holds the lock-service client, the channel cache, METADATA
//! access and the `LocationCache`, and hands out `Table`s and the `Admin`.
//!
//! Locating a row: the cache answers if it can; on a miss the client reads
//! `prefetch_tablets` consecutive METADATA records starting with the tablet holding the row
//! (root -> METADATA -> user tablet: at most three round trips cold) and caches them all.
//! A reversed scan locates the tablet holding the rows just *before* a row instead, and
//! prefetches the tablets before it. The cache's mutex is never held across an `.await`.

use std::sync::Arc;

use parking_lot::Mutex;
use prost::Message;
use tabula_common::{Code, Error, TableId};
use tabula_lockservice::client::LockClient;
use tabula_proto::tabula::master::v1 as mpb;

use crate::admin::Admin;
use crate::channels::Channels;
use crate::location::{LocationCache, holds_before};
use crate::meta::{MetaTable, TabletRecord, TabletState};
use crate::retry::ClientOptions;
use crate::table::Table;

/// Where the lock service keeps the table catalog: `/tabula/tables/<name>` holds an encoded
/// `tabula.master.v1.TableRecord`.
pub const TABLES_DIR: &str = "/tabula/tables";

/// A connection to a Tabula cluster. Cheap to clone; clones share the caches.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    lock: LockClient,
    channels: Channels,
    meta: MetaTable,
    cache: Mutex<LocationCache>,
    options: ClientOptions,
}

impl Client {
    /// A client of the cluster whose lock cell is at `lock_addrs`, with default options.
    /// Connects lazily: nothing is dialled before the first call.
    pub async fn connect(lock_addrs: &[String]) -> Result<Client, Error> {
        Client::connect_with(lock_addrs, ClientOptions::default()).await
    }

    /// As `connect`, with `options`.
    pub async fn connect_with(
        lock_addrs: &[String],
        options: ClientOptions,
    ) -> Result<Client, Error> {
        let lock = LockClient::new(lock_addrs, Default::default())?;
        let channels = Channels::default();
        let meta = MetaTable::new(lock.clone(), channels.clone());
        Ok(Client {
            inner: Arc::new(Inner {
                lock,
                channels,
                meta,
                cache: Mutex::new(LocationCache::new(options.max_cached_tablets)),
                options,
            }),
        })
    }

    /// The table `name`, its id resolved through the lock service's catalog. `NotFound` if
    /// there is no such table (or it is being deleted).
    pub async fn table(&self, name: &str) -> Result<Table, Error> {
        let info = self.inner.lock.get(&format!("{TABLES_DIR}/{name}")).await?;
        let record = mpb::TableRecord::decode(info.contents.as_slice()).map_err(|e| {
            Error::internal(format!("table record of {name:?} is undecodable: {e}"))
        })?;
        if record.state == mpb::TableState::Deleting as i32 {
            return Err(Error::new(
                Code::NotFound,
                format!("table {name:?} is being deleted"),
            ));
        }
        Ok(Table::new(
            self.clone(),
            name.to_owned(),
            TableId(record.table_id),
        ))
    }

    /// The admin API (the active master's `MasterService`).
    pub fn admin(&self) -> Admin {
        Admin::new(self.clone())
    }

    /// The lock-service client.
    pub fn lock(&self) -> &LockClient {
        &self.inner.lock
    }

    /// The channel cache.
    pub fn channels(&self) -> &Channels {
        &self.inner.channels
    }

    /// METADATA access (uncached).
    pub fn meta(&self) -> &MetaTable {
        &self.inner.meta
    }

    /// The options.
    pub fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    /// How many tablet locations are cached.
    pub fn cached_locations(&self) -> usize {
        self.inner.cache.lock().len()
    }

    /// The record of the served tablet of `table` holding `row`: from the cache, else from
    /// METADATA (with prefetch). `Unavailable` (retryable) if METADATA says nobody serves it.
    pub(crate) async fn locate(&self, table: TableId, row: &[u8]) -> Result<TabletRecord, Error> {
        if let Some(r) = self.inner.cache.lock().lookup(table, row) {
            return Ok(r.clone());
        }
        let records = self
            .inner
            .meta
            .locate_many(table, row, self.inner.options.prefetch_tablets)
            .await?;
        let holder = records
            .first()
            .filter(|r| r.start_row.as_ref() <= row)
            .cloned()
            .ok_or_else(|| {
                Error::new(
                    Code::NotFound,
                    format!(
                        "METADATA has no tablet of table {} holding row {:?}",
                        table.0,
                        row.escape_ascii().to_string()
                    ),
                )
            })?;
        self.cache_served(records, &holder)?;
        Ok(holder)
    }

    /// The record of the served tablet of `table` holding the rows just before `row` (`None`:
    /// the table's end), for reversed scans: from the cache, else from METADATA (with a
    /// prefetch of the tablets before it). Errors as `locate`.
    pub(crate) async fn locate_before(
        &self,
        table: TableId,
        row: Option<&[u8]>,
    ) -> Result<TabletRecord, Error> {
        if let Some(r) = self.inner.cache.lock().lookup_before(table, row) {
            return Ok(r.clone());
        }
        let records = self
            .inner
            .meta
            .locate_before_many(table, row, self.inner.options.prefetch_tablets)
            .await?;
        let holder = records
            .first()
            .filter(|r| holds_before(r, row))
            .cloned()
            .ok_or_else(|| {
                Error::new(
                    Code::NotFound,
                    format!(
                        "METADATA has no tablet of table {} holding the rows before {}",
                        table.0,
                        row.map_or_else(
                            || "its end".to_owned(),
                            |r| format!("{:?}", r.escape_ascii().to_string())
                        )
                    ),
                )
            })?;
        self.cache_served(records, &holder)?;
        Ok(holder)
    }

    /// Caches the served ones of `records`; `Unavailable` (retryable) if `holder` is not
    /// served now.
    fn cache_served(&self, records: Vec<TabletRecord>, holder: &TabletRecord) -> Result<(), Error> {
        {
            let mut cache = self.inner.cache.lock();
            for r in records.into_iter().filter(served) {
                cache.insert(r);
            }
        }
        if !served(holder) {
            return Err(Error::new(
                Code::Unavailable,
                format!(
                    "tablet {} of table {} is not served now ({:?})",
                    holder.tablet, holder.table.0, holder.state
                ),
            ));
        }
        Ok(())
    }

    /// Drops `record` from the location cache (a server refused it or could not be reached).
    pub(crate) fn invalidate(&self, record: &TabletRecord) {
        self.inner.cache.lock().invalidate(record);
    }

    /// Caches records read from METADATA by other means (a scan of the table).
    pub(crate) fn remember(&self, records: &[TabletRecord]) {
        let mut cache = self.inner.cache.lock();
        for r in records.iter().filter(|r| served(r)) {
            cache.insert(r.clone());
        }
    }
}

fn served(r: &TabletRecord) -> bool {
    matches!(r.state, TabletState::Assigned | TabletState::Moving) && !r.server_addr.is_empty()
}
