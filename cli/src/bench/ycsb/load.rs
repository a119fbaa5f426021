//! YCSB's load phase: records `0..records` written as full ten-field records, in batches of
//! `BATCH_ROWS` rows per `MutateRows` call (the client library groups each batch by tablet),
//! by the run's `concurrency` clients sharing the batches.

use bytes::Bytes;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tabula_client::Table;
use tabula_common::Error;

use super::driver::{Moved, Worker};
use super::ops::full_record;
use super::workload::{FIELD_BYTES, FIELDS, record_key};

/// Records per `MutateRows` call of the load.
pub(super) const BATCH_ROWS: u64 = 100;

/// One loading client.
pub(super) struct Loader {
    pub(super) table: Table,
    pub(super) records: u64,
    pub(super) rng: StdRng,
}

impl Loader {
    pub(super) fn new(table: Table, records: u64, seed: u64) -> Loader {
        Loader {
            table,
            records,
            rng: StdRng::seed_from_u64(seed),
        }
    }
}

/// Batches of `BATCH_ROWS` the load of `records` takes.
pub(super) fn batches(records: u64) -> u64 {
    records.div_ceil(BATCH_ROWS)
}

impl Worker for Loader {
    async fn op(&mut self, batch: u64) -> (&'static str, Result<Moved, Error>) {
        let first = batch * BATCH_ROWS;
        let last = (first + BATCH_ROWS).min(self.records);
        let entries: Vec<_> = (first..last)
            .map(|n| (Bytes::from(record_key(n)), full_record(&mut self.rng)))
            .collect();
        let rows = last - first;
        let outcome = self
            .table
            .mutate_rows(entries)
            .await
            .into_iter()
            .find_map(Result::err)
            .map_or(
                Ok(Moved {
                    rows,
                    bytes: rows * (FIELDS * FIELD_BYTES) as u64,
                }),
                Err,
            );
        ("LOAD", outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_cover_every_record() {
        assert_eq!(batches(0), 0);
        assert_eq!(batches(1), 1);
        assert_eq!(batches(100), 1);
        assert_eq!(batches(2001), 21);
    }
}
