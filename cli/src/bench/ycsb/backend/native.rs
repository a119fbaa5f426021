//! The native path: Tabula's client library (`tabula_client::Table`), which finds each row's
//! tablet through METADATA and talks to its tablet server directly, retrying what is
//! retryable. The table is made by the suite through the client library's admin.

use bytes::Bytes;
use tabula_client::{Filter, Mutation, ReadOptions, RowRange, RowSet, Table};
use tabula_common::Error;

use super::{Backend, Field};
use crate::bench::ycsb::driver::Moved;
use crate::bench::ycsb::workload::FAMILY;

/// The native path over one table.
#[derive(Clone)]
pub(in crate::bench::ycsb) struct Native {
    table: Table,
}

impl Native {
    pub(in crate::bench::ycsb) fn new(table: Table) -> Native {
        Native { table }
    }
}

/// `fields` as `SetCell`s at the server's time (the builders' default).
fn set_cells(fields: Vec<Field>) -> Vec<Mutation> {
    fields
        .into_iter()
        .map(|(qualifier, value)| Mutation::set_cell(FAMILY, qualifier, value))
        .collect()
}

impl Backend for Native {
    fn for_client(&self, _i: usize) -> Native {
        // The client library shares one channel per tablet server among all its users.
        self.clone()
    }

    async fn read(&self, key: String) -> Result<Moved, Error> {
        let row = self.table.read_row(key, Some(Filter::latest(1))).await?;
        Ok(row.map_or(Moved::default(), |r| Moved::of_rows(&[r])))
    }

    async fn scan(&self, start: String, rows: u64) -> Result<Moved, Error> {
        let options = ReadOptions {
            filter: Some(Filter::latest(1)),
            rows_limit: Some(rows),
            reversed: false,
        };
        let set = RowSet::new().range(RowRange::starting_at(Bytes::from(start)));
        let rows = self
            .table
            .read_rows_with(set, options)
            .collect_rows()
            .await?;
        Ok(Moved::of_rows(&rows))
    }

    async fn write(&self, key: String, fields: Vec<Field>) -> Result<(), Error> {
        self.table.mutate_row(key, set_cells(fields)).await
    }

    async fn write_batch(&self, rows: Vec<(String, Vec<Field>)>) -> Result<(), Error> {
        let entries = rows
            .into_iter()
            .map(|(key, fields)| (Bytes::from(key), set_cells(fields)))
            .collect();
        self.table
            .mutate_rows(entries)
            .await
            .into_iter()
            .find_map(Result::err)
            .map_or(Ok(()), Err)
    }
}
