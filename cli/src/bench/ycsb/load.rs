//! YCSB's load phase: records `0..records` written as full ten-field records, in batches of
//! `BATCH_ROWS` rows per `MutateRows` call (the client library groups each batch by tablet;
//! through the Cloud Bigtable API it is one `MutateRows` request), by the run's
//! `concurrency` clients sharing the batches.

use rand::SeedableRng;
use rand::rngs::StdRng;
use tabula_common::Error;

use super::backend::Backend;
use super::driver::{Moved, Worker};
use super::ops::full_record;
use super::workload::{FIELD_BYTES, FIELDS, record_key};

/// Records per `MutateRows` call of the load.
pub(super) const BATCH_ROWS: u64 = 100;

/// One loading client.
pub(super) struct Loader<B> {
    pub(super) backend: B,
    pub(super) records: u64,
    pub(super) rng: StdRng,
}

impl<B: Backend> Loader<B> {
    pub(super) fn new(backend: B, records: u64, seed: u64) -> Loader<B> {
        Loader {
            backend,
            records,
            rng: StdRng::seed_from_u64(seed),
        }
    }
}

/// Batches of `BATCH_ROWS` the load of `records` takes.
pub(super) fn batches(records: u64) -> u64 {
    records.div_ceil(BATCH_ROWS)
}

impl<B: Backend> Worker for Loader<B> {
    async fn op(&mut self, batch: u64) -> (&'static str, Result<Moved, Error>) {
        let first = batch * BATCH_ROWS;
        let last = (first + BATCH_ROWS).min(self.records);
        let entries: Vec<_> = (first..last)
            .map(|n| (record_key(n), full_record(&mut self.rng)))
            .collect();
        let rows = last - first;
        let outcome = self.backend.write_batch(entries).await.map(|()| Moved {
            rows,
            bytes: rows * (FIELDS * FIELD_BYTES) as u64,
        });
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
