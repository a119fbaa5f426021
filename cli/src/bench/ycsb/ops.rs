//! One YCSB client: draws the next operation of its workload and its key, and runs it
//! through a [`Backend`] (the client library or the Cloud Bigtable API), as YCSB's
//! `CoreWorkload` does. Reads read the whole
//! record (latest version of every field), updates write one random field, inserts write a
//! new record of ten fields, scans read 1-100 rows from a chosen key, and read-modify-writes
//! read the record then write one field (YCSB's two-step F, timed as one operation).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tabula_common::Error;

use super::backend::{Backend, Field};
use super::driver::{Moved, Worker};
use super::generator::KeyChooser;
use super::workload::{
    FIELD_BYTES, FIELDS, MAX_SCAN_ROWS, OpKind, Workload, field_name, field_value, record_key,
};

/// The record count the run's key space has grown to, shared by the clients.
#[derive(Debug)]
pub(super) struct KeySpace {
    /// Records loaded.
    pub(super) loaded: u64,
    /// The next record number an insert takes.
    next_insert: AtomicU64,
    /// Inserts acknowledged.
    acknowledged: AtomicU64,
}

impl KeySpace {
    pub(super) fn new(loaded: u64) -> KeySpace {
        KeySpace {
            loaded,
            next_insert: AtomicU64::new(loaded),
            acknowledged: AtomicU64::new(0),
        }
    }

    /// The newest record a read may ask for: the loaded ones and as many inserted ones as
    /// were acknowledged (YCSB's acknowledged counter, without its gaps bookkeeping).
    fn newest(&self) -> u64 {
        (self.loaded + self.acknowledged.load(Ordering::Relaxed)).max(1) - 1
    }
}

/// One client of the run phase.
pub(super) struct YcsbClient<B> {
    pub(super) backend: B,
    pub(super) workload: Workload,
    pub(super) chooser: KeyChooser,
    pub(super) rng: StdRng,
    pub(super) keys: Arc<KeySpace>,
}

impl<B: Backend> YcsbClient<B> {
    /// A client seeded with `seed`.
    pub(super) fn new(
        backend: B,
        workload: Workload,
        chooser: KeyChooser,
        keys: Arc<KeySpace>,
        seed: u64,
    ) -> YcsbClient<B> {
        YcsbClient {
            backend,
            workload,
            chooser,
            rng: StdRng::seed_from_u64(seed),
            keys,
        }
    }

    fn existing_key(&mut self) -> String {
        let newest = self.keys.newest();
        record_key(self.chooser.next(newest, &mut self.rng))
    }

    fn one_field(&mut self) -> Vec<Field> {
        let field = field_name(self.rng.random_range(0..FIELDS));
        vec![(field, field_value(&mut self.rng))]
    }

    async fn run(&mut self, kind: OpKind) -> Result<Moved, Error> {
        match kind {
            OpKind::Read => {
                let key = self.existing_key();
                self.backend.read(key).await
            }
            OpKind::Update => {
                let key = self.existing_key();
                let fields = self.one_field();
                self.backend.write(key, fields).await?;
                Ok(written(1, 1))
            }
            OpKind::Insert => {
                let n = self.keys.next_insert.fetch_add(1, Ordering::Relaxed);
                let fields = full_record(&mut self.rng);
                self.backend.write(record_key(n), fields).await?;
                self.keys.acknowledged.fetch_add(1, Ordering::Relaxed);
                Ok(written(1, FIELDS))
            }
            OpKind::Scan => {
                let start = self.existing_key();
                let rows = self.rng.random_range(1..=MAX_SCAN_ROWS);
                self.backend.scan(start, rows).await
            }
            OpKind::ReadModifyWrite => {
                let key = self.existing_key();
                let read = self.backend.read(key.clone()).await?;
                let fields = self.one_field();
                self.backend.write(key, fields).await?;
                Ok(Moved {
                    rows: 1,
                    bytes: read.bytes + FIELD_BYTES as u64,
                })
            }
        }
    }
}

impl<B: Backend> Worker for YcsbClient<B> {
    async fn op(&mut self, _i: u64) -> (&'static str, Result<Moved, Error>) {
        let kind = self.workload.choose(self.rng.random());
        (kind.name(), self.run(kind).await)
    }
}

/// The ten fields of a new record.
pub(super) fn full_record(rng: &mut impl Rng) -> Vec<Field> {
    (0..FIELDS)
        .map(|i| (field_name(i), field_value(rng)))
        .collect()
}

/// `rows` rows of `fields` fields written.
fn written(rows: u64, fields: usize) -> Moved {
    Moved {
        rows,
        bytes: rows * (fields * FIELD_BYTES) as u64,
    }
}
