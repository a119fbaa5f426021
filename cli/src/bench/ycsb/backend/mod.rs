//! The two ways `bench ycsb` reaches a server, behind one trait so the workload code (`ops`,
//! `load`) is written once and both paths run exactly the same operations:
//! - `native`: Tabula's client library, straight to the tablet servers;
//! - `bigtable_api`: Cloud Bigtable's data API at an address (Tabula's gateway, Google's
//!   emulator, or anything else that speaks `google.bigtable.v2.Bigtable`), with the table
//!   made through its table admin API.
//!
//! Each operation means the same on both: a read is the newest cell of every column of one
//! row, a scan is up to N rows from a key (newest cells), a write sets cells at the server's
//! time in one atomic row mutation, and a batch write is one `MutateRows` of many rows.

pub(super) mod bigtable_api;
pub(super) mod native;

use std::future::Future;

use bytes::Bytes;
use tabula_common::Error;

use super::driver::Moved;

/// One field of a record: its qualifier and value (the family is `workload::FAMILY`).
pub(super) type Field = (String, Bytes);

/// A path to the server, as one YCSB client sees it. Cheap to clone; each client gets its
/// own handle from [`Backend::for_client`].
pub(super) trait Backend: Clone + Send + Sync + 'static {
    /// The handle client number `i` uses (a backend may spread its clients over connections).
    fn for_client(&self, i: usize) -> Self;

    /// Reads row `key`, the newest cell of each column; an absent row moves nothing.
    fn read(&self, key: String) -> impl Future<Output = Result<Moved, Error>> + Send;

    /// Reads up to `rows` rows from `start` on (inclusive), the newest cell of each column.
    fn scan(&self, start: String, rows: u64) -> impl Future<Output = Result<Moved, Error>> + Send;

    /// Sets `fields` in row `key` at the server's time, atomically.
    fn write(
        &self,
        key: String,
        fields: Vec<Field>,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Writes every row of `rows` (each atomically) in one batch call; the first failed
    /// entry's error if any failed.
    fn write_batch(
        &self,
        rows: Vec<(String, Vec<Field>)>,
    ) -> impl Future<Output = Result<(), Error>> + Send;
}

/// Which path a run took.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(in crate::bench) enum PathKind {
    /// Tabula's client library.
    Native,
    /// Cloud Bigtable's data API.
    BigtableApi,
}

impl PathKind {
    /// Its name in reports.
    pub(in crate::bench) fn name(self) -> &'static str {
        match self {
            PathKind::Native => "native",
            PathKind::BigtableApi => "bigtable-api",
        }
    }
}
