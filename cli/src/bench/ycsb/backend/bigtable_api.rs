//! The Cloud Bigtable API path: the workload through `google.bigtable.v2.Bigtable` at an
//! address (`--bigtable-api ADDR`), so Tabula's gateway can be measured against the native
//! path, and any other server speaking this API (Google's emulator, Cloud Bigtable behind a
//! local proxy) with the very same operations:
//! - a read is `ReadRows` of one row key with a `cells_per_column_limit_filter` of 1;
//! - a scan is `ReadRows` of the range `[start, ∞)` with `rows_limit` and the same filter;
//! - a write is `MutateRow` of `SetCell`s at the server's time (`timestamp_micros = -1`, as
//!   the native path's builders default to);
//! - a batch write (the load) is one `MutateRows`, its per-entry statuses checked.
//!
//! The table is looked up, or made, through `google.bigtable.admin.v2.BigtableTableAdmin` at
//! the same address, under the fixed instance [`INSTANCE`] (servers that are not Cloud
//! Bigtable accept any project and instance).
//!
//! Clients are spread over [`CHANNELS`] HTTP/2 connections, as Cloud Bigtable's client
//! libraries keep a pool of channels; the native path shares one connection per tablet
//! server. `ReadRows` answers are counted chunk by chunk ([`Tally`]), not merged into rows:
//! the benchmark needs rows and bytes, and the gateway's own tests check the chunk protocol.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tabula_common::Error;
use tabula_proto::google::bigtable::admin::v2 as admin;
use tabula_proto::google::bigtable::admin::v2::bigtable_table_admin_client::BigtableTableAdminClient;
use tabula_proto::google::bigtable::v2 as bt;
use tabula_proto::google::bigtable::v2::bigtable_client::BigtableClient;
use tabula_proto::google::bigtable::v2::read_rows_response::CellChunk;
use tabula_proto::google::bigtable::v2::read_rows_response::cell_chunk::RowStatus;
use tonic::transport::{Channel, Endpoint};

use super::{Backend, Field};
use crate::bench::ycsb::driver::Moved;
use crate::bench::ycsb::workload::FAMILY;

/// The project and instance every table name of the run lives under.
pub(in crate::bench) const INSTANCE: &str = "projects/bench/instances/bench";
/// HTTP/2 connections the clients are spread over.
const CHANNELS: usize = 4;
/// How long connecting to the server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The `timestamp_micros` that asks the server for its own time.
const SERVER_TIME: i64 = -1;

/// The Cloud Bigtable API path over one table.
#[derive(Clone)]
pub(in crate::bench::ycsb) struct BigtableApi {
    /// The connections, shared by every handle.
    pool: Arc<[BigtableClient<Channel>]>,
    /// The connection this handle uses.
    data: BigtableClient<Channel>,
    admin: BigtableTableAdminClient<Channel>,
    /// `projects/P/instances/I/tables/T`.
    table_name: Arc<str>,
    /// `T`.
    table_id: Arc<str>,
    /// What it was given, for messages.
    addr: Arc<str>,
}

/// Whether [`BigtableApi::open_table`] found the table or made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::bench::ycsb) enum Opened {
    Existing,
    Created,
}

impl BigtableApi {
    /// Connects to the server at `addr` (`HOST:PORT`, as `BIGTABLE_EMULATOR_HOST` names it;
    /// an `http://` prefix is accepted) for table `table_id`.
    pub(in crate::bench::ycsb) async fn connect(
        addr: &str,
        table_id: &str,
    ) -> anyhow::Result<BigtableApi> {
        let host = addr.strip_prefix("http://").unwrap_or(addr);
        let endpoint = Endpoint::from_shared(format!("http://{host}"))
            .with_context(|| format!("--bigtable-api {addr:?} is not HOST:PORT"))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true);
        let mut channels = Vec::with_capacity(CHANNELS);
        for _ in 0..CHANNELS {
            // Each `connect` opens its own HTTP/2 connection.
            let channel = endpoint
                .connect()
                .await
                .with_context(|| format!("connecting to the Cloud Bigtable API at {addr}"))?;
            channels.push(channel);
        }
        let admin = BigtableTableAdminClient::new(channels[0].clone());
        let pool: Vec<_> = channels.into_iter().map(BigtableClient::new).collect();
        let data = pool[0].clone();
        Ok(BigtableApi {
            pool: pool.into(),
            data,
            admin,
            table_name: format!("{INSTANCE}/tables/{table_id}").into(),
            table_id: table_id.into(),
            addr: addr.into(),
        })
    }

    /// Uses the table if it exists (it must have family `FAMILY`), else creates it with that
    /// family (one version kept) split at `split_keys`.
    pub(in crate::bench::ycsb) async fn open_table(
        &self,
        split_keys: &[String],
    ) -> anyhow::Result<Opened> {
        let mut admin = self.admin.clone();
        let got = admin
            .get_table(admin::GetTableRequest {
                name: self.table_name.to_string(),
                view: admin::table::View::SchemaView as i32,
            })
            .await;
        match got {
            Ok(table) => {
                if !table.get_ref().column_families.contains_key(FAMILY) {
                    bail!(
                        "table {} at {} has no column family {FAMILY:?}, which the records need",
                        self.table_name,
                        self.addr
                    );
                }
                return Ok(Opened::Existing);
            }
            Err(status) if status.code() == tonic::Code::NotFound => {}
            Err(status) => {
                return Err(anyhow::Error::from(Error::from(status)))
                    .with_context(|| format!("GetTable {} at {}", self.table_name, self.addr));
            }
        }
        let one_version = admin::GcRule {
            rule: Some(admin::gc_rule::Rule::MaxNumVersions(1)),
        };
        let request = admin::CreateTableRequest {
            parent: INSTANCE.to_owned(),
            table_id: self.table_id.to_string(),
            table: Some(admin::Table {
                column_families: HashMap::from([(
                    FAMILY.to_owned(),
                    admin::ColumnFamily {
                        gc_rule: Some(one_version),
                        ..Default::default()
                    },
                )]),
                ..Default::default()
            }),
            initial_splits: split_keys
                .iter()
                .map(|k| admin::create_table_request::Split {
                    key: k.clone().into_bytes(),
                })
                .collect(),
        };
        match admin.create_table(request).await {
            Ok(_) => Ok(Opened::Created),
            // A retry after a lost answer, or a concurrent run: the table is there.
            Err(status) if status.code() == tonic::Code::AlreadyExists => Ok(Opened::Existing),
            Err(status) => Err(anyhow::Error::from(Error::from(status)))
                .with_context(|| format!("CreateTable {} at {}", self.table_name, self.addr)),
        }
    }

    /// Deletes the table.
    pub(in crate::bench::ycsb) async fn delete_table(&self) -> anyhow::Result<()> {
        self.admin
            .clone()
            .delete_table(admin::DeleteTableRequest {
                name: self.table_name.to_string(),
            })
            .await
            .map_err(|status| anyhow::Error::from(Error::from(status)))
            .with_context(|| format!("DeleteTable {} at {}", self.table_name, self.addr))?;
        Ok(())
    }

    /// `ReadRows` of `rows` with the newest cell of each column, counted.
    async fn read_rows(&self, rows: bt::RowSet, rows_limit: u64) -> Result<Moved, Error> {
        let request = bt::ReadRowsRequest {
            table_name: self.table_name.to_string(),
            rows: Some(rows),
            filter: Some(bt::RowFilter {
                filter: Some(bt::row_filter::Filter::CellsPerColumnLimitFilter(1)),
            }),
            rows_limit: i64::try_from(rows_limit).unwrap_or(i64::MAX),
            ..Default::default()
        };
        let mut stream = self.data.clone().read_rows(request).await?.into_inner();
        let mut tally = Tally::default();
        while let Some(response) = stream.message().await? {
            for chunk in &response.chunks {
                tally.chunk(chunk);
            }
        }
        tally.finish()
    }
}

/// `fields` as `SetCell`s at the server's time.
fn set_cells(fields: Vec<Field>) -> Vec<bt::Mutation> {
    fields
        .into_iter()
        .map(|(qualifier, value)| bt::Mutation {
            mutation: Some(bt::mutation::Mutation::SetCell(bt::mutation::SetCell {
                family_name: FAMILY.to_owned(),
                column_qualifier: qualifier.into_bytes(),
                timestamp_micros: SERVER_TIME,
                value: value.to_vec(),
            })),
        })
        .collect()
}

impl Backend for BigtableApi {
    fn for_client(&self, i: usize) -> BigtableApi {
        BigtableApi {
            data: self.pool[i % self.pool.len()].clone(),
            ..self.clone()
        }
    }

    async fn read(&self, key: String) -> Result<Moved, Error> {
        let rows = bt::RowSet {
            row_keys: vec![key.into_bytes()],
            row_ranges: Vec::new(),
        };
        self.read_rows(rows, 0).await
    }

    async fn scan(&self, start: String, rows: u64) -> Result<Moved, Error> {
        let range = bt::RowRange {
            start_key: Some(bt::row_range::StartKey::StartKeyClosed(start.into_bytes())),
            end_key: None,
        };
        let set = bt::RowSet {
            row_keys: Vec::new(),
            row_ranges: vec![range],
        };
        self.read_rows(set, rows).await
    }

    async fn write(&self, key: String, fields: Vec<Field>) -> Result<(), Error> {
        let request = bt::MutateRowRequest {
            table_name: self.table_name.to_string(),
            row_key: key.into_bytes(),
            mutations: set_cells(fields),
            ..Default::default()
        };
        self.data.clone().mutate_row(request).await?;
        Ok(())
    }

    async fn write_batch(&self, rows: Vec<(String, Vec<Field>)>) -> Result<(), Error> {
        let sent = rows.len();
        let request = bt::MutateRowsRequest {
            table_name: self.table_name.to_string(),
            entries: rows
                .into_iter()
                .map(|(key, fields)| bt::mutate_rows_request::Entry {
                    row_key: key.into_bytes(),
                    mutations: set_cells(fields),
                })
                .collect(),
            ..Default::default()
        };
        let mut stream = self.data.clone().mutate_rows(request).await?.into_inner();
        let mut statuses = Vec::with_capacity(sent);
        while let Some(response) = stream.message().await? {
            statuses.extend(response.entries);
        }
        entry_outcome(sent, &statuses)
    }
}

/// The outcome of a `MutateRows` of `sent` entries from its per-entry statuses: the first
/// failed entry's error, or an error if some entry got no status at all.
fn entry_outcome(sent: usize, entries: &[bt::mutate_rows_response::Entry]) -> Result<(), Error> {
    let mut answered = vec![false; sent];
    for entry in entries {
        let Some(slot) = usize::try_from(entry.index)
            .ok()
            .and_then(|i| answered.get_mut(i))
        else {
            return Err(Error::internal(format!(
                "MutateRows answered entry {} of {sent}",
                entry.index
            )));
        };
        *slot = true;
        if let Some(status) = &entry.status
            && status.code != 0
        {
            let status = tonic::Status::new(tonic::Code::from(status.code), &status.message);
            return Err(Error::from(status));
        }
    }
    match answered.iter().filter(|a| !**a).count() {
        0 => Ok(()),
        missing => Err(Error::internal(format!(
            "MutateRows left {missing} of {sent} entries without a status"
        ))),
    }
}

/// Rows and value bytes of one `ReadRows` answer, counted from its chunks: a row counts when
/// its `commit_row` chunk arrives, and a `reset_row` drops what its row had so far (the chunk
/// protocol of `google/bigtable/v2/bigtable.proto`). Pure.
#[derive(Debug, Default)]
struct Tally {
    done: Moved,
    /// Whether a row is open (a chunk arrived since the last commit or reset).
    open: bool,
    /// Value bytes of the open row.
    open_bytes: u64,
}

impl Tally {
    fn chunk(&mut self, chunk: &CellChunk) {
        if let Some(RowStatus::ResetRow(true)) = chunk.row_status {
            self.open = false;
            self.open_bytes = 0;
            return;
        }
        self.open = true;
        self.open_bytes += chunk.value.len() as u64;
        if let Some(RowStatus::CommitRow(true)) = chunk.row_status {
            self.done.rows += 1;
            self.done.bytes += self.open_bytes;
            self.open = false;
            self.open_bytes = 0;
        }
    }

    /// What the answer moved, or an error if it ended inside a row.
    fn finish(self) -> Result<Moved, Error> {
        if self.open {
            return Err(Error::internal(
                "ReadRows ended inside a row (no commit_row)",
            ));
        }
        Ok(self.done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(key: &str, value: &str, status: Option<RowStatus>) -> CellChunk {
        CellChunk {
            row_key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            row_status: status,
            ..Default::default()
        }
    }

    #[test]
    fn rows_count_when_committed_and_resets_drop_their_bytes() {
        let mut tally = Tally::default();
        for c in [
            chunk("a", "12", None),
            chunk("", "345", Some(RowStatus::CommitRow(true))),
            chunk("b", "xxxxxxxx", None),
            chunk("", "", Some(RowStatus::ResetRow(true))),
            chunk("b", "6", Some(RowStatus::CommitRow(true))),
        ] {
            tally.chunk(&c);
        }
        assert_eq!(tally.finish().unwrap(), Moved { rows: 2, bytes: 6 });

        let mut cut = Tally::default();
        cut.chunk(&chunk("a", "1", None));
        let err = cut.finish().unwrap_err();
        assert!(err.message.contains("inside a row"), "{err}");
        assert_eq!(Tally::default().finish().unwrap(), Moved::default());
    }

    fn entry(index: i64, code: i32) -> bt::mutate_rows_response::Entry {
        bt::mutate_rows_response::Entry {
            index,
            status: Some(tabula_proto::google::rpc::Status {
                code,
                message: format!("entry {index}"),
                details: Vec::new(),
            }),
        }
    }

    #[test]
    fn every_entry_needs_an_ok_status() {
        assert_eq!(entry_outcome(2, &[entry(1, 0), entry(0, 0)]), Ok(()));
        let failed = entry_outcome(3, &[entry(0, 0), entry(1, 14), entry(2, 0)]).unwrap_err();
        assert_eq!(failed.code, tabula_common::Code::Unavailable);
        assert!(failed.message.contains("entry 1"), "{failed}");
        let missing = entry_outcome(3, &[entry(0, 0)]).unwrap_err();
        assert!(missing.message.contains("2 of 3"), "{missing}");
        assert!(entry_outcome(1, &[entry(5, 0)]).is_err());
        assert!(entry_outcome(1, &[entry(-1, 0)]).is_err());
    }
}
