//! `Table`: the data API of one table. Every call finds its tablet through the client's
//! location cache and names it (table, tablet, epoch) in the request, so a server that does
//! not serve it at that epoch answers `WrongTablet`; the client then drops the cached
//! location, walks METADATA again and retries.
//!
//! Retry rules (DESIGN.md section 7):
//! - `mutate_row` / `mutate_rows` are retried on any retryable code until the deadline
//!   (`mutate_rows` only its failed entries) when repeating them is harmless: every `SetCell`
//!   carries its own timestamp. A `SetCell` at the server's time (-1, the builders' default)
//!   or an aggregate `AddToCell`/`MergeToCell` is not: repeated after an ambiguous failure it
//!   would be written again at a later time, possibly over a write made in between (A, B, A
//!   again — not linearizable, as the checker in tests/src/linearizability shows). Such
//!   mutations are retried only when they cannot have been applied, like the conditional
//!   writes below; otherwise the error says the outcome is unknown.
//! - `check_and_mutate_row` and `read_modify_write_row` are retried only when the request
//!   cannot have been applied: a `WrongTablet` answer, a refused connection, or a failure
//!   before sending. After any other failure the answer is an error whose message says the
//!   outcome is unknown.
//! - `read_rows` resumes after the last row delivered, in either direction (see `scan`);
//!   `read_row` repeats its one call (see `point_read`).

use std::collections::BTreeMap;

use bytes::Bytes;
use tabula_common::{Code, Error, TableId};
use tabula_proto::google::bigtable::v2 as bt;
use tabula_proto::tabula::tablet::v1 as tpb;
use tokio::task::JoinSet;

use crate::builders::{Filter, Mutation, RowSet, Rule};
use crate::client::Client;
use crate::meta::{TabletRecord, from_status};
use crate::retry::{Backoff, entry_error, never_sent, outcome_unknown, relocates};
use crate::row::Row;
use crate::scan::RowStream;

/// One table of the cluster. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Table {
    client: Client,
    name: String,
    id: TableId,
}

/// A sample of `sample_row_keys`: the rows before `row_key` hold about `offset_bytes` bytes.
/// The last sample's key is empty: the end of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleRowKey {
    /// The row key (empty: the end of the table).
    pub row_key: Bytes,
    /// Approximate bytes of the table's rows before it.
    pub offset_bytes: i64,
}

/// Options of one `read_rows` call.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// Which cells of each row come back (`None`: all).
    pub filter: Option<Filter>,
    /// At most this many rows (`None`: no limit).
    pub rows_limit: Option<u64>,
    /// Rows in descending row order (with `rows_limit`: the last rows of the set).
    pub reversed: bool,
}

/// A failure of one attempt, and whether the request may have been applied.
struct Failed {
    error: Error,
    maybe_applied: bool,
}

impl Failed {
    fn before(error: Error) -> Failed {
        Failed {
            error,
            maybe_applied: false,
        }
    }

    fn from_status(status: tonic::Status) -> Failed {
        let sent = !never_sent(&status);
        let error = from_status(status);
        let maybe_applied = sent && !matches!(error.code, Code::WrongTablet { .. });
        Failed {
            error,
            maybe_applied,
        }
    }
}

impl Table {
    pub(crate) fn new(client: Client, name: String, id: TableId) -> Table {
        Table { client, name, id }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its id.
    pub fn id(&self) -> TableId {
        self.id
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// The rows of `rows` in row order, across tablets, through `filter`.
    pub fn read_rows(&self, rows: RowSet, filter: Option<Filter>) -> RowStream {
        self.read_rows_with(
            rows,
            ReadOptions {
                filter,
                rows_limit: None,
                reversed: false,
            },
        )
    }

    /// As `read_rows`, with a row limit and the direction.
    pub fn read_rows_with(&self, rows: RowSet, options: ReadOptions) -> RowStream {
        RowStream::new(self.clone(), rows, options)
    }

    /// Applies `mutations` to `row` atomically.
    pub async fn mutate_row(
        &self,
        row: impl Into<Bytes>,
        mutations: Vec<Mutation>,
    ) -> Result<(), Error> {
        let row: Bytes = row.into();
        // Each attempt sends mutations built from the builders (one copy of each value); the
        // first attempt's are built here, where they say whether repeating them is harmless.
        let build = || mutations.iter().map(Mutation::to_proto).collect::<Vec<_>>();
        let mut first = Some(build());
        if !first.as_deref().is_some_and(repeatable) {
            return self
                .unsafe_to_repeat("mutate a row", &row, |record| {
                    let request = tpb::MutateRowRequest {
                        tablet: Some(record.tablet_ref()),
                        row_key: row.to_vec(),
                        mutations: first.take().unwrap_or_else(build),
                    };
                    let channels = self.client.channels().clone();
                    async move {
                        let mut data = channels.data(&record.server_addr)?;
                        let answer = self.timed_raw(data.mutate_row(request)).await;
                        Ok(answer.map(|_| ()))
                    }
                })
                .await;
        }
        let mut backoff = Backoff::new(self.client.options());
        loop {
            let attempt = async {
                let record = self.client.locate(self.id, &row).await?;
                let mut data = self.client.channels().data(&record.server_addr)?;
                let request = tpb::MutateRowRequest {
                    tablet: Some(record.tablet_ref()),
                    row_key: row.to_vec(),
                    mutations: first.take().unwrap_or_else(build),
                };
                let answer = self.timed(data.mutate_row(request)).await;
                self.after_failure(&record, answer.as_ref().err());
                answer.map(|_| ())
            };
            match attempt.await {
                Ok(()) => return Ok(()),
                Err(e) => backoff.wait("mutate a row", e).await?,
            }
        }
    }

    /// Applies each entry's mutations to its row, each row atomically; one result per entry,
    /// in order. Entries are grouped by tablet and sent in parallel (at most
    /// `max_parallel_requests` requests at once); only failed entries with a retryable code
    /// are retried, and an entry that is not repeatable (a `SetCell` at the server's time)
    /// only when it cannot have been applied — else its result says the outcome is unknown.
    pub async fn mutate_rows(
        &self,
        entries: Vec<(Bytes, Vec<Mutation>)>,
    ) -> Vec<Result<(), Error>> {
        let entries: Vec<tpb::mutate_rows_request::Entry> = entries
            .into_iter()
            .map(|(row, ms)| tpb::mutate_rows_request::Entry {
                row_key: row.to_vec(),
                mutations: ms.iter().map(Mutation::to_proto).collect(),
            })
            .collect();
        let repeat: Vec<bool> = entries.iter().map(|e| repeatable(&e.mutations)).collect();
        let mut results: Vec<Option<Result<(), Error>>> = vec![None; entries.len()];
        let mut pending: Vec<usize> = (0..entries.len()).collect();
        let mut backoff = Backoff::new(self.client.options());
        while !pending.is_empty() {
            let mut last_error = None;
            let mut retry = Vec::new();
            // Group by tablet (keyed by METADATA key, so groups go out in row order).
            let mut groups: BTreeMap<Bytes, (TabletRecord, Vec<usize>)> = BTreeMap::new();
            for i in pending {
                match self.client.locate(self.id, &entries[i].row_key).await {
                    Ok(r) => groups
                        .entry(r.meta_key())
                        .or_insert((r, Vec::new()))
                        .1
                        .push(i),
                    Err(e) if e.code.is_retryable() => {
                        retry.push(i);
                        last_error = Some(e);
                    }
                    Err(e) => results[i] = Some(Err(e)),
                }
            }
            let max_batch = self.client.options().max_batch_entries.max(1);
            let batches = groups.into_values().flat_map(|(record, indexes)| {
                indexes
                    .chunks(max_batch)
                    .map(|c| (record.clone(), c.to_vec()))
                    .collect::<Vec<_>>()
            });
            let limit = self.client.options().max_parallel_requests.max(1);
            let mut tasks = JoinSet::new();
            let mut outcomes = Vec::new();
            for (record, indexes) in batches {
                if tasks.len() >= limit
                    && let Some(done) = tasks.join_next().await
                {
                    outcomes.push(done);
                }
                let batch: Vec<_> = indexes.iter().map(|i| entries[*i].clone()).collect();
                let table = self.clone();
                tasks.spawn(async move {
                    let answer = table.send_batch(&record, batch).await;
                    (record, indexes, answer)
                });
            }
            while let Some(done) = tasks.join_next().await {
                outcomes.push(done);
            }
            for outcome in outcomes {
                let (record, indexes, answer) = match outcome {
                    Ok(o) => o,
                    Err(join) => {
                        // A panicked batch: its entries' outcome is unknown; report, no retry.
                        tracing::error!(error = %join, "a mutate_rows batch panicked");
                        continue;
                    }
                };
                match answer {
                    Ok(per_entry) => {
                        for (k, result) in per_entry.into_iter().enumerate() {
                            let i = indexes[k];
                            match result {
                                Err(e) if e.code.is_retryable() => {
                                    if relocates(&e) {
                                        self.client.invalidate(&record);
                                    }
                                    // The server decides a wrong tablet before applying.
                                    let definite = matches!(e.code, Code::WrongTablet { .. });
                                    if repeat[i] || definite {
                                        retry.push(i);
                                        last_error = Some(e);
                                    } else {
                                        results[i] = Some(Err(outcome_unknown(e)));
                                    }
                                }
                                other => results[i] = Some(other),
                            }
                        }
                    }
                    Err(f) if f.error.code.is_retryable() => {
                        self.client.invalidate(&record);
                        for i in indexes {
                            if repeat[i] || !f.maybe_applied {
                                retry.push(i);
                            } else {
                                results[i] = Some(Err(outcome_unknown(f.error.clone())));
                            }
                        }
                        last_error = Some(f.error);
                    }
                    Err(f) => {
                        for i in indexes {
                            results[i] = Some(Err(f.error.clone()));
                        }
                    }
                }
            }
            pending = retry;
            if let Some(e) = last_error
                && !pending.is_empty()
                && let Err(e) = backoff.wait("mutate rows", e).await
            {
                for i in pending.drain(..) {
                    results[i] = Some(Err(e.clone()));
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::internal("mutate_rows: an entry was lost"))))
            .collect()
    }

    /// One `MutateRows` to `record`'s server; per-entry results in request order, or the
    /// failure of the whole request and whether it may have been applied.
    async fn send_batch(
        &self,
        record: &TabletRecord,
        batch: Vec<tpb::mutate_rows_request::Entry>,
    ) -> Result<Vec<Result<(), Error>>, Failed> {
        let n = batch.len();
        let mut data = self
            .client
            .channels()
            .data(&record.server_addr)
            .map_err(Failed::before)?;
        let request = tpb::MutateRowsRequest {
            tablet: Some(record.tablet_ref()),
            entries: batch,
        };
        let answer = self
            .timed_raw(data.mutate_rows(request))
            .await
            .map_err(Failed::from_status)?;
        let mut out: Vec<Result<(), Error>> = (0..n)
            .map(|_| {
                Err(Error::new(
                    Code::Unavailable,
                    "the server answered no status for this entry",
                ))
            })
            .collect();
        for e in answer.into_inner().entries {
            let Some(slot) = usize::try_from(e.index).ok().and_then(|i| out.get_mut(i)) else {
                continue;
            };
            *slot = if e.code == 0 {
                Ok(())
            } else {
                Err(entry_error(e.code, &e.message, &e.tabula_code))
            };
        }
        Ok(out)
    }

    /// Atomically: reads `row` through `predicate` (`None`: any cell), then applies
    /// `true_mutations` if any cell came out, else `false_mutations`. Answers whether the
    /// predicate matched. Not retried after an ambiguous failure (see the module doc).
    pub async fn check_and_mutate_row(
        &self,
        row: impl Into<Bytes>,
        predicate: Option<Filter>,
        true_mutations: Vec<Mutation>,
        false_mutations: Vec<Mutation>,
    ) -> Result<bool, Error> {
        let row: Bytes = row.into();
        let predicate = predicate.map(Filter::into_proto);
        let true_mutations: Vec<_> = true_mutations.iter().map(Mutation::to_proto).collect();
        let false_mutations: Vec<_> = false_mutations.iter().map(Mutation::to_proto).collect();
        self.unsafe_to_repeat("check and mutate a row", &row, |record| {
            let request = tpb::CheckAndMutateRowRequest {
                tablet: Some(record.tablet_ref()),
                row_key: row.to_vec(),
                predicate_filter: predicate.clone(),
                true_mutations: true_mutations.clone(),
                false_mutations: false_mutations.clone(),
            };
            let channels = self.client.channels().clone();
            async move {
                let mut data = channels.data(&record.server_addr)?;
                let answer = self.timed_raw(data.check_and_mutate_row(request)).await;
                Ok(answer.map(|r| r.into_inner().predicate_matched))
            }
        })
        .await
    }

    /// Atomically applies `rules` (appends, increments) to `row`; answers the new contents
    /// of the changed cells. Not retried after an ambiguous failure (see the module doc).
    pub async fn read_modify_write_row(
        &self,
        row: impl Into<Bytes>,
        rules: Vec<Rule>,
    ) -> Result<Row, Error> {
        let row: Bytes = row.into();
        let rules: Vec<_> = rules.iter().map(Rule::to_proto).collect();
        self.unsafe_to_repeat("read-modify-write a row", &row, |record| {
            let request = tpb::ReadModifyWriteRowRequest {
                tablet: Some(record.tablet_ref()),
                row_key: row.to_vec(),
                rules: rules.clone(),
            };
            let channels = self.client.channels().clone();
            let key = row.clone();
            async move {
                let mut data = channels.data(&record.server_addr)?;
                let answer = self.timed_raw(data.read_modify_write_row(request)).await;
                Ok(answer.map(|r| match r.into_inner().row {
                    Some(row) => Row::from_proto(row),
                    None => Row {
                        key,
                        cells: Vec::new(),
                    },
                }))
            }
        })
        .await
    }

    /// Runs a non-idempotent call on the tablet holding `row`: `send` makes one attempt
    /// (an outer `Err` is a failure before sending); retried only when it cannot have been
    /// applied.
    async fn unsafe_to_repeat<T, F, Fut>(
        &self,
        what: &str,
        row: &[u8],
        mut send: F,
    ) -> Result<T, Error>
    where
        F: FnMut(TabletRecord) -> Fut,
        Fut: Future<Output = Result<Result<T, tonic::Status>, Error>>,
    {
        let mut backoff = Backoff::new(self.client.options());
        loop {
            let failed = match self.client.locate(self.id, row).await {
                Err(e) => Failed::before(e),
                Ok(record) => match send(record.clone()).await {
                    Err(e) => Failed::before(e),
                    Ok(Ok(v)) => return Ok(v),
                    Ok(Err(status)) => {
                        let f = Failed::from_status(status);
                        self.after_failure(&record, Some(&f.error));
                        f
                    }
                },
            };
            if failed.maybe_applied {
                return Err(if failed.error.code.is_retryable() {
                    outcome_unknown(failed.error)
                } else {
                    failed.error
                });
            }
            backoff.wait(what, failed.error).await?;
        }
    }

    /// Row keys that cut the table into pieces of roughly equal size, with the approximate
    /// bytes before each, across all its tablets; the last key is empty (the table's end).
    pub async fn sample_row_keys(&self) -> Result<Vec<SampleRowKey>, Error> {
        let mut backoff = Backoff::new(self.client.options());
        loop {
            match self.sample_once().await {
                Ok(samples) => return Ok(samples),
                Err(e) => backoff.wait("sample row keys", e).await?,
            }
        }
    }

    async fn sample_once(&self) -> Result<Vec<SampleRowKey>, Error> {
        let records = self.client.meta().scan_table(self.id).await?;
        self.client.remember(&records);
        let mut out = Vec::new();
        let mut base = 0i64;
        for record in &records {
            let mut data = self.client.channels().data(&record.server_addr)?;
            let request = tpb::SampleRowKeysRequest {
                tablet: Some(record.tablet_ref()),
            };
            let answer = self.timed(data.sample_row_keys(request)).await;
            self.after_failure(record, answer.as_ref().err());
            let mut last = 0;
            for s in answer?.into_inner().samples {
                last = s.offset_bytes;
                out.push(SampleRowKey {
                    row_key: Bytes::from(s.row_key),
                    offset_bytes: base.saturating_add(s.offset_bytes),
                });
            }
            base = base.saturating_add(last);
        }
        Ok(out)
    }

    /// Drops `record` from the cache if `error` says its location may be stale.
    pub(crate) fn after_failure(&self, record: &TabletRecord, error: Option<&Error>) {
        if let Some(e) = error
            && relocates(e)
        {
            self.client.invalidate(record);
        }
    }

    /// Runs one RPC with the per-attempt timeout.
    pub(crate) async fn timed<T>(
        &self,
        rpc: impl Future<Output = Result<T, tonic::Status>>,
    ) -> Result<T, Error> {
        self.timed_raw(rpc).await.map_err(from_status)
    }

    /// As `timed`, keeping the status (its source says whether it was sent).
    async fn timed_raw<T>(
        &self,
        rpc: impl Future<Output = Result<T, tonic::Status>>,
    ) -> Result<T, tonic::Status> {
        let limit = self.client.options().rpc_timeout;
        match tokio::time::timeout(limit, rpc).await {
            Ok(result) => result,
            Err(_) => Err(tonic::Status::deadline_exceeded(format!(
                "no answer within {limit:?}"
            ))),
        }
    }
}

/// Whether repeating `mutations` after an ambiguous failure is harmless (see the module doc):
/// no `SetCell` at the server's time and no aggregate.
fn repeatable(mutations: &[bt::Mutation]) -> bool {
    use bt::mutation::Mutation as M;
    mutations.iter().all(|m| match &m.mutation {
        Some(M::SetCell(c)) => c.timestamp_micros != -1,
        Some(M::AddToCell(_) | M::MergeToCell(_)) => false,
        _ => true,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn only_mutations_with_their_own_timestamps_are_repeatable() {
        let at_server = Mutation::set_cell("cf", "q", "v");
        let at_time = Mutation::set_cell("cf", "q", "v").at(1_000);
        let delete = Mutation::delete_row();
        let proto = |ms: &[&Mutation]| ms.iter().map(|m| m.to_proto()).collect::<Vec<_>>();
        assert!(repeatable(&proto(&[&at_time, &delete])));
        assert!(repeatable(&[]));
        assert!(!repeatable(&proto(&[&at_time, &at_server])));
        let add = bt::Mutation {
            mutation: Some(bt::mutation::Mutation::AddToCell(
                bt::mutation::AddToCell::default(),
            )),
        };
        assert!(!repeatable(&[add]));
    }
}
