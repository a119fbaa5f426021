//! `MetaTable`: reading and writing METADATA through the tablet servers' data path.
//!
//! Three levels (DESIGN.md section 5): `/tabula/root` names the root tablet (table 0), whose
//! rows describe METADATA's tablets (table 1), whose rows describe user tablets. A row is keyed
//! by `meta::row_key(table, end_row)` and holds one cell `m:tablet`, an encoded
//! `TabletRecord`. The tablet holding `row` of `table` is described by the first row after
//! `meta::lookup_key(table, row)`; that row may sit in a later METADATA tablet than the one
//! holding the lookup key itself (METADATA splits at arbitrary keys and rows get deleted), so
//! every read walks forward across METADATA tablets until it finds a row or passes the table's
//! last possible key. `locate_before_many` (for reversed scans) finds the tablet holding the
//! rows just before a row the same way, from `meta::row_key(table, row)` inclusive.
//!
//! Nothing is cached: every call starts from `/tabula/root` (the master wants fresh answers;
//! the client issue adds a location cache on top).
//!
//! Retries: a step that fails with a retryable code (`WrongTablet`, `Unavailable`, transport
//! errors, a timed-out attempt) resolves its locations again and is retried with backoff
//! (`backoff_min` doubling to `backoff_max`) until `deadline`; any other answer is final.
//! Compare-and-set is not idempotent as such: if an attempt failed after it was sent (the
//! outcome is unknown) and a later attempt's predicate then fails, the record is read back
//! and the write counts as done if the row holds exactly what was written (or, for a delete,
//! is gone). Giving up after such an attempt says "outcome unknown".

use std::future::Future;
use std::ops::Bound;
use std::time::Duration;

use bytes::Bytes;
use tabula_common::{Code, Error, TableId, meta};
use tabula_lockservice::client::LockClient;
use tabula_proto::google::bigtable::v2 as bt;
use tabula_proto::tabula::tablet::v1 as tpb;
use tokio::time::Instant;

use super::record::{TabletRecord, TabletState};
use super::root::{ROOT_PATH, read_root};
use crate::channels::Channels;
use crate::row::Row;
use crate::scan::decode_rows;

/// Timeouts and retry budget of `MetaTable` calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaOptions {
    /// How long one step (a lookup, a page of a scan, a write) keeps retrying.
    pub deadline: Duration,
    /// Longest wait for one attempt of one RPC.
    pub rpc_timeout: Duration,
    /// First pause after a failed attempt.
    pub backoff_min: Duration,
    /// Longest pause between attempts.
    pub backoff_max: Duration,
    /// Most METADATA rows asked for in one `ReadRows`.
    pub page_rows: usize,
}

impl Default for MetaOptions {
    fn default() -> Self {
        MetaOptions {
            deadline: Duration::from_secs(10),
            rpc_timeout: Duration::from_secs(5),
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_millis(500),
            page_rows: 1000,
        }
    }
}

/// METADATA access: locate tablets, scan a table's tablets, compare-and-set records.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct MetaTable {
    lock: LockClient,
    channels: Channels,
    options: MetaOptions,
}

impl MetaTable {
    /// METADATA access through the lock cell `lock` and the tablet servers reached through
    /// `channels`, with default options.
    pub fn new(lock: LockClient, channels: Channels) -> MetaTable {
        MetaTable::with_options(lock, channels, MetaOptions::default())
    }

    /// As `new`, with `options`.
    pub fn with_options(lock: LockClient, channels: Channels, options: MetaOptions) -> MetaTable {
        MetaTable {
            lock,
            channels,
            options,
        }
    }

    /// The lock-service client.
    pub fn lock(&self) -> &LockClient {
        &self.lock
    }

    /// The channel cache.
    pub fn channels(&self) -> &Channels {
        &self.channels
    }

    /// The root tablet's record, from `/tabula/root`. `NotFound` if the cluster has no root
    /// yet.
    pub async fn root(&self) -> Result<TabletRecord, Error> {
        match read_root(&self.lock).await? {
            Some((root, _generation)) => Ok(root),
            None => Err(Error::new(
                Code::NotFound,
                format!("the cluster has no root tablet yet ({ROOT_PATH} does not exist)"),
            )),
        }
    }

    /// The record of the tablet of `table` that holds `row`: the root record for table 0, a
    /// METADATA tablet's record for table 1. `NotFound` if METADATA has none.
    pub async fn locate(&self, table: TableId, row: &[u8]) -> Result<TabletRecord, Error> {
        if table == TableId::ROOT {
            return self
                .retry("read the root tablet's record", || self.root())
                .await;
        }
        let from = Bound::Excluded(meta::lookup_key(table, row));
        let found = self.walk(table, from, 1).await?;
        found.into_iter().next().ok_or_else(|| {
            Error::new(
                Code::NotFound,
                format!(
                    "METADATA has no tablet of table {} holding row {:?}",
                    table.0,
                    row.escape_ascii().to_string()
                ),
            )
        })
    }

    /// Up to `n` records of `table` in row order, beginning with the tablet holding `row`
    /// (the neighbours after it are the prefetch a location cache keeps). Empty if METADATA
    /// has none.
    pub async fn locate_many(
        &self,
        table: TableId,
        row: &[u8],
        n: usize,
    ) -> Result<Vec<TabletRecord>, Error> {
        if table == TableId::ROOT {
            return Ok(vec![self.locate(table, row).await?]);
        }
        let from = Bound::Excluded(meta::lookup_key(table, row));
        self.walk(table, from, n.max(1)).await
    }

    /// The record of the tablet of `table` holding the rows just before `row` (`None`: the
    /// table's end) — the tablet with `start_row < row <= end_row`, the first METADATA row at
    /// or after `meta::row_key(table, row)` — followed by up to `n - 1` records of the tablets
    /// before it, nearest first (a prefetch for reversed scans: only those in the same
    /// METADATA tablet, and none if reading them fails). Empty if METADATA has none. The
    /// caller checks `start_row < row`: a hole in METADATA answers a later tablet.
    pub async fn locate_before_many(
        &self,
        table: TableId,
        row: Option<&[u8]>,
        n: usize,
    ) -> Result<Vec<TabletRecord>, Error> {
        if table == TableId::ROOT {
            return Ok(vec![self.locate(table, b"").await?]);
        }
        let from = Bound::Included(meta::row_key(table, row));
        let Some(first) = self.walk(table, from, 1).await?.into_iter().next() else {
            return Ok(Vec::new());
        };
        let key = first.meta_key();
        let mut out = vec![first];
        if n > 1 {
            let before = async {
                let root = self.root().await?;
                let holder = self.holder(&root, table, &key).await?;
                self.read_before(&holder, table, &key, n - 1).await
            };
            match before.await {
                Ok(records) => out.extend(records),
                Err(e) => tracing::debug!(error = %e, "no METADATA prefetch before a tablet"),
            }
        }
        Ok(out)
    }

    /// Every record of `table`, in row order (an empty list for a table METADATA does not
    /// know). For table 0 the root record alone.
    pub async fn scan_table(&self, table: TableId) -> Result<Vec<TabletRecord>, Error> {
        if table == TableId::ROOT {
            return Ok(vec![self.locate(table, b"").await?]);
        }
        self.walk(table, Bound::Included(meta::table_start(table)), usize::MAX)
            .await
    }

    /// The record stored at `new`'s key becomes `new`, if it is exactly `expected` now
    /// (`Some`), or if there is none (`None`: insert only if absent). Answers whether the
    /// write happened; a failed condition is `Ok(false)`, not an error.
    /// `InvalidArgument` if `expected` and `new` have different keys (an end row changed:
    /// write the new row, then delete the old), or if `new` is the root tablet's record
    /// (that lives in `/tabula/root`: see `write_root`).
    pub async fn compare_and_set(
        &self,
        expected: Option<&TabletRecord>,
        new: &TabletRecord,
    ) -> Result<bool, Error> {
        new.validate()?;
        let key = new.meta_key();
        if let Some(e) = expected
            && e.meta_key() != key
        {
            return Err(Error::invalid_argument(format!(
                "compare_and_set: expected record (table {}, tablet {}) and new record \
                 (table {}, tablet {}) have different METADATA keys; write the new row, then \
                 delete the old one",
                e.table.0, e.tablet, new.table.0, new.tablet
            )));
        }
        let write = vec![delete_column(), set_column(new.encode())];
        let change = match expected {
            Some(e) => Change {
                predicate: exact_value(e.encode()),
                true_mutations: write,
                false_mutations: Vec::new(),
                applied_when_matched: true,
            },
            None => Change {
                predicate: record_column(),
                true_mutations: Vec::new(),
                false_mutations: write,
                applied_when_matched: false,
            },
        };
        self.check_and_mutate(new.table, key, change, |current| current == Some(new))
            .await
    }

    /// Deletes the row of `expected` if it holds exactly `expected` now; answers whether it
    /// did.
    pub async fn compare_and_delete(&self, expected: &TabletRecord) -> Result<bool, Error> {
        let change = Change {
            predicate: exact_value(expected.encode()),
            true_mutations: vec![bt::Mutation {
                mutation: Some(bt::mutation::Mutation::DeleteFromRow(
                    bt::mutation::DeleteFromRow {},
                )),
            }],
            false_mutations: Vec::new(),
            applied_when_matched: true,
        };
        self.check_and_mutate(expected.table, expected.meta_key(), change, |current| {
            current.is_none()
        })
        .await
    }

    /// Up to `want` records of `table` from `from` on, walking across METADATA tablets.
    async fn walk(
        &self,
        table: TableId,
        mut from: Bound<Bytes>,
        want: usize,
    ) -> Result<Vec<TabletRecord>, Error> {
        let table_end = meta::table_end(table);
        let mut out = Vec::new();
        loop {
            let limit = (want - out.len()).min(self.options.page_rows.max(1));
            let (holder, page) = {
                let from = &from;
                self.retry("read METADATA", || async move {
                    let root = self.root().await?;
                    let holder = self.holder(&root, table, bound_key(from)).await?;
                    let page = self.read(&holder, table, from.clone(), limit).await?;
                    Ok((holder, page))
                })
                .await?
            };
            let full = page.len() >= limit;
            let last = page.last().map(TabletRecord::meta_key);
            out.extend(page);
            if out.len() >= want {
                return Ok(out);
            }
            match (full, last, holder.end_row) {
                (true, Some(last), _) => from = Bound::Excluded(last),
                (_, _, Some(end)) if end < table_end => from = Bound::Included(end),
                _ => return Ok(out),
            }
        }
    }

    /// The tablet holding METADATA key `key` of a record of `table`: the root tablet for
    /// METADATA's records, else the METADATA tablet whose range holds `key`.
    async fn holder(
        &self,
        root: &TabletRecord,
        table: TableId,
        key: &[u8],
    ) -> Result<TabletRecord, Error> {
        match meta::meta_table_of(table) {
            None => Err(Error::invalid_argument(
                "the root tablet has no METADATA row: its record is in /tabula/root",
            )),
            Some(TableId::ROOT) => Ok(root.clone()),
            Some(_) => {
                let from = Bound::Excluded(meta::lookup_key(TableId::METADATA, key));
                let found = self.read(root, TableId::METADATA, from, 1).await?;
                found.into_iter().next().ok_or_else(|| {
                    Error::new(
                        Code::NotFound,
                        format!(
                            "the root tablet has no METADATA tablet holding key {:?}",
                            key.escape_ascii().to_string()
                        ),
                    )
                })
            }
        }
    }

    /// Up to `limit` records of `table` stored in `holder`, from `from` to the end of the
    /// table or of `holder`, whichever comes first.
    async fn read(
        &self,
        holder: &TabletRecord,
        table: TableId,
        from: Bound<Bytes>,
        limit: usize,
    ) -> Result<Vec<TabletRecord>, Error> {
        let table_end = meta::table_end(table);
        let end = match &holder.end_row {
            Some(e) if *e < table_end => e.clone(),
            _ => table_end,
        };
        let start_key = match from {
            Bound::Included(k) if k >= end => return Ok(Vec::new()),
            Bound::Excluded(k) if k >= end => return Ok(Vec::new()),
            Bound::Included(k) => Some(bt::row_range::StartKey::StartKeyClosed(k.to_vec())),
            Bound::Excluded(k) => Some(bt::row_range::StartKey::StartKeyOpen(k.to_vec())),
            Bound::Unbounded => None,
        };
        let range = bt::RowRange {
            start_key,
            end_key: Some(bt::row_range::EndKey::EndKeyOpen(end.to_vec())),
        };
        self.fetch(holder, table, range, limit, false).await
    }

    /// Up to `limit` records of `table` stored in `holder` whose keys are before `key`, in
    /// descending order, down to the start of the table or of `holder`.
    async fn read_before(
        &self,
        holder: &TabletRecord,
        table: TableId,
        key: &Bytes,
        limit: usize,
    ) -> Result<Vec<TabletRecord>, Error> {
        let table_start = meta::table_start(table);
        let start = if holder.start_row > table_start {
            holder.start_row.clone()
        } else {
            table_start
        };
        if start >= *key {
            return Ok(Vec::new());
        }
        let range = bt::RowRange {
            start_key: Some(bt::row_range::StartKey::StartKeyClosed(start.to_vec())),
            end_key: Some(bt::row_range::EndKey::EndKeyOpen(key.to_vec())),
        };
        self.fetch(holder, table, range, limit, true).await
    }

    /// Up to `limit` records of `table` in `range` of `holder`, in key order or reversed.
    async fn fetch(
        &self,
        holder: &TabletRecord,
        table: TableId,
        range: bt::RowRange,
        limit: usize,
        reversed: bool,
    ) -> Result<Vec<TabletRecord>, Error> {
        let addr = serving_addr(holder)?;
        let request = tpb::ReadRowsRequest {
            tablet: Some(holder.tablet_ref()),
            rows: Some(bt::RowSet {
                row_keys: Vec::new(),
                row_ranges: vec![range],
            }),
            filter: Some(chain(vec![
                family_filter(),
                qualifier_filter(),
                filter(bt::row_filter::Filter::CellsPerColumnLimitFilter(1)),
            ])),
            rows_limit: i64::try_from(limit).unwrap_or(i64::MAX),
            reversed,
        };
        let mut client = self.channels.data(addr)?;
        let messages = self
            .timed(async move {
                let mut stream = client.read_rows(request).await?.into_inner();
                let mut messages = Vec::new();
                while let Some(message) = stream.message().await? {
                    messages.push(message);
                }
                Ok::<_, tonic::Status>(messages)
            })
            .await?;
        let mut rows = Vec::new();
        for message in &messages {
            rows.extend(decode_rows(message)?);
        }
        rows.into_iter().map(|row| record_of(table, row)).collect()
    }

    /// The record stored exactly at `key` (a record of `table`), if any.
    async fn get(&self, table: TableId, key: &Bytes) -> Result<Option<TabletRecord>, Error> {
        self.retry("read a METADATA row", || async move {
            let root = self.root().await?;
            let holder = self.holder(&root, table, key).await?;
            let found = self
                .read(&holder, table, Bound::Included(key.clone()), 1)
                .await?;
            Ok(found.into_iter().find(|r| r.meta_key() == *key))
        })
        .await
    }

    /// One `CheckAndMutateRow` on the row `key` of a record of `table`, retried as the module
    /// doc says; `done` decides, after an ambiguous attempt, whether the current record shows
    /// the change was made.
    async fn check_and_mutate(
        &self,
        table: TableId,
        key: Bytes,
        change: Change,
        done: impl Fn(Option<&TabletRecord>) -> bool,
    ) -> Result<bool, Error> {
        let mut backoff = Backoff::new(&self.options);
        let mut ambiguous = false;
        loop {
            let (result, sent) = match self.check_and_mutate_once(table, &key, &change).await {
                Ok(matched) => (Ok(matched), true),
                Err((e, sent)) => (Err(e), sent),
            };
            match result {
                Ok(matched) => {
                    let applied = matched == change.applied_when_matched;
                    if applied || !ambiguous {
                        return Ok(applied);
                    }
                    let current = self.get(table, &key).await?;
                    return Ok(done(current.as_ref()));
                }
                Err(e) => {
                    // A `WrongTablet` is decided before anything is applied.
                    if sent && !matches!(e.code, Code::WrongTablet { .. }) {
                        ambiguous = true;
                    }
                    if let Err(e) = backoff.wait("write METADATA", e).await {
                        return Err(if ambiguous {
                            Error::new(e.code, format!("outcome unknown: {}", e.message))
                        } else {
                            e
                        });
                    }
                }
            }
        }
    }

    /// One attempt; the error says whether the request was sent.
    async fn check_and_mutate_once(
        &self,
        table: TableId,
        key: &Bytes,
        change: &Change,
    ) -> Result<bool, (Error, bool)> {
        let not_sent = |e: Error| (e, false);
        let root = self.root().await.map_err(not_sent)?;
        let holder = self.holder(&root, table, key).await.map_err(not_sent)?;
        let addr = serving_addr(&holder).map_err(not_sent)?;
        let mut client = self.channels.data(addr).map_err(not_sent)?;
        let request = tpb::CheckAndMutateRowRequest {
            tablet: Some(holder.tablet_ref()),
            row_key: key.to_vec(),
            predicate_filter: Some(change.predicate.clone()),
            true_mutations: change.true_mutations.clone(),
            false_mutations: change.false_mutations.clone(),
        };
        self.timed(async move { client.check_and_mutate_row(request).await })
            .await
            .map(|r| r.into_inner().predicate_matched)
            .map_err(|e| (e, true))
    }

    /// Runs one RPC with the per-attempt timeout; a timeout is `DeadlineExceeded`.
    async fn timed<T>(
        &self,
        rpc: impl Future<Output = Result<T, tonic::Status>>,
    ) -> Result<T, Error> {
        match tokio::time::timeout(self.options.rpc_timeout, rpc).await {
            Ok(result) => result.map_err(from_status),
            Err(_) => Err(Error::new(
                Code::DeadlineExceeded,
                format!("no answer within {:?}", self.options.rpc_timeout),
            )),
        }
    }

    /// Runs `attempt` until it succeeds, fails for good, or the deadline passes.
    async fn retry<T, F, Fut>(&self, what: &str, mut attempt: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let mut backoff = Backoff::new(&self.options);
        loop {
            match attempt().await {
                Ok(v) => return Ok(v),
                Err(e) => backoff.wait(what, e).await?,
            }
        }
    }
}

/// A conditional write: the predicate and both mutation lists, and which answer means the
/// write was applied.
struct Change {
    predicate: bt::RowFilter,
    true_mutations: Vec<bt::Mutation>,
    false_mutations: Vec<bt::Mutation>,
    applied_when_matched: bool,
}

/// Exponential backoff with a deadline.
struct Backoff {
    deadline: Instant,
    delay: Duration,
    max: Duration,
    attempts: u32,
}

impl Backoff {
    fn new(options: &MetaOptions) -> Backoff {
        Backoff {
            deadline: Instant::now() + options.deadline,
            delay: options.backoff_min,
            max: options.backoff_max,
            attempts: 0,
        }
    }

    /// Pauses before the next attempt after `e`, or gives `e` back if it is final or the
    /// deadline has passed.
    async fn wait(&mut self, what: &str, e: Error) -> Result<(), Error> {
        self.attempts += 1;
        let now = Instant::now();
        if !e.code.is_retryable() {
            return Err(e);
        }
        if now >= self.deadline {
            return Err(Error::new(
                e.code,
                format!(
                    "{what}: gave up after {} attempts: {}",
                    self.attempts, e.message
                ),
            ));
        }
        tracing::debug!(what, attempt = self.attempts, error = %e, "retrying");
        tokio::time::sleep(self.delay.min(self.deadline - now)).await;
        self.delay = (self.delay * 2).min(self.max);
        Ok(())
    }
}

/// The public error of a failed call. A status with no `tabula-code` and gRPC code `Unknown`
/// did not come from a Tabula handler (they all answer with a code) but from the transport
/// (a connection reset mid-call): `Unavailable`, so it is retried.
pub(crate) fn from_status(status: tonic::Status) -> Error {
    if status.code() == tonic::Code::Unknown && status.metadata().get("tabula-code").is_none() {
        return Error::new(
            Code::Unavailable,
            format!("transport: {}", status.message()),
        );
    }
    Error::from(status)
}

/// Where `holder` is served; `Unavailable` (retried) if nobody serves it now.
fn serving_addr(holder: &TabletRecord) -> Result<&str, Error> {
    let served = matches!(holder.state, TabletState::Assigned | TabletState::Moving);
    if !served || holder.server_addr.is_empty() {
        return Err(Error::new(
            Code::Unavailable,
            format!(
                "tablet {} of table {} is not served ({:?})",
                holder.tablet, holder.table.0, holder.state
            ),
        ));
    }
    Ok(&holder.server_addr)
}

fn bound_key(b: &Bound<Bytes>) -> &[u8] {
    match b {
        Bound::Included(k) | Bound::Excluded(k) => k,
        Bound::Unbounded => &[],
    }
}

/// The record in a METADATA row read through the record filter; `Internal` if the row does
/// not hold a valid record of `table` under its own key.
fn record_of(table: TableId, row: Row) -> Result<TabletRecord, Error> {
    let corrupt = |why: String| {
        Error::internal(format!(
            "METADATA row {:?}: {why}",
            row.key.escape_ascii().to_string()
        ))
    };
    let value = row
        .value(meta::FAMILY, meta::TABLET_QUALIFIER)
        .ok_or_else(|| corrupt("no m:tablet cell".to_owned()))?;
    let record = TabletRecord::decode(value).map_err(|e| corrupt(e.message))?;
    if record.table != table || record.meta_key() != row.key {
        return Err(corrupt(format!(
            "holds tablet {} of table {}, whose key differs",
            record.tablet, record.table.0
        )));
    }
    Ok(record)
}

fn filter(f: bt::row_filter::Filter) -> bt::RowFilter {
    bt::RowFilter { filter: Some(f) }
}

fn chain(filters: Vec<bt::RowFilter>) -> bt::RowFilter {
    filter(bt::row_filter::Filter::Chain(bt::row_filter::Chain {
        filters,
    }))
}

fn family_filter() -> bt::RowFilter {
    filter(bt::row_filter::Filter::FamilyNameRegexFilter(
        meta::FAMILY.to_owned(),
    ))
}

fn qualifier_filter() -> bt::RowFilter {
    filter(bt::row_filter::Filter::ColumnQualifierRegexFilter(
        meta::TABLET_QUALIFIER.to_vec(),
    ))
}

/// Passes the `m:tablet` cell if there is one.
fn record_column() -> bt::RowFilter {
    chain(vec![family_filter(), qualifier_filter()])
}

/// Passes the newest `m:tablet` cell if its value is exactly `value`.
fn exact_value(value: Bytes) -> bt::RowFilter {
    chain(vec![
        family_filter(),
        qualifier_filter(),
        filter(bt::row_filter::Filter::CellsPerColumnLimitFilter(1)),
        filter(bt::row_filter::Filter::ValueRangeFilter(bt::ValueRange {
            start_value: Some(bt::value_range::StartValue::StartValueClosed(
                value.to_vec(),
            )),
            end_value: Some(bt::value_range::EndValue::EndValueClosed(value.to_vec())),
        })),
    ])
}

/// Deletes every version of `m:tablet`.
fn delete_column() -> bt::Mutation {
    bt::Mutation {
        mutation: Some(bt::mutation::Mutation::DeleteFromColumn(
            bt::mutation::DeleteFromColumn {
                family_name: meta::FAMILY.to_owned(),
                column_qualifier: meta::TABLET_QUALIFIER.to_vec(),
                time_range: None,
            },
        )),
    }
}

/// Sets `m:tablet` to `value` at the server's time.
fn set_column(value: Bytes) -> bt::Mutation {
    bt::Mutation {
        mutation: Some(bt::mutation::Mutation::SetCell(bt::mutation::SetCell {
            family_name: meta::FAMILY.to_owned(),
            column_qualifier: meta::TABLET_QUALIFIER.to_vec(),
            timestamp_micros: -1,
            value: value.to_vec(),
        })),
    }
}

#[cfg(test)]
mod tests {
    use tabula_common::{Epoch, ServerId, TabletId};

    use super::*;

    fn record(table: u64, end: Option<&'static [u8]>) -> TabletRecord {
        TabletRecord {
            table: TableId(table),
            tablet: TabletId(5),
            start_row: Bytes::new(),
            end_row: end.map(Bytes::from_static),
            epoch: Epoch(1),
            state: TabletState::Assigned,
            server: Some(ServerId("ts".into())),
            server_addr: "127.0.0.1:1".into(),
            master_epoch: Epoch(1),
            manifest_path: String::new(),
            split_parent: None,
            split_sibling: None,
            created: true,
        }
    }

    fn row(key: Bytes, family: &str, qualifier: &[u8], value: Bytes) -> Row {
        Row {
            key,
            cells: vec![crate::row::Cell {
                family: family.to_owned(),
                qualifier: Bytes::copy_from_slice(qualifier),
                timestamp_micros: 1,
                value,
                labels: Vec::new(),
            }],
        }
    }

    #[test]
    fn rows_decode_only_under_their_own_key() {
        let r = record(2, Some(b"k"));
        let good = row(r.meta_key(), "m", b"tablet", r.encode());
        assert_eq!(record_of(TableId(2), good.clone()).unwrap(), r);
        assert_eq!(
            record_of(TableId(3), good).unwrap_err().code,
            Code::Internal
        );
        let moved = row(meta::row_key(TableId(2), None), "m", b"tablet", r.encode());
        assert_eq!(
            record_of(TableId(2), moved).unwrap_err().code,
            Code::Internal
        );
        let other = row(r.meta_key(), "x", b"tablet", r.encode());
        assert_eq!(
            record_of(TableId(2), other).unwrap_err().code,
            Code::Internal
        );
        let garbage = row(r.meta_key(), "m", b"tablet", Bytes::from_static(b"\xff"));
        assert_eq!(
            record_of(TableId(2), garbage).unwrap_err().code,
            Code::Internal
        );
    }

    #[test]
    fn transport_failures_are_unavailable_and_handler_errors_keep_their_code() {
        let reset = tonic::Status::unknown("connection reset");
        assert_eq!(from_status(reset).code, Code::Unavailable);
        let wrong =
            tonic::Status::from(Error::new(Code::WrongTablet { hint: "h".into() }, "moved"));
        assert!(matches!(from_status(wrong).code, Code::WrongTablet { .. }));
        let internal = tonic::Status::from(Error::internal("bug"));
        assert_eq!(from_status(internal).code, Code::Internal);
    }

    #[test]
    fn only_served_tablets_have_an_address() {
        let r = record(1, None);
        assert_eq!(serving_addr(&r).unwrap(), "127.0.0.1:1");
        let unassigned = TabletRecord {
            state: TabletState::Unassigned,
            ..r.clone()
        };
        assert_eq!(
            serving_addr(&unassigned).unwrap_err().code,
            Code::Unavailable
        );
        let no_addr = TabletRecord {
            server_addr: String::new(),
            ..r
        };
        assert_eq!(serving_addr(&no_addr).unwrap_err().code, Code::Unavailable);
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_to_its_cap_and_stops_at_the_deadline_or_a_final_error() {
        let options = MetaOptions {
            deadline: Duration::from_millis(1000),
            ..MetaOptions::default()
        };
        let mut b = Backoff::new(&options);
        let start = Instant::now();
        let final_error = Error::invalid_argument("no");
        assert_eq!(b.wait("x", final_error.clone()).await, Err(final_error));
        let mut pauses = Vec::new();
        loop {
            let before = Instant::now();
            match b.wait("x", Error::new(Code::Unavailable, "busy")).await {
                Ok(()) => pauses.push(Instant::now() - before),
                Err(e) => {
                    assert_eq!(e.code, Code::Unavailable);
                    assert!(e.message.starts_with("x: gave up after"), "{e}");
                    break;
                }
            }
        }
        let ms = |n| Duration::from_millis(n);
        assert_eq!(
            pauses,
            [ms(10), ms(20), ms(40), ms(80), ms(160), ms(320), ms(370)]
        );
        assert_eq!(Instant::now() - start, ms(1000));
    }

    #[test]
    fn the_exact_value_predicate_pins_family_qualifier_newest_and_value() {
        let f = exact_value(Bytes::from_static(b"v"));
        let Some(bt::row_filter::Filter::Chain(chain)) = f.filter else {
            panic!("a chain")
        };
        assert_eq!(chain.filters.len(), 4);
        assert_eq!(
            chain.filters[3].filter,
            Some(bt::row_filter::Filter::ValueRangeFilter(bt::ValueRange {
                start_value: Some(bt::value_range::StartValue::StartValueClosed(b"v".to_vec())),
                end_value: Some(bt::value_range::EndValue::EndValueClosed(b"v".to_vec())),
            }))
        );
    }
}
