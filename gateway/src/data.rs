//! `google.bigtable.v2.Bigtable` over the client library: each call checks and converts the
//! request (`convert`), resolves its table (`NOT_FOUND` if there is none) through `tables`
//! (resolved handles kept a few seconds; a stale one is noticed by its `NOT_FOUND` and the
//! call goes to the table the name means now), makes the matching `Table` call and answers in
//! Cloud Bigtable's shapes. Nothing else is kept between calls but the `Client`'s caches.
//!
//! Semantics worth knowing:
//! - `ReadRows` streams rows as the client library delivers them (in order, reversed if
//!   asked, resuming across tablets), packed by `chunks`; a message is sent as soon as the
//!   next row is not ready, so rows are never held back. The answer starts once the first row
//!   (or the end, or an error, or progress) is known, so a missing table is the call's
//!   `NOT_FOUND`. When the scan passes rows the filter removed (`ScanItem::Scanned`, always
//!   beyond the last row sent), a message with no chunks and `last_scanned_row_key` follows
//!   the rows before it, so a Cloud Bigtable client resuming after a failure skips them.
//! - `MutateRows` answers one message with a status per entry; an entry's code is retryable
//!   (`UNAVAILABLE`, `DEADLINE_EXCEEDED`) only if its failure was (the client library has
//!   already retried what it safely could; an outcome it cannot know says so).
//! - `CheckAndMutateRow`: `predicate_matched` is whether the predicate left a cell; without
//!   a predicate, whether the row has any cell.
//! - Change streams and SQL (`ExecuteQuery`) are `UNIMPLEMENTED`.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tabula_client::{Client, Filter, Mutation, ReadOptions, Row, RowStream, ScanItem};
use tabula_common::{Code, Error};
use tabula_proto::google::bigtable::v2 as bt;
use tabula_proto::google::rpc;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::chunks::Packer;
use crate::convert;
use crate::names::{Instance, TableName};
use crate::status::{grpc_code, to_status, unimplemented};
use crate::tables::Tables;

/// A boxed stream of answers.
pub(crate) type Answers<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The data API.
#[derive(Debug, Clone)]
pub struct DataService {
    tables: Arc<Tables>,
}

impl DataService {
    /// The data API over `client`.
    pub fn new(client: Client) -> DataService {
        DataService::with_table_ttl(client, crate::tables::TTL)
    }

    /// The data API over `client`, using a resolved table for `table_ttl`.
    pub fn with_table_ttl(client: Client, table_ttl: Duration) -> DataService {
        DataService {
            tables: Arc::new(Tables::new(client, table_ttl)),
        }
    }
}

/// The table a request names (`table_name`): its name in the cluster.
fn table_of(table_name: &str) -> Result<String, Status> {
    let name = TableName::parse("table_name", table_name).map_err(to_status)?;
    Ok(name.table)
}

/// Whether a `MutateRows` entry failed with `NOT_FOUND`.
fn not_found(result: &Result<(), Error>) -> bool {
    matches!(result, Err(e) if e.code == Code::NotFound)
}

#[tonic::async_trait]
impl bt::bigtable_server::Bigtable for DataService {
    type ReadRowsStream = Answers<bt::ReadRowsResponse>;

    async fn read_rows(
        &self,
        request: Request<bt::ReadRowsRequest>,
    ) -> Result<Response<Self::ReadRowsStream>, Status> {
        let req = request.into_inner();
        let name = table_of(&req.table_name)?;
        let options = ReadOptions {
            filter: req.filter.map(Filter::from_proto),
            rows_limit: convert::rows_limit(req.rows_limit)?,
            reversed: req.reversed,
        };
        let set = convert::row_set(req.rows);
        let (rows, first) = self
            .tables
            .run(&name, |table| {
                let mut rows = table.read_rows_with(set.clone(), options.clone());
                async move {
                    match rows.next_item().await {
                        Some(Err(e)) => Err(e),
                        first => Ok((rows, first)),
                    }
                }
            })
            .await
            .map_err(to_status)?;
        Ok(Response::new(Box::pin(ReadStream::new(rows, first))))
    }

    type SampleRowKeysStream = Answers<bt::SampleRowKeysResponse>;

    async fn sample_row_keys(
        &self,
        request: Request<bt::SampleRowKeysRequest>,
    ) -> Result<Response<Self::SampleRowKeysStream>, Status> {
        let name = table_of(&request.into_inner().table_name)?;
        let samples = self
            .tables
            .run(&name, |table| async move {
                // Every tablet answers at least its end row: no sample means no tablet, a
                // table deleted since its handle was resolved.
                let samples = table.sample_row_keys().await?;
                if samples.is_empty() {
                    return Err(Error::new(
                        Code::NotFound,
                        format!("table {:?} has no tablets: it was deleted", table.name()),
                    ));
                }
                Ok(samples)
            })
            .await
            .map_err(to_status)?;
        let answers: Vec<Result<bt::SampleRowKeysResponse, Status>> = samples
            .into_iter()
            .map(|s| {
                Ok(bt::SampleRowKeysResponse {
                    row_key: s.row_key.to_vec(),
                    offset_bytes: s.offset_bytes,
                })
            })
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(answers))))
    }

    async fn mutate_row(
        &self,
        request: Request<bt::MutateRowRequest>,
    ) -> Result<Response<bt::MutateRowResponse>, Status> {
        let req = request.into_inner();
        let row = convert::row_key("row_key", req.row_key)?;
        let mutations = convert::mutations("mutations", req.mutations, false)?;
        let name = table_of(&req.table_name)?;
        self.tables
            .run(&name, |table| {
                let (row, mutations) = (row.clone(), mutations.clone());
                async move { table.mutate_row(row, mutations).await }
            })
            .await
            .map_err(to_status)?;
        Ok(Response::new(bt::MutateRowResponse {}))
    }

    type MutateRowsStream = Answers<bt::MutateRowsResponse>;

    async fn mutate_rows(
        &self,
        request: Request<bt::MutateRowsRequest>,
    ) -> Result<Response<Self::MutateRowsStream>, Status> {
        let req = request.into_inner();
        if req.entries.is_empty() {
            return Err(to_status(Error::invalid_argument(
                "entries: at least one entry is required",
            )));
        }
        // A malformed entry fails the whole request, as Cloud Bigtable does.
        let mut entries = Vec::with_capacity(req.entries.len());
        for (i, e) in req.entries.into_iter().enumerate() {
            let row = convert::row_key(&format!("entries[{i}].row_key"), e.row_key)?;
            let mutations =
                convert::mutations(&format!("entries[{i}].mutations"), e.mutations, false)?;
            entries.push((row, mutations));
        }
        let name = table_of(&req.table_name)?;
        let results = self.mutate_entries(&name, entries).await?;
        let entries = results
            .into_iter()
            .enumerate()
            .map(|(i, r)| bt::mutate_rows_response::Entry {
                index: i64::try_from(i).unwrap_or(i64::MAX),
                status: Some(entry_status(r)),
            })
            .collect();
        let answer = bt::MutateRowsResponse {
            entries,
            rate_limit_info: None,
        };
        Ok(Response::new(Box::pin(tokio_stream::once(Ok(answer)))))
    }

    async fn check_and_mutate_row(
        &self,
        request: Request<bt::CheckAndMutateRowRequest>,
    ) -> Result<Response<bt::CheckAndMutateRowResponse>, Status> {
        let req = request.into_inner();
        let row = convert::row_key("row_key", req.row_key)?;
        if req.true_mutations.is_empty() && req.false_mutations.is_empty() {
            return Err(to_status(Error::invalid_argument(
                "true_mutations, false_mutations: at least one mutation is required",
            )));
        }
        let on_true = convert::mutations("true_mutations", req.true_mutations, true)?;
        let on_false = convert::mutations("false_mutations", req.false_mutations, true)?;
        let predicate = req.predicate_filter.map(Filter::from_proto);
        let name = table_of(&req.table_name)?;
        let matched = self
            .tables
            .run(&name, |table| {
                let (row, predicate) = (row.clone(), predicate.clone());
                let (on_true, on_false) = (on_true.clone(), on_false.clone());
                async move {
                    table
                        .check_and_mutate_row(row, predicate, on_true, on_false)
                        .await
                }
            })
            .await
            .map_err(to_status)?;
        Ok(Response::new(bt::CheckAndMutateRowResponse {
            predicate_matched: matched,
        }))
    }

    async fn ping_and_warm(
        &self,
        request: Request<bt::PingAndWarmRequest>,
    ) -> Result<Response<bt::PingAndWarmResponse>, Status> {
        Instance::parse("name", &request.into_inner().name).map_err(to_status)?;
        Ok(Response::new(bt::PingAndWarmResponse {}))
    }

    async fn read_modify_write_row(
        &self,
        request: Request<bt::ReadModifyWriteRowRequest>,
    ) -> Result<Response<bt::ReadModifyWriteRowResponse>, Status> {
        let req = request.into_inner();
        let row = convert::row_key("row_key", req.row_key)?;
        let rules = convert::rules(req.rules)?;
        let name = table_of(&req.table_name)?;
        let changed = self
            .tables
            .run(&name, |table| {
                let (row, rules) = (row.clone(), rules.clone());
                async move { table.read_modify_write_row(row, rules).await }
            })
            .await
            .map_err(to_status)?;
        Ok(Response::new(bt::ReadModifyWriteRowResponse {
            row: Some(row_to_proto(changed)),
        }))
    }

    type GenerateInitialChangeStreamPartitionsStream =
        Answers<bt::GenerateInitialChangeStreamPartitionsResponse>;

    async fn generate_initial_change_stream_partitions(
        &self,
        _request: Request<bt::GenerateInitialChangeStreamPartitionsRequest>,
    ) -> Result<Response<Self::GenerateInitialChangeStreamPartitionsStream>, Status> {
        Err(unimplemented(
            "change streams (GenerateInitialChangeStreamPartitions)",
        ))
    }

    type ReadChangeStreamStream = Answers<bt::ReadChangeStreamResponse>;

    async fn read_change_stream(
        &self,
        _request: Request<bt::ReadChangeStreamRequest>,
    ) -> Result<Response<Self::ReadChangeStreamStream>, Status> {
        Err(unimplemented("change streams (ReadChangeStream)"))
    }

    type ExecuteQueryStream = Answers<bt::ExecuteQueryResponse>;

    async fn execute_query(
        &self,
        _request: Request<bt::ExecuteQueryRequest>,
    ) -> Result<Response<Self::ExecuteQueryStream>, Status> {
        Err(unimplemented("SQL (ExecuteQuery)"))
    }
}

impl DataService {
    /// `MutateRows` on the table `name`: one result per entry. Entries refused `NOT_FOUND` by
    /// a cached handle of a table dropped and created again since go once more to the new
    /// table (see `tables`); the others keep their outcome.
    async fn mutate_entries(
        &self,
        name: &str,
        entries: Vec<(Bytes, Vec<Mutation>)>,
    ) -> Result<Vec<Result<(), Error>>, Status> {
        let used = self.tables.resolve(name).await.map_err(to_status)?;
        // Kept only when a stale handle could make them go again.
        let again = used.cached.then(|| entries.clone());
        let mut results = used.table.mutate_rows(entries).await;
        if !results.iter().any(not_found) {
            return Ok(results);
        }
        let successor = self.tables.successor(&used).await;
        let (Ok(Some(table)), Some(again)) = (successor, again) else {
            return Ok(results);
        };
        let (indexes, retry): (Vec<usize>, Vec<_>) = again
            .into_iter()
            .enumerate()
            .filter(|(i, _)| results.get(*i).is_some_and(not_found))
            .unzip();
        for (i, result) in indexes.into_iter().zip(table.mutate_rows(retry).await) {
            results[i] = result;
        }
        Ok(results)
    }
}

/// One `MutateRows` entry's outcome as a `google.rpc.Status`.
fn entry_status(result: Result<(), Error>) -> rpc::Status {
    match result {
        Ok(()) => rpc::Status::default(),
        Err(e) => rpc::Status {
            code: grpc_code(&e.code) as i32,
            message: e.message,
            details: Vec::new(),
        },
    }
}

/// A row in wire form: cells grouped by family, then column, in the order given.
pub(crate) fn row_to_proto(row: Row) -> bt::Row {
    let mut families: Vec<bt::Family> = Vec::new();
    for cell in row.cells {
        if families.last().is_none_or(|f| f.name != cell.family) {
            families.push(bt::Family {
                name: cell.family.clone(),
                columns: Vec::new(),
            });
        }
        let Some(family) = families.last_mut() else {
            continue;
        };
        if family
            .columns
            .last()
            .is_none_or(|c| c.qualifier != cell.qualifier.as_ref())
        {
            family.columns.push(bt::Column {
                qualifier: cell.qualifier.clone(),
                cells: Vec::new(),
            });
        }
        if let Some(column) = family.columns.last_mut() {
            column.cells.push(bt::Cell {
                timestamp_micros: cell.timestamp_micros,
                value: cell.value,
                labels: cell.labels,
            });
        }
    }
    bt::Row {
        key: row.key,
        families,
    }
}

/// `ReadRows`' answer: the client library's rows packed into chunked messages. A message is
/// sent when full, when the next row is not ready yet, before progress (`last_scanned_row_key`
/// alone) and at the end; an error comes after every row before it.
struct ReadStream {
    rows: RowStream,
    packer: Packer,
    ready: VecDeque<bt::ReadRowsResponse>,
    error: Option<Status>,
    done: bool,
}

impl ReadStream {
    /// The answer of `rows`, whose first item (already taken from it) was `first`.
    fn new(rows: RowStream, first: Option<Result<ScanItem, Error>>) -> ReadStream {
        let mut stream = ReadStream {
            rows,
            packer: Packer::default(),
            ready: VecDeque::new(),
            error: None,
            done: false,
        };
        match first {
            Some(Ok(item)) => stream.add(item),
            Some(Err(e)) => {
                stream.done = true;
                stream.error = Some(to_status(e));
            }
            None => stream.done = true,
        }
        stream
    }

    /// Packs a row, or progress after the rows so far.
    fn add(&mut self, item: ScanItem) {
        match item {
            ScanItem::Row(row) => self.packer.push(&row),
            ScanItem::Scanned(key) => self.packer.scanned(&key),
        }
        self.ready.extend(self.packer.take());
    }
}

impl Stream for ReadStream {
    type Item = Result<bt::ReadRowsResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(message) = this.ready.pop_front() {
                return Poll::Ready(Some(Ok(message)));
            }
            if this.done {
                return Poll::Ready(this.error.take().map(Err));
            }
            match this.rows.poll_next_item(cx) {
                Poll::Ready(Some(Ok(item))) => this.add(item),
                Poll::Ready(Some(Err(e))) => {
                    this.done = true;
                    this.error = Some(to_status(e));
                    this.packer.seal();
                    this.ready.extend(this.packer.take());
                }
                Poll::Ready(None) => {
                    this.done = true;
                    this.packer.seal();
                    this.ready.extend(this.packer.take());
                }
                Poll::Pending => {
                    this.packer.seal();
                    this.ready.extend(this.packer.take());
                    if this.ready.is_empty() {
                        return Poll::Pending;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use tabula_client::Cell;

    #[test]
    fn rows_group_cells_by_family_and_column() {
        let c = |f: &str, q: &str, ts| Cell {
            family: f.into(),
            qualifier: Bytes::from(q.to_owned()),
            timestamp_micros: ts,
            value: Bytes::from("v"),
            labels: vec![],
        };
        let row = Row {
            key: Bytes::from("r"),
            cells: vec![
                c("a", "x", 2),
                c("a", "x", 1),
                c("a", "y", 1),
                c("b", "x", 1),
            ],
        };
        let wire = row_to_proto(row.clone());
        assert_eq!(wire.families.len(), 2);
        assert_eq!(wire.families[0].columns.len(), 2);
        assert_eq!(wire.families[0].columns[0].cells.len(), 2);
        assert_eq!(tabula_client::Row::from_proto(wire), row);
    }

    #[test]
    fn entry_statuses_keep_the_code() {
        assert_eq!(entry_status(Ok(())).code, 0);
        let s = entry_status(Err(Error::new(tabula_common::Code::Unavailable, "down")));
        assert_eq!(s.code, tonic::Code::Unavailable as i32);
        assert_eq!(s.message, "down");
    }
}
