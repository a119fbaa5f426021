//! `TabletService`, the data RPCs clients call: `ReadRows`, `MutateRow`, `MutateRows`,
//! `CheckAndMutateRow`, `ReadModifyWriteRow` and `SampleRowKeys`.
//!
//! Every RPC first asks the [`Gate`] whether this server may serve at all, then routes through
//! the [`Registry`] (a row outside what this server serves at the epoch asked for is
//! `WrongTablet`), then checks the whole request (`convert`, `row_set`, filter compilation)
//! before anything is applied: bad input is refused with nothing written.
//!
//! Single-row transactions: every write of a row runs under the row's lock. `CheckAndMutateRow`,
//! `ReadModifyWriteRow` and adds to aggregate cells (they read the row) hold it exclusively
//! (`Tablet::lock_row_async`), so they read and write with no other write of the row in
//! between; plain mutations (they read nothing) hold it shared (`Tablet::lock_row_shared_async`),
//! so they commit together. The guarded section awaits the commit log's group commit without
//! holding a thread — in a task of its own for the exclusive holders (`with_row_locked`,
//! `Tablet::apply_in_task`), in the RPC's task for a plain mutation (`Tablet::apply_holding`,
//! which moves the rest of the write to a task of its own only if the RPC goes away). Only the
//! reads of a check-and-mutate or read-modify-write go to the blocking pool. After the write, the gate is asked again: a write
//! that was synced after the session stopped being safe is answered `Unavailable` (outcome
//! unknown), never OK (see `gate`). Reads see whole mutations only: the engine reads each
//! range at one snapshot sequence number, and a mutation becomes visible all at once.
//!
//! Errors are `tabula_common::Error`, turned into `tonic::Status` only here at the edge.
//!
//! Reading order: this file, `convert`, `row_set`, `read_rows`, `scan_stream`, `mutate`, `check_and_mutate`,
//! `read_modify_write`, `sample`.

mod check_and_mutate;
mod convert;
mod field;
mod mutate;
mod read_modify_write;
mod read_rows;
mod row_set;
mod sample;
mod scan_stream;

use std::sync::Arc;

use bytes::Bytes;
use tabula_common::{Code, Epoch, Error, TableId, TabletId};
use tabula_proto::tabula::tablet::v1 as api;
use tabula_proto::tabula::tablet::v1::tablet_service_server::{TabletService, TabletServiceServer};
use tonic::{Request, Response, Status};

use crate::engine::sstable::RowRange;

use super::{Gate, Registry, Route, ServedTablet};

/// Limits of the data service.
#[derive(Debug, Clone)]
pub struct DataOptions {
    /// Largest request or response message, in either direction (64 MiB).
    pub max_message_bytes: usize,
    /// Most entries in one `MutateRows` (100,000).
    pub max_batch_entries: usize,
    /// A `ReadRows` response message is sent once its rows reach this many bytes (1 MiB).
    pub read_batch_bytes: usize,
    /// ... or this many rows (100).
    pub read_batch_rows: usize,
}

impl Default for DataOptions {
    fn default() -> Self {
        DataOptions {
            max_message_bytes: 64 * 1024 * 1024,
            max_batch_entries: 100_000,
            read_batch_bytes: 1024 * 1024,
            read_batch_rows: 100,
        }
    }
}

/// The `TabletService` implementation; cheap to clone (everything is shared).
#[derive(Debug, Clone)]
pub struct TabletDataService {
    shared: Arc<Shared>,
}

/// What every RPC needs.
#[derive(Debug)]
struct Shared {
    registry: Arc<Registry>,
    gate: Arc<Gate>,
    options: DataOptions,
}

impl TabletDataService {
    /// A data service over the tablets in `registry`, serving while `gate` allows.
    pub fn new(registry: Arc<Registry>, gate: Arc<Gate>, options: DataOptions) -> Self {
        TabletDataService {
            shared: Arc::new(Shared {
                registry,
                gate,
                options,
            }),
        }
    }

    /// The tonic service, with the message-size limits of the options in both directions.
    pub fn into_server(self) -> TabletServiceServer<TabletDataService> {
        let max = self.shared.options.max_message_bytes;
        TabletServiceServer::new(self)
            .max_decoding_message_size(max)
            .max_encoding_message_size(max)
    }
}

#[tonic::async_trait]
impl TabletService for TabletDataService {
    type ReadRowsStream = read_rows::ReadRowsStream;

    async fn read_rows(
        &self,
        request: Request<api::ReadRowsRequest>,
    ) -> Result<Response<Self::ReadRowsStream>, Status> {
        let stream = read_rows::read_rows(&self.shared, request.into_inner()).await?;
        Ok(Response::new(stream))
    }

    async fn mutate_row(
        &self,
        request: Request<api::MutateRowRequest>,
    ) -> Result<Response<api::MutateRowResponse>, Status> {
        mutate::mutate_row(&self.shared, request.into_inner()).await?;
        Ok(Response::new(api::MutateRowResponse {}))
    }

    async fn mutate_rows(
        &self,
        request: Request<api::MutateRowsRequest>,
    ) -> Result<Response<api::MutateRowsResponse>, Status> {
        let response = mutate::mutate_rows(&self.shared, request.into_inner()).await?;
        Ok(Response::new(response))
    }

    async fn check_and_mutate_row(
        &self,
        request: Request<api::CheckAndMutateRowRequest>,
    ) -> Result<Response<api::CheckAndMutateRowResponse>, Status> {
        let matched =
            check_and_mutate::check_and_mutate_row(&self.shared, request.into_inner()).await?;
        Ok(Response::new(api::CheckAndMutateRowResponse {
            predicate_matched: matched,
        }))
    }

    async fn read_modify_write_row(
        &self,
        request: Request<api::ReadModifyWriteRowRequest>,
    ) -> Result<Response<api::ReadModifyWriteRowResponse>, Status> {
        let row =
            read_modify_write::read_modify_write_row(&self.shared, request.into_inner()).await?;
        Ok(Response::new(api::ReadModifyWriteRowResponse { row }))
    }

    async fn sample_row_keys(
        &self,
        request: Request<api::SampleRowKeysRequest>,
    ) -> Result<Response<api::SampleRowKeysResponse>, Status> {
        let samples = sample::sample_row_keys(&self.shared, request.into_inner()).await?;
        Ok(Response::new(api::SampleRowKeysResponse { samples }))
    }
}

/// The route a request's `TabletRef` names; `InvalidArgument` if it has none.
fn route(tablet: Option<api::TabletRef>) -> Result<Route, Error> {
    let Some(t) = tablet else {
        return Err(Error::invalid_argument(
            "tablet: required (table_id, and optionally tablet_id and tablet_epoch)",
        ));
    };
    Ok(Route {
        table: TableId(t.table_id),
        tablet: (t.tablet_id != 0).then_some(TabletId(t.tablet_id)),
        epoch: (t.tablet_epoch != 0).then_some(Epoch(t.tablet_epoch)),
    })
}

impl Shared {
    /// The tablet `route` names, whole: by id when it names one, else the one tablet serving
    /// the entire table (`WrongTablet` if the table is split).
    fn route_whole_tablet(&self, route: &Route) -> Result<Arc<ServedTablet>, Error> {
        let range = match route.tablet.and_then(|id| self.registry.get(id)) {
            Some(served) => served.tablet.range().clone(),
            None => RowRange::all(),
        };
        self.registry.route_range(route, &range)
    }

    /// After a write: `Unavailable` (outcome unknown) unless the server may still serve.
    fn confirm_write(&self) -> Result<(), Error> {
        self.gate.check_serving().map_err(|e| {
            Error::new(
                Code::Unavailable,
                format!(
                    "the outcome of this write is unknown: it may have been applied, but this \
                     server stopped being safe to serve before it could acknowledge it ({})",
                    e.message
                ),
            )
        })
    }
}

/// Runs `work` while holding `row`'s lock in `served`'s tablet exclusively: the section of a
/// single-row transaction that reads, decides and applies (and awaits the commit). It runs in
/// a task of its own, so it finishes — and only then releases the lock — even if the RPC goes
/// away meanwhile: no other locked write of the row can slip in beside a write still in
/// flight. (A plain write holds the lock shared, through `Tablet::apply_holding`.)
async fn with_row_locked<T, W, Fut>(
    served: Arc<ServedTablet>,
    row: Bytes,
    work: W,
) -> Result<T, Error>
where
    T: Send + 'static,
    W: FnOnce(Arc<ServedTablet>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, Error>> + Send + 'static,
{
    let task = tokio::spawn(async move {
        let _guard = served.tablet.lock_row_async(&row).await;
        work(served).await
    });
    task.await
        .map_err(|e| Error::internal(format!("a data-path task failed: {e}")))?
}

/// Runs `f` on the blocking pool.
async fn blocking<T, F>(f: F) -> Result<T, Error>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, Error> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::internal(format!("a data-path task failed: {e}")))?
}
